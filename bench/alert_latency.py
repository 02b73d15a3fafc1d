"""How fast an alert reaches the duty officer, and the acknowledgement its author, on
three virtual Picos of three partners (their heap, flash and link pace):

    .venv/bin/python bench/alert_latency.py [RUNS]

For each path, RUNS times (default 8): a flash bulletin posted on rabat (MA) for paris
(FR), timed from the post's start to paris's LED blinking the flash pattern (its panel,
looked at every 50 ms), then paris's button pressed, timed to rabat holding paris's
signed acknowledgement. Paris is on watch (unlocked) throughout.

- host relay: this host syncs rabat and paris at once after the post, and after the press;
- broker: a real mosquitto on loopback, `ribat gateway` on rabat, `ribat watch --broker`
  on paris (its console bridges it), both with their default intervals;
- wires: rabat - madrid - paris, a chain of two hops at 115200 baud's pace, no host.

Median and 95th percentile, and the anchor measured in the same run: one `journal.post`
request on rabat (signing included), so that the figures read as multiples of the
node's own work. Printed, never asserted.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from journal import PIN, node  # the bench's provisioned virtual Pico

from ribat import sim
from ribat.authority.cell import Cell
from ribat.device.client import NodeClient, connect
from ribat.errors import PortBusy
from ribat.ops import guard
from ribat.ops import journal as lib
from ribat.ops import sync as relay
from ribat.simcell import broker as sim_broker

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 8
LOOK_S = 0.05
TIMEOUT_S = 120.0


def flashing(name: str) -> float:
    """When board name's LED started the flash pattern (10 changes a second): the first
    of three changes within 0.35 s."""
    changes: list[tuple[float, int]] = []
    deadline = time.perf_counter() + TIMEOUT_S
    while time.perf_counter() < deadline:
        n = sim.control(name, {"op": "status"})["led_changes"]
        now = time.perf_counter()
        if not changes or n != changes[-1][1]:
            changes.append((now, n))
        recent = [t for t, _ in changes if now - t <= 0.35]
        if len(recent) >= 3:
            return recent[0]
        time.sleep(LOOK_S)
    raise TimeoutError(f"{name}'s LED did not flash within {TIMEOUT_S} s")


def until(check: Callable[[], bool]) -> float:
    deadline = time.perf_counter() + TIMEOUT_S
    while not check():
        if time.perf_counter() > deadline:
            raise TimeoutError("not within the bench's timeout")
        time.sleep(LOOK_S)
    return time.perf_counter()


def between_rounds(board: sim.Sim) -> NodeClient:
    """board's port, once its gateway lets go of it between two rounds."""
    while True:
        try:
            return connect(board.device)
        except PortBusy:
            time.sleep(LOOK_S)


def records(client: NodeClient) -> int:
    return int(client.request("status")["records"])


def grown(on: "NodeClient | sim.Sim", past: int) -> Callable[[], bool]:
    """Whether the node (a held client, or a board whose port a gateway shares) holds
    more than past records."""

    def check() -> bool:
        if isinstance(on, NodeClient):
            return records(on) > past
        with between_rounds(on) as client:
            return records(client) > past

    return check


def post_on(client: NodeClient, i: int) -> float:
    """Post the i-th flash bulletin for FR; when the post started."""
    t = time.perf_counter()
    lib.post(client, "alert", "flash", ["FR"], f"bench {i}", "now", 3600, [])
    return t


def summary(name: str, values: list[float], anchor: float) -> str:
    median = statistics.median(values)
    p95 = sorted(values)[max(0, round(0.95 * len(values)) - 1)]
    ratio = median / anchor
    return f"{name:<22} median {median:6.2f} s  p95 {p95:6.2f} s  ({ratio:5.1f}x the anchor)"


def main() -> None:
    home = tempfile.mkdtemp(prefix="ribat-bench-alert-")
    os.environ["RIBAT_HOME"] = home
    cell = Cell.create(Path(home) / "cell")
    places = (("MA", "rabat"), ("ES", "madrid"), ("FR", "paris"))
    ma, es, fr = (node(name, cell, partner) for partner, name in places)
    broker = sim_broker.start(Path(home) / "broker", acl=False)
    results: dict[str, tuple[list[float], list[float]]] = {}
    anchors: list[float] = []
    try:
        for board in (ma, es, fr):
            with connect(board.device) as client:
                guard.load_roster(client, cell.signed_roster())

        # the host relay: both ports held, both nodes unlocked
        with connect(ma.device) as rabat, connect(fr.device) as paris:
            guard.unlock(rabat, PIN)
            guard.unlock(paris, PIN)
            out, back = [], []
            for i in range(RUNS):
                t0 = post_on(rabat, i)
                anchors.append(time.perf_counter() - t0)
                relay.sync(rabat, paris)
                out.append(flashing(fr.name) - t0)
                have, signed = records(rabat), records(paris)
                t1 = time.perf_counter()
                sim.press(fr.name, 0.1)
                until(grown(paris, signed))  # its acknowledgement, signed
                relay.sync(paris, rabat)
                back.append(until(grown(rabat, have)) - t1)
            results["host relay"] = (out, back)

        # the broker: a gateway on rabat, a console bridging paris
        gateway = subprocess.Popen(
            [sys.executable, "-m", "ribat", "gateway", "-p", ma.device, "--broker", broker.url],
            stderr=subprocess.DEVNULL,
        )
        console = subprocess.Popen(
            [sys.executable, "-m", "ribat", "watch", "-p", f"sim:{fr.name}", "--pin", PIN,
             "--broker", broker.url, "--plain"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            time.sleep(3)  # the console unlocked paris; both bridged
            out, back = [], []
            for i in range(RUNS):
                t0 = time.perf_counter()
                with between_rounds(ma) as rabat:
                    guard.unlock(rabat, PIN)
                    lib.post(rabat, "alert", "flash", ["FR"], f"broker {i}", "now", 3600, [])
                    guard.lock(rabat)
                    have = records(rabat)
                out.append(flashing(fr.name) - t0)
                t1 = time.perf_counter()
                sim.press(fr.name, 0.1)
                back.append(until(grown(ma, have)) - t1)
            results["broker"] = (out, back)
        finally:
            for proc in (console, gateway):
                proc.terminate()
                proc.wait(10)

        # the wires: rabat - madrid - paris
        sim.wire(ma.name, es.name)
        sim.wire(es.name, fr.name)
        with connect(ma.device) as rabat, connect(fr.device) as paris:
            guard.unlock(rabat, PIN)
            guard.unlock(paris, PIN)
            time.sleep(5)  # the wires' first pulls: the chain is up
            out, back = [], []
            for i in range(RUNS):
                have = records(rabat) + 1
                t0 = post_on(rabat, 100 + i)
                out.append(flashing(fr.name) - t0)
                t1 = time.perf_counter()
                sim.press(fr.name, 0.1)
                paris.request("ping")  # the session is not idle
                back.append(until(grown(rabat, have)) - t1)
            results["wires (two hops)"] = (out, back)
    finally:
        broker.stop()
        for board in (ma, es, fr):
            sim.stop(board.name, erase=True)

    anchor = statistics.median(anchors)
    print(f"three virtual Picos, {RUNS} runs a path; anchor: one journal.post on rabat, "
          f"median {anchor:.2f} s")  # fmt: skip
    print("post on rabat -> paris's LED flashing:")
    for name, (out, _) in results.items():
        print("  " + summary(name, out, anchor))
    print("paris's button -> rabat holds the acknowledgement:")
    for name, (_, back) in results.items():
        print("  " + summary(name, back, anchor))


if __name__ == "__main__":
    main()
