"""ribat flash: only a changed slot's files cross the link (the modules are packed into one
file, firmware.pack), each is verified, the switch is atomic,
an interrupted deploy leaves the old firmware running, unsupported boards are refused."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIRMWARE, copy_firmware, ribat, sim_status
from ribat import deploy, sim
from ribat.deploy import image
from ribat.device import boards
from ribat.device.client import NodeClient
from ribat.device.transport import Port
from ribat.errors import Unsupported


def hello(tty: str) -> dict:
    with NodeClient(Port(tty)) as client:
        return vars(client.wait_ready())


def board_files(tty: str) -> dict:
    with Port(tty) as port:
        d = deploy.Deployer(port)
        report = d.probe()
        d.restart()
    return {"active": report.active, "slots": report.slots, "loader": report.loader}


def test_first_deploy_then_no_change_redeploy_sends_nothing(board: sim.Sim) -> None:
    run = ribat("flash", "--port", f"sim:{board.name}")
    assert run.code == 0, run.err
    assert "✓ firmware" in run.err and "runs from slot a" in run.err
    info = hello(board.device)
    assert info["slot"] == "a" and info["board"] == "virtual-rp2-pico"
    firmware_bytes = sum(len(d) for d in _image().files.values())

    before = sim_status(board.name)["bytes_in"]
    result = deploy.deploy(board.device)
    on_the_wire = sim_status(board.name)["bytes_in"] - before
    assert result.plan.up_to_date and result.sent_bytes == 0
    # a hello and the node's own check of its files: no file content, no probe, and the
    # node was not even restarted
    assert on_the_wire < min(256, firmware_bytes / 2)
    again = hello(board.device)
    assert (again["build"], again["boot"]) == (info["build"], info["boot"])


def _image(source: Path | None = None) -> image.Image:
    return image.build(boards.load("virtual-rp2-pico"), image.MpyFormat(6, 3), source)


def test_a_changed_module_alone_crosses_the_link_and_a_pack_the_slot_holds_stays(
    node: sim.Sim, tmp_path: Path
) -> None:
    src = copy_firmware(tmp_path)
    with open(src / "ribat" / "telemetry.py", "a") as f:
        f.write("\nCHANGED = 1\n")
    result = deploy.deploy(node.device, source=src)
    assert result.plan.transfer == ["firmware.pack", "manifest.json"] and result.plan.slot == "b"
    # the new pack is built on the board: its other files come from slot a's pack
    packed = image.unpack(_image(src).files["firmware.pack"])
    assert set(result.plan.reuse) == set(packed) - {"ribat/telemetry.mpy"}
    assert result.sent_bytes < 8192
    assert hello(node.device)["build"] == result.manifest["build"]
    assert (
        packed["ribat/telemetry.mpy"]
        != image.unpack(_image().files["firmware.pack"])["ribat/telemetry.mpy"]
    )
    # the shipped modules again, from a copy (another revision, so another manifest):
    # slot a holds their pack, which stays; only the manifest crosses
    result = deploy.deploy(node.device, source=copy_firmware(tmp_path, "same"))
    assert result.plan.slot == "a" and result.plan.keep == ["firmware.pack"]
    assert (
        result.plan.transfer == ["manifest.json"] and result.sent_bytes < 8192
    )  # the manifest, not the pack
    assert hello(node.device)["build"] == result.manifest["build"]


def test_stale_files_are_removed_from_the_slot_written(board: sim.Sim, tmp_path: Path) -> None:
    deploy.deploy(board.device)  # slot a
    changed = copy_firmware(tmp_path, "changed")
    with open(changed / "ribat" / "link.py", "a") as f:
        f.write("\nCHANGED = 1\n")
    deploy.deploy(board.device, source=changed)  # slot b
    # slot a as the layout before packs left it: modules as files, in a folder
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mpremote",
            "connect",
            board.device,
            "exec",
            "import os; os.mkdir('/fw/a/ribat'); open('/fw/a/ribat/app.mpy', 'wb').close();"
            "open('/fw/a/hal.mpy', 'wb').close()",
        ],
        check=True,
        capture_output=True,
    )
    result = deploy.deploy(board.device)  # slot a again
    assert result.plan.slot == "a" and result.plan.remove == ["hal.mpy", "ribat/app.mpy"]
    assert sorted(board_files(board.device)["slots"]["a"]) == ["firmware.pack", "manifest.json"]
    listing = subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", board.device, "fs", "ls", ":/fw/a"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "ribat" not in listing  # the folder went with its files


def test_dry_run_changes_nothing(node: sim.Sim, tmp_path: Path) -> None:
    src = copy_firmware(tmp_path)
    with open(src / "ribat" / "store.py", "a") as f:
        f.write("\nCHANGED = 1\n")
    before = board_files(node.device)
    run = ribat("flash", "--port", node.device, "--dry-run", "--source", str(src))
    assert run.code == 0, run.err
    assert "send  /fw/b/firmware.pack" in run.out and "switch the active slot to b" in run.out
    assert board_files(node.device) == before
    assert "up to date" in ribat("flash", "--port", node.device, "--dry-run").out


def test_a_replaced_main_py_is_restored(node: sim.Sim) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mpremote",
            "connect",
            node.device,
            "exec",
            "f = open('main.py', 'w'); f.write('print(1)'); f.close()",
        ],
        check=True,
        capture_output=True,
    )
    steps: list[str] = []
    result = deploy.deploy(node.device, step=steps.append)
    assert result.plan.loader and not result.plan.transfer
    assert "replacing main.py" in steps
    assert not any("manifest" in step for step in steps)  # the slot is untouched
    assert board_files(node.device)["loader"] == image.sha256((FIRMWARE / "main.py").read_bytes())


@pytest.mark.parametrize("short", sorted(boards.virtual_names()))
def test_the_firmware_runs_on_every_virtual_board(new_sim, short: str) -> None:
    s = new_sim(short)
    if short == "esp32":  # a plain ESP32: refused, saying why and what runs a node
        r = ribat("flash", "-p", f"sim:{s.name}")
        assert r.code == 5 and "110 KB of heap" in r.err and "PSRAM" in r.err, r.err
        assert len(r.err.strip().splitlines()) <= 2 and "Traceback" not in r.err
        return
    deploy.deploy(s.device)
    with NodeClient(Port(s.device)) as client:
        info = client.wait_ready()
        status = client.request("status")
    assert info.board == boards.virtual_names()[short]
    heap = boards.load(info.board).heap_bytes
    # it fits the board's heap with room to spare for bulletins and sync: a Pico W, the
    # tightest, starts with 39% free (bench/session_heap.py; a long session there, and
    # its posts, are test_journal's)
    assert status["heap_free"] > heap * 0.38


def test_interrupted_deploy_leaves_the_old_firmware_running(node: sim.Sim, tmp_path: Path) -> None:
    old = hello(node.device)["build"]
    src = copy_firmware(tmp_path)
    with open(src / "ribat" / "app.py", "a") as f:
        f.write("\nCHANGED = 1\n")

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        deploy.deploy(node.device, source=src, progress=interrupt)
    info = hello(node.device)
    assert info["build"] == old and not info["fallback"]
    assert deploy.deploy(node.device, source=src).plan.transfer  # and a new deploy completes


def test_ctrl_c_to_ribat_flash(node: sim.Sim, tmp_path: Path) -> None:
    old = hello(node.device)["build"]
    src = copy_firmware(tmp_path)
    (src / "ribat" / "bulk.py").write_text("DATA = %r\n" % ("x1" * 200000))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ribat", "flash", "--port", node.device, "--source", str(src)],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    assert "probing" in proc.stderr.readline()
    proc.send_signal(signal.SIGINT)
    err = proc.stderr.read()
    assert proc.wait(timeout=60) in (130, 0), err
    if proc.returncode == 130:
        assert "interrupted" in err
    assert hello(node.device)["build"] in (
        old,
        deploy.deploy(node.device, source=src, dry_run=True).manifest["build"],
    )


def test_unsupported_micropython_is_refused(
    board: sim.Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    future = tmp_path / "boards" / "virtual-future"
    future.mkdir(parents=True)
    (future / "board.json").write_text(
        json.dumps(
            {
                "name": "virtual-future",
                "description": "a board needing MicroPython 1.30",
                "emulates": "rp2-pico",
                "port": "unix",
                "hal": "virtual",
                "micropython_min": "1.30.0",
            }
        )
    )
    monkeypatch.setenv("RIBAT_BOARDS_PATH", str(tmp_path / "boards"))
    run = ribat("flash", "--port", board.device, "--board", "virtual-future")
    assert run.code == 5, run.err
    assert "runs MicroPython 1.29.0; ribat needs 1.30.0 or later" in run.err
    assert "Traceback" not in run.err
    assert board_files(board.device)["active"] is None  # nothing written


def test_a_full_flash_is_refused_before_anything_is_written(node: sim.Sim, tmp_path: Path) -> None:
    before = board_files(node.device)
    # littlefs keeps a file's data only once synced: flush each block, keep what fits
    fill = "f = open('ballast', 'wb')\nwhile True:\n    try:\n        f.write(bytes(4096))\n"
    fill += "        f.flush()\n    except OSError:\n        break\n"
    subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", node.device, "exec", fill],
        check=True,
        capture_output=True,
    )
    src = copy_firmware(tmp_path)
    with open(src / "ribat" / "app.py", "a") as f:
        f.write("\nCHANGED = 1\n")
    run = ribat("flash", "--port", node.device, "--source", str(src))
    assert run.code == 8 and "not enough flash" in run.err and "nothing was written" in run.err
    assert board_files(node.device) == before  # both slots and the loader as they were
    with NodeClient(Port(node.device)) as client:
        client.wait_ready()  # the node runs on, and sees its flash full (not 16 TB free)
        assert client.request("status")["flash_free"] < 16384


def test_wrong_or_unknown_board_is_refused(board: sim.Sim) -> None:
    run = ribat("flash", "--port", board.device, "--board", "rp2-pico")
    assert run.code == 5 and "rp2 board but" in run.err and "reports linux" in run.err
    run = ribat("flash", "--port", board.device, "--board", "nosuch")
    assert run.code == 5 and "unknown board 'nosuch'" in run.err


def test_mpy_cross_is_chosen_by_the_boards_mpy_version() -> None:
    assert image.MpyFormat.from_sys(2822) == image.MpyFormat(6, 3)  # unix x64, 1.29
    assert image.mpy_cross_for(image.MpyFormat(6, 3)).is_file()
    assert image.mpy_cross_for(image.MpyFormat(6, 1)) != image.mpy_cross_for(image.MpyFormat(6, 3))
    with pytest.raises(Unsupported, match=r"loads \.mpy v7\.0"):
        image.mpy_cross_for(image.MpyFormat(7, 0))
