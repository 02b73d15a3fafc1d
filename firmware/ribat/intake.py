"""Taking entries that come from elsewhere (an import, a sync): an entry is stored only
if the node named as its origin wrote it, and each one is reported as one of OUTCOMES.

An entry is authentic if its origin's signature verifies, or if its digest is the prev of
an entry already found authentic: senders give each origin's entries newest first, in
runs of at most journal.HELD_MAX, so a run costs one signature check and one SHA-256 per
entry (docs/security.md, journal). Entries in any other order are checked as well, one
signature each.
"""

from ribat import ed25519, entry, journal, keys

STORED = "stored"
DUPLICATE = "duplicate"
GAP = "gap"  # held until its predecessor comes
FORK = "fork"  # its origin signed two entries at one seq: kept as evidence
FORGED = "forged"  # not signed by its origin, altered, or not an entry at all
FOREIGN = "foreign"  # its origin is not in this node's roster
EXPIRED = "expired"  # authentic, past its expiry: its header kept, its content dropped
OUTCOMES = (STORED, DUPLICATE, GAP, FORK, FORGED, FOREIGN, EXPIRED)
_EVIDENCE_MAX = 8  # fork records kept per origin


class Intake:
    def __init__(self, node) -> None:
        self.journal: journal.Journal = node.journal
        self.feed = node.feed  # the watchdog, while a run joins its chain
        self.keys = entry.signing_keys(node.keyring.members().values())
        self.tally = {name: 0 for name in OUTCOMES}
        self.roomy = False  # heap enough to hold a journal batch open across puts (exchange)

    def take(self, raw: bytes, now: int) -> str:
        outcome = self._take(raw, now)
        self.tally[outcome] += 1
        return outcome

    def _signed(self, header: entry.Header) -> bool:
        raw = header.raw
        return bool(keys.sparing_gc(
            ed25519.verify,
            self.keys[header.origin], entry.message(raw), raw[entry.HEADER : entry.SIGNED]
        ))  # fmt: skip

    def _take(self, raw: bytes, now: int) -> str:
        parsed = entry.parse(raw)
        if parsed is None:
            return FORGED
        header, content = parsed
        if header.origin not in self.keys:
            return FOREIGN
        expired = header.expires <= now
        if content and not entry.content_matches(header, content):
            return FORGED  # altered content: its hash is in the signed header
        if not content and header.size and not expired:
            return FORGED  # a content withheld before its time
        j = self.journal
        origin, seq = header.origin, header.seq
        k = j.find(origin, seq)
        if k >= 0:
            if j.record(k)[: entry.SIGNED] == header.raw:
                return DUPLICATE
            return self._evidence(header, False)
        after = j.held.get((origin, seq + 1))
        vouched = after is not None and after[1] == header.digest()
        if not vouched and not self._signed(header):
            return FORGED
        head = j.head(origin)
        if seq == head + 1 and header.prev != j.head_digest(origin):
            return self._evidence(header, True)  # signed, yet not after the entry we hold
        if seq > head + 1 and (len(j.held) >= journal.HELD_MAX or seq > head + journal.HELD_MAX):
            return GAP  # too far ahead to hold: it comes again once its predecessors have
        j.make_room(header.size, now)
        flags = journal.PURGED if expired else 0
        if seq > head + 1:
            flags |= journal.HELD
        j.append(header.raw, b"" if expired else content, flags)
        if vouched:
            j.vouch(origin, seq)
        if seq == head + 1:
            j.connect(origin, self.feed)
            return EXPIRED if expired else STORED
        return GAP

    def _evidence(self, header: entry.Header, checked: bool) -> str:
        """An entry that contradicts one held: a fork if its origin signed it (both kept),
        else forged."""
        if not checked and not self._signed(header):
            return FORGED
        j = self.journal
        kept = j.forks.get(header.origin, ())
        for k in kept:
            if j.record(k)[: entry.SIGNED] == header.raw:
                return FORK
        if len(kept) < _EVIDENCE_MAX:
            j.append(header.raw, b"", journal.FORK | journal.PURGED)
        return FORK
