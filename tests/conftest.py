"""Fixtures shared by the tests.

Everything here is real: virtual boards are MicroPython processes on pseudo-terminals, the
CLI runs as a subprocess, firmware tests run under the MicroPython unix port with a real
board's heap size. Each test gets its own RIBAT_HOME, so virtual boards never leak between
tests (and are stopped and erased when the test ends).
"""

import fcntl
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ribat import sim
from ribat.device.client import NodeClient
from ribat.device.transport import Port
from ribat.sim import paths
from ribat.simcell import broker as sim_broker
from ribat.simcell.broker import Broker

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
_names = itertools.count(1)


@pytest.fixture(scope="session")
def mpy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def ribat_home(tmp_path: Path, mpy_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "ribat-home"
    monkeypatch.setenv("RIBAT_HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(mpy_cache))
    monkeypatch.delenv("RIBAT_PORT", raising=False)
    monkeypatch.delenv("RIBAT_BOARDS_PATH", raising=False)
    yield home
    for s in sim.list_sims():
        sim.stop(s.name, erase=True)


NewSim = Callable[..., sim.Sim]


@pytest.fixture
def new_sim() -> Iterator[NewSim]:
    """A function starting virtual boards: new_sim(board="pico", name=None) -> Sim."""

    def start(board: str = "pico", name: str | None = None) -> sim.Sim:
        return sim.start(name or f"t{next(_names)}", board)

    yield start


@pytest.fixture
def board(new_sim: NewSim) -> sim.Sim:
    """A running virtual Pico with a blank flash."""
    return new_sim()


@pytest.fixture
def node(board: sim.Sim) -> sim.Sim:
    """A running virtual Pico with the firmware deployed."""
    from ribat import deploy

    deploy.deploy(board.device)
    return board


@dataclass
class Run:
    code: int
    out: str
    err: str


def ribat(*args: str, timeout: float = 60, env: dict | None = None, stdin: str = "") -> Run:
    """Run the ribat CLI as a user would: a new process, its input a pipe (not a terminal)."""
    done = subprocess.run(
        [sys.executable, "-m", "ribat", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    return Run(done.returncode, done.stdout, done.stderr)


def micropython(
    code: str,
    heap: str = "192K",
    path: tuple[Path, ...] = (FIRMWARE,),
    cwd: Path | None = None,
    stdin: bytes = b"",
    env: dict | None = None,
) -> str:
    """Run code under MicroPython's unix port with a board-sized heap, stdin fed from a
    pipe; its output.

    The code must print "OK" as its last line; anything else fails the test with the
    interpreter's output.
    """
    script = Path(cwd or ROOT) / f".mp_test_{os.getpid()}.py"
    script.write_text(textwrap.dedent(code))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "micropython_unix", "-X", f"heapsize={heap}", str(script)],
            input=stdin,
            capture_output=True,
            timeout=120,
            cwd=cwd,
            env={
                **os.environ,
                "MICROPYPATH": ":".join([".frozen", *map(str, path)]),
                **(env or {}),
            },
        )
    finally:
        script.unlink()
    out = (done.stdout + done.stderr).decode(errors="replace")
    if done.returncode != 0 or not out.rstrip().endswith("OK"):
        pytest.fail(f"MicroPython (exit {done.returncode}) said:\n{out}", pytrace=False)
    return out


def at_repl(device: str, code: str) -> Any:
    """Run code at a board's raw REPL, as anyone holding its USB port can (the node stops
    until it is restarted); the JSON document its last line prints."""
    from ribat.device import repl
    from ribat.device.transport import Port

    with repl.RawRepl(Port(device)) as console:
        console.enter(soft_reset=False)
        return console.eval_json(code)


def on_flash(board: sim.Sim, code: str) -> Any:
    """Run code on the board's flash as whoever holds the flash chip does (a board stolen,
    or read through its USB boot loader): the board stopped, its image mounted at / under
    MicroPython as its ROM mounts it (the loader's Pack and MOUNT defined), then started
    again (board then names its new serial device). The JSON document code's last line
    prints."""
    from ribat.device import boards
    from ribat.device.repl import definitions

    sim.stop(board.name)
    folder = paths.sims_root() / board.name
    facts = boards.load(board.board)
    prelude = f"""
import sys, json, os, vfs
sys.path.insert(0, {str(boards.rom_dir())!r})
import vflash
_flash = vflash.Flash({str(folder / "flash.img")!r}, {facts.block_size},
                      {facts.fs_bytes // facts.block_size})
vfs.mount(vfs.VfsLfs2(_flash, progsize={facts.littlefs_progsize}), "/")
os.chdir("/")
MOUNT = "/firmware"
"""
    loader = definitions(boards.firmware_dir() / "main.py", ["Pack"])
    out = micropython(
        prelude + loader + "\n" + textwrap.dedent(code) + "\nprint('OK')\n",
        heap="4M",
        env={"RIBAT_SIM_PANEL": str(folder / "panel")},
    )
    again = sim.start(board.name, board.board)
    board.tty, board.pid = again.tty, again.pid  # a new serial device: the caller's board
    with NodeClient(Port(board.device)) as client:
        client.wait_ready()
    return json.loads(out.rstrip().splitlines()[-2])


def sim_status(name: str) -> dict:
    return sim.control(name, {"op": "status"})


PIN = "watch-314159"  # every node's PIN in the cells the tests make


def make_cell(
    new_sim: NewSim,
    tmp_path: Path,
    members: list[tuple[str, str]],
    kind: "str | list[str]" = "pico",
) -> list[sim.Sim]:
    """Virtual boards (Picos, unless kind names another, or a list one for each member)
    with the firmware, provisioned (PIN) in one new cell (tmp_path / "cell"), with a
    roster of all of them loaded: one per (partner, name), running. RIBAT_CELL must not
    be set.

    The cell is made once per run for each (members, kind) and copied for each test that
    asks for it (its flash images, its authority): provisioning takes seconds a node."""
    del new_sim  # the boards are the template's, under names of their own
    template = _cell_template(members, kind)
    shutil.copytree(template / "cell", tmp_path / "cell")
    boards = []
    for (_, name), board_kind in zip(members, _kinds(members, kind), strict=True):
        shutil.copy(template / f"{name}.json", tmp_path / f"{name}.json")
        copy = paths.sims_root() / _sim_name(template, name)
        copy.mkdir(parents=True)
        for part in ("board", "flash.img"):
            shutil.copy(template / "sims" / copy.name / part, copy / part)
        boards.append(sim.start(copy.name, board_kind))
    for board in boards:
        with NodeClient(Port(board.device)) as client:
            client.wait_ready()
    return boards


_templates: Path | None = None  # where make_cell keeps its cells (see cell_templates)


@pytest.fixture(scope="session", autouse=True)
def cell_templates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """make_cell's cells, shared by the workers of one run (pytest-xdist gives each a
    folder of its own, under one folder of the run)."""
    global _templates
    base = tmp_path_factory.getbasetemp()
    _templates = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "cells"
    _templates.mkdir(exist_ok=True)
    return _templates


def _kinds(members: list[tuple[str, str]], kind: "str | list[str]") -> list[str]:
    return [kind] * len(members) if isinstance(kind, str) else kind


def _sim_name(template: Path, name: str) -> str:
    return f"{name}-{template.name[:6]}"


def _cell_template(members: list[tuple[str, str]], kind: "str | list[str]") -> Path:
    """A cell of members made once (a worker making it, the others waiting for it), its
    boards stopped: the folder holds cell/, sims/<board>/ and each member's identity."""
    assert _templates is not None
    key = hashlib.sha256(repr((members, kind)).encode()).hexdigest()[:12]
    template = _templates / key
    with open(_templates / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (template / "done").exists():
            return template
        shutil.rmtree(template, ignore_errors=True)
        template.mkdir()
        saved = os.environ["RIBAT_HOME"]
        os.environ["RIBAT_HOME"] = str(template)  # its boards' state under the template
        try:
            boards = _provision_cell(template, members, kind)
            for board in boards:
                sim.stop(board.name)
        finally:
            os.environ["RIBAT_HOME"] = saved
        (template / "done").touch()
    return template


def _provision_cell(
    folder: Path, members: list[tuple[str, str]], kind: "str | list[str]"
) -> list[sim.Sim]:
    from ribat import deploy

    cell = folder / "cell"
    assert ribat("cell", "init", str(cell)).code == 0
    env = {"RIBAT_CELL": str(cell)}
    # the cell's release key (release_bundle), in its roster
    assert ribat("release", "key", "-o", str(cell / "release.key")).code == 0
    assert (
        ribat("cell", "roster", "release", "add", "build", str(cell / "release.pub"), env=env).code
        == 0
    )
    boards = []
    for (partner, name), board_kind in zip(members, _kinds(members, kind), strict=True):
        board = sim.start(_sim_name(folder, name), board_kind)
        deploy.deploy(board.device)
        r = ribat(
            "provision",
            "-p",
            board.device,
            "--partner",
            partner,
            "--name",
            name,
            "--pin",
            PIN,
            env=env,
        )
        assert r.code == 0, r.err
        ident = folder / f"{name}.json"
        assert ribat("identity", "export", "-p", board.device, "--out", str(ident)).code == 0
        assert ribat("cell", "roster", "add", str(ident), env=env).code == 0
        boards.append(board)
    for board in boards:
        r = ribat("cell", "load", "-p", board.device, env=env)
        assert r.code == 0, r.err
    return boards


def release_bundle(
    tmp_path: Path,
    version: str,
    source: Path | None = None,
    board: str = "virtual-rp2-pico",
    key: Path | None = None,
    name: str = "release",
) -> Path:
    """A release of the firmware in source (default: the shipped one) for board, signed with
    key (default: the release key of make_cell's cell, which its roster lists)."""
    from ribat.deploy import bundle

    built = bundle.build(version, [board], [bundle.default_mpy()], source)
    signed = bundle.sign(built, key or tmp_path / "cell" / "release.key")
    out = tmp_path / f"{name}-{version}.rbun"
    bundle.write(signed, out)
    return out


def copy_firmware(tmp_path: Path, name: str = "fw") -> Path:
    """A copy of the firmware's source, to change for a test."""
    src = tmp_path / name
    shutil.copytree(FIRMWARE, src, ignore=shutil.ignore_patterns("__pycache__", "mypy.ini"))
    return src


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A mosquitto on loopback with the cell's ACL (`make test` installs mosquitto)."""
    yield from running_broker(tmp_path / "broker")


def running_broker(folder: Path, acl: bool = True) -> Iterator[Broker]:
    b = sim_broker.start(folder, acl)
    try:
        yield b
    finally:
        b.stop()
