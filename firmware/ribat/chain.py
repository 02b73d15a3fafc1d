"""The audit chain's format and its verification. Shared by node and host (symlink
host/ribat/chain.py); no I/O.

The log is JSON lines. An entry is {"seq": n, "t": unix time, "ev": what, "prev": hash of
the line before, "d": details (optional)}; the first entry of a log has prev GENESIS. A
line's hash is SHA-256 of its bytes (without the newline). When the node folds old entries
away, the log starts with a checkpoint instead, a signed document (ribat.signed) whose body
is {"seq": last folded, "hash": its hash, "folded": how many so far, "t": time, "key": the
node's signing key[, "locked": the last seq folded with no key]}: the chain then continues
from that seq and hash. A locked node folds without a key: {"body": ...} with no "sig",
no "key", and "locked" its own seq (docs/security.md).

What the node needs to write the chain is here; checking a whole chain is the host's
(host/ribat/authority/chainverify.py), not deployed to the node.
"""

import json
from binascii import hexlify
from hashlib import sha256

from ribat import signed

GENESIS = "0" * 64


def line_hash(line: bytes) -> str:
    return hexlify(sha256(line).digest()).decode()


def entry(seq: int, t: int, event: str, prev: str, detail: "dict | None") -> bytes:
    e = {"seq": seq, "t": t, "ev": event, "prev": prev}
    if detail:
        e["d"] = detail
    return json.dumps(e).encode()


parse = signed.json_object  # a line's entry or checkpoint; None if it is neither
