# The ribat loader, run by the board after boot.py.
#
# It starts the firmware in the active slot (/fw/a or /fw/b, named by /fw/active); if that
# slot cannot be imported, the other one. A slot without its manifest is incomplete (a
# deploy was cut there) and is never run. A slot's modules are in one file, firmware.pack
# (its format: pack_index below; the host writes it, ribat.deploy.image), mounted read-only
# at /firmware: littlefs gives each file whole 4 KB blocks, so thirty-odd small files took
# twice their bytes of flash, and the node keeps as much again free for the next deploy.
#
# A provisioned node is sealed: no prompt is reachable from its port. Ctrl-C is a byte
# like any other (micropython.kbd_intr(-1)), and an error that would end main.py restarts
# the board instead; its firmware changes only by a signed release (ribat/update.py), which
# starts on trial: each start of it is counted here, under the watchdog, and one that has
# not confirmed itself within its starts gives way to the build it replaced. An
# unprovisioned board keeps its REPL: after a Ctrl-C, control goes to the REPL if the host
# follows up within the grace time (mpremote and ribat send "\r\x01"); a stray Ctrl-C, or
# one followed by a request frame, only pauses the node.
# Kept small and stable: a deploy replaces it rarely, and atomically.

# Ctrl-C is off before anything else runs, and back on below for an unsealed board: one
# that came as main.py was compiled is raised at the first jump, here, and a sealed board
# then restarts rather than reach the prompt. (Once it is off no other can be raised.)
try:
    import micropython

    micropython.kbd_intr(-1)
    for _ in (0,):
        pass
except KeyboardInterrupt:
    import micropython

    micropython.kbd_intr(-1)
    try:
        open("/key/identity.json").close()  # PROVISIONED, below: the board is sealed
    except OSError:
        micropython.kbd_intr(3)
        raise
    import machine

    machine.reset()

import gc
import struct
import sys

import vfs

_GRACE_MS = 2000
MOUNT = "/firmware"
PROVISIONED = "/key/identity.json"  # written last at provisioning (ribat/keys.py)
TRIAL = "/fw/trial"  # "slot starts limit": a release on trial (ribat/update.py)
REVERTED = "/fw/reverted"  # a release that did not confirm, the slot it had gone back
_TRIAL_WATCHDOG_MS = 8000  # the RP2040's longest is 8.3 s


def pack_index(f):
    """The index of the pack open as f, which is left at the index's end: b"RBPK", u16
    count, u16 index size, the index, then the files' bytes. OSError if not a pack."""
    head = f.read(8)
    if head[:4] != b"RBPK":
        raise OSError(22)  # EINVAL
    return f.read(struct.unpack_from(">H", head, 6)[0])


def pack_entries(idx):
    """(name, offset, size) of each file in a pack's index: per file, u8 name length, the
    name, u32 offset from the pack's start, u32 size; big-endian."""
    at = 0
    while at < len(idx):
        n = idx[at]
        offset, size = struct.unpack_from(">II", idx, at + 1 + n)
        yield idx[at + 1 : at + 1 + n], offset, size
        at += 9 + n


class Pack:
    """A read-only filesystem of the files in a pack (pack_index). The index is read from
    flash at each lookup: kept, it would hold a KB of heap for the node's whole life.

    open() gives the pack file itself, at the first byte of the file asked for: a reader
    reads the size stat() gives (the .mpy loader needs none: a module ends where its
    structure does). A stream class of our own would cost a KB of heap and a call into
    Python for every 255 bytes of every module loaded."""

    def __init__(self, path):
        self.path = path
        self._index()  # OSError if it is not a pack

    def _index(self):
        with open(self.path, "rb") as f:
            return pack_index(f)

    def _find(self, path):
        """(offset, size) of the file at path, (-1, 0) for a folder, or None. The walk of
        pack_entries, without its allocations: it runs for every path an import tries,
        and its garbage, left between the modules that stay, would scatter the heap."""
        key = path.strip("/").encode()
        folder = key + b"/"
        idx = self._index()
        at = 0
        found = None
        while at < len(idx):
            n = idx[at]
            if n == len(key) and idx.startswith(key, at + 1):
                return struct.unpack_from(">II", idx, at + 1 + n)
            if not key or (n > len(folder) and idx.startswith(folder, at + 1)):
                found = (-1, 0)
            at += 9 + n
        return found

    def mount(self, readonly, mkfs):
        pass

    def umount(self):
        pass

    def stat(self, path):
        got = self._find(path)
        if got is None:
            raise OSError(2)  # ENOENT
        return (0x4000 if got[0] < 0 else 0x8000, 0, 0, 0, 0, 0, got[1], 0, 0, 0)

    def ilistdir(self, path):  # for `mpremote fs ls /firmware`: the files, by full name
        if path.strip("/") == "":
            for name, _, _ in pack_entries(self._index()):
                yield (name.decode(), 0x8000, 0, 0)

    def open(self, path, mode):
        got = self._find(path)
        if got is None or got[0] < 0 or "w" in mode or "a" in mode or "+" in mode:
            raise OSError(2 if got is None else 30)  # ENOENT, EROFS
        # Looking for a module makes garbage (a stat that fails raises): collected
        # before the module loads, it leaves no holes among what the module keeps.
        gc.collect()
        f = open(self.path, "rb")
        f.seek(got[0])
        return f


