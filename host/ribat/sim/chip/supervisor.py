"""One emulated Pico: the chip (emulator.cjs under Node.js) behind a pseudo-terminal that
every host tool opens as it would the Pico's USB serial port.

`ribat sim start --board emulated-pico` runs this module as a detached process:

    python -m ribat.sim.chip.supervisor SIM_DIR READY_FD

The firmware on the chip is MicroPython's own: its REPL, raw REPL, soft reset and Ctrl-C
are the real ones, so this relays bytes and nothing more (the unix port's supervisor,
ribat.sim.supervisor, plays those parts). It keeps the chip's flash in SIM_DIR/flash.img,
powers the chip off and on (a power cut: the process dies wherever it is; the flash file
holds every program and erase done until then), and arms a cut in the middle of a flash
operation. Control requests come on a Unix socket, as for the other virtual boards.
"""

import hashlib
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ribat.device import boards
from ribat.sim import chip, process
from ribat.sim.interpreter import set_nonblocking
from ribat.sim.pace import Pace
from ribat.sim.usb import UsbPort

REPORT = b"@ribat "  # a report line of the emulator on stderr
POWER_CUT_EXIT = 75  # the emulator's exit status for a cut armed in a flash operation
WATCHDOG_RESET_EXIT = 76  # ... for a reset by the watchdog (a timeout, or machine.reset())
FORCED = 2  # the watchdog's REASON: FORCE (machine.reset()); TIMER is 1
IDLE_S = 0.2


