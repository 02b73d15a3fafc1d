"""Weak signals: when two partners report the same indicator (ribat.indicators) within
signals.window_days, both nodes raise a convergence; nobody else learns anything.

A bulletin's indicators are in its sealed content. Its node also turns each into tokens,
one per other member of the roster and period (this one and the one before: a window
spans at most two): HMAC under a key only that pair of nodes derives. The tokens travel
in a public entry of the node's chain ("signal": the bulletin's id, its time, the tokens,
sorted), which every node stores; only the member a token was made for can match it,
against the tokens it made for its own reports. So matching needs no key and runs on a
locked node; making tokens needs the pairwise keys, an unlocked one (a post, a lookup).

A lookup (`ribat check`) makes the tokens of an indicator without reporting it, to ask
"has anyone reported this?"; signals.lookups_per_day bounds them, each counted on flash
before it is made, and recorded (kind and outcome, never the value).

This module is loaded for each of those moments and dropped after (ribat.app.Node
.signals_do). On flash, in /journal/sig (a wipe takes it with the journal): STATE, JSON
{"scan": the next record to read, "held": records passed while held (Journal.joined),
"conv": [[partner, name, their id, my id, first t, detected t, acknowledged t]], "looks":
[day, lookups]}; OWN and SEEN, a line a token
(hex), the older half dropped as a file passes _KEEP_BYTES.
"""

import json
import os
import time
from binascii import hexlify

from micropython import const

from ribat import codec, entry, journal, store
from ribat.link import RequestError

DIR = journal.DIR + "/sig"
STATE = DIR + "/state"  # JSON: {"scan", "conv", "looks"}: small, read whole
OWN = DIR + "/own"  # a line a token this node made: "token id t"
SEEN = DIR + "/seen"  # a line a token another node made: "token id t origin"
KIND = entry.SIGNAL
PERIOD_S = const(30 * 86400)  # a token's period: the longest window (signals.window_days)
_KEEP_BYTES = const(12288)  # a token file past this keeps its newer half (some 150 tokens)
_CONV_KEPT = const(16)
_LOOK_RECORDS = const(64)  # records read a look: a full journal's first look takes many,
# each short of the watchdog (the watch looks each second while records wait)


def _load() -> dict:
    data = store.read(STATE)
    doc = None
    if data:
        try:
            doc = json.loads(data)
        except ValueError:
            doc = None
    return doc if isinstance(doc, dict) else {}


def _save(node, doc: dict) -> None:
    conv = doc.get("conv", [])
    if len(conv) > _CONV_KEPT:
        done = [c for c in conv if c[6]]
        conv.remove(done[0] if done else conv[0])
    store.write_atomic(STATE, json.dumps(doc).encode())
    _held(node, doc)


def _held(node, doc: dict) -> None:
    node.signal_scan = doc.get("scan", node.signal_scan)
    node.signals_pending = len([c for c in doc.get("conv", ()) if not c[6]])


def _lines(path: str):
    """The fields of each line of a token file, read a line at a time (the files are
    larger than a Pico W's heap can take whole)."""
    try:
        f = open(path)
    except OSError:
        return
    with f:
        for line in f:
            yield line.split()


def _add(path: str, lines: list) -> None:
    """Lines appended to a token file; past _KEEP_BYTES, its older half goes first."""
    try:
        size = os.stat(path)[6]
    except OSError:
        size = 0
        store.write_atomic(path, b"")
    if size > _KEEP_BYTES:
        with open(path) as src, open(path + ".new", "w") as dst:
            at = 0
            for line in src:
                at += len(line)
                if at > size // 2:
                    dst.write(line)
        os.rename(path + ".new", path)
    with open(path, "a") as f:
        for line in lines:
            f.write(line)


def start(node) -> None:
    """At the start: where the last look ended, the convergences pending. (A node with no
    STATE yet looks from its first record: ribat.app.Node.open_journal.)"""
    _held(node, _load())


def _window(node) -> int:
    return node.config.get("signals.window_days") * 86400


