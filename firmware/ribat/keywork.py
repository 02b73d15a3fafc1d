"""The key work the node does on request, loaded only while it is needed (keys.py keeps
what a node needs at every moment): provisioning, sealing the keys under the PIN and
opening them, the PIN key a host seals its PINs under (ribat.session), the roster. A
session's own key work is in pairs.py: this module is dropped once the node is unlocked.
See keys.py for the files.
"""

import gc
import json
import os
from binascii import hexlify, unhexlify

from micropython import const

from ribat import aead, codec, ed25519, kdf, pins, session, signed, store
from ribat.keys import DIR, IDENTITY, ROSTER, SEAL, TRIES, rmtree, sparing_gc
from ribat.link import RequestError

# PBKDF2 rounds: what an unlock on an RP2040 affords, some 2.7 s in all with the PIN key
# (bench/security.py, docs/security.md); kept in each seal, so a seal made with fewer opens
PIN_ITERATIONS = const(6144)
_MAGIC = b"RBK1"
_SALT = const(16)
_HEADER = const(24)  # magic, iterations (u32 big-endian), salt


def _x25519():
    """X25519, loaded for the agreement at hand, dropped after the unlock (guard.unlock)."""
    from ribat import x25519

    return x25519


def _box_key(pin: str, salt: bytes, iterations: int, uid: bytes, feed=None) -> bytes:
    """The key that seals the secrets: the PIN stretched by PBKDF2 with the per-node salt
    and the board's unique id, expanded by HKDF to an AES key and an HMAC key."""
    # Its rounds allocate some 450 bytes each, all short-lived: collected every 16 KB as
    # the node is (app.py), they made some 170 collections of a heap holding 80 KB or so,
    # which took most of an unlock on an RP2040 (bench/chip.py --node). Collected only
    # when the heap is full meanwhile, then once after.
    try:
        kek: bytes = sparing_gc(  # type: ignore[assignment]
            kdf.pbkdf2, pin.encode(), salt + uid, iterations, 32, feed
        )
    finally:
        gc.collect()
    return kdf.hkdf(kek, salt, b"ribat-seal v1", 64)


def seal(pin: str, uid: bytes, secrets: bytes, feed=None) -> bytes:
    salt = os.urandom(_SALT)
    header = _MAGIC + PIN_ITERATIONS.to_bytes(4, "big") + salt
    key = _box_key(pin, salt, PIN_ITERATIONS, uid, feed)
    return header + aead.seal(key, secrets, header + uid)


def unseal(pin: str, uid: bytes, blob: bytes, feed=None) -> "bytes | None":
    header = blob[:_HEADER]
    if len(blob) < _HEADER or header[:4] != _MAGIC:
        return None
    iterations = int.from_bytes(header[4:8], "big")
    key = _box_key(pin, header[8:_HEADER], iterations, uid, feed)
    return aead.open_box(key, blob[_HEADER:], header + uid)


def provision(keyring, partner: str, name: str, pin: str, authority: bytes, t: int) -> None:
    """New keys, sealed under pin; on an unprovisioned node (the caller checks)."""
    seed, kx = os.urandom(32), os.urandom(32)
    sign_pub = ed25519.public_key(seed)
    kx_pub = _x25519().public_key(kx)
    rmtree(DIR)  # what a provisioning cut short left behind
    keep(keyring, sealed=seal(pin, keyring.uid, seed + kx), tries=0)
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


def sealed(keyring) -> "bytes | None":
    """The sealed keys (keywork.seal), from the vault or their file."""
    vault = keyring.vault()
    if vault is None:
        return store.read(SEAL)
    text = vault.read().get("seal")
    try:
        return unhexlify(text) if isinstance(text, str) else None
    except ValueError:
        return None


def keep(keyring, sealed: "bytes | None" = None, tries: "int | None" = None) -> None:
    """Write the sealed keys and/or the tries: in one record of the vault, or files."""
    vault = keyring.vault()
    if vault is not None:
        values = vault.read()
        if sealed is not None:
            values["seal"] = hexlify(sealed).decode()
        if tries is not None:
            values["tries"] = tries
        vault.write(values)
        return
    if sealed is not None:
        store.write_atomic(SEAL, sealed)
    if tries is not None:
        store.write_atomic(TRIES, str(tries).encode())


