"""The wire: a link to a peer node over a UART (one of the board layer's wires()), syncing with
no host in the loop.

Each node serves its peer the operations that show what a broker sees and nothing else:
sync.hello (the summary), journal.export and journal.next (sealed entries), and ping (a
node with no peer yet knocks with it: ribat.wires.watch). And every
few seconds it pulls: the peer's summary, a witness of the peer's audit head, then the
entries this node lacks, imported with every check and audit entry of an import. Both
ends pull, so both converge; a pull cut anywhere resumes from the vector, never
resending what arrived.
"""

import asyncio
import gc
import time

from micropython import const

from ribat import codec, keys
from ribat.link import Link, RequestError

_SERVED = ("ping", "sync.hello", "journal.export", "journal.next")
_PULL_MS = const(2000)  # between two pulls
_REPLY_MS = const(10000)  # a reply's longest wait: a 4 KB frame takes 0.36 s at 115200 baud
_WAIT_MS = const(10)
_ROOM_MIN = const(512)  # the least a batch asked of the peer holds (one entry at least)
_PEER_SPARE = const(256)  # of the UART's buffer: the peer's requests, beside its answer
_FRAME_SPARE = const(80)  # of a batch's frame: its header, meta and checksum
_SILENT_PULLS = const(2)  # pulls unanswered before the wire is let go (about 25 s)


class NoAnswer(OSError):
    """The peer did not answer: the wire is cut, or the peer is gone."""


