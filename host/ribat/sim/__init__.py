"""Virtual boards: start, list, control and stop them.

Each runs in its own supervisor process (ribat.sim.supervisor); this module only launches
them and talks to them over their control sockets.
"""

import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ribat.errors import SimError
from ribat.sim import paths

START_TIMEOUT_S = 10.0
CONTROL_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 5.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")


@dataclass
class Sim:
    name: str
    board: str
    tty: str | None  # serial device while running
    pid: int | None

    @property
    def running(self) -> bool:
        return self.tty is not None

    @property
    def device(self) -> str:
        """The serial device of a running virtual board."""
        if self.tty is None:
            raise SimError(
                f"virtual board {self.name} is stopped: start it with "
                f"`ribat sim start --name {self.name}`"
            )
        return self.tty


def _dir(name: str) -> Path:
    if not _NAME.match(name):
        raise SimError(
            f"invalid virtual board name {name!r}: use up to 32 letters, digits, '.', '_', '-'"
        )
    return paths.sims_root() / name


def alive(pid: int) -> bool:
    try:
        if os.waitpid(pid, os.WNOHANG)[0]:  # our own child that has exited: reaped now
            return False
    except ChildProcessError:
        pass  # not our child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # exited, and not yet reaped by its parent (a zombie): gone all the same
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc: as far as we can tell


def find(name: str) -> Sim | None:
    d = _dir(name)
    if not (d / "board").is_file():
        return None
    board = (d / "board").read_text().strip()
    state = paths.read_state(d)
    if state is None or not alive(state["pid"]):
        return Sim(name, board, None, None)
    return Sim(name, board, state["tty"], state["pid"])


def list_sims() -> list[Sim]:
    root = paths.sims_root()
    if not root.is_dir():
        return []
    found = (find(p.parent.name) for p in sorted(root.glob("*/board")))
    return [s for s in found if s is not None]


def _free_name() -> str:
    taken = {s.name for s in list_sims()}
    n = 1
    while f"sim{n}" in taken:
        n += 1
    return f"sim{n}"


def start(name: str | None = None, board: str = "pico", fast_link: bool = False) -> Sim:
    """Start a virtual board (made on first start) and return it once its port exists.

    Its serial link runs at the real board's rate and latency, or as fast as the host can
    carry it with fast_link (quicker tests, timings unlike a board's)."""
    from ribat.device import boards

    name = name or _free_name()
    board_name = {**boards.virtual_names(), **boards.emulated_names()}.get(board, board)
    facts = boards.load(board_name)
    if not (facts.virtual or facts.engine):
        raise SimError(
            f"{board_name} is a real board; a virtual one is one of: "
            + ", ".join(boards.virtual_names())
        )
    d = _dir(name)
    existing = find(name)
    if existing is not None:
        if existing.running:
            raise SimError(f"virtual board {name} is already running on {existing.tty}")
        if existing.board != board_name:
            raise SimError(
                f"virtual board {name} was made as a {existing.board}; pick another --name, "
                f"or erase it first with `ribat sim stop {name} --erase`"
            )
    d.mkdir(parents=True, exist_ok=True)
    (d / "board").write_text(board_name + "\n")
    log = d / "log"
    if log.exists() and log.stat().st_size > 1 << 20:
        os.replace(log, d / "log.1")
    if facts.engine == "rp2040":  # the real firmware on an emulated chip
        launch("ribat.sim.chip.supervisor", d, [], log, f"emulated board {name}", CHIP_START_S)
    else:
        launch("ribat.sim.supervisor", d, ["fast" if fast_link else "board"], log,
               f"virtual board {name}")  # fmt: skip
    sim = find(name)
    assert sim is not None
    return sim


# An emulated chip runs the firmware at 45% of the chip's speed here, at a fifth on a
# loaded host: what is asked of it is waited for this much longer than of a board.
CHIP_SLOWNESS = 10.0


def slowness(board_name: str) -> float:
    from ribat.device import boards

    return CHIP_SLOWNESS if boards.load(board_name).engine else 1.0


CHIP_START_S = 330.0  # the first start of an emulated chip may install rp2040js with npm


def launch(
    module: str, folder: Path, extra: list[str], log: Path, what: str,
    timeout: float = START_TIMEOUT_S,
) -> dict:  # fmt: skip
    """Start `python -m module FOLDER READY_FD EXTRA...` detached, its output to log, and
    wait for the JSON line it writes on READY_FD once ready; SimError if it does not."""
    import subprocess

    ready_r, ready_w = os.pipe()
    with open(log, "ab") as out:
        subprocess.Popen(
            [sys.executable, "-m", module, str(folder), str(ready_w), *extra],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            pass_fds=(ready_w,), start_new_session=True,
        )  # fmt: skip
    os.close(ready_w)
    try:
        reply = _read_line(ready_r, timeout)
    finally:
        os.close(ready_r)
    if not reply:
        raise SimError(f"{what} did not start; see {log}")
    answer: dict = json.loads(reply)
    if "error" in answer:
        raise SimError(f"{what} did not start: {answer['error']}")
    return answer


