"""Prometheus metrics of nodes and of their cell: what `ribat metrics` serves.

Two sources, read at each scrape (Prometheus's own rule: a scrape sees the state then):
    a node's port   its status, asked through the port (opened for the scrape only, as a
                    gateway does, so that the operator's commands and a gateway share it);
    a broker        what the cell's gateways publish there: each node's status (telemetry)
                    as it comes, and the retained summaries (journals, audit heads, alerts).
Names follow Prometheus's conventions: base units (seconds, bytes), _total for counters,
one metric per quantity with the node and partner as labels.
"""

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ribat.results import CellStatus, Health

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

PREFIX = "ribat_"
NODE = ("node", "partner")


def health_metrics(
    node: str, partner: str, h: Health, records: int | None, convergences: int | None
) -> Iterator["Metric"]:
    """A node's health as metrics, with its journal's records and the convergences pending
    where the sample tells them (a status does)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    who = [node, partner]

    def gauge(name: str, doc: str, value: float | None) -> Iterator["Metric"]:
        if value is not None:
            g = GaugeMetricFamily(PREFIX + name, doc, labels=NODE)
            g.add_metric(who, value)
            yield g

    yield from gauge("uptime_seconds", "Since the node's last reset", h.uptime_ms / 1000)
    yield from gauge("heap_free_bytes", "MicroPython heap free", h.heap_free_bytes)
    yield from gauge("heap_used_bytes", "MicroPython heap in use", h.heap_used_bytes)
    yield from gauge("flash_free_bytes", "The node's filesystem, free", h.flash_free_bytes)
    yield from gauge("flash_used_bytes", "The node's filesystem, in use", h.flash_used_bytes)
    yield from gauge("loop_lag_seconds", "The event loop's worst lag lately", h.loop_lag_ms / 1000)
    yield from gauge("temperature_celsius", "The chip's temperature", h.temperature_c)
    yield from gauge("alerts_pending", "Alerts calling for an acknowledgement", h.alerts_pending)
    yield from gauge("audit_seq", "The audit log's head (its sequence number)", h.audit_seq)
    yield from gauge("journal_records", "Records in the node's journal", records)
    yield from gauge("convergences_pending", "Convergences not acknowledged", convergences)
    state = GaugeMetricFamily(
        PREFIX + "key_state", "1 for the node's key state", labels=[*NODE, "state"]
    )
    state.add_metric([*who, h.keys or "unknown"], 1)
    yield state
    for name, doc, value in (("frames_received", "Frames the node took", h.frames_in),
                             ("frames_sent", "Frames the node sent", h.frames_out)):  # fmt: skip
        c = CounterMetricFamily(PREFIX + name, doc, labels=NODE)
        c.add_metric(who, value)
        yield c
    rejected = CounterMetricFamily(
        PREFIX + "frames_rejected", "Frames the node refused, by cause", labels=[*NODE, "cause"]
    )
    for cause, n in h.frames_rejected.items():
        rejected.add_metric([*who, cause], n)
    yield rejected


def cell_metrics(view: CellStatus, now: float) -> Iterator["Metric"]:
    """The cell as its gateways' summaries tell it."""
    from prometheus_client.core import GaugeMetricFamily

    def family(name: str, doc: str, labels: tuple = NODE) -> GaugeMetricFamily:
        return GaugeMetricFamily(PREFIX + name, doc, labels=list(labels))

    entries = family("journal_entries", "Entries the node holds")
    held = family("journal_held_entries", "Entries held past a gap")
    lag = family("journal_lag_entries", "Entries behind the most advanced node, per origin",
                 (*NODE, "origin"))  # fmt: skip
    age = family("summary_age_seconds", "Since the node's gateway last published")
    stale = family("summary_stale", "1: not heard for longer than a running gateway allows")
    pending = family("cell_alerts_pending", "Alerts the node has not acknowledged")
    overdue = family("cell_alerts_overdue", "Of them, past the node's alert.ack_timeout_s")
    for n in view.nodes:
        who = [n.name, n.partner]
        entries.add_metric(who, n.entries)
        held.add_metric(who, n.held)
        for origin, behind in n.lags.items():
            lag.add_metric([*who, origin], behind)
        if n.last_heard is not None:
            age.add_metric(who, max(0.0, now - n.last_heard.timestamp()))
        stale.add_metric(who, int(n.stale))
        waiting = [a for alert in view.alerts for a in alert.nodes
                   if a.node == n.name and not a.acknowledged]  # fmt: skip
        pending.add_metric(who, len(waiting))
        overdue.add_metric(who, sum(a.overdue for a in waiting))
    forks = family("cell_forks", "Forks seen in the cell (two entries at one seq)", ())
    forks.add_metric([], len(view.forks))
    alarms = family("cell_audit_alarms", "Audit logs found truncated or rewritten", ())
    alarms.add_metric([], len(view.alarms))
    yield from (entries, held, lag, age, stale, pending, overdue, forks, alarms)


