"""The node's keys: made here at provisioning, sealed on flash under the operator PIN, and
open in RAM only while a session is unlocked.

Files (all written whole, through store.write_atomic):
    /key/identity.json  public: the signed identity, the pinned cell authority. Written
                        last at provisioning: a node is provisioned when it exists.
    /key/seal           the two secret keys, sealed (see _seal)
    /key/tries          wrong PINs in a row, counted before each comparison
    /key/roster.json    the cell roster as the authority signed it

A wipe renames /key away in one step (a littlefs rename is atomic) and then deletes it, and
the content folders; a wipe cut short is finished at the next start. docs/security.md has
the reasons for each choice.
"""

import json
import os
from binascii import hexlify, unhexlify

from micropython import const

from ribat import aead, codec, ed25519, kdf, schema, signed, store, x25519
from ribat.link import RequestError

DIR = "/key"
IDENTITY = DIR + "/identity.json"
SEAL = DIR + "/seal"
TRIES = DIR + "/tries"
ROSTER = DIR + "/roster.json"
_WIPING = "/key.wipe"
CONTENT = ("/journal",)  # what a wipe deletes besides the keys (the journal: next issue)

PIN_ITERATIONS = const(4096)  # PBKDF2 rounds: see docs/security.md for the cost
_MAGIC = b"RBK1"
_SALT = const(16)
_HEADER = const(24)  # magic, iterations (u32 big-endian), salt


def _rmtree(path: str) -> None:
    try:
        entries = list(os.ilistdir(path))
    except OSError:
        return
    for entry in entries:
        child = path + "/" + entry[0]
        if entry[1] & 0x4000:
            _rmtree(child)
        else:
            os.remove(child)
    os.rmdir(path)


def _read_json(path: str) -> "dict | None":
    data = store.read(path)
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


def _box_key(pin: str, salt: bytes, iterations: int, uid: bytes) -> bytes:
    """The key that seals the secrets: the PIN stretched by PBKDF2 with the per-node salt
    and the board's unique id, expanded by HKDF to an AES key and an HMAC key."""
    kek = kdf.pbkdf2(pin.encode(), salt + uid, iterations)
    return kdf.hkdf(kek, salt, b"ribat-seal v1", 64)


def _seal(pin: str, uid: bytes, secrets: bytes) -> bytes:
    salt = os.urandom(_SALT)
    header = _MAGIC + PIN_ITERATIONS.to_bytes(4, "big") + salt
    key = _box_key(pin, salt, PIN_ITERATIONS, uid)
    return header + aead.seal(key, secrets, header + uid)


def _unseal(pin: str, uid: bytes, blob: bytes) -> "bytes | None":
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


