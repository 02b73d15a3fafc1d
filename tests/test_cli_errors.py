"""Every error a user can meet: one clear line, a non-zero exit, no traceback unless
--debug, and nothing changed on the node."""

import json
import os
import pty
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

from conftest import FIRMWARE, PIN, NewSim, Run, make_cell, ribat
from ribat import ports, sim


def one_clean_line(run: Run, code: int, *phrases: str) -> None:
    """The error is one line, the last (steps of a deploy may come before it)."""
    assert run.code == code, (run.code, run.err)
    lines = run.err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == [lines[-1]], run.err
    assert "Traceback" not in run.err
    for phrase in phrases:
        assert phrase in lines[-1], lines[-1]


@pytest.mark.skipif(bool(ports.serial_candidates()), reason="a USB board is attached here")
def test_no_board_found() -> None:
    one_clean_line(ribat("status"), 3, "no board found", "ribat sim start")


def test_several_boards_and_no_port(new_sim) -> None:
    new_sim()
    new_sim()
    one_clean_line(ribat("status"), 3, "2 boards found", "--port")


def test_port_that_does_not_exist() -> None:
    one_clean_line(ribat("status", "--port", "/dev/nonexistent-ribat"), 3, "no serial port")
    one_clean_line(ribat("status", "--port", "sim:nobody"), 3, "no virtual board named nobody")


