"""Signed updates: a release (ribat.release) written into the slot that is not running,
resumable, checked, then started on trial and confirmed, or reverted.

    fw.offer    the release's signed header: refused unless a release key of the cell's
                roster signed it, it has a build for this board, and it is newer than what
                this node runs and ever confirmed; tells how much of its pack the node has
    fw.put      a piece of the pack, appended at the offset the node has (a transfer cut
                anywhere goes on from there: a piece is on flash once its answer leaves)
    fw.commit   the whole pack's hash checked, the slot's manifest written, the slot put
                on trial (/fw/trial: "slot starts limit") and made active; a hard restart
    fw.confirm  the host's word that the build on trial works (it confirms itself too)

The loader (main.py) counts each start of a slot on trial, arms the watchdog for it, and
past update.trial_starts makes the other slot active again (/fw/reverted). The highest
version this node ever confirmed (its floor) is kept twice: in the vault, outside
littlefs, and in a file; a rollback of either one is outvoted by the other.
"""

import json
import os
import sys
from binascii import unhexlify

from ribat import codec, keys, release, signed, store
from ribat.link import RequestError, arg

TRIAL = "/fw/trial"  # the loader's too (main.py)
REVERTED = "/fw/reverted"  # written by the loader, then rewritten with what reverted
_FLOOR = keys.DIR + "/fw-floor"  # the floor's copy in littlefs (the vault holds the other)
_HEADER = "/release.json"  # the signed header of the release a slot is receiving
_PACK = "/firmware.pack"


def _mpy() -> str:
    """The .mpy format this MicroPython loads, as a release names it: "6.3"."""
    mpy = getattr(sys.implementation, "_mpy", 0)
    return "%d.%d" % (mpy & 0xFF, (mpy >> 8) & 3)


def _slot_of(node) -> str:
    return "/fw/" + ("b" if node.slot == "a" else "a")


# -- the floor -------------------------------------------------------------------------


def floor(node) -> "str | None":
    """The highest version this node confirmed: the higher of its two copies."""
    vault = node.keyring.vault()
    raw = store.read(_FLOOR)
    best = None
    best_key: tuple = ()
    for v in (
        vault.read().get("fw") if vault is not None else None,
        raw.decode() if raw else None,
    ):
        key = release.version(v)
        if key is not None and key > best_key:
            best, best_key = v, key
    return best


def raise_floor(node, version: str) -> None:
    """The floor up to version (never down), in both copies."""
    new = release.version(version)
    if new is None or new <= (release.version(floor(node)) or ()):
        return
    vault = node.keyring.vault()
    if vault is not None:
        values = vault.read()
        values["fw"] = version
        vault.write(values)
    store.write_atomic(_FLOOR, version.encode())


# -- the transfer ----------------------------------------------------------------------


def _releaser(node, key: object) -> "str | None":
    roster = node.keyring.roster
    for r in (roster or {}).get("releasers") or ():
        if r.get("key") == key:
            return r.get("name")
    return None


def _refuse(node, why: str) -> None:
    node.audit_room()
    node.audit.append("update-refused", {"why": why})
    raise RequestError(codec.REFUSED, why)


def offer(node, meta: dict, data: bytes) -> dict:
    node.keyring.need("locked")
    if node.trial is not None:
        raise RequestError(
            codec.STATE,
            "the node runs release %s on trial: it confirms itself once it works "
            "(or `ribat flash --confirm`); send the next release after that" % node.version,
        )
    doc = signed.json_object(bytes(data))
    body = signed.body_of(doc)
    if doc is None or body is None:
        raise RequestError(codec.ARGS, "not a release header (truncated or garbage)")
    problem = release.refusal(body, node.board_name, _mpy(), node.version, floor(node))
    if problem:
        _refuse(node, problem)
    name = _releaser(node, doc.get("key"))
    if name is None:
        _refuse(
            node,
            "release %s is not signed by a release key of the cell's roster" % body["firmware"],
        )
    if signed.verify(release.KIND, doc, unhexlify(doc["key"])) is None:
        _refuse(
            node,
            "release %s: its signature does not verify (altered or forged)" % body["firmware"],
        )
    t = release.target(body, node.board_name, _mpy())
    assert t is not None
    root = _slot_of(node)
    if store.read(root + _HEADER) != bytes(data):
        _room(node, root, t["size"])
        store.remove(root + "/manifest.json")  # an incomplete slot never runs
        store.remove(root + _PACK)
        store.write_atomic(root + _HEADER, bytes(data))
    node.staged = {
        "size": t["size"],
        "sha256": t["sha256"],
        "firmware": body["firmware"],
        "build": t.get("build"),
        "revision": body.get("revision"),
        "signer": name,
    }
    return {"have": _have(root), "size": t["size"], "slot": root[-1], "signer": name}


