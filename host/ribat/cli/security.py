"""ribat provision, identity, unlock, lock, wipe and pin: the node's keys and its operator."""

import json
import shlex
import sys
from pathlib import Path

import click

from ribat.cli import common
from ribat.cli.common import (
    ask_new_pin,
    ask_pin,
    console,
    echo_json,
    json_option,
    open_node,
    pin_option,
    plural,
    port_option,
    weak_pin_option,
    write_output,
)
from ribat.ops import guard
from ribat.results import Identity


def cell_option(f: common.F) -> common.F:
    return click.option(
        "--cell",
        "cell_dir",
        envvar="RIBAT_CELL",
        required=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="The cell directory made by `ribat cell init` ($RIBAT_CELL).",
    )(f)


def _show_identity(info: Identity) -> None:
    if info.state == "unprovisioned":
        click.echo("unprovisioned: run `ribat provision` to give this node its keys")
        return
    from rich.table import Table

    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("node", f"{info.name} ({info.partner})")
    table.add_row("fingerprint", f"[bold]{info.fingerprint}[/]")
    table.add_row("signing key", f"Ed25519 {info.signing_key}")
    table.add_row("agreement key", f"X25519 {info.agreement_key}")
    table.add_row("cell", info.cell or "none")
    roster = (
        f"version {info.roster_version}, {plural(info.roster_members or 0, 'node')}"
        if info.roster_version
        else "none"
    )
    table.add_row("roster", roster)
    table.add_row(
        "state", f"{info.state}, {info.pin_tries_used} of {info.pin_tries_allowed} PIN tries used"
    )
    console().print(table)


@click.command()
@port_option
@cell_option
@click.option("--partner", required=True, metavar="CODE", help="Partner code: MA, FR, ES, BE...")
@click.option("--name", required=True, help="This node's name in the cell.")
@pin_option
@weak_pin_option
def provision(
    port: str | None, cell_dir: Path, partner: str, name: str, pin: str | None, weak_pin: bool
) -> None:
    """Give a fresh node its keys, its operator PIN and its cell's authority.

    The node makes its keys from its own random source and keeps them sealed under the
    PIN; they never leave it. Compare the fingerprint it prints by phone with the one the
    cell administrator sees in `ribat cell roster add`.
    """
    from ribat.authority.cell import Cell
    from ribat.schema import check

    for key, value in (("node.partner", partner), ("node.name", name)):
        problem = check(key, value)
        if problem is not None:
            raise click.BadParameter(problem)
    cell = Cell.open(cell_dir)
    client = open_node(port)
    if guard.identity(client)["state"] != "unprovisioned":
        from ribat.errors import WrongState

        raise WrongState("the node is already provisioned: wipe it first (`ribat wipe`)", "state")
    pin = ask_new_pin(pin, weak_pin)
    info = guard.provision(client, cell, partner, name, pin, weak_pin)
    click.echo(f"provisioned {info['name']} ({info['partner']}) in cell {info['cell']}", err=True)
    _show_identity(Identity.from_node(info))


@click.group("identity", invoke_without_command=True)
@port_option
@json_option("The identity as JSON")
@click.pass_context
def identity_group(ctx: click.Context, port: str | None, as_json: bool) -> None:
    """Show a node's public identity and fingerprint; `export` it for the roster."""
    if ctx.invoked_subcommand is None:
        info = Identity.from_node(guard.identity(open_node(port)))
        if as_json:
            echo_json(info)
        else:
            _show_identity(info)


@identity_group.command("export")
@port_option
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    default="-",
    help="File to write (default: standard output).",
)
def identity_export(port: str | None, out: Path) -> None:
    """Write the node's identity, signed by the node: give it to the cell administrator."""
    doc = guard.exported_identity(open_node(port))
    write_output(out, (json.dumps(doc, indent=1) + "\n").encode())
    if str(out) != "-":
        click.echo(f"identity written to {out}", err=True)


