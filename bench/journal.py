"""The journal on virtual Picos (their heap, flash and link speed), through the protocol as
`ribat post` and `ribat journal import` use it:

    .venv/bin/python bench/journal.py [BODY_BYTES] [--updated] [--before REV]

Two nodes of two partners in one cell; one posts bulletins with a 500-byte body released
to both until its flash is full, timing posts at 10, 1,000 and a full flash; the other
imports them all, timed the same way; then each is power-cycled full to time its boot.
Printed, never asserted. The RP2040 estimate scales each time by the pi-digits anchor of
bench/security.py, run side by side on the same interpreter: it scales the link and the
host's share as if they were interpreted too, so it overstates. With --before REV, the same
run on two more nodes with the firmware of git revision REV (`git archive`), printed in
a column beside: the change since REV, on the same host in the same run (the emulated
chip's figures, in its own clock, are bench/chip.py --node's).
"""

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import security

from ribat import deploy, entry, sim
from ribat.authority.cell import Cell
from ribat.device import boards
from ribat.device.client import NodeClient, connect
from ribat.device.transport import Port
from ribat.errors import DeviceError
from ribat.ops import guard
from ribat.ops import journal as lib

PIN = "bench-246810"
WINDOW = 10  # posts or entries timed together at each point


def node(
    name: str,
    cell: Cell,
    partner: str,
    updated: bool = False,
    kind: str = "pico",
    firmware: Path | None = None,
) -> sim.Sim:
    """A virtual board (a Pico unless kind names another) with the firmware (deployed
    twice if updated; firmware: another tree than this checkout's), provisioned in cell
    under PIN; the roster is the caller's."""
    board = sim.start(name, kind)
    deploy.deploy(board.device, source=firmware)
    if updated:
        source = Path(tempfile.mkdtemp(prefix="ribat-fw-")) / "firmware"
        shutil.copytree(firmware or boards.firmware_dir(), source)
        with open(source / "ribat" / "link.py", "a") as f:
            f.write("\nUPDATED = 1\n")
        deploy.deploy(board.device, source=source)
    with connect(board.device) as client:
        guard.provision(client, cell, partner, name, PIN)
        cell.add(guard.exported_identity(client))
    return board


def boot_s(board: sim.Sim) -> float:
    sim.power_cycle(board.name)
    t = time.perf_counter()
    with NodeClient(Port(board.device)) as client:
        client.wait_ready(timeout=60)
    return time.perf_counter() - t


def scaled(ms: float, anchor_ms: float) -> str:
    return (
        f"{ms:7.1f} ms  (RP2040 about {ms / anchor_ms * security.RP2040_ANCHOR_MS / 1000:5.2f} s)"
    )


