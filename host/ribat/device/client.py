"""The host side of the device-management protocol: requests, responses and events with a
ribat node over a Port.

connect() is what every command uses: it opens the port, says hello, and when nothing
answers finds out why through the REPL (no firmware, firmware stopped, not MicroPython).
"""

import collections
import json
import time
from dataclasses import dataclass

from ribat import codec, session
from ribat.device.transport import Port
from ribat.errors import (
    BoardRestarted,
    DeviceError,
    Locked,
    NoAnswer,
    NotRibat,
    ProtocolMismatch,
    Refused,
    WrongPin,
    WrongState,
)

HELLO_TIMEOUT_S = 1.0  # a running node answers in milliseconds
BOOT_TIMEOUT_S = 8.0  # from a reset to the first answer of a freshly started node
BOOT_RETRY_S = 0.3  # a hello sent while the board resets is lost: ask again this often
REQUEST_TIMEOUT_S = 3.0
REPL_PROMPT = b"\n>>> "  # the friendly REPL is waiting: no application runs
HOST_MAX_BODY = 16384  # largest frame body we accept from a node
EVENT_BACKLOG = 1024  # events kept while waiting for a response; older ones are dropped
TEXT_BACKLOG = 4096  # bytes of non-frame output (REPL text, tracebacks) kept for diagnosis

# The error raised for each cause of refusal that the user acts on differently.
REFUSALS: dict[str, type[DeviceError]] = {
    "locked": Locked,
    "pin": WrongPin,
    "state": WrongState,
    "refused": Refused,
}


@dataclass
class NodeInfo:
    """What a node says of itself in its hello."""

    proto: int
    firmware: str
    revision: str | None
    build: str | None
    board: str
    name: str
    partner: str
    uid: str
    boot: str  # random for each start of the application
    slot: str
    fallback: bool
    max_frame: int
    config_error: str | None
    micropython: str
    mpy: int  # sys.implementation._mpy
    floor: str | None = None  # the highest release it confirmed (ribat.update)
    trial: int | None = None  # the starts of a release on trial
    reverted: dict | None = None  # the last release, if it went back

    @classmethod
    def from_meta(cls, m: dict) -> "NodeInfo":
        return cls(
            proto=m["proto"],
            firmware=m["fw"],
            revision=m.get("revision"),
            build=m.get("build"),
            board=m["board"],
            name=m["name"],
            partner=m["partner"],
            uid=m["uid"],
            boot=m["boot"],
            slot=m["slot"],
            fallback=m["fallback"],
            max_frame=m["max_frame"],
            config_error=m.get("config_error"),
            micropython=m.get("micropython", ""),
            mpy=m.get("mpy", 0),
            floor=m.get("floor"),
            trial=m.get("trial"),
            reverted=m.get("reverted"),
        )


def mismatch(node_version: int) -> ProtocolMismatch:
    if node_version > codec.VERSION:
        advice = "update ribat on this host (pip install -U ribat)"
    else:
        advice = "deploy this host's firmware to the node (ribat flash)"
    return ProtocolMismatch(
        f"protocol version mismatch: this host speaks ribat protocol {codec.VERSION}, "
        f"the node speaks {node_version}: {advice}"
    )


