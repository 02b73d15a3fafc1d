"""The CLI's happy paths, each against a virtual board through its pseudo-terminal."""

import csv
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import ribat
from ribat import schema, sim


def p(s: sim.Sim) -> list[str]:
    return ["--port", f"sim:{s.name}"]


def test_help_lists_every_command() -> None:
    run = ribat("--help")
    assert run.code == 0
    for command in ("boards", "flash", "status", "reset", "config", "telemetry", "sim"):
        assert command in run.out
    assert ribat("--version").out.strip() == "ribat, version 0.1.0"


def test_config_set_get_unset_show(node: sim.Sim) -> None:
    run = ribat(
        "config",
        "set",
        "node.name",
        "tanger-med",
        "node.partner",
        "MA",
        "telemetry.interval_ms",
        "250",
        *p(node),
    )
    assert run.code == 0, run.err
    assert "node.name = tanger-med" in run.out and "telemetry.interval_ms = 250" in run.out
    assert "read back" in run.err
    assert ribat("config", "get", "node.partner", *p(node)).out.strip() == "MA"
    shown = ribat("config", "show", "--json", *p(node))
    values = json.loads(shown.out)
    assert values == {
        **schema.defaults(),
        "node.name": "tanger-med",
        "node.partner": "MA",
        "telemetry.interval_ms": 250,
    }
    table = ribat("config", "show", *p(node)).out
    assert all(key in table for key, *_ in schema.KEYS)
    assert ribat("config", "unset", "node.partner", *p(node)).code == 0
    assert ribat("config", "get", "node.partner", *p(node)).out.strip() == "XX"


def test_config_survives_power_cycle_and_redeploy(node: sim.Sim, tmp_path: Path) -> None:
    assert ribat("config", "set", "node.name", "algeciras", *p(node)).code == 0
    sim.power_cycle(node.name)
    assert ribat("config", "get", "node.name", *p(node)).out.strip() == "algeciras"
    src = tmp_path / "fw"
    import shutil

    from conftest import FIRMWARE

    shutil.copytree(FIRMWARE, src)
    with open(src / "ribat" / "service.py", "a") as f:
        f.write("\nCHANGED = 1\n")
    assert ribat("flash", *p(node), "--source", str(src)).code == 0
    assert ribat("config", "get", "node.name", *p(node)).out.strip() == "algeciras"


def test_export_then_import_on_another_node(new_sim, tmp_path: Path) -> None:
    a, b = new_sim(), new_sim()
    for s in (a, b):
        assert ribat("flash", *p(s)).code == 0
    ribat("config", "set", "node.name", "rabat", "led.brightness", "5", *p(a))
    exported = tmp_path / "rabat.json"
    run = ribat("config", "export", str(exported), *p(a))
    assert run.code == 0 and f"exported {len(schema.KEYS)} keys" in run.err
    doc = json.loads(exported.read_text())
    assert doc["ribat_config"] == 1 and doc["values"]["led.brightness"] == 5
    run = ribat("config", "import", str(exported), *p(b))
    assert run.code == 0, run.err
    assert json.loads(ribat("config", "show", "--json", *p(b)).out) == doc["values"]


def test_import_is_all_or_nothing(node: sim.Sim, tmp_path: Path) -> None:
    before = ribat("config", "show", "--json", *p(node)).out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"node.name": "changed", "alert.min_severity": "routine"}))
    run = ribat("config", "import", str(bad), *p(node))
    assert run.code == 6 and "alert.min_severity must be one of priority, flash" in run.err
    assert ribat("config", "show", "--json", *p(node)).out == before


def test_export_to_an_unwritable_place_leaves_nothing(node: sim.Sim, tmp_path: Path) -> None:
    run = ribat("config", "export", str(tmp_path / "missing" / "x.json"), *p(node))
    assert run.code == 6 and "cannot write" in run.err
    assert not (tmp_path / "missing").exists()


def test_status(node: sim.Sim) -> None:
    ribat("config", "set", "node.name", "bruxelles", "node.partner", "BE", *p(node))
    run = ribat("status", *p(node))
    assert run.code == 0, run.err
    assert "bruxelles (BE)" in run.out and "virtual-rp2-pico" in run.out
    for label in ("firmware", "up", "heap", "flash", "loop lag", "link", "temperature"):
        assert label in run.out
    snap = json.loads(ribat("status", "--json", *p(node)).out)
    assert snap["partner"] == "BE" and snap["health"]["heap_free_bytes"] > 0
    assert set(snap["health"]["frames_rejected"]) >= {"crc", "auth"}


