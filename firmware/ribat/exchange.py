"""How entries move between nodes, the node's part: what its journal holds
(journal.status), an export of the entries a receiver lacks (journal.export, then
journal.next) and an import (journal.import, journal.put, journal.end), whoever relays
them: a host's file, a host's sync, a wire, a broker's gateway. Loaded when first asked
for and kept; a locked node syncing needs none of the bulletins' own operations.
"""

import gc
import struct
import time
from binascii import hexlify

from micropython import const

from ribat import codec, entry, journal
from ribat.link import RequestError, arg

# The most appends an import's puts keep in one open batch: a run (entry.RUN), its
# records held in memory meanwhile (156 bytes each, 10 KB) against one erase a file a
# commit (24 entries a batch: 16.6 ms of flash an entry on the emulated Pico; 64: 13.5).
_BATCH_MAX = const(64)
# A batch is held open across puts only with this much heap free at the import's start
# (asked once: gc.mem_free() walks the whole heap, 8 ms on an RP2040): a Pico between
# two wires, with a session, has some 22 KB (a virtual one), and its import was refused
# for memory once its puts held their records too.
_HOLD_FREE = const(40960)


def status(node, meta: dict, data: bytes) -> dict:
    j = node.journal
    members = node.keyring.members()
    origins = []
    for origin, head in j.vector().items():
        m = members.get(origin)
        origins.append(
            {
                "fp": entry.fp_text(origin),
                "name": m["name"] if m else None,
                "partner": m["partner"] if m else None,
                "head": head,
                "digest": hexlify(j.head_digest(origin)).decode(),
                "held": sum(1 for o, _ in j.held if o == origin),
                "forks": len(j.forks.get(origin, ())),
            }
        )
    return {
        "entries": j.count,
        "origins": origins,
        "held": len(j.held),
        "free": j.free(),
        "reserve": j.reserve,
        "cell": node.keyring.cell(),
        "fp": node.keyring.identity["fp"] if node.keyring.identity else None,
    }


def _skipped(node, at: "tuple[bytes, int]") -> bool:
    """Whether the receiver already holds the entry at (past a gap in its chain)."""
    held = node.export_held.get(at[0])
    return held is not None and at[1] in held


def _position(plan: list, p: int) -> "tuple[bytes, int] | None":
    """The origin and seq of the entry at place p of an export (entry.run_index)."""
    for origin, lo, hi in plan:
        n = hi - lo + 1
        if p < n:
            return origin, lo + entry.run_index(n, p)
        p -= n
    return None


def export(node, meta: dict, data: bytes) -> dict:
    """Start an export of the entries past a vector (origin fp -> seq), but those the
    receiver says it holds already past a gap ("held": origin fp -> [seq]): recorded,
    then read with journal.next. Nothing to send records nothing."""
    node.keyring.need("locked")
    since = arg(meta, "since", dict, {})
    held_text = arg(meta, "held", dict, {})
    j = node.journal
    held: dict = {}
    count = 0
    for fp, seqs in held_text.items():  # type: ignore[attr-defined]
        try:
            held[entry.origin_bytes(fp)] = seqs
        except ValueError:
            seqs = None
        if not isinstance(seqs, list) or not all(isinstance(n, int) for n in seqs):
            raise RequestError(codec.ARGS, "'held' maps fingerprints to lists of seqs")
        count += len(seqs)
    if count > journal.HELD_MAX:
        raise RequestError(codec.ARGS, "'held' names at most %d entries" % journal.HELD_MAX)
    plan = []
    total = 0
    for origin, head in j.vector().items():
        low = since.get(entry.fp_text(origin), 0)  # type: ignore[attr-defined]
        if not isinstance(low, int) or low < 0:
            raise RequestError(codec.ARGS, "'since' maps fingerprints to sequence numbers")
        if head > low:
            plan.append((origin, low + 1, head))
            total += head - low - sum(1 for n in held.get(origin, ()) if low < n <= head)
    node.export_plan = plan
    node.export_held = held
    if total:
        node.audit_room(exchange=True)
        node.audit.append("export", {"entries": total})
    return {"entries": total}


