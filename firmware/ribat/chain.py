"""The audit chain's format and its verification. Shared by node and host (symlink
host/ribat/chain.py); no I/O.

The log is JSON lines. An entry is {"seq": n, "t": unix time, "ev": what, "prev": hash of
the line before, "d": details (optional)}; the first entry of a log has prev GENESIS. A
line's hash is SHA-256 of its bytes (without the newline). When the node folds old entries
away, the log starts with a checkpoint instead, a signed document (ribat.signed) whose body
is {"seq": last folded, "hash": its hash, "folded": how many so far, "t": time, "key": the
node's signing key}: the chain then continues from that seq and hash.
"""

import json
from binascii import hexlify, unhexlify
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


def parse(line: bytes) -> "dict | None":
    try:
        e = json.loads(line)
    except ValueError:
        return None
    return e if isinstance(e, dict) else None


def checkpoint_of(e: dict) -> "dict | None":
    """The verified body of checkpoint line e, or None if e is no checkpoint or its
    signature is not its key's."""
    body = signed.body_of(e)
    if body is None:
        return None
    try:
        key = unhexlify(body["key"])
    except (KeyError, TypeError, ValueError):
        return None
    return signed.verify(signed.CHECKPOINT, e, key)


def verify(lines: list, witness: "tuple | None" = None) -> tuple:
    """Check a log's lines (bytes, no newlines). Returns (problem, head): problem is None
    or a sentence naming the first entry that was edited, removed, inserted or reordered;
    head is (seq, hash) of the last good entry. witness, a (seq, hash prefix) a host saw
    earlier, must be on the chain (or be older than its checkpoint)."""
    seq, prev, start = 0, GENESIS, 0
    seen: dict = {}
    if lines and b'"body"' in lines[0]:
        cp = checkpoint_of(parse(lines[0]) or {})
        if cp is None:
            return "the checkpoint at the start of the log is not validly signed", (0, GENESIS)
        seq, prev, start = cp["seq"], cp["hash"], 1
        seen[seq] = prev
    first = seq
    for i in range(start, len(lines)):
        e = parse(lines[i])
        if e is None or not isinstance(e.get("seq"), int):
            return "the entry after %d is not a valid entry: edited" % seq, (seq, prev)
        n = e["seq"]
        if n != seq + 1:
            if n in seen:
                why = "entry %d appears again after entry %d: inserted or reordered"
                return why % (n, seq), (seq, prev)
            later = [parse(x) or {} for x in lines[i + 1 :]]
            if any(x.get("seq") == seq + 1 for x in later):
                why = "entry %d is out of place (found after entry %d): reordered"
                return why % (seq + 1, n), (seq, prev)
            if n > seq + 1:
                return "entry %d is missing: removed" % (seq + 1), (seq, prev)
            return "entry %d comes after entry %d: inserted" % (n, seq), (seq, prev)
        if e.get("prev") != prev:
            if seq == first and start:
                why = "entry %d does not follow the checkpoint: edited, or the log spliced"
                return why % n, (seq, prev)
            why = "entry %d no longer matches the link in entry %d: entry %d was edited"
            return why % (seq, n, seq) if seq else "entry 1 does not start a chain", (seq, prev)
        seq, prev = n, line_hash(lines[i])
        seen[seq] = prev
    if witness is not None:
        wseq, whash = witness
        if wseq > seq:
            why = "the log ends at entry %d but entry %d was witnessed: truncated"
            return why % (seq, wseq), (seq, prev)
        if wseq in seen and not seen[wseq].startswith(whash.lower()):
            why = "entry %d differs from the one witnessed: edited (the chain was rewritten)"
            return why % wseq, (seq, prev)
    return None, (seq, prev)