def test_telemetry_record_csv_and_jsonl(node: sim.Sim, tmp_path: Path) -> None:
    ribat("config", "set", "telemetry.interval_ms", "100", *p(node))
    out = tmp_path / "t.csv"
    run = ribat("telemetry", "record", "--duration", "1.5", "--out", str(out), *p(node))
    assert run.code == 0 and ", 0 lost" in run.err, run.err
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) >= 5
    seqs = [int(r["seq"]) for r in rows]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert rows[-1]["firmware"] == "0.1.0" and int(rows[-1]["heap_free_bytes"]) > 0
    assert rows[-1]["keys"] == "unprovisioned" and rows[-1]["alerts_pending"] == "0"
    run = ribat("telemetry", "record", "--format", "jsonl", "--duration", "0.6", *p(node))
    lines = [json.loads(line) for line in run.out.splitlines()]
    assert lines and lines[0]["received"].endswith("Z") and lines[0]["health"]["uptime_ms"] > 0
    assert lines[0]["health"]["frames_rejected"]["crc"] == 0


def test_telemetry_watch(node: sim.Sim) -> None:
    ribat("config", "set", "telemetry.interval_ms", "200", *p(node))
    run = ribat("telemetry", "watch", "--duration", "1.2", *p(node))
    assert run.code == 0, run.err
    assert "telemetry frame" in run.out and "lost" in run.out and "audit head" in run.out
    run = ribat("telemetry", "watch", "--json", "--duration", "1.2", *p(node))
    frames = [json.loads(line) for line in run.out.splitlines()]
    assert run.code == 0 and frames and frames[-1]["health"]["keys"] == "unprovisioned"


def test_boards_marks_ribat_nodes(node: sim.Sim, new_sim) -> None:
    bare = new_sim()
    ribat("config", "set", "node.name", "paris", "node.partner", "FR", *p(node))
    run = ribat("boards")
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    ours = next(line for line in lines if f"sim:{node.name}" in line)
    assert "paris" in ours and "FR" in ours and "0.1.0" in ours
    other = next(line for line in lines if f"sim:{bare.name}" in line)
    assert "no ribat node answers" in other


def test_reset_command(node: sim.Sim) -> None:
    for args in ([], ["--hard"]):
        run = ribat("reset", *args, *p(node))
        assert run.code == 0 and "restarted and answers" in run.err, run.err
    assert "since hard reset" in ribat("status", *p(node)).out


def test_ctrl_c_ends_a_recording_whole_with_status_130(node: sim.Sim, tmp_path: Path) -> None:
    """Ctrl-C exits 130 everywhere; a recording stopped so keeps every row whole."""
    ribat("config", "set", "telemetry.interval_ms", "100", *p(node))
    out = tmp_path / "t.csv"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ribat", "telemetry", "record", "-o", str(out), *p(node)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(2.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130 and "recorded" in err and "Traceback" not in err, err
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert rows and all(r["rejected_auth"] == "0" for r in rows)  # the last row whole


def complete(words: str) -> list[str]:
    """What ribat's bash completion offers for the last of words."""
    parts = words.split(" ")
    env = {"_RIBAT_COMPLETE": "bash_complete", "COMP_WORDS": words,
           "COMP_CWORD": str(len(parts) - 1)}  # fmt: skip
    r = ribat(env=env)
    return [line.split(",", 1)[1] for line in r.out.splitlines()]


def test_shell_completion_knows_config_keys_values_and_boards(node: sim.Sim) -> None:
    assert complete("ribat config get telemetry.") == [
        "telemetry.enabled",
        "telemetry.interval_ms",
    ]
    assert complete("ribat config set alert.min_severity ") == ["priority", "flash"]
    assert complete("ribat config set alert.buzzer ") == ["true", "false"]
    assert f"sim:{node.name}" in complete("ribat status -p sim:")
    assert node.name in complete("ribat sim panel ")


def test_telemetry_plot_of_a_recording_and_live(node: sim.Sim, tmp_path: Path) -> None:
    ribat("config", "set", "telemetry.interval_ms", "100", *p(node))
    for fmt in ("csv", "jsonl"):
        rec = tmp_path / f"t.{fmt}"
        ribat(
            "telemetry", "record", "--format", fmt, "--duration", "1.5", "-o", str(rec), *p(node)
        )
        png = tmp_path / f"{fmt}.png"
        r = ribat("telemetry", "plot", str(rec), "--out", str(png))
        assert r.code == 0, r.err
        heap = next(line for line in r.out.splitlines() if "heap free" in line)
        assert any(c in heap for c in "▁▂▃▄▅▆▇█") and " KB, now " in heap
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    r = ribat("telemetry", "plot", *p(node), "--duration", "1.2")
    assert r.code == 0 and "frames" in r.out and "alerts pending" in r.out, r.err
    junk = tmp_path / "junk.csv"
    junk.write_text("a,b\n1,2\n")
    r = ribat("telemetry", "plot", str(junk), "--out", str(tmp_path / "x.png"))
    assert r.code == 2 and "not a telemetry recording" in r.err and len(r.err.splitlines()) <= 4
    assert not (tmp_path / "x.png").exists()
