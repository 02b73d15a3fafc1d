"""A board's raw REPL, spoken over our own open Port.

The raw REPL is how every host tool runs code on a MicroPython board (mpremote, rshell,
Thonny): Ctrl-A enters it, a script ends with Ctrl-D, the board answers "OK", the script's
output, Ctrl-D, its error output, Ctrl-D, and a ">" prompt for the next one. Raw-paste
mode (MicroPython 1.14 and later) adds a flow-control window so that a long script never
overruns the board's input buffer; a board without it gets plain raw mode.

This is the same protocol state machine as mpremote's SerialTransport, over the Port's
two primitives (write, read with a deadline) so that errors come back as ribat's own and
the library never prints. Deploy uses it to probe and write a board that runs no ribat
(or one we must reach beneath a running node); `connect` uses it to find out why a board
does not answer frames.
"""

import ast
import json
import time
from functools import cache
from pathlib import Path
from typing import Any

from ribat.device import boards
from ribat.device.transport import Port
from ribat.errors import BoardRestarted, DeviceError, NoAnswer

ENTER_TIMEOUT_S = 10.0  # interrupt the app and reach the raw REPL (soft reset included)
ENTER_TRIES = 2  # a Ctrl-C sent while a board boots can be lost: ask once more
READ_DEADLINE_S = 30.0  # the longest any single wait may last, however chatty the board
EXEC_TIMEOUT_S = 10.0  # silence allowed while a snippet runs
PASTE_TIMEOUT_S = 2.0  # a board answers a raw-paste request and its window at once
PLAIN_CHUNK = 256  # plain raw mode: bytes written at a time, a pause between (no window)
PLAIN_PAUSE_S = 0.01

BANNER = b"raw REPL; CTRL-B to exit\r\n"
SOFT_REBOOT = b"soft reboot\r\n"
PASTE_REQUEST = b"\x05A\x01"

# What a board prints when it starts, which no raw REPL exec of ours prints: a ribat frame
# (the node is running), MicroPython's banner, an ESP32's boot ROM.
RESTART_SIGNS = (b"\x1e", b"MPY: soft reboot", b'Type "help()"', b"rst:0x")


class _Silence(Exception):
    """The board stopped talking before the byte sequence we wait for."""


class RawRepl:
    def __init__(self, port: Port) -> None:
        self.port = port
        self.pending = bytearray()  # read from the board, not yet consumed
        self.raw_paste = True  # until the board says it lacks raw-paste mode

    def __enter__(self) -> "RawRepl":
        return self

    def __exit__(self, *exc: object) -> None:
        self.port.close()

    # -- reading -------------------------------------------------------------------------

    def _until(
        self, ending: bytes, silence: float, overall: float = READ_DEADLINE_S,
        watch_restarts: bool = False,
    ) -> bytes:  # fmt: skip
        """What the board sends up to and including ending; _Silence if it says nothing
        for `silence` seconds, or ending has not come within `overall`. watch_restarts:
        BoardRestarted at once if the board shows that it started again."""
        start = heard = time.monotonic()
        silence, overall = silence * self.port.slowness, overall * self.port.slowness
        scanned = 0
        while True:
            at = self.pending.find(ending, max(0, scanned - len(ending) + 1))
            if at >= 0:
                end = at + len(ending)
                data = bytes(self.pending[:end])
                del self.pending[:end]
                return data
            if watch_restarts:
                tail = self.pending[max(0, scanned - 20) :]
                if any(sign in tail for sign in RESTART_SIGNS):
                    raise BoardRestarted(f"{self.port.name} restarted while running code")
            scanned = len(self.pending)
            now = time.monotonic()
            left = min(heard + silence, start + overall) - now
            if left <= 0:
                raise _Silence(bytes(self.pending[-200:]))
            got = self.port.read(left)
            if got:
                heard = time.monotonic()
                self.pending += got

    def _exactly(self, n: int, silence: float) -> bytes:
        deadline = time.monotonic() + silence * self.port.slowness
        while len(self.pending) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Silence(bytes(self.pending))
            self.pending += self.port.read(left)
        data = bytes(self.pending[:n])
        del self.pending[:n]
        return data

    def _no_answer(self, doing: str) -> NoAnswer:
        return NoAnswer(
            f"no answer from the REPL on {self.port.name} while trying to {doing}: is it a "
            "MicroPython board? Check the port, or power-cycle the board"
        )

    # -- the REPL ------------------------------------------------------------------------

    def enter(self, soft_reset: bool, timeout: float = ENTER_TIMEOUT_S) -> None:
        """Interrupt whatever runs and enter the raw REPL (after a soft reset if asked)."""
        for attempt in range(ENTER_TRIES):
            try:
                self._enter(soft_reset, timeout / ENTER_TRIES)
                return
            except _Silence:
                if attempt == ENTER_TRIES - 1:
                    raise self._no_answer("enter the raw REPL") from None

    def _enter(self, soft_reset: bool, timeout: float) -> None:
        self.port.write(b"\r\x03")  # Ctrl-C: interrupt any running program
        self.pending.clear()
        self.pending += self.port.read(0)  # what was on its way: dropped
        self.pending.clear()
        self.port.write(b"\r\x01")  # Ctrl-A: the raw REPL
        if soft_reset:
            self._until(BANNER + b">", timeout, timeout)
            self.port.write(b"\x04")  # Ctrl-D: soft reset, back into the raw REPL
            # boot.py may print between the reboot and the banner
            self._until(SOFT_REBOOT, timeout, timeout)
        self._until(BANNER, timeout, timeout)

    def exec(self, code: str, timeout: float = EXEC_TIMEOUT_S) -> bytes:
        """Run code; its output. Fails after `timeout` of silence, READ_DEADLINE_S in all,
        or at once if the board restarts meanwhile."""
        try:
            self._send(code.encode())
            out = self._until(b"\x04", timeout, watch_restarts=True)[:-1]
            err = self._until(b"\x04", timeout, watch_restarts=True)[:-1]
        except _Silence:
            raise self._no_answer("run code") from None
        if err:
            message = _last_line(err.decode(errors="replace"))
            raise DeviceError(f"running code failed on the board: {message}")
        return out

    def _send(self, code: bytes) -> None:
        self._until(b">", EXEC_TIMEOUT_S)  # the raw REPL's prompt
        if self.raw_paste:
            self.port.write(PASTE_REQUEST)
            answer = self._exactly(2, PASTE_TIMEOUT_S)
            if answer == b"R\x01":
                self._paste(code)
                return
            if answer != b"R\x00":  # a board too old to know the request: it echoed it
                self._until(BANNER + b">", PASTE_TIMEOUT_S)
            self.raw_paste = False
        for i in range(0, len(code), PLAIN_CHUNK):
            self.port.write(code[i : i + PLAIN_CHUNK])
            time.sleep(PLAIN_PAUSE_S)
        self.port.write(b"\x04")
        if self._exactly(2, EXEC_TIMEOUT_S) != b"OK":
            raise _Silence(b"no OK")

    def _paste(self, code: bytes) -> None:
        """Raw-paste mode: the board grants a window of bytes, and one more window each
        time it sends \\x01; \\x04 from it means it stopped reading (a syntax error)."""
        window = int.from_bytes(self._exactly(2, PASTE_TIMEOUT_S), "little")
        room = window
        at = 0
        while at < len(code):
            self.pending += self.port.read(0)
            while room == 0 or self.pending:
                flow = self._exactly(1, EXEC_TIMEOUT_S)
                if flow == b"\x01":
                    room += window
                elif flow == b"\x04":
                    self.port.write(b"\x04")
                    return
                else:
                    raise _Silence(b"unexpected byte in raw paste: " + flow)
            piece = code[at : at + room]
            self.port.write(piece)
            room -= len(piece)
            at += len(piece)
        self.port.write(b"\x04")
        self._until(b"\x04", EXEC_TIMEOUT_S)  # the board has it all, and compiles it

    def eval_json(self, code: str, timeout: float = EXEC_TIMEOUT_S) -> Any:
        """Run code whose last output line is one JSON document; that document."""
        out = self.exec(code, timeout).decode(errors="replace").strip().splitlines()
        return json.loads(out[-1])

    def start_app(self) -> None:
        """Leave the raw REPL and soft-reset from the friendly one, so main.py runs.

        Returns once the board says it is rebooting: what is sent after that reaches the
        new run (main.py), not the REPL that is going away.
        """
        self.port.write(b"\r\x02")  # Ctrl-B: the friendly REPL
        self.port.write(b"\x04")
        try:
            self._until(SOFT_REBOOT, ENTER_TIMEOUT_S)
        except _Silence:
            raise self._no_answer("restart the board") from None


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


