"""The journal operations of a duty officer at an unlocked node: post, list, show and
ack. Loaded when first asked for (ribat.service looks them up in OPS) and kept; the crypto
they import as they need it is dropped at the lock. How entries move between nodes
(journal.status, export, import) is ribat.exchange.

Need-to-know is cryptographic: a bulletin's content is encrypted under a fresh key that
is wrapped only for the nodes of the partners it is released to, each under the key the
author shares with that node; a node outside the list holds no wrap it can open, so
refusing it is not a check that could be skipped.
"""

import json
import os
import time

from micropython import const

from ribat import codec, entry, journal, schema
from ribat.link import RequestError, arg

_DAY = const(86400)
MAX_TTL = const(400 * 86400)
MAX_TITLE = const(200)
MAX_BODY = const(2000)
MAX_REFS = const(8)
_PAGE = const(2800)  # bytes of list items per response (the frame's body is 4096)
_IV = bytes(16)  # each content key encrypts one content only: a fixed counter is safe


def _choice(meta: dict, name: str, allowed: tuple, default: "str | None" = None) -> str:
    value = meta.get(name, default)
    if value not in allowed:
        raise RequestError(codec.ARGS, "%r must be one of %s" % (name, ", ".join(allowed)))
    return value


def _text(meta: dict, name: str, limit: int) -> str:
    value = arg(meta, name, str, "")
    if len(value.encode()) > limit:  # type: ignore[attr-defined]
        raise RequestError(codec.ARGS, "%r takes at most %d bytes" % (name, limit))
    return value  # type: ignore[return-value]


def _record(node, text: object) -> "tuple[int, bytes]":
    """The record number and record of the entry an id names (in its origin's chain)."""
    parsed = entry.parse_id(text)
    if parsed is None:
        raise RequestError(codec.ARGS, "%r is not an entry id (like 2f5abe99:17)" % (text,))
    j = node.journal
    origin = j.origin_of(parsed[0])
    k = -1 if origin is None else j.find(origin, parsed[1])
    if k < 0:
        raise RequestError(codec.ARGS, "no entry %s in this node's journal" % text)
    return k, j.record(k)


# -- posting and reading ------------------------------------------------------------------


def post(node, meta: dict, data: bytes) -> dict:
    keyring = node.keyring
    keyring.need("session")
    kind = _choice(meta, "kind", entry.KINDS)
    severity = _choice(meta, "severity", entry.SEVERITIES, "routine")
    title = _text(meta, "title", MAX_TITLE)
    body = _text(meta, "body", MAX_BODY)
    ttl: int = arg(meta, "expires_s", int, 30 * _DAY)  # type: ignore[assignment]
    if not 1 <= ttl <= MAX_TTL:
        raise RequestError(codec.ARGS, "a bulletin expires in 1 s to 400 days")
    to = arg(meta, "to", list)
    refs = arg(meta, "refs", list, [])
    if len(refs) > MAX_REFS:  # type: ignore[arg-type]
        raise RequestError(codec.ARGS, "a bulletin refers to at most %d others" % MAX_REFS)
    for ref in refs:  # type: ignore[attr-defined]
        _record(node, ref)
    if kind in entry.NEEDS_REF and not refs:
        raise RequestError(codec.ARGS, "a %s refers to the bulletin it answers: give --ref" % kind)
    me = keyring.identity
    partners = [me["partner"]]
    for code in to:  # type: ignore[attr-defined]
        problem = schema.check("node.partner", code)
        if problem is not None:
            raise RequestError(codec.ARGS, "'to': " + problem)
        if code not in partners:
            partners.append(code)
    members = keyring.members()
    recipients = [fp for fp, m in members.items() if m["partner"] in partners]
    for code in partners:
        if not any(m["partner"] == code for m in members.values()):
            raise RequestError(
                codec.ARGS,
                "no node of partner %s is in the roster: nobody could read it; load a "
                "roster with one (`ribat cell load`)" % code,
            )
    node.follow_clock(meta.get("now"))
    from ribat import aead, keywrap, pairs

    now = int(time.time())
    inner = {"t": now, "k": kind, "s": severity, "to": partners, "ti": title, "b": body}
    if refs:
        inner["r"] = refs
    found = _indicators(meta, me["partner"])
    if found:
        inner["i"] = found  # sealed with the rest: only the bulletin's readers see them
    cek = os.urandom(32)
    wraps = []
    for origin in recipients:
        key = pairs.content_key(keyring, members[origin]["fp"])
        node.feed()  # a new reader's pairwise key is an X25519: on an RP2040, 0.6 s or more
        if key is not None:  # (a member with a degenerate agreement key gets none)
            wraps.append(keywrap.wrap(key, cek))
    text = json.dumps(inner).encode()
    start = 1 + entry.WRAP * len(wraps)
    if start + len(text) > entry.MAX_CONTENT:
        raise RequestError(codec.ARGS, "the bulletin is too long for one entry: shorten it")
    # one buffer for the whole content: a node's heap has few large free blocks
    content = bytearray(start + len(text))
    content[0] = len(wraps)
    for i, wrapped in enumerate(wraps):
        content[1 + entry.WRAP * i : 1 + entry.WRAP * (i + 1)] = wrapped
    aead.ctr(cek, _IV, text, content, start)
    # the body's copies go before the signature loads its code: a Pico W's session has
    # few free blocks of the size that code takes (the request's own copy included)
    del text, inner, body
    meta.pop("body", None)
    ident = _append_own(node, content, now + ttl, now, "post", None)
    out = {"id": ident, "expires": now + ttl, "readers": content[0]}
    if found:
        del content
        out["signal"] = node.signals_do("report", ident, found, now)
    return out


