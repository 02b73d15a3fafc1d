"""Deploying the firmware onto a board that runs MicroPython, over its raw REPL.

The node keeps two firmware slots, /fw/a and /fw/b; /fw/active names the one main.py runs.
A deploy writes the slot that is not active, so whatever happens to it the board still
boots what it booted before:

1. probe: one exec reports the board's MicroPython and the hash of every file it holds;
2. plan: a slot holds two files, the modules' pack and the manifest (ribat.firmware); a
   file already in the target slot with the right hash stays, one in the active slot is
   copied on the board, only the rest crosses the link; a new pack is built on the board
   from the files of the active slot's pack it shares (the probe hashes each) and the
   others, sent; stale files go;
3. write: the target slot loses its manifest first (an incomplete slot never runs) and
   the old versions of the files it gets, then files are written in batched execs and
   each is read back and hashed on the board;
4. commit: the manifest is written, then /fw/active is switched by a rename: the single
   atomic step; main.py is replaced after it, if it changed;
5. restart: a soft reset starts the new firmware, and we wait for it to answer.

Before all this, a running node that reports the same build is asked to hash its own
files (fw.verify, over the protocol): if they all match there is nothing to do, and
nothing is touched, not even a restart. And nothing is written to a flash that has no
room for the new slot.
"""

import base64
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ribat import boards, firmware, footprint
from ribat.digest import files_digest
from ribat.errors import DeployError, NoAnswer, RibatError, Unsupported
from ribat.firmware import Image, MpyFormat
from ribat.transport import Port

if TYPE_CHECKING:
    from ribat.node import NodeClient

CHUNK = 4096  # file bytes per exec: a few KB of script, well inside a Pico's heap
VERIFY_TIMEOUT_S = 20.0
RECOVER_TIMEOUT_S = 3.0

# Board-side code, run in the raw REPL: it must work on a board without ribat, so it does
# not use the firmware's own hashing (firmware/ribat/service.py), it repeats it.
HASH = r"""
import os, binascii, hashlib
def _each(f, n=-1):
    # the next n bytes of open file f (to its end if n < 0), 1 KB at a time
    m = memoryview(bytearray(1024))
    while n:
        k = f.readinto(m[:1024 if n < 0 else min(n, 1024)])
        if not k:
            if n > 0:
                raise OSError(5)  # EIO: the file is shorter than it should be
            return
        yield m[:k]
        if n > 0:
            n -= k
def _sha(f, n=-1):
    h = hashlib.sha256()
    for c in _each(f, n):
        h.update(c)
    return binascii.hexlify(h.digest()).decode()
def _h(p):
    with open(p, 'rb') as f:
        return _sha(f)
"""

PROBE = (
    HASH
    + f"POINTERS = {footprint.POINTERS}\n"  # littlefs's, as ribat.footprint counts blocks
    + r"""
import sys, json
def _walk(d, out, pre):
    try:
        entries = list(os.ilistdir(d))
    except OSError:
        return None
    for e in entries:
        if e[1] & 0x4000:
            _walk(d + '/' + e[0], out, pre + e[0] + '/')
        else:
            out[pre + e[0]] = _h(d + '/' + e[0])
    return out
def _blocks(d, block):
    try:
        entries = list(os.ilistdir(d))
    except OSError:
        return None
    n = 0
    for e in entries:
        if e[1] & 0x4000:
            n += _blocks(d + '/' + e[0], block)
        else:
            n += -(-e[3] // (block - POINTERS))
    return n
def _read(p):
    try:
        with open(p) as f:
            return f.read()
    except OSError:
        return None
def _members(p):
    try:
        with open(p, 'rb') as f:
            h = f.read(8)
            if h[:4] != b'RBPK':
                return None
            idx = f.read(int.from_bytes(h[6:8], 'big'))
            out = {}
            at = 0
            while at < len(idx):
                n = idx[at]
                off = int.from_bytes(idx[at + 1 + n:at + 5 + n], 'big')
                size = int.from_bytes(idx[at + 5 + n:at + 9 + n], 'big')
                f.seek(off)
                out[idx[at + 1:at + 1 + n].decode()] = [off, size, _sha(f, size)]
                at += 9 + n
            return out
    except OSError:
        return None
def _h_or_none(p):
    try:
        return _h(p)
    except OSError:
        return None
try:
    import vboard
    _sim = vboard.BOARD
except ImportError:
    _sim = None
_st = os.statvfs('/')  # a full littlefs reports negative free blocks, as unsigned
_active = (_read('/fw/active') or '').strip() or None
print(json.dumps({
    'version': list(sys.implementation.version[:3]),
    'mpy': getattr(sys.implementation, '_mpy', 0),
    'platform': sys.platform,
    'machine': getattr(sys.implementation, '_machine', ''),
    'sim_board': _sim,
    'fs_free': _st[0] * _st[3] if _st[3] <= _st[2] else 0,
    'active': _active,
    'slots': {'a': _walk('/fw/a', {}, ''), 'b': _walk('/fw/b', {}, '')},
    'blocks': {'a': _blocks('/fw/a', _st[0]), 'b': _blocks('/fw/b', _st[0])},
    'pack': _members('/fw/%s/firmware.pack' % _active) if _active else None,
    'loader': _h_or_none('/main.py'),
}))
"""
)