class ChipSupervisor:
    def __init__(self, sim_dir: Path) -> None:
        self.dir = sim_dir
        self.name = sim_dir.name
        self.board = boards.load((sim_dir / "board").read_text().strip())
        self.uid = hashlib.sha256(self.name.encode()).hexdigest()[:16]
        self.flash = sim_dir / "flash.img"
        self.panel = sim_dir / "panel"  # only its "host connected" byte means something here
        self.child: subprocess.Popen | None = None
        self.to_chip = bytearray()  # host bytes not yet taken by the emulator's stdin
        self.reset_cause = "power_on"
        self.kept: dict | None = None  # what a watchdog reset keeps, for the next start
        self.stopping = False
        self.chip = {"chip_ms": 0, "busy_ms": 0, "flash_ms": 0, "flash_ops": 0, "wall_ms": 0}
        self.stats = {"power_cycles": 0, "power_cuts": 0, "bytes_in": 0, "bytes_out": 0,
                      "dropped_out": 0, "crashes": 0, "watchdog_resets": 0}  # fmt: skip
        self.started = time.time()
        self.usb = UsbPort(self.panel, Pace(self.board.link_bytes_per_s, 0.0), self.stats)

    def prepare(self) -> str:
        self.uf2, self.rom = chip.firmware_files()
        self.node = chip.node()
        self.modules = chip.install()
        self.panel.write_bytes(bytes(44))  # (where UsbPort says whether a host holds the port)
        self.tty = self.usb.open()
        self.control = process.listen(self.dir)
        self.wake_r = process.signals(self._stop)
        return self.tty

    # -- power -----------------------------------------------------------------------------

    def _spawn(self) -> None:
        ctl_r, self.ctl_w = os.pipe()
        env = {**os.environ, "NODE_PATH": str(self.modules), "RIBAT_CHIP_CONTROL_FD": str(ctl_r)}
        if self.kept is not None:
            env["RIBAT_CHIP_RESET"] = json.dumps(self.kept)
        self.kept = None
        self.child = subprocess.Popen(
            [self.node, str(chip.EMULATOR), str(self.rom), str(self.flash), self.uid,
             str(self.uf2)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, pass_fds=(ctl_r,),
        )  # fmt: skip
        os.close(ctl_r)
        for stream in (self.child.stdin, self.child.stdout, self.child.stderr):
            assert stream is not None
            set_nonblocking(stream.fileno())
        self.pidfd = os.pidfd_open(self.child.pid)
        self.stderr_buf = b""
        self._log(f"chip on (reset cause {self.reset_cause}), emulator pid {self.child.pid}")

    def _kill(self) -> None:
        child = self.child
        if child is None:
            return
        child.kill()
        child.wait()
        self._reap()

    def _reap(self) -> None:
        child = self.child
        assert child is not None
        for stream in (child.stdin, child.stdout, child.stderr):
            if stream is not None:
                stream.close()
        os.close(self.pidfd)
        os.close(self.ctl_w)
        self.child = None
        self.to_chip.clear()  # what was on its way to the chip is lost with its power

    def _on_exit(self) -> None:
        child = self.child
        assert child is not None
        self._on_stdout()
        self._on_stderr()
        rc = child.wait()
        self._reap()
        if self.stopping:
            return
        self.reset_cause = "power_on"
        if rc == WATCHDOG_RESET_EXIT and self.kept is not None:
            self.reset_cause = "hard" if self.kept["reason"] & FORCED else "watchdog"
            self.stats["watchdog_resets"] += 1
        elif rc == POWER_CUT_EXIT:
            self.stats["power_cuts"] += 1
            self._log("power cut in the middle of a flash operation")
        else:
            self.stats["crashes"] += 1
            self._log(f"emulator ended (status {rc}): powering the chip on again")
        self._spawn()

    def power_cycle(self) -> None:
        self.stats["power_cycles"] += 1
        self._kill()
        self.reset_cause = "power_on"
        self._spawn()

    def _tell(self, doc: dict) -> None:
        try:
            os.write(self.ctl_w, json.dumps(doc).encode() + b"\n")
        except OSError:
            pass

    # -- bytes -------------------------------------------------------------------------------

    def _on_host_event(self) -> None:
        data = self.usb.read()
        if data and self.child is not None:
            self.stats["bytes_in"] += len(data)
            self.to_chip += data
            self._feed()
        self.usb.flush()

    def _feed(self) -> None:
        child = self.child
        if child is None or not self.to_chip:
            return
        assert child.stdin is not None
        try:
            n = os.write(child.stdin.fileno(), self.to_chip)
        except BlockingIOError:
            return
        except OSError:
            return  # the chip just lost power
        del self.to_chip[:n]

    @staticmethod
    def _take(stream: "IO[bytes] | None") -> bytes:
        """What the emulator wrote on stream by now (b"" if nothing, or it is gone)."""
        try:
            return os.read(stream.fileno(), 65536) if stream is not None else b""
        except OSError:  # (BlockingIOError among them)
            return b""

    def _on_stdout(self) -> None:
        if self.child is not None:
            data = self._take(self.child.stdout)
            if data:
                self.usb.send(data)

    def _on_stderr(self) -> None:
        if self.child is None:
            return
        self.stderr_buf += self._take(self.child.stderr)
        *lines, self.stderr_buf = self.stderr_buf.split(b"\n")
        for line in lines:
            if line.startswith(REPORT):
                try:
                    doc = json.loads(line[len(REPORT) :])
                except ValueError:
                    continue
                self.chip.update(doc.get("status") or {})
                if "reset" in doc:
                    self.kept = doc["reset"]
            elif line.strip():
                self._log("emulator: " + line.decode(errors="replace"))

    # -- control -----------------------------------------------------------------------------

    def status(self) -> dict:
        child = self.child
        return {
            "name": self.name,
            "board": self.board.name,
            "engine": "rp2040",
            "tty": self.tty,
            "pid": os.getpid(),
            "interpreter_pid": child.pid if child else None,
            "reset_cause": self.reset_cause,
            "host_connected": self.usb.connected,
            "uptime_s": round(time.time() - self.started, 1),
            "chip_ms": self.chip["chip_ms"],  # the chip's own clock since its last power-on
            "chip_wall_ms": self.chip["wall_ms"],  # this host's, over the same run
            "chip_busy_ms": self.chip["busy_ms"],  # of chip_ms, running code
            "chip_flash_ms": self.chip["flash_ms"],  # of chip_ms, the flash's operations
            "flash_writes": self.chip["flash_ops"],
            "link_bytes_per_s": self.usb.pace.rate,
            "wires": [],
            **self.stats,
        }  # fmt: skip

    def _control(self, request: dict) -> dict:
        op = request.get("op")
        if op == "status":
            return self.status()
        if op in ("power_cycle", "hard_reset"):
            self.power_cycle()
            return {"ok": True}
        if op == "stop":
            self._stop()
            return {"ok": True}
        if op == "cut_after_flash_writes":  # n None: disarm
            n = request.get("n")
            self._tell({"cut_after_flash_ops": None if n is None else int(n)})
            return {"ok": True}
        return {"error": f"the emulated chip does not do {op!r}"}

    def _on_control(self) -> None:
        process.answer(self.control, self._control)

    def _stop(self) -> None:
        self.stopping = True
        self._kill()

    def _log(self, message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> None:
        self._spawn()
        usb = self.usb
        while not self.stopping:
            now = time.monotonic()
            handlers: dict[int, Callable[[], None]] = {
                self.control.fileno(): self._on_control,
                self.wake_r: self._on_signal,
            }
            p = select.poll()
            for fd in handlers:
                p.register(fd, select.POLLIN)
            timeout = usb.watch(p, handlers, self._on_host_event, now, IDLE_S)
            child = self.child
            if child is not None:
                assert child.stdout is not None and child.stderr is not None
                for fd, handler in ((child.stdout.fileno(), self._on_stdout),
                                    (child.stderr.fileno(), self._on_stderr),
                                    (self.pidfd, self._on_exit)):  # fmt: skip
                    p.register(fd, select.POLLIN)
                    handlers[fd] = handler
                if self.to_chip and child.stdin is not None:
                    p.register(child.stdin.fileno(), select.POLLOUT)
                    handlers[child.stdin.fileno()] = self._feed
            for fd, _ in p.poll(timeout * 1000):
                if fd in handlers:
                    handlers[fd]()
                if self.child is not child:
                    break  # powered off and on: the other events are the old chip's
            usb.deliver()
        self._log("stopped")

    def _on_signal(self) -> None:
        os.read(self.wake_r, 64)


def main(argv: list[str]) -> int:
    """argv: SIM_DIR [READY_FD]"""
    sim_dir = Path(argv[1])
    return process.main(sim_dir, process.ready_fd(argv), ChipSupervisor(sim_dir))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