def restore_tries(node, max_tries: int) -> None:
    """A try count lower than the audit log's last record of it was put back from an
    older copy (of the vault or of /key/tries, the log left as it was): recorded, and the
    log's count taken, a lockout included. (A whole flash image put back rolls the log
    back too: that, a peer's witness catches.)"""
    keyring, logged = node.keyring, node.audit.tries
    node.audit.append("tries-restored", {"counted": keyring.tries(), "logged": logged})
    keep(keyring, tries=logged)
    if logged >= max_tries:
        keyring.wipe()
        node.audit.append("wipe", {"why": "lockout"})


def check_pin(keyring, pin: str, feed) -> tuple:
    """(the secrets if pin opens the seal, else None; wrong PINs in a row now). The try
    is on flash before the seal is tried. feed() keeps the watchdog fed through PBKDF2."""
    keyring.need("locked")
    tries = keyring.tries() + 1
    keep(keyring, tries=tries)
    blob = sealed(keyring)
    secrets = None if blob is None else unseal(pin, keyring.uid, blob, feed)
    if secrets is None:
        return None, tries
    keep(keyring, tries=0)
    return secrets, 0


def change_pin(keyring, secrets: bytes, new_pin: str, feed) -> None:
    keep(keyring, sealed=seal(new_pin, keyring.uid, secrets, feed))


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
    # the keys that may sign a firmware release for this cell (ribat.update)
    for r in body.get("releasers") or ():
        if type(r) is not dict or type(r.get("name")) is not str:
            return "roster release key without a name"
        if type(r.get("key")) is not str or len(r["key"]) != 64:
            return "roster release key %s is not an Ed25519 public key" % r.get("name")
    return None


def pin_key(keyring) -> dict:
    """A fresh X25519 key and nonce for the next request that carries a PIN (ribat.session):
    the host seals its PINs under what it derives with them; kept for that request only."""
    secret, nonce = os.urandom(32), os.urandom(16)
    keyring.pin_channel = (secret, nonce)
    return {"kx": hexlify(_x25519().public_key(secret)).decode(), "nonce": hexlify(nonce).decode()}


def open_channel(keyring, meta: dict) -> tuple:
    """(pin key, mac key) of the PIN key the host completed with meta's "kx": refused if
    none is waiting (each serves one request) or the host's key is not one."""
    channel, keyring.pin_channel = keyring.pin_channel, None
    if channel is None:
        raise RequestError(codec.AUTH, "no PIN key is waiting: ask for one (pin.key) first")
    theirs = _hex_arg(meta, "kx", 32)
    shared = _x25519().x25519(channel[0], theirs)
    if shared == bytes(32):  # a low-order point: the host's key makes no secret
        raise RequestError(codec.AUTH, "'kx' is not a usable X25519 key")
    return session.keys(shared, channel[1])


def sealed_pin(pin_key: bytes, meta: dict, name: str) -> str:
    """The PIN the host sealed in meta[name] under pin_key, checked against the PIN rules."""
    blob = _hex_arg(meta, name, session.PIN_BYTES + 32)
    pin = session.open_pin(pin_key, name.encode(), blob)
    if pin is None:
        raise RequestError(
            codec.AUTH, "%r was not sealed under this node's PIN key: nothing counted" % name
        )
    return pin_args(pin)


def _hex_arg(meta: dict, name: str, size: int) -> bytes:
    value = meta.get(name)
    try:
        raw = unhexlify(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise RequestError(codec.ARGS, "%r must be %d bytes in hex" % (name, size))
    return raw


def pin_args(pin: object) -> str:
    problem = pins.pin_problem(pin)
    if problem is not None:
        raise RequestError(codec.ARGS, problem)
    return pin  # type: ignore[return-value]


def new_pin(pin: str, meta: dict) -> bool:
    """Whether pin, a new PIN, is weak (pins.pin_weakness): refused, unless the request
    says "weak": true, which the caller records in the audit log."""
    if pins.pin_weakness(pin) is None:
        return False
    if meta.get("weak") is not True:
        raise RequestError(codec.ARGS, pins.pin_weakness(pin))  # type: ignore[arg-type]
    return True
