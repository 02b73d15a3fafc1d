"""Cost of the node's security operations, on the virtual board's interpreter (MicroPython's
unix port) at the Pico's heap size, with an estimate for an RP2040 at 125 MHz.

    .venv/bin/python bench/security.py

Printed, never asserted. Each operation is timed side by side with the scaling anchor, on
fresh interpreters of the same build: a pi-digits spigot (Gibbons' algorithm, the one
MicroPython's perfbench bm_pidigits runs: big-integer arithmetic, like the curve code).
The RP2040 estimate is

    time on the RP2040 = (operation / anchor, here) x anchor time on an RP2040

with the anchor's RP2040 time from published perfbench figures: bm_pidigits scores 578.45
digits/s on an RP2350 at 150 MHz and bm_chaos 274.25 there against 152.00 on an RP2040
at 125 MHz (micropython/micropython PR #19352), so bm_pidigits on an RP2040 is about
578.45 x 152.00 / 274.25 = 320 digits/s: 65 digits take about 203 ms. The RP2040 has no
hardware multiplier wider than 32 bits and no divider for big integers: the scaling holds
for interpreted big-integer work, and overstates hashlib's (C) share, so PIN checks and
audit appends are overestimated, if anything.

The heap figures: "loaded" is the heap in use once the modules and the operation's inputs
are in place; "high-water" is the smallest heap, found by bisection over fresh
interpreters, in which the whole run (loading, inputs, the operation) still succeeds: an
upper bound on what the operation adds to a node. The Pico's heap is 192 KB
(boards/rp2-pico/board.json); the running node's own use is in `ribat status`.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PICO_HEAP = 196608
ANCHOR_DIGITS = 65
RP2040_ANCHOR_MS = ANCHOR_DIGITS / (578.45 * 152.00 / 274.25) * 1000

# The anchor: pi digits, big-integer work as the curves do (bench/signals.py too).
PI_DIGITS = r"""
def pi_digits(n):
    q, r, s, t, k, out = 1, 0, 0, 1, 1, 0
    while out < n:
        y = (3 * q + r) // (3 * s + t)
        if y == (4 * q + r) // (4 * s + t):
            out += 1
            q, r = 10 * q, 10 * (r - y * t)
            s *= 10
        else:
            a, b = 4 * k + 2, 2 * k + 1
            q, r, s, t = q * k, q * a + r * b, s * k, s * a + t * b
            k += 1
"""

# Runs under MicroPython. OP names the operation; REPEAT how often to time it; prints JSON.
PROGRAM = (
    r"""
import gc, json, os, time, vfs
from binascii import hexlify, unhexlify
from ribat import audit, ed25519, kdf, keywork, session, x25519

OP, REPEAT, IMAGE, REFERENCE = %r, %d, %r, %r
if REFERENCE:  # before the machine code: the curves in Python's integers (the host's)
    import sys
    sys.path.insert(0, REFERENCE)
    import ed25519, x25519

class FileFlash:  # littlefs on a file, as the virtual board's flash
    def __init__(self, path, blocks):
        self.f = open(path, "r+b"); self.blocks = blocks
    def readblocks(self, n, buf, off=0):
        self.f.seek(n * 4096 + off); self.f.readinto(buf)
    def writeblocks(self, n, buf, off=None):
        if off is None: off = 0
        self.f.seek(n * 4096 + off); self.f.write(buf)
    def ioctl(self, op, arg):
        if op == 4: return self.blocks
        if op == 5: return 4096
        if op == 6: return 0

"""
    + PI_DIGITS
    + r"""
# What each operation needs, made before it is measured (and before the heap is).
seed = os.urandom(32)
if OP in ("signature", "verification", "key agreement"):
    pub = ed25519.public_key(seed)
    peer = x25519.public_key(os.urandom(32)) if OP == "key agreement" else None
    sig = ed25519.sign(seed, b"m" * 200, pub) if OP == "verification" else None
if OP == "X25519":
    peer = x25519.public_key(os.urandom(32))
if OP == "PIN check":
    sealed = keywork.seal("493817", b"uid-of-a-board", bytes(64))
if OP in ("PIN key", "unlock"):  # the node's share of an unlock (ribat.session)
    class Keyring:
        pin_channel = None
    keyring = Keyring()
    offer = keywork.pin_key(keyring)
    channel = keyring.pin_channel
    mine = os.urandom(32)  # the host's side, made here once
    pin_key, mac_key = session.keys(
        x25519.x25519(mine, unhexlify(offer["kx"])), unhexlify(offer["nonce"]))
    request = {"kx": hexlify(x25519.public_key(mine)).decode(),
               "pin": hexlify(session.seal_pin(pin_key, b"pin", "493817")).decode()}
    sealed = keywork.seal("493817", b"uid-of-a-board", bytes(64))
if OP == "session MAC":
    args = json.dumps({"kind": "notice", "to": ["FR"], "title": "t", "body": "b" * 500})
log = None
if OP == "audit append":
    flash = FileFlash(IMAGE, 64)
    vfs.VfsLfs2.mkfs(flash)
    vfs.mount(vfs.VfsLfs2(flash), "/bench")
    log = audit.AuditLog("/bench/audit/log")

