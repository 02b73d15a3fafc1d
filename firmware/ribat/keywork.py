"""The key work the node does on request, loaded only while it is needed (keys.py keeps
what a node needs at every moment): provisioning, sealing the keys under the PIN and
opening them, the roster, the pairwise keys. See keys.py for the files.
"""

import json
import os
from binascii import hexlify, unhexlify

from micropython import const

from ribat import aead, codec, ed25519, kdf, schema, signed, store, x25519
from ribat.keys import DIR, IDENTITY, ROSTER, SEAL, TRIES, rmtree
from ribat.link import RequestError

PIN_ITERATIONS = const(4096)  # PBKDF2 rounds: see docs/security.md for the cost
_MAGIC = b"RBK1"
_SALT = const(16)
_HEADER = const(24)  # magic, iterations (u32 big-endian), salt


def _box_key(pin: str, salt: bytes, iterations: int, uid: bytes) -> bytes:
    """The key that seals the secrets: the PIN stretched by PBKDF2 with the per-node salt
    and the board's unique id, expanded by HKDF to an AES key and an HMAC key."""
    kek = kdf.pbkdf2(pin.encode(), salt + uid, iterations)
    return kdf.hkdf(kek, salt, b"ribat-seal v1", 64)


def seal(pin: str, uid: bytes, secrets: bytes) -> bytes:
    salt = os.urandom(_SALT)
    header = _MAGIC + PIN_ITERATIONS.to_bytes(4, "big") + salt
    key = _box_key(pin, salt, PIN_ITERATIONS, uid)
    return header + aead.seal(key, secrets, header + uid)


def unseal(pin: str, uid: bytes, blob: bytes) -> "bytes | None":
    header = blob[:_HEADER]
    if len(blob) < _HEADER or header[:4] != _MAGIC:
        return None
    iterations = int.from_bytes(header[4:8], "big")
    key = _box_key(pin, header[8:_HEADER], iterations, uid)
    return aead.open_box(key, blob[_HEADER:], header + uid)


def pair_check(key: bytes) -> str:
    """A check value two nodes can compare to show they hold the same pairwise key,
    without showing the key (as key check values do for HSMs)."""
    return hexlify(kdf.hmac(key, b"ribat-pair-check")[:4]).decode()


def provision(keyring, partner: str, name: str, pin: str, authority: bytes, t: int) -> None:
    """New keys, sealed under pin; on an unprovisioned node (the caller checks)."""
    seed, kx = os.urandom(32), os.urandom(32)
    sign_pub = ed25519.public_key(seed)
    kx_pub = x25519.public_key(kx)
    rmtree(DIR)  # what a provisioning cut short left behind
    store.write_atomic(SEAL, seal(pin, keyring.uid, seed + kx))
    store.write_atomic(TRIES, b"0")
    body = {
        "partner": partner,
        "name": name,
        "sign": hexlify(sign_pub).decode(),
        "kx": hexlify(kx_pub).decode(),
        "fp": signed.fingerprint(sign_pub, kx_pub),
        "uid": hexlify(keyring.uid).decode(),
        "t": t,
    }
    doc = signed.sign(signed.IDENTITY, body, seed, sign_pub)
    record = {"identity": doc, "authority": hexlify(authority).decode()}
    store.write_atomic(IDENTITY, json.dumps(record).encode())
    keyring.reload()


def check_pin(keyring, pin: str) -> tuple:
    """(the secrets if pin opens the seal, else None; wrong PINs in a row now). The try
    is on flash before the seal is tried."""
    keyring.need("locked")
    tries = keyring.tries() + 1
    store.write_atomic(TRIES, str(tries).encode())
    blob = store.read(SEAL)
    secrets = None if blob is None else unseal(pin, keyring.uid, blob)
    if secrets is None:
        return None, tries
    store.write_atomic(TRIES, b"0")
    return secrets, 0


