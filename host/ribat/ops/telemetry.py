"""Telemetry on the host: frames from the node's events, loss counting, CSV and JSONL.

A node numbers its events; a gap in the numbers is a frame lost on the way.
"""

import csv
import dataclasses
import functools
import io
import json
import time
import typing
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ribat import codec
from ribat.errors import RibatError, Unsupported
from ribat.results import Health, TelemetryFrame, iso, to_json

if TYPE_CHECKING:
    from ribat.device.client import NodeClient

# A CSV row: the host's time, the event's number, then the node's health (ribat.results),
# its rejections spread over a column per cause.
HEALTH = [f.name for f in dataclasses.fields(Health) if f.name != "frames_rejected"]
FIELDS = ["received", "seq", *HEALTH, *(f"rejected_{cause}" for cause in codec.CAUSES)]
FORMATS = ("csv", "jsonl")
WAIT_S = 0.25  # how often the wait for a frame looks up (a duration's end, Ctrl-C)


def frame(event: dict, received: float | None = None) -> TelemetryFrame:
    """A telemetry event as the frame it tells, stamped with the host's time."""
    return TelemetryFrame.from_node(event, time.time() if received is None else received)


def frames(client: "NodeClient", seconds: float | None) -> Iterator[TelemetryFrame]:
    """The frames the node pushes, as they come, for seconds (None: until interrupted)."""
    end = time.monotonic() + seconds if seconds is not None else None
    while end is None or time.monotonic() < end:
        event = client.next_event(WAIT_S)
        if event is not None and event.get("event") == "telemetry":
            yield frame(event)


def flat(f: TelemetryFrame) -> dict:
    """One CSV row of a frame."""
    out: dict[str, object] = {"received": iso(f.received), "seq": f.seq}
    for name in HEALTH:
        out[name] = getattr(f.health, name)
    for cause, n in f.health.frames_rejected.items():
        out[f"rejected_{cause}"] = n
    return out


class LossCounter:
    """Counts events missing from the node's sequence (it wraps at 65536)."""

    def __init__(self) -> None:
        self.last: int | None = None
        self.received = 0
        self.lost = 0

    def see(self, seq: int) -> None:
        if self.last is not None:
            self.lost += (seq - self.last - 1) & 0xFFFF
        self.last = seq
        self.received += 1


class Recorder:
    """Writes frames as CSV (with a header) or JSON lines, each line whole and flushed."""

    def __init__(self, out: IO[str], fmt: str) -> None:
        self.out = out
        self.fmt = fmt
        self.writer = csv.DictWriter(out, FIELDS, lineterminator="\n") if fmt == "csv" else None
        if self.writer is not None:
            self.writer.writeheader()

    def write(self, f: TelemetryFrame) -> None:
        if self.writer is not None:
            self.writer.writerow(flat(f))
        else:
            self.out.write(json.dumps(to_json(f)) + "\n")
        self.out.flush()


# -- reading a recording, and drawing it --------------------------------------------------

# What a plot shows of the frames, each a quantity over time: (title, unit, of a frame).
SERIES: tuple[tuple[str, str, Callable[[Health], float]], ...] = (
    ("heap free", "KB", lambda h: h.heap_free_bytes / 1024),
    ("flash used (journal)", "KB", lambda h: h.flash_used_bytes / 1024),
    ("link errors", "frames", lambda h: sum(h.frames_rejected.values())),
    ("alerts pending", "", lambda h: h.alerts_pending),
)
SPARKS = "▁▂▃▄▅▆▇█"


class BadRecording(RibatError):
    """A file that is not a telemetry recording (`ribat telemetry record`)."""


def read_recording(path: Path) -> list[TelemetryFrame]:
    """The frames of a recording, CSV or JSON lines, as `record` writes them."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise BadRecording(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        if text.startswith("{"):
            return [_from_json(json.loads(line)) for line in text.splitlines() if line.strip()]
        return [_from_row(row) for row in csv.DictReader(io.StringIO(text))]
    except (ValueError, KeyError, TypeError):
        raise BadRecording(
            f"{path} is not a telemetry recording: make one with `ribat telemetry record`"
        ) from None


def _from_json(doc: dict) -> TelemetryFrame:
    h = doc["health"]
    return TelemetryFrame(datetime.fromisoformat(doc["received"]), doc["seq"], Health(**h))


def _from_row(row: dict) -> TelemetryFrame:
    values: dict[str, object] = {}
    for name, hint in _health_types().items():
        if name == "frames_rejected":
            values[name] = {c: int(row[f"rejected_{c}"]) for c in codec.CAUSES}
            continue
        text = row[name]
        kinds = typing.get_args(hint) or (hint,)
        if text == "":
            values[name] = None
        else:
            values[name] = int(text) if int in kinds else float(text) if float in kinds else text
    return TelemetryFrame(datetime.fromisoformat(row["received"]), int(row["seq"]),
                          Health(**values))  # type: ignore[arg-type]  # fmt: skip


@functools.cache
def _health_types() -> dict:
    return typing.get_type_hints(Health)


def sparkline(values: list[float], width: int) -> str:
    """values as one line of width block characters (the mean of each column's share)."""
    if not values:
        return ""
    cols = [values[i * len(values) // width : (i + 1) * len(values) // width or None]
            for i in range(min(width, len(values)))]  # fmt: skip
    means = [sum(c) / len(c) for c in cols if c]
    low, high = min(means), max(means)
    span = (high - low) or 1.0
    return "".join(SPARKS[int((m - low) / span * (len(SPARKS) - 1))] for m in means)


def chart_lines(frames: list[TelemetryFrame], width: int = 60) -> list[str]:
    """The recording as a compact chart for a terminal: per series, its sparkline, its
    range and its last value."""
    if not frames:
        return ["no frames"]
    first, last = frames[0].received, frames[-1].received
    lines = [f"{len(frames)} frames, {iso(first)} to {iso(last)}"]
    for title, unit, of in SERIES:
        values = [of(f.health) for f in frames]
        unit = f" {unit}" if unit else ""
        lines.append(
            f"{title:>21}  {sparkline(values, width)}  {min(values):.0f}-{max(values):.0f}"
            f"{unit}, now {values[-1]:.0f}"
        )
    return lines


def plot_png(frames: list[TelemetryFrame], out: Path, title: str) -> None:
    """The recording as a picture: one panel per series over time (matplotlib, if the
    `plot` extra is installed)."""
    try:
        import matplotlib
    except ImportError:
        raise Unsupported(
            "a picture needs matplotlib: pip install 'ribat[plot]' (the terminal chart "
            "needs nothing: leave out --out)"
        ) from None
    matplotlib.use("Agg")  # no display: a file
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    from ribat.files import write_whole

    times = [f.received for f in frames]
    fig, axes = plt.subplots(len(SERIES), 1, sharex=True, figsize=(10, 2.2 * len(SERIES)))
    for ax, (name, unit, of) in zip(axes, SERIES, strict=True):
        ax.plot(times, [of(f.health) for f in frames], drawstyle="steps-post")
        ax.set_ylabel(f"{name}\n({unit})" if unit else name)
        ax.grid(alpha=0.3)
    locator = mdates.AutoDateLocator()
    axes[-1].xaxis.set_major_locator(locator)
    axes[-1].xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    axes[0].set_title(title)
    axes[-1].set_xlabel("time (UTC)")
    fig.tight_layout()
    picture = io.BytesIO()
    fig.savefig(picture, format="png", dpi=100)
    plt.close(fig)
    write_whole(out, picture.getvalue())
