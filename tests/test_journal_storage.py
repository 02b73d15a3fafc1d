"""The journal's storage (firmware/ribat/journal.py) under MicroPython, on littlefs over a
block device in RAM: appends, the index rebuilt at start-up, held entries connected or
turned into fork evidence, retention purging content where it lies and deleting emptied
files, a full flash refused after a purge, and a record cut in half dropped at start-up.
Entries here are shaped like real ones (ribat.entry) but not signed: checking signatures
is the intake's job (tests/test_journal.py)."""

from conftest import micropython

HEAP = "4M"  # the flash is in RAM here: a board's heap is measured in bench/journal.py

SETUP = r"""
import os, vfs
from ribat import entry, journal
from ribat.link import RequestError

class RamFlash:
    def __init__(self, blocks):
        self.data = bytearray(blocks * 4096)
    def readblocks(self, b, buf, off=0):
        s = b * 4096 + off
        buf[:] = self.data[s : s + len(buf)]
    def writeblocks(self, b, buf, off=None):
        s = b * 4096 + (off or 0)
        self.data[s : s + len(buf)] = buf
    def ioctl(self, op, arg):
        if op == 4:
            return len(self.data) // 4096
        if op == 5:
            return 4096
        if op == 6:  # erase
            return 0

def mount(blocks):
    flash = RamFlash(blocks)
    vfs.VfsLfs2.mkfs(flash)
    vfs.mount(vfs.VfsLfs2(flash), "/")
    return flash

A, B = b"AAAAAAAA", b"BBBBBBBB"

def make(origin, seq, prev, expires=2000000000, size=500):
    content = bytes([1]) + bytes(40) + bytes([seq & 255]) * (size - 41)
    header = entry.pack(origin, seq, prev, expires, content)
    return header + bytes(64), content

def chain_of(origin, n, **kw):
    out, prev = [], entry.GENESIS
    for seq in range(1, n + 1):
        signed, content = make(origin, seq, prev, **kw)
        out.append((signed, content))
        prev = entry.Header(signed).digest()
    return out
"""


def on_micropython(code: str) -> None:
    micropython(SETUP + code, heap=HEAP)


def test_appends_index_and_restart() -> None:
    on_micropython(
        r"""
mount(400)
j = journal.Journal()
a = chain_of(A, 300)
for signed, content in a:
    j.append(signed, content, 0)
assert j.head(A) == 300 and j.count == 300
assert j.head_digest(A) == entry.Header(a[-1][0]).digest()
rec = j.record(j.find(A, 123))
assert rec[:149] == a[122][0] and j.content(rec) == a[122][1]
assert len(os.listdir("/journal/h")) == 2 and len(os.listdir("/journal/c")) >= 4

# start-up reads it all back
j = journal.Journal()
assert j.head(A) == 300 and j.count == 300 and j.find(A, 300) == 299
assert j.origin_of(b"AAAA") == A and j.origin_of(b"ZZZZ") is None
print("OK")
"""
    )


def test_held_entries_connect_or_become_fork_evidence() -> None:
    on_micropython(
        r"""
mount(200)
j = journal.Journal()
a = chain_of(A, 6)
# 4..6 arrive first: held
for signed, content in a[3:]:
    j.append(signed, content, journal.HELD)
assert j.head(A) == 0 and len(j.held) == 3
for signed, content in a[:3]:
    j.append(signed, content, 0)
    j.connect(A)
assert j.head(A) == 6 and not j.held
# joining its chain wrote nothing (a byte rewritten costs littlefs a block): the flag says
# they came ahead, the journal that they wait no longer
assert all(j.flags(j.record(k)) & journal.HELD and not j.is_held(k, j.record(k)) for k in range(3))

# a held entry whose prev is not the chain's: a fork once the head reaches it
b = chain_of(B, 2)
other, _ = make(B, 2, b"x" * 32)
j.append(other, b[1][1], journal.HELD)
j.append(*b[0], 0)
j.connect(B)
assert j.head(B) == 1 and j.forks[B] and not j.held

# a run that came newest first: the intake vouches for each entry's successor (its digest
# is the successor's prev), which joins without that record read again
d = chain_of(b"DDDDDDDD", 3)
j.append(*d[2], journal.HELD)
j.append(*d[1], journal.HELD)
j.vouch(b"DDDDDDDD", 2)
assert j.held[(b"DDDDDDDD", 3)][1] is None
j.append(*d[0], 0)
j.vouch(b"DDDDDDDD", 1)
j.connect(b"DDDDDDDD")
assert j.head(b"DDDDDDDD") == 3 and not j.held
# a voucher that turns out to be fork evidence vouches for nothing: its successor is
# checked against the chain again, and is evidence too once the true entry comes
E = b"EEEEEEEE"
e = chain_of(E, 2)
e2, _ = make(E, 2, b"y" * 32)  # signed at seq 2, yet not after e1
e3, _ = make(E, 3, entry.Header(e2).digest())
j.append(e3, e[1][1], journal.HELD)
j.append(e2, e[1][1], journal.HELD)
j.vouch(E, 2)
j.append(*e[0], 0)
j.connect(E)
assert j.head(E) == 1 and len(j.forks[E]) == 1 and j.held[(E, 3)][1] is not None
j.append(*e[1], 0)
j.connect(E)
assert j.head(E) == 2 and len(j.forks[E]) == 2 and not j.held

# a connection a cut stopped before it began is made at start-up
c = chain_of(b"CCCCCCCC", 2)
j.append(*c[1], journal.HELD)
j.append(*c[0], 0)  # and the power goes before connect()
j2 = journal.Journal()
assert j2.head(b"CCCCCCCC") == 2 and not j2.held and j2.head(A) == 6
print("OK")
"""
    )