def _host_wants_repl():
    """After a Ctrl-C: does the host want the REPL? The first byte it sends is consumed
    (a harmless "\r" from mpremote or ribat); a request frame is dropped, and we resume."""
    import select

    p = select.poll()
    p.register(sys.stdin, select.POLLIN)
    if not p.poll(_GRACE_MS):
        return False
    if sys.stdin.buffer.read(1) != b"\x1e":
        return True
    n = 0
    while n < 4096 and p.poll(100) and sys.stdin.buffer.read(1) != b"\n":
        n += 1
    return False


def _exists(path):
    try:
        open(path).close()
        return True
    except OSError:
        return False


def _replace(path, text):
    import os

    with open(path + ".new", "w") as f:
        f.write(text)
    os.rename(path + ".new", path)


def _on_trial(active):
    """The slot to start: active, one more start of it counted if it is on trial; past its
    limit, the other slot, made active again. A hang on trial is a start too: the watchdog
    is armed before anything of the slot runs."""
    try:
        with open(TRIAL) as f:
            slot, starts, limit = f.read().split()
        starts, limit = int(starts) + 1, int(limit)
    except (OSError, ValueError):
        return active
    if slot != active:
        return active  # a switch cut short: the node clears it
    if starts > limit:
        import os

        active = "b" if slot == "a" else "a"
        _replace("/fw/active", active)
        os.rename(TRIAL, REVERTED)
        print(
            "ribat: slot %s did not confirm in %d starts: back to slot %s" % (slot, limit, active)
        )
        return active
    _replace(TRIAL, "%s %d %d" % (slot, starts, limit))
    import machine

    machine.WDT(timeout=_TRIAL_WATCHDOG_MS)
    return active


def _ribat_start():
    """Run the firmware, which returns only if it cannot start (or, unsealed, to the REPL)."""
    global _on_trial, _replace  # run once a start: their code would hold heap for good
    try:
        with open("/fw/active") as f:
            active = f.read().strip()
    except OSError:
        print("ribat: no firmware installed; deploy it with `ribat flash`")
        return
    if _exists(PROVISIONED):
        active = _on_trial(active)
    del _on_trial, _replace
    try:
        _run_slots(active)
    finally:
        # The REPL gets the board as MicroPython left it, the pack unmounted (at the
        # REPL, `vfs.mount(Pack(path), MOUNT)` mounts a slot's pack again).
        _umount()


def _umount():
    try:
        vfs.umount(MOUNT)
    except OSError:
        pass


def _forget():
    """The slot's modules and mount forgotten: the other slot starts clean."""
    if MOUNT in sys.path:
        sys.path.remove(MOUNT)
    for name in list(sys.modules):
        if name in ("ribat", "hal") or name.startswith("ribat."):
            del sys.modules[name]


def _run_slots(active):
    for slot in (active, "b" if active == "a" else "a"):
        root = "/fw/" + slot
        try:
            open(root + "/manifest.json").close()
        except OSError:
            continue
        _umount()
        try:
            vfs.mount(Pack(root + "/firmware.pack"), MOUNT)
            sys.path.insert(0, MOUNT)
            import ribat.app
        except Exception as e:  # noqa: BLE001 - any import failure: try the other slot
            print("ribat: slot %s does not start:" % slot)
            sys.print_exception(e)
            _forget()
            continue
        while True:
            try:
                if not ribat.app.run(slot, slot != active):
                    break  # a build this node replaced: it never goes back
            except KeyboardInterrupt:  # only while not sealed: Ctrl-C is off otherwise
                print("ribat: interrupted; press Enter within 2 s for the REPL, or it resumes")
                if _host_wants_repl():
                    raise
        print("ribat: slot %s holds a build this node replaced: not started" % slot)
        _forget()
    print("ribat: no slot can start; deploy again with `ribat flash`")


def _start():
    if not _exists(PROVISIONED):
        micropython.kbd_intr(3)  # the node seals the port when it is provisioned
    try:
        _ribat_start()
    except BaseException as e:  # noqa: BLE001 - sealed, nothing may end at the prompt
        if not _exists(PROVISIONED):
            raise
        sys.print_exception(e)
    if _exists(PROVISIONED):
        import machine

        machine.reset()  # a crash restarts a sealed node


_start()
