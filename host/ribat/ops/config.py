"""Configuration on the host side: parsing values typed on a command line, suggesting keys,
checking a whole change against the shared schema, and the export file format.

The schema itself is ribat.schema, the same file the node validates with.
"""

import json
from pathlib import Path

from ribat import schema
from ribat.device.client import NodeClient
from ribat.errors import DeviceError, InvalidConfig
from ribat.files import write_whole

# What each key of the schema means, for `ribat config show`: kept here, not in the schema
# the node loads (some 3 KB of a Pico W's heap); a test holds the two to the same keys.
MEANINGS = {
    "node.name": "Name of this node, shown by `ribat boards` and in telemetry",
    "node.partner": "Partner service that runs this node: ISO 3166-1 alpha-2 code"
    " (MA, FR, ES, BE...); XX until provisioned",
    "telemetry.enabled": "Push telemetry frames over the serial link",
    "telemetry.interval_ms": "Time between two telemetry frames, in milliseconds",
    "led.brightness": "Brightness of the status LED in percent; 0 turns it off",
    "alert.enabled": "Show alerts on the LED and the buzzer (acknowledgements go on either way)",
    "alert.buzzer": "Sound the buzzer for alerts, where the board has one",
    "alert.min_severity": "The least severity of a bulletin released to this node's partner that"
    " raises an alert: priority (slow blink) or flash (fast blink)",
    "alert.ack_timeout_s": "Seconds an alert may wait for an acknowledgement before it is"
    " overdue: a steady LED, OVERDUE in `ribat watch` and `ribat cell status`",
    "pin.max_tries": "Wrong PINs in a row after which the node wipes its keys and content",
    "pin.idle_s": "Seconds without a request after which an unlocked session locks itself",
    "audit.max_entries": "Audit entries kept on flash; older ones are folded into a checkpoint",
    "signals.window_days": "Days apart two partners' reports of one indicator may be and still"
    " converge (an alert on both nodes); at most 30, a token's period",
    "signals.lookups_per_day": "Lookups (`ribat check`) this node makes a day: what bounds a"
    " member asking the cell about indicators it has not seen",
    "update.trial_starts": "Starts a signed release gets to confirm itself (10 s of service, or"
    " `ribat flash --confirm`) before the node goes back to the build it replaced",
}

EXPORT_FORMAT = 1
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def entry(key: str) -> tuple:
    found = schema.find(key)
    if found is None:
        import difflib

        close = difflib.get_close_matches(key, [e[0] for e in schema.KEYS], n=3, cutoff=0.5)
        hint = (
            f"; did you mean {' or '.join(close)}?"
            if close
            else "; `ribat config show` lists the keys"
        )
        raise InvalidConfig(f"unknown configuration key {key!r}{hint}")
    return found


def parse(key: str, text: str) -> object:
    """A value typed on the command line, converted to the key's type and checked."""
    e = entry(key)
    value: object = text
    if e[1] == schema.BOOL:
        if text.lower() not in _TRUE | _FALSE:
            raise InvalidConfig(f"{key} must be {schema.allowed(e)} (got {text!r})")
        value = text.lower() in _TRUE
    elif e[1] == schema.INT:
        try:
            value = int(text)
        except ValueError:
            raise InvalidConfig(f"{key} must be {schema.allowed(e)} (got {text!r})") from None
    check(key, value)
    return value


def check(key: str, value: object) -> None:
    entry(key)
    problem = schema.check(key, value)
    if problem is not None:
        raise InvalidConfig(problem)


def show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def values(client: NodeClient) -> dict:
    """The node's configuration: every key, with its value."""
    got: dict = client.request("config.get")["values"]
    return got


def change(client: NodeClient, updates: dict, unset: list[str]) -> dict:
    """Apply all of updates and unset on the node, or none of it; the values read back.

    Checked here before anything is sent, checked again by the node, saved by the node in
    one atomic write, and confirmed against what the node read back from its flash.
    """
    for key, value in updates.items():
        check(key, value)
    for key in unset:
        entry(key)
    try:
        reply = client.request("config.set", set=updates, unset=unset)
    except DeviceError as e:
        if e.cause == "args":  # the node's own check refused it (e.g. an older schema)
            raise InvalidConfig(str(e)) from None
        raise
    values: dict = reply["values"]
    defaults = schema.defaults()
    expected = {**{k: defaults[k] for k in unset}, **updates}
    for key, value in expected.items():
        if values.get(key) != value:
            raise DeviceError(
                f"{key} reads back from the node as {values.get(key)!r}, not {value!r}"
            )
    return values


def export_doc(values: dict, node_name: str) -> dict:
    from datetime import UTC, datetime

    return {
        "ribat_config": EXPORT_FORMAT,
        "node": node_name,
        "exported": datetime.now(UTC).isoformat(timespec="seconds"),
        "values": values,
    }


def write_export(path: Path, doc: dict) -> None:
    """Write the file whole or not at all."""
    write_whole(path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())


def read_import(path: Path) -> dict:
    """The values of an export file (or of a plain {key: value} JSON object), all checked."""
    try:
        doc = json.loads(path.read_text())
    except OSError as e:
        raise InvalidConfig(f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise InvalidConfig(f"{path} is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise InvalidConfig(f"{path} holds no configuration: expected a JSON object")
    if "ribat_config" in doc:
        if doc["ribat_config"] != EXPORT_FORMAT or not isinstance(doc.get("values"), dict):
            raise InvalidConfig(
                f"{path} is a ribat config export of an unknown format {doc['ribat_config']!r}"
            )
        doc = doc["values"]
    for key, value in doc.items():
        check(key, value)
    return doc