@click.command()
@port_option
@pin_option
def unlock(port: str | None, pin: str | None) -> None:
    """Unlock a node for an operator session, and run ribat commands in it.

    The session holds the port: type commands as you would after `ribat` (audit show,
    cell pairs...), one per line. It ends on `lock`, at end of input, after the node's
    idle time (pin.idle_s), on reset, or when this program lets go of the port.
    """
    client = open_node(port)
    pin = ask_pin(pin)
    guard.unlock(client, pin)
    info = client.info
    assert info is not None
    interactive = sys.stdin.isatty()
    click.echo(f"{info.name} unlocked; `lock` or end of input ends the session", err=True)
    from ribat.cli import main as run

    session = common.Session(client)
    try:
        while True:
            try:
                line = input(f"{info.name}> " if interactive else "")
            except EOFError:
                break
            try:
                args = shlex.split(line)
            except ValueError as e:  # an unclosed quote
                click.echo(f"error: {e}: close the quote", err=True)
                continue
            if not args:
                continue
            if args[0] in ("lock", "exit", "quit"):
                break
            if args[0] in ("help", "?"):
                run(["--help"], session)
                click.echo(
                    "\nIn this session: a command as after `ribat`, without --port or --pin "
                    "(`list`, `show ID`, `post ...`, `audit show`); COMMAND --help for one; "
                    "`lock` (or end of input) ends it.",
                    err=True,
                )
                continue
            if args[0] in ("unlock", "sim", "flash", "boards"):
                click.echo(f"error: `{args[0]}` does not run inside a session", err=True)
                continue
            run(args, session)
    finally:
        state = guard.lock(client)["state"]
        click.echo(f"{info.name} {state}", err=True)


@click.command()
@port_option
def lock(port: str | None) -> None:
    """Lock a node: its session ends, its keys are sealed again."""
    client = open_node(port)
    click.echo(f"{guard.lock(client)['state']}", err=True)


@click.command()
@port_option
@pin_option
@click.option(
    "--button",
    is_flag=True,
    help="Instead of the PIN: restart the node and hold its button down within 10 s.",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (for scripts).")
def wipe(port: str | None, pin: str | None, button: bool, yes: bool) -> None:
    """Erase a node's keys, roster and content: it becomes unprovisioned.

    A provisioned node needs its operator PIN, or a press of its button in the seconds
    after it starts (--button), as a FIDO key's reset needs presence. The audit log stays,
    with the wipe recorded in it.
    """
    client = open_node(port)
    info = client.info
    assert info is not None
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("a wipe needs confirmation: add --yes to run it unattended")
        click.confirm(
            f"Erase the keys and content of {info.name} ({info.partner}) for good?", abort=True
        )
    if guard.identity(client)["state"] != "locked":  # unprovisioned, or in a session
        guard.wipe(client)
    elif button:
        guard.wipe_by_presence(
            client,
            lambda s: click.echo(
                f"press and hold the button on {info.name} now ({s:g} s)", err=True
            ),
        )
    else:
        if pin is None and not sys.stdin.isatty():
            raise click.UsageError(
                "a wipe of a provisioned node needs its operator PIN (--pin or RIBAT_PIN), "
                "or a press of its button (--button)"
            )
        guard.wipe(client, ask_pin(pin))
    click.echo(f"{info.name} wiped: it is unprovisioned", err=True)


@click.group("pin")
def pin_group() -> None:
    """The operator PIN."""


@pin_group.command("change")
@port_option
@pin_option
@click.option("--new-pin", envvar="RIBAT_NEW_PIN", metavar="PIN", help="The new PIN.")
@weak_pin_option
def pin_change(port: str | None, pin: str | None, new_pin: str | None, weak_pin: bool) -> None:
    """Change the operator PIN (the current one is needed, and counted if wrong)."""
    client = open_node(port)
    pin = ask_pin(pin, "Current PIN")
    new_pin = ask_new_pin(new_pin, weak_pin, "New PIN")
    if new_pin == pin:
        raise click.UsageError("the new PIN is the current one: choose another")
    guard.change_pin(client, pin, new_pin, weak_pin)
    click.echo("PIN changed", err=True)
