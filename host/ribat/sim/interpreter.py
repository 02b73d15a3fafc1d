"""One run of a virtual board's interpreter: MicroPython's unix port on a terminal of its
own, from a reset to its exit, with the board's heap, flash and identity.

What the supervisor needs of it: start it (in the friendly or the raw REPL), give it
input and Ctrl-C as a board would take them, read its output as a board's stdout writes
it, hear the ROM's reports on stderr (boards/virtual/rom/vboard.py), and kill it.
"""

import fcntl
import functools
import os
import select
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
import tty
from collections.abc import Callable
from pathlib import Path

from ribat.device import boards

RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"
FRIENDLY_MARK = b'Type "help()" for more information.'
SIM_MARK = b"\x00ribat-sim "  # a ROM report on stderr: SIM_MARK word \n

SIGINT_GAP_S = 0.05
SIGINT_WAIT_S = 0.5  # the longest a Ctrl-C waits for the interpreter to block (_wait_blocked)
RAW_FILTER_LIMIT = 16 * 1024  # boot output held while the raw REPL comes up
READ_SIZE = 4096


@functools.cache
def rom_heap_bytes() -> int:
    """The heap the virtual board's ROM holds when boot.py would run (its modules, its
    _boot.py, the names they intern, a small flash mounted): on a board that is C and
    data in flash, not objects in RAM, so the interpreter's heap is the board's plus this
    much (measured once a process, by the interpreter itself, running the ROM)."""
    with tempfile.TemporaryDirectory() as tmp:
        panel, flash = Path(tmp) / "panel", Path(tmp) / "flash.img"
        panel.write_bytes(struct.pack("<11I", 0xFFFFFFFF, *[0] * 10))  # no power cut armed
        flash.write_bytes(b"\xff" * 8 * 4096)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RIBAT_SIM_")}
        env |= {"RIBAT_SIM_PROBE": "1", "RIBAT_SIM_PANEL": str(panel),
                "RIBAT_SIM_FLASH": str(flash), "RIBAT_SIM_BLOCKS": "8"}  # fmt: skip
        out = subprocess.run(
            [sys.executable, "-m", "micropython_unix", "-X", "heapsize=1M", "_boot.py"],
            cwd=str(boards.rom_dir()), env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
    return int(out.stdout.split("rom-heap")[-1].split()[0])


# What the ROM's boot script holds while rom_heap_bytes measures, and no longer once code
# runs on the board: its own compiled code (measured: the probe's figure less gc.mem_alloc()
# at the raw REPL, 0.9 KB; what the REPL holds varies by tens of bytes from run to run, so
# 1.25 KB: code on the board sees its heap less some 200 bytes, never more).
_BOOT_CODE_BYTES = 1280


def arena(board: boards.Board) -> int:
    """The interpreter's -X heapsize for the board: the heap code on it sees (the board's,
    plus what the ROM holds once booted), and the collector's tables beside it, 1/129.5 of
    it on this 64-bit build (gc_init: a table byte for four 32-byte blocks, and half a byte
    of finaliser bits): 2.4 KB of a Pico's heap, 24 KB of an ESP32's PSRAM."""
    pool = board.heap_bytes + rom_heap_bytes() - _BOOT_CODE_BYTES
    table = pool // 128  # bytes of allocation table: the pool is 128 bytes for each
    return (table * 1036 + 7) // 8 + 16  # (gc_init's divisor: 8 + 4 + 8 * 4 * 32)


def set_nonblocking(fd: int) -> None:
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)


def _controlling_terminal() -> None:
    """In the child: a session of its own, with its stdin terminal as controlling terminal."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _catches_sigint(pid: int) -> bool:
    """Whether the process has a SIGINT handler installed (MicroPython does while it runs
    code), from the SigCgt mask in /proc/<pid>/status."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    except OSError:
        pass
    return False


