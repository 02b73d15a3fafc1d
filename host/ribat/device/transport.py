"""A serial port, opened exclusively, with reads bounded by deadlines and OS errors turned
into the library's own (busy, gone, not found).

Wire bytes are logged at DEBUG on the "ribat.wire" logger.
"""

import errno
import os
import select
import time
from typing import TYPE_CHECKING

import serial

from ribat.errors import InvalidConfig, NoBoard, PortBusy, PortGone

if TYPE_CHECKING:
    import logging

BAUDRATE = 115200
# How long a port another program holds is waited for, unless $RIBAT_PORT_WAIT says: a
# gateway's round on a loaded host held a node past 10 s in test_cell.
BUSY_WAIT_S = 30.0
# The bytes on the wire, logged under --debug only: the logging module costs a command
# more start-up time than its whole exchange with a node (ribat.cli sets this).
wire_log: "logging.Logger | None" = None


def _held_elsewhere(e: Exception) -> bool:
    """Whether opening failed because another program holds the port."""
    text = str(e)
    code = getattr(e, "errno", None)
    return code in (errno.EBUSY, errno.EAGAIN) or "exclusively lock" in text or "busy" in text


def _open_error(path: str, e: Exception) -> Exception:
    code = getattr(e, "errno", None)
    text = str(e)
    if _held_elsewhere(e):
        return PortBusy(
            f"{path} is in use by another program: close it (mpremote, a terminal,"
            " another ribat) and try again"
        )
    if code == errno.ENOENT or "No such file" in text or "could not open port" in text:
        return NoBoard(f"no serial port {path}: see `ribat boards` for the ones there are")
    if code == errno.EACCES:
        return PortBusy(f"no permission to open {path}: add your user to the 'dialout' group")
    return NoBoard(f"cannot open {path}: {e}")


def busy_wait_s() -> float:
    """Seconds to wait for a port another program holds: $RIBAT_PORT_WAIT, or BUSY_WAIT_S."""
    text = os.environ.get("RIBAT_PORT_WAIT")
    if text is None:
        return BUSY_WAIT_S
    try:
        return max(0.0, float(text))
    except ValueError:
        raise InvalidConfig(
            f"RIBAT_PORT_WAIT={text!r} is not a number of seconds: set it to one, or unset it"
        ) from None


class Port:
    """An open serial port. Use as a context manager, or close() it."""

    def __init__(self, path: str, baudrate: int = BAUDRATE) -> None:
        self.path = path
        # A port held for a moment (a gateway's round) is waited for, briefly.
        deadline = time.monotonic() + busy_wait_s()
        while True:
            try:
                self.serial = serial.Serial(path, baudrate=baudrate, timeout=0, exclusive=True)
                return
            except (serial.SerialException, OSError, ValueError) as e:
                if not _held_elsewhere(e) or time.monotonic() > deadline:
                    raise _open_error(path, e) from e
            time.sleep(0.05)

    def __enter__(self) -> "Port":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.serial.close()
        except (serial.SerialException, OSError):
            pass

    def _gone(self, e: Exception) -> PortGone:
        return PortGone(f"{self.path} disappeared (board unplugged, reset or stopped): {e}")

    def write(self, data: bytes) -> None:
        if wire_log is not None:
            wire_log.debug("> %r", data)
        try:
            self.serial.write(data)
            self.serial.flush()
        except (serial.SerialException, OSError) as e:
            raise self._gone(e) from e

    def read(self, timeout: float) -> bytes:
        """What arrives within timeout seconds (at least one byte if any comes), or b""."""
        try:
            ready, _, _ = select.select([self.serial.fileno()], [], [], max(0.0, timeout))
            if not ready:
                return b""
            data = self.serial.read(max(1, self.serial.in_waiting))
        except (serial.SerialException, OSError, ValueError) as e:
            raise self._gone(e) from e
        if wire_log is not None:
            wire_log.debug("< %r", data)
        return data
