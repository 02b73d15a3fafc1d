"""ribat telemetry: watch and record."""

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ribat import codec
from ribat.cli.common import console, duration, open_node, port_option, size
from ribat.ops import telemetry as tm

if TYPE_CHECKING:
    from rich.table import Table

WAIT_S = 0.25  # how often the loops look up from waiting for a frame


@click.group("telemetry")
def telemetry_group() -> None:
    """A node's live telemetry: the frames it pushes every telemetry.interval_ms."""


def _table(event: dict, losses: tm.LossCounter, rate: float) -> "Table":
    from rich.table import Table

    rejected = event.get("rx_rejected") or []
    causes = ", ".join(f"{n} {codec.CAUSES[i]}" for i, n in enumerate(rejected) if n) or "none"
    temp = event.get("temp_c")
    table = Table(
        title=f"telemetry · frame {event['seq']}",
        box=None,
        show_header=False,
        title_justify="left",
    )
    table.add_column(style="bold")
    table.add_column()
    for label, value in (
        ("uptime", f"{duration(event['uptime_ms'])} ({event['reset_cause']} reset)"),
        ("heap", f"{size(event['heap_free'])} free, {size(event['heap_used'])} used"),
        ("flash", f"{size(event['flash_free'])} free, {size(event['flash_used'])} used"),
        ("loop lag", f"{event['loop_lag_ms']} ms"),
        ("link", f"{event['rx_ok']} in, {event['tx']} out; rejected: {causes}"),
        ("firmware", str(event["fw"])),
        ("temperature", "no sensor" if temp is None else f"{temp:.1f} °C"),
        ("received", f"{losses.received} frames, {rate:.1f}/s, {losses.lost} lost"),
    ):
        table.add_row(label, value)
    return table


duration_option = click.option(
    "--duration",
    "seconds",
    type=click.FloatRange(min=0),
    metavar="S",
    help="Stop after S seconds (default: run until Ctrl-C).",
)


@telemetry_group.command()
@port_option
@duration_option
def watch(port: str | None, seconds: float | None) -> None:
    """A live view of the node's telemetry, until Ctrl-C."""
    from rich.live import Live

    client = open_node(port)
    losses = tm.LossCounter()
    end = time.monotonic() + seconds if seconds is not None else None
    first = 0.0  # when the first frame came: the rate counts from there
    with Live(console=console(), auto_refresh=False, transient=False) as live:
        live.update("[dim]waiting for the first telemetry frame…[/]", refresh=True)
        try:
            while end is None or time.monotonic() < end:
                event = client.next_event(WAIT_S)
                if event is None or event.get("event") != "telemetry":
                    continue
                now = time.monotonic()
                first = first or now
                losses.see(event["seq"])
                rate = (losses.received - 1) / (now - first) if now > first else 0.0
                live.update(_table(event, losses, rate), refresh=True)
        except KeyboardInterrupt:
            pass


@telemetry_group.command()
@port_option
@click.option("--format", "fmt", type=click.Choice(tm.FORMATS), default="csv", show_default=True)
@duration_option
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (default: standard output).",
)
def record(port: str | None, fmt: str, seconds: float | None, out: Path | None) -> None:
    """Record telemetry frames as CSV or JSON lines, one row per frame."""
    client = open_node(port)
    losses = tm.LossCounter()
    end = time.monotonic() + seconds if seconds is not None else None
    stream = open(out, "w", newline="") if out else sys.stdout  # noqa: SIM115
    try:
        recorder = tm.Recorder(stream, fmt)
        while end is None or time.monotonic() < end:
            event = client.next_event(WAIT_S)
            if event is None or event.get("event") != "telemetry":
                continue
            losses.see(event["seq"])
            recorder.write(tm.row(event))
    except KeyboardInterrupt:
        pass
    finally:
        if out:
            stream.close()
    where = f" to {out}" if out else ""
    click.echo(f"recorded {losses.received} frames{where}, {losses.lost} lost", err=True)
