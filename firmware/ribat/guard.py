"""The operations of the security core: provisioning, identity, the operator PIN and its
sessions, the roster, the audit log, wipe. Each is recorded in the audit log before it is
answered. ribat.service looks them up by name in OPS.
"""

import gc
import time
from binascii import unhexlify

from micropython import const

from ribat import codec, journal, keys, schema, store
from ribat.keys import ROSTER
from ribat.link import RequestError, arg

MAX_ROSTER = const(16384)
_AUDIT_PIECE = const(1024)  # small: an unlocked node's heap has few free blocks of 4 KB
_ROSTER_PART = ROSTER + ".part"


def _keywork():
    """The key work, imported when an operation needs it: see keys.unload_crypto."""
    from ribat import keywork

    return keywork


def _config_arg(meta: dict, name: str, key: str) -> str:
    value = meta.get(name)
    problem = schema.check(key, value)
    if problem is not None:
        raise RequestError(codec.ARGS, problem)
    return value  # type: ignore[return-value]


def identity(node, meta: dict, data: bytes) -> dict:
    keyring = node.keyring
    out = {"state": keyring.state}
    if keyring.identity is None:
        return out
    out.update(keyring.identity)
    roster = keyring.roster
    out["doc"] = keyring.identity_doc
    out["cell"] = keyring.cell()
    out["roster"] = roster["version"] if roster else 0
    out["members"] = len(roster["members"]) if roster else 0
    out["tries"] = keyring.tries()
    out["max_tries"] = node.config.get("pin.max_tries")
    return out


def pin_key(node, meta: dict, data: bytes) -> dict:
    """A key to seal the PIN(s) of the next request under (ribat.session)."""
    return _keywork().pin_key(node.keyring)


def provision(node, meta: dict, data: bytes) -> dict:
    partner = _config_arg(meta, "partner", "node.partner")
    name = _config_arg(meta, "name", "node.name")
    pin_key, _ = _keywork().open_channel(node.keyring, meta)
    pin = _keywork().sealed_pin(pin_key, meta, "pin")
    weak = _keywork().new_pin(pin, meta)
    authority = arg(meta, "authority", str)
    if len(authority) != 64:  # type: ignore[arg-type]
        raise RequestError(codec.ARGS, "'authority' must be a public key: 64 hex digits")
    node.keyring.need("unprovisioned")
    node.audit_room()
    _keywork().provision(node.keyring, partner, name, pin, unhexlify(authority), int(time.time()))  # type: ignore[arg-type]
    node.config.change({"node.partner": partner, "node.name": name}, [])
    ident = node.keyring.identity
    done = {"partner": partner, "name": name, "fp": ident["fp"]}
    if weak:
        done["weak"] = True
    node.audit.append("provision", done)
    from ribat import update

    update.raise_floor(node, node.version)  # sealed from now: only newer releases
    node.floor = update.floor(node)
    keys.unload("update")
    node.alerts_do("start")  # on watch from now: what comes while locked alerts at the unlock
    gc.collect()
    return identity(node, meta, data)


def unlock(node, meta: dict, data: bytes) -> dict:
    """The PIN, sealed under the PIN key the node gave for it: right, the node is unlocked
    for a session whose requests carry the MAC key derived with it (ribat.session)."""
    pin_key, mac_key = _keywork().open_channel(node.keyring, meta)
    node.feed()  # each step inside the watchdog's 8 s; on an RP2040 all of them are not
    pin = _keywork().sealed_pin(pin_key, meta, "pin")
    secrets = _check_pin(node, pin)
    node.feed()
    node.keyring.unlock(secrets, mac_key)
    node.feed()
    for name in ("keywork", "x25519", "vault"):  # a session's key work is in ribat.pairs
        keys.unload(name)
    node.make_room_for_session()
    if not store.exists(journal.ALERTS):  # a node provisioned before it had a watch
        node.alerts_do("start")
    node.touch()
    # A session for one command (--pin) costs the log one entry: its lock, asked at once,
    # goes unrecorded (any other end of it, idle or the port let go, is recorded).
    node.once = meta.get("once") is True
    node.audit.append("unlock", {"once": True} if node.once else None)
    node.audit.fold(node.keyring, node.config.get("audit.max_entries"))
    return {"state": "unlocked", "idle_s": node.config.get("pin.idle_s")}


def _check_pin(node, pin: str) -> bytes:
    """The sealed secrets, if pin is right; a wrong one is counted, recorded, and the last
    allowed one wipes the node."""
    keyring = node.keyring
    secrets, tries = _keywork().check_pin(keyring, pin, node.feed)
    if secrets is not None:
        return secrets
    left = node.config.get("pin.max_tries") - tries
    node.audit.append("pin-failed", {"tries": tries})
    if left <= 0:
        node.audit.append("wipe", {"why": "lockout"})
        keyring.wipe()
        node.open_journal()
        gc.collect()
        raise RequestError(
            codec.PIN,
            "wrong PIN, the last try allowed: the node wiped its keys and content",
        )
    raise RequestError(codec.PIN, "wrong PIN: %d tries left before the node wipes its keys" % left)