def _wait_blocked(pid: int) -> None:
    """Wait, up to SIGINT_WAIT_S, until the process is blocked in a system call (asyncio's
    poll, a sleep, a read). This unix port raises KeyboardInterrupt from its signal
    handler, wherever the interpreter is: in a garbage collection it left the heap locked
    for good, and in C code with no handler it died ("FATAL: uncaught NLR"). A board raises
    it between two bytecodes; blocked in a call is as safe, and a node is, nearly always."""
    deadline = time.monotonic() + SIGINT_WAIT_S
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            return
        if state != "R":
            return
        time.sleep(0.001)


class Interpreter:
    """One run of the interpreter, from a reset to its exit."""

    def __init__(self, board: boards.Board, env: dict[str, str], mode: str) -> None:
        """Start MicroPython with the board's heap on the virtual board's ROM; env carries
        the board's identity, flash and wires to the ROM. mode: the REPL it starts in,
        "friendly" or "raw"."""
        master, slave = os.openpty()
        tty.setraw(slave)  # no signals from the terminal: we deliver Ctrl-C ourselves
        rom = boards.rom_dir()
        command = [sys.executable, "-m", "micropython_unix", "-X", f"heapsize={arena(board)}"]
        # stderr shares the terminal with stdout, as a board's serial link carries both;
        # the ROM's reports to the simulator (SIM_MARK) have a pipe of their own
        reports, report_end = os.pipe()
        self.proc = subprocess.Popen(
            [*command, "-i", str(rom / "_boot.py")],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**os.environ, **env, "RIBAT_SIM_REPORTS": f"/proc/self/fd/{report_end}"},
            cwd=str(rom),
            preexec_fn=_controlling_terminal,
            pass_fds=(report_end,),
        )
        os.close(report_end)
        set_nonblocking(master)
        set_nonblocking(reports)
        self.master = master
        self.slave = slave
        self.stderr = reports  # the ROM's reports (read_stderr)
        self.pidfd = os.pidfd_open(self.proc.pid)
        self.err_buf = b""
        self.in_cr = False  # the host's last byte was a CR (write)
        self.killed_for = ""  # why we killed it: "power", "hard", "soft", "stop"
        # Host input waits until the ROM runs: a Ctrl-C reaching the process before
        # MicroPython has its SIGINT handler would be lost, as a board hears nothing
        # before its firmware starts.
        self.booted = False
        self.spawned = time.monotonic()
        self.held = bytearray()
        self.last_sigint = 0.0
        self.mode = mode  # the REPL it is in, read from its output
        self.tail = b""  # end of the last output, to find markers cut across reads
        self.last_cr = False
        self.raw_filter: bytearray | None = None
        if mode == "raw":
            # The REPL starts friendly; ask it for the raw REPL and hide the friendly banner,
            # as a board that soft-resets from the raw REPL comes straight back to it.
            os.write(master, b"\x01")
            self.raw_filter = bytearray()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        for fd in (self.master, self.slave, self.pidfd, self.stderr):
            os.close(fd)

    def kill(self, why: str) -> bool:
        """Kill it (once); why it was killed is kept. False if it was already."""
        if self.killed_for:
            return False
        self.killed_for = why
        self.proc.kill()
        return True

    # -- input ---------------------------------------------------------------------------

    def hold(self, data: bytes) -> bool:
        """Keep input that comes before the ROM runs; False once it has booted."""
        if self.booted:
            return False
        self.held += data
        return True

    def boot(self) -> bytes:
        """It takes input now: the input held meanwhile."""
        self.booted = True
        held, self.held = bytes(self.held), bytearray()
        return held

    def write(self, data: bytes) -> None:
        # The unix port turns LF into CR on its stdin, a board's does not: the LF of a CR
        # LF pair would be a second line end (a CRLF script's line numbers doubled). It
        # goes here, so that the interpreter sees one, as a board does.
        if self.in_cr and data[:1] == b"\n":
            data = data[1:]
        if data:
            self.in_cr = data.endswith(b"\r")
            data = data.replace(b"\r\n", b"\r")
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.master, view) :]
            except BlockingIOError:
                select.select([], [self.master], [], 0.05)

    def ctrl_c(self) -> None:
        """A Ctrl-C from the host: KeyboardInterrupt in running code, a character for
        the REPL otherwise (the unix port resets SIGINT to "terminate" between a script's
        end and its REPL, where a signal would kill it)."""
        if not _catches_sigint(self.pid):
            self.write(b"\x03")  # the REPL reads it as a character
            return
        now = time.monotonic()
        # The unix port exits on a second SIGINT that comes before it handled the first;
        # a board would just raise KeyboardInterrupt again: one per SIGINT_GAP_S is plenty.
        if now - self.last_sigint >= SIGINT_GAP_S:
            _wait_blocked(self.pid)
            self.last_sigint = time.monotonic()
            os.kill(self.pid, signal.SIGINT)

    # -- output --------------------------------------------------------------------------

    def read(self) -> bytes:
        """Output ready now, as the board's stdout writes it."""
        try:
            data = os.read(self.master, READ_SIZE)
        except OSError:  # none ready, or it has exited
            return b""
        return self._output(data)

    def drain(self) -> bytes:
        """The output left once it has exited."""
        out = b""
        while True:
            try:
                data = os.read(self.master, READ_SIZE)
            except OSError:
                return out
            if not data:
                return out
            out += self._output(data)

    def _output(self, data: bytes) -> bytes:
        window = self.tail + data
        raw_at, friendly_at = window.rfind(RAW_PROMPT[:-1]), window.rfind(FRIENDLY_MARK)
        if raw_at > friendly_at:
            self.mode = "raw"
        elif friendly_at > raw_at:
            self.mode = "friendly"
        self.tail = window[-64:]
        if self.raw_filter is not None:
            self.raw_filter += data
            buf = bytes(self.raw_filter)
            end = buf.find(RAW_PROMPT)
            if end < 0 and len(buf) < RAW_FILTER_LIMIT:
                return b""
            self.raw_filter = None
            banner = buf.rfind(b"MicroPython ", 0, end)
            data = buf[:banner] + buf[end:] if 0 <= banner < end else buf
        return self._cook(data)

    def _cook(self, data: bytes) -> bytes:
        """Lone \\n become \\r\\n, as a board's stdout writes them."""
        if self.last_cr and data.startswith(b"\n"):
            head, data = b"\n", data[1:]
        else:
            head = b""
        if data:
            self.last_cr = data.endswith(b"\r")
        return head + data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")

    def read_stderr(self, report: Callable[[str], None], log: Callable[[str], None]) -> None:
        """Hand each ROM report on its pipe to report, and any other line to log."""
        try:
            data = os.read(self.stderr, READ_SIZE)
        except BlockingIOError:
            return
        self.err_buf += data
        *lines, self.err_buf = self.err_buf.split(b"\n")
        for line in lines:
            if line.startswith(SIM_MARK):
                report(line[len(SIM_MARK) :].decode())
            elif line:
                log("stderr: " + line.decode(errors="replace"))


def rom_env(
    board: boards.Board, flash: Path, panel: Path, uid: str, mode: str, cause: str,
    wires: list[str],
) -> dict[str, str]:  # fmt: skip
    """What the ROM (boards/virtual/rom) is told of the board it runs on."""
    return {
        "RIBAT_SIM_BOARD": board.name,
        "RIBAT_SIM_FLASH": str(flash),
        "RIBAT_SIM_BLOCK_SIZE": str(board.block_size),
        "RIBAT_SIM_BLOCKS": str(board.fs_bytes // board.block_size),
        "RIBAT_SIM_PROGSIZE": str(board.littlefs_progsize),
        "RIBAT_SIM_VAULT_BLOCKS": str(board.vault_blocks),
        "RIBAT_SIM_PANEL": str(panel),
        "RIBAT_SIM_MODE": mode,
        "RIBAT_SIM_RESET_CAUSE": cause,
        "RIBAT_SIM_UID": uid,
        "RIBAT_SIM_WIRES": ":".join(wires),
    }
