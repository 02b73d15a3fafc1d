"""Replication between nodes, the node's part: what it holds, told to a peer (sync.hello),
and the audit heads of its peers that it has witnessed (sync.witness). Entries move by
journal.export/next and journal.import/put/end, so a sync makes the checks and the audit
entries of an import; whoever relays (a host, a wire, a broker's gateway) sees summaries,
sealed entries and audit heads, nothing more.

Witnessing: each node keeps, per peer, the (seq, hash) of the peer's audit log it last
saw. A peer's later head must extend it: a lower seq is a truncated log, and the hash of
the peer's line at the witnessed seq (the peer tells it, asked with audit_at) must be the
one witnessed, else the log was rewritten; a peer that does not tell it, or says it was
folded where a fold would keep it, has not shown its log extends what was witnessed, and
that raises the alarm too (_unproven). A witness moves forward only once the peer has
shown that its log extends what was witnessed; an alarm is recorded in the node's own
audit log once and stays in the witness file for every later summary to show.
"""

import json
import time
from binascii import hexlify

from micropython import const

from ribat import codec, entry, schema, signed, store
from ribat.link import RequestError, arg

PEERS = "/audit/peers.json"
_AT_MAX = const(16)  # audit hashes a summary tells at most
_AHEAD_S = const(60)  # how far ahead of this node's clock a summary's stamp may be
# A broker's summary may come before its node has heard which line we witnessed: it
# lacks that line's hash for this long before a witness calls the peer's log unproven.
_UNPROVEN_S = const(300)


def witnessed() -> dict:
    """The audit heads this node has witnessed of its peers: fp -> {seq, hash[, alarm]}."""
    data = store.read(PEERS)
    doc = signed.json_object(data) if data else None
    return doc if doc is not None else {}


def hello(node, meta: dict, data: bytes) -> dict:
    """This node's summary: what it holds of each origin's chain (the head, its digest,
    entries held past a gap), its audit head with the hashes of the lines asked for, and
    the heads it has witnessed of its peers."""
    keyring = node.keyring
    keyring.need("locked")
    asked = arg(meta, "audit_at", list, [])
    if len(asked) > _AT_MAX:  # type: ignore[arg-type]
        raise RequestError(codec.ARGS, "'audit_at' names at most %d seqs" % _AT_MAX)
    j = node.journal
    vector = {}
    digests = {}
    for origin, head in j.vector().items():
        fp = entry.fp_text(origin)
        vector[fp] = head
        digests[fp] = hexlify(j.head_digest(origin)[:8]).decode()
    audit = node.audit
    me = keyring.identity
    return {
        "cell": keyring.cell(),
        "fp": me["fp"],
        "name": me["name"],
        "partner": me["partner"],
        "vector": vector,
        "digests": digests,
        "held": j.held_text(),
        "audit": {"seq": audit.seq, "hash": audit.head, "at": audit.hashes_at(asked)},
        "witnessed": witnessed(),
        # the alerts it raised and whether acknowledged (ribat.alerts): `cell status`
        "alerts": _alerts(node),
        "ack_timeout_s": node.config.get("alert.ack_timeout_s"),
        # the release it runs, and whether on trial: `cell status` follows a rollout
        "fw": node.version,
        # the convergences it raised: [partners, first report, acknowledged] (ribat.signals)
        "signals": node.signals_do("summary") if node.signals_pending or node.signal_scan else [],
        "trial": node.trial is not None,
    }


def _alerts(node) -> list:
    """The alerts raised here and whether acknowledged (ribat.alerts)."""
    return node.alerts_do("summary") or []


def _alarm(node, peers: dict, fp: str, what: str) -> str:
    mine = peers[fp]
    if "alarm" not in mine:
        mine["alarm"] = what
        node.audit.append("alarm", {"peer": fp, "what": what})
    return what


# A fold keeps the newest half of the audit budget, and no budget is under its schema
# minimum: a line this close to the head cannot have been folded away.
_MIN_KEPT = schema.find("audit.max_entries")[3][0] // 2  # type: ignore[index]


