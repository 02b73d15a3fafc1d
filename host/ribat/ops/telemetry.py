"""Telemetry on the host: rows from the node's events, loss counting, CSV and JSONL.

A node numbers its events; a gap in the numbers is a frame lost on the way.
"""

import csv
import json
import time
from datetime import UTC, datetime
from typing import IO

from ribat import codec, schema

# A row: the host's time, the event's number, then the node's sample (ribat.schema), its
# rejections spread over a column per cause.
FIELDS = [
    "time",
    "seq",
    *(name for name in schema.TELEMETRY if name != "rx_rejected"),
    *(f"rejected_{cause}" for cause in codec.CAUSES),
]
FORMATS = ("csv", "jsonl")


def row(event: dict, received: float | None = None) -> dict:
    """One flat record: the event's fields, rejections by cause, and the host's time."""
    stamp = datetime.fromtimestamp(received or time.time(), UTC)
    out: dict[str, object] = {"time": stamp.isoformat(timespec="milliseconds")}
    out["seq"] = event.get("seq")
    for name in schema.TELEMETRY:
        if name != "rx_rejected":
            out[name] = event.get(name)
    rejected = event.get("rx_rejected") or []
    for i, cause in enumerate(codec.CAUSES):
        out[f"rejected_{cause}"] = rejected[i] if i < len(rejected) else 0
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
    """Writes rows as CSV (with a header) or JSON lines, each line whole and flushed."""

    def __init__(self, out: IO[str], fmt: str) -> None:
        self.out = out
        self.fmt = fmt
        self.writer = csv.DictWriter(out, FIELDS, lineterminator="\n") if fmt == "csv" else None
        if self.writer is not None:
            self.writer.writeheader()

    def write(self, record: dict) -> None:
        if self.writer is not None:
            self.writer.writerow(record)
        else:
            self.out.write(json.dumps(record) + "\n")
        self.out.flush()