class NodeClient:
    def __init__(self, port: Port) -> None:
        self.port = port
        self.deframer = codec.Deframer(HOST_MAX_BODY)
        self.seq = 0
        self.events: collections.deque[codec.Frame] = collections.deque(maxlen=EVENT_BACKLOG)
        self.inbox: collections.deque[codec.Frame] = collections.deque()  # read, not yet seen
        self.text = bytearray()  # recent non-frame output
        self.prompted = False  # a REPL prompt came since the last request was sent
        self.info: NodeInfo | None = None
        # An unlocked session (ribat.session): every request is then numbered and MAC'd.
        self.session_key: bytes | None = None
        self.session_n = 0

    def close(self) -> None:
        self.port.close()

    def __enter__(self) -> "NodeClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- receiving ---------------------------------------------------------------------

    def _frames(self, timeout: float) -> list[codec.Frame]:
        """Frames completed by what arrives within timeout (possibly none)."""
        frames = []
        for b in self.port.read(timeout):
            got = self.deframer.push(b)
            if got == -2:
                try:
                    frames.append(codec.decode(bytes(self.deframer.line())))
                except codec.FrameError:
                    pass  # a damaged frame from the node: its request will time out
            elif got == -1 and self.deframer.state == codec.Deframer.IDLE:
                self.text.append(b)
                if b == 32 and self.text.endswith(REPL_PROMPT):
                    self.prompted = True
        del self.text[:-TEXT_BACKLOG]
        return frames

    def _wait(self, seq: int, timeout: float) -> codec.Frame | None:
        """The response or error to request seq; None if none comes in time, or at once if
        the board's REPL prompts instead (no node runs to answer). BoardRestarted at once
        if the node announces a start other than the one that said hello: what was asked
        of the node before is lost with it."""
        deadline = time.monotonic() + timeout * self.port.slowness
        self.prompted = False
        while True:
            # frames come in order; those after the answer (to requests sent after this
            # one, or events) wait in the inbox for the next call
            while self.inbox:
                frame = self.inbox.popleft()
                if frame.version != codec.VERSION and frame.kind in (codec.ERROR, codec.RESPONSE):
                    raise mismatch(frame.version)
                if frame.kind == codec.EVENT:
                    self.events.append(frame)
                    meta = frame.meta or {}
                    known = self.info.boot if self.info is not None else None
                    if meta.get("event") == "boot" and known not in (None, meta.get("boot")):
                        raise BoardRestarted(
                            f"{self.port.name} restarted ({meta.get('reset_cause')} "
                            "reset) before it answered"
                        )
                elif frame.seq == seq and frame.kind in (codec.RESPONSE, codec.ERROR):
                    return frame  # (a REPL echoing our request back is not an answer)
            left = deadline - time.monotonic()
            if left <= 0 or self.prompted:
                return None
            self.inbox.extend(self._frames(left))

    def next_event(self, timeout: float) -> dict | None:
        """The next telemetry (or other) event's meta, or None if none came in time."""
        deadline = time.monotonic() + timeout
        while not self.events and (left := deadline - time.monotonic()) > 0:
            frames = list(self.inbox) if self.inbox else self._frames(left)
            self.inbox.clear()
            for frame in frames:
                if frame.kind == codec.EVENT and frame.meta is not None:
                    self.events.append(frame)
        if not self.events:
            return None
        frame = self.events.popleft()
        return {**(frame.meta or {}), "seq": frame.seq}

    # -- requests ----------------------------------------------------------------------

    def open_session(self, mac_key: bytes) -> None:
        self.session_key, self.session_n = mac_key, 0

    def close_session(self) -> None:
        self.session_key = None

    def request(self, op: str, timeout: float = REQUEST_TIMEOUT_S, **args: object) -> dict:
        return self.exchange(op, b"", timeout, **args)[0]

    def exchange(
        self, op: str, data: bytes = b"", timeout: float = REQUEST_TIMEOUT_S, **args: object
    ) -> tuple[dict, bytes]:
        """A request carrying data bytes; the response's meta and data."""
        return self.answer(self.send(op, data, **args), op, timeout)

    def send(self, op: str, data: bytes = b"", **args: object) -> int:
        """Send a request carrying data bytes, not waiting for its answer: its seq, for
        answer(). A node answers its requests in the order they came."""
        self.seq = (self.seq + 1) & 0xFFFF
        meta: dict = {"op": op, **args}
        if self.session_key is not None:  # the session's: numbered, and MAC'd with its data
            text = json.dumps(args, separators=(",", ":"))
            self.session_n += 1
            tag = session.mac(self.session_key, self.session_n, op, text, data)
            meta = {"op": op, "a": text, "n": self.session_n, "mac": tag.hex()}
        line = codec.encode(codec.REQUEST, self.seq, meta, data)
        if self.info is not None and len(line) > codec.encoded_size(self.info.max_frame) + 2:
            raise DeviceError(
                f"{op!r} does not fit in one frame: the node takes up to "
                f"{self.info.max_frame} bytes per frame",
                "oversize",
            )
        self.port.write(line)
        return self.seq

    def answer(self, seq: int, op: str, timeout: float = REQUEST_TIMEOUT_S) -> tuple[dict, bytes]:
        """The meta and data of the response to request seq (an op), sent with send()."""
        try:
            frame = self._wait(seq, timeout)
        except BoardRestarted as e:
            raise BoardRestarted(f"{e} {doing(op)}: try again") from None
        if frame is None:
            raise NoAnswer(
                f"no answer from {self.port.name} {doing(op)} within "
                f"{timeout * self.port.slowness:g} s: is it busy, or stuck? (`ribat status`, "
                "`ribat reset`)"
            )
        assert frame.meta is not None
        if frame.kind == codec.ERROR:
            cause = frame.meta.get("error", "")
            error = REFUSALS.get(cause, DeviceError)
            if cause == "memory":  # what the user can do: less where it is theirs to give
                remedy = "post a shorter one" if op == "journal.post" else "try again"
                raise error(
                    f"{self.port.name} ran short of memory {doing(op)}: {remedy}; if it "
                    "persists, restart the node (`ribat reset`) to free its heap",
                    cause,
                )
            why = frame.meta.get("message")
            raise error(f"{self.port.name} refused {action(op)}: {why}", cause)
        return frame.meta, frame.data

    def hello(self, timeout: float = HELLO_TIMEOUT_S) -> NodeInfo:
        self.info = NodeInfo.from_meta(self.request("hello", timeout=timeout))
        return self.info

    def wait_ready(self, timeout: float = BOOT_TIMEOUT_S, not_boot: str = "") -> NodeInfo:
        """hello, repeated until a node that is resetting has started and answers (from a
        boot other than not_boot, when given); given up early if the board reaches its REPL
        prompt instead (the application stopped)."""
        deadline = time.monotonic() + timeout * self.port.slowness
        while True:
            left = deadline - time.monotonic()
            try:
                info = self.hello(timeout=min(BOOT_RETRY_S, max(0.05, left)))
                if info.boot != not_boot:
                    return info
                self._watch_for_boot(min(BOOT_RETRY_S, max(0.0, left)))
            except BoardRestarted:
                pass  # what it waits for: the node that starts says hello next
            except NoAnswer:
                if self.prompted:
                    raise
            if time.monotonic() >= deadline:
                waited = timeout * self.port.slowness
                raise NoAnswer(f"{self.port.name} did not come back within {waited:g} s")

    def _watch_for_boot(self, timeout: float) -> None:
        """Read what the node says for up to timeout, stopping early when it starts."""
        deadline = time.monotonic() + timeout * self.port.slowness
        while (left := deadline - time.monotonic()) > 0:
            for frame in self._frames(left):
                if frame.kind == codec.EVENT:
                    self.events.append(frame)
                    if (frame.meta or {}).get("event") == "boot":
                        return

    def boot_words(self) -> str:
        """What the board last said before its REPL prompt: why the application stopped."""
        text = bytes(self.text).split(REPL_PROMPT)[0]
        return last_words(text.decode(errors="replace"))


