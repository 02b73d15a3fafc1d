"""The node's heap through a duty officer's long session, on the virtual Pico and Pico W
(their heap sizes, 64-bit objects: tighter than the real 32-bit boards):

    .venv/bin/python bench/session_heap.py [pico|pico-w ...]

One provisioned node per board, alone in its cell; free heap (after a collection, as the
node's `status` reports it) locked at boot, unlocked, after each of five 500-byte posts
and three 2 KB posts in one session, and locked again. Printed, never asserted: the
tests hold the behaviour (tests/test_journal.py, the Pico W's long session).
"""

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from journal import PIN, node  # the bench's provisioned virtual board

from ribat import sim
from ribat.authority.cell import Cell
from ribat.device.client import NodeClient, connect
from ribat.errors import DeviceError
from ribat.ops import guard
from ribat.ops import journal as lib

BODIES = (500,) * 5 + (2000,) * 3


def free_kb(client: NodeClient) -> str:
    return f"{client.request('status')['heap_free'] / 1024:.1f}"


def session(kind: str, cell: Cell) -> None:
    board = node(f"heap-{kind}", cell, "MA", kind=kind)
    try:
        with connect(board.device) as client:
            guard.load_roster(client, cell.signed_roster())
            line = [f"locked {free_kb(client)}"]
            guard.unlock(client, PIN)
            line.append(f"unlocked {free_kb(client)}")
            for n in BODIES:
                try:
                    lib.post(client, "notice", "routine", [], "t", "b" * n, 3600, [])
                    line.append(f"{n} B {free_kb(client)}")
                except DeviceError:
                    line.append(f"{n} B refused")
            guard.lock(client)
            line.append(f"locked {free_kb(client)}")
        print(f"{kind:7s} KB free: " + ", ".join(line))
    finally:
        sim.stop(board.name, erase=True)


def main() -> None:
    home = tempfile.mkdtemp(prefix="ribat-bench-heap-")
    os.environ["RIBAT_HOME"] = home
    for kind in sys.argv[1:] or ["pico", "pico-w"]:
        session(kind, Cell.create(Path(home) / f"cell-{kind}"))  # each alone in its cell


if __name__ == "__main__":
    main()
