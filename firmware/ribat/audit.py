"""The node's audit log: an append-only hash chain on flash (format: ribat.chain).

An entry is on flash, closed (a littlefs commit), before the request that caused it is
answered: an entry the host saw acknowledged survives a power cut. The log is bounded:
past audit.max_entries, the oldest entries are folded into a checkpoint the node signs,
which needs its key, so folding happens while unlocked, and at the lock, so that a locked
node starts with room for the whole budget and more (its sync goes on recording: three
entries a batch). Past a budget and a half, a locked node folds without a signature for
the exchange of entries, which must not stop, and refuses the other requests it would
have to record (docs/security.md: what a keyless fold leaves a peer to check).
"""

import os
import time

from ribat import chain, signed, store

PATH = "/audit/log"
_FW = "/audit/fw"  # the firmware builds this node ran, newest last: deploys, and downgrades
_FW_KEPT = 16


def _lines(f):
    """Each whole line of an open log (without its newline) and its entry, or None if
    the line is neither an entry nor a checkpoint; ends at a line cut short."""
    while True:
        line = f.readline()
        if not line.endswith(b"\n"):
            return
        line = line[:-1]
        yield line, chain.parse(line)


def _checkpoint(e: dict) -> "tuple[int, str] | None":
    """(seq, hash) a checkpoint continues the chain from; None if e is not one."""
    if "body" not in e:
        return None
    body = signed.body_of(e)
    return None if body is None else (body["seq"], body["hash"])


class AuditLog:
    def __init__(self, path: str = PATH) -> None:
        self.path = path
        self.seq = 0
        self.head = chain.GENESIS
        self.entries = 0  # entries on flash (not counting a checkpoint)
        # the try count the log last recorded (a wrong PIN's entry says it; an unlock, a
        # provisioning, a PIN change or a wipe sets it back): a count kept elsewhere that
        # is lower was put back from an older copy (ribat.app checks at the start)
        self.tries = 0
        self._asked: dict = {}  # seq -> hash (or "folded") last told by hashes_at
        self._scan()

    def _scan(self) -> None:
        try:
            f = open(self.path, "rb")
        except OSError:
            try:
                os.mkdir(self.path[: self.path.rfind("/")])
            except OSError:
                pass
            return
        good = 0  # bytes of whole lines; a line a cut write left half done is dropped
        with f:
            for line, e in _lines(f):
                good += len(line) + 1
                if e is None:
                    continue
                checkpoint = _checkpoint(e)
                if checkpoint is not None:
                    self.seq, self.head = checkpoint
                elif "body" not in e:
                    self.seq, self.head = e["seq"], chain.line_hash(line)
                    self.entries += 1
                    self._note(e.get("ev"), e.get("d"))
        if good != os.stat(self.path)[6]:
            store.truncate(self.path, good)

    def _note(self, event: object, detail: object) -> None:
        if event == "pin-failed" and isinstance(detail, dict):
            tries = detail.get("tries")
            self.tries = tries if isinstance(tries, int) else self.tries
        elif event in ("unlock", "provision", "pin-change", "wipe"):
            self.tries = 0

    def append(self, event: str, detail: "dict | None" = None) -> None:
        self._note(event, detail)
        line = chain.entry(self.seq + 1, int(time.time()), event, self.head, detail)
        with open(self.path, "ab") as f:
            f.write(line)
            f.write(b"\n")
        self.seq += 1
        self.head = chain.line_hash(line)
        self.entries += 1

    def full(self, budget: int) -> bool:
        """Past the budget and its reserve: only a fold makes room."""
        return self.entries >= budget + budget // 2

    def fold(self, keyring, budget: int, due: int = 0, keyless: bool = False) -> bool:
        """Fold the oldest entries into a checkpoint, keeping half the budget, once more
        than due (by default the budget) are on flash. The checkpoint is signed, which
        needs the key; keyless (for a locked node whose sync must go on), it is not, and
        says so: its "locked" is the last seq no signature vouches for, carried by every
        later checkpoint. False if it is not due, or locked and not keyless."""
        locked = keyring.state != "unlocked"
        if self.entries <= (due or budget) or (locked and not keyless):
            return False
        from ribat import auditwork, keys  # rare work: its code loaded for it alone

        try:
            return auditwork.fold(self, keyring, budget, locked)
        finally:
            keys.unload("auditwork")

    def hashes_at(self, seqs: list) -> dict:
        """The hash of this log's line at each seq asked (as text keys): what a peer that
        witnessed the log at that seq compares with what it saw. "folded" for a line a
        checkpoint folded away, None for a seq past the head."""
        from ribat import auditwork, keys

        try:
            return auditwork.hashes_at(self, seqs)
        finally:
            keys.unload("auditwork")

    def size(self) -> int:
        try:
            return os.stat(self.path)[6]
        except OSError:
            return 0

    def read(self, offset: int, n: int) -> bytes:
        try:
            with open(self.path, "rb") as f:
                f.seek(offset)
                return f.read(n)
        except OSError:
            return b""

    def note_firmware(self, build: str, sealed: bool) -> bool:
        """Record a deploy: the build running now is not the one last recorded. False if
        a sealed node starts a build it replaced before (it never goes back: the loader
        then starts its other slot), refused and recorded; True otherwise."""
        try:
            with open(_FW) as f:
                history = f.read().split("\n")  # the builds this node ran, newest last
        except OSError:
            history = []
        last = history[-1] if history else ""
        if last == build:
            return True
        if sealed and build in history:
            self.append("downgrade-refused", {"build": build, "running": last})
            return False
        self.append("deploy", {"from": last or None, "to": build})
        history = [b for b in history if b != build][-(_FW_KEPT - 1) :] + [build]
        store.write_atomic(_FW, "\n".join(history).encode())
        return True
