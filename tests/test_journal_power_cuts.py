"""Power cuts during posts, imports and retention purges, by flash writes and by bytes
from the host: afterwards the node boots, every bulletin whose post or import the host
saw acknowledged is there, the journal and the audit chain verify, and a new post works.
Then a node with a full journal under a stream of junk and hostile requests: no crash,
no hang, heap flat.

RIBAT_CUTS (default 1) multiplies the number of random cut points.
"""

import os
import random
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from test_power_cuts import arm_byte_cut, arm_flash_cut, cuts
from test_security_power_cuts import check_node

from conftest import PIN, NewSim, make_cell, sim_status
from ribat import entry, sim
from ribat.authority.cell import Cell
from ribat.device.client import NodeClient, connect
from ribat.device.transport import Port
from ribat.errors import DeviceError, RibatError
from ribat.ops import guard
from ribat.ops import journal as lib

SCALE = int(os.environ.get("RIBAT_CUTS", "1"))


@pytest.fixture(autouse=True)
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request cut by the power gets no answer: wait for one as long as the virtual
    board needs, not as long as a Pico might."""
    for name in ("POST_TIMEOUT_S", "READ_TIMEOUT_S", "BATCH_TIMEOUT_S"):
        monkeypatch.setattr(lib, name, 2.0)
    monkeypatch.setattr(guard, "PIN_TIMEOUT_S", 2.0)


def journal_of(board: sim.Sim, keys: dict[bytes, bytes]) -> set[str]:
    """The ids of the node's entries, once its journal, audit chain and a new post are
    checked."""
    check_node(board)  # boots, answers, audit chain verifies against its head
    with connect(board.device) as client:
        raws = lib.export(client, {})
    problems = lib.verify(raws, keys)
    assert not problems, problems
    return {entry.Header(raw).id() for raw in raws}


def cut_during(
    board: sim.Sim,
    arm: Callable[[], None],
    action: Callable[[NodeClient], object],
    pin: bool = False,
) -> tuple[bool, object]:
    """Run action(client) with a cut armed (after an unlock, with pin): (cut happened,
    its result or None)."""
    before = cuts(board.name)
    result = None
    with NodeClient(Port(board.device)) as client:
        client.wait_ready()
        if pin:
            guard.unlock(client, PIN)
        arm()
        try:
            result = action(client)
            if pin:
                guard.lock(client)
        except RibatError:
            pass
    arm_flash_cut(board.name, None)
    arm_byte_cut(board.name, -1)
    return cuts(board.name) > before, result


def posting(n: int) -> Callable[[NodeClient], str]:
    def action(client: NodeClient) -> str:
        return lib.post(client, "notice", "routine", ["FR"], f"t{n}", "x" * 300, 3600, [])["id"]

    return action


@pytest.fixture
def pair(new_sim: NewSim, tmp_path: Path) -> tuple[list[sim.Sim], dict[bytes, bytes]]:
    boards = make_cell(new_sim, tmp_path, [("MA", "rabat-1"), ("FR", "paris-1")])
    return boards, entry.signing_keys(Cell.open(tmp_path / "cell").roster["members"])


def test_power_cuts_during_posts(pair: tuple[list[sim.Sim], dict]) -> None:
    (ma, _), keys = pair
    rng = random.Random(6)
    acked: set[str] = set()
    formats = sim_status(ma.name)["formats"]
    n = 0
    for k in range(16 * SCALE):
        # by flash writes: the first writes of a post one by one, then random ones
        at = 2 * k + 1 if k < 8 else rng.randrange(1, 45)
        _, got = cut_during(ma, partial(arm_flash_cut, ma.name, at), posting(n), pin=True)
        n += 1
        if got is not None:
            acked.add(str(got))
        held = journal_of(ma, keys)
        assert acked <= held, acked - held
    for _ in range(8 * SCALE):  # by bytes from the host, anywhere in the post's request
        at = rng.randrange(1, 700)
        _, got = cut_during(ma, partial(arm_byte_cut, ma.name, at), posting(n), pin=True)
        n += 1
        if got is not None:
            acked.add(str(got))
        assert acked <= journal_of(ma, keys)
    assert sim_status(ma.name)["formats"] == formats  # the flash always mounted
    assert acked and cuts(ma.name) >= 12 * SCALE  # both: cut posts and whole ones


def test_power_cuts_during_imports(pair: tuple[list[sim.Sim], dict]) -> None:
    (ma, fr), keys = pair
    with connect(ma.device) as client:
        with guard.unlocked(client, PIN):
            for i in range(12):
                lib.post(client, "notice", "routine", ["FR"], f"b{i}", "y" * 400, 3600, [])
        raws = lib.export(client, {})
    rng = random.Random(7)
    stored: set[str] = set()
    for k in range(16 * SCALE):
        if k % 2:
            at = rng.randrange(1, 40)
            arm = partial(arm_flash_cut, fr.name, at)
        else:
            at = rng.randrange(1, 12000)
            arm = partial(arm_byte_cut, fr.name, at)
        part = rng.sample(raws, rng.randrange(1, len(raws) + 1))
        _, result = cut_during(fr, arm, partial(lib.import_entries, raws=part, source="t"))
        if result is not None:
            stored |= {i for i, outcome in result if outcome == "stored"}  # type: ignore[attr-defined]
        held = journal_of(fr, keys)
        assert stored <= held, stored - held
    with connect(fr.device) as client:
        assert {o for _, o in lib.import_entries(client, raws, "t")} <= {"stored", "duplicate"}
    assert len(journal_of(fr, keys)) == len(raws)


def posted(ma: sim.Sim, to: list[str], n: int, size: int) -> list[bytes]:
    """The entries of n bulletins of size bytes that ma posts to partners to, in their
    order."""
    with connect(ma.device) as client:
        with guard.unlocked(client, PIN):
            for i in range(n):
                lib.post(client, "notice", "routine", to, f"b{i}", "y" * size, 3600, [])
        return sorted(lib.export(client, {}), key=lambda raw: entry.Header(raw).seq)


def test_an_import_batch_left_open_is_kept_whole_or_not_at_all(
    pair: tuple[list[sim.Sim], dict],
) -> None:
    """Puts that say more keep the journal's files open: the import's end commits them,
    a cut in that commit takes the open batch back whole, and a batch its host left
    open is committed once the journal is quiet a second."""
    (ma, fr), keys = pair
    raws = posted(ma, ["FR"], 4, 400)
    first, rest = raws[:2], raws[2:]  # (each joins its chain at once: none held)

    def put(client: NodeClient, batch: list[bytes]) -> list[str]:  # (saying more)
        given: list[tuple[bytes, str]] = []
        assert not lib._put(client, batch, given)  # (not full)
        return [outcome for _, outcome in given]

    with connect(fr.device) as client:
        client.request("journal.import", entries=4, source="t")
        put(client, first)
        assert cuts(fr.name) == 0
        arm_flash_cut(fr.name, 0)  # the first write of the commit: the batch's contents
        with pytest.raises(RibatError):
            client.request("journal.end", timeout=lib.BATCH_TIMEOUT_S)
    assert cuts(fr.name) == 1
    arm_flash_cut(fr.name, None)
    assert journal_of(fr, keys) == set()

    with connect(fr.device) as client:
        client.request("journal.import", entries=4, source="t")
        put(client, first)
        time.sleep(3)  # the host pauses: the node commits what it held open
    sim.power_cycle(fr.name)
    assert journal_of(fr, keys) == {entry.Header(raw).id() for raw in first}

    with connect(fr.device) as client:
        client.request("journal.import", entries=4, source="t")
        assert put(client, rest) == ["stored", "stored"]
        client.request("journal.end")
    assert len(journal_of(fr, keys)) == 4


class _Noted(NodeClient):
    """A node client that notes each request it sends and each answer it reads."""

    def __init__(self, port: Port) -> None:
        super().__init__(port)
        self.noted: list[str] = []

    def send(self, op: str, data: bytes = b"", **args: object) -> int:
        seq = super().send(op, data, **args)
        self.noted.append("send " + op)
        return seq

    def answer(self, seq: int, op: str, timeout: float = 10.0) -> tuple[dict, bytes]:
        got = super().answer(seq, op, timeout)
        self.noted.append("answer " + op)
        return got


def test_an_import_sends_the_next_put_while_the_node_takes_one(
    new_sim: NewSim, tmp_path: Path
) -> None:
    """On a link that holds what the node has not read (a Pico's USB, here a
    pseudo-terminal), each put goes before the last is answered; to an ESP32, whose UART
    bridge loses it, one at a time. Either way every entry is stored."""
    members = [("MA", "rabat-1"), ("FR", "paris-1"), ("ES", "madrid-1")]
    ma, fr, es = make_cell(new_sim, tmp_path, members, kind=["pico", "pico", "esp32-spiram"])
    keys = entry.signing_keys(Cell.open(tmp_path / "cell").roster["members"])
    raws = posted(ma, ["FR", "ES"], 3, 300)
    send, answer = "send journal.put", "answer journal.put"
    for board, expected in (
        (fr, [send, send, answer, send, answer, answer]),
        (es, [send, answer] * 3),
    ):
        client = _Noted(Port(board.device))
        with client:
            client.wait_ready()
            client.noted.clear()
            batches = ([raw] for raw in lib.send_order(raws))  # (a put an entry)
            given, _ = lib.put_batches(client, batches, len(raws), "t")
        puts = [step for step in client.noted if step.endswith("journal.put")]
        assert puts == expected, client.noted
        assert [outcome for _, outcome in given] == ["stored"] * 3
        assert len(journal_of(board, keys)) == 3


def test_power_cuts_during_retention_purges(pair: tuple[list[sim.Sim], dict]) -> None:
    (ma, _), keys = pair
    rng = random.Random(8)
    kept: set[str] = set()
    for _ in range(6 * SCALE):
        with connect(ma.device) as client, guard.unlocked(client, PIN):
            kept.add(lib.post(client, "notice", "routine", [], "k", "", 3600, [])["id"])
            for i in range(3):
                lib.post(client, "notice", "routine", ["FR"], f"p{i}", "z" * 600, 1, [])
        before = cuts(ma.name)
        arm_flash_cut(ma.name, rng.randrange(1, 8))  # the next writes are the purge's
        deadline = time.monotonic() + 6
        while cuts(ma.name) == before and time.monotonic() < deadline:
            time.sleep(0.2)
        arm_flash_cut(ma.name, None)
        assert kept <= journal_of(ma, keys)
    deadline = time.monotonic() + 10
    while True:  # after the cuts, everything expired gets purged all the same
        with connect(ma.device) as client:
            states = {b.id: b.state for b in lib.entries(client)}
        if (
            all(states[i] == "sealed" for i in kept)  # locked: nothing readable
            and list(states.values()).count("expired") == 18 * SCALE
        ):
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.5)


def test_a_full_journal_under_junk_and_hostile_requests(new_sim: NewSim, tmp_path: Path) -> None:
    (ma,) = make_cell(new_sim, tmp_path, [("MA", "rabat-1")])
    with connect(ma.device) as client:
        guard.unlock(client, PIN)
        first = lib.post(client, "alert", "flash", [], "first", "kept whole", 3600, [])["id"]
        with pytest.raises(DeviceError) as full:
            while True:
                lib.post(client, "notice", "routine", [], "fill", "f" * 2000, 3600, [])
        assert full.value.cause == "refused" and "journal is full" in str(full.value)
        assert lib.show(client, first).body == "kept whole"
        count = lib.status(client).entries
        heap = []
        rng = random.Random(2018)
        alphabet = bytes(b for b in range(256) if b != 0x03)  # Ctrl-C is the REPL's
        hostile: list[tuple[str, dict]] = [
            ("journal.put", {}),
            ("journal.next", {"pos": -5}),
            ("journal.show", {"id": "ffffffff:99999999"}),
            ("journal.show", {"id": ["x"]}),
            ("journal.list", {"after": 10**9}),
            ("journal.list", {"after": "x"}),
            ("journal.post", {"kind": "alert", "to": ["M"] * 500}),
            ("journal.post", {"kind": "alert", "to": [], "title": "t" * 3000}),
            ("journal.export", {"since": {"zz": -1}}),
            ("journal.import", {"entries": 1}),
            ("journal.put", {"_": 1}),
            ("journal.end", {}),
        ]
        for _ in range(6):
            for _ in range(10):
                junk = bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 5000)))
                client.port.write((b"\x1e" if rng.random() < 0.3 else b"") + junk + b"\n")
            for op, args in hostile:
                data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 3000)))
                try:
                    client.exchange(op, data, **args)
                except DeviceError as e:
                    assert e.cause in ("args", "state", "refused", "oversize", "internal"), e
                    assert "Traceback" not in str(e)
            client.request("ping")
            heap.append(client.request("status")["heap_used"])
        assert max(heap[1:]) <= heap[1] + 8192, heap  # flat after the first round
        assert lib.status(client).entries == count
        assert lib.show(client, first).body == "kept whole"
        guard.lock(client)
