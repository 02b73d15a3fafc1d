"""One virtual board: real MicroPython (the unix port) behind a pseudo-terminal that every
host tool opens as it would a board's USB serial port.

`ribat sim start` runs this module as a detached process, one per virtual board:

    python -m ribat.sim.supervisor SIM_DIR

It relays bytes between the host's terminal and the interpreter's own terminal, and plays
the parts of a board that the unix port lacks:

- Ctrl-C: a board turns it into KeyboardInterrupt in running code, and hands it to its REPL
  as a character otherwise. We send SIGINT when the interpreter is catching it (it is
  running code) and pass the byte on when not: the unix port resets SIGINT to "terminate"
  between a script's end and its REPL, where a signal would kill it;

- soft reset: the unix port exits on Ctrl-D or SystemExit at its REPL (running code asks
  through the ROM instead); we print "MPY: soft reboot" and start it again from flash,
  back in the raw REPL when that is where the reset came from;
- power: a power cycle kills the interpreter wherever it is. A power cut can be armed to
  fall after N more bytes from the host or N more flash writes (the ROM tears that write);
- the link: bytes cross it at the board's rate and latency (board.json "link": USB CDC for
  a Pico, a 115200-baud UART bridge for an ESP32 kit), unless started with --fast-link;
- USB CDC: output is dropped while no host has the port open, and a host that stops reading
  stalls the board for at most TX_STALL_S; line ends are cooked to \\r\\n as a board's are;
- identity: board, reset cause and unique id reach the ROM (boards/virtual/rom) in
  environment variables; the "panel" file carries the fault counters and the button.

Control requests arrive on a Unix socket, one JSON object per connection (see _control).
"""

import errno
import fcntl
import hashlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
import tty
from pathlib import Path

from ribat import boards
from ribat.sim import paths
from ribat.sim.pace import Pace
from ribat.sim.wire import WireEnd

RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"
FRIENDLY_MARK = b'Type "help()" for more information.'
SOFT_REBOOT = b"MPY: soft reboot\r\n"
SIM_MARK = b"\x00ribat-sim "

HOST_POLL_S = 0.005  # how often to look for a host opening the port while none has it open
IDLE_S = 1.0  # the longest the loop sleeps with nothing due (signals and fds wake it sooner)
BOOT_HOLD_S = 2.0  # host input waits at most this long for the interpreter to boot
SIGINT_GAP_S = 0.05
SIGINT_WAIT_S = 0.5  # the longest a Ctrl-C waits for the interpreter to block (_wait_blocked)
TX_STALL_S = 0.5  # output a connected host leaves unread this long is dropped (CDC timeout)
TX_LIMIT = 64 * 1024  # output held for a slow host before we stop reading the board
RAW_FILTER_LIMIT = 16 * 1024  # boot output held while the raw REPL comes up
READ_SIZE = 4096
NO_CUT = 0xFFFFFFFF  # in the panel: no flash power cut armed (see boards/virtual/rom/vboard.py)


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


def _set_nonblocking(fd: int) -> None:
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)


class Child:
    """One run of the interpreter, from a reset to its exit."""

    def __init__(self, proc: subprocess.Popen, master: int, slave: int) -> None:
        self.proc = proc
        self.master = master
        self.slave = slave
        assert proc.stderr is not None
        self.stderr = proc.stderr.fileno()
        self.pidfd = os.pidfd_open(proc.pid)
        self.err_buf = b""
        self.killed_for = ""  # why we killed it: "power", "hard", "soft", "stop"
        # Host input waits until the ROM runs: a Ctrl-C reaching the process before
        # MicroPython has its SIGINT handler would be lost, as a board hears nothing
        # before its firmware starts.
        self.booted = False
        self.spawned = time.monotonic()
        self.held = bytearray()
        self.last_sigint = 0.0

    def close(self) -> None:
        for fd in (self.master, self.slave, self.pidfd):
            os.close(fd)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