class Keyring:
    def __init__(self, uid: bytes, max_tries: int) -> None:
        self.uid = uid
        self._secrets: "tuple | None" = None  # (signing seed, key-agreement secret)
        self.pairs: dict = {}  # peer fingerprint -> pairwise key, while unlocked
        self.wiped_at_start = False
        if _exists(_WIPING):
            self._finish_wipe()
        self._load()
        if self.identity is not None and self.tries() >= max_tries:
            # the last wrong PIN was counted but the power went before the wipe
            self.wipe()
            self.wiped_at_start = True

    def _load(self) -> None:
        doc = _read_json(IDENTITY)
        self.identity = None if doc is None else signed.body_of(doc["identity"])
        self.identity_doc = None if doc is None else doc["identity"]
        self.authority = None if doc is None else unhexlify(doc["authority"])
        self.roster: "dict | None" = None
        envelope = _read_json(ROSTER)
        if envelope is not None:
            self.roster = signed.body_of(envelope)

    # -- state ---------------------------------------------------------------------------

    @property
    def state(self) -> str:
        if self.identity is None:
            return "unprovisioned"
        return "unlocked" if self._secrets is not None else "locked"

    def cell(self) -> "str | None":
        return None if self.authority is None else signed.fingerprint(self.authority)

    def need(self, state: str) -> None:
        """Refuse the request unless the node is in state (or past it, for "locked")."""
        now = self.state
        if now == state or (state == "locked" and now == "unlocked"):
            return
        if now == "unprovisioned":
            raise RequestError(codec.STATE, "the node is not provisioned: run `ribat provision`")
        if state == "unprovisioned":
            raise RequestError(
                codec.STATE, "the node is already provisioned: wipe it first (`ribat wipe`)"
            )
        raise RequestError(
            codec.LOCKED, "the node is locked: unlock it first (`ribat unlock`, or --pin)"
        )

    def tries(self) -> int:
        data = store.read(TRIES)
        try:
            return int(data) if data else 0
        except ValueError:
            return 1 << 16  # a counter that cannot be read counts as exhausted

    # -- provisioning --------------------------------------------------------------------

    def provision(self, partner: str, name: str, pin: str, authority: bytes, t: int) -> None:
        self.need("unprovisioned")
        seed, kx = os.urandom(32), os.urandom(32)
        sign_pub = ed25519.public_key(seed)
        kx_pub = x25519.public_key(kx)
        _rmtree(DIR)  # what a provisioning cut short left behind
        store.write_atomic(SEAL, _seal(pin, self.uid, seed + kx))
        store.write_atomic(TRIES, b"0")
        body = {
            "partner": partner,
            "name": name,
            "sign": hexlify(sign_pub).decode(),
            "kx": hexlify(kx_pub).decode(),
            "fp": signed.fingerprint(sign_pub, kx_pub),
            "uid": hexlify(self.uid).decode(),
            "t": t,
        }
        doc = signed.sign(signed.IDENTITY, body, seed, sign_pub)
        record = {"identity": doc, "authority": hexlify(authority).decode()}
        store.write_atomic(IDENTITY, json.dumps(record).encode())
        self._load()

    # -- the PIN -------------------------------------------------------------------------

    def check_pin(self, pin: str) -> "bytes | None":
        """The secrets if pin opens the seal, else None; the try is on flash before."""
        self.need("locked")
        store.write_atomic(TRIES, str(self.tries() + 1).encode())
        blob = store.read(SEAL)
        secrets = None if blob is None else _unseal(pin, self.uid, blob)
        if secrets is not None:
            store.write_atomic(TRIES, b"0")
        return secrets

    def unlock(self, secrets: bytes) -> None:
        self._secrets = (secrets[:32], secrets[32:64])

    def lock(self) -> None:
        self._secrets = None
        self.pairs = {}

    def change_pin(self, secrets: bytes, new_pin: str) -> None:
        store.write_atomic(SEAL, _seal(new_pin, self.uid, secrets))

    def wipe(self) -> None:
        self.lock()
        if _exists(DIR):
            if _exists(_WIPING):
                _rmtree(_WIPING)
            os.rename(DIR, _WIPING)
        self._finish_wipe()
        self._load()

    def _finish_wipe(self) -> None:
        _rmtree(_WIPING)
        for folder in CONTENT:
            _rmtree(folder)

    # -- using the keys ------------------------------------------------------------------

    def sign(self, kind: str, body: dict) -> dict:
        self.need("unlocked")
        assert self._secrets is not None and self.identity is not None
        return signed.sign(kind, body, self._secrets[0], unhexlify(self.identity["sign"]))

    def public_key(self) -> str:
        assert self.identity is not None
        return self.identity["sign"]

    # -- the roster ----------------------------------------------------------------------

    def load_roster(self, data: bytes) -> dict:
        """Take the roster in data if this node's authority signed it and it is newer than
        the one loaded; its body."""
        self.need("locked")
        try:
            doc = json.loads(data)
        except ValueError:
            doc = None
        claimed = signed.body_of(doc)
        if claimed is None:
            raise RequestError(
                codec.REFUSED, "not a signed roster (truncated or garbage): nothing loaded"
            )
        if claimed.get("cell") != self.cell():
            raise RequestError(
                codec.REFUSED,
                "roster for cell %s, this node belongs to cell %s: nothing loaded"
                % (claimed.get("cell"), self.cell()),
            )
        assert self.authority is not None
        body = signed.verify(signed.ROSTER, doc, self.authority)
        if body is None:
            raise RequestError(
                codec.REFUSED,
                "roster signature is not the cell authority's (forged or altered): nothing loaded",
            )
        problem = _roster_problem(body)
        if problem:
            raise RequestError(codec.REFUSED, problem + ": nothing loaded")
        have = self.roster["version"] if self.roster else 0
        if body["version"] <= have:
            raise RequestError(
                codec.REFUSED,
                "roster version %d is not newer than the loaded version %d: nothing loaded"
                % (body["version"], have),
            )
        store.write_atomic(ROSTER, data)
        self.roster = body
        self.pairs = {}
        return body

    def derive_next_pair(self) -> bool:
        """Derive one missing pairwise key (X25519 then HKDF); False if none is missing.
        One at a time, so the event loop keeps running between them."""
        if self._secrets is None or self.roster is None or self.identity is None:
            return False
        mine = self.identity["fp"]
        for member in self.roster["members"]:
            fp = member["fp"]
            if fp == mine or fp in self.pairs:
                continue
            shared = x25519.x25519(self._secrets[1], unhexlify(member["kx"]))
            if shared == bytes(32):  # a low-order point: no key to agree on
                self.pairs[fp] = None
                continue
            cell = self.cell() or ""
            ends = mine + fp if mine < fp else fp + mine
            self.pairs[fp] = kdf.hkdf(shared, cell.encode(), b"ribat-pair v1 " + ends.encode(), 32)
            return True
        return False


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


def _exists(path: str) -> bool:
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def pin_args(pin: object) -> str:
    problem = schema.pin_problem(pin)
    if problem is not None:
        raise RequestError(codec.ARGS, problem)
    return pin  # type: ignore[return-value]
