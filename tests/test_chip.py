"""MicroPython's real RP2040 firmware on the emulated chip (ribat.sim.chip): an unmodified
mpremote and the node's own tools reach it through its pseudo-terminal as they would a
Pico's USB port; its serial flash formats littlefs and keeps it across power cuts; the
node deploys, provisions, posts and reads there, and a post cut by a power loss in the
middle of a flash operation loses nothing else.

These run where Node.js, the UF2 and the boot ROM are found (ribat.sim.chip says where it
looks); elsewhere they are skipped, saying what is missing."""

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import NewSim, ribat
from ribat import entry, sim
from ribat.device.client import connect
from ribat.ops import guard
from ribat.ops import journal as jlib
from ribat.sim import chip

WHY = chip.available()
pytestmark = [pytest.mark.chip, pytest.mark.skipif(WHY is not None, reason=WHY or "")]
PIN = "correct-horse-1"
# rp2040js where `make chip` put it (the tests' own cache folder is new each run)
USER_CACHE = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")


@pytest.fixture
def pico(monkeypatch: pytest.MonkeyPatch) -> Iterator[sim.Sim]:
    monkeypatch.setenv("XDG_CACHE_HOME", USER_CACHE)
    board = sim.start(None, "emulated-pico")
    try:
        yield board
    finally:
        sim.stop(board.name, erase=True)


