"""The serial link: request frames in from stdin, responses and events out to stdout (or
from and to another stream: the wire to a peer node, ribat.wire).

It shares the USB serial with the REPL: it reads whatever bytes arrive, keeps only frame
lines, and counts every line it rejects by cause. Ctrl-C never reaches it (the board turns
it into KeyboardInterrupt), which is what keeps the REPL reachable.
"""

import asyncio
import gc
import select
import sys

import micropython
from micropython import const

from ribat import codec

_EOF_BACKOFF_MS = const(100)
_CHUNK = const(128)  # bytes read at a time: a few USB packets
# A board's USB serial, read through ribat.console: each read costs a timer's and a
# terminal duplicate's setting up, spread over four times the bytes (an import's entry
# 1 ms faster on the emulated Pico; 384 bytes of heap, for the one link of its kind).
_CONSOLE_CHUNK = const(512)

_TYPES = False
if _TYPES:  # the checker's view: viper reads the buffers it takes as ptr8
    from typing import Any, Callable

    _Scan = Callable[[Any, int, int, Any, int, int], int]
    _Skip = Callable[[Any, int, int], int]


# A frame's bytes pass here in machine code: taken byte by byte in Python, the link
# spent most of an import's time on an RP2040 (README, The emulated Pico).


@micropython.viper
def _frame_bytes(src: ptr8, i: int, n: int, dst: ptr8, at: int, room: int) -> int:
    """src[i:n] copied to dst[at:] up to the first byte that is not a frame's own (a
    control byte or the mark) or room bytes; the index in src where it stopped."""
    end = i + room
    if end > n:
        end = n
    while i < end:
        b = src[i]
        if b <= 13 or b == 0x1E:  # (codec.MARK)
            break
        dst[at] = b
        at += 1
        i += 1
    return i


@micropython.viper
def _to_mark(src: ptr8, i: int, n: int) -> int:
    """The index of the first mark in src[i:n], or n: what comes between frames (the
    REPL's text, a read's padding) is dropped."""
    while i < n:
        if src[i] == 0x1E:
            break
        i += 1
    return i


frame_bytes: "_Scan" = _frame_bytes
to_mark: "_Skip" = _to_mark


class RequestError(Exception):
    """Raised by a handler: the request is refused with this cause and message."""

    def __init__(self, cause: int, message: str) -> None:
        super().__init__(message)
        self.cause = cause
        self.message = message


def arg(meta: dict, name: str, kind: type, default: object = None) -> object:
    """Request argument name, which must be a kind (default when absent; with no
    default, it is required)."""
    value = meta.get(name, default)
    if not isinstance(value, kind):
        raise RequestError(codec.ARGS, "%r must be a %s" % (name, kind.__name__))
    return value


