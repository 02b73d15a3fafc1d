"""The watch: alerts for the bulletins released to this node's partner whose severity
calls for one (alert.min_severity), on the board's LED and buzzer; acknowledged by its
button or `ribat ack`; escalated when nobody has within alert.ack_timeout_s.

What arrives is sealed: only an unlocked node reads its severity. So the node on watch is
an unlocked one (the duty officer's session, `ribat watch`): once a second, and at the
unlock for what came while it was locked, it reads each new record of the journal,
whichever link brought it (a host, a gateway, a wire): ribat.alerts, loaded then and
dropped at the lock. What it raised is kept on flash (STATE), pending until acknowledged,
through power cuts. The button acknowledges every pending alert: at once in a session,
and on a locked node later, at the next unlock (an acknowledgement is an entry the node
signs: ribat.bulletins.acknowledge).

STATE, JSON: {"scan": the next record to read, "got": [[id, severity, received (unix
time), from (node name), acknowledged (unix time, 0 if not), signed], ...] newest last}.
"""

import json

from ribat import journal, store

STATE = journal.ALERTS


class Watch:
    # LED patterns: (on, off) in ms; a node with nothing pending shows the heartbeat
    PATTERNS = {"flash": (100, 100), "priority": (250, 250), "overdue": (1000, 0)}

    def __init__(self, node) -> None:
        self.node = node
        doc = None
        data = store.read(STATE)
        if data:
            try:
                doc = json.loads(data)
            except ValueError:
                doc = None
        doc = doc if isinstance(doc, dict) else {}
        # a node's first watch (its first unlock) raises nothing for what it held before
        self.scan: int = doc.get("scan", node.journal.count)
        self.got: list = doc.get("got", [])
        if not data:
            self.save()

    def save(self) -> None:
        store.write_atomic(STATE, json.dumps({"scan": self.scan, "got": self.got}).encode())

    def pending(self) -> list:
        return [a for a in self.got if not a[4]]

    def pattern(self, now: int) -> "str | None":
        """What the LED shows: None (the heartbeat), or the pattern of the most urgent
        pending alert; "overdue" once one has waited past alert.ack_timeout_s."""
        config = self.node.config
        pending = self.pending()
        if not pending or not config.get("alert.enabled"):
            return None
        timeout = config.get("alert.ack_timeout_s")
        if any(now - a[2] >= timeout for a in pending):
            return "overdue"
        return "flash" if any(a[1] == "flash" for a in pending) else "priority"

    def look(self) -> None:
        """An unlocked node reads what came since and signs what was pressed."""
        from ribat import alerts

        alerts.look(self)

    def press(self, now: int) -> None:
        """The button: every pending alert acknowledged now (signed now if unlocked)."""
        for alert in self.pending():
            alert[4] = now
        self.save()
        if self.node.keyring.state == "unlocked":
            self.look()

    def acked(self, ident: str, t: int) -> None:
        """The bulletin ident was acknowledged (signed) at t, from the button or a host."""
        for alert in self.got:
            if alert[0] == ident:
                alert[4], alert[5] = alert[4] or t, True
                self.save()

    def summary(self) -> list:
        """The alerts as a sync summary tells them (ribat.replica): [id, severity,
        received, acknowledged]."""
        return [[a[0], a[1], a[2], a[4]] for a in self.got]
