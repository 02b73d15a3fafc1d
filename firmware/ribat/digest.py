"""The identity of a set of files: one SHA-256 over each file's path and hash, in order.

This one file runs on the node (MicroPython) and on the host (CPython, through the symlink
host/ribat/digest.py), so both compute the same digest of a firmware slot. No I/O.
"""

import binascii
import hashlib


def files_digest(hashes: dict) -> str:
    """hashes: {path: sha256 hex}. The hex digest of the whole set."""
    h = hashlib.sha256()
    for path in sorted(hashes):
        h.update(path.encode())
        h.update(b" ")
        h.update(hashes[path].encode())
        h.update(b"\n")
    return binascii.hexlify(h.digest()).decode()
