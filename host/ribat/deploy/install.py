"""MicroPython onto a bare board, through the tools its family uses (ribat does not
rewrite them): the RP2040's UF2 boot loader (copy the image to its BOOTSEL drive, or
`picotool load` where picotool is installed), `esptool` for the ESP32.

The MicroPython release ribat supports for each board is pinned here; --firmware gives a
local image instead (an offline site, a newer build). Each image is checked before it is
written: a UF2 for the RP2040 family, an ESP32 application image.
"""

import os
import shutil
import struct
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ribat.deploy.image import cache_dir
from ribat.errors import DeployError, NoBoard, Unsupported

MICROPYTHON = "1.24.1"  # the release ribat installs: .mpy v6.3, as mpy-cross writes
_DOWNLOADS = "https://micropython.org/resources/firmware/"
_UF2_MAGIC = (0x0A324655, 0x9E5D5157)
_RP2040_FAMILY = 0xE48BFF56
_UF2_FAMILY_FLAG = 0x00002000
_ESP_IMAGE_MAGIC = 0xE9
BOOTSEL_LABEL = "RPI-RP2"  # the drive an RP2040 in BOOTSEL mode shows


@dataclass(frozen=True)
class Family:
    kind: str  # "uf2" or "esptool"
    image: str  # the pinned release's file name on micropython.org
    esptool_chip: str = ""
    esptool_offset: str = ""


FAMILIES = {
    "pico": Family("uf2", f"RPI_PICO-20241129-v{MICROPYTHON}.uf2"),
    "pico-w": Family("uf2", f"RPI_PICO_W-20241129-v{MICROPYTHON}.uf2"),
    # MicroPython's instructions for its ESP32 images: erase, then write at 0x1000
    "esp32": Family("esptool", f"ESP32_GENERIC-20241129-v{MICROPYTHON}.bin", "esp32", "0x1000"),
    "esp32-spiram": Family(
        "esptool", f"ESP32_GENERIC-SPIRAM-20241129-v{MICROPYTHON}.bin", "esp32", "0x1000"
    ),
    # an S3's image holds its boot loader at 0, where the S3's ROM looks for it
    "esp32s3-spiram": Family(
        "esptool", f"ESP32_GENERIC_S3-SPIRAM_OCT-20241129-v{MICROPYTHON}.bin", "esp32s3", "0"
    ),
}


@dataclass
class Plan:
    """What an install does: the image, then either a copy or the commands to run."""

    board: str
    image: Path  # local; for a pinned release, where it is (or will be) downloaded
    url: str | None  # the pinned release's address, None for --firmware
    copy_to: Path | None = None  # a BOOTSEL drive
    commands: list[list[str]] = field(default_factory=list)

    def describe(self) -> list[str]:
        lines = []
        if self.url is not None and not self.image.exists():
            lines.append(f"download {self.url} to {self.image}")
        if self.copy_to is not None:
            lines.append(f"copy {self.image} to {self.copy_to / self.image.name}")
        lines.extend(" ".join(c) for c in self.commands)
        return lines


def bootsel_drives() -> list[Path]:
    """Mounted drives of RP2040s in BOOTSEL mode: each holds INFO_UF2.TXT naming the boot
    loader's board, "RPI-RP2"."""
    found = []
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        mounts = []
    points = [Path(m.split()[1].replace("\\040", " ")) for m in mounts if len(m.split()) > 1]
    user = os.environ.get("USER", "")
    points += [
        Path(p) / BOOTSEL_LABEL for p in (f"/media/{user}", f"/run/media/{user}", "/Volumes")
    ]
    for point in points:
        if is_bootsel_drive(point) and point not in found:
            found.append(point)
    return found


def is_bootsel_drive(path: Path) -> bool:
    try:
        info = (path / "INFO_UF2.TXT").read_text(errors="replace")
    except OSError:
        return False
    return "RPI-RP2" in info or "RP2040" in info