def ask(address: str, request: dict, what: str, timeout: float = CONTROL_TIMEOUT_S) -> dict:
    """Send one request to a control socket; its reply (SimError if it says error)."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(address)
            s.sendall(json.dumps(request).encode() + b"\n")
            reply = s.makefile("rb").readline()
        except OSError as e:
            raise SimError(f"{what} does not answer its control socket: {e}") from None
    answer: dict = json.loads(reply or b"{}")
    if "error" in answer:
        raise SimError(f"{what}: {answer['error']}")
    return answer


def _read_line(fd: int, timeout: float) -> bytes:
    import select

    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data


def control(name: str, request: dict) -> dict:
    """Send one control request to a running virtual board; its reply."""
    sim = find(name)
    if sim is None:
        raise SimError(f"no virtual board named {name}: see `ribat sim list`")
    if not sim.running:
        raise SimError(
            f"virtual board {name} is not running: start it with `ribat sim start --name {name}`"
        )
    return ask(paths.control_address(_dir(name)), request, f"virtual board {name}")


def stop(name: str, erase: bool = False) -> None:
    sim = find(name)
    if sim is None:
        raise SimError(f"no virtual board named {name}: see `ribat sim list`")
    if sim.running and sim.pid is not None:
        control(name, {"op": "stop"})
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while alive(sim.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
    if erase:
        import shutil

        shutil.rmtree(_dir(name))


def power_cycle(name: str) -> None:
    control(name, {"op": "power_cycle"})


_PANEL_SAMPLE_S = 0.1


def panel(name: str, watch_s: float = 1.0) -> dict:
    """What a virtual board's LED, buzzer and button do, watched for watch_s: the LED's
    level now, its changes per second, and the pattern they make (ribat.app.PATTERNS)."""
    first = last = control(name, {"op": "status"})
    if first.get("engine"):
        raise SimError(
            f"{name} is an emulated chip: its LED, buzzer and button are the chip's pins, "
            "which are not watched yet (the board layer drives them all the same)"
        )
    lit = samples = 0
    end = time.monotonic() + watch_s
    while time.monotonic() < end:  # how much of the time it is lit, by samples
        time.sleep(min(_PANEL_SAMPLE_S, max(0.0, end - time.monotonic())))
        last = control(name, {"op": "status"})
        samples += 1
        lit += bool(last["led"])
    rate = (last["led_changes"] - first["led_changes"]) / watch_s
    if rate >= 6:  # (ribat.app.PATTERNS: 10 changes a second)
        led = "fast blink: a flash alert"
    elif rate >= 3:  # 4 a second
        led = "slow blink: a priority alert"
    elif lit >= 0.9 * samples:  # on throughout (a change or two: its start)
        led = "steady: an overdue alert"
    elif rate > 0 and lit >= 0.15 * samples:  # 500 ms every 2 s
        led = "long blink: a convergence"
    elif rate > 0 or lit:  # a blink of 80 ms every 2 s
        led = "heartbeat"
    else:
        led = "off"
    return {
        "led": led,
        "led_level": last["led"],
        "led_changes_per_s": rate,
        "buzzer_beeps": last["buzzer_beeps"] - first["buzzer_beeps"] + int(first["buzzer"]),
        "button": last["button"],
    }


def clock(name: str, advance: int = 0) -> dict:
    """Virtual board name's clock, moved ahead by advance seconds first: {"time": unix time
    on the board, "ahead": seconds ahead of this host's, "restarted"}. The first move
    restarts the board (its ROM takes the clock at a start: boards/virtual/rom/_boot.py);
    this returns once it runs again."""
    got = control(name, {"op": "clock", "advance": advance})
    if got.get("restarted"):
        deadline = time.monotonic() + START_TIMEOUT_S
        while control(name, {"op": "status"}).get("interpreter_pid") is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        time.sleep(1.0)  # its node's start
    return got


def press(name: str, hold: float = 0.3) -> None:
    """Press virtual board name's button for hold seconds."""
    control(name, {"op": "button", "pressed": True})
    try:
        time.sleep(hold)
    finally:
        control(name, {"op": "button", "pressed": False})


def wire(name: str, other: str) -> str:
    """Wire virtual board name's UART to other's; other's name."""
    if name == other:
        raise SimError("a board cannot be wired to itself: name two boards")
    found = find(other)
    if found is None:
        raise SimError(f"no virtual board named {other}: see `ribat sim list`")
    if not found.running:
        raise SimError(
            f"virtual board {other} is not running: start it with `ribat sim start --name {other}`"
        )
    return str(control(name, {"op": "wire", "peer": str(_dir(other))})["peer"])


def unwire(name: str, other: str | None = None) -> list[str]:
    """Cut virtual board name's wire to other, or all its wires; the boards they went to."""
    return list(control(name, {"op": "unwire", "peer": other})["was"])