# Defined once per deploy, then called by short execs.
HELPERS = (
    HASH
    + r"""
def _mk(p):
    try:
        os.mkdir(p)
    except OSError:
        pass
def _rm(p):
    try:
        os.remove(p)
    except OSError:
        pass
def _rd(p):
    try:
        os.rmdir(p)
    except OSError:
        pass
_f = None
def _o(p):
    global _f
    _f = open(p, 'wb')
def _w(d):
    _f.write(binascii.a2b_base64(d))
def _c(p):
    global _f
    _f.close()
    _f = None
    print(p, _h(p))
def _cp(s, d):
    with open(s, 'rb') as i, open(d, 'wb') as o:
        for c in _each(i):
            o.write(c)
    print(d, _h(d))
def _r(s, a, n):
    with open(s, 'rb') as i:
        i.seek(a)
        for c in _each(i, n):
            _f.write(c)
def _mv(s, d):
    os.rename(s, d)
    print(d, _h(d))
"""
)


@dataclass
class BoardReport:
    """What the probe found on the board."""

    version: tuple[int, ...]
    mpy: MpyFormat
    platform: str
    machine: str
    sim_board: str | None
    fs_free: int
    active: str | None
    slots: dict[str, dict[str, str] | None]
    blocks: dict[str, int | None]  # the blocks each slot's files take (ribat.footprint)
    loader: str | None
    # the active slot's pack, which a new one reuses: file -> [offset, size, sha256]
    pack: dict[str, list] | None

    @classmethod
    def from_probe(cls, d: dict) -> "BoardReport":
        return cls(
            version=tuple(d["version"]),
            mpy=MpyFormat.from_sys(d["mpy"]),
            platform=d["platform"],
            machine=d["machine"],
            sim_board=d["sim_board"],
            fs_free=d["fs_free"],
            active=d["active"] if d["active"] in ("a", "b") else None,
            slots=d["slots"],
            blocks=d["blocks"],
            loader=d["loader"],
            pack=d["pack"],
        )

    @property
    def micropython(self) -> str:
        return ".".join(str(x) for x in self.version)


@dataclass
class Plan:
    slot: str  # the slot written, or the active one when nothing changes
    transfer: list[str] = field(default_factory=list)  # sent over the link
    copy: list[str] = field(default_factory=list)  # copied on the board from the active slot
    keep: list[str] = field(default_factory=list)  # already right in the target slot
    remove: list[str] = field(default_factory=list)  # stale files in the target slot
    loader: bool = False  # main.py changes
    switch: bool = False  # /fw/active changes
    # A pack sent is built on the board: these of its files are copied from the active
    # slot's pack (name -> offset, size there), only the others cross the link.
    reuse: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def up_to_date(self) -> bool:
        return not (self.transfer or self.copy or self.remove or self.loader or self.switch)


@dataclass
class Result:
    plan: Plan
    board: boards.Board
    manifest: dict  # of the firmware deployed
    sent_bytes: int
    seconds: float

    @property
    def firmware(self) -> str:
        m = self.manifest
        return f"{m['firmware']} ({m['revision']}, build {m['build']})"


Progress = Callable[[int, int], None]  # (bytes sent so far, bytes to send)
Part = bytes | tuple[str, int, int]  # bytes sent, or (path, offset, size) copied on the board
Step = Callable[[str], None]


