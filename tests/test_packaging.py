"""The wheel carries the firmware and board files, and the installed package, away from
the source checkout, deploys them."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT


def test_installed_wheel_carries_and_deploys_the_firmware(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), str(ROOT)],
        check=True,
    )
    wheel = next(dist.glob("ribat-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "ribat/codec.py",  # the shared modules, as files (symlinks in the checkout)
        "ribat/schema.py",
        "ribat/digest.py",
        "ribat/deploy/onboard/probe.py",  # the scripts run at a board's raw REPL
        "ribat/device/onboard/installed.py",
        "ribat/_data/firmware/main.py",
        "ribat/_data/firmware/ribat/codec.py",
        "ribat/_data/firmware/ribat/app.py",
        "ribat/_data/boards/rp2-pico/board.json",
        "ribat/_data/boards/rp2-pico/hal.py",
        "ribat/_data/boards/virtual/rom/_boot.py",
        "ribat/_data/boards/virtual-esp32-generic/board.json",
    ):
        assert needed in names, needed
    with zipfile.ZipFile(wheel) as z:
        assert z.read("ribat/codec.py") == (ROOT / "firmware" / "ribat" / "codec.py").read_bytes()

    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
    )
    env = {**os.environ, "PYTHONPATH": str(site)}

    def installed(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )

    where = installed("-c", "from ribat.device import boards; print(boards.data_root())")
    assert where.stdout.strip() == str(site / "ribat" / "_data"), where.stderr
    assert installed("-m", "ribat", "sim", "start", "--name", "wheel").returncode == 0
    flashed = installed("-m", "ribat", "flash", "--port", "sim:wheel")
    assert flashed.returncode == 0 and "runs from slot a" in flashed.stderr, flashed.stderr
    assert "release" in flashed.stderr  # no git checkout behind an installed package
