"""What every virtual board's supervisor process shares (the unix port's,
ribat.sim.supervisor, and the emulated chip's, ribat.sim.chip.supervisor): its control
socket, its signals, and its life from `ribat sim start` to its end."""

import errno
import json
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ribat.device.boards import Board
from ribat.sim import paths


def listen(sim_dir: Path) -> socket.socket:
    """The board's control socket, listening; a clear error if another supervisor has it."""
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        control.bind(paths.control_address(sim_dir))
    except OSError as e:
        if e.errno != errno.EADDRINUSE:
            raise
        raise RuntimeError(
            f"another supervisor already runs virtual board {sim_dir.name} (its state folder "
            "may have been deleted under it): end it with `pkill -f ribat.sim`"
        ) from None
    control.listen(4)
    return control


def answer(control: socket.socket, handle: Callable[[dict], dict]) -> None:
    """Take one request on the control socket (a JSON line) and answer it (another)."""
    conn, _ = control.accept()
    with conn:
        conn.settimeout(1.0)
        try:
            reply = handle(json.loads(conn.makefile("rb").readline()))
        except (OSError, ValueError, KeyError, TypeError) as e:
            reply = {"error": str(e)}
        try:
            conn.sendall(json.dumps(reply).encode() + b"\n")
        except OSError:
            pass


def signals(stop: Callable[[], None]) -> int:
    """SIGTERM stops the board, SIGINT is ignored (a board ignores its host's Ctrl-C);
    signals wake the loop through the pipe whose read end this returns."""
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGTERM, lambda *_: stop())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return wake_r


class Supervising(Protocol):
    name: str
    board: Board

    def prepare(self) -> str: ...
    def run(self) -> None: ...


def main(sim_dir: Path, ready: int, sup: Supervising) -> int:
    """Prepare the board, tell `ribat sim start` (on the READY_FD it passed) its terminal
    or what went wrong, then run it until it stops."""
    try:
        tty_path = sup.prepare()
    except Exception as e:  # reported to `ribat sim start`, which is waiting for us
        if ready >= 0:
            os.write(ready, json.dumps({"error": str(e)}).encode() + b"\n")
        raise
    paths.write_state(sim_dir, {"name": sup.name, "board": sup.board.name, "tty": tty_path,
                                "pid": os.getpid()})  # fmt: skip
    if ready >= 0:
        os.write(ready, json.dumps({"tty": tty_path}).encode() + b"\n")
        os.close(ready)
    try:
        sup.run()
    finally:
        paths.clear_state(sim_dir)
    return 0


def ready_fd(argv: list[str]) -> int:
    return int(argv[2]) if len(argv) > 2 else -1
