"""ribat cell: the cell authority, its roster, and loading the roster onto nodes."""

from pathlib import Path

import click

from ribat.authority.cell import Cell, read_json
from ribat.cli.common import (
    console,
    duration,
    echo_json,
    json_option,
    open_node,
    pin_option,
    plural,
    port_option,
)
from ribat.cli.gateway import broker_address, broker_option
from ribat.cli.security import cell_option
from ribat.ops import guard


@click.group("cell")
def cell_group() -> None:
    """The cell: its authority key, its roster, the roster on each node."""


@cell_group.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def init(directory: Path) -> None:
    """Create a cell authority in DIRECTORY (its private key stays there, mode 0600)."""
    cell = Cell.create(directory)
    click.echo(f"cell {cell.id} created in {directory}")
    click.echo(
        f"keep {directory}/authority.key private; provision nodes with --cell {directory}",
        err=True,
    )


@cell_group.group("roster")
def roster_group() -> None:
    """Add and remove nodes: each change is a new roster version, signed."""


def _show(cell: Cell) -> None:
    from rich.table import Table

    roster = cell.listing()
    console().print(f"cell {roster.cell}, roster version {roster.version}")
    table = Table(box=None, pad_edge=False)
    for title in ("partner", "name", "fingerprint"):
        table.add_column(title)
    for m in roster.members:
        table.add_row(m.partner, m.name, m.fingerprint)
    console().print(table)
    for r in roster.release_keys:
        console().print(f"release key {r.name}: {r.key}")


@roster_group.command("add")
@cell_option
@click.argument("identity_file", type=click.Path(dir_okay=False, path_type=Path))
def roster_add(cell_dir: Path, identity_file: Path) -> None:
    """Add the node whose exported identity is IDENTITY_FILE (check its fingerprint)."""
    cell = Cell.open(cell_dir)
    body = cell.add(read_json(identity_file, "ribat identity document"))
    new = body["members"][-1]
    click.echo(
        f"added {new['name']} ({new['partner']}) fingerprint {new['fp']}: "
        f"roster version {body['version']}; load it with `ribat cell load`",
        err=True,
    )


@roster_group.command("remove")
@cell_option
@click.argument("name")
def roster_remove(cell_dir: Path, name: str) -> None:
    """Remove the node called NAME."""
    body = Cell.open(cell_dir).remove(name)
    click.echo(f"removed {name}: roster version {body['version']}", err=True)


@roster_group.command("show")
@cell_option
@json_option("The roster as JSON")
def roster_show(cell_dir: Path, as_json: bool) -> None:
    """List the nodes in the roster."""
    cell = Cell.open(cell_dir)
    if as_json:
        echo_json(cell.listing())
    else:
        _show(cell)


@roster_group.group("release")
def release_group() -> None:
    """The keys whose signed releases the cell's nodes take (`ribat release key`)."""


@release_group.command("add")
@cell_option
@click.argument("name")
@click.argument("key_file", type=click.Path(dir_okay=False, path_type=Path))
def release_add(cell_dir: Path, name: str, key_file: Path) -> None:
    """Let the release key in KEY_FILE (NAME.pub) sign the cell's firmware, as NAME."""
    from ribat.deploy.bundle import read_public

    body = Cell.open(cell_dir).add_releaser(name, read_public(key_file))
    click.echo(
        f"release key {name} added: roster version {body['version']}; "
        "load it with `ribat cell load`",
        err=True,
    )


@release_group.command("remove")
@cell_option
@click.argument("name")
def release_remove(cell_dir: Path, name: str) -> None:
    """Stop taking releases signed by the release key NAME (once the roster is loaded)."""
    body = Cell.open(cell_dir).remove_releaser(name)
    click.echo(f"release key {name} removed: roster version {body['version']}", err=True)


@cell_group.command("load")
@port_option
@cell_option
def load(port: str | None, cell_dir: Path) -> None:
    """Load the cell's signed roster onto a node (it refuses any but a newer one)."""
    cell = Cell.open(cell_dir)
    client = open_node(port)
    if guard.identity(client)["roster"] == cell.roster["version"]:
        click.echo(f"roster version {cell.roster['version']} is already loaded", err=True)
        return
    meta = guard.load_roster(client, cell.signed_roster())
    click.echo(
        f"roster version {meta['version']} loaded: {plural(meta['members'], 'node')}", err=True
    )


@cell_group.command("pairs")
@port_option
@pin_option
def pairs(port: str | None, pin: str | None) -> None:
    """The node's pairwise keys with each roster member, as check values two nodes can
    compare: equal values, same key (the keys themselves never leave the nodes)."""
    from rich.table import Table

    client = open_node(port)
    with guard.unlocked(client, pin):
        rows = guard.pairs(client)
    table = Table(box=None, pad_edge=False)
    for title in ("partner", "name", "fingerprint", "check"):
        table.add_column(title)
    for r in rows:
        table.add_row(r["partner"], r["name"], r["fp"], r["check"] or "(this node)")
    console().print(table)


@cell_group.command("status")
@cell_option
@broker_option
@json_option("The cell's state as JSON, for scripts")
def status(cell_dir: Path, broker: str, as_json: bool) -> None:
    """Every node's journal as its gateway last published it: who lags whom, forks, the
    audit heads each witnessed of the others, alarms, when each was last heard (a
    gateway publishes at least every minute: STALE after three); each alert raised, and
    who has and has not acknowledged it."""
    import time

    from rich.table import Table

    from ribat.gateway.broker import cell_view, summaries

    cell = Cell.open(cell_dir)
    host, port = broker_address(broker)
    view = cell_view(cell.id, summaries(host, port, cell.id))
    if as_json:
        echo_json(view)
        return
    if not view.nodes:
        click.echo(f"no node of cell {cell.id} has published a summary on {host}:{port}")
        return
    now = time.time()
    table = Table(box=None, pad_edge=False)
    titles = ("node", "partner", "firmware", "entries", "lags", "held", "audit", "witnessed by",
              "last heard")  # fmt: skip
    for title in titles:
        table.add_column(title)
    for n in view.nodes:
        lags = ", ".join(f"{o} -{k}" for o, k in n.lags.items()) or "-"
        seen = ", ".join(f"{w}@{seq}" for w, seq in n.witnessed_by.items()) or "-"
        heard = (
            f"{duration(int(now - n.last_heard.timestamp()) * 1000)} ago"
            if n.last_heard
            else "never"
        )
        table.add_row(
            n.name, n.partner, (n.firmware or "?") + (" (trial)" if n.on_trial else ""),
            str(n.entries), lags, str(n.held), "?" if n.audit_seq is None else str(n.audit_seq),
            seen, f"[bold red]{heard} STALE[/]" if n.stale else heard,
        )  # fmt: skip
    console().print(table)
    for alert in view.alerts:
        who = "; ".join(
            f"{a.node} "
            + (
                f"acknowledged after {duration(a.after_s * 1000)}"
                if a.acknowledged
                else f"{'OVERDUE, ' if a.overdue else ''}pending for {duration(a.after_s * 1000)}"
            )
            for a in alert.nodes
        )
        click.echo(f"alert {alert.id}: {who}")
    for sig in view.convergences:
        who = ", ".join(
            f"{s.node} {'acknowledged' if s.acknowledged else 'PENDING'}" for s in sig.nodes
        )
        click.echo(
            f"convergence {'+'.join(sig.partners)}: the same indicator reported, the first "
            f"{duration(sig.age_s * 1000)} ago ({who})"
        )
    for line in view.forks + view.alarms:
        click.echo(line)
