"""The virtual board looks like a board on a serial port to every tool: unmodified mpremote,
pyserial, ribat. Its flash and heap are the real board's sizes; its flash persists."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

from conftest import ribat, sim_status
from ribat import sim
from ribat.device import boards
from ribat.errors import SimError
from ribat.sim import interpreter


def mpremote(tty: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", tty, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def read_until(port: serial.Serial, marker: bytes, timeout: float = 10) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while marker not in got and time.monotonic() < deadline:
        got += port.read(max(1, port.in_waiting))
    assert marker in got, got
    return got


def test_start_list_stop_erase() -> None:
    run = ribat("sim", "start", "--name", "cell", "--board", "pico-w")
    assert run.code == 0, run.err
    tty = run.out.strip()
    assert tty.startswith("/dev/pts/") and "sim:cell" in run.err
    listed = ribat("sim", "list")
    assert "cell" in listed.out and "virtual-rp2-pico-w" in listed.out
    assert "running" in listed.out and tty in listed.out
    assert ribat("sim", "stop", "cell").code == 0
    assert "stopped" in ribat("sim", "list").out
    assert ribat("sim", "stop", "cell", "--erase").code == 0
    assert sim.find("cell") is None


def test_mpremote_unmodified_sees_a_board(board: sim.Sim, tmp_path: Path) -> None:
    (tmp_path / "tree" / "lib").mkdir(parents=True)
    (tmp_path / "tree" / "lib" / "hello.py").write_text("print('hello from flash')\n")
    mpremote(board.device, "fs", "cp", "-r", str(tmp_path / "tree" / "lib"), ":")
    assert "hello.py" in mpremote(board.device, "fs", "ls", ":lib")
    assert "hello from flash" in mpremote(board.device, "exec", "import hello")
    script = tmp_path / "run.py"
    script.write_text("import sys; print('ran on', sys.platform)\n")
    assert "ran on linux" in mpremote(board.device, "run", str(script))
    # mpremote soft-resets the board before each command: that worked, or nothing above had


def test_flash_is_littlefs_of_the_boards_size_and_persists(new_sim) -> None:
    s = new_sim("esp32")
    facts = boards.load("virtual-esp32-generic")
    out = mpremote(s.device, "exec", "import os; st = os.statvfs('/'); print(st[0] * st[2])")
    assert int(out) == facts.fs_bytes == 2097152
    mpremote(s.device, "exec", "f = open('keep.txt', 'w'); f.write('kept'); f.close()")
    sim.power_cycle(s.name)
    assert mpremote(s.device, "exec", "print(open('keep.txt').read())").strip() == "kept"
    sim.stop(s.name)
    again = sim.start(s.name, "esp32")
    assert mpremote(again.device, "exec", "print(open('keep.txt').read())").strip() == "kept"
    assert sim_status(s.name)["formats"] == 0  # the flash mounted: no reformat on restart


@pytest.mark.parametrize("short, name", sorted(boards.virtual_names().items()))
def test_heap_is_the_real_boards(new_sim, short: str, name: str) -> None:
    """What code on the board has is the real board's heap: the interpreter's is that
    plus what the ROM's own modules hold (C in a board's flash, objects here)."""
    s = new_sim(short)
    probe = "import gc; gc.collect(); print(gc.mem_free(), gc.mem_alloc())"
    out = mpremote(s.device, "exec", probe)
    free, used = map(int, out.split())
    heap = boards.load(name).heap_bytes
    assert heap < free + used <= heap + interpreter.rom_heap_bytes()  # (less the GC's tables)
    assert 4096 < interpreter.rom_heap_bytes() < 16384
    assert heap * 0.95 < free <= heap


def test_ctrl_d_soft_resets_and_runs_main_py(board: sim.Sim) -> None:
    mpremote(
        board.device, "exec", "f = open('main.py', 'w'); f.write('print(\"main ran\")'); f.close()"
    )
    with serial.Serial(board.device, timeout=0.2) as port:
        port.write(b"\x03\x02")  # interrupt whatever runs; the friendly REPL
        read_until(port, b">>> ")
        port.write(b"\x04")
        got = read_until(port, b"main ran")
    assert b"MPY: soft reboot\r\n" in got
    assert sim_status(board.name)["soft_resets"] >= 1


def test_ctrl_c_interrupts_a_busy_main_py(board: sim.Sim) -> None:
    busy = "n = 0\nwhile True:\n    n += 1\n"
    mpremote(board.device, "exec", f"f = open('main.py', 'w'); f.write({busy!r}); f.close()")
    sim.power_cycle(board.name)  # boots into main.py, which never returns
    time.sleep(0.5)
    out = mpremote(board.device, "resume", "exec", "print('interrupted at', n)")
    assert int(out.split()[-1]) > 0


def test_mpremote_reset_is_a_hard_reset(board: sim.Sim) -> None:
    assert sim_status(board.name)["reset_cause"] == "power_on"
    mpremote(board.device, "reset")  # it resets 100 ms after mpremote has gone: wait for it
    deadline = time.monotonic() + 10
    while sim_status(board.name)["reset_cause"] != "hard" and time.monotonic() < deadline:
        time.sleep(0.05)
    out = mpremote(board.device, "exec", "import machine; print(machine.reset_cause())")
    assert int(out) == 2  # HARD_RESET


def test_output_is_dropped_while_no_host_has_the_port_open(board: sim.Sim) -> None:
    chatty = "import time\nwhile True:\n    print('tick')\n    time.sleep_ms(5)\n"
    mpremote(board.device, "exec", f"f = open('main.py', 'w'); f.write({chatty!r}); f.close()")
    sim.power_cycle(board.name)
    time.sleep(0.5)
    assert sim_status(board.name)["dropped_out"] > 0
    with serial.Serial(board.device, timeout=0.5) as port:
        assert b"tick\r\n" in read_until(port, b"tick\r\n")  # and cooked to \r\n


def test_names_and_boards_are_checked(new_sim) -> None:
    with pytest.raises(SimError, match="invalid virtual board name"):
        sim.start("../escape")
    s = new_sim("pico", "twice")
    with pytest.raises(SimError, match="already running"):
        sim.start("twice")
    sim.stop(s.name)
    with pytest.raises(SimError, match="erase it first"):
        sim.start("twice", "esp32")
    with pytest.raises(SimError, match="real board"):
        sim.start("real", "rp2-pico")


def test_sim_reset_command_power_cycles(board: sim.Sim) -> None:
    before = sim_status(board.name)["power_cycles"]
    run = ribat("sim", "reset", board.name)
    assert run.code == 0 and "power-cycled" in run.err
    assert sim_status(board.name)["power_cycles"] == before + 1
    assert ribat("sim", "reset", "nobody").code == 9


def test_a_board_has_one_filesystem_its_flash(board: sim.Sim) -> None:
    """The unix port's view of the host's files (VfsPosix at /) is gone before the flash
    mounts: board code reaches no file of the host, a cell authority's key among them."""
    out = mpremote(board.device, "exec", "import vfs, os; print(vfs.mount(), os.listdir('/'))")
    line = out.strip().splitlines()[-1]
    assert line.startswith("[(<VfsLfs2>, '/')] "), line
    assert "etc" not in line and "proc" not in line
    out = mpremote(board.device, "exec", "import vfs, os; vfs.umount('/'); print(os.listdir('/'))")
    assert out.strip().splitlines()[-1] == "[]"  # nothing under it, not the host's root
    mpremote(board.device, "reset")  # (its flash mounted again)


def test_stderr_shares_the_port_and_crlf_scripts_keep_their_line_numbers(
    board: sim.Sim, tmp_path: Path
) -> None:
    """As on a Pico: what a script prints to stderr comes on the serial link, in order with
    stdout; a script with CRLF line endings has the line numbers its editor shows."""
    script = tmp_path / "crlf.py"
    script.write_bytes(b"import sys\r\nprint('first', file=sys.stderr)\r\nprint('second')\r\n"
                       b"raise ValueError('at line 4')\r\n")  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "mpremote", "connect", board.device, "run",
                           str(script)], capture_output=True, text=True, timeout=60)  # fmt: skip
    out = done.stdout + done.stderr
    assert out.index("first") < out.index("second") < out.index("Traceback"), out
    assert "line 4, in <module>" in out, out