def _room(node, root: str, size: int) -> None:
    """Refused unless the pack fits in the flash free and what the slot holds now."""
    stat = os.statvfs("/")
    free = stat[0] * stat[3]
    if store.exists(root):
        free += store.tree_flash(root, stat[0])
    keys.unload("footprint")
    if size + 2 * stat[0] > free:
        raise RequestError(
            codec.REFUSED,
            "no room for the release: it takes %d bytes, %d are free" % (size, free),
        )


def _have(root: str) -> int:
    try:
        return os.stat(root + _PACK)[6]
    except OSError:
        return 0


def _staged(node) -> dict:
    if node.staged is None:
        raise RequestError(
            codec.STATE, "no release offered since the node started: offer it again"
        )
    return node.staged


def put(node, meta: dict, data: bytes) -> dict:
    staged = _staged(node)
    offset = arg(meta, "offset", int)
    root = _slot_of(node)
    have = _have(root)
    if offset != have:
        raise RequestError(codec.ARGS, "the node has %d bytes of the pack: send from there" % have)
    if have + len(data) > staged["size"]:
        raise RequestError(codec.ARGS, "more bytes than the release's pack holds")
    with open(root + _PACK, "ab") as f:
        f.write(data)
    return {"have": have + len(data)}


def commit(node, meta: dict, data: bytes) -> dict:
    staged = _staged(node)
    root = _slot_of(node)
    if _have(root) != staged["size"]:
        raise RequestError(
            codec.STATE, "the node has %d of the pack's %d bytes" % (_have(root), staged["size"])
        )
    from ribat.service import file_sha256

    if file_sha256(root + _PACK) != staged["sha256"]:
        store.remove(root + _PACK)
        _refuse(
            node,
            "release %s: the pack received does not match its signed hash" % staged["firmware"],
        )
    limit: int = node.config.get("update.trial_starts")
    manifest = {"board": node.board_name}
    for k in ("firmware", "build", "revision", "signer"):
        manifest[k] = staged[k]
    node.audit_room()
    node.audit.append(
        "update", {"from": node.version, "to": staged["firmware"], "signer": staged["signer"]}
    )
    store.write_atomic(root + "/manifest.json", json.dumps(manifest).encode())
    store.remove(REVERTED)
    store.write_atomic(TRIAL, ("%s 0 %d" % (root[-1], limit)).encode())
    store.write_atomic("/fw/active", root[-1].encode())  # the switch: one rename
    node.staged = None
    node.reset_soon(True)
    return {"slot": root[-1], "trial_starts": limit}


def confirm_op(node, meta: dict, data: bytes) -> dict:
    if node.trial is None:
        return {"confirmed": False, "version": node.version}
    confirm(node, "host")
    return {"confirmed": True, "version": node.version}


# -- trial and revert, at the start and after ------------------------------------------


def at_start(node) -> None:
    """A slot on trial, or one that just reverted: what the loader left (main.py)."""
    text = store.read(TRIAL)
    if text:
        parts = text.decode().split()
        if len(parts) == 3 and parts[0] == node.slot and not node.fallback:
            node.trial = int(parts[1])
        elif len(parts) == 3 and node.fallback:
            # the build on trial could not even be imported: back here for good
            store.write_atomic("/fw/active", node.slot.encode())
            os.rename(TRIAL, REVERTED)
        else:
            store.remove(TRIAL)  # a commit cut before its switch: nothing was tried
    text = store.read(REVERTED)
    if not text:
        return
    if text[:1] == b"{":
        node.reverted = json.loads(text)
        return
    slot, starts = text.decode().split()[:2]
    failed = {}
    try:
        with open("/fw/" + slot + "/manifest.json") as f:
            failed = json.loads(f.read())
    except (OSError, ValueError):
        pass
    store.remove("/fw/" + slot + "/manifest.json")  # never started again, even as a fallback
    node.reverted = {"version": failed.get("firmware"), "build": failed.get("build"),
                     "starts": int(starts), "back_to": node.version}  # fmt: skip
    node.audit.append("update-reverted", node.reverted)
    store.write_atomic(REVERTED, json.dumps(node.reverted).encode())


def confirm(node, by: str) -> None:
    """The build on trial works: it becomes the floor, and the loader forgets the trial."""
    raise_floor(node, node.version)
    node.floor = floor(node)
    node.audit.note_firmware(
        "%s %s" % (node.version, node.build or node.revision), node.keyring.identity is not None
    )
    node.audit.append(
        "update-confirmed", {"version": node.version, "by": by, "starts": node.trial}
    )
    store.remove(TRIAL)
    node.trial = None


OPS = {
    "fw.offer": offer,
    "fw.put": put,
    "fw.commit": commit,
    "fw.confirm": confirm_op,
}
