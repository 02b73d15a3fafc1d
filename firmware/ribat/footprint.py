"""What files take on littlefs: whole blocks, not bytes.

A file's data lies in whole blocks (a skip-list: each block after the first starts with
one or more 4-byte pointers back, two on average), and a directory is a pair of metadata
blocks. A firmware slot of thirty-odd small modules takes about three times its bytes.
The node keeps room for the next deploy by this count whatever its journal, and the
host counts the same way before it writes one. Shared by both (symlink
host/ribat/footprint.py); no I/O.
"""

DIR_BLOCKS = 2  # a directory: its metadata pair
POINTERS = 8  # bytes of skip-list pointers a block holds, on average (errs high)


def file_blocks(size: int, block: int) -> int:
    """Blocks littlefs gives a file of size bytes (a tiny file may live in its directory's
    metadata instead: counting a block for it errs on the safe side)."""
    return -(-size // (block - POINTERS))
