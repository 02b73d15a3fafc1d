"""Checking an audit chain (format: ribat.chain): edits, removals, insertions and
reorderings named, a witnessed head compared. The host's only: the node writes its chain
(ribat.chain, shared) and never checks a whole one, so this is not deployed to it.
"""

from binascii import unhexlify

from ribat import signed
from ribat.chain import GENESIS, line_hash, parse


def checkpoint_of(e: dict) -> "dict | None":
    """The body of checkpoint line e, or None if e is no checkpoint or its signature is
    not its key's. A checkpoint a locked node made (no key, no signature) is taken as
    what it says it is: its "locked" names its own seq, and nothing vouches for it."""
    body = signed.body_of(e)
    if body is None:
        return None
    if "sig" not in e and "key" not in body:
        seq, head = body.get("seq"), body.get("hash")
        keyless = isinstance(seq, int) and isinstance(head, str) and body.get("locked") == seq
        return body if keyless else None
    try:
        key = unhexlify(body["key"])
    except (KeyError, TypeError, ValueError):
        return None
    return signed.verify(signed.CHECKPOINT, e, key)


def verify(lines: list, witness: "tuple | None" = None) -> tuple:
    """Check a log's lines (bytes, no newlines). Returns (problem, start, head, keyless):
    problem is None or a sentence naming the first entry that was edited, removed,
    inserted or reordered; start the seq the chain continues from (0, or its
    checkpoint's); head (seq, hash) of the last good entry; keyless the last seq folded
    while the node was locked, which no signature vouches for (0 if none). witness, a
    (seq, hash prefix) a host saw earlier, must be on the chain (or be older than its
    checkpoint)."""
    walk = _Walk()
    problem = walk.run(lines, witness)
    return problem, walk.start, (walk.seq, walk.prev), walk.keyless


class _Walk:
    """The chain as far as it holds: the seq it starts from, its last good entry, and the
    hash of every entry seen."""

    def __init__(self) -> None:
        self.start = 0
        self.keyless = 0
        self.seq = 0
        self.prev = GENESIS
        self.seen: dict = {}

    def run(self, lines: list, witness: "tuple | None") -> "str | None":
        begin = 0  # the first line that is an entry
        if lines and b'"body"' in lines[0]:
            cp = checkpoint_of(parse(lines[0]) or {})
            if cp is None:
                return (
                    "the checkpoint at the start of the log is not validly signed"
                    " (nor one a locked node made)"
                )
            self.start = self.seq = cp["seq"]
            self.keyless = cp.get("locked", 0)
            self.prev = self.seen[self.seq] = cp["hash"]
            begin = 1
        for i in range(begin, len(lines)):
            problem = self._step(lines, i)
            if problem is not None:
                return problem
        return None if witness is None else self._witnessed(*witness)

    def _step(self, lines: list, i: int) -> "str | None":
        seq = self.seq
        e = parse(lines[i])
        if e is None or not isinstance(e.get("seq"), int):
            return f"the entry after {seq} is not a valid entry: edited"
        n = e["seq"]
        if n != seq + 1:
            if n in self.seen:
                return f"entry {n} appears again after entry {seq}: inserted or reordered"
            if any((parse(x) or {}).get("seq") == seq + 1 for x in lines[i + 1 :]):
                return f"entry {seq + 1} is out of place (found after entry {n}): reordered"
            if n > seq + 1:
                return f"entry {seq + 1} is missing: removed"
            return f"entry {n} comes after entry {seq}: inserted"
        if e.get("prev") != self.prev:
            if seq == 0:
                return "entry 1 does not start a chain"
            if seq == self.start:
                return f"entry {n} does not follow the checkpoint: edited, or the log spliced"
            return f"entry {seq} no longer matches the link in entry {n}: entry {seq} was edited"
        self.seq, self.prev = n, line_hash(lines[i])
        self.seen[n] = self.prev
        return None

    def _witnessed(self, wseq: int, whash: str) -> "str | None":
        if wseq > self.seq:
            return f"the log ends at entry {self.seq} but entry {wseq} was witnessed: truncated"
        if wseq in self.seen and not self.seen[wseq].startswith(whash.lower()):
            return f"entry {wseq} differs from the one witnessed: edited (the chain was rewritten)"
        return None
