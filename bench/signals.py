"""Weak signals: what they cost the node, the link and the duty officer's wait.

    .venv/bin/python bench/signals.py [RUNS]

- tokens: one indicator's tokens for a cell of four (three peers, two periods: six period
  keys by HKDF and six HMACs) under MicroPython at a Pico's heap, beside the pi-digits
  anchor of bench/security.py in the same process, and scaled to an RP2040 by it;
- bytes: what 0, 1, 2 and 4 indicators add on flash and on every link: the bulletin's
  sealed content, and the public signal entry beside it;
- convergence: four virtual Picos of four partners, a real mosquitto on loopback and a
  gateway per node (their default interval): from the start of the second report's post
  to both nodes holding the convergence, RUNS times (default 3), each with a new number.

Printed, never asserted.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import security  # the RP2040 scale
from journal import PIN, node  # the bench's provisioned virtual Pico

from ribat import sim
from ribat.authority.cell import Cell
from ribat.device.client import NodeClient, connect
from ribat.errors import PortBusy
from ribat.ops import guard
from ribat.ops import journal as lib
from ribat.simcell import broker as sim_broker

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
ROOT = Path(__file__).resolve().parents[1]

TOKENS = r"""
import time
from ribat import indicators as I

%s
def best(f, n):
    b = 1 << 30
    for _ in range(n):
        t = time.ticks_us(); f(); b = min(b, time.ticks_diff(time.ticks_us(), t))
    return b

pairs = [bytes([i]) * 32 for i in range(3)]
def one_indicator():
    v = I.normalise("phone", "+212 6 12 34 56 78", "MA")
    for key in pairs:
        for p in (100, 99):
            I.token(I.period_key(key, p), "phone", v)
print(best(lambda: pi_digits(%d), 10), best(one_indicator, 10))
"""


def token_cost() -> tuple[float, float]:
    """(ms here, ms estimated on an RP2040) for one indicator's tokens in a cell of four."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "tokens.py"
        script.write_text(TOKENS % (security.PI_DIGITS, security.ANCHOR_DIGITS))
        done = subprocess.run(
            [sys.executable, "-m", "micropython_unix", "-X", f"heapsize={security.PICO_HEAP}",
             str(script)],
            capture_output=True, text=True, check=True,
            env={**os.environ, "MICROPYPATH": str(ROOT / "firmware")},
        )  # fmt: skip
    anchor_us, tokens_us = map(int, done.stdout.split())
    return tokens_us / 1000, tokens_us / anchor_us * security.RP2040_ANCHOR_MS


def between_rounds(device: str) -> NodeClient:
    while True:
        try:
            return connect(device)
        except PortBusy:
            time.sleep(0.05)


def convergences(device: str) -> int:
    with between_rounds(device) as client:
        return len(client.request("signals.list")["conv"])


def report(device: str, number: str) -> str:
    with between_rounds(device) as client:
        guard.unlock(client, PIN)
        assert client.info is not None
        try:
            return lib.post(client, "notice", "routine", [client.info.partner],
                            "seen", "", 86400, [], [["phone", number]])["id"]  # fmt: skip
        finally:
            guard.lock(client)


def main() -> None:
    here, rp2040 = token_cost()
    print(
        f"tokens of one indicator, cell of four (6 HKDF + 6 HMAC): {here:.2f} ms here, "
        f"about {rp2040:.0f} ms on an RP2040 ({6 / rp2040 * 1000:.0f} tokens/s)"
    )
    home = tempfile.mkdtemp(prefix="ribat-bench-signals-")
    os.environ["RIBAT_HOME"] = home
    cell = Cell.create(Path(home) / "cell")
    places = (("MA", "rabat"), ("FR", "paris"), ("ES", "madrid"), ("BE", "brussels"))
    boards = [node(name, cell, partner) for partner, name in places]
    broker = sim_broker.start(Path(home) / "broker", acl=False)
    gateways: list[subprocess.Popen] = []
    try:
        for b in boards:
            with connect(b.device) as client:
                guard.load_roster(client, cell.signed_roster())
        ma, _, es, _ = boards
        # bytes: the same post with 0, 1, 2, 4 indicators
        with connect(ma.device) as client:
            guard.unlock(client, PIN)
            sizes = {}
            for n in (0, 1, 2, 4):
                before = client.request("status")["records"]
                found = [["phone", f"+2126123456{i:02d}"] for i in range(n)]
                lib.post(client, "notice", "routine", ["MA"], "t", "b" * 200, 3600, [], found)
                got, _ = lib.records_after(client, before - 1)
                sizes[n] = [149 + item["size"] for item in got]
            guard.lock(client)
        base = sizes[0][0]
        for n in (1, 2, 4):
            bulletin, signal = sizes[n]
            print(f"{n} indicator(s): the bulletin {bulletin - base:+d} bytes "
                  f"({bulletin}), and a signal entry of {signal} bytes")  # fmt: skip
        gateways = [
            subprocess.Popen(
                [sys.executable, "-m", "ribat", "gateway", "-p", b.device, "--broker", broker.url],
                stderr=subprocess.DEVNULL,
            )
            for b in boards
        ]
        time.sleep(3)
        waits = []
        for i in range(RUNS):
            number = f"+21261999{i:04d}"
            have = convergences(ma.device), convergences(es.device)
            report(ma.device, number)
            time.sleep(5)  # the first report reaches the cell
            t0 = time.perf_counter()
            report(es.device, number)
            while (convergences(ma.device), convergences(es.device)) != (have[0] + 1, have[1] + 1):
                time.sleep(0.1)
            waits.append(time.perf_counter() - t0)
        print(
            f"second report to both convergences over the broker: median "
            f"{statistics.median(waits):.2f} s, worst {max(waits):.2f} s ({RUNS} runs)"
        )
    finally:
        for proc in gateways:
            proc.terminate()
            proc.wait(10)
        broker.stop()
        for b in boards:
            sim.stop(b.name, erase=True)


if __name__ == "__main__":
    main()
