"""Sync: two nodes reconcile their journals through whoever relays for them (this host,
a gateway and a broker), and witness each other's audit heads.

A sync is three steps, each safe to cut at any byte and to run again:
    1. summaries (sync.hello): each side's per-origin heads, the entries it holds past a
       gap, its audit head, and the hash of its audit line at the seq its peer witnessed;
    2. entries each side lacks, export frames of one fed to import frames of the other
       (journal.export/next, journal.import/put/end): the receiver checks every entry as
       an import does; what arrived before a cut is in the receiver's vector or held list,
       so a sync run again sends only what is still missing;
    3. witnessing (sync.witness): each side compares the other's audit head with the one
       it witnessed last time, and raises an alarm for a truncated or rewritten log.
The relay sees summaries, sealed entries and audit hashes: nothing a node keeps sealed.
"""

from ribat.device.client import NodeClient
from ribat.errors import CellError
from ribat.ops import journal as lib
from ribat.results import SyncLeg, SyncReport, Witness

HELLO_TIMEOUT_S = 20.0  # a node reads its audit log for the hashes asked of it
AUDIT_AT_MAX = 16  # audit hashes a node tells per hello (firmware/ribat/replica.py)


def hello(client: NodeClient, audit_at: list[int] | None = None) -> dict:
    """The node's sync summary, with the hashes of its audit lines at (the newest
    AUDIT_AT_MAX of) the seqs in audit_at."""
    asked = sorted(audit_at or [])[-AUDIT_AT_MAX:]
    return client.request("sync.hello", timeout=HELLO_TIMEOUT_S, audit_at=asked)


def witnessed_seq(summary: dict, peer_fp: str) -> list[int]:
    """The seq of peer's audit log that summary's node witnessed, as audit_at asks it."""
    seen = summary["witnessed"].get(peer_fp)
    return [seen["seq"]] if seen else []


def lacks(have: dict, want: dict) -> bool:
    """Whether the node summarized by want lacks entries the one summarized by have holds."""
    return any(n > want["vector"].get(fp, 0) for fp, n in have["vector"].items())


def send(src: NodeClient, dst: NodeClient, src_sum: dict, dst_sum: dict) -> SyncLeg:
    """The entries src holds and dst lacks, from src to dst, frame by frame."""
    leg = SyncLeg(src_sum["name"], dst_sum["name"], 0, {}, False)
    if lacks(src_sum, dst_sum):
        _give(src, dst, src_sum, dst_sum["vector"], dst_sum["held"], leg)
    return leg


def send_head(src: NodeClient, dst: NodeClient, src_sum: dict, origin: str, leg: SyncLeg) -> None:
    """src's entry at the head of origin's chain, to dst, which holds another at that seq."""
    since = {**src_sum["vector"], origin: src_sum["vector"][origin] - 1}
    _give(src, dst, src_sum, since, {}, leg)


def _give(
    src: NodeClient, dst: NodeClient, src_sum: dict, since: dict, held: dict, leg: SyncLeg
) -> None:
    """src's entries past since, but those held, given to dst; counted in leg."""
    total, frames = lib.export_frames(src, since, held)
    if not total:
        return
    assert dst.info is not None
    room = dst.info.max_frame - lib.FRAME_SPARE
    batches = (part for batch in frames for part in lib.frames(batch, room))
    given, _ = lib.put_batches(dst, batches, total, f"sync {src_sum['name']}")
    leg.sent += len(given)
    for _, outcome in given:
        leg.outcomes[outcome] = leg.outcomes.get(outcome, 0) + 1
    leg.target_full = leg.target_full or len(given) < total


def witness(client: NodeClient, peer: dict) -> dict:
    """The node's verdict on peer's audit head; with when peer's summary was sent, if its
    gateway stamped it (a broker's summary), so that a late one is taken as stale."""
    stamp = {"sent": peer["sent"]} if "sent" in peer else {}
    return client.request("sync.witness", fp=peer["fp"], audit=peer["audit"], **stamp)


def forks(a: dict, b: dict) -> list[str]:
    """Origins both hold to the same seq with different heads: one was given a fork."""
    return [
        fp
        for fp, n in a["vector"].items()
        if b["vector"].get(fp) == n and b["digests"].get(fp) != a["digests"].get(fp)
    ]


def sync(a: NodeClient, b: NodeClient) -> SyncReport:
    """Reconcile two nodes of one cell: entries both ways, audit heads witnessed."""
    sa, sb = hello(a), hello(b)
    # again, asking each for its audit line at the seq the other witnessed
    at_a, at_b = witnessed_seq(sb, sa["fp"]), witnessed_seq(sa, sb["fp"])
    sa = hello(a, at_a) if at_a else sa
    sb = hello(b, at_b) if at_b else sb
    if sa["cell"] != sb["cell"]:
        raise CellError(f"{sa['name']} and {sb['name']} are in different cells: nothing synced")
    if sa["fp"] == sb["fp"]:
        raise CellError(f"both ports reach the same node ({sa['name']}): give two nodes")
    legs = [send(a, b, sa, sb), send(b, a, sb, sa)]
    report = SyncReport(legs, [], forks(sa, sb), [])
    for fp in report.forks:  # each keeps the other's head as evidence (journal status)
        send_head(a, b, sa, fp, legs[0])
        send_head(b, a, sb, fp, legs[1])
    for client, me, peer in ((a, sa, sb), (b, sb, sa)):
        result = witness(client, peer)
        report.witnessed.append(Witness(me["name"], peer["name"], result["verdict"]))
        if result["alarm"]:
            report.alarms.append(f"{me['name']}: {peer['name']}'s audit log {result['alarm']}")
    return report