class Link:
    def __init__(self, max_body: int, stream: object = None) -> None:
        """A link on stream, or on stdin and stdout."""
        self.max_body = max_body
        self.deframer = codec.Deframer(max_body)
        self.rx_ok = 0
        self.tx = 0
        self.rejected = [0] * len(codec.CAUSES)
        self.event_seq = 0
        if stream is None:
            self._in = sys.stdin.buffer
            self._out = sys.stdout.buffer
            self._stream = sys.stdin
        else:
            self._in = self._out = self._stream = stream
        self._poll = select.poll()
        self._poll.register(self._stream, select.POLLIN)
        self._ipoll = self._poll.ipoll  # (bound once: a bound method is an allocation)
        self._readinto = self._in.readinto
        # _read(buf): bytes waiting, up to len(buf): how many, 0 if none, -1 at the end
        # of input. A stream's readinto waits for as many bytes as it is asked: a UART
        # tells how many have come (any()); a board's stdin does not, and ribat.console
        # ends its reads at a pause; other streams (the unix port's) give one at a time.
        self._read = self._waiting_into
        self._any = getattr(self._in, "any", None)
        chunk = _CHUNK
        if stream is None and sys.platform != "linux":
            from ribat import console

            self._read = console.Console(self._ipoll, self._readinto).into
            chunk = _CONSOLE_CHUNK
        self._chunk = bytearray(chunk)
        self._at = self._n = 0  # what of the last read the deframer has taken

    def _waiting_into(self, buf: bytearray) -> int:
        for _ in self._ipoll(0):  # (ipoll reuses one tuple; poll() makes a list every call)
            n = 1 if self._any is None else min(self._any(), len(buf))
            if n == 0:
                return 0
            got = self._readinto(buf, n)
            return -1 if got == 0 else (got or 0)  # (a UART says None for nothing yet)
        return 0

    async def serve(self, handle) -> None:
        """Read frames forever; handle(frame) returns (meta, data) or raises RequestError."""
        waiter = asyncio.StreamReader(self._stream)
        while True:
            if self._at < self._n:  # the last read holds more: the other tasks first
                await asyncio.sleep_ms(0)
            else:
                await waiter.read(0)  # returns once input is waiting, consuming none of it
            if not self.take_input(handle):
                await asyncio.sleep_ms(_EOF_BACKOFF_MS)

    def take_input(self, handle) -> bool:
        """Push the bytes waiting on the input through the deframer, up to the end of the
        next frame line, which is handled: then back to the event loop, whose other tasks
        a host that sends request after request would starve. False at end of input.
        Allocates nothing unless a frame line completes."""
        deframer = self.deframer
        buf = deframer.buf
        size = len(buf)
        chunk = self._chunk
        in_frame = codec.Deframer.IN_FRAME
        idle = codec.Deframer.IDLE
        i, n = self._at, self._n
        while True:
            if i == n:
                n = self._read(chunk)
                i = 0
                if n <= 0:
                    self._at = self._n = 0
                    return n == 0
            state = deframer.state
            if state == in_frame:
                at = deframer.n
                j = frame_bytes(chunk, i, n, buf, at, size - at)
                deframer.n = at + j - i
                i = j
            elif state == idle:
                i = to_mark(chunk, i, n)
            if i == n:
                continue
            got = deframer.push(chunk[i])
            i += 1
            if got == -2:
                self._at, self._n = i, n
                try:
                    self._on_line(deframer.line(), handle)
                except MemoryError:  # decoding a big frame with little heap left
                    gc.collect()
                    self.reject(
                        codec.MEMORY,
                        codec.peek_seq(deframer.line()),
                        "out of memory for a request this big: send less at a time",
                    )
                return True
            if got >= 0:
                self.reject(got, -1, codec.CAUSES[got])

    def _on_line(self, text: memoryview, handle) -> None:
        try:
            frame = codec.decode(text)
        except codec.FrameError as e:
            self.reject(e.cause, e.seq, codec.CAUSES[e.cause])
            return
        if frame.version != codec.VERSION:
            self.reject(
                codec.BAD_VERSION,
                frame.seq,
                "this node speaks protocol %d, not %d" % (codec.VERSION, frame.version),
            )
            return
        if frame.kind != codec.REQUEST:
            self.on_reply(frame)
            return
        try:
            meta, data = handle(frame)
        except RequestError as e:
            self.reject(e.cause, frame.seq, e.message)
            return
        except MemoryError:
            gc.collect()
            self.reject(codec.MEMORY, frame.seq, "out of memory for this request: send less")
            return
        except Exception as e:  # noqa: BLE001 - a failed request must never stop the node
            self.reject(codec.INTERNAL, frame.seq, "%s: %s" % (type(e).__name__, e))
            return
        self.rx_ok += 1
        try:
            self.send(codec.RESPONSE, frame.seq, meta, data)
        except MemoryError:
            meta = data = None
            gc.collect()
            self.reject(codec.MEMORY, frame.seq, "out of memory for the response: ask for less")

    def on_reply(self, frame: codec.Frame) -> None:
        """A response, error or event: the host sends none (a link that asks does)."""
        self.reject(codec.HEADER, -1, "not a request")

    def reject(self, cause: int, seq: int, message: str) -> None:
        self.rejected[cause] += 1
        if seq >= 0:
            meta = {"error": codec.CAUSES[cause], "message": message, "proto": codec.VERSION}
            self.send(codec.ERROR, seq, meta)

    def send(self, kind: int, seq: int, meta: dict, data: bytes = b"") -> None:
        codec.write(self._out, kind, seq, meta, data)
        self.tx += 1

    def event(self, meta: dict) -> None:
        self.event_seq = (self.event_seq + 1) & 0xFFFF
        self.send(codec.EVENT, self.event_seq, meta)
