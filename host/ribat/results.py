"""What the library answers, as typed results: full names, times as datetimes (UTC),
counts by name. The CLI prints them for people, or with --json as documents (to_json):
one schema per command, written down in docs/json.md, which tests/test_json.py holds
equal to the classes here.

The node speaks short keys to save its heap and link ("x", "ti", "rx_rejected" as a list
by cause); each class's from_node reads them, so nothing above this module sees them.
"""

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ribat import codec


def utc(t: float | None) -> datetime | None:
    """A node's Unix time (seconds) as a UTC datetime; None stays None (no time)."""
    return None if t is None else datetime.fromtimestamp(t, UTC)


def iso(t: datetime) -> str:
    """ISO 8601 in UTC, to the second, as every JSON document here writes times."""
    return t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def to_json(value: Any) -> Any:
    """A result (or a list of them) as JSON values: dataclasses as objects of their fields
    in order, datetimes in ISO 8601."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def by_cause(counts: list[int] | None) -> dict[str, int]:
    """A node's rejection counters (a list indexed by ribat.codec.CAUSES) by name."""
    counts = counts or []
    return {cause: (counts[i] if i < len(counts) else 0) for i, cause in enumerate(codec.CAUSES)}


# -- boards and nodes -----------------------------------------------------------------


@dataclass
class Board:
    """`ribat boards`: a port that may hold a board, and the ribat node answering there."""

    port: str  # as --port takes it: sim:NAME for a virtual board
    device: str  # the serial device (a virtual board's pseudo-terminal)
    description: str
    node: str | None
    partner: str | None
    firmware: str | None
    revision: str | None
    note: str | None


@dataclass
class Health:
    """A node's health, as `status` and each telemetry frame tell it."""

    uptime_ms: int
    reset_cause: str
    heap_free_bytes: int
    heap_used_bytes: int
    flash_free_bytes: int
    flash_used_bytes: int
    loop_lag_ms: int
    frames_in: int
    frames_out: int
    frames_rejected: dict[str, int]
    firmware: str
    temperature_c: float | None
    keys: str | None
    audit_seq: int | None
    audit_head: str | None
    alerts_pending: int  # alerts calling for an acknowledgement (its LED, its buzzer)

    @classmethod
    def from_node(cls, m: dict) -> "Health":
        return cls(
            uptime_ms=m["uptime_ms"],
            reset_cause=m["reset_cause"],
            heap_free_bytes=m["heap_free"],
            heap_used_bytes=m["heap_used"],
            flash_free_bytes=m["flash_free"],
            flash_used_bytes=m["flash_used"],
            loop_lag_ms=m["loop_lag_ms"],
            frames_in=m["rx_ok"],
            frames_out=m["tx"],
            frames_rejected=by_cause(m.get("rx_rejected")),
            firmware=m["fw"],
            temperature_c=m.get("temp_c"),
            keys=m.get("keys"),
            audit_seq=m.get("audit_seq"),
            audit_head=m.get("audit_head"),
            alerts_pending=len(m.get("alerts") or ()),
        )


@dataclass
class PendingAlert:
    """An alert a node calls for (its LED, buzzer) until acknowledged."""

    id: str
    received: datetime


@dataclass
class NodeStatus:
    """`ribat status`: who the node is, what it runs, and its health."""

    name: str
    partner: str
    board: str
    uid: str
    firmware: str
    revision: str | None
    build: str | None
    micropython: str
    slot: str
    fallback: bool
    release_floor: str | None
    trial_starts: int | None
    reverted: dict | None
    config_error: str | None
    health: Health
    journal_records: int
    alerts_pending: list[PendingAlert]
    convergences_pending: int

    @classmethod
    def from_node(cls, info: Any, snap: dict) -> "NodeStatus":
        """info: the node's hello (ribat.device.client.NodeInfo); snap: its status."""
        return cls(
            name=info.name,
            partner=info.partner,
            board=info.board,
            uid=info.uid,
            firmware=info.firmware,
            revision=info.revision,
            build=info.build,
            micropython=info.micropython,
            slot=info.slot,
            fallback=info.fallback,
            release_floor=info.floor,
            trial_starts=info.trial,
            reverted=info.reverted,
            config_error=info.config_error,
            health=Health.from_node(snap),
            journal_records=snap.get("records", 0),
            alerts_pending=[PendingAlert(i, utc(t)) for i, t in snap.get("alerts") or ()],  # type: ignore[arg-type]
            convergences_pending=snap.get("signals") or 0,
        )


@dataclass
class TelemetryFrame:
    """`ribat telemetry record --format jsonl` and `telemetry watch --json`: one frame."""

    received: datetime  # the host's clock: when the frame came
    seq: int  # the node's event number (wraps at 65536; a gap is a frame lost)
    health: Health

    @classmethod
    def from_node(cls, event: dict, received: float) -> "TelemetryFrame":
        return cls(utc(received), event["seq"], Health.from_node(event))  # type: ignore[arg-type]


