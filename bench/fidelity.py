"""The virtual board held to MicroPython's own test suite, beside the same interpreter run
directly:

    .venv/bin/python bench/fidelity.py MICROPYTHON/tests [--board pico|pico-w|esp32]
    make fidelity TESTS=MICROPYTHON/tests

MicroPython's runner (`tests/run-tests.py`) runs its tests once on a virtual board, the
way its developers test a real one (`-t port:/dev/pts/N`: each test sent through the raw
REPL), and once on the unix binary the virtual board runs (`--target unix`); it prints
both counts and the tests that fail on the virtual board only. The tests are not on
PyPI: take them from MicroPython's sources, at the version of the binary (1.29):

    git clone --depth 1 https://github.com/micropython/micropython /tmp/micropython
    .venv/bin/python bench/fidelity.py /tmp/micropython/tests

Printed, never asserted (README: the virtual board, what differs from a board and why).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ribat import sim

HOW_TO_GET = (
    "MicroPython's tests are not on PyPI: git clone --depth 1 "
    "https://github.com/micropython/micropython /tmp/micropython, then give /tmp/micropython/tests"
)


def run_tests(tests: Path, args: list[str], env: dict[str, str]) -> tuple[int, int, set[str]]:
    """(passed, failed, the failed tests' names) of one run of run-tests.py."""
    done = subprocess.run(
        [sys.executable, "run-tests.py", *args],
        cwd=tests, capture_output=True, text=True, env={**os.environ, **env},
    )  # fmt: skip
    out = done.stdout + done.stderr
    passed = re.search(r"(\d+) tests passed", out)
    failed = re.search(r"(\d+) tests failed: (.*)", out)
    if passed is None:
        raise SystemExit(f"run-tests.py said nothing of its counts:\n{out[-2000:]}")
    names = set(failed.group(2).split()) if failed else set()
    return int(passed.group(1)), int(failed.group(1)) if failed else 0, names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tests", type=Path, help="MicroPython's tests/ folder")
    parser.add_argument("--board", default="pico")
    a = parser.parse_args()
    if not (a.tests / "run-tests.py").is_file():
        raise SystemExit(f"no run-tests.py in {a.tests}: {HOW_TO_GET}")
    binary = shutil.which("micropython", path=str(Path(sys.executable).parent))
    if binary is None:
        raise SystemExit("no micropython console script beside this Python: make setup")
    os.environ["RIBAT_HOME"] = tempfile.mkdtemp(prefix="ribat-fidelity-")
    board = sim.start("fidelity", a.board)
    try:
        on_board = run_tests(a.tests, ["-t", f"port:{board.device}"], {})
    finally:
        sim.stop("fidelity", erase=True)
    direct = run_tests(a.tests, ["--target", "unix"], {"MICROPY_MICROPYTHON": binary})
    print(f"virtual {a.board}: {on_board[0]} passed, {on_board[1]} failed")
    print(f"the unix binary it runs, directly: {direct[0]} passed, {direct[1]} failed")
    only = sorted(on_board[2] - direct[2])
    print(f"failing on the virtual board only ({len(only)}): {' '.join(only) or '-'}")


if __name__ == "__main__":
    main()