class Supervisor:
    def __init__(self, sim_dir: Path, fast_link: bool = False) -> None:
        self.dir = sim_dir
        self.name = sim_dir.name
        self.board = boards.load((sim_dir / "board").read_text().strip())
        self.uid = hashlib.sha256(self.name.encode()).hexdigest()[:16]
        self.flash = sim_dir / "flash.img"
        self.panel = sim_dir / "panel"
        self.child: Child | None = None
        self.mode = "friendly"  # REPL the interpreter is in, read from its output
        self.hard_cause = "power_on"  # what the ROM reports until the next hard reset
        self.raw_filter: bytearray | None = None
        self.tail = b""  # end of the last output, to find markers cut across reads
        self.last_cr = False
        self.tx = bytearray()
        self.tx_since = 0.0
        self.host_connected = False
        self.next_host_poll = 0.0
        self.cut_after_bytes = -1
        rate, latency = (
            (0, 0.0) if fast_link else (self.board.link_bytes_per_s, self.board.link_latency_ms)
        )
        self.to_board = Pace(rate, latency)
        self.to_host = Pace(rate, latency)
        self.wire_rate = 0 if fast_link else self.board.wire_bytes_per_s
        self.wires: list[WireEnd] = []
        self.stopping = False
        self.stats = {
            "bytes_in": 0,
            "bytes_out": 0,
            "dropped_out": 0,
            "soft_resets": 0,
            "power_cycles": 0,
            "power_cuts": 0,
            "formats": 0,
            "crashes": 0,
        }
        self.started = time.time()

    # -- set-up ------------------------------------------------------------------------------

    def prepare(self) -> str:
        """Create the flash image and panel if needed, open the host's terminal; its path."""
        size = self.board.fs_bytes
        if not self.flash.exists() or self.flash.stat().st_size != size:
            tmp = self.flash.with_suffix(".new")
            with open(tmp, "wb") as f:
                f.write(b"\xff" * size)  # erased NOR flash
            os.replace(tmp, self.flash)
        self.panel.write_bytes(struct.pack("<IIIII", NO_CUT, 0, 0, 0, 0))
        self.host, slave = os.openpty()
        tty.setraw(slave)
        self.tty = os.ttyname(slave)
        os.close(slave)  # the port counts as closed until a host opens it
        _set_nonblocking(self.host)
        self.control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.control.bind(paths.control_address(self.dir))
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
            raise RuntimeError(
                f"another supervisor already runs virtual board {self.name} (its state folder "
                "may have been deleted under it): end it with `pkill -f ribat.sim.supervisor`"
            ) from None
        self.control.listen(4)
        self.wires = [WireEnd(self.dir, i, self.wire_rate) for i in range(self.board.wires)]
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, lambda *_: self._stop())
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return self.tty

    # -- the interpreter -----------------------------------------------------------------------

    def _spawn(self, mode: str, cause: str) -> None:
        for wire in self.wires:
            wire.board_reset()
        master, slave = os.openpty()
        tty.setraw(slave)  # no signals from the terminal: we deliver Ctrl-C ourselves
        rom = boards.rom_dir()
        env = dict(
            os.environ,
            RIBAT_SIM_BOARD=self.board.name,
            RIBAT_SIM_FLASH=str(self.flash),
            RIBAT_SIM_BLOCK_SIZE=str(self.board.block_size),
            RIBAT_SIM_BLOCKS=str(self.board.fs_bytes // self.board.block_size),
            RIBAT_SIM_PANEL=str(self.panel),
            RIBAT_SIM_MODE=mode,
            RIBAT_SIM_RESET_CAUSE=cause,
            RIBAT_SIM_UID=self.uid,
            RIBAT_SIM_WIRES=":".join(w.path for w in self.wires),
        )
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "micropython_unix",
                "-X",
                f"heapsize={self.board.heap_bytes}",
                "-i",
                str(rom / "_boot.py"),
            ],
            stdin=slave,
            stdout=slave,
            stderr=subprocess.PIPE,
            env=env,
            cwd=str(rom),
            preexec_fn=_controlling_terminal,
        )
        _set_nonblocking(master)
        assert proc.stderr is not None
        _set_nonblocking(proc.stderr.fileno())
        self.child = Child(proc, master, slave)
        self.mode = mode
        if mode == "raw":
            # The REPL starts friendly; ask it for the raw REPL and hide the friendly banner,
            # as a board that soft-resets from the raw REPL comes straight back to it.
            os.write(master, b"\x01")
            self.raw_filter = bytearray()
        self._log(f"start ({mode} REPL, reset cause {cause}), pid {proc.pid}")

    def _kill(self, why: str) -> None:
        if self.child is not None and not self.child.killed_for:
            self.child.killed_for = why
            self.child.proc.kill()
            self.to_board.clear()  # what was on its way to the board is lost

    def _on_exit(self) -> None:
        child = self.child
        assert child is not None
        rc = child.proc.wait()
        if child.killed_for in ("", "soft"):  # a power cut loses what was in flight
            self._drain_output(child)
        self._read_stderr(child)
        child.close()
        self.child = None
        self.raw_filter = None
        if child.killed_for == "stop":
            return
        if child.killed_for in ("power", "hard"):
            self.hard_cause = "power_on" if child.killed_for == "power" else "hard"
            self._spawn("friendly", self.hard_cause)
        elif rc < 0 and child.killed_for != "soft":
            self.stats["crashes"] += 1
            self._log(f"interpreter died of signal {-rc}: restarting")
            self.hard_cause = "crash"
            self._spawn("friendly", self.hard_cause)
        else:
            # Ctrl-D, SystemExit, or a soft reset asked through the ROM. A board keeps the
            # cause of its last hard reset across soft ones.
            self.stats["soft_resets"] += 1
            self._to_host(SOFT_REBOOT)
            self._spawn(self.mode, self.hard_cause)

    def _drain_output(self, child: Child) -> None:
        while True:
            try:
                data = os.read(child.master, READ_SIZE)
            except OSError:
                return
            if not data:
                return
            self._on_output(data)

    def _read_stderr(self, child: Child) -> None:
        try:
            data = os.read(child.stderr, READ_SIZE)
        except BlockingIOError:
            return
        child.err_buf += data
        *lines, child.err_buf = child.err_buf.split(b"\n")
        for line in lines:
            if line.startswith(SIM_MARK):
                self._on_rom_report(line[len(SIM_MARK) :].decode())
            elif line:
                self._log("stderr: " + line.decode(errors="replace"))

    def _on_rom_report(self, word: str) -> None:
        if word == "power-cut":
            self.stats["power_cuts"] += 1
            self._log("power cut during a flash write")
            self._kill("power")
        elif word == "hard-reset":
            self._kill("hard")
        elif word == "soft-reset":
            self._kill("soft")
        elif word == "booted":
            self._booted()
        elif word == "formatted":
            self.stats["formats"] += 1
            self._log("flash did not mount: formatted")

    # -- bytes between host and board ----------------------------------------------------

    def _on_input(self, data: bytes) -> None:
        """Bytes the host sent: they reach the board after crossing the link."""
        child = self.child
        if child is None or child.killed_for:
            return  # a board that is off hears nothing
        if not child.booted:
            child.held += data
            return
        self.to_board.push(data, time.monotonic())

    def _deliver_input(self) -> None:
        child = self.child
        data = self.to_board.arrived(time.monotonic())
        if not data or child is None or child.killed_for:
            return
        cut = False
        if self.cut_after_bytes >= 0:
            if len(data) >= self.cut_after_bytes:
                data = data[: self.cut_after_bytes]
                cut = True
            self.cut_after_bytes -= len(data)
        self.stats["bytes_in"] += len(data)
        for i, part in enumerate(data.split(b"\x03")):
            if i:
                self._ctrl_c(child)
            self._write_child(child, part)
        if cut:
            self.cut_after_bytes = -1
            self.stats["power_cuts"] += 1
            self._log("power cut after the armed number of input bytes")
            self._kill("power")

    def _write_child(self, child: Child, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(child.master, view) :]
            except BlockingIOError:
                select.select([], [child.master], [], 0.05)

    def _ctrl_c(self, child: Child) -> None:
        if not _catches_sigint(child.proc.pid):
            self._write_child(child, b"\x03")  # the REPL reads it as a character
            return
        now = time.monotonic()
        # The unix port exits on a second SIGINT that comes before it handled the first;
        # a board would just raise KeyboardInterrupt again: one per SIGINT_GAP_S is plenty.
        if now - child.last_sigint >= SIGINT_GAP_S:
            _wait_blocked(child.proc.pid)
            child.last_sigint = time.monotonic()
            os.kill(child.proc.pid, signal.SIGINT)

    def _booted(self) -> None:
        """The interpreter takes input now: what the host sent meanwhile goes through."""
        child = self.child
        if child is not None and not child.booted:
            child.booted = True
            held, child.held = bytes(child.held), bytearray()
            if held:
                self._on_input(held)

    def _on_output(self, data: bytes) -> None:
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
                return
            self.raw_filter = None
            banner = buf.rfind(b"MicroPython ", 0, end)
            data = buf[:banner] + buf[end:] if 0 <= banner < end else buf
        self._to_host(self._cook(data))

    def _cook(self, data: bytes) -> bytes:
        """Lone \\n become \\r\\n, as a board's stdout writes them."""
        if self.last_cr and data.startswith(b"\n"):
            head, data = b"\n", data[1:]
        else:
            head = b""
        if data:
            self.last_cr = data.endswith(b"\r")
        return head + data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")

    def _to_host(self, data: bytes) -> None:
        if not self.host_connected:
            self.stats["dropped_out"] += len(data)
            return
        self.to_host.push(data, time.monotonic())

    def _deliver_output(self) -> None:
        data = self.to_host.arrived(time.monotonic())
        if not data:
            return
        if not self.tx:
            self.tx_since = time.monotonic()
        self.tx += data
        self._flush_tx()

    def _flush_tx(self) -> None:
        while self.tx:
            try:
                n = os.write(self.host, self.tx)
            except BlockingIOError:
                break
            except OSError:
                self._host_gone()
                return
            self.stats["bytes_out"] += n
            del self.tx[:n]
            self.tx_since = time.monotonic()
        if self.tx and time.monotonic() - self.tx_since > TX_STALL_S:
            self.stats["dropped_out"] += len(self.tx)
            self.tx.clear()

    def _set_host(self, connected: bool) -> None:
        """Note whether a host holds the port, on the panel too: the node ends an unlocked
        session when the host goes, as a real board sees its USB port closed."""
        if connected != self.host_connected:
            with open(self.panel, "r+b") as f:
                f.seek(16)
                f.write(bytes((connected,)))
        self.host_connected = connected

    def _host_gone(self) -> None:
        self._set_host(False)
        self.stats["dropped_out"] += len(self.tx) + self.to_host.queued
        self.tx.clear()
        self.to_host.clear()

    def _poll_host(self) -> None:
        """A host opened the port when the terminal's master stops reporting a hang-up."""
        p = select.poll()
        p.register(self.host, select.POLLIN)
        self._set_host(not any(ev & select.POLLHUP for _, ev in p.poll(0)))
        self.next_host_poll = time.monotonic() + HOST_POLL_S

    # -- control ---------------------------------------------------------------------------

    def status(self) -> dict:
        child = self.child
        panel = self.panel.read_bytes()
        return {
            "flash_writes": struct.unpack_from("<I", panel, 4)[0],
            "name": self.name,
            "board": self.board.name,
            "tty": self.tty,
            "pid": os.getpid(),
            "interpreter_pid": child.proc.pid if child else None,
            "mode": self.mode,
            "reset_cause": self.hard_cause,
            "host_connected": self.host_connected,
            "led": panel[12],
            "button": panel[8] == 1,
            "uptime_s": round(time.time() - self.started, 1),
            "link_bytes_per_s": self.to_board.rate,
            "wires": [w.peer_name or None for w in self.wires],
            "wire_bytes_per_s": self.wire_rate,
            **self.stats,
            **{k: sum(w.stats[k] for w in self.wires) for k in WireEnd.STATS},
        }

    def _control(self, request: dict) -> dict:
        op = request.get("op")
        if op == "status":
            return self.status()
        if op == "power_cycle":
            self.stats["power_cycles"] += 1
            self._kill("power")
            return {"ok": True}
        if op == "stop":
            self._stop()
            return {"ok": True}
        if op == "cut_after_input_bytes":  # n < 0: disarm
            self.cut_after_bytes = int(request["n"])
            return {"ok": True}
        if op == "cut_after_flash_writes":  # n None: disarm
            n = NO_CUT if request.get("n") is None else int(request["n"])
            with open(self.panel, "r+b") as f:
                f.write(struct.pack("<I", n))
            return {"ok": True}
        if op == "wire":
            return {"ok": True, "peer": self._wire(Path(request["peer"]))}
        if op == "unwire":  # from the board named, or from all
            peer = request.get("peer")
            cut = [w.unwire() for w in self.wires if w.peer and peer in (None, w.peer_name)]
            return {"ok": True, "was": cut}
        if op == "button":
            with open(self.panel, "r+b") as f:
                f.seek(8)
                f.write(bytes((1 if request.get("pressed") else 0,)))
            return {"ok": True}
        return {"error": f"unknown op {op!r}"}

    def _wire(self, other: Path) -> str:
        if any(w.peer_name == other.name for w in self.wires):
            raise ValueError(f"already wired to {other.name}")
        free = [w for w in self.wires if w.peer is None]
        if not free:
            taken = ", ".join(w.peer_name for w in self.wires)
            raise ValueError(f"every wire of {self.name} is taken (to {taken}): unwire one")
        other_board = boards.load((other / "board").read_text().strip())
        return free[0].connect(other, other_board.wires, self.name)

    def _on_control(self) -> None:
        conn, _ = self.control.accept()
        with conn:
            conn.settimeout(1.0)
            try:
                request = json.loads(conn.makefile("rb").readline())
                reply = self._control(request)
            except (OSError, ValueError, KeyError, TypeError) as e:
                reply = {"error": str(e)}
            try:
                conn.sendall(json.dumps(reply).encode() + b"\n")
            except OSError:
                pass

    def _stop(self) -> None:
        self.stopping = True
        self._kill("stop")

    def _log(self, message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> None:
        self._spawn("friendly", "power_on")
        while True:
            if self.stopping and self.child is None:
                break
            now = time.monotonic()
            # An open port shows its hang-up on the host fd itself; a closed one has to be
            # looked at again and again to see it opened.
            if not self.host_connected and now >= self.next_host_poll:
                self._poll_host()
            handlers = {
                self.control.fileno(): self._on_control,
                self.wake_r: self._on_signal,
            }
            for wire in self.wires:
                handlers[wire.master] = wire.from_board
                handlers[wire.listener.fileno()] = wire.accept
                if wire.peer is not None:
                    handlers[wire.peer.fileno()] = wire.from_peer
            p = select.poll()
            for fd in handlers:
                p.register(fd, select.POLLIN)
            if self.host_connected:
                p.register(self.host, select.POLLIN | (select.POLLOUT if self.tx else 0))
                handlers[self.host] = self._on_host_event
            child = self.child
            if child is not None:
                if len(self.tx) + self.to_host.queued < TX_LIMIT:
                    p.register(child.master, select.POLLIN)
                    handlers[child.master] = self._on_child_output
                p.register(child.stderr, select.POLLIN)
                handlers[child.stderr] = self._on_child_stderr
                p.register(child.pidfd, select.POLLIN)
                handlers[child.pidfd] = self._on_exit
            timeout = IDLE_S if self.host_connected else max(0.0, self.next_host_poll - now)
            if self.tx:
                timeout = min(timeout, 0.05)
            dues = [self.to_board.next_due(), self.to_host.next_due()]
            for due in dues + [w.next_due() for w in self.wires]:
                if due is not None:
                    timeout = min(timeout, max(0.0, due - now))
            if child is not None and not child.booted:
                if now - child.spawned > BOOT_HOLD_S:
                    self._booted()  # it never said so: let the host talk to it anyway
                timeout = min(timeout, 0.05)
            for fd, _ in p.poll(timeout * 1000):
                handlers[fd]()
                if self.child is not child:
                    break  # the board reset: the rest of these events are about its old fds
            self._deliver_input()
            self._deliver_output()
            for wire in self.wires:
                wire.deliver(time.monotonic())
            if self.tx:
                self._flush_tx()
        for wire in self.wires:
            wire.close()
        self._log("stopped")

    def _on_host_event(self) -> None:
        try:
            data = os.read(self.host, READ_SIZE)
        except BlockingIOError:
            data = b""
        except OSError as e:
            if e.errno != errno.EIO:
                raise
            self._host_gone()
            return
        if data:
            self._on_input(data)
        self._flush_tx()

    def _on_child_output(self) -> None:
        if self.child is None:
            return
        try:
            data = os.read(self.child.master, READ_SIZE)
        except (BlockingIOError, OSError):
            return
        self._on_output(data)

    def _on_child_stderr(self) -> None:
        if self.child is not None:
            self._read_stderr(self.child)

    def _on_signal(self) -> None:
        os.read(self.wake_r, 64)


def main(argv: list[str]) -> int:
    """argv: SIM_DIR [READY_FD [fast]]"""
    sim_dir = Path(argv[1])
    ready = int(argv[2]) if len(argv) > 2 else -1
    sup = Supervisor(sim_dir, fast_link=argv[3:4] == ["fast"])
    try:
        tty_path = sup.prepare()
    except Exception as e:  # reported to `ribat sim start`, which is waiting for us
        if ready >= 0:
            os.write(ready, json.dumps({"error": str(e)}).encode() + b"\n")
        raise
    paths.write_state(
        sim_dir, {"name": sup.name, "board": sup.board.name, "tty": tty_path, "pid": os.getpid()}
    )
    if ready >= 0:
        os.write(ready, json.dumps({"tty": tty_path}).encode() + b"\n")
        os.close(ready)
    try:
        sup.run()
    finally:
        paths.clear_state(sim_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
