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
