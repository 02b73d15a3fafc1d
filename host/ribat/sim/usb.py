"""The host's side of a virtual board's port: the pseudo-terminal that host tools open as
they would a board's USB serial port.

As a board's USB CDC does: output is dropped while no host has the port open, crosses
the link at its pace once one has, and a host that stops reading stalls the board for
at most TX_STALL_S before what it leaves unread is dropped. Whether a host holds the port
is written on the panel too: the node ends an unlocked session when the host goes, as a
real board sees its USB port closed.
"""

import errno
import os
import select
import time
import tty
from collections.abc import Callable
from pathlib import Path

from ribat.sim.interpreter import set_nonblocking
from ribat.sim.pace import Pace

HOST_POLL_S = 0.005  # how often to look for a host opening the port while none has it open
TX_STALL_S = 0.5  # output a connected host leaves unread this long is dropped (CDC timeout)
READ_SIZE = 4096
PANEL_HOST = 16  # the panel's byte that says a host holds the port


class UsbPort:
    def __init__(self, panel: Path, pace: Pace, stats: dict[str, int]) -> None:
        """pace: the link toward the host; stats: the supervisor's counters, in which
        bytes_out and dropped_out are kept."""
        self.panel = panel
        self.pace = pace
        self.stats = stats
        self.tx = bytearray()  # arrived, not yet taken by the host's terminal
        self.tx_since = 0.0
        self.connected = False
        self.next_poll = 0.0

    def open(self) -> str:
        """Make the terminal; its path (the board's serial device)."""
        self.fd, slave = os.openpty()
        tty.setraw(slave)
        path = os.ttyname(slave)
        os.close(slave)  # the port counts as closed until a host opens it
        set_nonblocking(self.fd)
        return path

    @property
    def backlog(self) -> int:
        """Bytes on their way to the host."""
        return len(self.tx) + self.pace.queued

    def send(self, data: bytes) -> None:
        """Output of the board: onto the link, or lost if no host holds the port."""
        if not self.connected:
            self.stats["dropped_out"] += len(data)
            return
        self.pace.push(data, time.monotonic())

    def deliver(self) -> None:
        """Hand the host what has crossed the link by now, and what it did not take yet."""
        data = self.pace.arrived(time.monotonic())
        if data:
            if not self.tx:
                self.tx_since = time.monotonic()
            self.tx += data
        self.flush()

    def watch(
        self, p: "select.poll", handlers: dict, on_event: Callable[[], None], now: float,
        idle: float,
    ) -> float:  # fmt: skip
        """Ready the host's side for one turn of a supervisor's loop: an open port polled
        (for writing too while output waits), a closed one looked at (again) to see it
        opened, since only an open one shows its hang-up on the fd. The longest the loop
        may then sleep for the host's sake, idle at most."""
        if not self.connected and now >= self.next_poll:
            self.poll()
        if self.connected:
            p.register(self.fd, select.POLLIN | (select.POLLOUT if self.tx else 0))
            handlers[self.fd] = on_event
        wait = idle if self.connected else max(0.0, self.next_poll - now)
        due = self.pace.next_due()
        if due is not None:
            wait = min(wait, max(0.0, due - now))
        return min(wait, 0.05) if self.tx else wait

    def flush(self) -> None:
        while self.tx:
            try:
                n = os.write(self.fd, self.tx)
            except BlockingIOError:
                break
            except OSError:
                self.gone()
                return
            self.stats["bytes_out"] += n
            del self.tx[:n]
            self.tx_since = time.monotonic()
        if self.tx and time.monotonic() - self.tx_since > TX_STALL_S:
            self.stats["dropped_out"] += len(self.tx)
            self.tx.clear()

    def read(self) -> bytes:
        """What the host sent (b"" if nothing, or if the host let go of the port)."""
        try:
            return os.read(self.fd, READ_SIZE)
        except BlockingIOError:
            return b""
        except OSError as e:
            if e.errno != errno.EIO:
                raise
            self.gone()
            return b""

    def gone(self) -> None:
        self._set_connected(False)
        self.stats["dropped_out"] += self.backlog
        self.tx.clear()
        self.pace.clear()

    def poll(self) -> None:
        """A host opened the port when the terminal's master stops reporting a hang-up;
        a closed port has to be looked at again and again to see it opened."""
        p = select.poll()
        p.register(self.fd, select.POLLIN)
        self._set_connected(not any(ev & select.POLLHUP for _, ev in p.poll(0)))
        self.next_poll = time.monotonic() + HOST_POLL_S

    def _set_connected(self, connected: bool) -> None:
        if connected != self.connected:
            with open(self.panel, "r+b") as f:
                f.seek(PANEL_HOST)
                f.write(bytes((connected,)))
        self.connected = connected
