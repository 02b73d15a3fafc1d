"""Replication through a real MQTT broker (mosquitto on loopback): gateways bridge nodes
to it, nodes converge, a node offline for the whole exchange catches up from the retained
entries alone, need-to-know holds, audit heads are witnessed; a broker that anyone can
write through (or that lies) gets forgeries, replays and garbage refused."""

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_journal import audit_events, one_line, post
from test_json import conforms

from conftest import PIN, Broker, NewSim, make_cell, ribat, running_broker
from ribat import entry, results, sim
from ribat.device.client import connect
from ribat.ops import guard, sync
from ribat.ops import journal as lib


@contextmanager
def gateway(board: sim.Sim, broker: Broker) -> Iterator[subprocess.Popen]:
    """`ribat gateway` for board, running until the block ends."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ribat", "gateway", "-p", board.device,
         "--broker", broker.url, "--interval", "0.3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


def wait_line(proc: subprocess.Popen, text: str, timeout: float = 30) -> None:
    """Read the gateway's log (stderr, straight from the pipe: a buffered reader would
    hold lines select cannot see) until a line holds text."""
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    deadline = time.monotonic() + timeout
    log = b""
    while text.encode() not in log:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(0.0, left))
        assert ready, f"not within {timeout} s: {text!r} in the gateway's log {log!r}"
        got = os.read(fd, 4096)
        assert got, f"the gateway ended before {text!r}: {log!r}"
        log += got


def cell_status(cell: Path, broker: Broker) -> dict[str, dict]:
    """`ribat cell status --json`'s nodes, by fingerprint."""
    r = ribat("cell", "status", "--cell", str(cell), "--broker", broker.url, "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    conforms(doc, results.CellStatus)
    return {n["fingerprint"]: n for n in doc["nodes"]}


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.3)


def vector(board: sim.Sim) -> dict[str, int]:
    with connect(board.device) as client:
        return dict(sync.hello(client)["vector"])


@pytest.fixture
def trio(new_sim: NewSim, tmp_path: Path) -> list[sim.Sim]:
    return make_cell(new_sim, tmp_path, [("MA", "rabat-1"), ("FR", "paris-1"), ("ES", "madrid-1")])


def test_nodes_converge_and_an_offline_node_catches_up(
    trio: list[sim.Sim], broker: Broker, tmp_path: Path
) -> None:
    ma, fr, es = trio
    cell = tmp_path / "cell"
    with gateway(ma, broker), gateway(fr, broker):
        # posted with the gateways running: the CLI waits for the port between rounds
        ma_only = post(ma, "--kind", "alert", "--to", "MA", "--title", "MA only", "--body", "x")
        for_es = post(ma, "--kind", "notice", "--to", "ES", "--title", "For ES", "--body", "hola")
        post(fr, "--kind", "request", "--to", "MA", "--title", "Asked", "--body", "?")

        def converged() -> bool:
            nodes = cell_status(cell, broker).values()
            return len(nodes) == 2 and all(n["entries"] == 3 and not n["lags"] for n in nodes)

        wait_for(converged, "rabat-1 and paris-1 hold each other's entries")
        wait_for(
            lambda: all(len(n["witnessed_by"]) == 1 for n in cell_status(cell, broker).values()),
            "each witnessed the other's audit head",
        )
        r = ribat("cell", "status", "--cell", str(cell), "--broker", broker.url)
        assert r.code == 0 and "rabat-1" in r.out and "paris-1" in r.out and "ALARM" not in r.out
    target = vector(ma)

    # madrid-1 was offline throughout; the others are gone now: the broker alone serves it
    es_fp = _fp(es)
    with gateway(es, broker):
        wait_for(
            lambda: (
                cell_status(cell, broker).get(es_fp, {}).get("entries") == sum(target.values())
            ),
            "madrid-1 caught up",
        )
        r = ribat("show", "-p", es.device, "--pin", PIN, for_es)
        assert r.code == 0 and "hola" in r.out, r.err
        r = ribat("show", "-p", es.device, "--pin", PIN, ma_only)
        assert r.code == 13 and "not released to ES" in r.err and one_line(r)
    assert vector(es) == target
    events = audit_events(es)
    assert "import" in events and "imported" in events


def _fp(board: sim.Sim) -> str:
    with connect(board.device) as client:
        return str(sync.hello(client)["fp"])


