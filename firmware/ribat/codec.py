"""Frame codec of the ribat device-management protocol.

This one file runs on the node (MicroPython) and on the host (CPython, through the
symlink host/ribat/codec.py). It does no I/O.

A frame travels as one line on the serial link that also carries the REPL:

    0x1E  base64(body)  '\\n'

0x1E (record separator) is invisible in a terminal, is not a REPL control character and
never starts a line MicroPython prints; base64 keeps every frame free of the control bytes
the REPL reacts to (Ctrl-A..Ctrl-E), so Ctrl-C and the raw REPL work whatever the node is
doing. A '\\r' before the '\\n' is ignored (boards and PTYs may cook line ends).

body, little endian:
    0    u8   protocol version (VERSION)
    1    u8   kind: REQUEST, RESPONSE, ERROR or EVENT
    2    u16  seq: a request's number, echoed by its response or error; events count apart
    4    u16  length M of the meta part
    6    M    meta: a JSON object (an operation and its arguments, or a result)
    6+M  D    data: raw bytes, often empty (file chunks, journal entries)
    end  u32  CRC-32 of all the bytes before it

Bytes 0..3 (version, kind, seq) and the trailing CRC keep this layout in every future
version, so two peers that disagree on the version can still say so to each other.
"""

import binascii
import io
import json
import struct

VERSION = 1

REQUEST = 1
RESPONSE = 2
ERROR = 3
EVENT = 4

MARK = 0x1E
_HEADER = 6
_CRC = 4
MIN_BODY = _HEADER + _CRC

# Why a frame was rejected; the index is the counter slot on the node.
CAUSES = (
    "encoding",  # not base64
    "crc",  # CRC-32 mismatch
    "header",  # too short, or the meta length points outside the body
    "oversize",  # line longer than the receiver's maximum
    "truncated",  # a new frame started before this one ended
    "version",  # protocol version the receiver does not speak
    "meta",  # meta is not a JSON object
    "unknown",  # operation the receiver does not know
    "args",  # operation known, arguments invalid
    "internal",  # the receiver failed while carrying out a valid request
    "locked",  # the request needs an unlocked node (operator PIN)
    "pin",  # wrong operator PIN
    "state",  # not in this state: provisioning a provisioned node, using an unprovisioned one
    "refused",  # a document the node will not take: forged, older, another cell's, garbage
    "memory",  # the receiver had no memory for this request or its answer: send less
    "auth",  # a session request whose counter or MAC is wrong: replayed, reordered, altered
)
ENCODING = 0
CRC = 1
HEADER = 2
OVERSIZE = 3
TRUNCATED = 4
BAD_VERSION = 5
META = 6
UNKNOWN = 7
ARGS = 8
INTERNAL = 9
LOCKED = 10
PIN = 11
STATE = 12
REFUSED = 13
MEMORY = 14
AUTH = 15


class FrameError(Exception):
    """A line that is not a valid frame; .cause indexes CAUSES, .seq is set when known."""

    def __init__(self, cause: int, seq: int = -1) -> None:
        super().__init__(CAUSES[cause])
        self.cause = cause
        self.seq = seq


class Frame:
    __slots__ = ("data", "kind", "meta", "seq", "version")

    def __init__(
        self, version: int, kind: int, seq: int, meta: "dict | None", data: bytes
    ) -> None:
        self.version = version
        self.kind = kind
        self.seq = seq
        self.meta = meta
        self.data = data