# -- board-side scripts ------------------------------------------------------------------
#
# What runs at the raw REPL is real .py files (in an `onboard/` folder beside the module
# that sends them), linted, and type-checked against MicroPython's stubs. A script imports
# what it shares with other code from where that code lives; script() inlines those
# definitions (board_script), so that a board with no ribat on it runs it.

IS_INSTALLED = Path(__file__).parent / "onboard" / "installed.py"


@cache
def board_script(path: Path) -> str:
    """The source of the board-side script at path, ready to run: each `from M import a,
    b` of ours (a sibling `.x`, the node's shared `ribat.x`, the loader `main`) replaced
    by the definitions of a and b in M and what they use of M, at most once each."""
    return _link(path, set())


def definitions(path: Path, names: list[str]) -> str:
    """The source of the named definitions in the module at path, with what they use of
    it: how a board-side script takes them (and the host, to run the same code)."""
    return _take(path, names, set())


def _module_file(name: str, beside: Path) -> Path | None:
    if name.startswith("."):
        return beside.parent / (name[1:] + ".py")
    if name == "main" or name.startswith("ribat."):
        return boards.firmware_dir() / (name.replace(".", "/") + ".py")
    return None  # MicroPython's own module: imported on the board as written


def _link(path: Path, done: set[tuple[Path, str]]) -> str:
    source = path.read_text()
    tree = ast.parse(source)
    out: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            name = "." * node.level + (node.module or "")
            module = _module_file(name, path)
            if module is not None:
                out.append(_take(module, [a.name for a in node.names], done))
                continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring
        out.append(ast.get_source_segment(source, node) or "")
    return "\n".join(part for part in out if part) + "\n"


def _take(path: Path, names: list[str], done: set[tuple[Path, str]]) -> str:
    """The definitions of names in the module at path and those of the module's that they
    use, in the module's order, after the plain imports they need; none taken twice."""
    source = path.read_text()
    tree = ast.parse(source)
    defined: dict[str, ast.stmt] = {}
    imported: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    defined[target.id] = node
        elif isinstance(node, ast.Import):
            for alias in node.names:
                imported[alias.asname or alias.name] = node
    wanted: set[ast.stmt] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        found = defined.get(name) or imported.get(name)
        if found is None:
            if name in names:
                raise ImportError(f"{path} defines no {name}")
            continue  # a builtin, a local, an attribute's base we do not define
        if found in wanted or (path, name) in done:
            continue
        wanted.add(found)
        done.add((path, name))
        pending += [n.id for n in ast.walk(found) if isinstance(n, ast.Name)]
    kept = [node for node in tree.body if node in wanted]
    kept.sort(key=lambda node: not isinstance(node, ast.Import))  # imports first
    return "\n".join(ast.get_source_segment(source, node) or "" for node in kept)
