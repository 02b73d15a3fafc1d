"""A broker that misbehaves on command: a TCP proxy in front of a real MQTT broker that
reads the MQTT packets crossing it and, to PUBLISH packets either way, applies a delay, a
random extra delay (which reorders them), duplication and loss; it also cuts off the
clients of partitioned nodes (known by their user name, a node's fingerprint).

Together with the broker behind it, it is the malicious or failing broker the cell must
survive: it can delay, reorder, duplicate and drop, never forge (it holds no key). A
dropped QoS 1 message is acknowledged to its sender by the proxy, as a broker that lost
it after taking it would: the sender's window never jams, the message is simply gone.
"""

import heapq
import itertools
import random
import socket
import threading
import time
from dataclasses import asdict, dataclass, field

PUBLISH = 3
CONNECT = 1
PUBACK = 4
_LISTEN_BACKLOG = 64
_SENDER_IDLE_S = 0.5


@dataclass
class Faults:
    delay_ms: float = 0.0  # every packet, both ways
    jitter_ms: float = 0.0  # up to this much more per PUBLISH: reorders them
    drop: float = 0.0  # probability a PUBLISH is lost
    duplicate: float = 0.0  # probability a PUBLISH is delivered twice


@dataclass
class Tally:
    published: int = 0
    dropped: int = 0
    duplicated: int = 0
    cut: int = 0  # connections refused or closed for a partition


@dataclass
class _Packet:
    first: int  # the fixed header's first byte
    raw: bytes  # the whole packet

    @property
    def kind(self) -> int:
        return self.first >> 4

    @property
    def body(self) -> bytes:
        i = 1
        while self.raw[i] & 0x80:
            i += 1
        return self.raw[i + 1 :]


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _read_packet(sock: socket.socket) -> _Packet:
    head = _read_exactly(sock, 1)
    length, shift, size = 0, 0, b""
    while True:
        b = _read_exactly(sock, 1)
        size += b
        length |= (b[0] & 0x7F) << shift
        shift += 7
        if not b[0] & 0x80:
            break
        if shift > 21:
            raise ConnectionError("malformed MQTT length")
    return _Packet(head[0], head + size + _read_exactly(sock, length))


def _string(body: bytes, at: int) -> tuple[bytes, int]:
    n = int.from_bytes(body[at : at + 2], "big")
    return body[at + 2 : at + 2 + n], at + 2 + n


