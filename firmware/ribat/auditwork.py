"""The audit log's rare work (ribat.audit.AuditLog.fold and hashes_at): folding its
oldest entries into a checkpoint, and answering a peer's hashes; loaded for it alone, as
a node that folds a few times a day and answers a sync now and then need not hold it."""

import json
import os
import time

from ribat import audit, chain, signed


def fold(log, keyring, budget: int, locked: bool) -> bool:
    """Fold the oldest entries into a checkpoint (AuditLog.fold says when)."""
    keep = budget // 2
    drop = log.entries - keep
    tmp = log.path + ".new"
    folded = unsigned = 0
    n = 0
    with open(log.path, "rb") as src, open(tmp, "wb") as dst:
        while True:
            line = src.readline()
            if not line:
                break
            if n > drop:
                dst.write(line)
                continue
            e = chain.parse(line[:-1])
            if e is None:
                continue
            if "body" in e:
                body = signed.body_of(e) or {}
                folded = body.get("folded", 0)
                unsigned = body.get("locked", 0)
                continue
            n += 1
            if n == drop:
                cp = {
                    "seq": e["seq"],
                    "hash": chain.line_hash(line[:-1]),
                    "folded": folded + drop,
                    "t": int(time.time()),
                }
                if locked:
                    cp["locked"] = e["seq"]
                    doc = {"body": json.dumps(cp)}
                else:
                    if unsigned:
                        cp["locked"] = unsigned
                    cp["key"] = keyring.public_key()
                    doc = keyring.sign(signed.CHECKPOINT, cp)
                dst.write(json.dumps(doc).encode())
                dst.write(b"\n")
                n += 1  # copy all that follows
    os.rename(tmp, log.path)
    log.entries = keep
    return True


def hashes_at(log, seqs: list) -> dict:
    """The hash of this log's line at each seq asked (as text keys): what a peer that
    witnessed the log at that seq compares with what it saw. "folded" for a line a
    checkpoint folded away, None for a seq past the head. The answers are kept for
    the next ask (a gateway asks the same seqs round after round); lines already
    written never change."""
    out: dict = {}
    want = []
    for n in seqs:
        out[str(n)] = log._asked.get(n)
        if out[str(n)] is None and isinstance(n, int) and 0 < n <= log.seq:
            want.append(n)
    if want:
        last = max(want)
        with open(log.path, "rb") as f:
            for line, e in audit._lines(f):
                if e is None:
                    continue
                checkpoint = audit._checkpoint(e)
                if checkpoint is not None:
                    for n in want:
                        if n <= checkpoint[0]:
                            out[str(n)] = "folded" if n < checkpoint[0] else checkpoint[1]
                elif e["seq"] in want:
                    out[str(e["seq"])] = chain.line_hash(line)
                if e.get("seq", 0) >= last:
                    break  # lines come in seq order
    log._asked = {n: out[str(n)] for n in seqs if out.get(str(n)) is not None}
    return out
