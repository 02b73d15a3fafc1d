"""`ribat install`: MicroPython onto a bare board through its family's tools, tested up to
the point a real board is needed: the image checked, the UF2 copied onto a BOOTSEL drive
(a folder that looks like one), the esptool commands it would run, the errors."""

import os
import struct
import subprocess
import sys
from pathlib import Path

from conftest import ribat
from ribat.deploy import install


def uf2_image(folder: Path, family: int = 0xE48BFF56, blocks: int = 64) -> Path:
    """A UF2 image as the UF2 spec lays it out (512-byte blocks: magics, flags, address,
    256 payload bytes, block number and count, family), for the RP2040 by default."""
    out = b""
    for n in range(blocks):
        head = struct.pack("<8I", 0x0A324655, 0x9E5D5157, 0x2000, 0x10000000 + 256 * n, 256,
                           n, blocks, family)  # fmt: skip
        out += head + bytes([n & 0xFF]) * 256 + bytes(476 - 256) + struct.pack("<I", 0x0AB16F30)
    image = folder / "firmware.uf2"
    image.write_bytes(out)
    return image


def bootsel_drive(tmp_path: Path) -> Path:
    drive = tmp_path / "RPI-RP2"
    drive.mkdir()
    (drive / "INFO_UF2.TXT").write_text(
        "UF2 Bootloader v3.0\nModel: Raspberry Pi RP2\nBoard-ID: RPI-RP2\n"
    )
    return drive


def no_picotool() -> dict:
    return {"PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin"}


def test_a_pico_in_bootsel_mode_gets_the_uf2(tmp_path: Path) -> None:
    drive = bootsel_drive(tmp_path)
    uf2 = uf2_image(tmp_path)
    r = ribat("install", "--board", "pico", "--firmware", str(uf2), "--drive", str(drive),
              "--dry-run")  # fmt: skip
    assert r.code == 0 and f"copy {uf2} to {drive / uf2.name}" in r.out
    assert not (drive / uf2.name).exists()  # a dry run copies nothing
    r = ribat("install", "--board", "pico", "--firmware", str(uf2), "--drive", str(drive))
    assert r.code == 0, r.err
    assert (drive / uf2.name).read_bytes() == uf2.read_bytes()
    assert "the board restarts into it" in r.err


def test_the_pinned_release_is_what_it_would_download(tmp_path: Path) -> None:
    drive = bootsel_drive(tmp_path)
    r = ribat("install", "--board", "pico-w", "--drive", str(drive), "--dry-run")
    assert r.code == 0, r.err
    url = f"https://micropython.org/resources/firmware/RPI_PICO_W-20241129-v{install.MICROPYTHON}.uf2"
    assert f"download {url}" in r.out


def test_no_board_in_bootsel_mode_says_how_to_get_one(tmp_path: Path) -> None:
    uf2 = uf2_image(tmp_path)
    r = ribat("install", "--board", "pico", "--firmware", str(uf2), env=no_picotool())
    assert r.code == 3 and "hold its BOOTSEL button" in r.err and "Traceback" not in r.err
    not_a_drive = tmp_path / "somewhere"
    not_a_drive.mkdir()
    r = ribat("install", "--board", "pico", "--firmware", str(uf2), "--drive", str(not_a_drive))
    assert r.code == 3 and "is not an RP2040's BOOTSEL drive" in r.err


def test_an_image_for_another_board_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    drive = bootsel_drive(tmp_path)
    uf2 = uf2_image(tmp_path)
    text = tmp_path / "notes.uf2"
    text.write_text("not an image\n" * 100)
    r = ribat("install", "--board", "pico", "--firmware", str(text), "--drive", str(drive))
    assert r.code == 8 and "is not a UF2 image" in r.err
    (tmp_path / "samd").mkdir()
    other = uf2_image(tmp_path / "samd", family=0x68ED2B88)  # the SAMD21's family
    r = ribat("install", "--board", "pico", "--firmware", str(other), "--drive", str(drive))
    assert r.code == 8 and "for another chip" in r.err
    r = ribat("install", "--board", "esp32", "--port", "/dev/ttyUSB9", "--firmware", str(uf2))
    assert r.code == 8 and "not an ESP32 firmware image" in r.err
    assert list(drive.iterdir()) == [drive / "INFO_UF2.TXT"]


def test_an_esp32_is_flashed_by_esptool(tmp_path: Path) -> None:
    image = tmp_path / "ESP32_GENERIC.bin"
    image.write_bytes(b"\xe9" + bytes(4095))
    r = ribat("install", "--board", "esp32", "--port", "/dev/ttyUSB9", "--firmware", str(image),
              "--dry-run")  # fmt: skip
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].endswith("-m esptool --chip esp32 --port /dev/ttyUSB9 erase_flash")
    assert lines[1].endswith(f"write_flash -z 0x1000 {image}")
    r = ribat("install", "--board", "esp32", "--firmware", str(image))
    assert r.code == 3 and "--port" in r.err
    # the tool it delegates to is there, at the version pinned
    done = subprocess.run([sys.executable, "-m", "esptool", "version"], capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0 and "v4." in done.stdout
    # and a board that is not there is esptool's to report, and ours to stop on
    r = ribat("install", "--board", "esp32", "--port", str(tmp_path / "ttyNONE"),
              "--firmware", str(image), timeout=120)  # fmt: skip
    assert r.code == 8 and "esptool failed" in r.err


def test_an_esp32_with_psram_gets_micropythons_spiram_image() -> None:
    r = ribat("install", "--board", "esp32-spiram", "--port", "/dev/ttyUSB9", "--dry-run")
    assert r.code == 0, r.err
    assert "ESP32_GENERIC-SPIRAM-20241129-v" in r.out and "--chip esp32" in r.out
    r = ribat("install", "--board", "esp32s3-spiram", "--port", "/dev/ttyACM0", "--dry-run")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert "--chip esp32s3 --port /dev/ttyACM0 erase_flash" in lines[-2]
    assert lines[-1].endswith("write_flash -z 0 " + str(Path(lines[-1].split()[-1])))
    assert "ESP32_GENERIC_S3-SPIRAM_OCT-20241129-v" in lines[-1]