def test_retention_purges_content_and_frees_files() -> None:
    on_micropython(
        r"""
mount(300)
j = journal.Journal()
old = chain_of(A, 200, expires=1000, size=900)  # about 180 KB: several content files
for signed, content in old:
    j.append(signed, content, 0)
files = len(os.listdir("/journal/c"))
keep = make(B, 1, entry.GENESIS, expires=5000)
j.append(*keep, 0)
assert j.purge(999) == 0
assert j.purge(1000) == 200
assert len(os.listdir("/journal/c")) == 1 < files  # only the one still written to
rec = j.record(j.find(A, 7))
assert j.flags(rec) & journal.PURGED and j.content(rec) == b""
assert j.head(A) == 200  # the headers stay: the chain is still whole
assert j.content(j.record(j.find(B, 1))) == keep[1]
assert j.purge(1001) == 0  # nothing twice
j = journal.Journal()
assert j.head(A) == 200 and j.purge(4999) == 0 and j.purge(5000) == 1
print("OK")
"""
    )


def test_full_flash_refused_after_a_purge() -> None:
    on_micropython(
        r"""
mount(64)  # 256 KB
j = journal.Journal()
j.reserve = 16384
prev, seq, expires = entry.GENESIS, 0, 1000
try:
    while True:
        signed, content = make(A, seq + 1, prev, expires=expires, size=1500)
        j.make_room(len(content), 500)
        j.append(signed, content, 0)
        seq += 1
        prev = entry.Header(signed).digest()
        expires = 1000 if seq < 60 else 9000
except RequestError as e:
    assert "journal is full" in e.message and "shorter --expires" in e.message, e.message
stored = seq
assert stored > 100 and j.head(A) == stored, stored
# once the first 59 have expired, their room is reclaimed and posts go on
signed, content = make(A, seq + 1, prev, expires=9000, size=1500)
j.make_room(len(content), 2000)
j.append(signed, content, 0)
assert j.head(A) == stored + 1
assert j.content(j.record(j.find(A, stored))) != b""
print("OK")
"""
    )


def test_a_record_cut_in_half_is_dropped_at_start_up() -> None:
    on_micropython(
        r"""
mount(100)
j = journal.Journal()
for signed, content in chain_of(A, 3):
    j.append(signed, content, 0)
with open("/journal/h/0", "ab") as f:
    f.write(b"half a record")
j = journal.Journal()
assert j.count == 3 and j.head(A) == 3
assert os.stat("/journal/h/0")[6] == 3 * journal.RECORD
print("OK")
"""
    )


def test_a_batch_commits_whole_or_not_at_all() -> None:
    """An import's put keeps its files open until its last entry (Journal.begin/end): its
    records are read from memory meanwhile (the chain's head, a duplicate), and a power
    cut before its end leaves the flash as it was before the batch, every entry whole."""
    on_micropython(
        r"""
flash = mount(100)
j = journal.Journal()
c = chain_of(A, 6)
for signed, content in c[:2]:
    j.append(signed, content, 0)
j.begin()
for signed, content in c[2:5]:
    j.append(signed, content, 0)
assert j.head(A) == 5 and j.head_digest(A) == entry.Header(c[4][0]).digest()
assert j.record(j.find(A, 4))[: entry.SIGNED] == c[3][0]
cut = bytearray(flash.data)  # the flash, were the power cut now
j.end()
j.append(*c[5], 0)
assert journal.Journal().head(A) == 6  # all of it on flash

vfs.umount("/")
before = RamFlash(100)
before.data[:] = cut
vfs.mount(vfs.VfsLfs2(before), "/")
j = journal.Journal()
assert j.head(A) == 2 and j.count == 2  # the batch taken back whole
assert j.content(j.record(1)) == c[1][1]
print("OK")
"""
    )


def test_an_empty_record_file_reads_as_no_records() -> None:
    """A power cut between the open of an append's files and its first record leaves them
    empty, at the journal's very start or at a new record file: the next start reads no
    records there (records() once read an empty file again and again, and the node hung
    at start-up)."""
    on_micropython(
        r"""
flash = mount(100)
j = journal.Journal()
c = chain_of(A, journal.PER_FILE + 1, size=0)
for signed, content in c[:-1]:
    j.append(signed, content, 0)
open("/journal/h/1", "ab").close()
j = journal.Journal()
assert j.count == journal.PER_FILE and j.head(A) == journal.PER_FILE
assert list(k for k, _ in j.records(journal.PER_FILE)) == []
j.append(*c[-1], 0)
assert journal.Journal().head(A) == journal.PER_FILE + 1

vfs.umount("/")
flash = mount(100)
journal.Journal()  # (its folders)
open("/journal/h/0", "ab").close()
j = journal.Journal()
assert j.count == 0 and list(j.records(0)) == []
print("OK")
"""
    )
