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
    from collections.abc import Callable

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


def holders(path: str) -> list[str]:
    """The programs that have path open, as "name (pid N)", where the system tells (Linux's
    /proc; only those of this user are visible, others' are left out)."""
    found = []
    try:
        target = os.path.realpath(path)
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return []
    for pid in pids:
        if int(pid) == os.getpid():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if not any(os.path.realpath(f"/proc/{pid}/fd/{fd}") == target for fd in fds):
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        found.append(f"{_program(argv)} (pid {pid})")
    return found


def _program(argv: list[str]) -> str:
    """What people call a command line: `python -m ribat gateway` is "ribat gateway"."""
    if not argv:
        return "?"
    words = [os.path.basename(a) for a in argv[:4]]
    if words[0].startswith("python") and len(words) > 2 and argv[1] == "-m":
        words = words[2:]
    elif words[0].startswith("python") and len(words) > 1:
        words = words[1:]
    return " ".join(words[:2])


def _busy_text(name: str, path: str) -> str:
    who = holders(path)
    return f"{name} is in use by " + (", ".join(who) if who else "another program")


def _open_error(name: str, path: str, e: Exception) -> Exception:
    code = getattr(e, "errno", None)
    text = str(e)
    if _held_elsewhere(e):
        return PortBusy(
            f"{_busy_text(name, path)}: close it (mpremote, a terminal, a gateway, another "
            "ribat) and try again, or wait longer ($RIBAT_PORT_WAIT seconds)"
        )
    if code == errno.ENOENT or "No such file" in text or "could not open port" in text:
        return NoBoard(f"no serial port {name}: see `ribat boards` for the ones there are")
    if code == errno.EACCES:
        return PortBusy(f"no permission to open {name}: add your user to the 'dialout' group")
    return NoBoard(f"cannot open {name}: {e}")


# The ports as the user named them (sim:NAME) by device path, for messages: filled in by
# ribat.ports.resolve.
NAMES: dict[str, str] = {}
# How much longer than a real board's a board on a device takes (an emulated chip runs its
# firmware some 2 to 3 times slower than the chip): its answers are waited for that much
# longer. Filled in by ribat.ports.resolve.
SLOWNESS: dict[str, float] = {}


def named(path: str) -> str:
    """A device path as the user named its port (sim:NAME), for messages."""
    return NAMES.get(path, path)


# Told once when a port is found held and waited for (ribat.cli prints it on stderr); the
# library prints nothing itself.
busy_notice: "Callable[[str], None] | None" = None


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


_TELL_S = 0.5  # a wait for a held port said once it has lasted this long


class Port:
    """An open serial port. Use as a context manager, or close() it."""

    def __init__(
        self, path: str, baudrate: int = BAUDRATE, name: str | None = None,
        wait_s: float | None = None,
    ) -> None:  # fmt: skip
        """path: the device; name: the port as the user gave it (sim:NAME), for messages;
        wait_s: how long a port another program holds is waited for (busy_wait_s)."""
        self.path = path
        self.name = name or named(path)
        self.slowness = SLOWNESS.get(path, 1.0)
        # A port held for a moment (a gateway's round) is waited for, briefly; said once
        # the wait lasts (a round over sooner needs no word, nor breaks an error's line).
        wait = busy_wait_s() if wait_s is None else wait_s
        start = time.monotonic()
        told = False
        while True:
            try:
                self.serial = serial.Serial(path, baudrate=baudrate, timeout=0, exclusive=True)
                return
            except (serial.SerialException, OSError, ValueError) as e:
                waited = time.monotonic() - start
                if not _held_elsewhere(e) or waited > wait:
                    raise _open_error(self.name, path, e) from e
                if not told and busy_notice is not None and wait >= 1 and waited >= _TELL_S:
                    busy_notice(f"{_busy_text(self.name, path)}: waiting up to {wait:g} s for it")
                    told = True
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
        return PortGone(f"{self.name} disappeared (board unplugged, reset or stopped): {e}")

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
