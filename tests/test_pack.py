"""The firmware pack: the host builds it (ribat.deploy.image.pack), the loader (firmware/main.py)
mounts it under MicroPython, and every file reads back byte for byte; modules import from
it; nothing can be written to it; a damaged pack makes the node start its other slot."""

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIRMWARE, micropython
from ribat import deploy, sim
from ribat.deploy import image
from ribat.device import boards
from ribat.device.client import NodeClient
from ribat.device.repl import definitions
from ribat.device.transport import Port
from ribat.errors import DeployError

# The loader's pack reader, without the rest of the loader (which starts the node).
LOADER = "import sys, vfs\n" + definitions(FIRMWARE / "main.py", ["Pack", "MOUNT"]) + "\n"


def _image() -> image.Image:
    return image.build(boards.load("virtual-rp2-pico"), image.MpyFormat(6, 3), None, "")


def test_the_host_packs_and_unpacks_the_same_files() -> None:
    files = {"ribat/a.mpy": b"\x00" * 5, "hal.mpy": b"h", "board.json": b"{}", "e": b""}
    assert image.unpack(image.pack(files)) == files
    with pytest.raises(DeployError, match="not a ribat firmware pack"):
        image.unpack(b"PK\x03\x04" + bytes(8))


def test_the_loader_reads_every_file_of_the_pack_under_micropython(tmp_path: Path) -> None:
    pack = _image().files[image.PACK]
    (tmp_path / image.PACK).write_bytes(pack)
    want = {name: hashlib.sha256(data).hexdigest() for name, data in image.unpack(pack).items()}
    out = micropython(
        LOADER
        + f"""
import binascii, hashlib, os
vfs.mount(Pack({str(tmp_path / image.PACK)!r}), MOUNT)
sys.path.insert(0, MOUNT)
buf = bytearray(100)  # reads in pieces, as the .mpy reader does, as far as stat says
for name in sorted(os.listdir(MOUNT)):
    h = hashlib.sha256()
    left = os.stat(MOUNT + "/" + name)[6]
    with open(MOUNT + "/" + name, "rb") as f:
        while left:
            n = f.readinto(memoryview(buf)[: min(left, len(buf))])
            h.update(buf[:n])
            left -= n
    print(name, binascii.hexlify(h.digest()).decode(), os.stat(MOUNT + "/" + name)[6])
assert os.stat(MOUNT + "/ribat")[0] & 0x4000  # a folder
for path, mode in ((MOUNT + "/nothing.mpy", "rb"), (MOUNT + "/hal.mpy", "wb")):
    try:
        open(path, mode)
        print("opened", path, mode)
    except OSError as e:
        print("refused", path, mode, e.errno)
from ribat import codec, entry  # modules load from the pack
assert codec.VERSION == 1 and entry.SIGNED == 149
print("OK")
""",
        path=(),
    )
    lines = out.splitlines()
    got = {line.split()[0]: line.split()[1] for line in lines if line.split()[0] in want}
    assert got == want
    sizes = {line.split()[0]: int(line.split()[2]) for line in lines if line.split()[0] in want}
    assert sizes == {name: len(data) for name, data in image.unpack(pack).items()}
    assert "refused /firmware/nothing.mpy rb 2" in out
    assert "refused /firmware/hal.mpy wb 30" in out  # EROFS


def test_a_damaged_pack_starts_the_other_slot(node: sim.Sim, tmp_path: Path) -> None:
    src = tmp_path / "fw"
    shutil.copytree(FIRMWARE, src, ignore=shutil.ignore_patterns("__pycache__", "mypy.ini"))
    with open(src / "ribat" / "link.py", "a") as f:
        f.write("\nCHANGED = 1\n")
    old = deploy.deploy(node.device).manifest["build"]  # slot a
    assert deploy.deploy(node.device, source=src).plan.slot == "b"
    # a bit of the new pack's index flipped on flash, the manifest still there
    subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", node.device, "exec",
         "f = open('/fw/b/firmware.pack', 'r+b'); f.seek(0); f.write(b'XXXX'); f.close()"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    sim.power_cycle(node.name)
    with NodeClient(Port(node.device)) as client:
        info = client.wait_ready(timeout=60)
    assert info.slot == "a" and info.fallback and info.build == old
