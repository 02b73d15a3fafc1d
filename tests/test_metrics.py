"""`ribat metrics` serves Prometheus's text format, scraped over HTTP here and read with
Prometheus's own client parser: a node through its port, and a cell from its broker."""

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import PIN, Broker, NewSim, make_cell, ribat


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def exporter(*args: str) -> Iterator[str]:
    """`ribat metrics ARGS` serving on a free port: its URL, until the block ends."""
    listen = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "ribat", "metrics", *args, "--listen", listen],
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "serving metrics" in line, line + proc.stderr.read()
        yield f"http://{listen}/metrics"
    finally:
        proc.terminate()
        proc.wait(10)


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample: (name, sorted labels) -> value, as Prometheus's parser reads them."""
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def test_a_nodes_metrics_through_its_port(new_sim: NewSim, tmp_path: Path) -> None:
    (ma,) = make_cell(new_sim, tmp_path, [("MA", "rabat-1")])
    ribat("post", "-p", ma.device, "--pin", PIN, "--kind", "notice", "--to", "MA",
          "--title", "counted", "--body", "x")  # fmt: skip
    with exporter("-p", f"sim:{ma.name}") as url:
        got = scrape(url)
        me = (("node", "rabat-1"), ("partner", "MA"))
        assert got["ribat_port_up", (("port", f"sim:{ma.name}"),)] == 1
        assert got["ribat_heap_free_bytes", me] > 50_000
        assert got["ribat_journal_records", me] == 1
        assert got["ribat_key_state", (*me, ("state", "locked"))] == 1
        assert got["ribat_frames_rejected_total", (("cause", "crc"), *me)] == 0
        received = got["ribat_frames_received_total", me]
        assert scrape(url)["ribat_frames_received_total", me] > received  # asked each scrape
        # the port is free between scrapes: the operator's commands still run
        assert ribat("status", "-p", f"sim:{ma.name}").code == 0
        ribat("sim", "stop", ma.name)
        assert scrape(url)["ribat_port_up", (("port", f"sim:{ma.name}"),)] == 0


def test_a_cells_metrics_from_its_broker(new_sim: NewSim, broker: Broker, tmp_path: Path) -> None:
    ma, fr = make_cell(new_sim, tmp_path, [("MA", "rabat-1"), ("FR", "paris-1")])
    ribat("post", "-p", ma.device, "--pin", PIN, "--kind", "alert", "--severity", "flash",
          "--to", "FR", "--title", "watched", "--body", "x")  # fmt: skip
    cell = str(tmp_path / "cell")
    with exporter("--broker", broker.url, "--cell", cell) as url:
        for board in (ma, fr):
            rounds = ("--rounds", "3", "--interval", "0.3")
            assert ribat("gateway", "-p", board.device, "--broker", broker.url, *rounds).code == 0
        deadline = time.monotonic() + 30
        while True:
            got = scrape(url)
            fr_ = (("node", "paris-1"), ("partner", "FR"))
            if got.get(("ribat_journal_entries", fr_)) == 1:
                break
            assert time.monotonic() < deadline, got
            time.sleep(0.5)
        assert got["ribat_summary_stale", fr_] == 0 and got["ribat_summary_age_seconds", fr_] < 60
        assert got["ribat_heap_free_bytes", fr_] > 0  # the gateways' telemetry
        assert got["ribat_cell_forks", ()] == 0 and got["ribat_cell_audit_alarms", ()] == 0
        ma_ = (("node", "rabat-1"), ("partner", "MA"))
        assert got["ribat_journal_entries", ma_] == 1
        assert ("ribat_cell_alerts_pending", fr_) in got


def test_metrics_refuses_what_it_cannot_serve() -> None:
    r = ribat("metrics", "--listen", "nowhere")
    assert r.code == 2 and "give [HOST]:PORT" in r.err
    r = ribat("metrics", "--broker", "mqtt://127.0.0.1:1")
    assert r.code == 2 and "--cell" in r.err


def test_a_port_given_wins_over_the_cells_broker_in_the_environment(
    new_sim: NewSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shell set up for a cell exports $RIBAT_BROKER; `metrics -p` asks for one node."""
    (ma,) = make_cell(new_sim, tmp_path, [("MA", "rabat-1")])
    monkeypatch.setenv("RIBAT_BROKER", "mqtt://127.0.0.1:1")
    with exporter("-p", f"sim:{ma.name}") as url:
        assert scrape(url)["ribat_port_up", (("port", f"sim:{ma.name}"),)] == 1
