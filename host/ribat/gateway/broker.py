"""The broker side of the gateway: its address, the cell's topics, connecting to it, and
the nodes' retained summaries that `ribat cell status` reads (see ribat.gateway)."""

import json
import time
import urllib.parse
from typing import TYPE_CHECKING

from ribat.errors import BrokerError

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

    from ribat.results import CellAlert, CellConvergence, CellStatus

DEFAULT_PORT = 1883


def parse_broker(url: str) -> tuple[str, int]:
    """(host, port) of mqtt://HOST[:PORT]; ValueError for anything else."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise ValueError(f"{url!r} is not a broker address: give mqtt://HOST:PORT")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"{url!r} has no valid port: give mqtt://HOST:PORT") from None
    return parts.hostname, port


def topics(cell: str) -> str:
    return f"ribat/{cell}/"


def connect_to(client: "mqtt.Client", host: str, port: int, keepalive: int) -> None:
    """Connect client and start its network thread; BrokerError if the broker is not there."""
    try:
        client.connect(host, port, keepalive=keepalive)
    except OSError as e:
        raise BrokerError(f"cannot reach the broker at {host}:{port}: {e.strerror or e}") from None
    client.loop_start()


def is_summary(doc: dict) -> bool:
    """Whether doc has the shape of a sync summary, as far as the gateway reads it (the
    node checks what it is given of it)."""
    shapes = {"vector": dict, "digests": dict, "held": dict, "audit": dict, "witnessed": dict}
    if not all(isinstance(doc.get(k), t) for k, t in shapes.items()):
        return False
    if not isinstance(doc.get("sent"), int):
        return False
    return all(
        isinstance(seen, dict) and isinstance(seen.get("seq"), int)
        for seen in doc["witnessed"].values()
    )


def json_doc(payload: bytes) -> dict | None:
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def summaries(host: str, port: int, cell: str, wait_s: float = 1.0) -> dict[str, dict]:
    """The retained node summaries of a cell on a broker: node fp -> summary."""
    import paho.mqtt.client as mqtt

    got: dict[str, dict] = {}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    root = topics(cell) + "summary/"

    def on_message(_c: object, _u: object, msg: "mqtt.MQTTMessage") -> None:
        doc = json_doc(msg.payload)
        if doc is not None:
            got[msg.topic[len(root) :]] = doc

    client.on_message = on_message
    client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(root + "+", 1)
    connect_to(client, host, port, keepalive=10)
    time.sleep(wait_s)  # retained messages come at once after the subscription
    client.loop_stop()
    client.disconnect()
    return got


# A gateway publishes its node's summary when it changes and at least this often: a
# summary older than STALE_S tells of a gateway (or its node) gone quiet.
HEARTBEAT_S = 60.0
STALE_S = 3 * HEARTBEAT_S


def cell_view(cell: str, docs: dict[str, dict], now: float | None = None) -> "CellStatus":
    """What `ribat cell status` shows of a cell's summaries: per node its entries, what it
    lacks of each origin against the most advanced node, its held entries, audit head,
    who witnessed it and when it was last heard; forks (two nodes, one seq, two heads),
    alarms, alerts and convergences."""
    from ribat.results import CellStatus, NodeSummary, utc

    now = time.time() if now is None else now
    names = {fp: d.get("name") or fp for fp, d in docs.items()}
    best: dict[str, int] = {}
    for d in docs.values():
        for origin, n in d["vector"].items():
            best[origin] = max(best.get(origin, 0), n)
    nodes = []
    for fp, d in sorted(docs.items(), key=lambda i: (i[1].get("partner", ""), names[i[0]])):
        vector = d["vector"]
        sent = d.get("sent")
        heard = sent / 1000 if isinstance(sent, int) else None
        nodes.append(
            NodeSummary(
                name=names[fp],
                partner=d.get("partner", "?"),
                fingerprint=fp,
                firmware=d.get("fw"),
                on_trial=bool(d.get("trial")),
                entries=sum(vector.values()),
                lags={
                    names.get(o, o[:9]): n - vector.get(o, 0)
                    for o, n in sorted(best.items())
                    if vector.get(o, 0) < n
                },
                held=sum(len(v) for v in (d.get("held") or {}).values()),
                audit_seq=(d.get("audit") or {}).get("seq"),
                witnessed_by={
                    names[w]: other["witnessed"][fp]["seq"]
                    for w, other in sorted(docs.items())
                    if fp in (other.get("witnessed") or {})
                },
                last_heard=utc(heard),
                stale=heard is None or now - heard > STALE_S,
            )
        )
    forks = []
    for origin in sorted(best):
        at: dict[tuple[int, str], list[str]] = {}
        for fp, d in docs.items():
            n = d["vector"].get(origin)
            if n:
                at.setdefault((n, d["digests"].get(origin, "")), []).append(names[fp])
        for n in {n for n, _ in at}:
            heads = [v for (m, _), v in at.items() if m == n]
            if len(heads) > 1:
                forks.append(
                    f"fork: {names.get(origin, origin)} at seq {n}: "
                    + " / ".join(", ".join(sorted(v)) for v in heads)
                )
    alarms = [
        f"ALARM {names[w]}: {names.get(p, p)}'s audit log {seen['alarm']}"
        for w, d in sorted(docs.items())
        for p, seen in sorted((d.get("witnessed") or {}).items())
        if seen.get("alarm")
    ]
    return CellStatus(cell, nodes, forks, alarms, alert_view(docs, names, now),
                      signal_view(docs, names, now))  # fmt: skip


def signal_view(
    docs: dict[str, dict], names: dict[str, str], now: float | None = None
) -> list["CellConvergence"]:
    """Each convergence the nodes raised (ribat.signals): the partners in it, how long
    since the first report, and per node whether it acknowledged. Two nodes tell the same
    convergence: one row for both."""
    from ribat.results import CellConvergence, SignalAtNode

    now = time.time() if now is None else now
    out: dict[tuple, CellConvergence] = {}
    for fp, d in sorted(docs.items(), key=lambda i: names[i[0]]):
        for partners, first, acked in d.get("signals") or ():
            fresh = CellConvergence(list(partners), int(now - first), [])
            row = out.setdefault((tuple(partners), first), fresh)
            row.nodes.append(SignalAtNode(names[fp], bool(acked)))
    return list(out.values())


def alert_view(
    docs: dict[str, dict], names: dict[str, str], now: float | None = None
) -> list["CellAlert"]:
    """Each alert the nodes raised, as their summaries tell it: the bulletin, and per
    node that raised it, acknowledged after how long, or pending for how long
    and whether past that node's alert.ack_timeout_s (overdue)."""
    from ribat.results import AlertAtNode, CellAlert

    now = time.time() if now is None else now
    out: dict[str, CellAlert] = {}
    for fp, d in sorted(docs.items(), key=lambda i: names[i[0]]):
        timeout = d.get("ack_timeout_s") or 0
        for ident, received, acked in d.get("alerts") or ():
            alert = out.setdefault(ident, CellAlert(ident, []))
            waited = (acked or now) - received
            alert.nodes.append(
                AlertAtNode(names[fp], bool(acked), int(waited), not acked and waited >= timeout)
            )
    return list(out.values())