def encoded_size(body_size: int) -> int:
    """Length of the base64 text that carries a body of body_size bytes."""
    return 4 * ((body_size + 2) // 3)


def encode(kind: int, seq: int, meta: dict, data: bytes = b"", version: int = VERSION) -> bytes:
    """The complete line (marker, base64 body, newline) for one frame."""
    out = io.BytesIO()
    write(out, kind, seq, meta, data, version)
    return out.getvalue()


_PIECE = 768  # body bytes base64-encoded at a time by write(): 1 KB of text


def write(
    stream, kind: int, seq: int, meta: dict, data: bytes = b"", version: int = VERSION
) -> None:  # type: ignore[no-untyped-def, unused-ignore]
    """Write the line of encode() to stream in pieces, the data never copied whole: a
    node sending a 4 KB frame needs 2 KB more, not another 4 KB block, which a heap
    scattered by long-lived objects may not have."""
    m = json.dumps(meta, separators=(",", ":")).encode()
    head = bytearray(_HEADER)
    struct.pack_into("<BBHH", head, 0, version, kind, seq & 0xFFFF, len(m))
    crc = binascii.crc32(data, binascii.crc32(m, binascii.crc32(head))) & 0xFFFFFFFF
    piece = bytearray(_PIECE)
    fill = 0
    stream.write(b"\x1e")
    for part in (head, m, memoryview(data), struct.pack("<I", crc)):
        i = 0
        while i < len(part):
            n = min(_PIECE - fill, len(part) - i)
            piece[fill : fill + n] = part[i : i + n]
            fill += n
            i += n
            if fill == _PIECE:
                stream.write(binascii.b2a_base64(piece, newline=False))
                fill = 0
    if fill:
        stream.write(binascii.b2a_base64(memoryview(piece)[:fill], newline=False))
    stream.write(b"\n")


def decode(text: "bytes | memoryview") -> Frame:
    """Decode the base64 text between the marker and the newline.

    Raises FrameError. A frame of another protocol version passes the CRC check and comes
    back with meta None: only its version, kind and seq can be trusted.
    """
    try:
        body = binascii.a2b_base64(text)
    except ValueError:
        raise FrameError(ENCODING)
    n = len(body)
    if n < MIN_BODY:
        raise FrameError(HEADER)
    version, kind, seq, mlen = struct.unpack_from("<BBHH", body, 0)
    crc = binascii.crc32(memoryview(body)[: n - _CRC]) & 0xFFFFFFFF
    if struct.unpack_from("<I", body, n - _CRC)[0] != crc:
        raise FrameError(CRC, seq)
    if version != VERSION:
        return Frame(version, kind, seq, None, b"")
    end = _HEADER + mlen
    if end > n - _CRC:
        raise FrameError(HEADER, seq)
    try:
        meta = json.loads(body[_HEADER:end])
    except ValueError:
        raise FrameError(META, seq)
    if not isinstance(meta, dict):
        raise FrameError(META, seq)
    return Frame(version, kind, seq, meta, body[end : n - _CRC])


def peek_seq(text: "bytes | memoryview") -> int:
    """The seq of a frame line from its first 8 base64 characters, without decoding the
    rest (to answer a request too big to decode); -1 if it is not readable."""
    try:
        head = binascii.a2b_base64(text[:8])
    except ValueError:
        return -1
    return struct.unpack_from("<H", head, 2)[0] if len(head) >= 4 else -1


class Deframer:
    """Finds frame lines in a byte stream that also carries other text.

    Fed one byte at a time from a preallocated buffer, so a stream of junk costs no memory:
    bytes outside a frame are dropped, a line longer than the buffer is skipped to its end.
    """

    IDLE = 0
    IN_FRAME = 1
    SKIP = 2

    def __init__(self, max_body: int) -> None:
        self.buf = bytearray(encoded_size(max_body))
        self.view = memoryview(self.buf)
        self.n = 0
        self.state = Deframer.IDLE

    def push(self, b: int) -> int:
        """Take one byte. Returns -1 (nothing yet), -2 (a frame line is in .line()) or the
        index of a rejection cause (OVERSIZE, TRUNCATED)."""
        if b == MARK:
            cut = self.state == Deframer.IN_FRAME
            self.state = Deframer.IN_FRAME
            self.n = 0
            return TRUNCATED if cut else -1
        state = self.state
        if state == Deframer.IDLE:
            return -1
        if b == 10:
            self.state = Deframer.IDLE
            return -2 if state == Deframer.IN_FRAME else -1
        if state == Deframer.SKIP or b == 13:
            return -1
        if self.n == len(self.buf):
            self.state = Deframer.SKIP
            return OVERSIZE
        self.buf[self.n] = b
        self.n += 1
        return -1

    def line(self) -> memoryview:
        return self.view[: self.n]
