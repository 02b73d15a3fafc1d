"""Signed updates (issue 20): a sealed node takes a release signed with a key its roster
lists, newer than anything it ran, sent over its own protocol (resumable), started on
trial, confirmed, or gone back by itself; nothing else changes its firmware."""

import threading
import time
from pathlib import Path

import pytest

from conftest import (
    PIN,
    NewSim,
    copy_firmware,
    make_cell,
    release_bundle,
    ribat,
    sim_status,
)
from ribat import deploy, sim
from ribat.deploy import bundle, update
from ribat.device.client import NodeClient, NodeInfo
from ribat.device.transport import Port
from ribat.errors import DeployError, Refused, Sealed
from ribat.sim import paths


def hello(board: sim.Sim) -> NodeInfo:
    with NodeClient(Port(board.device)) as client:
        return client.wait_ready()


def events(board: sim.Sim) -> str:
    r = ribat("audit", "show", "-p", board.device)
    assert r.code == 0, r.err
    return r.out


@pytest.fixture
def sealed(new_sim: NewSim, tmp_path: Path) -> sim.Sim:
    (board,) = make_cell(new_sim, tmp_path, [("MA", "rabat-1")])
    return board


def test_only_a_newer_release_signed_by_the_cell_changes_a_sealed_nodes_firmware(
    sealed: sim.Sim, tmp_path: Path
) -> None:
    before = hello(sealed)
    assert before.firmware == "0.1.0" and before.floor == "0.1.0"  # raised at provisioning
    # no REPL deploy any more: the port's holder, PIN or not, cannot write a tree
    changed = copy_firmware(tmp_path)
    with open(changed / "ribat" / "telemetry.py", "a") as f:
        f.write("\nCHANGED = 1\n")
    with pytest.raises(Sealed, match="signed releases only"):
        deploy.deploy(sealed.device, source=changed)
    r = ribat("flash", "-p", sealed.device, "--source", str(changed))
    assert r.code == 8 and "signed releases only" in r.err and "Traceback" not in r.err

    good = release_bundle(tmp_path, "0.2.0")
    release = bundle.read(good)
    # unsigned
    unsigned = tmp_path / "unsigned.rbun"
    bundle.write(bundle.build("0.2.0", [sealed.board], [bundle.default_mpy()]), unsigned)
    # signed by a key the roster does not list
    assert ribat("release", "key", "-o", str(tmp_path / "stranger.key")).code == 0
    stranger = release_bundle(tmp_path, "0.2.0", key=tmp_path / "stranger.key", name="stranger")
    # the header altered after signing (a version put up)
    altered_header = tmp_path / "altered-header.rbun"
    data = good.read_bytes()
    altered_header.write_bytes(
        data.replace(b'\\"firmware\\": \\"0.2.0\\"', b'\\"firmware\\": \\"0.9.0\\"', 1)
    )
    assert altered_header.read_bytes() != data
    # a byte of the pack altered (its header intact): the node finds out at the end
    altered_pack = tmp_path / "altered-pack.rbun"
    flipped = bytearray(data)
    flipped[-100] ^= 0x01
    altered_pack.write_bytes(bytes(flipped))
    older = release_bundle(tmp_path, "0.0.9")
    same = release_bundle(tmp_path, "0.1.0")
    for refused, said in (
        (unsigned, "not signed by a release key of the cell's roster"),
        (stranger, "not signed by a release key of the cell's roster"),
        (altered_header, "signature does not verify"),
        (older, "not newer than 0.1.0"),
        (same, "not newer than 0.1.0"),
    ):
        r = ribat("flash", "--bundle", str(refused), "-p", sealed.device)
        assert r.code == 13, (refused, r.err)
        errors = [line for line in r.err.splitlines() if not line.startswith("→")]
        assert len(errors) == 1 and said in errors[0] and "Traceback" not in r.err
        now = hello(sealed)
        assert (now.firmware, now.slot, now.build) == (before.firmware, before.slot, before.build)
    # the host checks a bundle's builds against its header before it sends anything...
    r = ribat("flash", "--bundle", str(altered_pack), "-p", sealed.device)
    assert r.code == 8 and "does not match the hash its header gives" in r.err
    # ...and the node checks what it received, whoever sent it
    bent = bundle.read(good)
    key = next(iter(bent.packs))
    bent.packs[key] = bent.packs[key][:-100] + b"\x00" + bent.packs[key][-99:]
    with pytest.raises(Refused, match="does not match its signed hash"):
        update.send(sealed.device, bent)
    with pytest.raises(Refused, match="not signed by a release key"):
        update.send(sealed.device, bundle.read(stranger))
    assert release.signer_key != bundle.read(stranger).signer_key
    r = ribat("flash", "--bundle", str(good), "-p", sealed.device)
    assert r.code == 0, r.err
    assert "release 0.2.0 (was 0.1.0) confirmed by the node" in r.err
    after = hello(sealed)
    assert (after.firmware, after.floor, after.trial) == ("0.2.0", "0.2.0", None)
    assert after.slot != before.slot
    log = events(sealed)
    for event in ("update-refused", "update ", "update-confirmed"):
        assert event in log, event
    assert "signer=build" in log and "by=self" in log
    # the same release again: refused, it is what the node runs
    r = ribat("flash", "--bundle", str(good), "-p", sealed.device)
    assert r.code == 13 and "not newer than 0.2.0" in r.err


