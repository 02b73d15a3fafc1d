"""One virtual board: real MicroPython (the unix port) behind a pseudo-terminal that every
host tool opens as it would a board's USB serial port.

`ribat sim start` runs this module as a detached process, one per virtual board:

    python -m ribat.sim.supervisor SIM_DIR

It relays bytes between the host's terminal (ribat.sim.usb) and the interpreter's own
(ribat.sim.interpreter, one run of it from a reset to its exit), and plays the parts of
a board that the unix port lacks:

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

import hashlib
import os
import select
import struct
import sys
import time
from pathlib import Path

from ribat.device import boards
from ribat.sim import process
from ribat.sim.interpreter import Interpreter, rom_env
from ribat.sim.pace import Pace
from ribat.sim.usb import UsbPort
from ribat.sim.wire import WireEnd

SOFT_REBOOT = b"MPY: soft reboot\r\n"

IDLE_S = 1.0  # the longest the loop sleeps with nothing due (signals and fds wake it sooner)
BOOT_HOLD_S = 2.0  # host input waits at most this long for the interpreter to boot
TX_LIMIT = 64 * 1024  # output held for a slow host before we stop reading the board
WATCHDOG_LOOK_S = 0.1  # how often the simulator looks at the watchdog's feed count
NO_CUT = 0xFFFFFFFF  # in the panel: no flash power cut armed (see boards/virtual/rom/vboard.py)


class Supervisor:
    def __init__(self, sim_dir: Path, fast_link: bool = False) -> None:
        self.dir = sim_dir
        self.name = sim_dir.name
        self.board = boards.load((sim_dir / "board").read_text().strip())
        self.uid = hashlib.sha256(self.name.encode()).hexdigest()[:16]
        self.flash = sim_dir / "flash.img"
        self.panel = sim_dir / "panel"
        self.clock_file = sim_dir / "clock"  # seconds ahead, once a clock was moved
        self.clock_running = False  # the interpreter runs the ROM's clock
        self.child: Interpreter | None = None
        self.mode = "friendly"  # the REPL the last interpreter was in, for the next one
        self.hard_cause = "power_on"  # what the ROM reports until the next hard reset
        self.cut_after_bytes = -1
        rate, latency = (
            (0, 0.0) if fast_link else (self.board.link_bytes_per_s, self.board.link_latency_ms)
        )
        self.to_board = Pace(rate, latency)
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
            "watchdog_resets": 0,
        }
        self.fed = (0, 0.0)  # the watchdog's feed count, and when it last moved
        self.next_dog = 0.0
        self.usb = UsbPort(self.panel, Pace(rate, latency), self.stats)
        self.started = time.time()

    # -- set-up ------------------------------------------------------------------------------

    def prepare(self) -> str:
        """Create the flash image and panel if needed, open the host's terminal; its path."""
        # littlefs's blocks, then the keys' vault (ribat/vault.py on the node)
        board = self.board
        size = board.fs_bytes + board.vault_blocks * board.block_size
        have = self.flash.stat().st_size if self.flash.exists() else -1
        if have == board.fs_bytes < size:  # made before it had a vault: the vault is blank
            with open(self.flash, "ab") as f:
                f.write(b"\xff" * (size - have))
        elif have != size:
            tmp = self.flash.with_suffix(".new")
            with open(tmp, "wb") as f:
                f.write(b"\xff" * size)  # erased NOR flash
            os.replace(tmp, self.flash)
        # a clock once moved stays ahead (boards/virtual/rom/clock)
        ahead = int(self.clock_file.read_text()) if self.clock_file.exists() else 0
        self.panel.write_bytes(struct.pack("<11I", NO_CUT, *[0] * 9, ahead))
        self.tty = self.usb.open()
        self.control = process.listen(self.dir)
        self.wires = [
            WireEnd(self.dir, i, self.wire_rate, self.board.wire_rxbuf)
            for i in range(self.board.wires)
        ]
        self.wake_r = process.signals(self._stop)
        return self.tty

    # -- resets ----------------------------------------------------------------------------

    def _spawn(self, mode: str, cause: str) -> None:
        for wire in self.wires:
            wire.board_reset()
        wires = [w.path for w in self.wires]
        env = rom_env(self.board, self.flash, self.panel, self.uid, mode, cause, wires)
        self.clock_running = self.clock_file.exists()
        if self.clock_running:
            env["RIBAT_SIM_CLOCK"] = "1"
        self.child = Interpreter(self.board, env, mode)
        self._log(f"start ({mode} REPL, reset cause {cause}), pid {self.child.pid}")

    def _kill(self, why: str) -> None:
        if self.child is not None and self.child.kill(why):
            self.to_board.clear()  # what was on its way to the board is lost

    def _on_exit(self) -> None:
        child = self.child
        assert child is not None
        rc = child.proc.wait()
        if child.killed_for in ("", "soft"):  # a power cut loses what was in flight
            self.usb.send(child.drain())
        child.read_stderr(self._on_rom_report, self._log)
        child.close()
        self.child = None
        self.mode = child.mode
        if child.killed_for == "stop":
            return
        if child.killed_for in ("power", "hard", "watchdog"):
            self.hard_cause = {"power": "power_on"}.get(child.killed_for, child.killed_for)
            self._disarm_watchdog()
            self._spawn("friendly", self.hard_cause)
        elif rc < 0 and child.killed_for != "soft":
            self.stats["crashes"] += 1
            self._log(f"interpreter died of signal {-rc}: restarting")
            self.hard_cause = "crash"
            self._disarm_watchdog()
            self._spawn("friendly", self.hard_cause)
        else:
            # Ctrl-D, SystemExit, or a soft reset asked through the ROM. A board keeps the
            # cause of its last hard reset across soft ones.
            self.stats["soft_resets"] += 1
            self.usb.send(SOFT_REBOOT)
            self._spawn(self.mode, self.hard_cause)

    def _disarm_watchdog(self) -> None:
        """A hard reset stops the watchdog (a soft one does not, on a board either)."""
        with open(self.panel, "r+b") as f:
            f.seek(32)
            f.write(struct.pack("<II", 0, 0))
        self.fed = (0, time.monotonic())

    def _watch_dog(self, now: float) -> None:
        """Reset the board whose armed watchdog was not fed within its timeout."""
        self.next_dog = now + WATCHDOG_LOOK_S
        child = self.child
        if child is None or child.killed_for:
            return
        timeout_ms, feeds = struct.unpack_from("<II", self.panel.read_bytes(), 32)
        if not timeout_ms:
            self.next_dog = now + IDLE_S  # not armed: nothing to look at closely
        if feeds != self.fed[0] or not timeout_ms:
            self.fed = (feeds, now)
        elif now - self.fed[1] > timeout_ms / 1000:
            self.stats["watchdog_resets"] += 1
            self._log(f"watchdog: not fed for {timeout_ms} ms: reset")
            self._kill("watchdog")

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

    def _booted(self) -> None:
        """The interpreter takes input now: what the host sent meanwhile goes through."""
        child = self.child
        if child is not None and not child.booted:
            held = child.boot()
            if held:
                self._on_input(held)

    # -- bytes from the host to the board -----------------------------------------------

    def _on_input(self, data: bytes) -> None:
        """Bytes the host sent: they reach the board after crossing the link."""
        child = self.child
        if child is None or child.killed_for:
            return  # a board that is off hears nothing
        if not child.hold(data):
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
                child.ctrl_c()
            child.write(part)
        if cut:
            self.cut_after_bytes = -1
            self.stats["power_cuts"] += 1
            self._log("power cut after the armed number of input bytes")
            self._kill("power")

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
            "interpreter_pid": child.pid if child else None,
            "mode": child.mode if child else self.mode,
            "reset_cause": self.hard_cause,
            "host_connected": self.usb.connected,
            "led": panel[12],
            "led_changes": struct.unpack_from("<I", panel, 24)[0],
            "buzzer": panel[20] == 1,
            "buzzer_beeps": struct.unpack_from("<I", panel, 28)[0],
            "button": panel[8] == 1,
            "clock_ahead_s": struct.unpack_from("<I", panel, 40)[0],
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
        if op == "clock":  # ahead by s seconds more (never back)
            with open(self.panel, "r+b") as f:
                f.seek(40)
                ahead = struct.unpack("<I", f.read(4))[0] + max(0, int(request.get("advance", 0)))
                f.seek(40)
                f.write(struct.pack("<I", ahead))
            restart = ahead > 0 and not self.clock_running
            if ahead:
                self.clock_file.write_text(str(ahead))
            if restart:  # its ROM takes the clock at its next start: now
                self.stats["power_cycles"] += 1
                self._kill("power")
            return {"ok": True, "ahead": ahead, "time": int(time.time()) + ahead,
                    "restarted": restart}  # fmt: skip
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
        process.answer(self.control, self._control)

    def _stop(self) -> None:
        self.stopping = True
        self._kill("stop")

    def _log(self, message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> None:
        self._spawn("friendly", "power_on")
        usb = self.usb
        while True:
            if self.stopping and self.child is None:
                break
            now = time.monotonic()
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
            timeout = usb.watch(p, handlers, self._on_host_event, now, IDLE_S)
            child = self.child
            if child is not None:
                if usb.backlog < TX_LIMIT:
                    p.register(child.master, select.POLLIN)
                    handlers[child.master] = self._on_child_output
                p.register(child.stderr, select.POLLIN)
                handlers[child.stderr] = self._on_child_stderr
                p.register(child.pidfd, select.POLLIN)
                handlers[child.pidfd] = self._on_exit
            if now >= self.next_dog:
                self._watch_dog(now)
            timeout = min(timeout, max(0.0, self.next_dog - now))
            for due in [self.to_board.next_due()] + [w.next_due() for w in self.wires]:
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
            usb.deliver()
            for wire in self.wires:
                wire.deliver(time.monotonic())
        for wire in self.wires:
            wire.close()
        self._log("stopped")

    def _on_host_event(self) -> None:
        data = self.usb.read()
        if data:
            self._on_input(data)
        self.usb.flush()

    def _on_child_output(self) -> None:
        if self.child is not None:
            self.usb.send(self.child.read())

    def _on_child_stderr(self) -> None:
        if self.child is not None:
            self.child.read_stderr(self._on_rom_report, self._log)

    def _on_signal(self) -> None:
        os.read(self.wake_r, 64)


def main(argv: list[str]) -> int:
    """argv: SIM_DIR [READY_FD [fast]]"""
    sim_dir = Path(argv[1])
    sup = Supervisor(sim_dir, fast_link=argv[3:4] == ["fast"])
    return process.main(sim_dir, process.ready_fd(argv), sup)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
