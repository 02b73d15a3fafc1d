"""Board definitions: the facts in boards/<name>/board.json, and where the files are.

The firmware and board files ship inside the package (ribat/_data, see pyproject.toml); in a
source checkout they are read from the checkout itself.
"""

import json
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from ribat.errors import Unsupported

# MicroPython before this lacks what the firmware uses (asyncio as `asyncio`, .mpy v6.3).
MICROPYTHON_MIN = (1, 23, 0)


@cache
def data_root() -> Path:
    """The folder holding firmware/ and boards/."""
    package = Path(__file__).resolve().parents[1]  # ribat/
    packaged = package / "_data"  # in a wheel; in a checkout, the repository's own
    return packaged if packaged.is_dir() else package.parents[1]


def firmware_dir() -> Path:
    return data_root() / "firmware"


def rom_dir() -> Path:
    """The virtual board's ROM (boot code and virtual peripherals)."""
    return data_root() / "boards" / "virtual" / "rom"


def _search_path() -> list[Path]:
    """Board folders: RIBAT_BOARDS_PATH (for boards of your own) first, then ours."""
    extra = os.environ.get("RIBAT_BOARDS_PATH", "")
    return [Path(p) for p in extra.split(os.pathsep) if p] + [data_root() / "boards"]


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    port: str  # MicroPython port: sys.platform on the board ("rp2", "esp32", "linux"...)
    hal: str  # board folder holding the hardware layer (hal.py)
    fs_bytes: int
    block_size: int
    heap_bytes: int
    folder: Path
    machine: str = ""  # sys.implementation._machine of a real board
    emulates: str = ""  # for a virtual board: the real board whose facts it takes
    micropython_min: tuple[int, ...] = MICROPYTHON_MIN
    usb: tuple[tuple[int, int], ...] = ()
    link_bytes_per_s: int = 0  # the serial link's rate (0: unknown), as a virtual board paces it
    link_latency_ms: float = 0.0
    # the link holds what the node has not read yet (USB CDC's flow control): a host may
    # send a request before the last is answered; a UART's bytes past the port's few
    # hundred bytes of buffer are lost instead
    link_holds: bool = False
    wires: int = 0  # UARTs to peer nodes
    wire_bytes_per_s: int = 0  # their rate: 10 bits a byte (8N1)
    wire_rxbuf: int = 0  # what each wire's UART holds unread (0: no bound known)
    vault_blocks: int = 0  # the keys' own blocks outside littlefs (firmware/ribat/vault.py)
    littlefs_progsize: int = 32  # littlefs's program size as the port mounts it (its default)
    arch: str = ""  # mpy-cross's -march for its machine code ("host": the unix port, here)
    facts: dict = field(default_factory=dict, compare=False)  # all of board.json, for the node

    @property
    def virtual(self) -> bool:
        """A virtual board: MicroPython's unix port posing as the board it emulates."""
        return bool(self.emulates) and not self.engine

    @property
    def engine(self) -> str:
        """For a board run on an emulated chip (ribat.sim.chip): its emulator ("rp2040")."""
        return str(self.facts.get("engine", ""))

    def hal_file(self) -> Path:
        return _folder(self.hal) / "hal.py"


def _folder(name: str) -> Path:
    for root in _search_path():
        if (root / name / "board.json").is_file() or (root / name / "hal.py").is_file():
            return root / name
    raise Unsupported(f"unknown board {name!r}: known boards are {', '.join(names())}")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


@cache
def load(name: str) -> Board:
    folder = _folder(name)
    facts = json.loads((folder / "board.json").read_text())
    if "emulates" in facts:
        base = json.loads((_folder(facts["emulates"]) / "board.json").read_text())
        facts = {**base, **facts}
    facts.pop("sources", None)
    return Board(
        name=facts["name"],
        description=facts["description"],
        port=facts["port"],
        hal=facts["hal"],
        fs_bytes=facts["fs_bytes"],
        block_size=facts["block_size"],
        heap_bytes=facts["heap_bytes"],
        folder=folder,
        machine=facts.get("machine", "") if "emulates" not in facts else "",
        emulates=facts.get("emulates", ""),
        micropython_min=max(MICROPYTHON_MIN, _version(facts.get("micropython_min", "0"))),
        usb=tuple((vid, pid) for vid, pid in facts.get("usb", ())),
        link_bytes_per_s=facts.get("link", {}).get("bytes_per_s", 0),
        link_latency_ms=facts.get("link", {}).get("latency_ms", 0.0),
        link_holds=facts.get("link", {}).get("holds", False),
        wires=len(facts.get("wires", ())),
        wire_bytes_per_s=min((w["baud"] for w in facts.get("wires", ())), default=0) // 10,
        wire_rxbuf=min((w["rxbuf"] for w in facts.get("wires", ())), default=0),
        vault_blocks=facts.get("vault_blocks", 0),
        littlefs_progsize=facts.get("littlefs_progsize", 32),
        # a virtual board is this host's unix port, whatever chip it poses as
        arch="host" if facts["port"] == "unix" else facts.get("arch", ""),
        facts=facts,
    )


def names() -> list[str]:
    found: set[str] = set()
    for root in _search_path():
        if root.is_dir():
            found.update(p.parent.name for p in root.glob("*/board.json"))
    return sorted(found)


def virtual_names() -> dict[str, str]:
    """Short names for `ribat sim start --board`: pico, pico-w, esp32, esp32-spiram,
    esp32s3-spiram."""
    return {
        "pico": "virtual-rp2-pico",
        "pico-w": "virtual-rp2-pico-w",
        "esp32": "virtual-esp32-generic",
        "esp32-spiram": "virtual-esp32-spiram",
        "esp32s3-spiram": "virtual-esp32s3-spiram",
    }


def emulated_names() -> dict[str, str]:
    """Short names for the boards whose real firmware runs on an emulated chip
    (ribat.sim.chip): `ribat sim start --board emulated-pico`."""
    return {"emulated-pico": "emulated-rp2-pico"}


def identify(platform: str, machine: str, sim_board: str | None) -> Board | None:
    """The board a running MicroPython reports itself as, if we know it."""
    if sim_board:
        return load(sim_board)
    for name in names():
        board = load(name)
        if board.port == platform and board.machine and machine.startswith(board.machine):
            return board
    return None
