"""The deploy's helpers on the board, defined once per deploy and then called by short
execs (ribat.deploy.writer): make and remove folders and files, write a file from base64
pieces, copy a file or a range of one, rename; each file closed is read back and hashed,
"path sha256" printed for the host to check."""

import binascii
import os

try:
    from typing import Any
except ImportError:  # MicroPython: annotations are not evaluated
    pass

from .files import _each, _h

_f: Any = None  # the file being written


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


def _o(p):
    global _f
    _f = open(p, "wb")


def _w(d):
    _f.write(binascii.a2b_base64(d))


def _c(p):
    global _f
    _f.close()
    _f = None
    print(p, _h(p))


def _cp(s, d):
    with open(s, "rb") as i, open(d, "wb") as o:
        for c in _each(i):
            o.write(c)
    print(d, _h(d))


def _r(s, a, n):
    with open(s, "rb") as i:
        i.seek(a)
        for c in _each(i, n):
            _f.write(c)


def _mv(s, d):
    os.rename(s, d)
    print(d, _h(d))