def run():
    if OP == "anchor": pi_digits(%d)
    elif OP == "key generation":
        ed25519.public_key(os.urandom(32)); x25519.public_key(os.urandom(32))
    elif OP == "signature": ed25519.sign(seed, b"m" * 200, pub)
    elif OP == "verification": assert ed25519.verify(pub, b"m" * 200, sig)
    elif OP == "key agreement": kdf.hkdf(x25519.x25519(seed, peer), b"cell", b"pair", 32)
    elif OP == "X25519": x25519.x25519(seed, peer)  # (bench/chip.py's; the rest: OPS)
    elif OP == "PBKDF2": kdf.pbkdf2(b"493817", b"s" * 24, 6144)
    elif OP == "PIN check": assert keywork.unseal("493817", b"uid-of-a-board", sealed) is not None
    elif OP == "PIN key": keywork.pin_key(keyring)
    elif OP == "unlock":
        keyring.pin_channel = channel  # (each serves once: the same one again, for timing)
        pk, _ = keywork.open_channel(keyring, request)
        pin = keywork.sealed_pin(pk, request, "pin")
        assert keywork.unseal(pin, b"uid-of-a-board", sealed) is not None
    elif OP == "session MAC": session.mac(b"k" * 32, 7, "journal.post", args, b"")
    elif OP == "audit append": log.append("config", {"set": {"led.brightness": 50}})

gc.collect()
base = gc.mem_alloc()
best = 1 << 30
for _ in range(REPEAT):
    t = time.ticks_us(); run(); best = min(best, time.ticks_diff(time.ticks_us(), t))
print(json.dumps({"us": best, "base": base}))
"""
)

OPS = ("key generation", "signature", "verification", "key agreement", "PIN check",
       "PIN key", "unlock", "session MAC", "audit append")  # fmt: skip
PIN_ITERATIONS = 6144  # as the node seals (firmware/ribat/keywork.py)


# The operations whose node code went to machine code (issue 26), timed before (the
# reference in Python's integers, host/ribat/ed25519.py and x25519.py) and after.
CURVES = ("key generation", "signature", "verification", "key agreement")
REFERENCE = str(ROOT / "host" / "ribat")


def run(op: str, heap: int, repeat: int, reference: bool = False) -> dict | None:
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "flash.img"
        image.write_bytes(b"\xff" * 64 * 4096)
        script = Path(tmp) / "bench.py"
        ref = REFERENCE if reference else ""
        script.write_text(PROGRAM % (op, repeat, str(image), ref, ANCHOR_DIGITS))
        done = subprocess.run(
            [sys.executable, "-m", "micropython_unix", "-X", f"heapsize={heap}", str(script)],
            capture_output=True,
            timeout=300,
            env={**os.environ, "MICROPYPATH": ".frozen:" + str(ROOT / "firmware")},
        )
    lines = done.stdout.decode().strip().splitlines()
    if done.returncode != 0 or not lines or not lines[-1].startswith("{"):
        return None  # MemoryError (the unix port exits 0 after an uncaught exception)
    result: dict = json.loads(lines[-1])
    return result


def high_water(op: str) -> int:
    """The smallest heap (to 1 KB) that still runs op: its high-water mark, modules loaded."""
    lo, hi = 8 * 1024, PICO_HEAP
    if run(op, hi, 1) is None:
        return -1
    while hi - lo > 1024:
        mid = (lo + hi) // 2
        if run(op, mid, 1) is None:
            lo = mid
        else:
            hi = mid
    return hi


def main() -> None:
    anchor = run("anchor", PICO_HEAP, 5)
    assert anchor is not None
    here = anchor["us"] / 1000
    print(f"anchor: {ANCHOR_DIGITS} pi digits in {here:.2f} ms here; about "
          f"{RP2040_ANCHOR_MS:.0f} ms on an RP2040 (perfbench, see the docstring)")  # fmt: skip
    print(f"{'operation':16} {'virtual board':>14} {'x anchor':>9} {'RP2040 est.':>12} "
          f"{'heap loaded':>12} {'high-water':>11}   before: {'virtual board':>13} "
          f"{'RP2040 est.':>12}")  # fmt: skip
    for op in OPS:
        # the anchor again, side by side, so a busy host skews both alike
        pair = run("anchor", PICO_HEAP, 10), run(op, PICO_HEAP, 5)
        assert pair[0] is not None and pair[1] is not None, op
        ratio = pair[1]["us"] / pair[0]["us"]
        heap = high_water(op)
        before = ""
        if op in CURVES:
            ref = run(op, PICO_HEAP, 2, reference=True)
            assert ref is not None, op
            ref_ratio = ref["us"] / pair[0]["us"]
            before = (f"   before: {ref['us'] / 1000:10.2f} ms "
                      f"{ref_ratio * RP2040_ANCHOR_MS:9.0f} ms")  # fmt: skip
        print(f"{op:16} {pair[1]['us'] / 1000:11.2f} ms {ratio:9.3f} "
              f"{ratio * RP2040_ANCHOR_MS:9.0f} ms {pair[1]['base'] / 1024:9.0f} KB "
              f"{heap / 1024:8.0f} KB{before}")  # fmt: skip
    print("(before: the curves in Python's integers, as the node ran them until issue 26; "
          "the RP2040 estimates of machine code understate it: bench/chip.py times both "
          "on the emulated chip)")  # fmt: skip
    offline_guesses()


def offline_guesses() -> None:
    """What one CPU core of an attacker with the flash image does against the seal: a
    guess is a PBKDF2 of the PIN (hashlib's, in C) then an HKDF and an HMAC, timed here."""
    import hashlib
    import time

    from ribat import kdf

    salt, tag_key = os.urandom(32), os.urandom(32)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < 2.0:
        kek = hashlib.pbkdf2_hmac("sha256", b"%06d" % n, salt, PIN_ITERATIONS, 32)
        kdf.hmac(kdf.hkdf(kek, salt, b"ribat-seal v1", 64)[32:], tag_key)
        n += 1
    rate = n / (time.perf_counter() - start)
    print(
        f"offline, one CPU core of this host: {rate:,.0f} guesses/s against a seal of "
        f"{PIN_ITERATIONS} PBKDF2 iterations: every 6-digit PIN in {1e6 / rate / 60:.0f} min"
    )


if __name__ == "__main__":
    main()
