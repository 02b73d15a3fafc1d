"""ribat sim: virtual boards."""

import click

from ribat import sim
from ribat.cli.common import complete_sim, console, echo_json, json_option
from ribat.device import boards


@click.group("sim")
def sim_group() -> None:
    """Virtual boards: real MicroPython (unix port) on a pseudo-terminal, with the flash
    and heap of the board they emulate. Their flash outlives resets and stops."""


@sim_group.command()
@click.option(
    "--board",
    "-b",
    type=click.Choice([*boards.virtual_names(), *boards.emulated_names()]),
    default="pico",
    show_default=True,
    help="Which board to emulate (emulated-pico: MicroPython's real RP2040 firmware on an "
    "emulated chip; the others: its unix port).",
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
@json_option("One JSON object per virtual board (per line)")
def list_(as_json: bool) -> None:
    """List virtual boards, running or stopped."""
    from rich.table import Table

    from ribat.results import VirtualBoard

    found = [
        VirtualBoard(s.name, s.board, s.running, f"sim:{s.name}", s.tty or None, s.pid or None)
        for s in sim.list_sims()
    ]
    if as_json:
        echo_json(found)
        return
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "BOARD", "STATE", "PORT", "DEVICE", "PID"):
        table.add_column(column)
    for b in found:
        state = "running" if b.running else "stopped"
        table.add_row(b.name, b.board, state, b.port, b.device or "", str(b.pid or ""))
    if found:
        console().print(table)
    else:
        click.echo("no virtual boards: start one with `ribat sim start`", err=True)


@sim_group.command()
@click.argument("names", nargs=-1, shell_complete=complete_sim)
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
@click.argument("name", shell_complete=complete_sim)
def reset(name: str) -> None:
    """Power-cycle a virtual board: the interpreter dies wherever it is and boots again."""
    sim.power_cycle(name)
    click.echo(f"power-cycled {name}", err=True)


@sim_group.command("panel")
@click.argument("name", shell_complete=complete_sim)
@json_option("The panel as JSON")
def panel_command(name: str, as_json: bool) -> None:
    """What a virtual board's LED, buzzer and button do, watched for a second."""
    from ribat.results import Panel

    seen = sim.panel(name)
    if as_json:
        echo_json(Panel(seen["led"], seen["led_level"], seen["buzzer_beeps"], seen["button"]))
        return
    click.echo(f"LED     {seen['led']} (level {seen['led_level']}%)")
    beeps = seen["buzzer_beeps"]
    click.echo(f"buzzer  {beeps} beeps" if beeps else "buzzer  silent")
    click.echo(f"button  {'held down' if seen['button'] else 'up'}")


@sim_group.command()
@click.argument("name", shell_complete=complete_sim)
@click.option("--hold", default=0.3, metavar="S", help="Seconds the button is held down.")
def press(name: str, hold: float) -> None:
    """Press a virtual board's button (its BOOTSEL, on a Pico), and let it go."""
    sim.press(name, hold)
    click.echo(f"pressed {name}'s button for {hold:g} s", err=True)


@sim_group.command()
@click.argument("name", shell_complete=complete_sim)
@click.option("--advance", metavar="DURATION", help="Move its clock ahead: 45s, 90m, 12h, 3d.")
def clock(name: str, advance: str | None) -> None:
    """A virtual board's clock (UTC), moved ahead if asked: days pass for its node as they
    would for a real one (retention, alert ages, weak signals' windows). Never back."""
    from ribat.cli.common import parse_duration, when

    got = sim.clock(name, parse_duration(advance, "--advance") if advance else 0)
    click.echo(f"{name}: {when(got['time'])} ({got['ahead']} s ahead of this host)")