def _varint(body: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        b = body[at]
        at += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, at


def user_name(connect: _Packet) -> str:
    """The user name a CONNECT packet carries ('' if none), MQTT 3.1.1 or 5."""
    body = connect.body
    _, at = _string(body, 0)  # protocol name
    level, flags = body[at], body[at + 1]
    at += 4  # level, flags, keep alive
    if level >= 5:
        n, at = _varint(body, at)  # properties
        at += n
    _, at = _string(body, at)  # client id
    if flags & 0x04:  # a will
        if level >= 5:
            n, at = _varint(body, at)
            at += n
        _, at = _string(body, at)
        _, at = _string(body, at)
    if not flags & 0x80:
        return ""
    name, _ = _string(body, at)
    return name.decode(errors="replace")


def _packet_id(publish: _Packet) -> bytes | None:
    """A PUBLISH's packet id, None at QoS 0."""
    if not (publish.first >> 1) & 3:
        return None
    _, at = _string(publish.body, 0)
    return publish.body[at : at + 2]


class _Sender:
    """Sends packets into one socket when each is due, in order of due time."""

    def __init__(self, sock: socket.socket, on_error: "threading.Event") -> None:
        self.sock = sock
        self.failed = on_error
        self.due: list[tuple[float, int, bytes]] = []
        self.order = itertools.count()
        self.wake = threading.Condition()
        threading.Thread(target=self._run, daemon=True).start()

    def push(self, data: bytes, delay_s: float) -> None:
        with self.wake:
            heapq.heappush(self.due, (time.monotonic() + delay_s, next(self.order), data))
            self.wake.notify()

    def _run(self) -> None:
        while not self.failed.is_set():
            with self.wake:
                if not self.due:
                    self.wake.wait(_SENDER_IDLE_S)
                    continue
                at, _, data = self.due[0]
                left = at - time.monotonic()
                if left > 0:
                    self.wake.wait(left)
                    continue
                heapq.heappop(self.due)
            try:
                self.sock.sendall(data)
            except OSError:
                self.failed.set()


class _Connection:
    def __init__(self, proxy: "FaultProxy", client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = socket.create_connection(proxy.upstream)
        self.user: str | None = None
        self.closed = threading.Event()
        self.to_broker = _Sender(self.upstream, self.closed)
        self.to_client = _Sender(self.client, self.closed)
        for source, ahead, back in (
            (client, self.to_broker, self.to_client),
            (self.upstream, self.to_client, self.to_broker),
        ):
            threading.Thread(target=self._pump, args=(source, ahead, back), daemon=True).start()
        threading.Thread(target=self._reaper, daemon=True).start()

    def _pump(self, source: socket.socket, ahead: _Sender, back: _Sender) -> None:
        try:
            while not self.closed.is_set():
                packet = _read_packet(source)
                if packet.kind == CONNECT and source is self.client:
                    self.user = user_name(packet)
                    if self.proxy.is_cut(self.user):
                        self.proxy.count("cut")
                        break
                self._forward(packet, ahead, back)
        except (OSError, ConnectionError, IndexError):
            pass
        self.closed.set()

    def _forward(self, packet: _Packet, ahead: _Sender, back: _Sender) -> None:
        faults = self.proxy.faults
        rng = self.proxy.random
        delay = faults.delay_ms / 1000
        if packet.kind != PUBLISH:
            ahead.push(packet.raw, delay)
            return
        self.proxy.count("published")
        if rng.random() < faults.drop:
            self.proxy.count("dropped")
            pid = _packet_id(packet)
            if pid is not None:  # acknowledged, then lost
                back.push(bytes([PUBACK << 4, 2]) + pid, delay)
            return
        copies = 2 if rng.random() < faults.duplicate else 1
        if copies == 2:
            self.proxy.count("duplicated")
        for _ in range(copies):
            ahead.push(packet.raw, delay + rng.random() * faults.jitter_ms / 1000)

    def _reaper(self) -> None:
        self.closed.wait()
        for s in (self.client, self.upstream):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self.proxy.forget(self)

    def close(self) -> None:
        self.closed.set()


@dataclass
class FaultProxy:
    upstream: tuple[str, int]
    seed: int | None = None
    faults: Faults = field(default_factory=Faults)
    tally: Tally = field(default_factory=Tally)
    partitioned: set[str] = field(default_factory=set)  # user names cut off

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)
        self.lock = threading.Lock()
        self.connections: list[_Connection] = []
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(_LISTEN_BACKLOG)
        self.host, self.port = self.listener.getsockname()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                connection = _Connection(self, client)
            except OSError:  # the broker behind is gone
                client.close()
                continue
            with self.lock:
                self.connections.append(connection)

    def forget(self, connection: _Connection) -> None:
        with self.lock:
            if connection in self.connections:
                self.connections.remove(connection)

    def count(self, what: str) -> None:
        with self.lock:
            setattr(self.tally, what, getattr(self.tally, what) + 1)

    def is_cut(self, user: str) -> bool:
        return user in self.partitioned

    def set_faults(self, faults: Faults) -> None:
        self.faults = faults

    def partition(self, users: set[str]) -> None:
        """Cut these users off now and refuse them until healed."""
        self.partitioned |= users
        with self.lock:
            cut = [c for c in self.connections if c.user in users]
        for c in cut:
            self.count("cut")
            c.close()

    def heal(self, users: set[str] | None = None) -> None:
        self.partitioned -= self.partitioned if users is None else users

    def status(self) -> dict:
        return {"faults": asdict(self.faults), "tally": asdict(self.tally),
                "partitioned": sorted(self.partitioned)}  # fmt: skip

    def close(self) -> None:
        self.listener.close()
        with self.lock:
            connections = list(self.connections)
        for c in connections:
            c.close()