@dataclass
class Identity:
    """`ribat identity`: a node's public identity."""

    state: str  # unprovisioned, locked, unlocked, locked out
    name: str | None
    partner: str | None
    fingerprint: str | None
    signing_key: str | None  # Ed25519, hex
    agreement_key: str | None  # X25519, hex
    cell: str | None
    roster_version: int | None
    roster_members: int | None
    pin_tries_used: int | None
    pin_tries_allowed: int | None

    @classmethod
    def from_node(cls, m: dict) -> "Identity":
        return cls(
            state=m["state"],
            name=m.get("name"),
            partner=m.get("partner"),
            fingerprint=m.get("fp"),
            signing_key=m.get("sign"),
            agreement_key=m.get("kx"),
            cell=m.get("cell"),
            roster_version=m.get("roster") or None,
            roster_members=m.get("members"),
            pin_tries_used=m.get("tries"),
            pin_tries_allowed=m.get("max_tries"),
        )


# -- the journal ----------------------------------------------------------------------


@dataclass
class Acknowledgement:
    node: str
    partner: str
    time: datetime


# what the node calls a record's state, and what it means to a reader
_STATES = {"purged": "expired", "held": "held", "fork": "fork"}


@dataclass
class Bulletin:
    """`ribat list` (one per line) and `ribat show`: a bulletin, with what this node may
    read of it. Sealed (not released to this node's partner, or the node locked): only
    what every relay sees, the rest null."""

    id: str
    partner: str  # the origin's partner
    node: str  # the origin node
    state: str  # readable, sealed, expired (content purged), held (a gap), fork
    kind: str | None
    severity: str | None
    title: str | None
    body: str | None  # `show` only
    to: list[str] | None
    refs: list[str]
    indicators: list[str]  # KIND:VALUE, `show` and `list` when readable
    written: datetime | None
    expires: datetime
    size_bytes: int
    acknowledged_here: bool  # acknowledged on this node (its operator or button)
    acknowledgements: list[Acknowledgement]

    @classmethod
    def from_node(cls, m: dict) -> "Bulletin":
        readable = "k" in m
        state = _STATES.get(m.get("state", "kept"), "readable" if readable else "sealed")
        return cls(
            id=m["id"],
            partner=m["from"],
            node=m["by"],
            state=state,
            kind=m.get("k"),
            severity=m.get("s"),
            title=m.get("ti"),
            body=m.get("b"),
            to=m.get("to"),
            refs=list(m.get("r") or ()),
            indicators=[f"{k}:{v}" for k, v in m.get("i") or ()],
            written=utc(m.get("t")),
            expires=utc(m["x"]),  # type: ignore[arg-type]
            size_bytes=m.get("size", 0),
            acknowledged_here=bool(m.get("acked")),
            acknowledgements=[
                Acknowledgement(a["by"], a["from"], utc(a["t"]))  # type: ignore[arg-type]
                for a in m.get("acks") or ()
            ],
        )

    @property
    def awaiting_ack(self) -> bool:
        """An alert or warning not acknowledged on this node (`list` marks it *)."""
        readable = self.state == "readable"
        return readable and self.severity != "routine" and not self.acknowledged_here


@dataclass
class AckEvent:
    """`ribat list --follow --json`: an acknowledgement as it arrives."""

    id: str  # the bulletin acknowledged
    node: str
    partner: str
    time: datetime


@dataclass
class OriginChain:
    fingerprint: str
    node: str | None  # None: an origin not in the roster
    partner: str | None
    head: int
    held: int
    forks: int
    head_digest: str

    @classmethod
    def from_node(cls, m: dict) -> "OriginChain":
        return cls(m["fp"], m.get("name") or None, m.get("partner") or None, m["head"],
                   m["held"], m["forks"], m["digest"])  # fmt: skip


@dataclass
class JournalStatus:
    """`ribat journal status`: each origin's chain as this node holds it."""

    fingerprint: str
    cell: str
    entries: int
    held: int
    flash_free_bytes: int
    flash_reserved_bytes: int  # of the free space, kept for a firmware deploy
    origins: list[OriginChain]

    @classmethod
    def from_node(cls, m: dict) -> "JournalStatus":
        return cls(m["fp"], m["cell"], m["entries"], m.get("held", 0), m["free"], m["reserve"],
                   [OriginChain.from_node(o) for o in m["origins"]])  # fmt: skip


@dataclass
class ImportOutcome:
    """`ribat journal import --json`: what became of one entry."""

    id: str
    outcome: str  # stored, duplicate, gap, fork, forged, foreign, expired


@dataclass
class SyncLeg:
    source: str
    target: str
    sent: int
    outcomes: dict[str, int]
    target_full: bool


@dataclass
class Witness:
    witness: str
    peer: str
    verdict: str


@dataclass
class SyncReport:
    """`ribat sync --json`."""

    legs: list[SyncLeg]
    witnessed: list[Witness]
    forks: list[str]  # origins whose heads differ between the two
    alarms: list[str]


# -- the audit log --------------------------------------------------------------------