class Wire(Link):
    def __init__(self, node, stream: object) -> None:
        super().__init__(node.link.max_body, stream)
        self.node = node
        self.plan = None  # the peer's export under way on this node
        self.held: dict = {}
        self.intake = None  # our import from the peer under way
        self.asked = 0  # seq of our request awaiting its reply
        self.reply: "codec.Frame | None" = None
        self.starved = False  # our reply came, and we had no memory to read it
        self.peer_fp = ""
        self.peer = ""
        self.pulls = 0
        self.imported = 0
        self.error = ""

    def summary(self) -> dict:
        return {"peer": self.peer, "pulls": self.pulls, "imported": self.imported,
                "error": self.error}  # fmt: skip

    # -- serving the peer ----------------------------------------------------------------

    def answer(self, frame: codec.Frame) -> tuple:
        """The peer's request, if it is one the wire serves, with the peer's own export."""
        meta = frame.meta
        assert meta is not None
        op = meta.get("op")
        if op not in _SERVED:
            raise RequestError(codec.UNKNOWN, "%r is not served on the wire" % (op,))
        from ribat import exchange, replica

        if op == "ping":
            return {}, b""
        ops = {"sync.hello": replica.hello, "journal.export": exchange.export,
               "journal.next": exchange.next_entries}  # fmt: skip
        result = self._session(ops[op], meta, frame.data)
        return result if isinstance(result, tuple) else (result, b"")

    def _session(self, op, meta: dict, data: bytes) -> object:
        """op(node, meta, data) with this wire's export and import on the node in place
        of the host's: one of each per link, the very operations the host uses."""
        node = self.node
        host = node.export_plan, node.export_held, node.intake
        node.export_plan, node.export_held, node.intake = self.plan, self.held, self.intake
        try:
            return op(node, meta, data)
        finally:
            self.plan, self.held, self.intake = node.export_plan, node.export_held, node.intake
            node.export_plan, node.export_held, node.intake = host

    # -- asking the peer -----------------------------------------------------------------

    def reject(self, cause: int, seq: int, message: str) -> None:
        if cause == codec.MEMORY and seq == self.asked:
            self.starved = True  # (were it the peer's request of the same seq, no matter)
        super().reject(cause, seq, message)

    def on_reply(self, frame: codec.Frame) -> None:
        if frame.seq == self.asked and frame.kind != codec.EVENT:
            self.reply = frame

    async def ask(self, op: str, meta: dict) -> tuple:
        """Send a request to the peer; its (meta, data). RequestError if it refused,
        OSError if it did not answer."""
        self.request(op, meta)
        return await self.answered()

    def request(self, op: str, meta: dict) -> None:
        """Send a request to the peer, its answer to come (answered()); one at a time."""
        self.asked = (self.asked % 30000) + 1
        self.reply = None
        self.starved = False
        meta["op"] = op
        self.send(codec.REQUEST, self.asked, meta)

    async def answered(self) -> tuple:
        """The (meta, data) of the peer's answer to the last request; RequestError if it
        refused, OSError if it did not answer, MemoryError if it found no heap."""
        started = time.ticks_ms()
        while self.reply is None:
            if self.starved:
                raise MemoryError
            if time.ticks_diff(time.ticks_ms(), started) > _REPLY_MS:
                raise NoAnswer("no answer on the wire")
            await asyncio.sleep_ms(_WAIT_MS)
        frame = self.reply
        self.reply = None
        got = frame.meta or {}
        if frame.kind == codec.ERROR:
            raise RequestError(codec.INTERNAL, "peer: %s" % got.get("message"))
        return got, frame.data

    async def pull(self) -> None:
        """Pull from the peer until it has not answered _SILENT_PULLS pulls in a row (the
        wire is cut, or the peer gone): the caller then gives the wire's heap back."""
        silent = 0
        while silent < _SILENT_PULLS:
            await asyncio.sleep_ms(_PULL_MS)
            try:
                await self._pull_once()
                self.error = ""
                silent = 0
            except NoAnswer as e:
                self.error = str(e)
                silent += 1
            except (OSError, RequestError, KeyError, TypeError, ValueError) as e:
                self.error = str(e)
            self.pulls += 1
            gc.collect()

    async def _pull_once(self) -> None:
        from ribat import replica

        node = self.node
        seen = replica.witnessed().get(self.peer_fp)
        asked = [seen["seq"]] if seen else []
        peer, _ = await self.ask("sync.hello", {"audit_at": asked})
        if peer["cell"] != node.keyring.cell():
            raise ValueError("the peer on the wire is of another cell")
        self.peer_fp, self.peer = peer["fp"], peer["name"]
        replica.witness(node, {"fp": peer["fp"], "audit": peer["audit"]}, b"")
        j = node.journal
        mine = j.vector_text()
        if all(n <= mine.get(fp, 0) for fp, n in peer["vector"].items()):
            return
        got, _ = await self.ask("journal.export", {"since": mine, "held": j.held_text()})
        if got["entries"]:
            await self._take(got["entries"])

    async def _take(self, total: int) -> None:
        from ribat import exchange

        node = self.node
        source = {"entries": total, "source": "wire:" + self.peer}
        self._session(exchange.import_begin, source, b"")
        pos = 0
        # A batch asked for comes whole into the UART's buffer however long this node is
        # busy meanwhile (a host's post, another wire's put: the UART drops what comes past
        # its buffer), the peer's own requests beside it; the next is asked for as this
        # one is put, so the wire carries one while the node takes the other.
        rxbuf = node.board.wire_rxbuf()
        room = node.link.max_body - 256
        if rxbuf:
            room = max(_ROOM_MIN, min(room, (rxbuf - _PEER_SPARE) * 3 // 4 - _FRAME_SPARE))
        asked = False  # the batch at pos asked for already
        try:
            while True:
                gc.collect()  # a batch needs blocks that big, twice
                try:
                    if not asked:
                        self.request("journal.next", {"pos": pos, "room": room})
                    got, data = await self.answered()
                except MemoryError:
                    asked = False
                    if room <= _ROOM_MIN:
                        raise OSError("no memory for the peer's entries") from None
                    room //= 2  # ask for less at a time
                    continue
                asked = not got["done"]
                if asked:
                    self.request("journal.next", {"pos": got["next"], "room": room})
                # one open batch across the puts (journal.end, in the finally, commits it)
                put: dict = self._session(exchange.put, {"more": asked}, data)  # type: ignore[assignment]
                self.imported += put["outcomes"].count("stored")
                if got["done"] or "full" in put:
                    break
                pos = got["next"]
        finally:
            self._session(exchange.import_end, {}, b"")
            if node.keyring.state != "unlocked" and node.intake is None:
                keys.unload_crypto()