def mpremote(device: str, code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", device, "exec", code],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def quiet(name: str, chip_ms: int = 3000, timeout_s: float = 180) -> None:
    """Wait until the chip has run chip_ms of its own time with no flash operation."""
    deadline = time.monotonic() + timeout_s
    status = sim.control(name, {"op": "status"})
    since = (status["flash_writes"], status["chip_ms"])
    while True:
        time.sleep(0.5)
        status = sim.control(name, {"op": "status"})
        if status["flash_writes"] != since[0]:
            since = (status["flash_writes"], status["chip_ms"])
        elif status["chip_ms"] - since[1] >= chip_ms:
            return
        assert time.monotonic() < deadline, "the node's flash never went quiet"


def test_the_stock_firmware_runs_and_its_flash_keeps_files(pico: sim.Sim) -> None:
    got = mpremote(
        pico.device, "import os, sys; print(sys.implementation._machine, os.statvfs('/')[2])"
    )
    assert got == "Raspberry Pi Pico with RP2040 352"  # littlefs formatted by the firmware
    mpremote(pico.device, "f = open('kept.txt', 'w'); f.write('across power cuts'); f.close()")
    sim.power_cycle(pico.name)
    time.sleep(1)
    assert mpremote(pico.device, "print(open('kept.txt').read())") == "across power cuts"
    sim.stop(pico.name)
    again = sim.start(pico.name, "emulated-pico")
    assert mpremote(again.device, "print(open('kept.txt').read())") == "across power cuts"
    status = sim.control(pico.name, {"op": "status"})
    assert status["engine"] == "rp2040" and status["flash_writes"] == 0  # nothing rewritten
    deadline = time.monotonic() + 10  # (the emulator tells its time every half second)
    while sim.control(pico.name, {"op": "status"})["chip_ms"] == 0:
        assert time.monotonic() < deadline, "the chip's clock did not run"
        time.sleep(0.2)
    mpremote(again.device, "x = sum(range(20000))")  # some work, then time to tell it
    time.sleep(1.0)
    status = sim.control(pico.name, {"op": "status"})
    assert 0 < status["chip_busy_ms"] < status["chip_ms"]  # it ran code, and it waited
    # the flash takes a W25Q16JV's time: a write of 8 KB erases two 4 KB sectors (45 ms
    # each, typically) and programs 32 pages (0.4 ms), and the chip waits for them
    took = mpremote(
        again.device,
        "import time; t = time.ticks_ms(); f = open('big', 'wb');"
        " f.write(bytes(8192)); f.close(); print(time.ticks_diff(time.ticks_ms(), t))",
    )
    time.sleep(1.0)
    assert (
        int(took) >= 2 * 45 and sim.control(pico.name, {"op": "status"})["chip_flash_ms"] >= 2 * 45
    )


def run(*args: str, timeout: float = 300) -> str:
    r = ribat(*args, timeout=timeout)
    assert r.code == 0, (args, r.err)
    return r.out


def test_a_node_on_the_chip_posts_reads_and_survives_a_cut_mid_write(
    pico: sim.Sim, tmp_path: Path, new_sim: NewSim
) -> None:
    port = ("-p", f"sim:{pico.name}")
    run("flash", *port)
    cell = tmp_path / "cell"
    run("cell", "init", str(cell))
    run("provision", *port, "--cell", str(cell), "--partner", "MA", "--name", "rabat-1",
        "--pin", PIN)  # fmt: skip
    run("identity", "export", *port, "-o", str(tmp_path / "me.json"))
    run("cell", "roster", "add", "--cell", str(cell), str(tmp_path / "me.json"))
    # a virtual Pico of the same cell, whose run of entries the chip imports below
    paris = new_sim()
    paris_port = ("-p", f"sim:{paris.name}")
    run("flash", *paris_port)
    run("provision", *paris_port, "--cell", str(cell), "--partner", "FR", "--name",
        "paris-1", "--pin", PIN)  # fmt: skip
    run("identity", "export", *paris_port, "-o", str(tmp_path / "paris.json"))
    run("cell", "roster", "add", "--cell", str(cell), str(tmp_path / "paris.json"))
    run("cell", "load", "--cell", str(cell), *paris_port)
    run("cell", "load", "--cell", str(cell), *port)
    first = run("post", *port, "--pin", PIN, "--kind", "notice", "--to", "MA", "--title",
                "on the chip", "--body", "kept whole").strip()  # fmt: skip
    (shown,) = map(json.loads, run("show", *port, "--pin", PIN, first, "--json").splitlines())
    assert shown["body"] == "kept whole" and shown["state"] == "readable"
    # a whole run of another node's entries (one signature checked, the rest by their
    # chain, all joining it at the end) within the watchdog's window: it once outlasted it
    with connect(paris.device) as client:
        guard.unlock(client, PIN)
        for n in range(entry.RUN):
            jlib.post(client, "notice", "routine", ["MA"], f"n{n}", "x" * 300, 86400, [])
    exported = tmp_path / "paris.rbj"
    run("journal", "export", *paris_port, str(exported))
    imported = run("journal", "import", *port, str(exported), "--json")
    outcomes = [json.loads(line)["outcome"] for line in imported.splitlines()]
    assert outcomes == ["stored"] * entry.RUN, outcomes
    assert sim.control(pico.name, {"op": "status"})["watchdog_resets"] == 0

    # the power goes in the middle of one of the next post's flash operations (its PIN
    # try counted, its audit entries, its record: the third of them), once the node's own
    # work after the import (the look at what came, the lock when its host went) is done:
    # a cut armed during that work fell before the post, which then waited out the reboot
    quiet(pico.name)
    sim.control(pico.name, {"op": "cut_after_flash_writes", "n": 2})
    cut = ribat("post", *port, "--pin", PIN, "--kind", "notice", "--to", "MA", "--title",
                "cut", "--body", "x" * 500, timeout=300)  # fmt: skip
    assert cut.code != 0 and "Traceback" not in cut.err
    assert sim.control(pico.name, {"op": "status"})["power_cuts"] == 1, cut.err
    deadline = time.monotonic() + 120
    while ribat("status", *port).code != 0:
        assert time.monotonic() < deadline, "the node did not come back"
        time.sleep(2)
    run("audit", "verify", *port)
    listed = [json.loads(line) for line in run("list", *port, "--pin", PIN, "--json").splitlines()]
    assert all(b["state"] == "readable" for b in listed)
    assert sum(b["node"] == "paris-1" for b in listed) == entry.RUN
    mine = [b for b in listed if b["node"] == "rabat-1"]
    assert mine[0]["id"] == first and mine[0]["title"] == "on the chip" and len(mine) in (1, 2)