def test_port_busy(node: sim.Sim) -> None:
    brief = {"RIBAT_PORT_WAIT": "1"}  # the default, 30 s, waits out a gateway's round
    with serial.Serial(node.device, exclusive=True):
        for command in ("status", "flash"):
            busy = ribat(command, "--port", f"sim:{node.name}", env=brief)
            # the holder named (this test's process), the port as given, said once the
            # wait lasts (half a second)
            waiting, error = busy.err.splitlines()
            assert waiting.startswith(f"sim:{node.name} is in use by ") and "(pid " in waiting
            assert "waiting up to 1 s" in waiting
            assert busy.code == 3 and error.startswith(f"error: sim:{node.name} is in use by ")
            assert str(os.getpid()) in error and "Traceback" not in busy.err
        quick = time.monotonic()
        listed = ribat("boards", "--json")
        assert time.monotonic() - quick < 5  # boards does not wait for a held port
        (held,) = [
            b for b in map(json.loads, listed.out.splitlines()) if b["device"] == node.device
        ]
        assert held["port"] == f"sim:{node.name}" and f"pid {os.getpid()}" in held["note"]
        one_clean_line(ribat("status", "-p", node.device, env={"RIBAT_PORT_WAIT": "x"}), 6, "x")
    # a port let go of while a command waits for it is taken
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import serial, time; p = serial.Serial({node.device!r}, "
         "exclusive=True); print('held', flush=True); time.sleep(1.5)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    waited = ribat("status", "--port", node.device, env={"RIBAT_PORT_WAIT": "20"})
    holder.wait()
    assert waited.code == 0, waited.err


def test_port_disappears_mid_command(node: sim.Sim) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ribat", "telemetry", "record", "--port", f"sim:{node.name}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("received,seq,")  # the header: it is recording
    sim.stop(node.name)
    _, err = proc.communicate(timeout=30)
    one_clean_line(Run(proc.returncode, "", err), 4, f"sim:{node.name} disappeared")


def test_board_runs_micropython_but_not_ribat(board: sim.Sim) -> None:
    one_clean_line(
        ribat("status", "--port", f"sim:{board.name}"),
        5,
        "runs MicroPython 1.29.0 but not ribat",
        "ribat flash",
    )


def test_ribat_installed_but_not_starting(board: sim.Sim, tmp_path: Path) -> None:
    src = tmp_path / "fw"
    shutil.copytree(FIRMWARE, src)
    with open(src / "ribat" / "app.py", "a") as f:
        f.write("\ndef run(slot, fallback=False):\n    raise RuntimeError('broken on purpose')\n")
    run = ribat("flash", "--port", board.device, "--source", str(src))
    one_clean_line(run, 8, "does not answer")
    one_clean_line(
        ribat("status", "--port", board.device), 5, "does not start", "broken on purpose"
    )


def test_protocol_version_mismatch(board: sim.Sim, tmp_path: Path) -> None:
    src = tmp_path / "fw"
    shutil.copytree(FIRMWARE, src)
    codec_py = src / "ribat" / "codec.py"
    codec_py.write_text(codec_py.read_text().replace("\nVERSION = 1\n", "\nVERSION = 2\n"))
    one_clean_line(
        ribat("flash", "--port", board.device, "--source", str(src)),
        5,
        "host speaks ribat protocol 1, the node speaks 2",
        "pip install -U ribat",
    )
    one_clean_line(ribat("status", "--port", board.device), 5, "protocol 1", "speaks 2")
    one_clean_line(
        ribat("config", "get", "node.name", "--port", board.device), 5, "version mismatch"
    )


def test_invalid_config_key_and_value_change_nothing(node: sim.Sim) -> None:
    port = f"sim:{node.name}"
    one_clean_line(
        ribat("config", "set", "node.nmae", "x", "--port", port),
        6,
        "unknown configuration key 'node.nmae'",
        "did you mean node.name",
    )
    one_clean_line(
        ribat("config", "set", "node.name", "ok", "led.brightness", "300", "--port", port),
        6,
        "led.brightness must be a whole number from 0 to 100 (got 300)",
    )
    one_clean_line(
        ribat("config", "set", "telemetry.enabled", "maybe", "--port", port), 6, "true or false"
    )
    assert ribat("config", "get", "node.name", "--port", port).out.strip() == "ribat"
    usage = ribat("config", "set", "node.name", "--port", port)
    assert usage.code == 2 and "has no value" in usage.err


def test_timeout_with_no_answer(tmp_path: Path) -> None:
    master, slave = pty.openpty()  # a port with nothing behind it
    try:
        run = ribat("status", "--port", os.ttyname(slave))  # ribat() fails if it hangs
        one_clean_line(run, 4, "no answer", "MicroPython board")
    finally:
        os.close(master)
        os.close(slave)


def test_debug_shows_the_traceback(board: sim.Sim) -> None:
    run = ribat("--debug", "status", "--port", f"sim:{board.name}")
    assert run.code == 5 and "Traceback" in run.err and "NotRibat" in run.err
    run = ribat("status", "--port", f"sim:{board.name}", "--debug")  # after the command too
    assert run.code == 5 and "Traceback" in run.err and "NotRibat" in run.err


def test_help_lists_the_exit_statuses() -> None:
    run = ribat("--help")
    assert run.code == 0 and "Exit statuses" in run.out
    for line in ("13", "refused by the node's rules", "130", "interrupted"):
        assert line in run.out


def test_usage_errors_of_a_provisioned_node(new_sim: NewSim, tmp_path: Path) -> None:
    """Bad input a user can correct: exit 2, one line, nothing sent or changed."""
    (ma,) = make_cell(new_sim, tmp_path, [("MA", "rabat-1")])
    run = ribat("sync", "-p", ma.device, "-p", f"sim:{ma.name}")
    assert run.code == 2 and "give two nodes" in run.err
    run = ribat("post", "-p", ma.device, "--pin", PIN, "--kind", "notice", "--to", "MA")
    assert run.code == 2 and "--title or a body" in run.err
    run = ribat("pin", "change", "-p", ma.device, "--pin", PIN, "--new-pin", PIN)
    assert run.code == 2 and "the new PIN is the current one" in run.err
    assert ribat("unlock", "-p", ma.device, "--pin", PIN, stdin="lock\n").code == 0  # PIN kept
    # re-runnable: the roster already loaded is a success that says so
    cell = str(tmp_path / "cell")
    run = ribat("cell", "load", "-p", ma.device, "--cell", cell)
    assert run.code == 0 and "already loaded" in run.err


def test_exports_go_to_standard_output_with_a_dash(
    new_sim: NewSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (ma,) = make_cell(new_sim, tmp_path, [("MA", "rabat-1")])
    monkeypatch.chdir(tmp_path)
    done = subprocess.run([sys.executable, "-m", "ribat", "audit", "export", "-p", ma.device, "-"],
                          capture_output=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and b'"ev": "provision"' in done.stdout
    done = subprocess.run([sys.executable, "-m", "ribat", "journal", "export", "-p", ma.device,
                           "-"], capture_output=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and done.stdout
    assert not (tmp_path / "-").exists()  # no file named "-"


def test_audit_verify_of_what_is_not_an_audit_export(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    run = ribat("audit", "verify", str(empty))
    assert run.code == 14 and "not an audit export" in run.err and "empty" in run.err
    text = tmp_path / "notes.txt"
    text.write_text("some notes\nnot json\n")
    run = ribat("audit", "verify", str(text))
    assert run.code == 14 and "not an audit export" in run.err


def test_post_limits_and_readable_audit_details(new_sim: NewSim, tmp_path: Path) -> None:
    (ma,) = make_cell(new_sim, tmp_path, [("MA", "rabat-1")])
    run = ribat("post", "-p", ma.device, "--pin", PIN, "--kind", "notice", "--to", "MA",
                "--title", "t", "--body", "x" * 5000)  # fmt: skip
    assert run.code == 2 and "the body takes at most 2000 bytes, this one 5000" in run.err
    assert "2,000" in ribat("post", "--help").out  # the limits, stated
    assert ribat("config", "set", "led.brightness", "40", "-p", ma.device).code == 0
    run = ribat("audit", "show", "-p", ma.device, "--event", "config")
    assert run.code == 0 and 'set={"led.brightness":40}' in run.out and "provision" not in run.out
    assert "{'" not in run.out and "None" not in run.out  # JSON, not Python's repr


def test_a_wire_to_a_stopped_board_says_so(new_sim: NewSim) -> None:
    a, b = new_sim(), new_sim()
    sim.stop(b.name)
    run = ribat("sim", "wire", a.name, b.name)
    assert run.code == 9 and "is not running" in run.err and "Errno" not in run.err


def test_a_restart_mid_command_is_told_at_once(node: sim.Sim) -> None:
    """A node that restarts (a power cut) while a command waits on it is noticed when it
    announces itself again: the command says so, rather than waiting out its timeout."""
    follow = subprocess.Popen(
        [sys.executable, "-m", "ribat", "list", "--follow", "-p", f"sim:{node.name}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(2.0)  # listing, then following
    sim.power_cycle(node.name)
    _, err = follow.communicate(timeout=30)
    one_clean_line(Run(follow.returncode, "", err), 4, f"sim:{node.name} restarted")


def test_an_import_cut_by_a_restart_says_the_node_restarted(
    new_sim: NewSim, tmp_path: Path
) -> None:
    """The power goes in the middle of an import's batch: the command says the node
    restarted, not what the import's end then meets ("no import under way")."""
    ma, fr = make_cell(new_sim, tmp_path, [("MA", "rabat-1"), ("FR", "paris-1")])
    for n in range(6):
        r = ribat("post", "-p", ma.device, "--pin", PIN, "--kind", "notice", "--to", "FR",
                  "--title", f"n{n}", "--body", "x" * 400)  # fmt: skip
        assert r.code == 0, r.err
    exported = tmp_path / "ma.rbj"
    assert ribat("journal", "export", "-p", ma.device, str(exported)).code == 0
    sim.control(fr.name, {"op": "cut_after_input_bytes", "n": 1500})  # inside the batch
    run = ribat("journal", "import", "-p", f"sim:{fr.name}", str(exported))
    one_clean_line(run, 4, f"sim:{fr.name} restarted")
