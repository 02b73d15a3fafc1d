"""The emulated RP2040: a virtual Pico that runs MicroPython's real RP2040 firmware on an
emulated chip (rp2040js, from npm, under Node.js), where the other virtual boards run the
unix port. What it needs, and where it finds it:

    Node.js         `node` on the PATH (Debian: apt-get install nodejs npm)
    rp2040js        installed with npm on first use, into ribat's cache (install())
    the firmware    MicroPython's stock UF2 for the Pico (RPI_PICO, 1.23 or later) from
                    https://micropython.org/download/RPI_PICO/: $RIBAT_RP2_UF2
    the boot ROM    the RP2040's (B1, 16 KB), built from raspberrypi/pico-bootrom:
                    $RIBAT_RP2_BOOTROM
    or a folder holding both ($RIBAT_RP2_DIR; a checkout's ../shared/rp2 otherwise).

The chip is run by emulator.cjs (beside this file), its USB CDC bridged to a pseudo-terminal
by ribat.sim.chip.supervisor.
"""

import functools
import json
import os
import shutil
import subprocess
from pathlib import Path

from ribat.errors import SimError

HERE = Path(__file__).parent
EMULATOR = HERE / "emulator.cjs"
RP2040JS = json.loads((HERE / "package.json").read_text())["dependencies"]["rp2040js"]
INSTALL_TIMEOUT_S = 300.0


def node() -> str:
    found = shutil.which("node")
    if found is None:
        raise SimError(
            "the emulated RP2040 runs under Node.js, which is not installed: "
            "apt-get install nodejs npm (or see https://nodejs.org)"
        )
    return found


def modules_dir() -> Path:
    """Where rp2040js is installed: ribat's cache, one folder per version."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "ribat" / f"rp2040js-{RP2040JS}"


@functools.cache
def install() -> Path:
    """rp2040js, installed with npm if it is not yet; its node_modules folder."""
    folder = modules_dir()
    modules = folder / "node_modules"
    if (modules / "rp2040js" / "package.json").is_file():
        return modules
    npm = shutil.which("npm")
    if npm is None:
        raise SimError("installing rp2040js needs npm: apt-get install npm")
    tmp = folder.with_name(folder.name + f".{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy(HERE / "package.json", tmp / "package.json")
    done = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--omit=dev", "--loglevel=error"],
        cwd=tmp, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
    )  # fmt: skip
    if done.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        said = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SimError(f"npm could not install rp2040js {RP2040JS}: {said[0]}")
    try:
        os.replace(tmp, folder)  # whole or not at all; another process may have won
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return modules


def _checkout_images() -> Path:
    """Where this checkout's copies are, if it has them (the repository's ../shared/rp2)."""
    return HERE.parents[4] / "shared" / "rp2"


def firmware_files() -> tuple[Path, Path]:
    """(the UF2, the boot ROM); SimError saying where to get them if they are absent."""
    folder = Path(os.environ.get("RIBAT_RP2_DIR") or _checkout_images())
    uf2 = os.environ.get("RIBAT_RP2_UF2")
    rom = os.environ.get("RIBAT_RP2_BOOTROM")
    uf2_path = Path(uf2) if uf2 else next(iter(sorted(folder.glob("*.uf2"))), None)
    rom_path = Path(rom) if rom else next(iter(sorted(folder.glob("bootrom*.bin"))), None)
    if uf2_path is None or not uf2_path.is_file():
        raise SimError(
            "no MicroPython firmware for the emulated Pico: download the Pico's UF2 (RPI_PICO, "
            "1.23 or later) from https://micropython.org/download/RPI_PICO/ and set "
            "RIBAT_RP2_UF2 to it"
        )
    if rom_path is None or not rom_path.is_file() or rom_path.stat().st_size != 16384:
        raise SimError(
            "no RP2040 boot ROM for the emulated Pico (16 KB, revision B1, built from "
            "raspberrypi/pico-bootrom): set RIBAT_RP2_BOOTROM to it"
        )
    return uf2_path, rom_path


def available() -> str | None:
    """Why the emulated RP2040 cannot run here, or None if it can (rp2040js aside, which
    install() fetches)."""
    try:
        node()
        firmware_files()
    except SimError as e:
        return str(e)
    return None
