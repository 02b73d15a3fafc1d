"""The keys' own flash blocks, outside littlefs: the sealed keys and the PIN tries live
where a wipe erases them for good (littlefs frees a file's blocks without erasing them,
so a carved image gives back what a wipe deleted). The board layer gives the blocks
(Board.vault(): a block device of two blocks), on boards whose MicroPython leaves them
out of its filesystem; elsewhere the keyring keeps its files (ribat.keys).

The two blocks are written in turn: a record (magic, u32 counter, u16 length, a JSON
object, CRC-32; big-endian) goes into the block that does not hold the newest one, once
that block is erased, and the other is then erased; the newest whole record is the one
read. A power cut at any write leaves the record before it, or the new one, whole.
"""

import binascii
import json
import struct

from micropython import const

_MAGIC = b"RBV1"
_HEAD = const(10)  # magic, counter, length
_PAGE = const(256)  # a flash page: what a program writes at once, padded


class Vault:
    def __init__(self, device) -> None:
        self.dev = device
        self.block_size: int = device.ioctl(5, 0)

    def _record(self, block: int) -> "tuple | None":
        """(counter, payload) of the whole record in block, or None."""
        head = bytearray(_HEAD)
        self.dev.readblocks(block, head, 0)
        if head[:4] != _MAGIC:
            return None
        counter, length = struct.unpack_from(">IH", head, 4)
        if length > self.block_size - _HEAD - 4:
            return None
        body = bytearray(length + 4)
        self.dev.readblocks(block, body, _HEAD)
        crc = binascii.crc32(body[:length], binascii.crc32(head)) & 0xFFFFFFFF
        if struct.unpack_from(">I", body, length)[0] != crc:
            return None
        return counter, bytes(body[:length])

    def _newest(self) -> tuple:
        """(block, counter, payload) of the newest whole record; block -1 if none."""
        best = (-1, 0, b"")
        for block in (0, 1):
            got = self._record(block)
            if got is not None and (best[0] < 0 or got[0] > best[1]):
                best = (block, got[0], got[1])
        return best

    def read(self) -> dict:
        payload = self._newest()[2]
        try:
            values = json.loads(payload) if payload else {}
        except ValueError:
            values = {}
        return values if isinstance(values, dict) else {}

    def write(self, values: dict) -> None:
        """values as the newest record, in the block that does not hold the one before;
        then that one is erased, so that no older record (an older seal, fewer tries) is
        left on the chip to be put back."""
        block, counter, _ = self._newest()
        target = 1 if block == 0 else 0
        payload = json.dumps(values).encode()
        head = _MAGIC + struct.pack(">IH", counter + 1, len(payload))
        crc = binascii.crc32(payload, binascii.crc32(head)) & 0xFFFFFFFF
        record = head + payload + struct.pack(">I", crc)
        record += b"\xff" * (-len(record) % _PAGE)
        self.dev.ioctl(6, target)  # erase
        self.dev.writeblocks(target, record, 0)
        if block >= 0:
            self.dev.ioctl(6, block)

    def erase(self) -> None:
        """Both blocks erased: what they held is gone from the chip."""
        for block in (0, 1):
            self.dev.ioctl(6, block)

    def blank(self) -> bool:
        return self._newest()[0] < 0
