"""What a duty officer's console (`ribat watch`) knows of one unlocked node: its health,
the bulletins it got lately with who acknowledged them, its alerts (ribat.alerts on the
node) and which of its own alerts the recipients have not acknowledged.

A console runs for weeks: each refresh asks the node for its status (one small request)
and lists only the records stored since the last (the node audits each read, so a
console that listed the whole journal every second would flood its audit log); what it
keeps is bounded (KEPT bulletins)."""

import time
from collections import OrderedDict
from dataclasses import dataclass, field

from ribat import entry
from ribat.device.client import NodeClient
from ribat.ops import journal, signals
from ribat.results import Convergence

KEPT = 200  # bulletins kept in view: older ones leave it
KEPT_CONVERGENCES = 16  # as many as a node keeps
FIRST = 50  # records read at the start: the recent past


@dataclass
class Change:
    """Something the console tells: "bulletin" (a new one it may read), "alert" (a new
    one of enough severity from another node: the bell), "ack" (someone acknowledged a
    bulletin in view), "overdue" (an alert waited past alert.ack_timeout_s), "convergence"
    (another partner reported what this node did: ribat.signals; in .convergence)."""

    kind: str
    item: dict
    by: str = ""  # for an ack: who; for an overdue own alert: the partner not answering
    after_s: int = 0  # for an ack or an overdue: how long after the bulletin
    convergence: Convergence | None = None


@dataclass
class DutyView:
    me: str  # the node's name
    partner: str
    timeout_s: int = 300  # the node's alert.ack_timeout_s
    least: str = "priority"  # the node's alert.min_severity
    items: "OrderedDict[str, dict]" = field(default_factory=OrderedDict)
    health: dict = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)  # alert id -> when it came
    after: int | None = None  # the last record read
    told_overdue: set[tuple[str, str]] = field(default_factory=set)
    convergences: list[Convergence] = field(default_factory=list)  # ribat.ops.signals
    signals_pending: int = 0

    def settings(self, values: dict) -> None:
        self.timeout_s = int(values.get("alert.ack_timeout_s", self.timeout_s))
        self.least = str(values.get("alert.min_severity", self.least))

    def refresh(self, client: NodeClient, now: float | None = None) -> list[Change]:
        """Read what is new on the node; what to tell of it."""
        now = time.time() if now is None else now
        while (event := client.next_event(0)) is not None:
            if event.get("event") == "telemetry":
                self.health.update(event)
        snap = client.request("status")
        self.health.update(snap)
        for ident, received in snap.get("alerts") or ():
            self.received[ident] = received
        changes: list[Change] = []
        count = snap["records"]
        first = self.after is None
        if self.after is None:
            self.after = max(-1, count - FIRST - 1)
        if count - 1 > self.after:
            got, self.after = journal.records_after(client, self.after)
            changes = self._take(got, now)
            if first:  # the past is shown, not told
                changes = []
        # convergences pending are told, at the start too: each waits for the officer
        return changes + self._signals(client, snap) + self._overdue(now)

    def _signals(self, client: NodeClient, snap: dict) -> list[Change]:
        """A new convergence (the node's count of pending ones moved): read them, tell the
        ones not seen before."""
        pending = int(snap.get("signals") or 0)
        if pending == self.signals_pending:
            return []
        self.signals_pending = pending
        told = {(c.their_entry, c.our_entry) for c in self.convergences}
        self.convergences = signals.convergences(client)[0][-KEPT_CONVERGENCES:]
        return [
            Change("convergence", {}, convergence=c)
            for c in self.convergences
            if c.acknowledged is None and (c.their_entry, c.our_entry) not in told
        ]

    def _take(self, got: list[dict], now: float) -> list[Change]:
        changes = []
        for item in got:
            if item.get("k") == entry.ACK:
                for ref in item.get("r", ()):
                    bulletin = self.items.get(ref)
                    if bulletin is None:
                        continue
                    ack = {"by": item["by"], "from": item["from"], "t": item["t"]}
                    bulletin["acks"].append(ack)
                    if item["by"] == self.me:
                        bulletin["acked"] = True
                    changes.append(Change("ack", bulletin, item["by"], item["t"] - bulletin["t"]))
            elif item.get("k") == entry.SIGNAL:
                continue  # tokens: what they found comes as a convergence (snap["signals"])
            elif "k" in item:  # one this node may read
                self.items[item["id"]] = {**item, "acks": []}
                alert = self.is_alert(item) and not item["acked"]
                changes.append(Change("alert" if alert else "bulletin", item))
        while len(self.items) > KEPT:
            gone, _ = self.items.popitem(last=False)
            self.received.pop(gone, None)
        return changes

    def is_alert(self, item: dict) -> bool:
        """A bulletin of another node whose severity alerts here."""
        levels = entry.SEVERITIES
        return (
            item["by"] != self.me
            and item.get("s") in levels
            and levels.index(item["s"]) >= levels.index(self.least)
        )

    def incoming(self, now: float) -> list[dict]:
        """Others' alerts in view, newest last: pending or acknowledged, with their age."""
        out = []
        for item in self.items.values():
            if self.is_alert(item):
                came = self.received.get(item["id"], item["t"])
                mine = [a for a in item["acks"] if a["by"] == self.me]
                age = (mine[0]["t"] if mine else now) - came
                out.append({**item, "pending": not item["acked"], "age_s": int(age),
                            "overdue": not item["acked"] and age >= self.timeout_s})  # fmt: skip
        return out

    def outgoing(self, now: float) -> list[dict]:
        """This node's own alerts in view, and per partner they went to: who acknowledged
        and after how long, or how long it has waited."""
        out = []
        levels = entry.SEVERITIES
        for item in self.items.values():
            if item["by"] != self.me or levels.index(item.get("s", "routine")) < 1:
                continue
            answers = []
            for partner in item.get("to", ()):
                if partner == self.partner:
                    continue
                acks = [a for a in item["acks"] if a["from"] == partner]
                waited = (acks[0]["t"] if acks else now) - item["t"]
                answers.append({"partner": partner, "by": [a["by"] for a in acks],
                                "after_s": int(waited),
                                "overdue": not acks and waited >= self.timeout_s})  # fmt: skip
            out.append({**item, "answers": answers})
        return out

    def _overdue(self, now: float) -> list[Change]:
        """Each alert that went overdue since the last refresh, told once."""
        changes = []
        for alert in self.incoming(now):
            if alert["overdue"] and (alert["id"], self.partner) not in self.told_overdue:
                self.told_overdue.add((alert["id"], self.partner))
                changes.append(Change("overdue", alert, self.partner, alert["age_s"]))
        for alert in self.outgoing(now):
            for answer in alert["answers"]:
                key = (alert["id"], answer["partner"])
                if answer["overdue"] and key not in self.told_overdue:
                    self.told_overdue.add(key)
                    changes.append(Change("overdue", alert, answer["partner"], answer["after_s"]))
        self.told_overdue = {k for k in self.told_overdue if k[0] in self.items}  # bounded
        return changes

    def pending(self) -> list[dict]:
        return [i for i in self.items.values() if self.is_alert(i) and not i["acked"]]
