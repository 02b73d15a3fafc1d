"""ribat telemetry: watch and record."""

import contextlib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ribat.cli.common import (
    console,
    duration,
    echo_json,
    json_option,
    open_node,
    port_option,
    size,
)
from ribat.ops import telemetry as tm
from ribat.results import TelemetryFrame

if TYPE_CHECKING:
    from rich.table import Table

WAIT_S = 0.25  # how often the loops look up from waiting for a frame


@click.group("telemetry")
def telemetry_group() -> None:
    """A node's live telemetry: the frames it pushes every telemetry.interval_ms."""


def _table(node: str, f: TelemetryFrame, losses: tm.LossCounter, rate: float) -> "Table":
    from rich.table import Table

    h = f.health
    causes = ", ".join(f"{n} {cause}" for cause, n in h.frames_rejected.items() if n) or "none"
    temp = h.temperature_c
    alerts = f"[bold red]{h.alerts_pending} pending[/]" if h.alerts_pending else "none pending"
    table = Table(
        title=f"{node} · telemetry frame {f.seq}",
        box=None,
        show_header=False,
        title_justify="left",
    )
    table.add_column(style="bold")
    table.add_column()
    for label, value in (
        ("keys", h.keys or "?"),
        ("audit head", f"{h.audit_seq}:{(h.audit_head or '')[:16]}"),
        ("alerts", alerts),
        ("uptime", f"{duration(h.uptime_ms)} ({h.reset_cause} reset)"),
        ("heap", f"{size(h.heap_free_bytes)} free, {size(h.heap_used_bytes)} used"),
        ("flash", f"{size(h.flash_free_bytes)} free, {size(h.flash_used_bytes)} used"),
        ("loop lag", f"{h.loop_lag_ms} ms"),
        ("link", f"{h.frames_in} in, {h.frames_out} out; rejected: {causes}"),
        ("firmware", h.firmware),
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
@json_option("Each frame as a line of JSON, as it comes")
def watch(port: str | None, seconds: float | None, as_json: bool) -> None:
    """A live view of the node's telemetry, until Ctrl-C."""
    from rich.live import Live

    client = open_node(port)
    assert client.info is not None
    node = f"{client.info.name} ({client.info.partner})"
    losses = tm.LossCounter()
    end = time.monotonic() + seconds if seconds is not None else None
    first = 0.0  # when the first frame came: the rate counts from there
    live = None if as_json else Live(console=console(), auto_refresh=False, transient=False)
    with live or contextlib.nullcontext():
        if live is not None:
            live.update(f"[dim]{node}: waiting for the first telemetry frame…[/]", refresh=True)
        # (Ctrl-C: the last view stays on screen, and the exit status is 130)
        while end is None or time.monotonic() < end:
            event = client.next_event(WAIT_S)
            if event is None or event.get("event") != "telemetry":
                continue
            f = tm.frame(event)
            now = time.monotonic()
            first = first or now
            losses.see(f.seq)
            if live is None:
                echo_json(f)
                continue
            rate = (losses.received - 1) / (now - first) if now > first else 0.0
            live.update(_table(node, f, losses, rate), refresh=True)


@telemetry_group.command()
@port_option
@click.option("--format", "fmt", type=click.Choice(tm.FORMATS), default="csv", show_default=True)
@duration_option
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="File to write (default, or -: standard output).",
)
def record(port: str | None, fmt: str, seconds: float | None, out: Path | None) -> None:
    """Record telemetry frames as CSV or JSON lines, one row per frame (columns and
    fields: docs/json.md)."""
    if out is not None and str(out) == "-":
        out = None
    client = open_node(port)
    losses = tm.LossCounter()
    end = time.monotonic() + seconds if seconds is not None else None
    stream = open(out, "w", newline="") if out else sys.stdout  # noqa: SIM115
    interrupted = False
    try:
        recorder = tm.Recorder(stream, fmt)
        while end is None or time.monotonic() < end:
            event = client.next_event(WAIT_S)
            if event is None or event.get("event") != "telemetry":
                continue
            f = tm.frame(event)
            losses.see(f.seq)
            recorder.write(f)
    except KeyboardInterrupt:
        interrupted = True  # every row written whole; told, then exit status 130
    finally:
        if out:
            stream.close()
    where = f" to {out}" if out else ""
    click.echo(f"recorded {losses.received} frames{where}, {losses.lost} lost", err=True)
    if interrupted:
        raise KeyboardInterrupt
