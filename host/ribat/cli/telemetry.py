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
    first = 0.0  # when the first frame came: the rate counts from there
    live = None if as_json else Live(console=console(), auto_refresh=False, transient=False)
    with live or contextlib.nullcontext():
        if live is not None:
            live.update(f"[dim]{node}: waiting for the first telemetry frame…[/]", refresh=True)
        # (Ctrl-C: the last view stays on screen, and the exit status is 130)
        for f in tm.frames(client, seconds):
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
    stream = open(out, "w", newline="") if out else sys.stdout  # noqa: SIM115
    interrupted = False
    try:
        recorder = tm.Recorder(stream, fmt)
        for f in tm.frames(client, seconds):
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


@telemetry_group.command()
@click.argument(
    "file", required=False, type=click.Path(dir_okay=False, exists=True, path_type=Path)
)
@port_option
@duration_option
@click.option(
    "--out", "-o", type=click.Path(dir_okay=False, path_type=Path),
    help="Also draw it as a PNG picture (needs the plot extra: pip install 'ribat[plot]').",
)  # fmt: skip
def plot(file: Path | None, port: str | None, seconds: float | None, out: Path | None) -> None:
    """Heap, journal size, link errors and alerts over time: of a recording FILE (CSV or
    JSON lines, from `record`), or live from --port (until --duration or Ctrl-C), as a
    compact chart in the terminal, and as a picture with --out."""
    if file is not None and port is not None:
        raise click.UsageError("give a recording FILE or --port, not both")
    if file is not None:
        try:
            frames = tm.read_recording(file)
        except tm.BadRecording as e:
            raise click.BadParameter(str(e), param_hint="FILE") from None
        title, interrupted = f"{file.name}", False
    else:
        frames, title, interrupted = _live(port, seconds)
    for line in tm.chart_lines(frames):
        click.echo(line)
    if out is not None:
        if not frames:
            raise click.UsageError("no frames to draw")
        tm.plot_png(frames, out, title)
        click.echo(f"drawn to {out}", err=True)
    if interrupted:
        raise KeyboardInterrupt  # drawn all the same; the exit status says how it ended


def _live(port: str | None, seconds: float | None) -> tuple[list[TelemetryFrame], str, bool]:
    """Frames from the node on port, the chart redrawn as each comes, until seconds or
    Ctrl-C (whether it came: the chart and the picture are drawn all the same)."""
    from rich.live import Live
    from rich.text import Text

    client = open_node(port)
    assert client.info is not None
    title = f"{client.info.name} ({client.info.partner})"
    frames: list[TelemetryFrame] = []
    interrupted = False
    with Live(console=console(), auto_refresh=False, transient=True) as live:
        try:
            for f in tm.frames(client, seconds):
                frames.append(f)
                live.update(Text("\n".join([title, *tm.chart_lines(frames)])), refresh=True)
        except KeyboardInterrupt:
            interrupted = True
    return frames, title, interrupted
