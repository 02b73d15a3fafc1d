"""Reading and hashing files on the board, 1 KB at a time: a board with no ribat on it
runs this too, so it does not use the firmware's own hashing (ribat.digest)."""

import binascii
import hashlib


def _each(f, n=-1):
    """The next n bytes of open file f (to its end if n < 0), 1 KB at a time."""
    m = memoryview(bytearray(1024))
    while n:
        k = f.readinto(m[: 1024 if n < 0 else min(n, 1024)])
        if not k:
            if n > 0:
                raise OSError(5)  # EIO: the file is shorter than it should be
            return
        yield m[:k]
        if n > 0:
            n -= k


def _sha(f, n=-1):
    """The sha256, in hex, of the next n bytes of open file f (to its end if n < 0)."""
    h = hashlib.sha256()
    for c in _each(f, n):
        h.update(c)
    return binascii.hexlify(h.digest()).decode()


def _h(p):
    with open(p, "rb") as f:
        return _sha(f)