def firmware_at(rev: str) -> Path:
    """The firmware tree of git revision rev, in a folder of its own."""
    root = Path(__file__).resolve().parents[1]
    tar = subprocess.run(
        ["git", "-C", str(root), "archive", "--format=tar", rev, "firmware"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    out = Path(tempfile.mkdtemp(prefix="ribat-before-"))
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(out, filter="data")
    return out / "firmware"


def run(body: str, updated: bool, firmware: Path | None, tag: str) -> dict:
    """Post until the flash is full, import it all, boot each node: the figures."""
    cell = Cell.create(Path(os.environ["RIBAT_HOME"]) / f"cell{tag}")
    ma = node(f"rabat{tag}", cell, "MA", updated, firmware=firmware)
    fr = node(f"paris{tag}", cell, "FR", firmware=firmware)
    try:
        for board in (ma, fr):
            with connect(board.device) as client:
                guard.load_roster(client, cell.signed_roster())
        empty_boot = boot_s(fr)

        post_ms: dict[int, float] = {}
        with connect(ma.device) as client:
            guard.unlock(client, PIN)
            heap_unlocked = client.request("status")["heap_used"]
            n = 0
            window: list[float] = []
            try:
                while True:
                    t = time.perf_counter()
                    lib.post(client, "notice", "routine", ["FR"], "bench", body, 86400, [])
                    window.append((time.perf_counter() - t) * 1000)
                    n += 1
                    if n in (10, 1000) or (n > 20 and n % 100 == 0):
                        post_ms[n] = sum(window[-WINDOW:]) / len(window[-WINDOW:])
            except DeviceError as e:
                if "journal is full" not in str(e):
                    raise
            post_ms[n] = sum(window[-WINDOW:]) / WINDOW
            info = lib.status(client)
            heap_full = client.request("status")["heap_used"]
            raws = lib.export(client, {})
            guard.lock(client)
        full_boot = boot_s(ma)

        # import at the same points: the entries in windows, timed per entry
        import_ms: dict[int, float] = {}
        raws.sort(key=lambda raw: entry.Header(raw).seq)
        with connect(fr.device) as client:
            done = 0
            marks = sorted({10, 1000, len(raws)} & set(range(1, len(raws) + 1)))
            for mark in marks:
                start = max(done, mark - WINDOW)
                if start > done:
                    lib.import_entries(client, raws[done:start], "bench")
                t = time.perf_counter()
                got = lib.import_entries(client, raws[start:mark], "bench")
                import_ms[mark] = (time.perf_counter() - t) * 1000 / (mark - start)
                assert {o for _, o in got} <= {"stored"}, got
                done = mark
            heap_import = client.request("status")["heap_used"]
    finally:
        for board in (ma, fr):
            sim.stop(board.name, erase=True)
    return {
        "full": n, "post_ms": post_ms, "import_ms": import_ms, "info": info,
        "entry_bytes": sum(map(len, raws)) / len(raws), "empty_boot": empty_boot,
        "full_boot": full_boot, "heap": (heap_unlocked, heap_full, heap_import),
    }  # fmt: skip


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    before_rev = None
    if "--before" in sys.argv:
        before_rev = sys.argv[sys.argv.index("--before") + 1]
        args.remove(before_rev)
    # The body's length: 500 by default; `bench/journal.py 185` gives bulletins whose
    # whole entry (header, two wraps, sealed text) is 500 bytes.
    body = "x" * int(args[0] if args else 500)
    # --updated: the posting node has had a firmware update first, so it holds both
    # slots, as a node in service does after its first update
    updated = "--updated" in sys.argv
    home = tempfile.mkdtemp(prefix="ribat-bench-")
    os.environ["RIBAT_HOME"] = home
    anchor = security.run("anchor", security.PICO_HEAP, 10)
    assert anchor is not None
    anchor_ms = anchor["us"] / 1000
    now = run(body, updated, None, "")
    before = run(body, updated, firmware_at(before_rev), "-before") if before_rev else None

    def points(r: dict, section: str) -> list[tuple[int, float]]:
        """A run's (point, ms) of post_ms (at 10, 1,000 and full) or import_ms."""
        got = sorted(r[section].items())
        return [kv for kv in got if section == "import_ms" or kv[0] in (10, 1000, r["full"])]

    print(f"anchor: {security.ANCHOR_DIGITS} pi digits in {anchor_ms:.2f} ms here")
    if before_rev:
        print(f"before: the firmware of {before_rev}, on two more virtual Picos in this run")
    for section, title, unit in (
        ("post_ms", f"post ({len(body)}-byte body, 2 readers), mean of {WINDOW}:", "bulletins"),
        ("import_ms", f"import, per entry, in runs of {WINDOW}:", "entries"),
    ):
        print(title)
        old = points(before, section) if before else []
        for i, (k, ms) in enumerate(points(now, section)):
            then = f"   (before {old[i][1]:7.1f} ms at {old[i][0]})" if i < len(old) else ""
            print(f"  at {k:5d} {unit}: {scaled(ms, anchor_ms)}{then}")
    info = now["info"]
    print(
        f"full after {now['full']} bulletins{' (both slots held)' if updated else ''}: "
        f"entry {now['entry_bytes']:.0f} bytes on average "
        f"(+156-byte record), {info.flash_free_bytes // 1024} KB left free, "
        f"{info.flash_reserved_bytes // 1024} KB of it kept for a deploy"
        + (f" (before: full after {before['full']})" if before else "")
    )
    print(f"boot: {now['empty_boot']:.2f} s with an empty journal, {now['full_boot']:.2f} s full")
    heap_unlocked, heap_full, heap_import = now["heap"]
    print(
        f"heap in use: {heap_unlocked / 1024:.0f} KB unlocked, {heap_full / 1024:.0f} KB "
        f"unlocked with a full journal, {heap_import / 1024:.0f} KB after importing it all "
        f"(of {security.PICO_HEAP // 1024} KB)"
    )
    spread = max(now["post_ms"].values()) / min(now["post_ms"].values())
    points_n = len(now["post_ms"])
    print(f"post time, slowest window over fastest: {spread:.2f}x across {points_n} points")


if __name__ == "__main__":
    main()
