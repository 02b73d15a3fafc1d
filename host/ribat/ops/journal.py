"""The host side of the journal: post, list, show and acknowledge bulletins on a node, and
move its sealed entries to other nodes through export files. The node does the sealing,
the checks and the need-to-know (firmware/ribat/bulletins.py); the host handles what any
relay sees: entry headers and ciphertext (ribat.entry).

An export file:
    line 1     {"format": "ribat-journal v1", "cell", "node", "name", "partner", "t",
               "since", "entries"} as JSON
    entries    each a u32 big-endian length and the entry's bytes (ribat.entry)
    last line  "end " + the SHA-256 (hex) of every byte before it, so a file cut short or
               damaged is refused whole before anything reaches a node
"""

import collections
import contextlib
import hashlib
import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from ribat import entry
from ribat.device import boards
from ribat.device.client import NodeClient
from ribat.errors import CellError, DeviceError, RibatError, Unsupported
from ribat.results import Bulletin, JournalStatus, OriginChain

FORMAT = "ribat-journal v1"
# A Pico signs in about 1.2 s and verifies in 1.6 s (docs/security.md): a post may also
# derive a pairwise key per reader (0.5 s each); an import batch checks a signature per
# run and any entry out of order.
POST_TIMEOUT_S = 30.0
READ_TIMEOUT_S = 20.0
BATCH_TIMEOUT_S = 60.0
FRAME_SPARE = 256  # bytes of a frame body left for the header and meta around a batch
FRAME_ROOM = 4096 - FRAME_SPARE  # a batch in a node's largest frame
ROOM_MIN = 512  # the least asked of a node short of heap (one entry goes whole anyway)
LIST_PAGE = 2800  # bytes of list items a node puts in a page, unless asked for fewer
# A least page refused for memory is asked again this many times, this long apart: on a
# virtual Pico with two wires and a session, some 22 KB of its heap stay free, and a page
# of a 2 KB bulletin finds room or not as the wires' work moves it (refused two or three
# times in a row, half a second apart; tests/test_wire.py's chain of wires). Patience for
# a heap the node should spare: about one run in 25 of that test, every try is refused.
LIST_AGAIN = 8
LIST_PAUSE_S = 0.5


# The node's limits (firmware/ribat/bulletins.py: MAX_TITLE, MAX_BODY), checked here for a
# clear error before anything is sent; tests/test_journal.py holds them equal.
TITLE_BYTES = 200
BODY_BYTES = 2000


def _now() -> int:
    return int(time.time())


def post(
    client: NodeClient,
    kind: str,
    severity: str,
    to: list[str],
    title: str,
    body: str,
    expires_s: int,
    refs: list[str],
    indicators: list[list[str]] | None = None,
) -> dict:
    """Post a bulletin; indicators ([kind, value], ribat.ops.signals.parse) are sealed in
    it, and their tokens sent to the cell (a second, public entry)."""
    more = {"ind": indicators} if indicators else {}
    return client.request(
        "journal.post",
        timeout=POST_TIMEOUT_S,
        kind=kind,
        severity=severity,
        to=to,
        title=title,
        body=body,
        expires_s=expires_s,
        refs=refs,
        now=_now(),
        **more,
    )


def entries(
    client: NodeClient, since: int = 0, partner: str | None = None, kind: str | None = None
) -> list[Bulletin]:
    """The journal's bulletins with what the node lets us read of each, and who
    acknowledged each: those sealed to it first (by origin and seq), then the others by
    the time they were written."""
    out, _ = records_after(client, -1, **list_filters(since, partner, kind))
    return bulletins(out)


def bulletins(items: list[dict]) -> list[Bulletin]:
    """The bulletins among a list's items, in a list's order, each with who acknowledged
    it (from the acknowledgements among items)."""
    return [Bulletin.from_node(i) for i in with_acks(in_order(items))]


def list_filters(since: int = 0, partner: str | None = None, kind: str | None = None) -> dict:
    """What journal.list takes of a list's filters."""
    filters: dict = {"since": since}
    if partner:
        filters["from"] = partner
    if kind:
        filters["kind"] = kind
    return filters


def in_order(items: list[dict]) -> list[dict]:
    """Items as a list shows them: those sealed to this node first (by origin and seq),
    then the others by the time they were written."""
    return sorted(
        items, key=lambda i: (i.get("t", 0), i["id"].split(":")[0], int(i["id"].split(":")[1]))
    )


