"""Replication on four virtual Picos of four partners (their heap, flash and link pace):

    .venv/bin/python bench/sync.py [OFFLINE]

1. one bulletin posted on the Moroccan node, then the cell converged through this host
   (`ribat sync` from it to each of the three others), through a real mosquitto on
   loopback with a gateway per node; and over virtual wires (a chain rabat - paris -
   madrid - brussels, at 115200 baud's pace) with no host in the loop;
2. OFFLINE bulletins (default 1,000) posted while the Spanish and Belgian nodes are away:
   the Belgian one catches up over the host relay, the Spanish one over the broker with
   only its own gateway running (the Moroccan one published, then went away too), and a
   fifth node (Lisbon, a partner the bulletins are not released to) over a wire from
   brussels;
3. bytes that crossed the host's serial links and the wire per bulletin, against the
   entry's own size, and each sync's throughput against its link's rate.
Printed, never asserted.
"""

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from journal import PIN, node  # the bench's provisioned virtual Pico

from ribat import sim
from ribat.authority.cell import Cell
from ribat.device import boards
from ribat.device.client import connect
from ribat.gateway.broker import parse_broker, summaries
from ribat.ops import guard
from ribat.ops import journal as lib
from ribat.ops import sync as relay
from ribat.simcell import broker as sim_broker

OFFLINE = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
BODY = "x" * 500
PARTNERS = (("MA", "rabat"), ("FR", "paris"), ("ES", "madrid"), ("BE", "brussels"))
AWAY = ("PT", "lisbon")  # not a reader of the bulletins: their size stays that of four


def link_bytes(*nodes: sim.Sim) -> int:
    """Bytes that crossed these virtual boards' serial links so far, both ways (the
    supervisor counts them)."""
    total = 0
    for n in nodes:
        stats = sim.control(n.name, {"op": "status"})
        total += stats["bytes_in"] + stats["bytes_out"]
    return total


def vector(board: sim.Sim) -> dict:
    with connect(board.device) as client:
        return dict(relay.hello(client)["vector"])


def post(board: sim.Sim, n: int) -> None:
    with connect(board.device) as client:
        guard.unlock(client, PIN)
        for _ in range(n):
            lib.post(client, "notice", "routine", ["FR", "ES", "BE"], "bench", BODY, 86400, [])
        guard.lock(client)


def sync_pair(a: sim.Sim, b: sim.Sim) -> None:
    with connect(a.device) as ca, connect(b.device) as cb:
        relay.sync(ca, cb)


def gateways(nodes: list[sim.Sim], url: str) -> list[subprocess.Popen]:
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ribat",
                "gateway",
                "-p",
                n.device,
                "--broker",
                url,
                "--interval",
                "0.2",
            ],
            stderr=subprocess.DEVNULL,
        )
        for n in nodes
    ]


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(10)


def wire_bytes(*nodes: sim.Sim) -> int:
    """Bytes the virtual boards' wires carried so far, both ways."""
    return sum(sim.control(n.name, {"op": "status"})["wire_sent"] for n in nodes)


def wire_overrun(*nodes: sim.Sim) -> int:
    """Bytes that reached a board's wire while it held its UART's buffer's worth unread
    (a real board's would have lost them; the virtual board runs faster than one)."""
    return sum(sim.control(n.name, {"op": "status"})["wire_overrun"] for n in nodes)


def all_hold(nodes: list[sim.Sim], want: dict) -> float:
    """Seconds until every node holds want (they sync by themselves: wires)."""
    t = time.perf_counter()
    while not all(vector(n) == want for n in nodes):
        if time.perf_counter() - t > 900:
            return float("nan")
        time.sleep(0.1)
    return time.perf_counter() - t


def converged(cell: Cell, url: str, fps: list[str], want: dict) -> float:
    """Seconds until every node's published summary shows want."""
    host, port = parse_broker(url)
    t = time.perf_counter()
    while True:
        docs = summaries(host, port, cell.id, wait_s=0.2)
        if all(docs.get(fp, {}).get("vector") == want for fp in fps):
            return time.perf_counter() - t
        if time.perf_counter() - t > 600:
            return float("nan")