def check_board(report: BoardReport, board_name: str | None, path: str) -> boards.Board:
    """The board definition to deploy for, once we know the board can run ribat."""
    board = boards.load(board_name) if board_name else None
    found = boards.identify(report.platform, report.machine, report.sim_board)
    if board is None:
        if found is None:
            raise Unsupported(
                f"{path} runs MicroPython {report.micropython} on {report.machine!r} "
                f"({report.platform}), a board ribat has no definition for: name one with "
                f"--board ({', '.join(boards.names())}), or add yours (RIBAT_BOARDS_PATH)"
            )
        board = found
    expected = "linux" if board.virtual else board.port
    if report.platform != expected:
        raise Unsupported(
            f"--board {board.name} is a {expected} board but {path} reports {report.platform}: "
            "choose the board that is there"
        )
    if report.version < board.micropython_min:
        need = ".".join(str(x) for x in board.micropython_min)
        raise Unsupported(
            f"{path} runs MicroPython {report.micropython}; ribat needs {need} or later on "
            f"{board.name}: update MicroPython on the board first (see the README, "
            "'With a real board')"
        )
    return board


def check_space(report: BoardReport, plan: Plan, image: Image, board: boards.Board) -> None:
    """Refuse, before writing anything, a slot the flash has no room for: each file in
    whole blocks (ribat.footprint), each new folder a metadata pair, less what the slot
    holds now but the files it keeps (the old versions of the files written are removed
    first), plus main.py while the new one is written beside it, and a block for metadata
    to grow. The node keeps that much free whatever its journal."""
    block = board.block_size
    blocks = [footprint.file_blocks(len(image.files[p]), block) for p in plan.transfer + plan.copy]
    if plan.loader:
        blocks.append(2 * footprint.file_blocks(len(image.loader), block))  # old and new
    need = sum(blocks) + 1
    held = report.blocks.get(plan.slot)
    if held is None:  # the slot's folders are new too
        need += footprint.DIR_BLOCKS * len({p.rpartition("/")[0] for p in image.files})
    else:  # what the slot holds, but the files kept (the image's own, byte for byte), goes
        need -= held - sum(footprint.file_blocks(len(image.files[p]), block) for p in plan.keep)
    need *= block
    if need > report.fs_free:
        raise DeployError(
            f"not enough flash for the new firmware: it needs about {need // 1024} KB, "
            f"{report.fs_free // 1024} KB are free: remove files of your own from the board "
            "(mpremote fs ls, fs rm); nothing was written"
        )


def make_plan(report: BoardReport, image: Image) -> Plan:
    want = image.hashes
    active = report.active
    active_files = report.slots.get(active) if active else None
    loader_changes = report.loader != firmware.sha256(image.loader)
    if active and active_files == want:
        return Plan(slot=active, keep=sorted(want), loader=loader_changes)
    target = "b" if active == "a" else "a"
    have = report.slots.get(target) or {}
    plan = Plan(slot=target, loader=loader_changes, switch=True)
    for path, digest in sorted(want.items()):
        if path == "manifest.json":
            plan.transfer.append(path)  # always written last, whatever is there
        elif have.get(path) == digest:
            plan.keep.append(path)
        elif active_files and active_files.get(path) == digest:
            plan.copy.append(path)
        else:
            plan.transfer.append(path)
    plan.remove = sorted(p for p in have if p not in want)
    held = report.pack or {}
    if firmware.PACK in plan.transfer:
        for name, data in image.members.items():
            there = held.get(name)
            if there is not None and there[2] == firmware.sha256(data):
                plan.reuse[name] = (there[0], there[1])
    return plan


