"""Raising alerts and signing their acknowledgements (ribat.watch): the part of the
watch that reads sealed records, so only an unlocked node runs it; loaded then and
dropped at the lock with the other security modules (ribat.keys._CRYPTO)."""

import time

from micropython import const

from ribat import bulletins, entry, journal
from ribat.link import RequestError

_KEPT = const(16)  # alerts kept: acknowledged ones go first
_RANK = {"priority": 1, "flash": 2}


def look(w) -> None:
    """Read the records that came since the last look: raise an alert for each bulletin
    of enough severity that this node may read, but its own; sign the acknowledgements
    pressed while it was locked."""
    node = w.node
    j = node.journal
    if w.scan < j.count:
        least = _RANK[node.config.get("alert.min_severity")]
        members = node.keyring.members()
        mine = entry.origin_bytes(node.keyring.identity["fp"])
        keys: dict = {}
        scan = j.records(w.scan)
        for k, view in scan:
            w.scan = k + 1
            rec = bytes(view)
            origin = rec[entry.AT_ORIGIN : entry.AT_ORIGIN + 8]
            if origin == mine or j.flags(rec) & (journal.HELD | journal.PURGED):
                continue
            inner = bulletins._open(node, rec, members, keys)
            if inner is not None and _RANK.get(str(inner.get("s")), 0) >= least:
                m = members.get(origin)
                _raise(w, entry.Header(rec).id(), inner["s"], m["name"] if m else "?")
        scan.close()
        w.save()
    for alert in w.got:
        if alert[4] and not alert[5]:
            _sign(w, alert)


def _raise(w, ident: str, severity: str, by: str) -> None:
    if any(a[0] == ident for a in w.got):
        return
    w.got.append([ident, severity, int(time.time()), by, 0, False])
    while len(w.got) > _KEPT:
        done = [a for a in w.got if a[4]]
        w.got.remove(done[0] if done else w.got[0])
    w.node.link.event({"event": "alert", "id": ident, "severity": severity, "from": by})


def _sign(w, alert: list) -> None:
    node = w.node
    try:
        k, rec = bulletins._record(node, alert[0])
    except RequestError:
        k, rec = -1, b""  # gone since (purged, wiped): nothing to acknowledge
    if k >= 0 and not node.journal.flags(rec) & journal.ACKED:
        bulletins.acknowledge(node, k, entry.Header(rec), alert[4])
    alert[5] = True
    w.save()
