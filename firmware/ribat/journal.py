"""The journal on flash: every entry the node holds (ribat.entry), stored so that a post
or an import costs the same at the ten-thousandth entry as at the first, and a power cut
leaves every entry whole or absent.

    /journal/h/N   records of 156 bytes, 256 per file: an entry's signed header, where its
                   content is, and its flags. Record k is in file k // 256. A full file
                   (39,936 bytes) fills ten 4 KB littlefs blocks less their skip-list
                   pointers (40,896 bytes); 160-byte records took an eleventh block.
    /journal/c/N   contents, appended one after another; a new file past 32 KB.

A record is appended after its content (each append closed: a littlefs commit), so a
record never names a content that is not there; a cut between the two leaves unnamed
bytes, reclaimed with the file. Appends only ever touch the last block of a small file.
Flags change in place (a one-byte write, which littlefs does copy-on-write). Retention
zeroes an expired content where it lies and sets PURGED; a content file with nothing left
alive in it is deleted. At start-up the node reads the records (12 bytes each matter),
rebuilds its index (two bytes per entry) and finishes whatever a cut interrupted.
"""

import os
import struct

from micropython import const

from ribat import codec, entry, store
from ribat.link import RequestError

DIR = "/journal"
_H = DIR + "/h/"
ALERTS = DIR + "/alerts"  # the watch's (ribat.alerts)
_C = DIR + "/c/"
RECORD = const(156)  # entry.SIGNED, _LOCAL, the flags byte last
PER_FILE = const(256)
SEGMENT = const(32768)
_LOCAL = ">HIB"  # content file, offset, flags: after the signed header
_FLAGS = const(155)  # offset of the flags byte in a record
_MARGIN = const(65536)  # below this much estimated free flash, ask littlefs at each entry
_OVERHEAD = const(64)  # littlefs metadata per append, roughly
_ASK_EVERY = const(16)  # entries between two asks: 16 of the largest are under the margin
_GROW = const(128)  # bytes a chain index grows by: 64 seqs
HELD_MAX = entry.RUN  # entries waiting for a predecessor, across all origins

PURGED = const(1)  # content zeroed at expiry (or never stored: it came expired)
# came ahead of its predecessor. Whether it waits still is the journal's to say (held,
# is_held): joining its chain writes nothing, as each byte rewritten in place costs
# littlefs a block's copy (20-40 ms on an RP2040: most of an import's time, 2026-12-07);
# a start finds the chains again from the records.
HELD = const(2)
FORK = const(4)  # a second entry at an origin's seq: evidence of equivocation
ACKED = const(8)  # an operator acknowledged it on this node


def _mkdirs() -> None:
    for path in (DIR, _H[:-1], _C[:-1]):
        try:
            os.mkdir(path)
        except OSError:
            pass


def _numbers(folder: str) -> list:
    try:
        return sorted(int(e[0]) for e in os.ilistdir(folder))
    except OSError:
        return []


