"""Where virtual boards keep their state, and how to reach a running one.

    $RIBAT_HOME/sims/<name>/
        board       the board it emulates (fixed when the virtual board is first made)
        flash.img   its flash: a littlefs image that outlives resets and stops
        panel       faults and button shared with the interpreter (see boards/virtual/rom)
        sim.json    while running: its serial device and supervisor pid
        log         what the supervisor did

RIBAT_HOME defaults to $XDG_STATE_HOME/ribat (~/.local/state/ribat).
"""

import json
import os
from pathlib import Path


def home() -> Path:
    if "RIBAT_HOME" in os.environ:
        return Path(os.environ["RIBAT_HOME"])
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(state) / "ribat"


def sims_root() -> Path:
    return home() / "sims"


def control_address(sim_dir: Path) -> str:
    """An abstract Unix socket name: no file to go stale, no limit on the folder's length."""
    import hashlib

    digest = hashlib.sha256(str(sim_dir.resolve()).encode()).hexdigest()[:24]
    return "\0ribat-sim-" + digest


def write_state(sim_dir: Path, state: dict) -> None:
    tmp = sim_dir / "sim.json.new"
    tmp.write_text(json.dumps(state))
    os.replace(tmp, sim_dir / "sim.json")


def read_state(sim_dir: Path) -> dict | None:
    try:
        return json.loads((sim_dir / "sim.json").read_text())
    except (OSError, ValueError):
        return None


def clear_state(sim_dir: Path) -> None:
    try:
        (sim_dir / "sim.json").unlink()
    except FileNotFoundError:
        pass
