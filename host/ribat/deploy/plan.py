"""Planning a deploy, with no I/O: what the probe found on the board (BoardReport), which
board definition it is, whether the flash has room, and which files cross the link, are
copied on the board or stay (Plan)."""

from dataclasses import dataclass, field

from ribat import footprint
from ribat.deploy.image import PACK, Image, MpyFormat, sha256
from ribat.device import boards
from ribat.errors import DeployError, Unsupported


@dataclass
class BoardReport:
    """What the probe found on the board."""

    version: tuple[int, ...]
    mpy: MpyFormat
    platform: str
    machine: str
    sim_board: str | None
    fs_free: int
    active: str | None
    slots: dict[str, dict[str, str] | None]
    blocks: dict[str, int | None]  # the blocks each slot's files take (ribat.footprint)
    loader: str | None
    # the active slot's pack, which a new one reuses: file -> [offset, size, sha256]
    pack: dict[str, list] | None

    @classmethod
    def from_probe(cls, d: dict) -> "BoardReport":
        return cls(
            version=tuple(d["version"]),
            mpy=MpyFormat.from_sys(d["mpy"]),
            platform=d["platform"],
            machine=d["machine"],
            sim_board=d["sim_board"],
            fs_free=d["fs_free"],
            active=d["active"] if d["active"] in ("a", "b") else None,
            slots=d["slots"],
            blocks=d["blocks"],
            loader=d["loader"],
            pack=d["pack"],
        )

    @property
    def micropython(self) -> str:
        return ".".join(str(x) for x in self.version)


@dataclass
class Plan:
    slot: str  # the slot written, or the active one when nothing changes
    transfer: list[str] = field(default_factory=list)  # sent over the link
    copy: list[str] = field(default_factory=list)  # copied on the board from the active slot
    keep: list[str] = field(default_factory=list)  # already right in the target slot
    remove: list[str] = field(default_factory=list)  # stale files in the target slot
    loader: bool = False  # main.py changes
    switch: bool = False  # /fw/active changes
    # A pack sent is built on the board: these of its files are copied from the active
    # slot's pack (name -> offset, size there), only the others cross the link.
    reuse: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def up_to_date(self) -> bool:
        return not (self.transfer or self.copy or self.remove or self.loader or self.switch)


# The least heap a node runs in: an unlocked session holds some 135 KB on the virtual
# boards (64-bit objects; docs/security.md), the Pico W's 160 KB is the tightest that works.
NODE_HEAP_MIN = 150 * 1024


def check_board(report: BoardReport, board_name: str | None, port: str) -> boards.Board:
    """The board definition to deploy for, once we know the board can run ribat; port:
    the board's port as the user named it, for messages."""
    board = boards.load(board_name) if board_name else None
    found = boards.identify(report.platform, report.machine, report.sim_board)
    if board is None:
        if found is None:
            raise Unsupported(
                f"{port} runs MicroPython {report.micropython} on {report.machine!r} "
                f"({report.platform}), a board ribat has no definition for: name one with "
                f"--board ({', '.join(boards.names())}), or add yours (RIBAT_BOARDS_PATH)"
            )
        board = found
    expected = "linux" if board.virtual else board.port
    if report.platform != expected:
        raise Unsupported(
            f"--board {board.name} is a {expected} board but {port} reports {report.platform}: "
            "choose the board that is there"
        )
    if board.heap_bytes < NODE_HEAP_MIN:
        raise Unsupported(
            f"{port} is {board.description}: {board.heap_bytes // 1024} KB of heap, where a "
            f"ribat node needs {NODE_HEAP_MIN // 1024} KB or more (an operator's session "
            "holds its keys and the journal's code): use a Raspberry Pi Pico or Pico W, or "
            "an ESP32 with PSRAM on MicroPython's SPIRAM firmware (a WROVER: `ribat "
            "install --board esp32-spiram`; an ESP32-S3 N8R8: `--board esp32s3-spiram`)"
        )
    if report.version < board.micropython_min:
        need = ".".join(str(x) for x in board.micropython_min)
        raise Unsupported(
            f"{port} runs MicroPython {report.micropython}; ribat needs {need} or later on "
            f"{board.name}: update MicroPython on the board first (see the README, "
            "'With a real board')"
        )
    return board


def check_space(report: BoardReport, plan: Plan, image: Image, board: boards.Board) -> None:
    """Refuse, before writing anything, a slot the flash has no room for: each file in
    whole blocks (ribat.footprint), each new folder a metadata pair, less what the slot
    holds now but the files it keeps (the old versions of the files written are removed
    first), plus main.py while the new one is written beside it, and a block for metadata
    to grow. The node keeps that much free whatever its journal."""
    block = board.block_size
    blocks = [footprint.file_blocks(len(image.files[p]), block) for p in plan.transfer + plan.copy]
    if plan.loader:
        blocks.append(2 * footprint.file_blocks(len(image.loader), block))  # old and new
    need = sum(blocks) + 1
    held = report.blocks.get(plan.slot)
    if held is None:  # the slot's folders are new too
        need += footprint.DIR_BLOCKS * len({p.rpartition("/")[0] for p in image.files})
    else:  # what the slot holds, but the files kept (the image's own, byte for byte), goes
        need -= held - sum(footprint.file_blocks(len(image.files[p]), block) for p in plan.keep)
    need *= block
    if need > report.fs_free:
        raise DeployError(
            f"not enough flash for the new firmware: it needs about {need // 1024} KB, "
            f"{report.fs_free // 1024} KB are free: remove files of your own from the board "
            "(mpremote fs ls, fs rm); nothing was written"
        )


def make_plan(report: BoardReport, image: Image) -> Plan:
    want = image.hashes
    active = report.active
    active_files = report.slots.get(active) if active else None
    loader_changes = report.loader != sha256(image.loader)
    if active and active_files == want:
        return Plan(slot=active, keep=sorted(want), loader=loader_changes)
    target = "b" if active == "a" else "a"
    have = report.slots.get(target) or {}
    plan = Plan(slot=target, loader=loader_changes, switch=True)
    for path, digest in sorted(want.items()):
        if path == "manifest.json":
            plan.transfer.append(path)  # always written last, whatever is there
        elif have.get(path) == digest:
            plan.keep.append(path)
        elif active_files and active_files.get(path) == digest:
            plan.copy.append(path)
        else:
            plan.transfer.append(path)
    plan.remove = sorted(p for p in have if p not in want)
    held = report.pack or {}
    if PACK in plan.transfer:
        for name, data in image.members.items():
            there = held.get(name)
            if there is not None and there[2] == sha256(data):
                plan.reuse[name] = (there[0], there[1])
    return plan


def other_slot(slot: str) -> str:
    return "b" if slot == "a" else "a"