def plan(board: str, port: str | None, firmware: Path | None, drive: Path | None) -> Plan:
    family = FAMILIES.get(board)
    if family is None:
        raise Unsupported(
            f"no MicroPython install for {board!r}: give one of {', '.join(FAMILIES)}"
        )
    url = None
    if firmware is None:
        url = _DOWNLOADS + family.image
        image = cache_dir().parent / "micropython" / family.image
    else:
        image = firmware
        if not image.is_file():
            raise DeployError(f"no firmware image at {image}")
    done = Plan(board, image, url)
    if family.kind == "esptool":
        if port is None:
            raise NoBoard(
                "give the ESP32's serial port (--port): esptool talks to its boot loader there"
            )
        esptool = [sys.executable, "-m", "esptool", "--chip", family.esptool_chip, "--port", port]
        done.commands = [
            [*esptool, "erase_flash"],
            [*esptool, "--baud", "460800", "write_flash", "-z", family.esptool_offset, str(image)],
        ]
        return done
    if drive is not None:
        if not is_bootsel_drive(drive):
            raise NoBoard(
                f"{drive} is not an RP2040's BOOTSEL drive (no INFO_UF2.TXT naming RPI-RP2)"
            )
        done.copy_to = drive
        return done
    drives = bootsel_drives()
    if len(drives) > 1:
        raise NoBoard(
            f"{len(drives)} boards in BOOTSEL mode ({', '.join(map(str, drives))}): "
            "name one with --drive"
        )
    if drives:
        done.copy_to = drives[0]
    elif shutil.which("picotool"):
        done.commands = [["picotool", "load", "-x", str(image)]]
    else:
        raise NoBoard(
            "no RP2040 in BOOTSEL mode: hold its BOOTSEL button while you plug it in (a "
            f"drive named {BOOTSEL_LABEL} appears; name it with --drive if it is not "
            "mounted where ribat looks), or install picotool"
        )
    return done


def fetch(p: Plan, progress: Callable[[int, int], None]) -> None:
    """The pinned release downloaded once into the cache, then checked."""
    if p.url is not None and not p.image.exists():
        p.image.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.image.with_suffix(".part")
        try:
            with urllib.request.urlopen(p.url, timeout=30) as got, open(tmp, "wb") as out:
                total = int(got.headers.get("Content-Length") or 0)
                done = 0
                while chunk := got.read(65536):
                    out.write(chunk)
                    done += len(chunk)
                    progress(done, total)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise DeployError(
                f"could not download {p.url} ({e}): download it by hand and give it "
                "with --firmware"
            ) from None
        os.replace(tmp, p.image)
    check_image(p.board, p.image)


def check_image(board: str, image: Path) -> None:
    """DeployError unless image is what the board's boot loader takes."""
    head = image.read_bytes()[:512]
    if FAMILIES[board].kind == "uf2":
        if len(head) < 512:
            raise DeployError(f"{image} is not a UF2 image")
        magic0, magic1, flags, *_, family = struct.unpack_from("<8I", head)
        if (magic0, magic1) != _UF2_MAGIC:
            raise DeployError(f"{image} is not a UF2 image (for an RP2040: a .uf2 file)")
        if flags & _UF2_FAMILY_FLAG and family != _RP2040_FAMILY:
            raise DeployError(f"{image} is a UF2 image for another chip (family {family:#x})")
    elif not head or head[0] != _ESP_IMAGE_MAGIC:
        raise DeployError(f"{image} is not an ESP32 firmware image (a .bin from micropython.org)")


def copy_uf2(image: Path, drive: Path, progress: Callable[[int, int], None]) -> None:
    """The UF2 written onto the BOOTSEL drive; the board restarts into it once whole."""
    data = image.read_bytes()
    with open(drive / image.name, "wb") as out:
        for at in range(0, len(data), 32768):
            out.write(data[at : at + 32768])
            progress(min(at + 32768, len(data)), len(data))
        out.flush()
        os.fsync(out.fileno())
