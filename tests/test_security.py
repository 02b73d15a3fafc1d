"""The security core end to end, through the CLI as a user runs it, on virtual Picos:
provisioning, identity, the signed roster, the PIN and its sessions, wipe. Each refusal
is one line, its own exit status, and changes nothing."""

import json
import os
import stat
import time
from pathlib import Path

import pytest

from conftest import micropython, ribat
from ribat import deploy, ed25519, signed, sim
from ribat.authority.cell import Cell
from ribat.device.client import connect
from ribat.errors import DeviceError, Refused
from ribat.ops import guard

PIN = "madrid-493817"


@pytest.fixture
def cell_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cell"
    r = ribat("cell", "init", str(path))
    assert r.code == 0, r.err
    monkeypatch.setenv("RIBAT_CELL", str(path))
    return path


def provision(board: sim.Sim, name: str, partner: str = "FR") -> dict:
    r = ribat("provision", "-p", board.device, "--partner", partner, "--name", name, "--pin", PIN)
    assert r.code == 0, r.err
    with connect(board.device) as client:
        return guard.identity(client)


def node_state(board: sim.Sim) -> dict:
    with connect(board.device) as client:
        info = guard.identity(client)
        info["audit_seq"] = client.request("status")["audit_seq"]
        return info


def test_cell_init_keeps_the_authority_key_private(cell_dir: Path) -> None:
    mode = stat.S_IMODE(os.stat(cell_dir / "authority.key").st_mode)
    assert mode == 0o600
    r = ribat("cell", "init", str(cell_dir))
    assert r.code == 14 and "already holds a cell authority" in r.err