def _unproven(node, peers: dict, fp: str, seen: dict, stamped: bool) -> str:
    """A head past the one witnessed, without the hash of the line witnessed: the peer
    has not shown that its log extends it. A relay that asked for it (a sync: no stamp)
    got no proof: alarm. A broker's summary may predate the peer's hearing of our
    witness: alarm only once that has lasted _UNPROVEN_S."""
    if not stamped:
        return _alarm(node, peers, fp, "unproven: it did not show its line %d" % seen["seq"])
    since = seen.setdefault("unproven", int(time.time()))
    if int(time.time()) - since >= _UNPROVEN_S:
        return _alarm(
            node,
            peers,
            fp,
            "unproven: its line %d not shown for %d s" % (seen["seq"], _UNPROVEN_S),
        )
    return "unproven"


def witness(node, meta: dict, data: bytes) -> dict:
    """Compare a peer's audit head (its hello's "audit") with the one witnessed before."""
    keyring = node.keyring
    keyring.need("locked")
    fp: str = arg(meta, "fp", str)  # type: ignore[assignment]
    claim = arg(meta, "audit", dict)
    # when the peer's summary was sent (by its gateway, in ms): one sent before the one
    # witnessed, that a broker delivered late, is no evidence of a truncated log. A stamp
    # ahead of this node's clock is not taken: a relay lying in it could otherwise have
    # every later summary called stale, and a truncation never seen.
    sent: int = arg(meta, "sent", int, 0)  # type: ignore[assignment]
    if sent > (int(time.time()) + _AHEAD_S) * 1000:
        sent = 0
    seq = claim.get("seq")  # type: ignore[attr-defined]
    head = claim.get("hash")  # type: ignore[attr-defined]
    at = claim.get("at", {})  # type: ignore[attr-defined]
    if not isinstance(seq, int) or not isinstance(head, str) or not isinstance(at, dict):
        raise RequestError(codec.ARGS, "'audit' is a hello's audit head: seq, hash, at")
    try:
        origin = entry.origin_bytes(fp)
    except ValueError:
        origin = b""
    if fp == keyring.identity["fp"] or origin not in keyring.members():
        raise RequestError(codec.ARGS, "%s is not a peer in this node's roster" % fp)
    peers = witnessed()
    before = json.dumps(peers)
    seen = peers.get(fp)
    verdict = "extends"
    if sent and seen is not None and sent < seen.get("sent", 0):  # (a host relay sends none)
        return {"verdict": "stale", "alarm": seen.get("alarm")}
    if seen is None:
        verdict = "first"
        seen = peers[fp] = {}
    elif seq < seen["seq"]:
        verdict = _alarm(
            node, peers, fp, "truncated: head %d, %d seen before" % (seq, seen["seq"])
        )
    elif seq == seen["seq"] and head != seen["hash"]:
        verdict = _alarm(node, peers, fp, "rewritten: line %d is not the one seen" % seq)
    elif seq > seen["seq"]:
        then = at.get(str(seen["seq"]))
        if then is None:
            verdict = _unproven(node, peers, fp, seen, bool(sent))
        elif then == "folded" and seq - seen["seq"] < _MIN_KEPT:
            verdict = _alarm(
                node, peers, fp,
                "rewritten: line %d folded away at head %d, where a fold keeps it"
                % (seen["seq"], seq),
            )  # fmt: skip
        elif then == "folded":
            verdict = "folded"  # on the peer's word: its checkpoint (see docs/security.md)
        elif then != seen["hash"]:
            verdict = _alarm(node, peers, fp, "rewritten: line %d changed" % seen["seq"])
    else:
        verdict = "same"
    if verdict in ("first", "extends", "folded", "same"):
        seen.pop("unproven", None)
    if verdict in ("first", "extends", "folded"):
        seen["seq"] = seq
        seen["hash"] = head
    if sent and verdict in ("first", "extends", "folded", "same"):
        seen["sent"] = sent
    after = json.dumps(peers)
    if after != before:
        store.write_atomic(PEERS, after.encode())
    return {"verdict": verdict, "alarm": seen.get("alarm")}


OPS = {"sync.hello": hello, "sync.witness": witness}