@dataclass
class AuditEntry:
    """`ribat audit show --json`, one per line. A checkpoint (the older entries folded
    into one signed line) has event "checkpoint" and details {"folded": N}."""

    seq: int
    time: datetime | None
    event: str
    details: dict
    prev_hash: str | None

    @classmethod
    def from_line(cls, e: dict, checkpoint: dict | None) -> "AuditEntry":
        if checkpoint is not None:
            return cls(checkpoint["seq"], utc(checkpoint.get("t")), "checkpoint",
                       {"folded": checkpoint["folded"]}, checkpoint.get("hash"))  # fmt: skip
        return cls(e["seq"], utc(e.get("t")), e["ev"], e.get("d") or {}, e.get("prev"))


# -- weak signals ---------------------------------------------------------------------


@dataclass
class Convergence:
    """`ribat signals --json`: another partner reported what a bulletin here names."""

    partner: str
    node: str
    their_entry: str
    our_entry: str
    first_reported: datetime
    detected: datetime
    acknowledged: datetime | None

    @classmethod
    def from_node(cls, m: dict) -> "Convergence":
        return cls(m["partner"], m["by"], m["id"], m["mine"], utc(m["first"]),  # type: ignore[arg-type]
                   utc(m["detected"]), utc(m.get("acked") or None))  # type: ignore[arg-type]  # fmt: skip


@dataclass
class Report:
    partner: str
    node: str
    entry: str
    time: datetime


@dataclass
class Lookup:
    """`ribat check --json`: who reported an indicator, and the lookups left today."""

    reported_by: list[Report]
    lookups_left: int

    @classmethod
    def from_node(cls, m: dict) -> "Lookup":
        return cls([Report(f["partner"], f["by"], f["id"], utc(f["t"]))  # type: ignore[arg-type]
                    for f in m["found"]], m["left"])  # fmt: skip


# -- the cell -------------------------------------------------------------------------


@dataclass
class RosterMember:
    partner: str
    name: str
    fingerprint: str


@dataclass
class ReleaseKey:
    name: str
    key: str


@dataclass
class Roster:
    """`ribat cell roster show --json`."""

    cell: str
    version: int
    members: list[RosterMember]
    release_keys: list[ReleaseKey]


@dataclass
class NodeSummary:
    """A node as its gateway last published it (`ribat cell status`)."""

    name: str
    partner: str
    fingerprint: str
    firmware: str | None
    on_trial: bool
    entries: int
    lags: dict[str, int]  # per origin node: how many entries behind the most advanced node
    held: int
    audit_seq: int | None
    witnessed_by: dict[str, int]  # node: the audit seq it witnessed
    last_heard: datetime | None
    stale: bool  # not heard for longer than a gateway's summary period allows


@dataclass
class AlertAtNode:
    node: str
    acknowledged: bool
    after_s: int  # acknowledged after, or pending for, this long
    overdue: bool  # pending past the node's alert.ack_timeout_s


@dataclass
class CellAlert:
    id: str
    nodes: list[AlertAtNode]


@dataclass
class SignalAtNode:
    node: str
    acknowledged: bool


@dataclass
class CellConvergence:
    partners: list[str]
    age_s: int  # since the first report
    nodes: list[SignalAtNode]


@dataclass
class CellStatus:
    """`ribat cell status --json`."""

    cell: str
    nodes: list[NodeSummary]
    forks: list[str]
    alarms: list[str]
    alerts: list[CellAlert]
    convergences: list[CellConvergence]


# -- releases -------------------------------------------------------------------------


@dataclass
class ReleaseBuild:
    board: str
    mpy: str  # the .mpy version it was compiled for ("6.3")
    build: str  # its build id (the hash of its files)
    size_bytes: int


@dataclass
class Release:
    """`ribat release show --json`: what a signed bundle holds."""

    version: str
    revision: str | None
    min_version: str | None  # the oldest release it may replace; null: any older
    signer_key: str | None  # Ed25519, hex; null: not signed yet
    builds: list[ReleaseBuild]


# -- virtual boards -------------------------------------------------------------------


@dataclass
class VirtualBoard:
    """`ribat sim list --json`."""

    name: str
    board: str
    running: bool
    port: str  # sim:NAME, as every command takes it
    device: str | None  # the pseudo-terminal behind it, while running
    pid: int | None


@dataclass
class Panel:
    """`ribat sim panel --json`: what a virtual board's panel did for a second."""

    led: str
    led_level_percent: int
    buzzer_beeps: int
    button_down: bool


# Each command's document: what docs/json.md describes under the command's name.
SCHEMAS: dict[str, type] = {
    "boards": Board,
    "status": NodeStatus,
    "telemetry": TelemetryFrame,
    "identity": Identity,
    "list": Bulletin,
    "list --follow": AckEvent,  # and Bulletin
    "show": Bulletin,
    "journal status": JournalStatus,
    "journal import": ImportOutcome,
    "sync": SyncReport,
    "audit show": AuditEntry,
    "signals": Convergence,
    "check": Lookup,
    "cell roster show": Roster,
    "cell status": CellStatus,
    "release show": Release,
    "sim list": VirtualBoard,
    "sim panel": Panel,
}
