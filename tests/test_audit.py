"""The audit chain: a real node's log, exported, then edited, cut, reordered and padded as
an intruder would; `ribat audit verify` names the first entry touched. And the log stays
bounded: folded into a checkpoint the node signs, only while it is unlocked."""

import json
from pathlib import Path

import pytest

from conftest import ribat
from ribat import chain, signed, sim
from ribat.device.client import connect
from ribat.ops import guard

PIN = "tanger-271828"


@pytest.fixture
def audited(node: sim.Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> sim.Sim:
    cell = tmp_path / "cell"
    assert ribat("cell", "init", str(cell)).code == 0
    monkeypatch.setenv("RIBAT_CELL", str(cell))
    r = ribat("provision", "-p", node.device, "--partner", "MA", "--name", "tanger", "--pin", PIN)
    assert r.code == 0, r.err
    return node


def export(board: sim.Sim, path: Path) -> list[bytes]:
    r = ribat("audit", "export", "-p", board.device, str(path))
    assert r.code == 0, r.err
    return path.read_bytes().splitlines()


def verify(path: Path, *extra: str) -> str:
    r = ribat("audit", "verify", str(path), *extra)
    if r.code == 0:
        return r.out
    assert r.code == 15 and len(r.err.splitlines()) == 1, r.err
    return r.err


def test_verify_names_the_first_entry_tampered_with(audited: sim.Sim, tmp_path: Path) -> None:
    for level in (10, 20, 30, 40, 50):
        ribat("config", "set", "-p", audited.device, "led.brightness", str(level))
    lines = export(audited, tmp_path / "log.jsonl")
    assert len(lines) == 7  # deploy, provision, five config changes
    with connect(audited.device) as client:
        status = client.request("status")
    head = f"{status['audit_seq']}:{status['audit_head']}"
    assert status["audit_seq"] == 7 and status["audit_head"] == chain.line_hash(lines[-1])
    good = tmp_path / "log.jsonl"
    assert "verifies: entries 1 to 7" in verify(good, "--witness", head)
    assert "verifies" in ribat("audit", "verify", "-p", audited.device).out

    def variant(new: list[bytes]) -> Path:
        path = tmp_path / "tampered.jsonl"
        path.write_bytes(b"\n".join(new) + b"\n")
        return path

    edited = lines[2].replace(b'"led.brightness": 10', b'"led.brightness": 11')
    assert edited != lines[2]
    forged = chain.entry(4, 0, "config", chain.line_hash(lines[2]), {"set": {"x": 1}})
    cases = {
        "edited": ([*lines[:2], edited, *lines[3:]], "entry 3 was edited"),
        "removed": (lines[:3] + lines[4:], "entry 4 is missing: removed"),
        "reordered": ([*lines[:2], lines[3], lines[2], *lines[4:]], "entry 3 is out of place"),
        "duplicated": ([*lines[:5], lines[1], *lines[5:]], "entry 2 appears again after entry 5"),
        "inserted": ([*lines[:3], forged, *lines[3:]], "entry 4 appears again after entry 4"),
        "not json": ([*lines[:4], b"{nonsense", *lines[4:]], "after 4 is not a valid entry"),
        "new first": ([chain.entry(1, 0, "x", chain.GENESIS, None), *lines[1:]], "entry 1 "),
    }
    for what, (new, message) in cases.items():
        out = verify(variant(new))
        assert message in out, (what, out)
    # what only a witnessed head shows: the last entries cut, or the last one rewritten
    assert "verifies" in verify(variant(lines[:-2]))
    assert "truncated" in verify(variant(lines[:-2]), "--witness", head)
    rewritten = chain.entry(7, 0, "config", chain.line_hash(lines[5]), None)
    assert "entry 7 differs from the one witnessed" in verify(
        variant([*lines[:-1], rewritten]), "--witness", head
    )
    r = ribat("audit", "verify", str(good), "--witness", "7:abc")
    assert r.code == 2 and "SEQ:HASH" in r.err


def test_the_log_folds_into_a_signed_checkpoint(audited: sim.Sim, tmp_path: Path) -> None:
    budget = ("config", "set", "-p", audited.device, "--pin", PIN, "audit.max_entries", "16")
    assert ribat(*budget).code == 0
    # locked: the log grows to its budget and reserve (24), then refuses what it would record
    refused = None
    for i in range(40):
        r = ribat("config", "set", "-p", audited.device, "led.brightness", str(i))
        if r.code != 0:
            refused = r
            break
    assert refused is not None and refused.code == 10 and "audit log is full" in refused.err
    lines = export(audited, tmp_path / "full.jsonl")
    assert len(lines) == 24
    witness_old = f"5:{chain.line_hash(lines[4])}"
    # unlocking folds it: a checkpoint, then the newest half of the budget
    script = "config set node.name after-fold\naudit show\n"
    r = ribat("unlock", "-p", audited.device, "--pin", PIN, stdin=script)
    assert r.code == 0, r.err
    assert "checkpoint" in r.out
    lines = export(audited, tmp_path / "folded.jsonl")
    first = json.loads(lines[0])
    with connect(audited.device) as client:
        me = guard.identity(client)
    body = signed.verify(signed.CHECKPOINT, first, bytes.fromhex(me["sign"]))
    assert body is not None and body["folded"] >= 8 and body["key"] == me["sign"]
    assert len(lines) <= 16 + 1
    out = verify(tmp_path / "folded.jsonl", "--witness", witness_old)
    assert "verifies" in out and "folded away" in out
    assert "verifies" in ribat("audit", "verify", "-p", audited.device).out
    # the checkpoint cannot be edited to hide what it covers
    tampered = json.dumps({**first, "body": first["body"].replace('"folded": ', '"folded": 1')})
    path = tmp_path / "cp.jsonl"
    path.write_bytes(b"\n".join([tampered.encode(), *lines[1:]]) + b"\n")
    assert "checkpoint at the start of the log is not validly signed" in verify(path)


def test_the_lock_folds_so_a_locked_node_has_the_most_room(
    audited: sim.Sim, tmp_path: Path
) -> None:
    """A locked node cannot sign a fold, yet its sync goes on recording: the lock folds a
    log past five eighths of its budget, so a locked node has room for a whole budget."""
    budget = ("config", "set", "-p", audited.device, "--pin", PIN, "audit.max_entries", "16")
    assert ribat(*budget).code == 0
    script = "".join(f"config set node.name before-lock-{i}\n" for i in range(10)) + "lock\n"
    r = ribat("unlock", "-p", audited.device, "--pin", PIN, stdin=script)
    assert r.code == 0, r.err
    lines = export(audited, tmp_path / "locked.jsonl")
    assert b'"body"' in lines[0] and len(lines) == 1 + 8 + 1  # checkpoint, half, the lock
    done = 0
    while ribat("config", "set", "-p", audited.device, "led.brightness", str(done)).code == 0:
        done += 1
    assert done == 24 - 9  # a budget and a half, less what the lock left
    assert "verifies" in ribat("audit", "verify", "-p", audited.device).out
