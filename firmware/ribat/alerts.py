"""The watch: alerts for the bulletins released to this node's partner whose severity
calls for one (alert.min_severity), on the board's LED and buzzer (ribat.app.on_watch);
acknowledged by its button or `ribat ack`; overdue when nobody has within
alert.ack_timeout_s.

What arrives is sealed: only an unlocked node reads its severity. So the node on watch is
an unlocked one (the duty officer's session, `ribat watch`): once a second it reads each
record the journal got since, whichever link brought it (a host, a gateway, a wire), and
at the unlock what came while it was locked. What it raised is kept on flash (STATE),
pending until acknowledged, through power cuts. The button acknowledges every pending
alert: signed at once in a session, on a locked node at the next unlock (an
acknowledgement is an entry the node signs: ribat.bulletins.acknowledge).

This module is loaded for each of those moments and dropped after: all a node holds
between them is node.alert_pending, what the LED shows, and where the next look starts.

STATE, JSON: {"scan": the next record to read, "got": [[id, severity, received (unix
time), from (node name), acknowledged (unix time, 0 if not), signed], ...] newest last,
"held": records passed while held, read once they join their chain (Journal.joined)}.
"""

import json
import time

from micropython import const

from ribat import entry, journal, store

STATE = journal.ALERTS
_KEPT = const(16)  # alerts kept: acknowledged ones go first
_RANK = {"priority": 1, "flash": 2}


def _load(node) -> tuple:
    doc = None
    data = store.read(STATE)
    if data:
        try:
            doc = json.loads(data)
        except ValueError:
            doc = None
    doc = doc if isinstance(doc, dict) else {}
    # a node's first watch (its provisioning, or the first unlock of a node provisioned
    # before it had one) raises nothing for what it held before
    return doc.get("scan", node.journal.count), doc.get("got", []), doc.get("held", [])


def _save(node, scan: int, got: list, held: list) -> None:
    doc = {"scan": scan, "got": got, "held": held}
    store.write_atomic(STATE, json.dumps(doc).encode())
    _held(node, scan, got)


def _held(node, scan: int, got: list) -> None:
    """What the node keeps between two looks: [id, severity, received] of each alert not
    yet acknowledged; where the next look starts; whether a press waits to be signed."""
    node.alert_pending = [a[:3] for a in got if not a[4]]
    node.alert_scan = scan
    node.alert_unsigned = any(a[4] and not a[5] for a in got)


def start(node) -> None:
    """At the start, the provisioning and the unlock: what was left on flash, or a
    first watch starting at the journal's end."""
    scan, got, held = _load(node)
    if not store.exists(STATE) and node.keyring.identity is not None:
        _save(node, scan, got, held)
    _held(node, scan, got)


def look(node) -> None:
    """Read the records that came since the last look (the node is unlocked): raise an
    alert for each bulletin of enough severity that this node may read, but its own;
    sign the acknowledgements pressed while it was locked."""
    from ribat import bulletins

    scan, got, held = _load(node)
    j = node.journal
    if scan < j.count:
        least = _RANK[node.config.get("alert.min_severity")]
        members = node.keyring.members()
        mine = entry.origin_bytes(node.keyring.identity["fp"])
        keys: dict = {}

        def read(rec: bytes) -> None:
            node.feed()  # a look at an unlock may open many: 64 outlast an RP2040's 8 s
            origin = rec[entry.AT_ORIGIN : entry.AT_ORIGIN + 8]
            if origin == mine or j.flags(rec) & journal.PURGED:
                return
            inner = bulletins._open(node, rec, members, keys)
            if inner is not None and _RANK.get(str(inner.get("s")), 0) >= least:
                m = members.get(origin)
                _raise(node, got, entry.Header(rec).id(), inner["s"], m["name"] if m else "?")

        for _, rec in j.joined(held):  # passed while held, in their chain now
            read(rec)
        records = j.records(scan)
        for k, view in records:
            scan = k + 1
            if j.is_held(k, view):  # read once it joins its chain
                journal.note_held(held, k)
                continue
            read(bytes(view))
        records.close()
    for alert in got:
        if alert[4] and not alert[5]:
            _sign(node, alert)
    _save(node, scan, got, held)


def _raise(node, got: list, ident: str, severity: str, by: str) -> None:
    if any(a[0] == ident for a in got):
        return
    got.append([ident, severity, int(time.time()), by, 0, False])
    while len(got) > _KEPT:
        done = [a for a in got if a[4]]
        got.remove(done[0] if done else got[0])
    node.link.event({"event": "alert", "id": ident, "severity": severity, "from": by})


def _sign(node, alert: list) -> None:
    from ribat import bulletins
    from ribat.link import RequestError

    try:
        k, rec = bulletins._record(node, alert[0])
    except RequestError:
        k, rec = -1, b""  # gone since (purged, wiped): nothing to acknowledge
    if k >= 0 and not node.journal.flags(rec) & journal.ACKED:
        bulletins.acknowledge(node, k, entry.Header(rec), alert[4])
    alert[5] = True


def press(node, now: int) -> None:
    """The button: every pending alert acknowledged now (signed now if unlocked)."""
    scan, got, held = _load(node)
    for alert in got:
        if not alert[4]:
            alert[4] = now
    _save(node, scan, got, held)
    if node.keyring.state == "unlocked":
        look(node)


def acked(node, ident: str, t: int) -> None:
    """The bulletin ident was acknowledged (signed) at t, from the button or a host."""
    scan, got, held = _load(node)
    for alert in got:
        if alert[0] == ident:
            alert[4], alert[5] = alert[4] or t, True
    _save(node, scan, got, held)


def summary(node) -> list:
    """The alerts as a sync summary tells them (ribat.replica): [id, received,
    acknowledged]. No severity: a summary goes to the broker, and the severity is sealed
    content (docs/security.md, the watch)."""
    return [[a[0], a[2], a[4]] for a in _load(node)[1]]
