"""The board's raw REPL, through mpremote's SerialTransport on our own open Port.

We reuse mpremote's raw REPL (raw-paste with flow control, fallback to plain raw mode)
rather than write it again; what we add is our error types, silence (mpremote prints some
failures to stdout) and a JSON channel for results.
"""

import contextlib
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import serial
from mpremote.transport import TransportError
from mpremote.transport_serial import SerialTransport

from ribat.errors import BoardRestarted, DeviceError, NoAnswer, PortGone
from ribat.transport import Port

ENTER_TIMEOUT_S = 10.0  # interrupt the app and reach the raw REPL (soft reset included)
ENTER_TRIES = 2  # a Ctrl-C sent while a board boots can be lost: ask once more
READ_DEADLINE_S = 30.0  # the longest any single wait of mpremote's may last
EXEC_TIMEOUT_S = 10.0  # silence allowed while a snippet runs
CHAR_TIMEOUT_S = 1.0  # one blocking read(1) in mpremote's read loop

# What a board prints when it starts, which no raw REPL exec of ours prints: a ribat frame
# (the node is running), MicroPython's banner, an ESP32's boot ROM.
RESTART_SIGNS = (b"\x1e", b"MPY: soft reboot", b'Type "help()"', b"rst:0x")

# Is ribat installed, and which MicroPython runs: for a board that does not answer frames.
IS_INSTALLED = """
import os, sys, json
try:
    os.stat('/fw/active')
    _i = True
except OSError:
    _i = False
print(json.dumps({'firmware': _i,
                  'micropython': '.'.join(str(x) for x in sys.implementation.version[:3])}))
"""


class _Transport(SerialTransport):
    """SerialTransport over a pyserial port we opened ourselves (exclusive, errors mapped)."""

    def __init__(self, port: Port) -> None:  # no super().__init__: it would open the port
        self.in_raw_repl = False
        self.use_raw_paste = True
        self.device_name = port.path
        self.mounted = False
        self.serial = port.serial
        # With is_pty set, mpremote's read_until blocks in read(1) (bounded by the port's
        # timeout) instead of polling in_waiting every 10 ms: faster on every kind of port.
        self.is_pty = True
        self.serial.timeout = CHAR_TIMEOUT_S
        self.watch_restarts = False  # while running code: a board that restarts fails fast

    def read_until(
        self,
        min_num_bytes: int,
        ending: bytes,
        timeout: float = 10,
        data_consumer: Any = None,
        timeout_overall: float | None = None,
    ) -> bytes:
        """mpremote's read_until, with its overall timeout enforced even while bytes keep
        coming (a running node's telemetry would otherwise hold it forever)."""
        data = b""
        start = heard = time.monotonic()
        deadline = start + (READ_DEADLINE_S if timeout_overall is None else timeout_overall)
        while not data.endswith(ending):
            b = self.serial.read(1)
            now = time.monotonic()
            if b:
                heard = now
                if data_consumer is not None:
                    data_consumer(b)
                    data = b
                else:
                    data += b
                if self.watch_restarts and any(sign in data[-20:] for sign in RESTART_SIGNS):
                    raise BoardRestarted(f"{self.device_name} restarted while running code")
            elif timeout is not None and now - heard >= timeout:
                break
            if now >= deadline:
                break
        return data


class RawRepl:
    def __init__(self, port: Port) -> None:
        self.port = port
        self.transport = _Transport(port)

    def __enter__(self) -> "RawRepl":
        return self

    def __exit__(self, *exc: object) -> None:
        self.port.close()

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                yield
        except TransportError as e:
            raise NoAnswer(
                f"no answer from the REPL on {self.port.path} while trying to {doing}: is it a "
                "MicroPython board? Check the port, or power-cycle the board"
            ) from e
        except (serial.SerialException, OSError) as e:
            raise PortGone(f"{self.port.path} disappeared: {e}") from e

    def enter(self, soft_reset: bool, timeout: float = ENTER_TIMEOUT_S) -> None:
        """Interrupt whatever runs and enter the raw REPL (after a soft reset if asked)."""
        with self._errors("enter the raw REPL"):
            for attempt in range(ENTER_TRIES):
                try:
                    self.transport.enter_raw_repl(
                        soft_reset=soft_reset, timeout_overall=timeout / ENTER_TRIES
                    )
                    return
                except TransportError:
                    if attempt == ENTER_TRIES - 1:
                        raise

    def exec(self, code: str, timeout: float = EXEC_TIMEOUT_S) -> bytes:
        """Run code; its output. Fails after `timeout` of silence, READ_DEADLINE_S in all,
        or at once if the board restarts meanwhile (see read_until)."""
        with self._errors("run code"):
            self.transport.watch_restarts = True
            try:
                self.transport.exec_raw_no_follow(code)
                out, err = self.transport.follow(timeout)
            finally:
                self.transport.watch_restarts = False
        if err:
            message = _last_line(err.decode(errors="replace"))
            raise DeviceError(f"running code failed on the board: {message}")
        return out

    def eval_json(self, code: str, timeout: float = EXEC_TIMEOUT_S) -> Any:
        """Run code whose last output line is one JSON document; that document."""
        out = self.exec(code, timeout).decode(errors="replace").strip().splitlines()
        return json.loads(out[-1])

    def start_app(self) -> None:
        """Leave the raw REPL and soft-reset from the friendly one, so main.py runs.

        Returns once the board says it is rebooting: what is sent after that reaches the
        new run (main.py), not the REPL that is going away.
        """
        with self._errors("restart the board"):
            self.transport.exit_raw_repl()
            self.port.write(b"\x04")
            self.transport.read_until(1, b"soft reboot\r\n", timeout=ENTER_TIMEOUT_S)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"
