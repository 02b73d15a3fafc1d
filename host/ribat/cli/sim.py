"""ribat sim: virtual boards."""

import click

from ribat import boards, sim
from ribat.cli.common import console


@click.group("sim")
def sim_group() -> None:
    """Virtual boards: real MicroPython (unix port) on a pseudo-terminal, with the flash
    and heap of the board they emulate. Their flash outlives resets and stops."""


@sim_group.command()
@click.option(
    "--board",
    "-b",
    type=click.Choice(list(boards.virtual_names())),
    default="pico",
    show_default=True,
    help="Which board to emulate.",
)
@click.option("--name", "-n", help="Name of the virtual board (default: sim1, sim2...).")
@click.option(
    "--fast-link",
    is_flag=True,
    help="Carry bytes as fast as the host can, not at the board's link speed.",
)
def start(board: str, name: str | None, fast_link: bool) -> None:
    """Start a virtual board and print its serial device."""
    started = sim.start(name, board, fast_link)
    click.echo(
        f"virtual board {started.name} ({started.board}) on {started.tty}; "
        f"other commands reach it with --port sim:{started.name}",
        err=True,
    )
    click.echo(started.tty)


@sim_group.command("list")
def list_() -> None:
    """List virtual boards, running or stopped."""
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in ("NAME", "BOARD", "STATE", "PORT", "PID"):
        table.add_column(column)
    for s in sim.list_sims():
        table.add_row(
            s.name, s.board, "running" if s.running else "stopped", s.tty or "", str(s.pid or "")
        )
    if table.row_count:
        console().print(table)
    else:
        click.echo("no virtual boards: start one with `ribat sim start`", err=True)


@sim_group.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Stop every running virtual board.")
@click.option("--erase", is_flag=True, help="Also delete its flash image and settings.")
def stop(names: tuple[str, ...], all_: bool, erase: bool) -> None:
    """Stop virtual boards (their flash is kept unless --erase)."""
    if all_:
        names = tuple(s.name for s in sim.list_sims() if s.running or erase)
    elif not names:
        raise click.UsageError("name the virtual boards to stop, or use --all")
    for name in names:
        sim.stop(name, erase=erase)
        click.echo(f"stopped {name}" + (" and erased its flash" if erase else ""), err=True)


@sim_group.command()
@click.argument("name")
def reset(name: str) -> None:
    """Power-cycle a virtual board: the interpreter dies wherever it is and boots again."""
    sim.power_cycle(name)
    click.echo(f"power-cycled {name}", err=True)
