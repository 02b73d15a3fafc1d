"""Power cuts at every flash write of a provisioning, a roster load, a wrong PIN and an
audited change: afterwards the node boots, its keys are the old or the new ones whole, the
PIN retry counter never went back, the audit chain verifies, and every change the host
saw acknowledged is on the chain."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from test_power_cuts import arm_flash_cut, cuts

from conftest import sim_status
from ribat import signed, sim
from ribat.authority import chainverify
from ribat.authority.cell import Cell
from ribat.device.client import NodeClient, connect
from ribat.device.transport import Port
from ribat.errors import RibatError, WrongPin
from ribat.ops import guard

PIN = "golden-161803"


@pytest.fixture(autouse=True)
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request cut by the power gets no answer: wait for one as long as the virtual
    board needs (milliseconds), not as long as a Pico might (seconds)."""
    for name in ("PROVISION_TIMEOUT_S", "PIN_TIMEOUT_S", "ROSTER_TIMEOUT_S"):
        monkeypatch.setattr(guard, name, 1.5)


def attempt(board: sim.Sim, k: int, action: Callable[[NodeClient], object]) -> tuple[bool, bool]:
    """Run action with the power cut at the k-th flash write: (cut happened, acknowledged)."""
    before = cuts(board.name)
    arm_flash_cut(board.name, k)
    acknowledged = False
    with NodeClient(Port(board.device)) as client:
        client.wait_ready()
        try:
            action(client)
            acknowledged = True
        except WrongPin:
            acknowledged = True  # a refusal is an answer too
        except RibatError:
            pass
    arm_flash_cut(board.name, None)
    return cuts(board.name) > before, acknowledged


def check_node(board: sim.Sim) -> tuple[dict, list[dict]]:
    """The node answers, its audit chain verifies against its reported head; its identity
    and the audit entries."""
    with connect(board.device) as client:
        info = guard.identity(client)
        log, meta = guard.read_audit(client)
    lines = guard.audit_lines(log)
    problem, _, head, _ = chainverify.verify(lines)
    assert problem is None, problem
    assert head == (meta["seq"], meta["head"])
    if info["state"] != "unprovisioned":
        assert signed.verify(signed.IDENTITY, info["doc"], bytes.fromhex(info["sign"]))
    return info, [json.loads(x) for x in lines if b'"body"' not in x]


def sweep(board: sim.Sim, prepare: Callable[[], None], action, after) -> int:
    """Cut at write 0, 1, 2... until the action completes uncut; after(cut, acked) checks
    the node each time. The number of writes the action makes."""
    formats = sim_status(board.name)["formats"]
    k = 0
    while True:
        prepare()
        cut, acked = attempt(board, k, action)
        after(cut, acked)
        if not cut:
            break
        k += 1
    assert sim_status(board.name)["formats"] == formats  # the flash always mounted
    return k


@pytest.fixture
def cell(tmp_path: Path) -> Cell:
    return Cell.create(tmp_path / "cell")


def test_power_cut_at_every_write_of_a_provisioning(node: sim.Sim, cell: Cell) -> None:
    def prepare() -> None:
        with connect(node.device) as client:
            if guard.identity(client)["state"] != "unprovisioned":
                guard.wipe(client, PIN)

    def action(client: NodeClient) -> None:
        guard.provision(client, cell, "FR", "lyon-1", PIN)

    def after(cut: bool, acked: bool) -> None:
        info, entries = check_node(node)
        if acked:
            assert info["state"] == "locked" and entries[-1]["ev"] == "provision"
        if info["state"] == "unprovisioned":
            return
        # keys whole: the PIN opens them, and they sign
        with connect(node.device) as client:
            guard.unlock(client, PIN)
            guard.lock(client)

    writes = sweep(node, prepare, action, after)
    assert writes >= 5, "a provisioning that wrote almost nothing: the sweep tested nothing"


def test_power_cut_at_every_write_of_a_roster_load(node: sim.Sim, cell: Cell) -> None:
    with connect(node.device) as client:
        guard.provision(client, cell, "BE", "bxl-1", PIN)
        member = guard.exported_identity(client)
        cell.add(member)
        guard.load_roster(client, cell.signed_roster())

    def prepare() -> None:  # the same member again: a newer roster version to load
        cell.remove("bxl-1")
        cell.add(member)

    def action(client: NodeClient) -> None:
        guard.load_roster(client, cell.signed_roster())

    loaded = [1]

    def after(cut: bool, acked: bool) -> None:
        info, entries = check_node(node)
        assert info["roster"] in (loaded[-1], cell.roster["version"])  # old or new, whole
        if acked:
            assert info["roster"] == cell.roster["version"]
            assert entries[-1]["ev"] == "roster"
            assert entries[-1]["d"]["version"] == cell.roster["version"]
        loaded.append(info["roster"])

    assert sweep(node, prepare, action, after) >= 3


