"""Files on flash that a power cut cannot leave half written.

littlefs commits a file when it is closed and renames atomically, so writing a whole new
copy next to the old one and renaming it over leaves the old file or the new one, never a
mixture (the node's own commit protocol on top of littlefs: see BRIEF.md, reliability).
"""

import os


def read(path: str) -> "bytes | None":
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def exists(path: str) -> bool:
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def remove(path: str) -> None:
    """Remove path if it is there."""
    try:
        os.remove(path)
    except OSError:
        pass


def write_atomic(path: str, data: bytes) -> None:
    folder = path[: path.rfind("/")]
    if folder:
        try:
            os.mkdir(folder)
        except OSError:
            pass  # exists
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def truncate(path: str, size: int) -> None:
    """Keep the first size bytes of path (MicroPython files cannot truncate): a copy,
    renamed over the file."""
    tmp = path + ".new"
    buf = bytearray(256)
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        left = size
        while left:
            n = min(src.readinto(buf), left)
            dst.write(memoryview(buf)[:n])
            left -= n
    os.rename(tmp, path)


def tree_flash(folder: str, block: int) -> int:
    """Bytes of flash the folder and everything under it take, in whole blocks."""
    from ribat import footprint  # asked once, at start-up: the caller drops it again

    total = footprint.DIR_BLOCKS * block
    for e in os.ilistdir(folder):
        path = folder + "/" + e[0]
        if e[1] & 0x4000:
            total += tree_flash(path, block)
        else:
            total += footprint.file_blocks(os.stat(path)[6], block) * block
    return total
