"""One node bridged to the broker: the gateway's rounds (ribat.gateway says what
crosses which topic)."""

import hashlib
import json
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ribat import entry
from ribat.device.client import NodeClient
from ribat.errors import PortBusy, RibatError
from ribat.gateway.broker import (
    HEARTBEAT_S,
    STALE_S,
    connect_to,
    is_summary,
    json_doc,
    topics,
)
from ribat.ops import journal as lib
from ribat.ops import sync

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

IMPORT_MAX = 256  # entries given to the node per round: a round stays short on a Pico
# A message the broker may have lost: our own entry or summary that has not come back to
# us, or a peer's entry that its summary says exists and that has not come. After this
# long we publish it again, or subscribe again to have the broker resend what it retains.
RESEND_S = 5.0
RECONNECT_S = (1, 8)  # the least and most seconds between attempts to reach the broker
# The port is left free this long between rounds however busy the broker is, so that the
# site's operator (`ribat post`, who waits for a busy port) always gets a turn.
ROUND_GAP_S = 0.5
_DONE = ("forged", "foreign", "fork")  # outcomes not worth offering the node again


@dataclass
class Counters:
    rounds: int = 0
    published: int = 0
    imported: dict[str, int] = field(default_factory=dict)
    witnessed: dict[str, str] = field(default_factory=dict)  # peer name -> last verdict
    alarms: list[str] = field(default_factory=list)
    garbage: int = 0  # messages on our topics that were not what their topic says