def lock(node, meta: dict, data: bytes) -> dict:
    if node.keyring.state == "unlocked":
        node.lock("request", quiet=node.once)
    return {"state": node.keyring.state}


def pin_change(node, meta: dict, data: bytes) -> dict:
    pin_key, _ = _keywork().open_channel(node.keyring, meta)
    pin = _keywork().sealed_pin(pin_key, meta, "pin")
    new = _keywork().sealed_pin(pin_key, meta, "new")
    weak = _keywork().new_pin(new, meta)
    secrets = _check_pin(node, pin)
    _keywork().change_pin(node.keyring, secrets, new, node.feed)
    node.audit.append("pin-change", {"weak": True} if weak else None)
    return {}


def wipe(node, meta: dict, data: bytes) -> dict:
    """Erase keys and content: in an unlocked session, or by whoever holds the board's
    button down in the seconds after it started (as a FIDO key's reset needs presence);
    an unprovisioned node has nothing to guard."""
    if meta.get("confirm") is not True:
        raise RequestError(codec.ARGS, "a wipe needs 'confirm': true")
    keyring = node.keyring
    by_button = keyring.state != "unprovisioned" and not keyring.in_session()
    if by_button and not node.present():
        raise RequestError(
            codec.LOCKED,
            "a wipe needs the operator PIN, or the board's button held down within "
            "%d s of its start" % (node.PRESENCE_MS // 1000),
        )
    node.audit.append("wipe", {"why": "button" if by_button else "request"})
    node.keyring.wipe()
    node.open_journal()
    gc.collect()
    if node.watchdog is not None:
        # armed until a hard reset: an unprovisioned node's REPL (a deploy, mpremote)
        # would be reset under its user
        node.reset_soon(True)
    return {"state": node.keyring.state, "restart": node.watchdog is not None}


def roster_load(node, meta: dict, data: bytes) -> dict:
    """A roster in pieces (offset, total): each piece is kept on flash, so a transfer cut
    short resumes from what the node reports; the last piece loads it."""
    offset = arg(meta, "offset", int)
    total = arg(meta, "total", int)
    keyring = node.keyring
    keyring.need("locked")
    if not 0 < total <= MAX_ROSTER:  # type: ignore[operator]
        raise RequestError(codec.ARGS, "a roster takes 1 to %d bytes" % MAX_ROSTER)
    have = store.read(_ROSTER_PART) or b""
    if offset == 0:
        have = b""
    elif offset != len(have):
        raise RequestError(codec.ARGS, "expected the piece at offset %d" % len(have))
    have += data
    if len(have) > total:  # type: ignore[operator]
        store.remove(_ROSTER_PART)
        raise RequestError(codec.ARGS, "more roster bytes than announced")
    if len(have) < total:  # type: ignore[operator]
        store.write_atomic(_ROSTER_PART, have)
        return {"received": len(have)}
    store.remove(_ROSTER_PART)
    node.audit_room()
    body = _keywork().load_roster(keyring, have)
    node.audit.append("roster", {"version": body["version"], "members": len(body["members"])})
    return {"received": len(have), "version": body["version"], "members": len(body["members"])}


def cell_pairs(node, meta: dict, data: bytes) -> dict:
    keyring = node.keyring
    keyring.need("session")
    from ribat import pairs

    while pairs.derive_next_pair(keyring):
        pass
    out = []
    roster = keyring.roster
    for m in roster["members"] if roster else ():
        key = keyring.pairs.get(m["fp"])
        out.append(
            {
                "name": m["name"],
                "partner": m["partner"],
                "fp": m["fp"],
                "check": None if key is None else pairs.pair_check(key),
            }
        )
    return {"pairs": out}


def audit_read(node, meta: dict, data: bytes) -> tuple:
    """A piece of the audit log as it is on flash, from byte offset."""
    offset = arg(meta, "offset", int)
    audit = node.audit
    chunk = audit.read(offset, _AUDIT_PIECE)
    return {"size": audit.size(), "seq": audit.seq, "head": audit.head}, chunk


OPS = {
    "identity": identity,
    "pin.key": pin_key,
    "provision": provision,
    "unlock": unlock,
    "lock": lock,
    "pin.change": pin_change,
    "wipe": wipe,
    "cell.pairs": cell_pairs,
    "roster.load": roster_load,
    "audit.read": audit_read,
}