def records_after(client: NodeClient, after: int, **filters: object) -> tuple[list[dict], int]:
    """The items of the journal's records after record number after (-1: all), in the
    order the node stored them, and the number of the last record looked at."""
    out: list[dict] = []
    room = LIST_PAGE
    again = LIST_AGAIN
    while True:
        asked = {"page": room} if room < LIST_PAGE else {}
        try:
            page = client.request(
                "journal.list", timeout=READ_TIMEOUT_S, after=after, **filters, **asked
            )
        except DeviceError as e:
            # a node short of heap (a Pico W in a long session): ask for less, as an export;
            # at the least, again after a pause, as the node says (its wires' work and its
            # background derivations move what is free meanwhile)
            if e.cause != "memory" or (room <= ROOM_MIN and again == 0):
                raise
            if room <= ROOM_MIN:
                again -= 1
                time.sleep(LIST_PAUSE_S)
            room = max(ROOM_MIN, room // 2)
            continue
        out.extend(page["items"])
        after = page["next"]
        if page["done"]:
            return out, after


def with_acks(items: list[dict]) -> list[dict]:
    """The bulletins of items, each with "acks": who acknowledged it and when, from the
    acknowledgements among items (public entries, readable locked too), which go."""
    acks: dict[str, list[dict]] = {}
    for item in items:
        if item.get("k") == entry.ACK:
            for ref in item.get("r", ()):
                acks.setdefault(ref, []).append({"by": item["by"], "from": item["from"],
                                                 "t": item["t"]})  # fmt: skip
    return [
        {**item, "acks": acks.get(item["id"], [])}
        for item in items
        if item.get("k") not in entry.PUBLIC_KINDS
    ]


def show(client: NodeClient, entry_id: str) -> Bulletin:
    return Bulletin.from_node(client.request("journal.show", timeout=READ_TIMEOUT_S, id=entry_id))


def ack(client: NodeClient, entry_id: str) -> dict:
    return client.request("journal.ack", timeout=READ_TIMEOUT_S, id=entry_id)


def status(client: NodeClient) -> JournalStatus:
    return JournalStatus.from_node(client.request("journal.status"))


def parse_vector(text: str, origins: list[OriginChain]) -> dict[str, int]:
    """--since ORIGIN:SEQ,... (ORIGIN: a fingerprint, or its first 8 digits as in entry
    ids) as the node's vector {fingerprint: seq}, given its status's origins."""
    vector: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        origin, _, seq = part.rpartition(":")
        key = origin.replace("-", "").lower()
        matches = [o.fingerprint for o in origins
                   if o.fingerprint.replace("-", "").startswith(key)]  # fmt: skip
        if not origin or not seq.isdigit() or len(matches) != 1:
            raise ValueError(
                f"{part!r} is not ORIGIN:SEQ with an origin this node holds "
                "(a fingerprint or its first 8 digits, as in entry ids)"
            )
        vector[matches[0]] = int(seq)
    return vector


def verify(raws: list[bytes], keys: dict[bytes, bytes], now: int | None = None) -> list[str]:
    """What is wrong with a set of entries as a journal: per origin, an unbroken chain
    from seq 1, each content its header's (or purged once expired), each origin's newest
    entry signed by the key keys gives it (the chain vouches for the rest). Fork evidence
    (a second entry at a seq) is named. No problems: an empty list."""
    from ribat import ed25519

    now = _now() if now is None else now
    problems: list[str] = []
    by_origin: dict[bytes, dict[int, entry.Header]] = {}
    for raw in raws:
        parsed = entry.parse(raw)
        if parsed is None:
            problems.append("an entry that is not one (garbage)")
            continue
        header, content = parsed
        seen = by_origin.setdefault(header.origin, {})
        if header.seq in seen and seen[header.seq].raw != header.raw:
            problems.append(f"{header.id()}: two entries (a fork)")
            continue
        seen[header.seq] = header
        if content and not entry.content_matches(header, content):
            problems.append(f"{header.id()}: content altered")
        elif not content and header.size and header.expires > now:
            problems.append(f"{header.id()}: content missing before its expiry")
    for origin, chain in by_origin.items():
        key = keys.get(origin)
        if key is None:
            problems.append(f"{entry.fp_text(origin)}: not in the roster")
            continue
        head = max(chain)
        prev = entry.GENESIS
        for seq in range(1, head + 1):
            link = chain.get(seq)
            if link is None:
                problems.append(f"{entry.entry_id(origin, seq)}: missing")
                break
            if link.prev != prev:
                problems.append(f"{link.id()}: does not follow {entry.entry_id(origin, seq - 1)}")
                break
            prev = link.digest()
        else:
            last = chain[head].raw
            if not ed25519.verify(key, entry.message(last), last[entry.HEADER : entry.SIGNED]):
                problems.append(f"{chain[head].id()}: not signed by its origin")
    return problems


# -- export files ---------------------------------------------------------------------


def export_frames(
    client: NodeClient, since: dict[str, int], held: dict[str, list[int]] | None = None
) -> tuple[int, Iterator[list[bytes]]]:
    """Start an export of the node's entries past since, but those held (entries a
    receiver holds past a gap, as its sync summary names them): how many, and the
    entries frame by frame, as the node orders them for a receiver."""
    total = client.request("journal.export", since=since, held=held or {})["entries"]

    def frames() -> Iterator[list[bytes]]:
        pos = 0
        room = FRAME_ROOM  # at first not asked: as much as one frame holds
        while total:  # (nothing to send: no frame to ask for)
            asked = {"room": room} if room < FRAME_ROOM else {}
            try:
                meta, data = client.exchange("journal.next", b"", READ_TIMEOUT_S, pos=pos, **asked)
            except DeviceError as e:
                # A node low on heap, or with its heap scattered, finds no block for a
                # whole frame: ask for less, as a wire does (down to one entry a frame).
                if e.cause != "memory" or room <= ROOM_MIN:
                    raise
                room = max(ROOM_MIN, room // 2)
                continue
            batch = entry.unpack_batch(data)
            if batch is None:
                raise RibatError("the node sent a damaged batch of entries: try again")
            if batch:
                yield batch
            if meta["done"]:
                return
            pos = meta["next"]

    return total, frames()


def export(client: NodeClient, since: dict[str, int]) -> list[bytes]:
    """The node's entries past since, as the node orders them for a receiver."""
    return [raw for batch in export_frames(client, since)[1] for raw in batch]


def file_bytes(head: dict, entries: list[bytes]) -> bytes:
    body = bytearray(json.dumps({"format": FORMAT, **head}).encode() + b"\n")
    body += entry.pack_batch(entries)
    return bytes(body) + b"end " + hashlib.sha256(body).hexdigest().encode() + b"\n"


def read_file(path: Path) -> tuple[dict, list[bytes]]:
    """The head and entries of an export file; CellError for anything else."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CellError(f"cannot read {path}: {e.strerror}") from None
    first, _, rest = data.partition(b"\n")
    try:
        head = json.loads(first)
    except ValueError:
        head = None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise CellError(f"{path} is not a ribat journal export: nothing imported")
    cut = data.rfind(b"end ")
    digest = hashlib.sha256(data[:cut]).hexdigest().encode() if cut > 0 else b""
    batch = entry.unpack_batch(rest[: cut - len(first) - 1]) if cut > len(first) else None
    if not digest or data[cut + 4 :].strip() != digest or batch is None:
        raise CellError(
            f"{path} is cut short or damaged (its digest does not match): nothing "
            "imported; export it again"
        )
    if len(batch) != head.get("entries"):
        raise CellError(f"{path} holds {len(batch)} entries, not {head.get('entries')}")
    return head, batch


def send_order(raws: list[bytes]) -> list[bytes]:
    """Entries in the order a node checks fastest (entry.run_index): by origin, in runs
    of consecutive entries, each run newest first. Anything unparsable goes last, for
    the node to report."""
    by_origin: dict[bytes, list[tuple[int, bytes]]] = {}
    rest = []
    for raw in raws:
        parsed = entry.parse(raw)
        if parsed is None:
            rest.append(raw)
        else:
            by_origin.setdefault(parsed[0].origin, []).append((parsed[0].seq, raw))
    out: list[bytes] = []
    for items in by_origin.values():
        items.sort()
        out.extend(items[entry.run_index(len(items), p)][1] for p in range(len(items)))
    return out + rest


def frames(raws: Iterable[bytes], room: int) -> Iterator[list[bytes]]:
    """raws, in order, in batches of at most room bytes (entry.pack_batch)."""
    batch: list[bytes] = []
    size = 0
    for raw in raws:
        if batch and size + len(raw) + 4 > room:
            yield batch
            batch, size = [], 0
        batch.append(raw)
        size += len(raw) + 4
    if batch:
        yield batch


def put_batches(
    client: NodeClient, batches: Iterable[list[bytes]], total: int, source: str
) -> tuple[list[tuple[bytes, str]], dict[str, int]]:
    """Give batches of entries to the node as one import: (entry, outcome) for each
    entry the node was given (none past a full journal), and the node's vector after.
    An entry held as a gap and then connected by a later one is reported stored."""
    given: list[tuple[bytes, str]] = []
    client.request("journal.import", entries=total, source=source)
    try:
        _put_all(client, batches, given)
    except BaseException:
        # the import is ended still, if the node is there to end it; what went wrong is
        # what the user hears (a restart, not the "no import under way" that follows it)
        with contextlib.suppress(DeviceError):
            client.request("journal.end")
        raise
    vector = client.request("journal.end")["vector"]
    result = []
    for raw, outcome in given:
        parsed = entry.parse(raw)
        if (
            parsed
            and outcome == "gap"
            and vector.get(entry.fp_text(parsed[0].origin), 0) >= parsed[0].seq
        ):
            outcome = "stored"
        result.append((raw, outcome))
    return result, vector


def _put_all(
    client: NodeClient, batches: Iterable[list[bytes]], given: list[tuple[bytes, str]]
) -> None:
    """Give batches to the node, each read from its source (a file, another node) while
    the node takes the one before; sent, too, where the node's link holds a request it
    has not read yet (USB's flow control): the node then finds the next put waiting as it
    answers one, not after the host's turn (bench/chip.py --node)."""
    try:
        ahead = 1 if client.info and boards.load(client.info.board).link_holds else 0
    except (Unsupported, OSError):  # a board this host does not know: one at a time
        ahead = 0
    sent: collections.deque[tuple[int, list[bytes]]] = collections.deque()
    for batch in batches:
        if len(sent) > ahead and _answered(client, sent, given):
            return
        sent.append((_send_put(client, batch), batch))
    while sent:
        if _answered(client, sent, given):
            return


def _put(client: NodeClient, batch: list[bytes], given: list[tuple[bytes, str]]) -> bool:
    """Give one batch to the node and wait for its answer (_answered); whether its
    journal is full."""
    return _answered(client, collections.deque([(_send_put(client, batch), batch)]), given)


def _send_put(client: NodeClient, batch: list[bytes]) -> int:
    """Send a batch of the import, saying more: journal.end commits what the node keeps
    open for the next; its seq."""
    return client.send("journal.put", entry.pack_batch(batch), now=_now(), more=True)


def _answered(
    client: NodeClient, sent: "collections.deque[tuple[int, list[bytes]]]", given: list
) -> bool:
    """The answer to the oldest put sent, its outcomes added to given; whether the
    journal is full (the puts sent after it answered too). A put refused for memory (a
    node whose heap is fragmented) is given again in halves once those sent after it are
    answered (the node took them meanwhile: their entries then come before its own, and
    are checked as such)."""
    seq, batch = sent.popleft()
    try:
        meta, _ = client.answer(seq, "journal.put", BATCH_TIMEOUT_S)
    except DeviceError as e:
        if e.cause != "memory" or len(batch) == 1:
            raise
        full = False
        while sent and not full:
            full = _answered(client, sent, given)
        half = len(batch) // 2
        return full or _put(client, batch[:half], given) or _put(client, batch[half:], given)
    given.extend(zip(batch, meta["outcomes"], strict=False))
    if "full" not in meta:
        return False
    while sent:
        _answered(client, sent, given)
    return True


def import_entries(client: NodeClient, raws: list[bytes], source: str) -> list[tuple[str, str]]:
    """Give raws to the node; (entry id, outcome) for each, in the order given ("full"
    for those a full journal did not take)."""
    assert client.info is not None
    batches = frames(send_order(raws), client.info.max_frame - FRAME_SPARE)
    given, _ = put_batches(client, batches, len(raws), source)
    outcomes = {id(raw): outcome for raw, outcome in given}
    result = []
    for raw in raws:
        parsed = entry.parse(raw)
        result.append((parsed[0].id() if parsed else "?", outcomes.get(id(raw), "full")))
    return result