def publish(broker: Broker | str, messages: list[tuple[str, bytes]], user: str | None) -> None:
    """Publish retained messages on broker (or its mqtt:// URL) as the user named."""
    import paho.mqtt.client as mqtt

    from ribat.gateway.broker import parse_broker

    host, port = parse_broker(broker if isinstance(broker, str) else broker.url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    if user:
        client.username_pw_set(user)
    client.connect(host, port)
    client.loop_start()
    for topic, payload in messages:
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def test_a_broker_anyone_writes_through_gets_forgeries_refused(
    new_sim: NewSim, tmp_path: Path
) -> None:
    ma, fr = make_cell(new_sim, tmp_path, [("MA", "rabat-1"), ("FR", "paris-1")])
    post(ma, "--kind", "notice", "--to", "FR", "--title", "one", "--body", "first")
    post(ma, "--kind", "notice", "--to", "FR", "--title", "two", "--body", "second")
    with connect(ma.device) as client:
        raws = sorted(lib.export(client, {}), key=lambda raw: entry.Header(raw).seq)
        me = sync.hello(client)
    root = f"ribat/{me['cell']}/"
    origin = me["fp"]
    altered = bytearray(raws[1])
    altered[entry.SIGNED + 45] ^= 1  # the ciphertext changed: the header's hash disagrees
    later = bytearray(raws[1])
    later[entry.AT_EXPIRES] ^= 0x40  # a later expiry, under the old signature
    outsider = "0000-0000-0000-0000"
    rounds = ("--rounds", "3", "--interval", "0.2")
    for broker in running_broker(tmp_path / "open-broker", acl=False):
        publish(broker, [
            (f"{root}entry/{origin}/1", raws[0]),  # the real first entry
            (f"{root}entry/{origin}/2", bytes(altered)),
            (f"{root}entry/{origin}/3", b"garbage"),
            (f"{root}entry/{origin}/4", raws[0]),  # a real entry where it does not belong
            (f"{root}summary/{origin}", b'{"fp": "%s", "vector": {}}' % origin.encode()),
            (f"{root}summary/{outsider}", b"{not json"),
        ], user="intruder")  # fmt: skip
        r = ribat("gateway", "-p", fr.device, "--broker", broker.url, *rounds)
        assert r.code == 0, r.err
        publish(broker, [(f"{root}entry/{origin}/2", bytes(later))], "intruder")
        r = ribat("gateway", "-p", fr.device, "--broker", broker.url, *rounds)
        assert r.code == 0, r.err
    with connect(fr.device) as client:
        got = sync.hello(client)
    assert got["vector"] == {origin: 1}  # the real entry only
    assert imported_tallies(fr) == [{"stored": 1, "forged": 1}, {"forged": 1}]


def imported_tallies(board: sim.Sim) -> list[dict]:
    """The tally of each import the board's audit log recorded."""
    with connect(board.device) as client:
        log, _ = guard.read_audit(client)
    events = [json.loads(line) for line in guard.audit_lines(log)]
    return [e["d"] for e in events if e.get("ev") == "imported"]


def test_the_cell_acl_keeps_others_off_an_origins_topics(
    trio: list[sim.Sim], broker: Broker
) -> None:
    ma, fr, _ = trio
    post(ma, "--kind", "notice", "--to", "FR", "--title", "one", "--body", "first")
    with connect(ma.device) as client:
        raws = lib.export(client, {})
        me = sync.hello(client)
    # paris-1's gateway identity may not publish rabat-1's entries, even genuine ones
    publish(broker, [(f"ribat/{me['cell']}/entry/{me['fp']}/1", raws[0])], user=_fp(fr))
    r = ribat("gateway", "-p", fr.device, "--broker", broker.url, "--rounds", "2",
              "--interval", "0.2")  # fmt: skip
    assert r.code == 0, r.err
    assert vector(fr) == {}
    # published by rabat-1's own gateway, the same entry gets through
    for board in (ma, fr):
        r = ribat("gateway", "-p", board.device, "--broker", broker.url, "--rounds", "2",
                  "--interval", "0.2")  # fmt: skip
        assert r.code == 0, r.err
    assert vector(fr) == {me["fp"]: 1}


def test_gateway_errors_are_one_line(trio: list[sim.Sim]) -> None:
    ma = trio[0]
    r = ribat("gateway", "-p", ma.device, "--broker", "http://x")
    assert r.code == 2 and "mqtt://HOST:PORT" in r.err
    r = ribat("gateway", "-p", ma.device, "--broker", "mqtt://127.0.0.1:1", "--rounds", "1")
    assert r.code == 16 and "cannot reach the broker" in r.err and one_line(r)


def retained(broker: Broker, topic: str) -> dict[str, bytes]:
    """The retained messages under a topic filter: topic -> payload."""
    import paho.mqtt.client as mqtt

    got: dict[str, bytes] = {}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda _c, _u, msg: got.__setitem__(msg.topic, msg.payload)
    client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(topic, 1)
    client.connect(broker.host, broker.port)
    client.loop_start()
    time.sleep(1)
    client.loop_stop()
    client.disconnect()
    return got


def test_an_expired_entry_leaves_the_broker_as_its_header(
    trio: list[sim.Sim], broker: Broker
) -> None:
    ma, fr, _ = trio
    post(ma, "--kind", "notice", "--to", "FR", "--title", "soon gone", "--expires", "3s")
    post(ma, "--kind", "notice", "--to", "FR", "--title", "stays", "--body", "kept")
    me = _hello(ma)
    topic = f"ribat/{me['cell']}/entry/{me['fp']}/"
    with gateway(ma, broker):
        wait_for(lambda: len(retained(broker, topic + "#")) == 2, "both entries published")
        wait_for(
            lambda: len(retained(broker, topic + "#")[topic + "1"]) == entry.SIGNED,
            "the expired entry's content gone from the broker",
        )
    kept = retained(broker, topic + "#")
    assert len(kept[topic + "2"]) > entry.SIGNED  # the other is whole
    # paris-1 comes later: its chain still verifies through the stripped entry
    r = ribat("gateway", "-p", fr.device, "--broker", broker.url, "--rounds", "3",
              "--interval", "0.3")  # fmt: skip
    assert r.code == 0, r.err
    assert vector(fr) == {me["fp"]: 2}
    (tally,) = imported_tallies(fr)  # the run goes last to first: one held, then joined
    assert tally.pop("expired") == 1 and tally in ({"stored": 1}, {"gap": 1})


def _hello(board: sim.Sim) -> dict:
    with connect(board.device) as client:
        return sync.hello(client)


def test_a_summary_the_broker_delivers_late_is_no_false_alarm(
    new_sim: NewSim, broker: Broker, tmp_path: Path
) -> None:
    """A broker may reorder: paris-1's older summary, delivered after a newer one, shows a
    lower audit head, which rabat-1 must not take for a truncated log (each summary is
    stamped when sent; the node keeps the stamp it witnessed). A lower head sent later is
    a truncation, and caught; so is one a host relay shows, with no stamp."""
    from ribat.gateway.broker import parse_broker, summaries

    ma, fr = make_cell(new_sim, tmp_path, [("MA", "rabat-1"), ("FR", "paris-1")])
    fr_fp = _fp(fr)
    rounds = ("--rounds", "3", "--interval", "0.2")
    host, port = parse_broker(broker.url)
    with connect(ma.device) as client:
        cell_id = sync.hello(client)["cell"]
    topic = f"ribat/{cell_id}/summary/{fr_fp}"

    assert ribat("gateway", "-p", fr.device, "--broker", broker.url, *rounds).code == 0
    older = summaries(host, port, cell_id)[fr_fp]
    post(fr, "--kind", "notice", "--to", "FR", "--body", "moves paris-1's audit head")
    assert ribat("gateway", "-p", fr.device, "--broker", broker.url, *rounds).code == 0
    newer = summaries(host, port, cell_id)[fr_fp]
    assert newer["audit"]["seq"] > older["audit"]["seq"] and newer["sent"] > older["sent"]

    def witnessed() -> dict:
        with connect(ma.device) as client:
            return dict(sync.hello(client)["witnessed"].get(fr_fp, {}))

    late = "paris-1's summary was sent before the one witnessed"
    with gateway(ma, broker) as proc:
        wait_for(lambda: witnessed().get("seq") == newer["audit"]["seq"], "the newer head")
        publish(broker, [(topic, json.dumps(older).encode())], fr_fp)  # delivered late
        wait_line(proc, late)  # judged, and found late
        assert "alarm" not in witnessed()
    with gateway(ma, broker) as proc:  # restarted: the broker retains the late one
        wait_line(proc, late)  # its node knows
        assert "alarm" not in witnessed()
        ahead = int(time.time() * 1000) + 86_400_000  # kept, no later one would be taken
        publish(broker, [(topic, json.dumps({**newer, "sent": ahead}).encode())], fr_fp)
        time.sleep(2)
        assert witnessed().get("sent", 0) < ahead
        stamp = int(time.time() * 1000)
        publish(broker, [(topic, json.dumps({**older, "sent": stamp}).encode())], fr_fp)
        wait_for(lambda: "truncated" in witnessed().get("alarm", ""), "the truncation caught")
    with connect(ma.device) as client:  # a host relay's summary, unstamped: never stale
        verdict = sync.witness(client, {"fp": fr_fp, "audit": older["audit"]})["verdict"]
    assert verdict.startswith("truncated"), verdict


def test_the_gateway_tells_a_broker_lost_and_found_and_a_stale_peer(
    new_sim: NewSim, broker: Broker, tmp_path: Path
) -> None:
    """Its log says when the broker goes and comes back, and when a peer's summary has not
    been published again for longer than a running gateway would let it (STALE_S)."""
    from ribat.gateway.broker import STALE_S, parse_broker, summaries
    from ribat.simcell import broker as sim_broker

    ma, fr = make_cell(new_sim, tmp_path, [("MA", "rabat-1"), ("FR", "paris-1")])
    fr_fp = _fp(fr)
    host, port = parse_broker(broker.url)
    with connect(ma.device) as client:
        cell_id = sync.hello(client)["cell"]
    assert ribat("gateway", "-p", fr.device, "--broker", broker.url, "--rounds", "2").code == 0
    quiet = summaries(host, port, cell_id)[fr_fp]
    quiet["sent"] -= int((STALE_S + 120) * 1000)  # as if paris-1's gateway stopped 5 min ago
    publish(broker, [(f"ribat/{cell_id}/summary/{fr_fp}", json.dumps(quiet).encode())], fr_fp)
    with gateway(ma, broker) as proc:
        wait_line(proc, "paris-1's summary is stale: not heard for 5 min")
        broker.stop()
        wait_line(proc, f"broker at {host}:{port} lost")
        again = sim_broker.start(broker.folder, port=port)
        try:
            wait_line(proc, f"broker at {host}:{port} found again")
        finally:
            again.stop()
