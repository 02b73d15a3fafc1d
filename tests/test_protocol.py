"""The node's protocol end to end, on a virtual Pico: every rejection is counted and, where
the request can be named, answered; junk never stops it or grows its heap; the REPL stays
reachable beside it."""

import random
import subprocess
import sys
import time

import pytest

from ribat import codec, schema, sim
from ribat.device.client import NodeClient
from ribat.device.transport import Port
from ribat.errors import DeviceError


@pytest.fixture
def client(node: sim.Sim):
    with NodeClient(Port(node.device)) as c:
        c.wait_ready()
        yield c


def rejected(c: NodeClient) -> dict[str, int]:
    counts = c.request("status")["rx_rejected"]
    return dict(zip(codec.CAUSES, counts, strict=True))


def test_requests_sent_together_are_each_answered(client: NodeClient) -> None:
    """The node answers requests in the order they came; answers read together (here all
    of them, in one read) are each found, asked for in that order, with more sent
    between."""
    seqs = [client.send("ping") for _ in range(6)]
    time.sleep(0.5)  # every answer waits on the link before the first is read
    for seq in seqs[:3]:
        assert client.answer(seq, "ping", timeout=5.0) == ({}, b"")
    seqs += [client.send("ping")]
    for seq in seqs[3:]:
        assert client.answer(seq, "ping", timeout=5.0) == ({}, b"")


def test_each_rejection_is_counted_and_answered_where_it_can_be(client: NodeClient) -> None:
    before = rejected(client)
    with pytest.raises(DeviceError) as e:
        client.request("no.such.op")
    assert e.value.cause == "unknown"
    with pytest.raises(DeviceError) as e:
        client.request("config.set", set=["not", "a", "dict"])
    assert e.value.cause == "args"
    # a frame with a broken CRC still names its request: the node answers "crc"
    line = bytearray(codec.encode(codec.REQUEST, 900, {"op": "ping"}))
    line[-3] = ord("A") if line[-3] != ord("A") else ord("B")
    client.port.write(bytes(line))
    client.port.write(b"\x1e" + b"Q" * 6000 + b"\n")  # oversize: skipped, no seq to answer
    client.port.write(b"\x1e@@@@not base64@@@@\n")
    client.port.write(codec.encode(codec.REQUEST, 901, {"op": "ping"})[:20])  # cut short...
    assert client.request("ping") == {}  # ...by this frame, which is answered
    after = rejected(client)
    grew = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    assert grew == {
        "unknown": 1,
        "args": 1,
        "crc": 1,
        "oversize": 1,
        "encoding": 1,
        "truncated": 1,
    }


def test_the_host_keeps_to_the_frame_size_the_node_announced(client: NodeClient) -> None:
    assert client.info is not None and client.info.max_frame == 4096
    before = client.request("status")["tx"]
    with pytest.raises(DeviceError) as e:
        client.request("ping", pad="x" * 5000)
    assert e.value.cause == "oversize" and "4096 bytes" in str(e.value)
    assert client.request("status")["tx"] == before + 1  # nothing was sent for the big one


def test_the_node_says_which_version_it_speaks(node: sim.Sim) -> None:
    with Port(node.device) as port:
        port.write(codec.encode(codec.REQUEST, 5, {"op": "hello"}, version=2))
        deframer = codec.Deframer(4096)
        deadline = time.monotonic() + 5
        frame = None
        while frame is None and time.monotonic() < deadline:
            for b in port.read(0.2):
                if deframer.push(b) == -2:
                    frame = codec.decode(bytes(deframer.line()))
    assert frame is not None and (frame.kind, frame.seq) == (codec.ERROR, 5)
    assert frame.meta == {
        "error": "version",
        "proto": 1,
        "message": "this node speaks protocol 1, not 2",
    }


def test_random_bytes_never_stop_the_node_nor_grow_its_heap(client: NodeClient) -> None:
    rng = random.Random(2018)
    # 0x03 is Ctrl-C, the board's interrupt, which a node must keep (see test below)
    alphabet = bytes(b for b in range(256) if b != 0x03)
    heap_before = client.request("status")["heap_used"]
    for _ in range(40):
        junk = bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 3000)))
        if rng.random() < 0.3:  # junk that looks like the start of a frame
            junk = b"\x1e" + junk
        client.port.write(junk + b"\n")
        assert client.request("ping") == {}
    status = client.request("status")
    assert sum(status["rx_rejected"]) > 0
    assert status["heap_used"] <= heap_before + 4096  # bounded: no growth with the junk


def test_a_stray_ctrl_c_only_pauses_the_node(client: NodeClient) -> None:
    uid = client.info.uid if client.info else None
    client.port.write(b"\x03")
    time.sleep(0.5)
    said = b""
    while b"it resumes" not in said and (chunk := client.port.read(1.0)):
        said += chunk
    assert b"interrupted" in said
    info = client.wait_ready(timeout=10)  # after the grace period it resumes by itself
    assert info.uid == uid


def test_telemetry_at_100_ms_loses_no_frame(client: NodeClient) -> None:
    client.request("config.set", set={"telemetry.interval_ms": 100})
    client.events.clear()
    seqs: list[int] = []
    while len(seqs) < 40:
        event = client.next_event(2.0)
        assert event is not None, "telemetry stopped"
        if event.get("event") == "telemetry":
            seqs.append(event["seq"])
            assert set(event) == {*schema.TELEMETRY, "event", "seq"}
    assert seqs == list(range(seqs[0], seqs[0] + 40))


def test_the_repl_stays_reachable_beside_the_running_node(node: sim.Sim) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mpremote",
            "connect",
            node.device,
            "resume",
            "exec",
            "print('repl', 6 * 7)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "repl 42" in done.stdout, done.stdout + done.stderr
