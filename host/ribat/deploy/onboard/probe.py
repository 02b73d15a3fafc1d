"""What a deploy needs to know of a board, in one exec: its MicroPython, the free flash,
the hash of every file of each firmware slot and the blocks they take, the active slot's
pack file by file, and the loader's hash. Printed as one JSON line."""

import json
import os
import sys

from main import pack_entries, pack_index

from ribat.footprint import file_blocks

from .files import _h, _sha


def _walk(d, out, pre):
    try:
        entries = list(os.ilistdir(d))
    except OSError:
        return None
    for e in entries:
        if e[1] & 0x4000:
            _walk(d + "/" + e[0], out, pre + e[0] + "/")
        else:
            out[pre + e[0]] = _h(d + "/" + e[0])
    return out


def _blocks(d, block):
    try:
        entries = list(os.ilistdir(d))
    except OSError:
        return None
    n = 0
    for e in entries:
        if e[1] & 0x4000:
            n += _blocks(d + "/" + e[0], block)
        else:
            n += file_blocks(e[3], block)  # type: ignore[misc]  # littlefs gives sizes
    return n


def _read(p):
    try:
        with open(p) as f:
            return f.read()
    except OSError:
        return None


def _members(p):
    """name -> [offset, size, sha256] of each file in the pack at p; None if none."""
    try:
        with open(p, "rb") as f:
            out = {}
            for name, off, size in pack_entries(pack_index(f)):
                f.seek(off)
                out[name.decode()] = [off, size, _sha(f, size)]
            return out
    except OSError:
        return None


def _h_or_none(p):
    try:
        return _h(p)
    except OSError:
        return None


try:
    import vboard  # type: ignore[import-not-found]  # a virtual board's ROM: its board

    _sim = vboard.BOARD
except ImportError:
    _sim = None
_st = os.statvfs("/")  # a full littlefs reports negative free blocks, as unsigned
_active = (_read("/fw/active") or "").strip() or None
print(
    json.dumps(
        {
            "version": list(sys.implementation.version[:3]),
            "mpy": getattr(sys.implementation, "_mpy", 0),
            "platform": sys.platform,
            "machine": getattr(sys.implementation, "_machine", ""),
            "sim_board": _sim,
            "fs_free": _st[0] * _st[3] if _st[3] <= _st[2] else 0,
            "active": _active,
            "slots": {"a": _walk("/fw/a", {}, ""), "b": _walk("/fw/b", {}, "")},
            "blocks": {"a": _blocks("/fw/a", _st[0]), "b": _blocks("/fw/b", _st[0])},
            "pack": _members("/fw/%s/firmware.pack" % _active) if _active else None,
            "loader": _h_or_none("/main.py"),
        }
    )
)
