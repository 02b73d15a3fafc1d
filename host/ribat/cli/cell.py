"""ribat cell: the cell authority, its roster, and loading the roster onto nodes."""

from pathlib import Path

import click

from ribat.authority.cell import Cell, read_json
from ribat.cli.common import console, duration, open_node, pin_option, plural, port_option
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

    roster = cell.roster
    console().print(f"cell {cell.id}, roster version {roster['version']}")
    table = Table(box=None, pad_edge=False)
    for title in ("partner", "name", "fingerprint"):
        table.add_column(title)
    for m in roster["members"]:
        table.add_row(m["partner"], m["name"], m["fp"])
    console().print(table)
    for r in cell.releasers:
        console().print(f"release key {r['name']}: {r['key']}")


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
def roster_show(cell_dir: Path) -> None:
    """List the nodes in the roster."""
    _show(Cell.open(cell_dir))


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
@click.option("--json", "as_json", is_flag=True, help="The summaries as JSON, for scripts.")
def status(cell_dir: Path, broker: str, as_json: bool) -> None:
    """Every node's journal as its gateway last published it: who lags whom, forks, the
    audit heads each witnessed of the others, alarms; each alert raised, and who has and
    has not acknowledged it."""
    import json

    from rich.table import Table

    from ribat.gateway.broker import cell_view, summaries

    cell = Cell.open(cell_dir)
    host, port = broker_address(broker)
    docs = summaries(host, port, cell.id)
    if as_json:
        click.echo(json.dumps(docs))
        return
    if not docs:
        click.echo(f"no node of cell {cell.id} has published a summary on {host}:{port}")
        return
    view = cell_view(docs)
    table = Table(box=None, pad_edge=False)
    titles = ("node", "partner", "firmware", "entries", "lags", "held", "audit", "witnessed by")
    for title in titles:
        table.add_column(title)
    for row in view["nodes"]:
        table.add_row(
            row["name"], row["partner"], row["firmware"], str(row["entries"]),
            row["lags"] or "-", str(row["held"]), str(row["audit"]), row["witnessed_by"] or "-",
        )  # fmt: skip
    console().print(table)
    for alert in view["alerts"]:
        who = "; ".join(
            f"{n['node']} "
            + (
                f"acknowledged after {duration(n['after_s'] * 1000)}"
                if n["acknowledged"]
                else f"{'OVERDUE, ' if n['overdue'] else ''}pending for "
                f"{duration(n['after_s'] * 1000)}"
            )
            for n in alert["nodes"]
        )
        click.echo(f"alert {alert['id']}: {who}")
    for sig in view["signals"]:
        who = ", ".join(
            f"{n['node']} {'acknowledged' if n['acknowledged'] else 'PENDING'}"
            for n in sig["nodes"]
        )
        click.echo(
            f"convergence {'+'.join(sig['partners'])}: the same indicator reported, the first "
            f"{duration(sig['age_s'] * 1000)} ago ({who})"
        )
    for line in view["forks"] + view["alarms"]:
        click.echo(line)
