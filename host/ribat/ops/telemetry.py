"""Telemetry on the host: frames from the node's events, loss counting, CSV and JSONL.

A node numbers its events; a gap in the numbers is a frame lost on the way.
"""

import csv
import dataclasses
import json
import time
from typing import IO

from ribat import codec
from ribat.results import Health, TelemetryFrame, iso, to_json

# A CSV row: the host's time, the event's number, then the node's health (ribat.results),
# its rejections spread over a column per cause.
HEALTH = [f.name for f in dataclasses.fields(Health) if f.name != "frames_rejected"]
FIELDS = ["received", "seq", *HEALTH, *(f"rejected_{cause}" for cause in codec.CAUSES)]
FORMATS = ("csv", "jsonl")


def frame(event: dict, received: float | None = None) -> TelemetryFrame:
    """A telemetry event as the frame it tells, stamped with the host's time."""
    return TelemetryFrame.from_node(event, time.time() if received is None else received)


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