def _indicators(meta: dict, partner: str) -> list:
    """The post's indicators, each [kind, value] normalised (ribat.indicators)."""
    given = arg(meta, "ind", list, [])
    if not given:
        return []
    from ribat import indicators

    try:
        return indicators.normalise_all(given, partner)
    except ValueError as e:
        raise RequestError(codec.ARGS, "indicator: %s" % e)


def _append_own(node, content: object, expires: int, now: int, event: str, detail: object) -> str:
    """Sign and store an entry of this node's own chain, recorded in the audit log as event
    (detail: its data, or the new entry's id); the entry's id."""
    keyring = node.keyring
    j = node.journal
    # room first: a full journal refuses before a signature (1.2 s on a Pico) is spent
    j.make_room(len(content), now)  # type: ignore[arg-type]
    node.audit_room()
    origin = entry.origin_bytes(keyring.identity["fp"])
    seq = j.head(origin) + 1
    header = entry.pack(origin, seq, j.head_digest(origin), expires, content)  # type: ignore[arg-type]
    node.feed()  # the signature alone takes some 2 s of an RP2040's 8 s watchdog window
    signed = header + keyring.sign_message(entry.message(header))
    node.feed()
    ident = entry.entry_id(origin, seq)
    node.audit.append(event, detail or {"id": ident})
    j.append(signed, content, 0)
    if node.alert_scan == j.count - 1:
        node.alert_scan = j.count  # its own entry raises no alert: no look for it
    if node.signal_scan == j.count - 1:
        node.signal_scan = j.count
    return ident


def acknowledge(node, k: int, header: entry.Header, t: int) -> str:
    """This node's acknowledgement, at time t, of the bulletin at record k: an entry of its
    own chain, public (anyone who carries it may read who acknowledged what, and when),
    signed and replicated like any other; the bulletin flagged acknowledged here."""
    doc = {"k": entry.ACK, "t": t, "r": [header.id()]}
    content = bytes((entry.PUBLIC,)) + json.dumps(doc).encode()
    now = int(time.time())
    ident = _append_own(node, content, header.expires, now, "ack", {"id": header.id()})
    node.journal.set_flags(k, add=journal.ACKED)
    return ident


def _open(node, rec: bytes, members: dict, keys: dict) -> "dict | None":
    """The bulletin in a record, if this node may read it; None if it is sealed to it.
    members is keyring.members(); keys caches each origin's content key, for one request."""
    header = entry.Header(rec)
    content = node.journal.content(rec)
    public = entry.public_of(content)
    if public is not None:
        return public  # an acknowledgement: no secret
    parts = entry.wraps_of(content)
    if parts is None:
        return None
    from ribat import aead, keywrap, pairs

    origin = header.origin
    if origin not in keys:
        member = members.get(origin)
        keys[origin] = None if member is None else pairs.content_key(node.keyring, member["fp"])
    key = keys[origin]
    if key is None:
        return None
    for wrapped in parts[0]:
        cek = keywrap.unwrap(key, wrapped)
        if cek is not None:
            # decrypted where it lies: a list of 2 KB bulletins then needs one block of
            # 2 KB per bulletin, not four, on a heap with few such blocks
            text = parts[1]
            aead.ctr(cek, _IV, text, content, len(content) - len(text))
            inner = json.loads(text)
            if node.keyring.identity["partner"] not in inner["to"]:
                return None  # wrapped for a node its releasability list leaves out
            return inner
    return None


