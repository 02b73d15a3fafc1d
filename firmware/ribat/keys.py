"""The node's keys: made here at provisioning, sealed on flash under the operator PIN, and
open in RAM only while a session is unlocked.

Files (all written whole, through store.write_atomic):
    /key/identity.json  public: the signed identity, the pinned cell authority. Written
                        last at provisioning: a node is provisioned when it exists.
    /key/seal           the two secret keys, sealed (keywork.seal)
    /key/tries          wrong PINs in a row, counted before each comparison
    /key/roster.json    the cell roster as the authority signed it
On a board with a vault (ribat.vault: blocks outside littlefs), the seal and the tries
are kept there instead, where a wipe erases them from the chip.

A wipe renames /key away in one step (a littlefs rename is atomic) and then deletes it, and
the content folders; a wipe cut short is finished at the next start. docs/security.md has
the reasons for each choice.
"""

import gc
import json
import os
import sys
from binascii import unhexlify

import micropython

from ribat import codec, signed, store
from ribat.link import RequestError

# The security operations and the curve, cipher and KDF modules are imported where they
# are used, and dropped again once the node is locked (unload_crypto): about 30 KB of heap
# that a locked node, which is most of the time, does not hold.
_CRYPTO = (
    "guard",
    "keywork",
    "pairs",
    "pins",
    "session",
    "wrapped",
    "vault",
    "intake",
    "ed25519",
    "sha512",
    "sha512block",
    "x25519",
    "fe25519",
    "fe25519_thumb",
    "kdf",
    "aead",
    "keywrap",
)


def unload_crypto() -> bool:
    """Drop the on-demand modules, if an operation loaded any; whether it had."""
    if not any("ribat." + name in sys.modules for name in _CRYPTO):
        return False
    for name in _CRYPTO:
        unload(name)
    return True


def unload(name: str) -> None:
    """Forget module ribat.name, so that the heap it holds can be collected."""
    sys.modules.pop("ribat." + name, None)
    package = sys.modules["ribat"]
    # MicroPython's delattr raises KeyError for a missing one; and its dir() asks the
    # object for every name the firmware knows: 34 ms a call on an RP2040, 0.58 s for the
    # modules an import or a lock drops (bench/chip.py --node)
    if name in package.__dict__:
        delattr(package, name)


def sparing_gc(fn, *args) -> object:
    """fn(*args), its garbage collected when the heap is full, not every 16 KB as the
    node collects (app.py). The curve and hash work makes kilobytes of short-lived
    garbage a step, and each collection scans all the node holds: some 90 KB in an
    RP2040's session, where a post's signature took 0.48 s so, 0.31 s sparing
    (bench/chip.py --node), and the PIN's stretching made 170 collections."""
    every = gc.threshold()
    gc.threshold(-1)
    try:
        return fn(*args)
    finally:
        gc.threshold(every)


DIR = "/key"
IDENTITY = DIR + "/identity.json"
SEAL = DIR + "/seal"
TRIES = DIR + "/tries"
ROSTER = DIR + "/roster.json"
_WIPING = "/key.wipe"
CONTENT = ("/journal",)  # what a wipe deletes besides the keys


def rmtree(path: str) -> None:
    try:
        entries = list(os.ilistdir(path))
    except OSError:
        return
    for entry in entries:
        child = path + "/" + entry[0]
        if entry[1] & 0x4000:
            rmtree(child)
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


