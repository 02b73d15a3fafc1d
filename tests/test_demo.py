"""`make demo`'s script, run as a user would, against the code in this checkout."""

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def test_demo_runs_every_step(tmp_path: Path) -> None:
    ribat = Path(sys.executable).parent / "ribat"
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "RIBAT": str(ribat)},
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    for step in range(1, 13):
        assert f"{step}/12" in out
    assert "runs from slot a" in out  # deployed
    assert "telemetry frame" in out  # watched
    assert "provisioned rabat-1 (MA)" in out and "roster version 1 loaded" in out
    assert "rabat-1 locked" in out  # the session ended
    assert "power-cycled demo" in out
    assert "audit chain verifies" in out
    assert "rabat-1 (MA)" in out and "nothing sent" in out  # both survived the power cycle
    assert "stopped demo" in out
    assert "2 entries: 2 stored" in out  # moved by export and import
    assert "Shared with the French service" in out  # read where released
    assert "not released to FR" in out
    assert "Only Moroccan eyes" not in done.stdout.split("11/12")[1]  # sealed to Paris
    # the commands shown can be copied as they are: their quotes kept
    assert "--title 'Joint watch list, 31 Dec'" in out
    # the demo cell's private key does not outlive the demo, and it says so
    cell = next(
        line for line in out.splitlines() if "cell authority" in line and " was in " in line
    )
    folder = cell.split(" was in ")[1].split(" and is deleted")[0]
    assert folder.startswith("/") and not os.path.exists(folder)
