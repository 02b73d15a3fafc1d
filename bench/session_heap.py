"""The node's heap through a duty officer's long session, on the virtual Pico and Pico W
(their heap sizes, 64-bit objects: tighter than the real 32-bit boards):

    .venv/bin/python bench/session_heap.py [pico|pico-w ...]

One provisioned node per board, alone in its cell; free heap (after a collection, as the
node's `status` reports it) locked at boot, unlocked, after each of five 500-byte posts
and three 2 KB posts in one session, and locked again. Printed, never asserted: the
tests hold the behaviour (tests/test_journal.py, the Pico W's long session).
"""

import os
import subprocess
import sys
import tempfile

from ribat import deploy, guard, sim
from ribat import journal as lib
from ribat.errors import DeviceError
from ribat.node import NodeClient, connect

PIN = "246810"
BODIES = (500,) * 5 + (2000,) * 3


def ribat(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ribat", *args], capture_output=True, text=True, env=os.environ
    )
    if done.returncode:
        raise SystemExit(f"ribat {' '.join(args)}: {done.stderr.strip()}")


def free_kb(client: NodeClient) -> str:
    return f"{client.request('status')['heap_free'] / 1024:.1f}"


def session(board: str, home: str) -> None:
    name = f"heap-{board}"
    node = sim.start(name, board)
    try:
        deploy.deploy(node.device)
        ribat("provision", "-p", node.device, "--partner", "MA", "--name", name, "--pin", PIN)
        ident = os.path.join(home, f"{name}.json")
        ribat("identity", "export", "-p", node.device, "--out", ident)
        ribat("cell", "roster", "add", ident)
        ribat("cell", "load", "-p", node.device)
        with connect(node.device) as client:
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
        print(f"{board:7s} KB free: " + ", ".join(line))
    finally:
        sim.stop(name, erase=True)


def main() -> None:
    home = tempfile.mkdtemp(prefix="ribat-bench-heap-")
    os.environ["RIBAT_HOME"] = home
    os.environ["RIBAT_CELL"] = os.path.join(home, "cell")
    ribat("cell", "init", os.environ["RIBAT_CELL"])
    for board in sys.argv[1:] or ["pico", "pico-w"]:
        session(board, home)


if __name__ == "__main__":
    main()