class Keyring:
    def __init__(self, uid: bytes, max_tries: int, vault_device: object = None) -> None:
        """vault_device: the board's blocks for the keys (Board.vault()), or None: the
        seal and the tries then live in files."""
        self.uid = uid
        self._vault_device = vault_device
        self._secrets: "tuple | None" = None  # (signing seed, key-agreement secret)
        self.pairs: dict = {}  # peer fingerprint -> pairwise key, while unlocked
        # The session (ribat.session): its MAC key and the last request number taken,
        # while unlocked; whether the request at hand carried a valid MAC.
        self.session_key: "bytes | None" = None
        self.session_n = 0
        self.authentic = False
        self.pin_channel: "tuple | None" = None  # (secret, nonce) of the PIN key (pin.key)
        self.wiped_at_start = False
        if store.exists(_WIPING):
            self._finish_wipe()
        self.reload()
        vault = self.vault()
        if self.identity is None and vault is not None and not vault.blank():
            vault.erase()  # a provisioning cut short: nothing of it is kept
        if self.identity is not None and self.tries() >= max_tries:
            # the last wrong PIN was counted but the power went before the wipe
            self.wipe()
            self.wiped_at_start = True

    def reload(self) -> None:
        doc = _read_json(IDENTITY)
        # Sealed from provisioning on: Ctrl-C from the port is a byte like any other, so
        # no prompt is reachable (the loader, main.py, restarts the board rather than end
        # at one); unprovisioned, the board keeps its REPL.
        micropython.kbd_intr(3 if doc is None else -1)
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

    def in_session(self) -> bool:
        """Unlocked, and the request at hand is the session's (its counter and MAC good)."""
        return self._secrets is not None and self.authentic

    def need(self, state: str) -> None:
        """Refuse the request unless the node is in state (or past it, for "locked");
        "session": unlocked, and the request is the session's own."""
        now = self.state
        if now == state or (state == "locked" and now == "unlocked"):
            return
        if state == "session" and self.in_session():
            return
        if state == "session" and now == "unlocked":
            raise RequestError(
                codec.LOCKED,
                "the node is unlocked for another session: this request does not carry it",
            )
        if now == "unprovisioned":
            raise RequestError(codec.STATE, "the node is not provisioned: run `ribat provision`")
        if state == "unprovisioned":
            raise RequestError(
                codec.STATE, "the node is already provisioned: wipe it first (`ribat wipe`)"
            )
        raise RequestError(
            codec.LOCKED, "the node is locked: unlock it first (`ribat unlock`, or --pin)"
        )

    def vault(self):
        """The vault (ribat.vault), loaded for the operation at hand (dropped with the
        crypto: _CRYPTO), or None on a board without one."""
        if self._vault_device is None:
            return None
        from ribat.vault import Vault

        return Vault(self._vault_device)

    def tries(self) -> int:
        vault = self.vault()
        if vault is not None:
            tries = vault.read().get("tries", 0)
            return tries if isinstance(tries, int) else 1 << 16
        data = store.read(TRIES)
        try:
            return int(data) if data else 0
        except ValueError:
            return 1 << 16  # a counter that cannot be read counts as exhausted

    # -- the PIN -------------------------------------------------------------------------

    def unlock(self, secrets: bytes, session_key: bytes) -> None:
        self._secrets = (secrets[:32], secrets[32:64])
        self.session_key = session_key
        self.session_n = 0

    def lock(self) -> None:
        self._secrets = None
        self.pairs = {}
        self.session_key = None

    def wipe(self) -> None:
        self.lock()
        rmtree(_WIPING)  # left by a wipe cut short
        if store.exists(DIR):
            os.rename(DIR, _WIPING)  # the one step that unprovisions the node
        self._finish_wipe()
        self.reload()

    def _finish_wipe(self) -> None:
        vault = self.vault()
        if vault is not None:
            vault.erase()
        rmtree(_WIPING)
        for folder in CONTENT:
            rmtree(folder)

    # -- using the keys ------------------------------------------------------------------

    def sign(self, kind: str, body: dict) -> dict:
        self.need("unlocked")
        assert self._secrets is not None and self.identity is not None
        return signed.sign(kind, body, self._secrets[0], unhexlify(self.identity["sign"]))

    def sign_message(self, message: bytes) -> bytes:
        """An Ed25519 signature of message (a journal entry's header)."""
        self.need("unlocked")
        assert self._secrets is not None and self.identity is not None
        from ribat import ed25519

        public = unhexlify(self.identity["sign"])
        return sparing_gc(ed25519.sign, self._secrets[0], message, public)  # type: ignore[return-value]

    def members(self) -> dict:
        """Origin (8 raw fingerprint bytes) -> public record, for every node whose
        entries this node takes: the roster's members and itself."""
        from ribat.entry import origin_bytes

        out = {}
        for m in self.roster["members"] if self.roster else ():
            out[origin_bytes(m["fp"])] = m
        if self.identity is not None:
            out[origin_bytes(self.identity["fp"])] = self.identity
        return out

    def public_key(self) -> str:
        assert self.identity is not None
        return self.identity["sign"]