class Journal:
    def __init__(self) -> None:
        _mkdirs()
        self.count = 0  # records
        self.chains: dict = {}  # origin -> bytearray: per seq from 1, u16 record + 1
        self.heads: dict = {}  # origin -> last seq of its chain unbroken from 1
        self.held: dict = {}  # (origin, seq) -> (record, prev; None once vouched for)
        self.forks: dict = {}  # origin -> records of evidence against it
        self.live: dict = {}  # content file -> contents not purged in it
        self.soonest: list = []  # per record file: earliest expiry of a content kept
        self.segment = 0
        self.segment_size = 0
        self.reserve = 0  # bytes kept free for the rest (a deploy, the audit log)
        self._unasked = 0  # entries since littlefs was last asked how much is free
        self._batch: "dict | None" = None  # path -> file open for a batch's appends
        self._pending: dict = {}  # record number -> record, of a batch's appends
        self._scan()
        self.free()

    # -- start-up ------------------------------------------------------------------------

    def _scan(self) -> None:
        for n in _numbers(_H[:-1]):
            path = _H + str(n)
            size = os.stat(path)[6]
            if size % RECORD:
                store.truncate(path, size - size % RECORD)  # a record a cut left half written
            self.soonest.append(1 << 31)
        for k, rec in self.records(0):
            self._index(rec, k)
            self.count = k + 1
        contents = _numbers(_C[:-1])
        if contents:
            self.segment = contents[-1]
            self.segment_size = os.stat(_C + str(self.segment))[6]
        for n in contents:
            if n != self.segment and not self.live.get(n):
                os.remove(_C + str(n))  # its last content was purged before a cut
        for origin, _ in list(self.held):
            self.connect(origin)  # connections a cut interrupted

    def records(self, start: int, stop: int = 1 << 30):
        """(number, record) of each record from start to stop (or the last), read 8 at a
        time (1.2 KB: a larger buffer finds no room in a long session's scattered heap on a
        Pico W); a record is a view, valid until the next one comes. An open batch is
        committed first: its records are then in the files read here."""
        self._commit()
        buf = bytearray(RECORD * 8)
        view = memoryview(buf)
        k = start
        while k < stop:
            try:
                f = open(_H + str(k // PER_FILE), "rb")
            except OSError:
                return  # past the last file
            first = k
            with f:
                f.seek((k % PER_FILE) * RECORD)
                while k < stop:
                    got = f.readinto(buf)
                    if not got:
                        break
                    for i in range(0, got - RECORD + 1, RECORD):
                        yield k, view[i : i + RECORD]
                        k += 1
                        if k == stop:
                            return
            if k % PER_FILE or k == first:
                # the last file, not full; or empty: made by the open of an append that a
                # power cut stopped before its first record (read again, it spun forever)
                return

    def _index(self, rec: memoryview, k: int, scanning: bool = True) -> None:
        origin = bytes(rec[entry.AT_ORIGIN : entry.AT_ORIGIN + 8])
        seq = struct.unpack_from(">I", rec, entry.AT_SEQ)[0]
        expires = struct.unpack_from(">I", rec, entry.AT_EXPIRES)[0]
        segment, _, flags = struct.unpack_from(_LOCAL, rec, entry.SIGNED)
        if not flags & PURGED:
            self.live[segment] = self.live.get(segment, 0) + 1
            f = k // PER_FILE
            if expires < self.soonest[f]:
                self.soonest[f] = expires
        if flags & FORK:
            self.forks.setdefault(origin, []).append(k)
            return
        if flags & HELD:
            self.held[(origin, seq)] = (k, _prev(rec))
            if seq != self.head(origin) + 1:
                return
        else:
            self._place(origin, seq, k)
        if scanning:  # (an append's caller connects: ribat.intake)
            self.connect(origin)  # what waited for it: held stays a run long at most

    def _place(self, origin: bytes, seq: int, k: int) -> None:
        chain = self.chains.get(origin)
        if chain is None:
            chain = self.chains[origin] = bytearray()
        need = 2 * seq - len(chain)
        if need > 0:
            # Grown 64 seqs at a time (zeros: none yet). Grown by two bytes an entry, a
            # chain moved through the heap at every post, and the holes it left behind
            # scattered it until a 4 KB frame found no block to fit in.
            chain.extend(bytes(-(-need // _GROW) * _GROW))
        struct.pack_into(">H", chain, 2 * seq - 2, k + 1)
        n = self.heads.get(origin, 0)
        while 2 * n + 2 <= len(chain) and (chain[2 * n] or chain[2 * n + 1]):
            n += 1
        self.heads[origin] = n

    # -- what is held --------------------------------------------------------------------

    def head(self, origin: bytes) -> int:
        """The origin's last seq in an unbroken chain from 1."""
        return self.heads.get(origin, 0)

    def find(self, origin: bytes, seq: int) -> int:
        """The record of the origin's entry seq in its chain, or held; -1 if none."""
        chain = self.chains.get(origin)
        if chain is not None and 2 * seq <= len(chain):
            k = struct.unpack_from(">H", chain, 2 * seq - 2)[0] - 1
            if k >= 0:
                return k
        got = self.held.get((origin, seq))
        return got[0] if got else -1

    def origin_of(self, prefix: bytes) -> "bytes | None":
        for origin in self.chains:
            if origin[: len(prefix)] == prefix:
                return origin
        return None

    def record(self, k: int) -> bytes:
        got = self._pending.get(k)
        if got is not None:
            return bytes(got)
        with open(_H + str(k // PER_FILE), "rb") as f:
            f.seek((k % PER_FILE) * RECORD)
            return f.read(RECORD)

    def flags(self, rec: bytes) -> int:
        return rec[_FLAGS]

    def joined(self, held: list):
        """(number, record) of each record numbered in `held` that has joined its origin's
        chain since: a reader of what came (alerts, signals) notes the records it found
        held, which it passed, and reads them here once their predecessor came. Taken out
        of `held` once no longer held; one found a fork, or purged, is not given."""
        for k in list(held):
            rec = self.record(k)
            if not self.is_held(k, rec):
                held.remove(k)
                if len(rec) == RECORD and not rec[_FLAGS] & (PURGED | FORK):
                    yield k, rec

    def is_held(self, k: int, rec: "bytes | memoryview") -> bool:
        """Whether record k (rec) waits for its predecessor: its HELD flag says only that
        it came ahead of it, the journal whether it waits still (looked up only then: the
        readers ask of every record)."""
        if len(rec) < RECORD or not rec[_FLAGS] & HELD:
            return False
        return any(got[0] == k for got in self.held.values())

    def content(self, rec: bytes) -> bytearray:
        """The content a record names, in a buffer of its own (a reader may decrypt it in
        place); empty once purged."""
        self._commit()
        segment, offset, flags = struct.unpack_from(_LOCAL, rec, entry.SIGNED)
        if flags & PURGED:
            return bytearray()
        buf = bytearray(struct.unpack_from(">I", rec, entry.AT_SIZE)[0])
        with open(_C + str(segment), "rb") as f:
            f.seek(offset)
            n = f.readinto(buf)
        return buf if n == len(buf) else buf[:n]

    def head_digest(self, origin: bytes) -> bytes:
        n = self.head(origin)
        if n == 0:
            return entry.GENESIS
        return entry.Header(self.record(self.find(origin, n))).digest()

    def vector(self) -> dict:
        return {origin: self.head(origin) for origin in self.chains}

    def vector_text(self) -> dict:
        """Each origin's head by fingerprint text, as summaries and exports name them."""
        return {entry.fp_text(o): n for o, n in self.vector().items()}

    def held_text(self) -> dict:
        """The seqs held past a gap, by origin fingerprint text."""
        held: dict = {}
        for origin, seq in self.held:
            held.setdefault(entry.fp_text(origin), []).append(seq)
        return held

    # -- changes -------------------------------------------------------------------------

    def free(self) -> int:
        """Free flash, as littlefs counts it: a walk of every block in use, so slow on a
        full flash; make_room asks every few entries, and at each once its estimate gets
        close."""
        st = os.statvfs("/")
        self._free = st[0] * st[3]
        self._unasked = 0
        return self._free

    def make_room(self, size: int, now: int) -> None:
        """Refuse an entry of size bytes the flash has no room for, once expired content
        is purged."""
        need = size + RECORD + _OVERHEAD + self.reserve
        self._unasked += 1
        # The running estimate misses what littlefs adds (the audit log, block tails,
        # metadata): asked again every few entries, it never drifts by the margin.
        if (self._free - need < _MARGIN or self._unasked > _ASK_EVERY) and self.free() < need:
            self._commit()  # (what a batch holds open is in littlefs's count once closed)
            try:
                self.purge(now)
            except OSError:  # zeroing in place needs a free block too: purge at start-up
                pass
            if self.free() < need:
                self.full()
        self._free -= size + RECORD + _OVERHEAD

    def full(self) -> None:
        raise RequestError(
            codec.REFUSED,
            "the journal is full (%d entries, %d bytes free): nothing stored; expired "
            "content is purged already: post with a shorter --expires, or export the "
            "journal and wipe the node" % (self.count, self._free),
        )

    def append(self, signed: bytes, content: bytes, flags: int) -> int:
        """Store an entry (its signed header and its content, or none with PURGED);
        its record number. If littlefs finds no room after all (make_room's figure is
        littlefs's own estimate), the append fails whole and the journal says it is full."""
        try:
            return self._append(signed, content, flags)
        except OSError as e:
            if e.errno != 28:  # ENOSPC
                raise
            self.free()
            self.full()
            return -1

    def _append(self, signed: bytes, content: bytes, flags: int) -> int:
        offset = 0
        if content:
            if self.segment_size + len(content) > SEGMENT and self.segment_size:
                self.segment += 1
                self.segment_size = 0
            offset = self.segment_size
            self._write(_C + str(self.segment), content)
            self.segment_size += len(content)
        rec = bytearray(RECORD)
        rec[: entry.SIGNED] = signed
        struct.pack_into(_LOCAL, rec, entry.SIGNED, self.segment, offset, flags)
        k = self.count
        self._write(_H + str(k // PER_FILE), rec)
        if self._batch is not None:
            self._pending[k] = rec
        self.count += 1
        if k // PER_FILE >= len(self.soonest):
            self.soonest.append(1 << 31)
        self._index(memoryview(rec), k, False)
        return k

    # -- a batch's appends: one commit a file --------------------------------------------

    def begin(self) -> None:
        """Keep the files of the appends from now on open until end() (a batch already
        open stays so: a wire's put inside a host's import ends both). littlefs commits a
        file at its close, and each commit of an append copies the file's last block to a
        fresh one: a 4 KB erase, 45 ms on a Pico's flash, twice an entry (its record, its
        content), 115 ms of an import's 199 (bench/chip.py --node). A batch's appends,
        committed once a file, take a power cut back whole, as if they had not come: an
        import is answered stored once its batch ended."""
        if self._batch is None:
            self._batch = {}

    def batched(self) -> int:
        """How many appends an open batch holds (their records in memory meanwhile)."""
        return len(self._pending)

    def end(self) -> None:
        """Commit a batch's appends, and append one by one again (even if a close fails:
        the next append is not to wait in an open file for a batch that ended)."""
        try:
            self._commit()
        finally:
            self._batch = None

    def _commit(self) -> None:
        """Close a batch's files, the contents before the records that name them (a cut
        between leaves content no record names, as a cut inside an append does)."""
        batch = self._batch
        if not batch:
            return
        self._batch = {}
        self._pending = {}
        error = None
        for contents in (True, False):
            for path, f in batch.items():
                if path.startswith(_C) == contents:
                    try:
                        f.close()
                    except OSError as e:
                        error = error or e
        if error is not None:
            raise error

    def _write(self, path: str, data: bytes) -> None:
        batch = self._batch
        if batch is None:
            with open(path, "ab") as f:
                f.write(data)
            return
        f = batch.get(path)
        if f is None:
            f = batch[path] = open(path, "ab")
        f.write(data)

    def set_flags(self, k: int, add: int = 0, drop: int = 0) -> None:
        """Change record k's flags in place: one byte, one write."""
        self._commit()
        path = _H + str(k // PER_FILE)
        at = (k % PER_FILE) * RECORD + _FLAGS
        with open(path, "r+b") as f:
            f.seek(at)
            old = f.read(1)[0]
            new = (old | add) & ~drop
            if new != old:
                f.seek(at)
                f.write(bytes((new,)))

    def connect(self, origin: bytes, tick=None) -> int:
        """Move into the origin's chain the held entries that now follow its head (in
        memory: HELD above); how many. A held entry whose prev is not the head's digest
        becomes fork evidence. tick(), if given, is called for each (a node feeds its
        watchdog: each reads its predecessor's record, and a run holds up to HELD_MAX)."""
        moved = 0
        while True:
            if tick is not None:
                tick()
            n = self.head(origin) + 1
            got = self.held.pop((origin, n), None)
            if got is None:
                return moved
            k = got[0]
            if got[1] is not None and got[1] != self.head_digest(origin):
                # signed by the origin, yet not after the entry its chain holds: evidence
                self.set_flags(k, add=FORK, drop=HELD)
                self.forks.setdefault(origin, []).append(k)
                after = self.held.get((origin, n + 1))
                if after is not None and after[1] is None:  # it vouched for its successor
                    self.held[(origin, n + 1)] = (after[0], _prev(self.record(after[0])))
                return moved
            self._place(origin, n, k)
            moved += 1

    def vouch(self, origin: bytes, seq: int) -> None:
        """The entry just appended at (origin, seq) is the one the held entry at seq + 1
        names as its prev (its digest compared by the caller): that one joins the chain
        after it without its predecessor's record read again (a littlefs file opened, 6 ms
        on a Pico, for each entry of a run that came newest first). The held entry's prev
        is dropped for the mark; connect() reads it back from flash should the voucher
        turn out to be fork evidence."""
        after = self.held.get((origin, seq + 1))
        if after is not None:
            self.held[(origin, seq + 1)] = (after[0], None)

    def purge(self, now: int) -> int:
        """Zero every content whose expiry has come; how many. A content file left with
        nothing alive is deleted."""
        purged = 0
        for f, soonest in enumerate(self.soonest):
            if soonest > now:
                continue
            earliest = 1 << 31
            due = []  # read the file whole first: the changes below write into it
            for k, rec in self.records(f * PER_FILE, (f + 1) * PER_FILE):
                segment, offset, flags = struct.unpack_from(_LOCAL, rec, entry.SIGNED)
                if flags & PURGED:
                    continue
                expires = struct.unpack_from(">I", rec, entry.AT_EXPIRES)[0]
                if expires > now:
                    earliest = min(earliest, expires)
                else:
                    due.append(
                        (k, segment, offset, struct.unpack_from(">I", rec, entry.AT_SIZE)[0])
                    )
            for k, segment, offset, size in due:
                with open(_C + str(segment), "r+b") as c:
                    c.seek(offset)
                    c.write(bytes(size))
                self.set_flags(k, add=PURGED)
                purged += 1
                self.live[segment] -= 1
                if not self.live[segment] and segment != self.segment:
                    store.remove(_C + str(segment))
            self.soonest[f] = earliest
        return purged


def _prev(rec: "bytes | memoryview") -> bytes:
    """The digest a record's entry names as its predecessor's."""
    return bytes(rec[entry.AT_PREV : entry.AT_PREV + 32])


def note_held(held: list, k: int) -> None:
    """A reader passes record k, held: noted for Journal.joined (at most HELD_MAX: the
    journal holds no more)."""
    if k not in held:
        held.append(k)
        if len(held) > HELD_MAX:
            held.pop(0)
