"""The USB serial's input, read a buffer at a time on a board.

The rp2 and esp32 ports' stdin reads block until the buffer is full: read one byte at
a time (a poll before each), the link spent ~45 us a byte on an RP2040, most of an
import's time. Such a read asks the terminal duplicate (os.dupterm) for a byte whenever
the USB has none: attached during a read, a _Pause gives none until a timer arms it,
then fills the rest of the buffer with carriage returns, which the link ignores in and
out of frames (ribat.codec.Deframer). A read so ends at most _PAUSE_MS after the input
stops, and costs ~9 us a byte on an RP2040 (README, The emulated Pico).
"""

import io
import os
import sys

import machine
from micropython import const

_PAUSE_MS = const(5)  # input that stops this long has ended for now (a line, a packet)
_FILL = const(0x3FFF)  # carriage returns an armed _Pause gives: more than any read asks


class _Pause(io.IOBase):
    def __init__(self) -> None:
        self.left = 0

    def arm(self, _timer: object) -> None:
        self.left = _FILL

    def readinto(self, buf: bytearray) -> "int | None":
        if not self.left:
            return None
        buf[0] = 13
        self.left -= 1
        return 1

    def write(self, buf: bytes) -> int:  # (stdout's duplicate: nothing is written meanwhile)
        return len(buf)

    def ioctl(self, op: int, arg: int) -> int:
        return 0


class Console:
    def __init__(self, ipoll, readinto) -> None:
        """ipoll: a poll's ipoll on stdin; readinto: stdin's."""
        self._ipoll = ipoll
        self._readinto = readinto
        self._pause = _Pause()
        self._arm = self._pause.arm  # (bound once: a bound method is an allocation)
        # rp2's soft timers are -1; the esp32 port has hardware timers 0-3 alone
        self._timer = machine.Timer(-1 if sys.platform == "rp2" else 0)

    def into(self, buf: bytearray) -> int:
        """The waiting bytes into buf: len(buf), padded with carriage returns once the
        input pauses; 0 when none waits."""
        for _ in self._ipoll(0):
            break
        else:
            return 0
        pause = self._pause
        os.dupterm(pause)
        self._timer.init(mode=machine.Timer.ONE_SHOT, period=_PAUSE_MS, callback=self._arm)
        try:
            self._readinto(buf)
        finally:
            self._timer.deinit()
            os.dupterm(None)
            pause.left = 0
        return len(buf)
