"""No secret key crosses the link or lies on flash in the clear.

Every byte between host and node is recorded during provisioning, identity export, roster
load, an unlocked session that derives a pairwise key, and an audit export; then the
whole flash image is read. The secrets are then taken from the node itself (from its
flash, with the PIN, as only a test may) and from a second, host-made member of the cell,
and every one of them, and the PIN, is searched for: raw, as hex, and inside every
decoded frame.
"""

import json
import os
from pathlib import Path

from conftest import on_flash
from ribat import codec, ed25519, kdf, sha512, signed, sim, x25519
from ribat.authority.cell import Cell
from ribat.device.client import NodeClient
from ribat.device.transport import Port
from ribat.ops import guard

PIN = "0-secret-pin"


class RecordingPort(Port):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.sent = bytearray()
        self.received = bytearray()

    def write(self, data: bytes) -> None:
        self.sent += data
        super().write(data)

    def read(self, timeout: float) -> bytes:
        data = super().read(timeout)
        self.received += data
        return data


def frames(stream: bytes) -> list[bytes]:
    """The decoded bodies (meta and data) of every frame in stream."""
    out = []
    for line in stream.split(b"\n"):
        start = line.find(bytes((codec.MARK,)))
        if start < 0:
            continue
        try:
            f = codec.decode(line[start + 1 :].rstrip(b"\r"))
        except codec.FrameError:
            continue
        out.append(json.dumps(f.meta).encode() + f.data)
    return out


def forms(secret: bytes) -> list[bytes]:
    """How a secret could show: raw, hex (either case), and its first half alone."""
    out = []
    for s in (secret, secret[: len(secret) // 2]):
        out += [s, s.hex().encode(), s.hex().upper().encode()]
    return out


def test_no_secret_on_the_link_or_in_the_flash(node: sim.Sim, tmp_path: Path) -> None:
    cell = Cell.create(tmp_path / "cell")
    port = RecordingPort(node.device)
    client = NodeClient(port)
    client.hello()
    guard.provision(client, cell, "MA", "rabat-1", PIN)
    cell.add(guard.exported_identity(client))

    # a second member, made here, so the node derives a pairwise key we can recompute
    peer_seed, peer_kx = os.urandom(32), os.urandom(32)
    peer_sign = ed25519.public_key(peer_seed)
    peer_kx_pub = x25519.public_key(peer_kx)
    body = {"partner": "FR", "name": "paris-1", "sign": peer_sign.hex(),
            "kx": peer_kx_pub.hex(), "fp": signed.fingerprint(peer_sign, peer_kx_pub),
            "uid": "00", "t": 0}  # fmt: skip
    cell.add(signed.sign(signed.IDENTITY, body, peer_seed, peer_sign))
    guard.load_roster(client, cell.signed_roster())
    guard.unlock(client, PIN)
    checks = {p["fp"]: p["check"] for p in guard.pairs(client)}
    guard.lock(client)
    guard.read_audit(client)
    me = guard.identity(client)
    client.close()
    link = bytes(port.sent + port.received)
    assert len(frames(link)) > 10
    flash = (sim._dir(node.name) / "flash.img").read_bytes()

    # the node's secrets, out of its seal, with the flash and the PIN (its REPL is sealed):
    # the seal is in the vault, the blocks after littlefs's (ribat.vault)
    vault = flash[-2 * 4096 :]
    at = vault.rfind(b"RBV1")
    length = int.from_bytes(vault[at + 8 : at + 10], "big")
    sealed_hex = json.loads(vault[at + 10 : at + 10 + length])["seal"]
    got = on_flash(
        node,
        "import binascii\n"
        # the node's own modules: the running slot's pack, mounted as main.py does
        "vfs.mount(Pack('/fw/%s/firmware.pack' % open('/fw/active').read()), MOUNT)\n"
        "sys.path.insert(0, MOUNT)\n"
        "from ribat import keywork\n"
        f"blob = binascii.unhexlify({sealed_hex!r})\n"
        f"uid = binascii.unhexlify({me['uid']!r})\n"
        f"s = keywork.unseal({PIN!r}, uid, blob)\n"
        "h = lambda b: binascii.hexlify(b).decode()\n"
        "print(json.dumps({'secrets': h(s), 'blob': h(blob), 'uid': h(uid)}))",
    )
    secrets = bytes.fromhex(got["secrets"])
    blob, uid = bytes.fromhex(got["blob"]), bytes.fromhex(got["uid"])
    seed, kx = secrets[:32], secrets[32:]
    assert ed25519.public_key(seed).hex() == me["sign"]  # they are the node's keys
    assert x25519.public_key(kx).hex() == me["kx"]
    expanded = sha512.digest(seed)  # the signing scalar and nonce prefix
    salt = blob[8:24]
    kek = kdf.pbkdf2(PIN.encode(), salt + uid, int.from_bytes(blob[4:8], "big"))
    seal_key = kdf.hkdf(kek, salt, b"ribat-seal v1", 64)
    # the pairwise key, recomputed from the other end: the node derived the same one
    ends = sorted([me["fp"], body["fp"]])
    pair = kdf.hkdf(
        x25519.x25519(peer_kx, bytes.fromhex(me["kx"])),
        cell.id.encode(),
        b"ribat-pair v1 " + "".join(ends).encode(),
        32,
    )
    assert checks[body["fp"]] == kdf.hmac(pair, b"ribat-pair-check")[:4].hex()

    named = {
        "signing seed": seed,
        "agreement secret": kx,
        "signing scalar": expanded[:32],
        "nonce prefix": expanded[32:],
        "PIN-derived key": kek,
        "seal AES key": seal_key[:32],
        "seal HMAC key": seal_key[32:],
        "pairwise key": pair,
    }
    places = {"the link": [link, *frames(link)], "the flash": [flash]}
    for form in forms(PIN.encode()):  # the PIN itself crosses sealed (ribat.session)
        assert not any(form in h for h in places["the link"]), "the PIN found on the link"
    for what, secret in named.items():
        for where, haystacks in places.items():
            for form in forms(secret):
                assert not any(form in h for h in haystacks), f"{what} found in {where}"
    # and the test can fail: the public keys are on both
    assert bytes.fromhex(me["sign"]) in flash or me["sign"].encode() in flash
    assert me["sign"].encode() in b"".join(frames(link))