class _CellGroup(click.Group):
    """`ribat sim cell MA,FR,ES,BE` starts a cell: partners where a subcommand would be."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["start", *args]
        return super().parse_args(ctx, args)


@sim_group.group("cell", cls=_CellGroup)
def cell_group() -> None:
    """A virtual cell: a provisioned virtual Pico per partner, an authority and roster, a
    local broker with faults on command, and a gateway per node.

    \b
    ribat sim cell MA,FR,ES,BE [--nodes-per-partner N] --pin PIN
    ribat sim cell status | partition TARGET... | heal [TARGET...] | faults ...
    ribat sim cell power-cycle NODE | stop [--erase]
    """


def _show_cell(state: dict) -> None:
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in ("NODE", "PARTNER", "PORT", "FINGERPRINT", "LINK", "GATEWAY"):
        table.add_column(column)
    for n in state["nodes"]:
        link = "[bold red]partitioned[/]" if n["partitioned"] else "up"
        gateway = n["gateway"] + (f" ({n['restarts']} restarts)" if n["restarts"] else "")
        table.add_row(n["name"], n["partner"], f"sim:{n['name']}", n["fp"], link, gateway)
    console().print(table)
    f, t = state["faults"], state["tally"]
    faults = [f"{k}={v:g}" for k, v in f.items() if v] or ["none"]
    click.echo(f"broker {state['broker']} (faults: {', '.join(faults)}; "
               f"{t['published']} messages, {t['dropped']} dropped, "
               f"{t['duplicated']} duplicated, {t['cut']} connections cut)")  # fmt: skip
    click.echo(f"cell {state['cell']}")


@cell_group.command("start")
@click.argument("partners")
@click.option("--nodes-per-partner", "-n", default=1, show_default=True, metavar="N")
@click.option("--pin", envvar="RIBAT_PIN", required=True, metavar="PIN",
              help="The operator PIN every node gets ($RIBAT_PIN).")  # fmt: skip
@click.option("--interval", default=1.0, show_default=True, metavar="S",
              help="Seconds between gateway rounds when the broker brings nothing.")  # fmt: skip
@click.option("--fast-link", is_flag=True, help="Links as fast as the host can carry them.")
def cell_start(
    partners: str, nodes_per_partner: int, pin: str, interval: float, fast_link: bool
) -> None:
    """Start a virtual cell of PARTNERS (MA,FR,ES,BE), made on first start."""
    from ribat import pins
    from ribat.simcell import cell

    try:
        codes = cell.parse_partners(partners)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="PARTNERS") from None
    problem = pins.pin_problem(pin) or pins.pin_weakness(pin)
    if problem is not None:
        raise click.BadParameter(problem.replace(", or accept", ""), param_hint="--pin")
    state = cell.start(codes, nodes_per_partner, pin, interval, fast_link,
                       step=lambda m: click.echo(m, err=True))  # fmt: skip
    _show_cell(state)
    click.echo(
        f"export RIBAT_CELL={state['cell']} RIBAT_BROKER={state['broker']}\n"
        f"then: ribat post -p sim:{state['nodes'][0]['name']} ..., ribat cell status",
        err=True,
    )


@cell_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="As JSON, for scripts.")
def cell_status(as_json: bool) -> None:
    """The cell's nodes, their links to the broker, the broker's faults and tallies.
    (Their journals: `ribat cell status`.)"""
    import json

    from ribat.simcell import cell

    state = cell.control({"op": "status"})
    if as_json:
        click.echo(json.dumps(state))
    else:
        _show_cell(state)


@cell_group.command("partition")
@click.argument("targets", nargs=-1, required=True)
def cell_partition(targets: tuple[str, ...]) -> None:
    """Cut nodes (by name) or partners (by code) off the broker until healed."""
    from ribat.simcell import cell

    state = cell.control({"op": "partition", "targets": list(targets)})
    cut = [n["name"] for n in state["nodes"] if n["partitioned"]]
    click.echo(f"partitioned: {', '.join(cut)}", err=True)


@cell_group.command("heal")
@click.argument("targets", nargs=-1)
def cell_heal(targets: tuple[str, ...]) -> None:
    """Reconnect nodes or partners (all of them if none named)."""
    from ribat.simcell import cell

    state = cell.control({"op": "heal", "targets": list(targets)})
    cut = [n["name"] for n in state["nodes"] if n["partitioned"]]
    click.echo(f"partitioned: {', '.join(cut) or 'none'}", err=True)


@cell_group.command("faults")
@click.option("--delay", "delay_ms", default=0.0, metavar="MS", help="Delay every message.")
@click.option("--jitter", "jitter_ms", default=0.0, metavar="MS",
              help="Up to this much more per message: reorders them.")  # fmt: skip
@click.option("--drop", default=0.0, metavar="P", help="Probability a message is lost.")
@click.option("--duplicate", default=0.0, metavar="P", help="Probability it comes twice.")
def cell_faults(delay_ms: float, jitter_ms: float, drop: float, duplicate: float) -> None:
    """Make the broker delay, reorder, duplicate or drop messages (no option: clear)."""
    from ribat.simcell import cell

    for name, p in (("--drop", drop), ("--duplicate", duplicate)):
        if not 0 <= p <= 1:
            raise click.BadParameter("a probability, from 0 to 1", param_hint=name)
    for name, ms in (("--delay", delay_ms), ("--jitter", jitter_ms)):
        if not 0 <= ms <= 60_000:
            raise click.BadParameter("milliseconds, from 0 to 60000", param_hint=name)
    faults = {"delay_ms": delay_ms, "jitter_ms": jitter_ms, "drop": drop, "duplicate": duplicate}
    state = cell.control({"op": "faults", "faults": faults})
    shown = [f"{k}={v:g}" for k, v in state["faults"].items() if v] or ["none"]
    click.echo(f"broker faults: {', '.join(shown)}", err=True)


@cell_group.command("power-cycle")
@click.argument("node")
def cell_power_cycle(node: str) -> None:
    """Cut a node's power: it dies wherever it is and boots again."""
    from ribat.simcell import cell

    sim.power_cycle(cell.node_of(node))
    click.echo(f"power-cycled {node}", err=True)


@cell_group.command("stop")
@click.option("--erase", is_flag=True, help="Also erase the nodes' flash and the authority.")
def cell_stop(erase: bool) -> None:
    """Stop the cell: broker, gateways and nodes (kept for the next start unless --erase)."""
    from ribat.simcell import cell

    names = cell.stop(erase)
    click.echo(f"stopped {', '.join(names)}" + (" and erased them" if erase else ""), err=True)


@sim_group.command("wire")
@click.argument("name", shell_complete=complete_sim)
@click.argument("other", shell_complete=complete_sim)
def wire_command(name: str, other: str) -> None:
    """Connect a free UART of each of two virtual boards (a Pico has two; at 115200 baud's
    pace): their nodes sync over it with no host in the loop."""
    sim.wire(name, other)
    click.echo(f"wired {name} to {other}", err=True)


@sim_group.command("unwire")
@click.argument("name", shell_complete=complete_sim)
@click.argument("other", required=False, shell_complete=complete_sim)
def unwire_command(name: str, other: str | None) -> None:
    """Cut a virtual board's wire to OTHER, or all its wires."""
    was = sim.unwire(name, other)
    shown = ", ".join(was)
    click.echo(f"unwired {name} from {shown}" if was else f"{name} was not wired so", err=True)
