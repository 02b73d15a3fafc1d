"""The virtual board's flash chip: a littlefs block device over an image file.

Behaves as NOR flash does: erase sets a block to 0xFF, programming writes bytes in place.
When the simulator arms a power cut, the last write before it is torn (half written) and
the board halts until the simulator kills it, as a real power loss would leave it.
"""

import vboard

_ERASED = b"\xff" * 256
_NONE = 0xFFFFFFFF


class Flash:
    """blocks blocks of the image, from block base on (littlefs's from 0; the vault's after)."""

    def __init__(self, path: str, block_size: int, blocks: int, base: int = 0) -> None:
        self.f = open(path, "r+b")
        self.block_size = block_size
        self.blocks = blocks
        self.base = base
        self.writes = vboard.panel_u32(4)

    def _torn(self) -> bool:
        """Count one write against an armed power cut; True if this write is the one cut."""
        self.writes += 1
        vboard.set_panel_u32(4, self.writes)
        left = vboard.panel_u32(0)
        if left == _NONE:
            return False
        vboard.set_panel_u32(0, _NONE if left == 0 else left - 1)
        return left == 0

    def _cut(self) -> None:
        self.f.flush()
        vboard.report("power-cut")
        vboard.halt()

    def readblocks(self, block: int, buf: bytearray, offset: int = 0) -> None:
        self.f.seek((self.base + block) * self.block_size + offset)
        self.f.readinto(buf)

    def writeblocks(self, block: int, buf: bytearray, offset: int = 0) -> None:
        torn = self._torn()
        self.f.seek((self.base + block) * self.block_size + offset)
        self.f.write(memoryview(buf)[: len(buf) // 2] if torn else buf)
        if torn:
            self._cut()

    def ioctl(self, op: int, arg: int) -> "int | None":
        if op == 4:  # block count
            return self.blocks
        if op == 5:  # block size
            return self.block_size
        if op == 6:  # erase
            torn = self._torn()
            self.f.seek((self.base + arg) * self.block_size)
            for _ in range(self.block_size // len(_ERASED) // (2 if torn else 1)):
                self.f.write(_ERASED)
            if torn:
                self._cut()
            return 0
        return 0
