"""A journal entry: one bulletin as every node stores it and every link carries it.

    signed header, 149 bytes (big-endian):
        0   u8   format version (1)
        1   8    origin: fingerprint of the node that wrote it (signed.fingerprint, raw)
        9   u32  seq: the origin's count of bulletins, from 1
        13  32   prev: SHA-256 of the origin's previous signed header (zeros for seq 1)
        45  u32  expires: unix time at which every node purges the content
        49  32   SHA-256 of the content
        81  u32  size of the content
        85  64   Ed25519 signature by the origin over "ribat-bulletin v1\\n" + bytes 0..84
    content, size bytes:
        u8 n, then n key wraps (RFC 3394, 40 bytes each: the content key wrapped under the
        key the origin shares with one recipient node), then the AES-256-CTR ciphertext of
        the bulletin's JSON (kind, severity, time, releasability, title, body, refs);
        or, for what is no secret (an acknowledgement), u8 PUBLIC then its JSON in clear.

The header is all a relay, a broker or a node outside the releasability list sees; it
commits to the content by hash, so the content can be purged at expiry while the chain of
headers stays verifiable. docs/security.md has the reasons for each field. Shared by node
and host (symlink host/ribat/entry.py); no I/O.
"""

import json
import struct
from binascii import hexlify, unhexlify
from hashlib import sha256

VERSION = 1
HEADER = 85  # the signed part
SIGNED = 149  # header and signature
WRAP = 40  # an RFC 3394 wrap of a 32-byte key
GENESIS = bytes(32)
MAX_CONTENT = 3600  # keeps an entry in one frame of a node (4096 bytes)
RUN = 64  # entries of one origin a receiver holds ahead of its chain: senders send runs
_FORMAT = ">B8sI32sI32sI"
# Where the fields a store reads straight from a header are (the table above).
AT_ORIGIN = 1
AT_SEQ = 9
AT_PREV = 13
AT_EXPIRES = 45
AT_SIZE = 81
_CONTEXT = b"ribat-bulletin v1\n"

KINDS = ("alert", "notice", "request", "reply", "update", "retraction")
ACK = "ack"  # the kind of a node's acknowledgement of a bulletin: public (PUBLIC)
SIGNAL = "signal"  # a node's weak-signal tokens for one of its bulletins: public (ribat.signals)
PUBLIC_KINDS = (ACK, SIGNAL)
PUBLIC = 0xFF  # a content's first byte: no wraps, its JSON in the clear
SEVERITIES = ("routine", "priority", "flash")
NEEDS_REF = ("reply", "update", "retraction")


class Header:
    """The fields of a signed header (what anyone who carries the entry can see)."""

    def __init__(self, raw: bytes) -> None:
        self.version, self.origin, self.seq, self.prev, self.expires, self.chash, self.size = (
            struct.unpack_from(_FORMAT, raw, 0)
        )
        self.raw = bytes(raw[:SIGNED])

    def id(self) -> str:
        return entry_id(self.origin, self.seq)

    def digest(self) -> bytes:
        """What the origin's next entry names as prev."""
        return sha256(self.raw).digest()


def pack(origin: bytes, seq: int, prev: bytes, expires: int, content: bytes) -> bytes:
    """The header to sign for content (without its signature)."""
    chash = sha256(content).digest()
    return struct.pack(_FORMAT, VERSION, origin, seq, prev, expires, chash, len(content))


def message(header: bytes) -> bytes:
    """What the origin signs: the header after a context naming the format."""
    return _CONTEXT + bytes(header[:HEADER])


def parse(raw: bytes) -> "tuple[Header, bytes] | None":
    """An entry's header and content; None if raw is not shaped like an entry of this
    version (a content that does not match its hash is the caller's to find)."""
    if len(raw) < SIGNED or raw[0] != VERSION:
        return None
    header = Header(raw)
    content = raw[SIGNED:]  # (a view, if raw is one: not copied)
    if header.seq < 1 or header.size > MAX_CONTENT or len(content) not in (0, header.size):
        return None
    return header, content


def content_matches(header: Header, content: bytes) -> bool:
    return len(content) == header.size and sha256(content).digest() == header.chash


def entry_id(origin: bytes, seq: int) -> str:
    """How people name an entry: the origin's first 8 fingerprint digits, and its seq."""
    return "%s:%d" % (hexlify(origin[:4]).decode(), seq)


def parse_id(text: object) -> "tuple[bytes, int] | None":
    """(origin prefix, seq) of an entry id; None if text is not one."""
    if not isinstance(text, str) or text.count(":") != 1:
        return None
    prefix, seq = text.split(":")
    try:
        raw = unhexlify(prefix)
        n = int(seq)
    except ValueError:
        return None
    return (raw, n) if len(raw) == 4 and n >= 1 else None


def origin_bytes(fp: str) -> bytes:
    """The 8 raw bytes of a fingerprint written 2f5a-be99-b6fd-2274."""
    return unhexlify(fp.replace("-", ""))


def signing_keys(members: object) -> dict:
    """Origin -> Ed25519 public key of each member record (roster or identity: fields
    "fp" and "sign"), to check their entries with."""
    return {origin_bytes(m["fp"]): unhexlify(m["sign"]) for m in members}  # type: ignore[attr-defined]


def fp_text(origin: bytes) -> str:
    h = hexlify(origin).decode()
    return "-".join(h[i : i + 4] for i in range(0, 16, 4))


def wraps_of(content: bytes) -> "tuple[list, memoryview] | None":
    """The key wraps (copies) and the ciphertext (a view into content, not a copy) of a
    content; None if it is not shaped so."""
    if not content or content[0] == PUBLIC:
        return None
    n = content[0]
    end = 1 + n * WRAP
    if len(content) < end:
        return None
    wraps = [content[1 + i * WRAP : 1 + (i + 1) * WRAP] for i in range(n)]
    return wraps, memoryview(content)[end:]


def run_index(n: int, p: int) -> int:
    """Which of n entries of one origin (oldest first) goes p-th: in runs of RUN, each
    run newest first, so the receiver checks one signature per run and hashes the rest."""
    start = (p // RUN) * RUN
    return min(start + RUN, n) - 1 - p % RUN


def pack_batch(entries: list) -> bytes:
    """Entries for one transfer: each a u32 length, then its bytes."""
    out = bytearray()
    for raw in entries:
        out += len(raw).to_bytes(4, "big")
        out += raw
    return bytes(out)


def unpack_batch(data: "bytes | memoryview") -> "list | None":
    """The entries of pack_batch(...); None if data is cut or not such a batch. Each is
    a slice of data: a view into it if data is a view (a node's import, whose puts would
    otherwise copy each 4 KB frame once more, and collect the heap twice as often)."""
    out = []
    i = 0
    while i < len(data):
        if i + 4 > len(data):
            return None
        n = struct.unpack_from(">I", data, i)[0]
        i += 4
        if n > SIGNED + MAX_CONTENT or i + n > len(data):
            return None
        out.append(data[i : i + n])
        i += n
    return out


def public_of(content: bytes) -> "dict | None":
    """The JSON object of a public content (PUBLIC: an acknowledgement, a signal); None
    for any other."""
    if not content or content[0] != PUBLIC:
        return None
    try:
        doc = json.loads(bytes(content[1:]))
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None