_CHATTER = (">>>", "MicroPython ", 'Type "help()"', "MPY: soft reboot", "raw REPL")


def last_words(text: str) -> str:
    """The last line a board printed that is not its REPL's prompt or banner: usually the
    exception that stopped it."""
    lines = [line.strip() for line in text.splitlines()]
    meaningful = [line for line in lines if line and not line.startswith(_CHATTER)]
    return meaningful[-1] if meaningful else ""


# What each request is to the person who asked (people know what they did, not its name
# on the wire): "for posting the bulletin". Others: "for 'op'".
_DOING = {
    "hello": "greeting it", "status": "reading its status", "reset": "restarting it",
    "config.get": "reading its configuration", "config.set": "changing its configuration",
    "identity": "reading its identity", "provision": "provisioning it",
    "roster.load": "loading the roster", "cell.pairs": "deriving its pairwise keys",
    "unlock": "unlocking it", "lock": "locking it", "pin.change": "changing the PIN",
    "pin.key": "the PIN check", "wipe": "wiping it", "audit.read": "reading its audit log",
    "journal.post": "posting the bulletin", "journal.list": "listing its journal",
    "journal.show": "reading the bulletin", "journal.ack": "acknowledging the bulletin",
    "journal.status": "reading its journal's status", "journal.export": "exporting entries",
    "journal.next": "exporting entries", "journal.import": "importing entries",
    "journal.put": "importing entries", "journal.end": "importing entries",
    "sync.hello": "the sync summary", "sync.witness": "witnessing its peer's audit head",
    "signals.check": "the lookup", "signals.list": "listing its convergences",
    "signals.ack": "acknowledging the convergences", "fw.verify": "checking its firmware",
    "fw.offer": "offering the release", "fw.put": "sending the release",
    "fw.commit": "installing the release", "fw.confirm": "confirming the release",
}  # fmt: skip


def action(op: str) -> str:
    """What request op is to the person who asked: "posting the bulletin"."""
    return _DOING.get(op, repr(op))


def doing(op: str) -> str:
    return "for " + action(op)


def connect(path: str) -> NodeClient:
    """A client to the ribat node on path, started if it was stopped at the REPL."""
    port = Port(path)
    client = NodeClient(port)
    try:
        # a node just powered or reset answers once started (its REPL cannot help: a
        # sealed node ignores Ctrl-C); the REPL's prompt, if it comes, ends the wait
        client.wait_ready()
        return client
    except NoAnswer:
        pass
    except BaseException:
        port.close()
        raise
    # Nothing answered the protocol: ask the REPL what is there. The port stays open from
    # here on, so we hear what the board prints as it restarts.
    from ribat.device.repl import IS_INSTALLED, RawRepl, board_script

    try:
        r = RawRepl(port)
        r.enter(soft_reset=False)
        installed = r.eval_json(board_script(IS_INSTALLED))
        if not installed["firmware"]:
            raise NotRibat(
                f"{path} runs MicroPython {installed['micropython']} but not ribat: "
                f"deploy it with `ribat flash --port {path}`"
            )
        r.start_app()
        client = NodeClient(port)
        try:
            client.wait_ready()
        except NoAnswer:
            said = client.boot_words()
            detail = f" (it said: {said})" if said else ""
            raise NotRibat(
                f"ribat firmware is installed on {path} but does not start{detail}: "
                f"deploy it again with `ribat flash --port {path}`"
            ) from None
    except BaseException:
        port.close()
        raise
    return client
