"""The configuration schema (shared by node and host), the host's parsing of typed values,
and the node's configuration store, under MicroPython."""

from pathlib import Path

import pytest

from conftest import micropython
from ribat import schema
from ribat.errors import InvalidConfig
from ribat.ops import config

# (key, value, valid?)
CASES = [
    ("node.name", "rabat-1", True),
    ("node.name", "", False),
    ("node.name", "a" * 32, True),
    ("node.name", "a" * 33, False),
    ("node.name", "has space", False),
    ("node.name", 5, False),
    ("node.partner", "MA", True),
    ("node.partner", "ma", False),
    ("node.partner", "MAR", False),
    ("telemetry.interval_ms", 100, True),
    ("telemetry.interval_ms", 99, False),
    ("telemetry.interval_ms", True, False),
    ("telemetry.interval_ms", "1000", False),
    ("telemetry.enabled", False, True),
    ("telemetry.enabled", 0, False),
    ("led.brightness", 0, True),
    ("led.brightness", 101, False),
    ("alert.min_severity", "flash", True),
    ("alert.min_severity", "routine", False),
    ("alert.ack_timeout_s", 10, True),
    ("alert.ack_timeout_s", 9, False),
    ("no.such.key", 1, False),
]


def test_every_key_has_a_valid_default_and_a_description() -> None:
    for key, _, default, _ in schema.KEYS:
        assert schema.check(key, default) is None, key
    assert len({e[0] for e in schema.KEYS}) == len(schema.KEYS)
    # each meaning is the host's (the node has no use for it): one for every key, no more
    assert set(config.MEANINGS) == {e[0] for e in schema.KEYS}
    assert all(meaning.strip() for meaning in config.MEANINGS.values())


@pytest.mark.parametrize("key, value, valid", CASES)
def test_check_on_the_host(key: str, value: object, valid: bool) -> None:
    problem = schema.check(key, value)
    assert (problem is None) == valid, problem
    if problem and key != "no.such.key":
        assert key in problem and schema.allowed(schema.find(key)) in problem  # type: ignore[arg-type]


def test_check_on_the_node_agrees() -> None:
    expected = [valid for _, _, valid in CASES]
    micropython(f"""
        from ribat import schema
        got = [schema.check(k, v) is None for k, v, _ in {CASES!r}]
        assert got == {expected!r}, got
        print("OK")
    """)


@pytest.mark.parametrize(
    "text, value", [("true", True), ("On", True), ("0", False), ("no", False)]
)
def test_parse_bool(text: str, value: bool) -> None:
    assert config.parse("telemetry.enabled", text) is value


def test_parse_int_and_text() -> None:
    assert config.parse("telemetry.interval_ms", "250") == 250
    assert config.parse("node.name", "casa-1") == "casa-1"


@pytest.mark.parametrize(
    "key, text, message",
    [
        ("telemetry.interval_ms", "fast", "a whole number from 100 to 3600000"),
        ("telemetry.enabled", "maybe", "true or false"),
        ("led.brightness", "300", "from 0 to 100 (got 300)"),
        ("node.nmae", "x", "did you mean node.name"),
        ("zzz", "x", "`ribat config show` lists the keys"),
    ],
)
def test_parse_errors_say_what_is_allowed(key: str, text: str, message: str) -> None:
    with pytest.raises(InvalidConfig) as e:
        config.parse(key, text)
    assert message in str(e.value)


def test_import_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    for content, message in [
        ("{not json", "is not JSON"),
        ("[1]", "expected a JSON object"),
        ('{"ribat_config": 9, "values": {}}', "unknown format"),
        ('{"node.name": "ok", "led.brightness": -1}', "led.brightness must be"),
    ]:
        bad.write_text(content)
        with pytest.raises(InvalidConfig) as e:
            config.read_import(bad)
        assert message in str(e.value)
    with pytest.raises(InvalidConfig, match="cannot read"):
        config.read_import(tmp_path / "missing.json")


def test_node_config_store_is_all_or_nothing(tmp_path: Path) -> None:
    micropython(
        f"""
        import json
        from ribat import config
        path = "{tmp_path}/cfg/config.json"
        c = config.Config(path)
        assert c.rev == 0 and c.get("node.name") == "ribat" and c.error is None
        assert c.change({{"node.name": "casa-1", "led.brightness": 10}}, []) is None
        assert c.rev == 1 and c.get("node.name") == "casa-1"
        before = open(path).read()
        # one bad value: nothing changes, on flash or in memory
        problem = c.change({{"node.name": "tanger", "led.brightness": 500}}, [])
        assert "led.brightness" in problem, problem
        assert open(path).read() == before and c.get("node.name") == "casa-1"
        assert "unknown key" in c.change({{}}, ["nope"])
        assert c.change({{}}, ["led.brightness"]) is None
        assert c.get("led.brightness") == 50 and c.rev == 2
        # what a new Config reads from the file is what the old one reported
        again = config.Config(path)
        assert again.all() == c.all() and again.rev == 2
        # a value today's schema refuses falls back to its default; junk leaves defaults
        with open(path, "w") as f:
            f.write(json.dumps({{"rev": 7, "values": {{"node.name": "ok", "led.brightness": 999,
                                                       "gone.key": 1}}}}))
        old = config.Config(path)
        assert old.get("node.name") == "ok" and old.get("led.brightness") == 50 and old.rev == 7
        with open(path, "w") as f:
            f.write("{{truncated")
        broken = config.Config(path)
        assert broken.error and broken.all()["node.name"] == "ribat"
        print("OK")
        """
    )
