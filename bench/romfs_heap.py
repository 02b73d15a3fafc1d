"""What the firmware's modules cost in heap, imported as the node imports them now (from
its pack, read into RAM) and as they would be from a ROMFS (MicroPython 1.25+: bytecode
run in place from memory-mapped flash), the way out named in the README for the boards
whose heap is short (the Pico W's wires, the ESP32):

    .venv/bin/python bench/romfs_heap.py [BOARD]

One MicroPython (the virtual boards' interpreter, 64-bit objects) imports every module
of the firmware built for BOARD (default virtual-rp2-pico-w), once from the pack mounted
as the loader mounts it and once from a ROMFS image made by mpremote. The interpreter has
no memory-mapped flash, so the image is read into the heap first and its size taken off:
what is left is what a board whose flash is mapped would spend. Printed, never asserted.
"""

import contextlib
import io
import subprocess
import sys
import tempfile
from pathlib import Path

from ribat.deploy.image import LOADER, PACK, MpyFormat, build
from ribat.device import boards
from ribat.device.repl import definitions

_PROBE = """
import gc, sys, vfs
sys.path.append(%(rom)r)  # the virtual board's machine and vboard, which hal imports
kind = sys.argv[1]
gc.collect()
base = gc.mem_alloc()
if kind == "romfs":
    with open(%(image)r, "rb") as f:
        image = f.read()
    held = len(image)
    vfs.mount(vfs.VfsRom(image), "/firmware")
else:
    exec(%(pack_class)r)  # the loader's Pack, and what it uses
    vfs.mount(Pack(%(pack)r), "/firmware")
    held = 0
sys.path.insert(0, "/firmware")
for name in %(modules)r:
    __import__(name)
gc.collect()
print(gc.mem_alloc() - base - held, held)
"""


def pack_class() -> str:
    """The source of the loader's class Pack (firmware/main.py) and what it uses: the
    loader itself would start the node."""
    return definitions(boards.firmware_dir() / LOADER, ["Pack"])


def measure(kind: str, probe: Path) -> tuple[int, int]:
    out = subprocess.run(
        [sys.executable, "-m", "micropython_unix", "-X", "heapsize=1M", str(probe), kind],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return int(out[0]), int(out[1])


def main() -> None:
    from mpremote.romfs import make_romfs

    board = boards.load(sys.argv[1] if len(sys.argv) > 1 else "virtual-rp2-pico-w")
    mpy = subprocess.run(
        [
            sys.executable,
            "-m",
            "micropython_unix",
            "-c",
            "import sys; print(sys.implementation._mpy)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    image = build(board, MpyFormat.from_sys(int(mpy)), rev="bench")
    modules = sorted(
        name[:-4].replace("/", ".")
        for name in image.members
        if name.startswith("ribat/") and name.endswith(".mpy") and "__init__" not in name
    )
    with tempfile.TemporaryDirectory(prefix="ribat-bench-romfs-") as tmp:
        root = Path(tmp)
        tree = root / "tree"
        for name, data in image.members.items():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            (tree / name).write_bytes(data)
        with contextlib.redirect_stdout(io.StringIO()):  # it draws the tree it packs
            romfs = make_romfs(str(tree), mpy_cross=False)
        (root / "firmware.romfs").write_bytes(romfs)
        (root / "firmware.pack").write_bytes(image.files[PACK])
        probe = root / "probe.py"
        probe.write_text(
            _PROBE
            % {
                "rom": str(boards.rom_dir()),
                "image": str(root / "firmware.romfs"),
                "pack": str(root / "firmware.pack"),
                "pack_class": pack_class(),
                "modules": modules,
            }
        )
        packed, _ = measure("pack", probe)
        mapped, size = measure("romfs", probe)
    print(f"{board.name}: every module of the firmware, heap in use after a collection")
    print(f"  from the pack (now):             {packed / 1024:6.1f} KB")
    print(
        f"  from a ROMFS (mapped flash):     {mapped / 1024:6.1f} KB  (image {size / 1024:.1f} KB)"
    )
    print(f"  saved: {(packed - mapped) / 1024:.1f} KB, {mapped / packed:.2f}x the pack's")


if __name__ == "__main__":
    main()