def _public(node, rec: bytes) -> "dict | None":
    """A public entry's JSON (an acknowledgement), which a locked node shows too."""
    if not entry.Header(rec).size:
        return None
    return entry.public_of(node.journal.content(rec))


def _state(node, k: int, rec: bytes, flags: int) -> str:
    if flags & journal.FORK:
        return "fork"
    if node.journal.is_held(k, rec):
        return "held"
    return "purged" if flags & journal.PURGED else "kept"


def _item(node, k: int, rec: bytes, members: dict, inner: "dict | None") -> dict:
    header = entry.Header(rec)
    m = members.get(header.origin)
    flags = node.journal.flags(rec)
    item = {
        "n": k,
        "id": header.id(),
        "from": m["partner"] if m else "??",
        "by": m["name"] if m else entry.fp_text(header.origin),
        "x": header.expires,
        "size": header.size,
        "state": _state(node, k, rec, flags),
        "acked": bool(flags & journal.ACKED),
    }
    if inner is not None:
        item.update(inner)
    return item


def list_entries(node, meta: dict, data: bytes) -> dict:
    """A page of the journal from record after + 1 (at most page bytes of items, and at
    least one), with what this node may read of each (nothing of their content when
    locked)."""
    after = arg(meta, "after", int, -1)
    partner = meta.get("from")
    kind = meta.get("kind")
    since = arg(meta, "since", int, 0)
    asked: int = arg(meta, "page", int, _PAGE)  # type: ignore[assignment]
    page = min(_PAGE, asked)
    unlocked = node.keyring.in_session()
    j = node.journal
    members = node.keyring.members()
    keys: dict = {}
    items = []
    used = 0
    read = 0
    last: int = after  # type: ignore[assignment]  # the last record looked at
    scan = j.records(last + 1)
    for k, view in scan:
        if used >= page:
            break
        node.feed()  # a page opens many: with the unlock's look, an RP2040 outlasted 8 s
        last = k
        rec = bytes(view)
        m = members.get(rec[entry.AT_ORIGIN : entry.AT_ORIGIN + 8])
        if partner is not None and (m is None or m["partner"] != partner):
            continue
        inner = _open(node, rec, members, keys) if unlocked else _public(node, rec)
        if inner is not None:
            read += inner.get("k") not in entry.PUBLIC_KINDS  # (those are no secret)
            if inner["t"] < since or (kind is not None and inner["k"] != kind):
                continue
            inner.pop("b", None)  # the list shows titles; `show` reads the body
        elif kind is not None or since:
            continue  # what cannot be read cannot be said to match
        item = _item(node, k, rec, members, inner)
        items.append(item)
        used += len(json.dumps(item))
    scan.close()  # (its file, if the page ended first)
    if read:
        node.audit_room()
        node.audit.append("read", {"list": read, "from": after + 1, "to": last})  # type: ignore[operator]
    return {"items": items, "next": last, "done": last >= j.count - 1, "locked": not unlocked}


def show(node, meta: dict, data: bytes) -> dict:
    node.keyring.need("session")
    k, rec = _record(node, meta.get("id"))
    flags = node.journal.flags(rec)
    header = entry.Header(rec)
    if flags & journal.PURGED:
        raise RequestError(
            codec.REFUSED,
            "%s expired: its content was purged; only its signed header remains" % header.id(),
        )
    members = node.keyring.members()
    inner = _open(node, rec, members, {})
    if inner is None:
        raise RequestError(
            codec.REFUSED,
            "%s is not released to %s: its content stays sealed on this node"
            % (header.id(), node.keyring.identity["partner"]),
        )
    node.audit_room()
    node.audit.append("read", {"id": header.id()})
    return _item(node, k, rec, members, inner)


def ack(node, meta: dict, data: bytes) -> dict:
    """Acknowledge a bulletin this node may read: a signed, public entry its author and
    the cell see (acknowledge); a second time, the first is what counts."""
    node.keyring.need("session")
    k, rec = _record(node, meta.get("id"))
    header = entry.Header(rec)
    if _open(node, rec, node.keyring.members(), {}) is None:
        raise RequestError(
            codec.REFUSED, "%s is not readable on this node: nothing to acknowledge" % header.id()
        )
    t = int(time.time())
    if node.journal.flags(rec) & journal.ACKED:
        out = {"id": header.id(), "acked": True, "already": True}
    else:
        out = {"id": header.id(), "acked": True, "entry": acknowledge(node, k, header, t)}
    node.alerts_do("acked", header.id(), t)  # its LED stops calling for it
    return out


OPS = {
    "journal.post": post,
    "journal.list": list_entries,
    "journal.show": show,
    "journal.ack": ack,
}