def _converge(node, doc: dict, origin: bytes, theirs: str, mine: str, t1: int, t2: int) -> None:
    """Their report theirs (at t1) and this node's mine (at t2) name the same indicator."""
    if abs(t1 - t2) > _window(node):
        return
    conv = doc.setdefault("conv", [])
    if any(c[2] == theirs and c[3] == mine for c in conv):
        return
    m = node.keyring.members().get(origin) or {}
    partner, name = m.get("partner", "??"), m.get("name", "?")
    conv.append([partner, name, theirs, mine, min(t1, t2), int(time.time()), 0])
    node.link.event(
        {"event": "convergence", "with": partner, "by": name, "id": theirs, "mine": mine}
    )


# -- reading what came ------------------------------------------------------------------


def look(node) -> None:
    """Read the records since the last look: each other node's signal entry, its tokens
    kept and matched against this node's own."""
    doc = _load()
    j = node.journal
    scan = doc.get("scan", node.signal_scan)
    if scan >= j.count:
        node.signal_scan = scan
        return
    mine = entry.origin_bytes(node.keyring.identity["fp"])
    held = doc.setdefault("held", [])
    for _, rec in j.joined(held):  # passed while held, in their chain now
        _match(node, doc, rec, mine)
    records = j.records(scan, scan + _LOOK_RECORDS)
    for k, view in records:
        scan = k + 1
        if j.is_held(k, view):  # read once it joins its chain
            journal.note_held(held, k)
            continue
        _match(node, doc, bytes(view), mine)
    records.close()
    doc["scan"] = scan
    _save(node, doc)


def _match(node, doc: dict, rec: bytes, mine: bytes) -> None:
    """Another node's signal entry in record rec: its tokens kept and matched."""
    j = node.journal
    node.feed()  # (a look reads up to _LOOK_RECORDS, each a file read and a scan)
    origin = rec[entry.AT_ORIGIN : entry.AT_ORIGIN + 8]
    if origin == mine or j.flags(rec) & journal.PURGED:
        return
    sig = _signal(j.content(rec))
    if sig is None:
        return
    theirs = sig["r"][0]  # the bulletin whose indicators these are
    who = hexlify(origin).decode()
    _add(SEEN, ["%s %s %d %s\n" % (tok, theirs, sig["t"], who) for tok in sig["tok"]])
    for tok, ident, t in _lines(OWN):
        if tok in sig["tok"]:
            _converge(node, doc, origin, theirs, ident, sig["t"], int(t))


def _signal(content: bytes) -> "dict | None":
    """A signal entry's JSON: {"k": "signal", "t", "r": [id], "tok": [hex...]}."""
    doc = entry.public_of(content)
    if doc is None or doc.get("k") != KIND:
        return None
    if not isinstance(doc.get("tok"), list) or not isinstance(doc.get("t"), int):
        return None
    refs = doc.get("r")
    if not isinstance(refs, list) or not refs or not isinstance(refs[0], str):
        return None
    return doc


# -- making tokens (unlocked) -------------------------------------------------------------


def _tokens(node, kind: str, value: str, t: int) -> list:
    """The tokens of one indicator for every other member, this period and the one
    before: hex, in no particular order."""
    from ribat import indicators, pairs

    keyring = node.keyring
    while pairs.derive_next_pair(keyring):
        pass  # every pairwise key: a report goes to all of them
    out = []
    p = indicators.period(t, PERIOD_S)
    for fp, key in keyring.pairs.items():
        if key is None:
            continue
        for q in (p, p - 1):
            tok = indicators.token(indicators.period_key(key, q), kind, value)
            out.append(hexlify(tok).decode())
    return out


