"""The configuration schema: every key a node knows, its type, bounds and default; and
the fields of the node's telemetry sample.

This one file is the only definition. The node validates with it before it saves; the host
(through the symlink host/ribat/schema.py) validates with it before it sends, and shows its
descriptions. Runs on MicroPython and CPython; no I/O.
"""

BOOL = "bool"
INT = "int"
STR = "str"
CHOICE = "choice"

_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# (key, type, default, bounds); what each means is the host's to say (ribat.ops.config)
#   INT bounds: (min, max); STR bounds: (min length, max length, allowed characters);
#   CHOICE bounds: the allowed values; BOOL bounds: None.
KEYS = (
    ("node.name", STR, "ribat", (1, 32, _NAME_CHARS)),
    ("node.partner", STR, "XX", (2, 2, _UPPER)),
    ("telemetry.enabled", BOOL, True, None),
    ("telemetry.interval_ms", INT, 1000, (100, 3600000)),
    ("led.brightness", INT, 50, (0, 100)),
    ("alert.enabled", BOOL, True, None),
    ("alert.buzzer", BOOL, True, None),
    ("alert.min_severity", CHOICE, "priority", ("priority", "flash")),
    ("alert.ack_timeout_s", INT, 300, (10, 86400)),
    ("pin.max_tries", INT, 8, (3, 15)),
    ("pin.idle_s", INT, 300, (5, 86400)),
    ("audit.max_entries", INT, 400, (16, 4000)),
    ("update.trial_starts", INT, 3, (1, 10)),
    ("signals.window_days", INT, 30, (1, 30)),
    ("signals.lookups_per_day", INT, 20, (0, 1000)),
)

# The node's telemetry sample (telemetry events and `status`), field by field, in the
# order `ribat telemetry record` writes them: the node builds it from this tuple.
TELEMETRY = (
    "uptime_ms",  # since the last reset, not wrapping
    "reset_cause",
    "heap_free",
    "heap_used",
    "flash_free",
    "flash_used",
    "loop_lag_ms",  # the event loop's worst lag since the last sample
    "rx_ok",  # frames taken
    "rx_rejected",  # frames refused, by cause (ribat.codec.CAUSES)
    "tx",  # frames sent
    "fw",
    "temp_c",
    "keys",  # unprovisioned, locked, unlocked, locked out
    "audit_seq",
    "audit_head",
    "alerts",  # [id, received] of each alert pending (ribat.alerts); no severity: a
    # gateway publishes the status
)

# Keys that only an unlocked session may change on a provisioned node: a locked node is
# not weakened by whoever holds its port (more PIN tries, a longer session, a smaller
# audit budget, another name or partner).
GUARDED = ("node.", "pin.", "audit.", "update.", "signals.")


def guarded(key: str) -> bool:
    for prefix in GUARDED:
        if key.startswith(prefix):
            return True
    return False


def find(key: str) -> "tuple | None":
    for entry in KEYS:
        if entry[0] == key:
            return entry
    return None


def defaults() -> dict:
    return {e[0]: e[2] for e in KEYS}


def allowed(entry: tuple) -> str:
    """What values a key takes, in words, for error messages and help."""
    kind, bounds = entry[1], entry[3]
    if kind == BOOL:
        return "true or false"
    if kind == INT:
        return "a whole number from %d to %d" % bounds
    if kind == CHOICE:
        return "one of " + ", ".join(bounds)
    lo, hi, chars = bounds
    size = "%d characters" % lo if lo == hi else "%d to %d characters" % (lo, hi)
    if chars == _UPPER:
        return "%s, capital letters A-Z" % size
    return "%s: letters, digits, '-', '_', '.'" % size


def check(key: str, value: object) -> "str | None":
    """None if value is valid for key, else a one-line message saying what is allowed."""
    entry = find(key)
    if entry is None:
        return "unknown key %r" % key
    kind, bounds = entry[1], entry[3]
    ok = False
    if kind == BOOL:
        ok = value is True or value is False
    elif kind == INT:
        ok = type(value) is int and bounds[0] <= value <= bounds[1]
    elif kind == CHOICE:
        ok = type(value) is str and value in bounds
    elif type(value) is str:
        lo, hi, chars = bounds
        ok = lo <= len(value) <= hi
        for c in value:
            if c not in chars:
                ok = False
    if ok:
        return None
    return "%s must be %s (got %r)" % (key, allowed(entry), value)