def test_a_transfer_cut_anywhere_goes_on_from_where_the_node_has_it(
    sealed: sim.Sim, tmp_path: Path
) -> None:
    release = bundle.read(release_bundle(tmp_path, "0.2.0"))
    size = len(next(iter(release.packs.values())))
    cuts = []

    class Cut(Exception):
        pass

    # a host that stops (Ctrl-C, a cable pulled) after each piece, five times over
    for _ in range(5):

        def stop_after_one(done: int, total: int) -> None:
            cuts.append(done)
            raise Cut

        with pytest.raises(Cut):
            update.send(sealed.device, release, progress=stop_after_one)
    assert cuts == sorted(set(cuts)) and 0 < cuts[-1] < size  # each run went further
    # a power cut in the middle of the transfer: the same run takes it up again
    state = {"cut": False}

    def power_cut_once(done: int, total: int) -> None:
        if not state["cut"] and done > size // 2:
            state["cut"] = True
            threading.Thread(target=sim.power_cycle, args=(sealed.name,)).start()

    outcome = update.send(sealed.device, release, confirm=True, progress=power_cut_once)
    assert state["cut"] and outcome.confirmed_by == "host"
    assert outcome.resumed_at == cuts[-1]  # this run began where the cut runs left it
    assert outcome.sent_bytes < size  # and did not send it all again
    info = hello(sealed)
    assert (info.firmware, info.trial) == ("0.2.0", None)
    assert info.build == next(iter(release.manifest["targets"]))["build"]


CRASH = """
def run(slot, fallback=False):
    raise RuntimeError("release crashes at its start")
"""

HANG = """
def run(slot, fallback=False):
    while True:  # hangs before it serves: only the watchdog the loader armed ends it
        pass
"""


@pytest.mark.parametrize("fault", ["crash", "hang", "import"])
def test_a_release_that_does_not_work_goes_back_by_itself(
    sealed: sim.Sim, tmp_path: Path, fault: str
) -> None:
    r = ribat("config", "set", "update.trial_starts", "2", "-p", sealed.device, "--pin", PIN)
    assert r.code == 0, r.err
    before = hello(sealed)
    src = copy_firmware(tmp_path)
    app = src / "ribat" / "app.py"
    if fault == "import":
        app.write_text(app.read_text() + "\nimport ribat.nothing_by_this_name\n")
    else:
        app.write_text(app.read_text() + (CRASH if fault == "crash" else HANG))
    bad = bundle.read(release_bundle(tmp_path, "0.2.0", src))
    started = time.monotonic()
    with pytest.raises(DeployError, match=r"went back to 0\.1\.0 by itself"):
        update.send(sealed.device, bad)
    took = time.monotonic() - started
    after = hello(sealed)
    assert (after.firmware, after.slot, after.build) == (
        before.firmware,
        before.slot,
        before.build,
    )
    assert after.reverted is not None and after.reverted["version"] == "0.2.0"
    assert after.floor == "0.1.0"  # never confirmed: not the floor
    log = events(sealed)
    assert "update-reverted" in log
    status = ribat("status", "-p", sealed.device)
    assert status.code == 0 and "0.2.0 went back" in status.out, status.out
    if fault == "hang":
        assert sim_status(sealed.name)["watchdog_resets"] >= 2 and took >= 16
    # the failed build never runs again, even as a fallback; a good release goes on top
    good = release_bundle(tmp_path, "0.2.1")
    assert ribat("flash", "--bundle", str(good), "-p", sealed.device, "--confirm").code == 0
    assert hello(sealed).firmware == "0.2.1"


def test_a_flash_put_back_from_before_an_update_still_refuses_the_older_release(
    sealed: sim.Sim, tmp_path: Path
) -> None:
    image = paths.sims_root() / sealed.name / "flash.img"
    fs_bytes = 1441792
    old = image.read_bytes()[:fs_bytes]  # littlefs's part: the slots, /fw/active, the files
    r = ribat("flash", "--bundle", str(release_bundle(tmp_path, "0.2.0")), "-p", sealed.device)
    assert r.code == 0, r.err
    sim.stop(sealed.name)
    with open(image, "r+b") as f:
        f.write(old)  # the vault (after littlefs's blocks) keeps what it had
    again = sim.start(sealed.name, sealed.board)
    info = hello(again)
    assert info.firmware == "0.1.0" and info.floor == "0.2.0"  # it ran 0.2.0: it knows
    r = ribat("flash", "--bundle", str(release_bundle(tmp_path, "0.1.5")), "-p", again.device)
    assert r.code == 13 and "not newer than 0.2.0, which this node has confirmed" in r.err
    assert hello(again).firmware == "0.1.0"


def test_a_release_rolls_out_one_node_after_the_other_and_stops_at_the_first_failure(
    new_sim: NewSim, tmp_path: Path
) -> None:
    ma, fr = make_cell(new_sim, tmp_path, [("MA", "rabat-1"), ("FR", "paris-1")])
    bare = new_sim()  # the firmware, but no keys: it takes no release
    deploy.deploy(bare.device)
    good = str(release_bundle(tmp_path, "0.2.0"))
    r = ribat("flash", "--bundle", good, "-p", ma.device, "-p", bare.device, "-p", fr.device,
              "--confirm")  # fmt: skip
    assert r.code == 12, r.err
    assert f"the rollout stops at {bare.device}; not updated: {fr.device}" in r.err
    assert [hello(b).firmware for b in (ma, bare, fr)] == ["0.2.0", "0.1.0", "0.1.0"]
    r = ribat("flash", "--bundle", good, "-p", fr.device, "-p", ma.device, "--confirm")
    assert r.code == 13 and f"the rollout stops at {ma.device}" in r.err  # it runs it
    assert hello(fr).firmware == "0.2.0"