def report(node, ident: str, found: list, t: int) -> str:
    """The indicators of this node's bulletin ident (posted at t): tokens made, matched
    against what the others reported, and sent to the cell in a public signal entry."""
    from ribat import bulletins

    look(node)  # what came and was not read yet matches too
    doc = _load()
    made = []
    for kind, value in found:
        made.extend(_tokens(node, kind, value, t))
    _add(OWN, ["%s %s %d\n" % (tok, ident, t) for tok in made])
    for tok, theirs, t1, who in _lines(SEEN):
        if tok in made:
            _converge(node, doc, entry.origin_bytes(who), theirs, ident, int(t1), t)
    made.sort()  # which token is for whom is nobody's business: each finds its own
    body = {"k": KIND, "t": t, "r": [ident], "tok": made}
    content = bytes((entry.PUBLIC,)) + json.dumps(body).encode()
    expires = t + 2 * PERIOD_S  # no token matches past that
    signal = bulletins._append_own(
        node, content, expires, t, "signal", {"id": ident, "n": len(made)}
    )
    _save(node, doc)
    return signal


def check(node, kind: str, value: str) -> dict:
    """A lookup: who in the cell reported this indicator within the window? Counted on
    flash before any token is made; bounded by signals.lookups_per_day."""
    while node.signal_scan < node.journal.count:
        look(node)  # the answer covers all the node holds
    doc = _load()
    now = int(time.time())
    day = now // 86400
    looks = doc.get("looks") or [day, 0]
    if looks[0] != day:
        looks = [day, 0]
    limit = node.config.get("signals.lookups_per_day")
    node.audit_room()
    if looks[1] >= limit:
        node.audit.append("signal-lookup-refused", {"kind": kind, "limit": limit})
        raise RequestError(
            codec.REFUSED,
            "this node made its %d lookups today (signals.lookups_per_day): try tomorrow" % limit,
        )
    looks[1] += 1
    doc["looks"] = looks
    _save(node, doc)  # counted before it is made: a cut here cannot give a free one
    mine = _tokens(node, kind, value, now)
    members = node.keyring.members()
    found: list = []
    window = _window(node)
    for tok, theirs, t, who in _lines(SEEN):
        if tok in mine and now - int(t) <= window and not any(f["id"] == theirs for f in found):
            m = members.get(entry.origin_bytes(who)) or {}
            found.append(
                {"id": theirs, "partner": m.get("partner"), "by": m.get("name"), "t": int(t)}
            )
    node.audit.append("signal-lookup", {"kind": kind, "found": len(found), "n": looks[1]})
    return {"found": found, "left": limit - looks[1]}


# -- convergences ---------------------------------------------------------------------------


def listing(node) -> list:
    """The convergences: [partner, name, their id, my id, first t, detected t, acked t]."""
    return _load().get("conv", [])


def acknowledge(node, t: int) -> int:
    """Every pending convergence acknowledged (the button, `ribat signals ack`); how many."""
    doc = _load()
    n = 0
    for c in doc.get("conv", ()):
        if not c[6]:
            c[6] = t
            n += 1
    if n:
        node.audit.append("signal-ack", {"n": n})
        _save(node, doc)
    return n


def summary(node) -> list:
    """The convergences as a sync summary tells them: [partners, first t, acknowledged];
    no bulletin id (which report matched is the two partners' business)."""
    me = node.keyring.identity["partner"]
    return [[sorted([me, c[0]]), c[4], c[6]] for c in _load().get("conv", ())]


# -- the operations (ribat.service routes signals.* here) -----------------------------------


def check_op(node, meta: dict, data: bytes) -> dict:
    from ribat import indicators

    node.keyring.need("session")
    try:
        kind, value = indicators.parse(
            str(meta.get("indicator")), node.keyring.identity["partner"]
        )
    except ValueError as e:
        raise RequestError(codec.ARGS, str(e))
    return check(node, kind, value)


def list_op(node, meta: dict, data: bytes) -> dict:
    node.keyring.need("locked")
    return {"conv": listing(node), "window_days": node.config.get("signals.window_days")}


def ack_op(node, meta: dict, data: bytes) -> dict:
    node.keyring.need("session")
    return {"acked": acknowledge(node, int(time.time()))}


# by name: the module is loaded for each request (ribat.service._signals_op)
OPS = {"signals.check": "check_op", "signals.list": "list_op", "signals.ack": "ack_op"}