class Deployer:
    """One deploy onto the board on `port` (which the caller owns): probe(), then plan,
    then apply()."""

    def __init__(self, port: Port) -> None:
        from ribat.repl import RawRepl  # mpremote: only when the raw REPL is needed

        self.repl = RawRepl(port)
        self.path = port.path

    def probe(self) -> BoardReport:
        # A soft reset into the raw REPL (main.py does not run there): an interrupted
        # node keeps much of its heap reachable, which a board with 110 KB cannot spare.
        self.repl.enter(soft_reset=True)
        return BoardReport.from_probe(self.repl.eval_json(PROBE, timeout=VERIFY_TIMEOUT_S))

    def _run(self, script: str, expect: dict[str, str]) -> None:
        """Exec script; each line it prints is "path sha256", checked against expect."""
        out = self.repl.exec(script, timeout=VERIFY_TIMEOUT_S).decode(errors="replace")
        got = dict(line.split(" ", 1) for line in out.strip().splitlines() if " " in line)
        for path, digest in expect.items():
            if got.get(path) != digest:
                raise DeployError(
                    f"{path} reads back from the board's flash as {got.get(path)}, not "
                    f"{digest}: the flash may be failing; nothing was switched"
                )

    def apply(self, plan: Plan, image: Image, progress: Progress, step: Step) -> int:
        """Carry out the plan; the number of file bytes sent."""
        repl = self.repl
        root = f"/fw/{plan.slot}"
        if plan.up_to_date:
            return 0
        repl.exec(HELPERS)
        want = image.hashes
        if plan.switch:
            step(f"preparing slot {plan.slot}")
            dirs = sorted({str(Path(p).parent) for p in want if "/" in p})
            script = ["_mk('/fw')", f"_mk('{root}')", f"_rm('{root}/manifest.json')"]
            script += [f"_mk('{root}/{d}')" for d in dirs]
            # The stale files go, and the old versions of those about to be written: a
            # file rewritten in place holds its old blocks until it closes, and the pack
            # is most of a slot.
            script += [f"_rm('{root}/{p}')" for p in plan.remove + plan.transfer + plan.copy]
            # folders the removed files leave empty (a slot of the layout before packs)
            emptied = {str(parent) for p in plan.remove for parent in Path(p).parents}
            emptied.discard(".")
            script += [f"_rd('{root}/{d}')" for d in sorted(emptied, key=len, reverse=True)]
            repl.exec("\n".join(script))
        if plan.copy:
            step(f"copying {len(plan.copy)} unchanged files from slot {_other(plan.slot)}")
            src = f"/fw/{_other(plan.slot)}"
            script = [f"_cp('{src}/{p}', '{root}/{p}')" for p in plan.copy]
            self._run("\n".join(script), {f"{root}/{p}": want[p] for p in plan.copy})
        # The manifest goes last, under a temporary name: a slot has one only when whole.
        files = [
            (f"{root}/{p}", image.files[p], self._parts(p, plan, image))
            for p in plan.transfer
            if p != "manifest.json"
        ]
        if plan.loader:
            files.append(("/main.py.new", image.loader, [image.loader]))
        manifest = image.files["manifest.json"] if "manifest.json" in plan.transfer else b""
        total = len(manifest) + sum(
            len(part) for _, _, parts in files for part in parts if isinstance(part, bytes)
        )
        if plan.reuse:
            step(
                f"sending {len(image.members) - len(plan.reuse)} of the pack's "
                f"{len(image.members)} files (the rest from slot {_other(plan.slot)}'s pack)"
            )
        sent = self._send(files, progress, total)
        if manifest:
            step(f"writing the manifest of slot {plan.slot}")
            new = f"{root}/manifest.json.new"
            sent += self._send([(new, manifest, [manifest])], progress, total, sent)
            self._run(
                f"_mv('{root}/manifest.json.new', '{root}/manifest.json')",
                {f"{root}/manifest.json": want["manifest.json"]},
            )
        if plan.switch:
            step(f"switching to slot {plan.slot}")
            repl.exec(
                f"with open('/fw/active.new', 'w') as f:\n f.write('{plan.slot}')\n"
                "os.rename('/fw/active.new', '/fw/active')"
            )
        # main.py last: cut before this, the old loader finds a slot it cannot run and
        # starts the other one, as it always did; a new loader that could not run the
        # old slot (a new layout) would find no slot at all before the switch.
        if plan.loader:
            step("replacing main.py")
            self._run(
                "_mv('/main.py.new', '/main.py')", {"/main.py": firmware.sha256(image.loader)}
            )
        return sent

    def _send(
        self, files: list[tuple[str, bytes, list[Part]]], progress: Progress, total: int,
        done: int = 0,
    ) -> int:  # fmt: skip
        """Write files (path, content, how to make it) in execs of up to CHUNK bytes sent
        each (a file may span several); a part is bytes sent, or a range of a file on the
        board copied there; every file is hashed on the board in the exec that closes it,
        against its content."""
        lines: list[str] = []
        expect: dict[str, str] = {}
        pending = sent = 0

        def flush() -> None:
            nonlocal lines, expect, pending, sent
            self._run("\n".join(lines), expect)
            sent += pending
            progress(done + sent, total)
            lines, expect, pending = [], {}, 0

        for path, data, parts in files:
            lines.append(f"_o('{path}')")
            for part in parts:
                if isinstance(part, tuple):
                    lines.append(f"_r('{part[0]}', {part[1]}, {part[2]})")
                    continue
                view = memoryview(part)
                while view:
                    if pending == CHUNK:
                        flush()
                    piece, view = view[: CHUNK - pending], view[CHUNK - pending :]
                    lines.append(f"_w({base64.b64encode(piece)!r})")
                    pending += len(piece)
            lines.append(f"_c('{path}')")
            expect[path] = firmware.sha256(data)
        if lines:
            flush()
        return sent

    @staticmethod
    def _parts(path: str, plan: Plan, image: Image) -> list["Part"]:
        """How to make a slot's file on the board: the pack from the files of the active
        slot's pack it can reuse (plan.reuse) and the rest sent; any other file sent."""
        if path != firmware.PACK or not plan.reuse:
            return [image.files[path]]
        head, names = firmware.pack_layout(image.members)
        src = f"/fw/{_other(plan.slot)}/{firmware.PACK}"
        parts: list[Part] = [head]
        for name in names:
            there = plan.reuse.get(name)
            parts.append((src, *there) if there else image.members[name])
        return parts

    def restart(self) -> None:
        self.repl.start_app()

    def recover(self) -> None:
        """After a failure or Ctrl-C anywhere in a deploy: interrupt whatever the board is
        doing and restart it, so it runs its active slot again. Best effort, bounded."""
        with contextlib.suppress(RibatError, KeyboardInterrupt):
            self.repl.enter(soft_reset=False, timeout=RECOVER_TIMEOUT_S)
            self.repl.start_app()