def test_power_cut_at_every_write_of_a_wrong_pin(node: sim.Sim, cell: Cell) -> None:
    with connect(node.device) as client:
        guard.provision(client, cell, "ES", "algeciras", PIN)
        with guard.unlocked(client, PIN):
            client.request("config.set", set={"pin.max_tries": 15})
    history = [0]

    def prepare() -> None:
        if history[-1] >= 10:
            with connect(node.device) as client:
                guard.unlock(client, PIN)
                guard.lock(client)
            history.append(0)

    def action(client: NodeClient) -> None:
        guard.unlock(client, "wrong-pin")

    def after(cut: bool, acked: bool) -> None:
        info, entries = check_node(node)
        tries = info["tries"]
        assert history[-1] <= tries <= history[-1] + 1, "the retry counter went back"
        if acked:
            assert tries == history[-1] + 1 and entries[-1]["ev"] == "pin-failed"
        history.append(tries)

    assert sweep(node, prepare, action, after) >= 3


def test_power_cut_at_every_write_of_an_audited_change(node: sim.Sim) -> None:
    values = iter(range(1, 100))
    wanted = [0]

    def prepare() -> None:
        wanted.append(next(values))

    def action(client: NodeClient) -> None:
        client.request("config.set", timeout=1.5, set={"led.brightness": wanted[-1]})

    def after(cut: bool, acked: bool) -> None:
        _, entries = check_node(node)
        if acked:
            assert entries[-1]["ev"] == "config"
            assert entries[-1]["d"]["set"] == {"led.brightness": wanted[-1]}

    assert sweep(node, prepare, action, after) >= 2


def test_power_cut_at_every_write_of_a_keyless_fold(node: sim.Sim, cell: Cell) -> None:
    """A locked node whose log is full folds it with no key for a sync's import: cut at
    any write, the log is the old one or the folded one, whole, and the chain verifies."""
    with connect(node.device) as client:
        guard.provision(client, cell, "ES", "madrid-1", PIN)
        with guard.unlocked(client, PIN):
            client.request("config.set", set={"audit.max_entries": 16})
    budget = 16

    def on_flash(client: NodeClient) -> int:
        return sum(1 for x in guard.audit_lines(guard.read_audit(client)[0]) if b'"body"' not in x)

    def prepare() -> None:  # fill the log to a budget and a half, locked: the next import folds
        with connect(node.device) as client:
            for i in range(budget + budget // 2 - on_flash(client)):
                client.request("config.set", set={"led.brightness": i % 100})

    def action(client: NodeClient) -> None:
        client.request("journal.import", timeout=1.5, entries=0, source="cut")

    def after(cut: bool, acked: bool) -> None:
        _, entries = check_node(node)
        with connect(node.device) as client:
            lines = guard.audit_lines(guard.read_audit(client)[0])
            assert guard.identity(client)["state"] == "locked"
        if acked:
            assert entries[-1]["ev"] == "import" and entries[-1]["d"]["source"] == "cut"
            assert json.loads(json.loads(lines[0])["body"])["locked"] == entries[0]["seq"] - 1

    assert sweep(node, prepare, action, after) >= 3


def test_power_cut_at_every_write_of_a_wipe(node: sim.Sim, cell: Cell) -> None:
    """A wipe renames the keys away, erases the vault and deletes the rest: cut at any
    write, the node is its old self whole (its PIN opens its keys) or unprovisioned, and
    then no seal is left in its vault."""
    image = sim._dir(node.name) / "flash.img"

    def prepare() -> None:
        with connect(node.device) as client:
            if guard.identity(client)["state"] == "unprovisioned":
                guard.provision(client, cell, "MA", "oujda-1", PIN)

    def action(client: NodeClient) -> None:
        guard.wipe(client, PIN)

    def after(cut: bool, acked: bool) -> None:
        info, _ = check_node(node)
        if acked:
            assert info["state"] == "unprovisioned"
        if info["state"] == "unprovisioned":
            assert b"RBV1" not in image.read_bytes()[-2 * 4096 :]  # the vault erased
            return
        with connect(node.device) as client:  # keys whole
            guard.unlock(client, PIN)
            guard.lock(client)

    assert sweep(node, prepare, action, after) >= 3
