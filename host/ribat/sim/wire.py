"""A virtual board's end of a wire to another board: one of the UARTs a real board uses.

The interpreter opens a pseudo-terminal (the paths in RIBAT_SIM_WIRES) for each UART;
the supervisor holds the other side. While wired, what the board writes crosses to the
other board's supervisor over a Unix socket, at the UART's pace (115200 baud carries
11,520 bytes/s); unwired, it is lost, as on a loose wire. `ribat sim wire A B` connects
a free end of A's to a free end of B's: the ends find each other by an abstract socket
name made from the folder of each virtual board and the UART's number.
"""

import errno
import fcntl
import hashlib
import os
import socket
import struct
import termios
import time
import tty
from pathlib import Path

from ribat.sim.pace import Pace

_HANDSHAKE_S = 2.0
READ_SIZE = 4096


def address(sim_dir: Path, index: int) -> str:
    digest = hashlib.sha256(str(sim_dir.resolve()).encode()).hexdigest()[:24]
    return f"\0ribat-wire-{digest}-{index}"


class WireEnd:
    # wire_overrun: bytes that came while the board held its UART's receive buffer's worth
    # unread (rxbuf): a real board would have lost them. Counted, not dropped: a virtual
    # board runs some ten times a Pico's speed, so what it counts is a floor.
    STATS = ("wire_sent", "wire_received", "wire_lost", "wire_overrun")

    def __init__(self, sim_dir: Path, index: int, bytes_per_s: int, rxbuf: int = 0) -> None:
        self.master, self.slave = os.openpty()  # the slave stays open: no hang-up between runs
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(address(sim_dir, index))
        self.listener.listen(2)
        self.peer: socket.socket | None = None
        self.peer_name = ""
        self.out = Pace(bytes_per_s, 0.0)
        self.rxbuf = rxbuf
        self.stats = dict.fromkeys(self.STATS, 0)

    # -- connecting -------------------------------------------------------------------------

    def connect(self, other_dir: Path, other_wires: int, my_name: str) -> str:
        """Wire this free end to a free end of the board in other_dir; its name."""
        taken = []
        for index in range(other_wires):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(_HANDSHAKE_S)
            try:
                s.connect(address(other_dir, index))
                s.sendall(my_name.encode() + b"\n")
                reply = s.makefile("rb").readline().decode().split()
            except OSError as e:
                s.close()
                raise ValueError(f"the other board's wire does not answer: {e}") from None
            if reply[:1] == ["ok"]:
                s.setblocking(False)
                self.peer, self.peer_name = s, other_dir.name
                return self.peer_name
            s.close()
            taken.append(" ".join(reply[1:]))
        raise ValueError(f"{other_dir.name}'s wires are all taken (to {', '.join(taken)})")

    def accept(self) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(_HANDSHAKE_S)
        try:
            name = conn.makefile("rb").readline().decode().strip()
            if self.peer is not None:
                conn.sendall(f"busy {self.peer_name}\n".encode())
                conn.close()
                return
            conn.sendall(b"ok\n")
        except OSError:
            conn.close()
            return
        conn.setblocking(False)
        self.peer, self.peer_name = conn, name

    def unwire(self) -> str:
        """Cut the wire; the name of the board it went to ('' if none)."""
        name = self.peer_name
        if self.peer is not None:
            self.peer.close()
        self.peer, self.peer_name = None, ""
        self.out.clear()
        return name

    # -- bytes ------------------------------------------------------------------------------

    def from_board(self) -> None:
        try:
            data = os.read(self.master, READ_SIZE)
        except OSError:
            return
        if self.peer is None:
            self.stats["wire_lost"] += len(data)
        else:
            self.out.push(data, time.monotonic())

    def from_peer(self) -> None:
        assert self.peer is not None
        try:
            data = self.peer.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.unwire()  # the other end cut it, or its board stopped
            return
        self.stats["wire_received"] += len(data)
        if self.rxbuf:
            unread = struct.unpack("i", fcntl.ioctl(self.slave, termios.FIONREAD, b"\0" * 4))[0]
            self.stats["wire_overrun"] += max(0, min(len(data), unread + len(data) - self.rxbuf))
        try:
            os.write(self.master, data)
        except OSError as e:  # the board is not reading: a UART's receive buffer overruns
            if e.errno != errno.EAGAIN:
                raise
            self.stats["wire_lost"] += len(data)

    def deliver(self, now: float) -> None:
        data = self.out.arrived(now)
        if not data or self.peer is None:
            return
        try:
            self.peer.setblocking(True)
            self.peer.settimeout(_HANDSHAKE_S)
            self.peer.sendall(data)
            self.peer.setblocking(False)
            self.stats["wire_sent"] += len(data)
        except OSError:
            self.unwire()

    def board_reset(self) -> None:
        """A new run of the interpreter: what it had not read yet is gone."""
        termios.tcflush(self.slave, termios.TCIFLUSH)

    def next_due(self) -> float | None:
        return self.out.next_due()

    def close(self) -> None:
        self.unwire()
        self.listener.close()
        for fd in (self.master, self.slave):
            os.close(fd)