def main() -> None:
    home = tempfile.mkdtemp(prefix="ribat-bench-")
    os.environ["RIBAT_HOME"] = home
    cell = Cell.create(Path(home) / "cell")
    nodes = [node(name, cell, partner) for partner, name in PARTNERS]
    lisbon = node(AWAY[1], cell, AWAY[0])
    broker = sim_broker.start(Path(home) / "broker", acl=False)
    url = broker.url
    try:
        for board in [*nodes, lisbon]:
            with connect(board.device) as client:
                guard.load_roster(client, cell.signed_roster())
        fps = []
        for board in nodes:
            with connect(board.device) as client:
                fps.append(relay.hello(client)["fp"])
        ma, *others = nodes
        be = nodes[-1]

        # 1. one post, host relay then broker
        post(ma, 1)
        t = time.perf_counter()
        for other in others:
            sync_pair(ma, other)
        relay_one = time.perf_counter() - t
        post(ma, 1)
        want = vector(ma)
        procs = gateways(nodes, url)
        broker_one = converged(cell, url, fps, want)
        stop(procs)

        # 2. OFFLINE bulletins while madrid and brussels are away (a Pico holds ~1,050
        # of these: four readers each): brussels catches up through this host, madrid
        # through the broker, from rabat's retained entries once rabat went away too
        es = nodes[2]
        post(ma, OFFLINE)
        sync_pair(ma, others[0])
        sizes = [len(r) for r in _entries(ma, vector(be))]
        before = link_bytes(ma, be)
        t = time.perf_counter()
        sync_pair(ma, be)
        relay_offline = time.perf_counter() - t
        relay_bytes = link_bytes(ma, be) - before
        want = vector(ma)
        procs = gateways([ma], url)
        converged(cell, url, [fps[0]], want)
        time.sleep(1)
        stop(procs)
        procs = gateways([es], url)
        broker_offline = converged(cell, url, [fps[2]], want)
        stop(procs)
        before = wire_bytes(be, lisbon)
        overrun = wire_overrun(be, lisbon)
        sim.wire(be.name, lisbon.name)
        wire_offline = all_hold([lisbon], want)
        wire_total = wire_bytes(be, lisbon) - before
        overrun = wire_overrun(be, lisbon) - overrun
        sim.unwire(be.name)
        # last: a node in the middle of a chain keeps two wires' worth of heap (README)
        for a, b in itertools.pairwise(nodes):  # a chain: a Pico has two UARTs
            sim.wire(a.name, b.name)
        post(ma, 1)
        wire_one = all_hold(nodes, vector(ma))

        rate = boards.load("virtual-rp2-pico").link_bytes_per_s
        entry_bytes = sum(sizes) / len(sizes)
        print(
            f"four virtual Picos (link {rate / 1000:.0f} KB/s each way), "
            f"{len(BODY)}-byte bodies released to all four partners"
        )
        print(
            f"one bulletin to all four: host relay {relay_one:.2f} s (3 syncs), "
            f"broker {broker_one:.2f} s, wires (a chain: three hops) {wire_one:.2f} s"
        )
        print(
            f"{OFFLINE} bulletins to a node that was away: host relay {relay_offline:.1f} s, "
            f"broker (its gateway alone) {broker_offline:.1f} s, wire {wire_offline:.1f} s"
        )
        print(
            f"host relay bytes on the two serial links per bulletin: {relay_bytes / OFFLINE:.0f} "
            f"for an entry of {entry_bytes:.0f} ({relay_bytes / OFFLINE / entry_bytes / 2:.2f}x "
            "per link: base64 framing and the frames around the entries)"
        )
        print(
            f"wire bytes per bulletin: {wire_total / OFFLINE:.0f} for an entry of "
            f"{entry_bytes:.0f} ({wire_total / OFFLINE / entry_bytes:.2f}x)"
        )
        per_link = relay_bytes / 2 / relay_offline
        print(
            f"host relay throughput: {per_link / 1000:.1f} KB/s per link, "
            f"{per_link / rate * 100:.0f}% of the link's rate"
        )
        uart = boards.load("virtual-rp2-pico").wire_bytes_per_s
        per_wire = wire_total / wire_offline
        print(
            f"wire throughput: {per_wire / 1000:.2f} KB/s, {per_wire / uart * 100:.0f}% of "
            f"a 115200-baud UART's {uart / 1000:.2f} KB/s; bytes that came to a wire while "
            f"its board held its UART buffer's worth unread: {overrun}"
        )
    finally:
        broker.stop()
        for board in [*nodes, lisbon]:
            sim.stop(board.name, erase=True)
        shutil.rmtree(home, ignore_errors=True)


def _entries(board: sim.Sim, since: dict) -> list[bytes]:
    with connect(board.device) as client:
        return lib.export(client, since)


if __name__ == "__main__":
    main()
