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

from micropython import const

from ribat import codec

_EOF_BACKOFF_MS = const(100)


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
        self._byte = bytearray(1)

    async def serve(self, handle) -> None:
        """Read frames forever; handle(frame) returns (meta, data) or raises RequestError."""
        waiter = asyncio.StreamReader(self._stream)
        while True:
            await waiter.read(0)  # returns once input is waiting, consuming none of it
            if not self.take_input(handle):
                await asyncio.sleep_ms(_EOF_BACKOFF_MS)

    def take_input(self, handle) -> bool:
        """Push every byte waiting on stdin through the deframer; False at end of input.
        Allocates nothing unless a frame line completes."""
        deframer = self.deframer
        byte = self._byte
        # Every byte of every frame passes here, one at a time (stdin has no bulk read
        # that will not block): a frame's own bytes go straight to the deframer's buffer,
        # with as few lookups as can be (over 100 us a byte on an RP2040 went to this loop
        # before; README, The emulated Pico).
        buf = deframer.buf
        size = deframer.size
        ipoll = self._ipoll
        readinto = self._readinto
        mark = codec.MARK
        in_frame = codec.Deframer.IN_FRAME
        while True:
            ready = False
            for _ in ipoll(0):  # (ipoll reuses one tuple; poll() makes a list every call)
                ready = True
                break
            if not ready:
                return True
            if not readinto(byte):
                return False
            b = byte[0]
            # a frame's own byte (in a frame; not \n, \r or the mark), as Deframer.push
            # would take it
            if b > 13 and b != mark and deframer.state == in_frame:
                n = deframer.n
                if n < size:
                    buf[n] = b
                    deframer.n = n + 1
                    continue
            got = deframer.push(b)
            if got == -2:
                try:
                    self._on_line(deframer.line(), handle)
                except MemoryError:  # decoding a big frame with little heap left
                    gc.collect()
                    self.reject(
                        codec.MEMORY,
                        codec.peek_seq(deframer.line()),
                        "out of memory for a request this big: send less at a time",
                    )
            elif got >= 0:
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