def test_provision_export_add_load_and_refusals(node: sim.Sim, cell_dir: Path, tmp_path: Path):
    fresh = node_state(node)
    assert fresh["state"] == "unprovisioned"
    info = provision(node, "paris-1")
    assert info["state"] == "locked"
    assert info["cell"] == Cell.open(cell_dir).id
    assert len(info["fp"]) == 19 and info["fp"].count("-") == 3

    # provisioning twice: refused, keys unchanged
    r = ribat("provision", "-p", node.device, "--partner", "FR", "--name", "x", "--pin", PIN)
    assert r.code == 12 and "already provisioned" in r.err and len(r.err.splitlines()) == 1
    assert node_state(node)["sign"] == info["sign"]

    # the exported identity is signed by the node's key
    ident = tmp_path / "paris-1.json"
    assert ribat("identity", "export", "-p", node.device, "--out", str(ident)).code == 0
    doc = json.loads(ident.read_text())
    assert signed.verify(signed.IDENTITY, doc, bytes.fromhex(info["sign"])) is not None
    assert json.loads(doc["body"])["fp"] == info["fp"]

    # an altered identity file is refused by the administrator's tools
    forged = tmp_path / "forged.json"
    forged.write_text(ident.read_text().replace("paris-1", "paris-9"))
    r = ribat("cell", "roster", "add", str(forged))
    assert r.code == 14 and "not signed by its own key" in r.err

    r = ribat("cell", "roster", "add", str(ident))
    assert r.code == 0, r.err
    assert ribat("cell", "roster", "add", str(ident)).code == 14  # twice: refused
    shown = ribat("cell", "roster", "show")
    assert "paris-1" in shown.out and info["fp"] in shown.out and "version 1" in shown.out

    r = ribat("cell", "load", "-p", node.device)
    assert r.code == 0 and "version 1 loaded" in r.err, r.err
    before = node_state(node)

    roster = (cell_dir / "roster.json").read_bytes()
    body = json.loads(json.loads(roster)["body"])
    other_seed = os.urandom(32)
    other_pub = ed25519.public_key(other_seed)
    newer = {**body, "version": 7}
    cases = {
        "older": (roster, "not newer than the loaded version 1"),
        "forged": (
            json.dumps({"body": json.dumps(newer), "sig": json.loads(roster)["sig"]}).encode(),
            "forged or altered",
        ),
        "other cell": (
            json.dumps(
                signed.sign(
                    signed.ROSTER,
                    {**newer, "cell": signed.fingerprint(other_pub)},
                    other_seed,
                    other_pub,
                )
            ).encode(),
            "belongs to cell",
        ),
        "signed by another key": (
            json.dumps(signed.sign(signed.ROSTER, newer, other_seed, other_pub)).encode(),
            "forged or altered",
        ),
        "truncated": (roster[: len(roster) // 2], "truncated or garbage"),
        "garbage": (os.urandom(300), "truncated or garbage"),
    }
    for what, (data, message) in cases.items():
        with connect(node.device) as client, pytest.raises(Refused) as refused:
            guard.load_roster(client, data)
        assert message in str(refused.value), (what, refused.value)
        after = node_state(node)
        assert (after["roster"], after["audit_seq"]) == (before["roster"], before["audit_seq"])

    # the CLI, asked again for the roster the node holds, says it is there (exit 0)
    r = ribat("cell", "load", "-p", node.device)
    assert r.code == 0 and "already loaded" in r.err and len(r.err.splitlines()) == 1


def test_two_nodes_derive_the_same_pairwise_key(new_sim, cell_dir: Path, tmp_path: Path) -> None:
    boards = [new_sim(), new_sim()]
    for i, board in enumerate(boards):
        deploy.deploy(board.device)
        provision(board, f"node-{i}", partner=("MA", "ES")[i])
        out = tmp_path / f"n{i}.json"
        assert ribat("identity", "export", "-p", board.device, "--out", str(out)).code == 0
        assert ribat("cell", "roster", "add", str(out)).code == 0
    checks = []
    for board in boards:
        assert ribat("cell", "load", "-p", board.device).code == 0
        r = ribat("cell", "pairs", "-p", board.device, "--pin", PIN)
        assert r.code == 0, r.err
        rows = [line.split() for line in r.out.splitlines()[1:]]
        checks.append({row[1]: row[3] for row in rows})
    # node-0's key with node-1 is node-1's key with node-0; each sees itself as itself
    assert checks[0]["node-1"] == checks[1]["node-0"]
    assert len(checks[0]["node-1"]) == 8
    assert checks[0]["node-0"] == "(this" and checks[1]["node-1"] == "(this"


def test_wrong_pins_count_and_the_last_one_wipes(node: sim.Sim, cell_dir: Path) -> None:
    provision(node, "rabat-1", partner="MA")
    assert ribat("config", "set", "-p", node.device, "--pin", PIN, "pin.max_tries", "3").code == 0
    r = ribat("unlock", "-p", node.device, "--pin", "000000")
    assert r.code == 11 and "2 tries left" in r.err and len(r.err.splitlines()) == 1
    assert node_state(node)["tries"] == 1
    # a right PIN resets the count
    r = ribat("cell", "pairs", "-p", node.device, "--pin", PIN)
    assert r.code == 0, r.err
    assert node_state(node)["tries"] == 0
    for left in (2, 1):
        assert f"{left} tries left" in ribat("unlock", "-p", node.device, "--pin", "111111").err
    r = ribat("unlock", "-p", node.device, "--pin", "111111")
    assert r.code == 11 and "wiped its keys" in r.err
    assert node_state(node)["state"] == "unprovisioned"
    events = [e["ev"] for e in audit_entries(node)]
    assert events[-4:] == ["pin-failed", "pin-failed", "pin-failed", "wipe"]
    # the node can be provisioned again, with new keys
    assert provision(node, "rabat-2", partner="MA")["state"] == "locked"


def audit_entries(board: sim.Sim) -> list[dict]:
    with connect(board.device) as client:
        log, _ = guard.read_audit(client)
    return [json.loads(line) for line in guard.audit_lines(log) if b'"body"' not in line]


def test_bad_pins_and_locked_commands_get_one_line(node: sim.Sim, cell_dir: Path) -> None:
    r = ribat("unlock", "-p", node.device, "--pin", PIN)
    assert r.code == 12 and "not provisioned" in r.err
    provision(node, "bxl-1", partner="BE")
    for pin in ("123", "with space", "x" * 65):
        r = ribat("unlock", "-p", node.device, "--pin", pin)
        assert r.code == 2 and "PIN" in r.err, r.err
    assert node_state(node)["tries"] == 0  # never reached the node
    r = ribat("cell", "pairs", "-p", node.device)
    assert r.code == 10 and "locked" in r.err and len(r.err.splitlines()) == 1
    new = "new-passphrase-7654321"
    r = ribat("pin", "change", "-p", node.device, "--pin", "000000", "--new-pin", new)
    assert r.code == 11
    r = ribat("pin", "change", "-p", node.device, "--pin", PIN, "--new-pin", new)
    assert r.code == 0, r.err
    assert "a search of a stolen flash for this PIN: " in r.err and "years" in r.err
    assert ribat("cell", "pairs", "-p", node.device, "--pin", PIN).code == 11
    assert ribat("cell", "pairs", "-p", node.device, "--pin", new).code == 0


def test_a_weak_pin_needs_asking_for_and_is_recorded(node: sim.Sim, cell_dir: Path) -> None:
    args = ("provision", "-p", node.device, "--partner", "MA", "--name", "oujda-1")
    r = ribat(*args, "--pin", "314159")
    assert r.code == 2 and "--weak-pin" in r.err and "10 or more" in r.err
    assert node_state(node)["state"] == "unprovisioned"
    # the node refuses it too, whatever a host checks
    with connect(node.device) as client, pytest.raises(DeviceError, match="weak-pin"):
        guard.provision(client, Cell.open(cell_dir), "MA", "oujda-1", "314159")
    r = ribat(*args, "--pin", "314159", "--weak-pin")
    assert r.code == 0, r.err
    assert "minutes of one CPU core" in r.err
    assert audit_entries(node)[-1]["d"].get("weak") is True
    r = ribat("pin", "change", "-p", node.device, "--pin", "314159", "--new-pin", "2718")
    assert r.code == 2  # too short for a PIN at all
    r = ribat("pin", "change", "-p", node.device, "--pin", "314159", "--new-pin", "271828")
    assert r.code == 2 and "--weak-pin" in r.err
    r = ribat("pin", "change", "-p", node.device, "--pin", "314159", "--new-pin", PIN)
    assert r.code == 0 and audit_entries(node)[-1]["ev"] == "pin-change"
    assert "weak" not in (audit_entries(node)[-1].get("d") or {})


def test_wipe_asks_first_and_erases_keys(node: sim.Sim, cell_dir: Path) -> None:
    info = provision(node, "madrid-1", partner="ES")
    r = ribat("wipe", "-p", node.device)  # no terminal to confirm on
    assert r.code == 2 and "--yes" in r.err
    assert node_state(node)["sign"] == info["sign"]
    r = ribat("wipe", "-p", node.device, "--yes")  # a locked node: the PIN or presence
    assert r.code == 2 and "--pin" in r.err and "--button" in r.err
    r = ribat("wipe", "-p", node.device, "--yes", "--pin", "000000")
    assert r.code == 11 and node_state(node)["sign"] == info["sign"]
    r = ribat("wipe", "-p", node.device, "--yes", "--pin", PIN)
    assert r.code == 0, r.err
    assert node_state(node)["state"] == "unprovisioned"
    r = ribat("identity", "export", "-p", node.device)
    assert r.code == 12 and "not provisioned" in r.err
    assert audit_entries(node)[-1]["ev"] == "wipe"


def test_unloading_the_crypto_forgets_each_module() -> None:
    """What a session or an import loaded (some 30 KB of heap) goes when the node drops
    it (keys.unload_crypto, once it is locked): each module out of sys.modules and out of
    the ribat package, where a reference left behind would keep it alive."""
    micropython(
        r"""
import sys
import ribat
from ribat import keys, x25519, kdf
assert "ribat.x25519" in sys.modules and hasattr(ribat, "x25519")
assert keys.unload_crypto()
assert not any(n.startswith("ribat.") and n[6:] in keys._CRYPTO for n in sys.modules)
assert not any(hasattr(ribat, n) for n in keys._CRYPTO)
assert not keys.unload_crypto()
print("OK")
"""
    )


def test_session_runs_commands_and_ends_on_lock(node: sim.Sim, cell_dir: Path) -> None:
    provision(node, "paris-2")
    script = "help\ncell pairs\nidentity\npost --title 'unclosed\nlock\n"
    r = ribat("unlock", "-p", node.device, "--pin", PIN, stdin=script)
    assert r.code == 0, r.err
    assert "paris-2" in r.out and "unlocked" in r.out and "locked" in r.err
    assert "Commands:" in r.out and "In this session" in r.err  # help
    assert "close the quote" in r.err and "Traceback" not in r.err
    assert node_state(node)["state"] == "locked"
    assert [e["ev"] for e in audit_entries(node)][-2:] == ["unlock", "lock"]


def test_a_command_given_a_pin_costs_the_log_one_session_entry(
    node: sim.Sim, cell_dir: Path
) -> None:
    """--pin unlocks for one command: an "unlock" entry that says so, the command's own
    entries, and no "lock" (20 commands used to cost 60 entries of a 400 budget)."""
    provision(node, "paris-4")
    before = len(audit_entries(node))
    for _ in range(3):
        assert ribat("cell", "pairs", "-p", node.device, "--pin", PIN).code == 0  # reads keys
    added = audit_entries(node)[before:]
    assert [e["ev"] for e in added] == ["unlock"] * 3, added
    assert all(e["d"] == {"once": True} for e in added)
    assert node_state(node)["state"] == "locked"


def wait_locked(board: sim.Sim, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entries = audit_entries(board)
        if entries[-1]["ev"] == "lock":
            return entries[-1]
        time.sleep(0.3)
    raise AssertionError("the session did not end")


def test_session_ends_when_the_host_closes_the_port(node: sim.Sim, cell_dir: Path) -> None:
    provision(node, "paris-3")
    client = connect(node.device)
    guard.unlock(client, PIN)
    assert guard.identity(client)["state"] == "unlocked"
    client.close()
    assert wait_locked(node, 5)["d"] == {"why": "host-gone"}
    assert node_state(node)["state"] == "locked"


def test_session_ends_when_idle_and_on_reset(node: sim.Sim, cell_dir: Path) -> None:
    provision(node, "paris-4")
    assert ribat("config", "set", "-p", node.device, "--pin", PIN, "pin.idle_s", "5").code == 0
    with connect(node.device) as client:
        guard.unlock(client, PIN)
        time.sleep(6)
        assert guard.identity(client)["state"] == "locked"
    assert audit_entries(node)[-1]["d"] == {"why": "idle"}
    with connect(node.device) as client:
        guard.unlock(client, PIN)
        assert client.info is not None
        client.request("reset")
        client.wait_ready(not_boot=client.info.boot)
        assert guard.identity(client)["state"] == "locked"