class Gateway:
    def __init__(
        self,
        connect: Callable[[], NodeClient],
        host: str,
        port: int,
        log: Callable[[str], None] = lambda _: None,
    ) -> None:
        # The node's port is opened for each round only: between rounds, the site's
        # operator uses it (post, list, unlock), as with no gateway.
        self.connect = connect
        self.log = log
        self.counters = Counters()
        with connect() as node:
            me = sync.hello(node)
        self.fp: str = me["fp"]
        self.name: str = me["name"]
        self.root = topics(me["cell"])
        self.inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.pool: dict[tuple[str, int], bytes] = {}  # entries the broker offered
        self.seen: dict[tuple[str, int], bytes] = {}  # (origin, seq) -> first header digest
        self.contested: dict[bytes, bytes] = {}  # a second entry at one (origin, seq)
        self.refused: set[bytes] = set()  # digests of entries the node would not take
        self.on_broker: set[int] = set()  # seqs of our own chain the broker sent back
        self.retained: dict[int, entry.Header] = {}  # own entries the broker keeps whole
        # when each resendable thing was last sent: ("entry", seq), ("strip", seq),
        # ("ask", origin fp), "summary"
        self.last_sent: dict[object, float] = {}
        self.peers: dict[str, dict] = {}  # node fp -> its latest summary
        self.witnessed: dict[str, str] = {}  # peer fp -> summary text last witnessed
        self.unproven: set[str] = set()  # peers whose last summary did not prove its log
        self.summary_sent = ""
        self.summary_echo = ""  # our summary as the broker sent it back
        self.summary_at = -HEARTBEAT_S  # when it was last published (monotonic)
        self.garbage_told = 0
        self.stale: set[str] = set()  # peers whose summaries went stale (told once)
        # told from the broker's thread, logged by the rounds' (the log is not thread-safe)
        self.notes: queue.Queue[str] = queue.Queue()
        self.broker_lost = False
        self.closing = False
        self.mqtt = self._connect(host, port)

    # -- the broker ------------------------------------------------------------------------

    def _connect(self, host: str, port: int) -> "mqtt.Client":
        import paho.mqtt.client as mqtt

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"ribat-{self.fp}", clean_session=True
        )
        client.username_pw_set(self.fp)  # what a broker ACL keys on (%u)
        client.reconnect_delay_set(*RECONNECT_S)
        client.on_message = lambda _c, _u, msg: self.inbox.put((msg.topic, msg.payload))
        where = f"{host}:{port}"

        def on_connect(c: "mqtt.Client", _u: object, _f: object, rc: object, _p: object) -> None:
            if getattr(rc, "is_failure", False):
                self.notes.put(f"the broker at {where} refused us: {rc}")
                return
            c.subscribe([(self.root + "summary/+", 1), (self.root + "entry/#", 1)])
            if self.broker_lost:
                self.notes.put(f"broker at {where} found again")
            self.broker_lost = False

        def on_disconnect(_c: object, _u: object, _f: object, rc: object, _p: object) -> None:
            if not self.broker_lost and not self.closing:
                self.notes.put(
                    f"broker at {where} lost ({rc}): trying again every "
                    f"{RECONNECT_S[0]}-{RECONNECT_S[1]} s; the node keeps its entries"
                )
            self.broker_lost = True

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        connect_to(client, host, port, keepalive=30)
        return client

    def close(self) -> None:
        self.closing = True
        self.mqtt.loop_stop()
        self.mqtt.disconnect()

    def _drain(self) -> None:
        while True:
            try:
                topic, payload = self.inbox.get_nowait()
            except queue.Empty:
                return
            self._take(topic[len(self.root) :].split("/"), payload)

    def _take(self, parts: list[str], payload: bytes) -> None:
        if parts[0] == "summary" and len(parts) == 2:
            doc = json_doc(payload)
            if doc is None or doc.get("fp") != parts[1] or not is_summary(doc):
                self.counters.garbage += 1
            elif parts[1] == self.fp:
                doc.pop("sent")
                self.summary_echo = json.dumps(doc, sort_keys=True)
            else:  # even one a broker delivered late: its node judges it by its stamp
                self.peers[parts[1]] = doc
            return
        parsed = entry.parse(payload) if parts[0] == "entry" and len(parts) == 3 else None
        if parsed is None:
            self.counters.garbage += 1
            return
        header = parsed[0]
        fp = entry.fp_text(header.origin)
        if [fp, str(header.seq)] != parts[1:]:
            self.counters.garbage += 1  # not where its origin's gateway would put it
        elif fp == self.fp:
            self.on_broker.add(header.seq)
            if len(payload) > entry.SIGNED:
                self.retained[header.seq] = header
            else:
                self.retained.pop(header.seq, None)
        elif self.seen.setdefault((fp, header.seq), header.digest()) != header.digest():
            self.contested[_digest(payload)] = payload  # its origin signed two: a fork
        else:
            self.pool[fp, header.seq] = payload

    # -- one round -----------------------------------------------------------------------

    def round(self) -> dict | None:
        """Take what the broker brought, give the node what it lacks, publish what the
        broker lacks of this node's own chain, witness the peers, publish the summary.
        None if the node's port was in use (the next round tries again)."""
        self._drain()
        while not self.notes.empty():
            self.log(f"{self.name}: {self.notes.get_nowait()}")
        self._tell_stale()
        if self.counters.garbage > self.garbage_told:
            ignored = self.counters.garbage - self.garbage_told
            self.log(f"{self.name}: {ignored} messages ignored: not what their topic says")
            self.garbage_told = self.counters.garbage
        try:
            with self.connect() as node:
                summary = self._hello(node)
                if self._import(node, summary):
                    summary = self._hello(node)
                self._publish_own(node, summary)
                self._strip_expired()
                self._witness(node)
                self._publish_summary(summary)
                self._telemetry(node)
        except PortBusy:
            return None
        except (RibatError, OSError) as e:  # rebooting, unplugged: the next round retries
            self.log(f"{self.name}: node unreachable this round: {e}")
            return None
        self._ask_again(summary)
        self.counters.rounds += 1
        return summary

    def _tell_stale(self) -> None:
        """A peer not heard for STALE_S (its gateway publishes at least every HEARTBEAT_S),
        and heard again, told once each."""
        now = time.time()
        for fp, doc in self.peers.items():
            quiet = now - doc["sent"] / 1000
            name = doc.get("name") or fp
            if quiet > STALE_S and fp not in self.stale:
                self.stale.add(fp)
                self.log(
                    f"{self.name}: {name}'s summary is stale: not heard for {quiet / 60:.0f} min"
                )
            elif quiet <= STALE_S and fp in self.stale:
                self.stale.discard(fp)
                self.log(f"{self.name}: {name} heard again")

    def _hello(self, node: NodeClient) -> dict:
        # the hashes of our audit log at the seqs our peers witnessed, for them to check
        asked = [sync.witnessed_seq(p, self.fp) for p in self.peers.values()]
        return sync.hello(node, [n for seqs in asked for n in seqs])

    def _import(self, node: NodeClient, summary: dict) -> int:
        vector, held, heads = summary["vector"], summary["held"], summary["digests"]
        for fp, n in [k for k in self.pool if k[1] <= vector.get(k[0], 0)]:
            raw = self.pool.pop((fp, n))
            if n == vector[fp] and entry.Header(raw).digest()[:8].hex() != heads.get(fp):
                self.contested[_digest(raw)] = raw  # not the node's head at that seq: a fork
        contested = [raw for d, raw in self.contested.items() if d not in self.refused]
        offer = contested + [
            raw
            for (fp, n), raw in sorted(self.pool.items())
            if n not in held.get(fp, ()) and _digest(raw) not in self.refused
        ]
        offer = offer[:IMPORT_MAX]
        for raw in offer[: len(contested)]:
            del self.contested[_digest(raw)]  # offered once: the node keeps what it proves
        if not offer:
            return 0
        assert node.info is not None
        room = node.info.max_frame - lib.FRAME_SPARE
        batches = lib.frames(lib.send_order(offer), room)
        given, _ = lib.put_batches(node, batches, len(offer), "broker")
        outcomes: dict[str, int] = {}
        for raw, outcome in given:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if outcome in _DONE:
                self.refused.add(_digest(raw))
        for outcome, n in outcomes.items():
            self.counters.imported[outcome] = self.counters.imported.get(outcome, 0) + n
        said = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items()))
        self.log(f"{self.name}: entries from the broker: {said}")
        return outcomes.get("stored", 0) + outcomes.get("expired", 0)

    def _publish_own(self, node: NodeClient, summary: dict) -> None:
        head = summary["vector"].get(self.fp, 0)
        due = [
            n for n in range(1, head + 1) if n not in self.on_broker and self._due(("entry", n))
        ]
        if not due:
            return
        since = dict(summary["vector"])
        since[self.fp] = due[0] - 1
        raws = [raw for raw in lib.export(node, since) if entry.Header(raw).seq in due]
        for raw in raws:
            seq = entry.Header(raw).seq
            self.mqtt.publish(f"{self.root}entry/{self.fp}/{seq}", raw, qos=1, retain=True)
        self.counters.published += len(raws)
        self.log(f"{self.name}: {len(raws)} entries published")

    def _strip_expired(self) -> None:
        """Replace each of our expired entries the broker keeps whole by its signed header
        alone, as the nodes keep it: the content goes, the chain stays verifiable for a
        node that catches up later."""
        now = time.time()
        for seq, header in list(self.retained.items()):
            if header.expires <= now and self._due(("strip", seq)):
                topic = f"{self.root}entry/{self.fp}/{seq}"
                self.mqtt.publish(topic, header.raw, qos=1, retain=True)

    def _witness(self, node: NodeClient) -> None:
        for fp, peer in self.peers.items():
            text = json.dumps([peer["audit"], peer["sent"]], sort_keys=True)
            # (a summary whose log is unproven is shown again each round: its node
            # raises the alarm once that has lasted, even if the peer goes quiet)
            if self.witnessed.get(fp) == text and fp not in self.unproven:
                continue
            try:
                result = sync.witness(node, peer)
            except RibatError as e:  # not in the roster (yet), or a summary that lies
                self.log(f"{self.name}: {peer.get('name')}'s summary not witnessed: {e}")
                self.witnessed[fp] = text
                continue
            self.witnessed[fp] = text
            self.counters.witnessed[peer.get("name") or fp] = result["verdict"]
            if result["verdict"] == "unproven":
                self.unproven.add(fp)
            else:
                self.unproven.discard(fp)
            if result["verdict"] == "stale":
                self.log(
                    f"{self.name}: {peer.get('name')}'s summary was sent before the one"
                    " witnessed (a broker delivered it late): not taken"
                )
            alarm = result["alarm"]
            if alarm and alarm not in self.counters.alarms:
                self.counters.alarms.append(alarm)
                self.log(f"{self.name}: ALARM {peer.get('name')}'s audit log {alarm}")

    def _publish_summary(self, summary: dict) -> None:
        text = json.dumps(summary, sort_keys=True)
        now = time.monotonic()
        if text != self.summary_sent:
            self.last_sent["summary"] = now
        elif now - self.summary_at < HEARTBEAT_S and (
            self.summary_echo == text or not self._due("summary")
        ):
            return  # sent, and the broker has it (or had no time to send it back)
        # stamped with when it was sent (ms, an int: a Pico's floats are 32-bit), so that
        # a peer's node can tell it from an older one a broker delivers late (the stamp is
        # this host's clock: only compared with this node's other summaries')
        stamped = json.dumps({**summary, "sent": int(time.time() * 1000)}, sort_keys=True)
        self.mqtt.publish(self.root + f"summary/{self.fp}", stamped, qos=1, retain=True)
        self.summary_sent = text
        self.summary_at = now  # unchanged, published again after HEARTBEAT_S: a sign of life

    def _ask_again(self, summary: dict) -> None:
        """Subscribe again to an origin's entries when a peer holds some we lack and the
        broker has not brought them: it then resends every entry it retains there."""
        mine = summary["vector"]
        for peer in list(self.peers.values()):
            for origin, n in peer["vector"].items():
                have = mine.get(origin, 0)
                if origin == self.fp or n <= have:
                    continue
                missing = any((origin, s) not in self.pool for s in range(have + 1, n + 1))
                if missing and self._due(("ask", origin)):
                    self.mqtt.subscribe(f"{self.root}entry/{origin}/#", 1)

    def _due(self, key: object) -> bool:
        """Whether key's thing was not sent in the last RESEND_S; if so, it counts as sent
        now (the caller sends it)."""
        now = time.monotonic()
        if now - self.last_sent.get(key, -RESEND_S) < RESEND_S:
            return False
        self.last_sent[key] = now
        return True

    def _telemetry(self, node: NodeClient) -> None:
        sample = node.request("status")
        self.mqtt.publish(self.root + f"telemetry/{self.fp}", json.dumps(sample), qos=0)

    def run(self, interval: float, until: Callable[[], bool] = lambda: False) -> None:
        """Rounds every interval seconds, sooner when the broker brings something."""
        while not until():
            self.round()
            started = time.monotonic()
            while not until():
                waited = time.monotonic() - started
                if waited >= interval or (waited >= ROUND_GAP_S and not self.inbox.empty()):
                    break
                time.sleep(0.05)


def _digest(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()