def change_pin(keyring, secrets: bytes, new_pin: str) -> None:
    store.write_atomic(SEAL, seal(new_pin, keyring.uid, secrets))


def load_roster(keyring, data: bytes) -> dict:
    """Take the roster in data if this node's authority signed it and it is newer than
    the one loaded (on a provisioned node: the caller checks); its body."""
    doc = signed.json_object(data)
    claimed = signed.body_of(doc)
    if claimed is None:
        raise RequestError(
            codec.REFUSED, "not a signed roster (truncated or garbage): nothing loaded"
        )
    if claimed.get("cell") != keyring.cell():
        raise RequestError(
            codec.REFUSED,
            "roster for cell %s, this node belongs to cell %s: nothing loaded"
            % (claimed.get("cell"), keyring.cell()),
        )
    assert keyring.authority is not None
    body = signed.verify(signed.ROSTER, doc, keyring.authority)
    if body is None:
        raise RequestError(
            codec.REFUSED,
            "roster signature is not the cell authority's (forged or altered): nothing loaded",
        )
    problem = _roster_problem(body)
    if problem:
        raise RequestError(codec.REFUSED, problem + ": nothing loaded")
    have = keyring.roster["version"] if keyring.roster else 0
    if body["version"] <= have:
        raise RequestError(
            codec.REFUSED,
            "roster version %d is not newer than the loaded version %d: nothing loaded"
            % (body["version"], have),
        )
    store.write_atomic(ROSTER, data)
    keyring.roster = body
    keyring.pairs = {}
    return body


def derive_next_pair(keyring) -> bool:
    """Derive one missing pairwise key (X25519 then HKDF); False if none is missing.
    One at a time, so the event loop keeps running between them."""
    if keyring._secrets is None or keyring.roster is None or keyring.identity is None:
        return False
    mine = keyring.identity["fp"]
    for member in keyring.roster["members"]:
        if member["fp"] != mine and member["fp"] not in keyring.pairs:
            _derive_pair(keyring, member)
            return True
    return False


def _derive_pair(keyring, member: dict) -> "bytes | None":
    fp = member["fp"]
    mine = keyring.identity["fp"]
    shared = x25519.x25519(keyring._secrets[1], unhexlify(member["kx"]))
    key = None
    if shared != bytes(32):  # a low-order point gives no key to agree on
        cell = keyring.cell() or ""
        ends = mine + fp if mine < fp else fp + mine
        key = kdf.hkdf(shared, cell.encode(), b"ribat-pair v1 " + ends.encode(), 32)
    keyring.pairs[fp] = key
    return key


def content_key(keyring, fp: str) -> "bytes | None":
    """The key that wraps bulletin content keys between this node and node fp: their
    pairwise key, or for this node itself a key of its own; None for a node outside the
    roster (or one with a degenerate agreement key)."""
    assert keyring._secrets is not None and keyring.identity is not None
    if fp == keyring.identity["fp"]:
        return kdf.hkdf(keyring._secrets[1], b"", b"ribat-self v1", 32)
    if fp in keyring.pairs:
        return keyring.pairs[fp]
    for member in keyring.roster["members"] if keyring.roster else ():
        if member["fp"] == fp:
            return _derive_pair(keyring, member)
    return None


def _roster_problem(body: dict) -> "str | None":
    version, members = body.get("version"), body.get("members")
    if type(version) is not int or version < 1 or type(members) is not list:
        return "roster without a version and a member list"
    for m in members:
        if type(m) is not dict:
            return "roster member is not a record"
        for field in ("partner", "name", "fp"):
            if type(m.get(field)) is not str:
                return "roster member without %s" % field
        for field in ("sign", "kx"):
            if type(m.get(field)) is not str or len(m[field]) != 64:
                return "roster member %s without a %s key" % (m.get("name"), field)
    return None


def pin_args(pin: object) -> str:
    problem = schema.pin_problem(pin)
    if problem is not None:
        raise RequestError(codec.ARGS, problem)
    return pin  # type: ignore[return-value]