def next_entries(node, meta: dict, data: bytes) -> tuple:
    """The export's entries from place pos, as many as fit one frame, or room bytes if
    the receiver asks for less (at least one entry)."""
    pos: int = arg(meta, "pos", int)  # type: ignore[assignment]
    if pos < 0:
        raise RequestError(codec.ARGS, "'pos' counts entries from 0")
    most = node.link.max_body - 256
    room = min(arg(meta, "room", int, most), most)
    plan = node.export_plan
    if plan is None:
        raise RequestError(codec.STATE, "no export under way: start one (journal.export)")
    j = node.journal
    # The batch (entry.pack_batch's format) is built in one buffer of its final size at
    # most: a list of entries, then their batch, then its copy held three blocks of 4 KB.
    out = bytearray(room)
    size = 0
    p = pos
    while True:
        at = _position(plan, p)
        if at is None:
            break
        if _skipped(node, at):
            p += 1
            continue
        rec = j.record(j.find(at[0], at[1]))
        content = j.content(rec)
        n = entry.SIGNED + len(content)
        if size and size + n + 4 > room:
            break
        if n + 4 > len(out):  # an entry larger than room goes alone
            out = bytearray(n + 4)
        struct.pack_into(">I", out, size, n)
        out[size + 4 : size + 4 + entry.SIGNED] = rec[: entry.SIGNED]
        out[size + 4 + entry.SIGNED : size + 4 + n] = content
        size += n + 4
        p += 1
    done = _position(plan, p) is None
    return {"pos": pos, "next": p, "done": done}, memoryview(out)[:size]


def import_begin(node, meta: dict, data: bytes) -> dict:
    node.keyring.need("locked")
    entries = arg(meta, "entries", int)
    node.audit_room(exchange=True)
    node.audit.append("import", {"entries": entries, "source": arg(meta, "source", str, "")})
    from ribat import intake

    taker = node.intake = intake.Intake(node)
    gc.collect()  # (the modules' loading left garbage: counted as used, it is not)
    taker.roomy = gc.mem_free() > _HOLD_FREE
    return {}


def put(node, meta: dict, data: bytes) -> dict:
    """Entries of an import, each checked and stored or not: one outcome each; a full
    journal stops the batch there. With "more", the journal's batch stays open for the
    next put (up to _BATCH_MAX entries): the outcomes are then the node's word once the
    import ends (journal.end commits them), and a cut before takes the open batch back
    whole. Each commit costs an erase a file; a put of 4 KB holds some six entries."""
    taker = node.intake
    if taker is None:
        raise RequestError(codec.STATE, "no import under way: start one (journal.import)")
    batch = entry.unpack_batch(memoryview(data))
    if batch is None:
        raise RequestError(codec.ARGS, "not a batch of entries (cut short?): nothing taken")
    node.follow_clock(meta.get("now"))
    now = int(time.time())
    outcomes: list = []
    j = node.journal
    j.begin()
    taken = False  # every entry looked at: the batch may stay open
    try:
        for raw in batch:
            node.feed()  # a batch outlasts an RP2040's 8 s watchdog (bench/chip.py --node)
            try:
                outcomes.append(taker.take(raw, now))
            except RequestError as e:
                return {"outcomes": outcomes, "full": e.message}
        taken = True
    finally:
        hold = meta.get("more") is True and j.batched() < _BATCH_MAX
        if not (taken and hold and taker.roomy):
            j.end()  # (a put that failed, for memory or else, leaves nothing held open)
    return {"outcomes": outcomes}


def import_end(node, meta: dict, data: bytes) -> dict:
    taker = node.intake
    if taker is None:
        raise RequestError(codec.STATE, "no import under way")
    node.intake = None
    node.journal.end()  # what the last puts left open: on flash before the answer
    node.audit.append("imported", {k: v for k, v in taker.tally.items() if v})
    return {"tally": taker.tally, "vector": node.journal.vector_text()}


OPS = {
    "journal.status": status,
    "journal.export": export,
    "journal.next": next_entries,
    "journal.import": import_begin,
    "journal.put": put,
    "journal.end": import_end,
}