def _other(slot: str) -> str:
    return "b" if slot == "a" else "a"


def _unchanged(
    client: "NodeClient", board_name: str | None, source: Path | None, step: Step
) -> tuple[boards.Board, Image, str] | None:
    """The fast path: a running node that already has exactly this firmware, every file's
    hash checked by the node itself. (board, image, slot) if so, None to deploy."""
    from ribat import node

    try:
        info = client.hello(timeout=node.HELLO_TIMEOUT_S)
        board = boards.load(board_name or info.board)
        # the build id names the files alone: the node's revision is the one to report
        image = firmware.build(board, MpyFormat.from_sys(info.mpy), source, info.revision or "")
        if info.build != image.manifest["build"] or info.board != board.name:
            return None
        step(f"{client.port.path} runs build {info.build}: verifying its files")
        verified = client.request("fw.verify", timeout=VERIFY_TIMEOUT_S)
    except RibatError:
        return None  # no node, an old one, another board: deploy through the REPL
    if (verified["digest"], verified["loader"]) != (
        files_digest(image.hashes),
        firmware.sha256(image.loader),
    ):
        return None
    return board, image, verified["slot"]


def deploy(
    path: str,
    board_name: str | None = None,
    source: Path | None = None,
    dry_run: bool = False,
    progress: Progress = lambda done, total: None,
    step: Step = lambda message: None,
) -> Result:
    """Deploy the firmware to the board on path; see the module's docstring."""
    from ribat import node

    started = time.monotonic()
    # One port from probe to the node's first answer: a board's output while no host has
    # its port open is lost, and what it prints as it restarts is the best diagnosis.
    with Port(path) as port:
        unchanged = _unchanged(node.NodeClient(port), board_name, source, step)
        if unchanged is not None:
            board, image, slot = unchanged
            plan = Plan(slot=slot, keep=sorted(image.hashes))
            return Result(plan, board, image.manifest, 0, time.monotonic() - started)
        deployer = Deployer(port)
        try:
            step(f"probing {path}")
            report = deployer.probe()
            board = check_board(report, board_name, path)
            step(
                f"building firmware for {board.name} (MicroPython {report.micropython}, "
                f".mpy v{report.mpy})"
            )
            image = firmware.build(board, report.mpy, source)
            plan = make_plan(report, image)
            check_space(report, plan, image, board)
            sent = 0 if dry_run else deployer.apply(plan, image, progress, step)
            deployer.restart()  # the new firmware if switched, the one it had otherwise
        except BaseException:
            deployer.recover()
            raise
        if dry_run:
            return Result(plan, board, image.manifest, 0, time.monotonic() - started)
        step("waiting for the node to start")
        client = node.NodeClient(port)
        try:
            info = client.wait_ready()
        except NoAnswer:
            said = client.boot_words()
            raise DeployError(
                f"the firmware was written but the node on {path} does not answer"
                + (f" (it said: {said})" if said else "")
                + f": see its output with `mpremote connect {path} repl`, or deploy again"
            ) from None
    if info.build != image.manifest["build"]:
        raise DeployError(
            f"the node runs build {info.build} from slot {info.slot}, not the build "
            f"{image.manifest['build']} just written: deploy again, and if this repeats, "
            "report it with the output of `ribat --debug flash`"
        )
    return Result(plan, board, image.manifest, sent, time.monotonic() - started)