class PortCollector:
    """A node's metrics, asked through its port at each scrape."""

    def __init__(self, port: str) -> None:
        self.port = port

    def collect(self) -> Iterator["Metric"]:
        from prometheus_client.core import GaugeMetricFamily

        from ribat import ports
        from ribat.device.client import connect
        from ribat.errors import RibatError
        from ribat.results import NodeStatus

        up = GaugeMetricFamily(PREFIX + "port_up", "1: the node on the port answered",
                               labels=["port"])  # fmt: skip
        try:
            with connect(ports.resolve(self.port)) as client:
                assert client.info is not None
                got = NodeStatus.from_node(client.info, client.request("status"))
        except RibatError:  # away, busy, restarting: down for this scrape
            up.add_metric([self.port], 0)
            yield up
            return
        up.add_metric([self.port], 1)
        yield up
        yield from health_metrics(got.name, got.partner, got.health, got.journal_records,
                                  got.convergences_pending)  # fmt: skip


class BrokerCollector:
    """A cell's metrics from its broker: the latest telemetry of each node (kept as it
    comes) and the retained summaries (read at each scrape)."""

    def __init__(self, host: str, port: int, cell: str) -> None:
        import paho.mqtt.client as mqtt

        from ribat.gateway.broker import connect_to, json_doc, topics

        self.cell = cell
        self.root = topics(cell)
        self.lock = threading.Lock()
        self.telemetry: dict[str, tuple[float, dict]] = {}  # fp -> (when, status)
        self.summaries: dict[str, dict] = {}
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)

        def on_message(_c: object, _u: object, msg: "mqtt.MQTTMessage") -> None:
            kind, _, fp = msg.topic[len(self.root) :].partition("/")
            doc = json_doc(msg.payload)
            if doc is None or not fp:
                return
            with self.lock:
                if kind == "telemetry":
                    self.telemetry[fp] = (time.time(), doc)
                elif kind == "summary":
                    self.summaries[fp] = doc

        client.on_message = on_message
        client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(
            [(self.root + "telemetry/+", 0), (self.root + "summary/+", 1)]
        )
        connect_to(client, host, port, keepalive=30)  # (its thread ends with the process)

    def collect(self) -> Iterator["Metric"]:
        from ribat.gateway.broker import STALE_S, cell_view

        now = time.time()
        with self.lock:
            docs = dict(self.summaries)  # (a new summary replaces its doc, never changes it)
            telemetry = dict(self.telemetry)
        yield from cell_metrics(cell_view(self.cell, docs), now)
        for fp, (when, sample) in telemetry.items():
            if now - when > STALE_S:
                continue  # its gateway stopped: summary_stale tells it
            d = docs.get(fp, {})
            try:
                health = Health.from_node(sample)
            except (KeyError, TypeError):
                continue  # not a status
            yield from health_metrics(d.get("name") or fp, d.get("partner", "?"), health,
                                      sample.get("records"), sample.get("signals"))  # fmt: skip
