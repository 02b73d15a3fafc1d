"""Sync between two virtual Picos through the host (`ribat sync`): entries both ways with
the checks of an import, need-to-know unchanged, a sync cut at random link bytes resumed
without resending what arrived, audit heads witnessed, and a truncated or rewritten
audit log caught by the peer that witnessed it."""

import json
import random
import time
from pathlib import Path

import pytest
from test_journal import audit_events, items, one_line, post
from test_power_cuts import arm_byte_cut, cuts

from conftest import PIN, NewSim, make_cell, on_flash, ribat, sim_status
from ribat import sim
from ribat.device.client import NodeClient, connect
from ribat.errors import DeviceError, RibatError
from ribat.ops import guard, journal
from ribat.ops import sync as lib


def sync(a: sim.Sim, b: sim.Sim) -> dict:
    r = ribat("sync", "-p", a.device, "-p", b.device, "--json")
    assert r.code == 0, r.err
    return json.loads(r.out)


def vector(board: sim.Sim) -> dict[str, int]:
    with connect(board.device) as client:
        return dict(lib.hello(client)["vector"])


@pytest.fixture
def pair(new_sim: NewSim, tmp_path: Path) -> list[sim.Sim]:
    return make_cell(new_sim, tmp_path, [("MA", "rabat-1"), ("FR", "paris-1")])


def test_sync_gives_each_node_what_it_lacks(pair: list[sim.Sim]) -> None:
    ma, fr = pair
    mine = post(ma, "--kind", "alert", "--to", "MA", "--title", "MA only", "--body", "x")
    both = post(ma, "--kind", "notice", "--to", "FR", "--title", "Both", "--body", "shared")
    theirs = post(fr, "--kind", "request", "--to", "MA", "--title", "Asked", "--body", "?")

    done = sync(ma, fr)
    sent = {(leg["source"], leg["target"]): leg for leg in done["legs"]}
    assert sent["rabat-1", "paris-1"]["outcomes"] == {"stored": 2}
    assert sent["paris-1", "rabat-1"]["outcomes"] == {"stored": 1}
    assert {w["verdict"] for w in done["witnessed"]} == {"first"}
    assert vector(ma) == vector(fr)

    # need-to-know travels with the entries: the sync moved ciphertext only
    r = ribat("show", "-p", fr.device, "--pin", PIN, both)
    assert r.code == 0 and "shared" in r.out, r.err
    r = ribat("show", "-p", fr.device, "--pin", PIN, mine)
    assert r.code == 13 and "not released to FR" in r.err and one_line(r)
    r = ribat("show", "-p", ma.device, "--pin", PIN, theirs)
    assert r.code == 0 and "?" in r.out, r.err

    # nothing new: nothing sent, nothing recorded; the audit heads extend what was seen
    before = audit_events(ma)
    again = sync(fr, ma)
    assert [leg["sent"] for leg in again["legs"]] == [0, 0]
    assert {w["verdict"] for w in again["witnessed"]} == {"extends"}
    after = audit_events(ma)
    assert after[: len(before)] == before and "export" not in after[len(before) :]
    assert {"export", "import", "imported"} <= set(before)

    r = ribat("sync", "-p", ma.device, "-p", ma.device)
    assert r.code == 2 and "give two nodes" in r.err
    r = ribat("sync", "-p", ma.device)
    assert r.code == 2 and "give two nodes" in r.err


def test_a_sync_cut_anywhere_resumes_without_resending(
    pair: list[sim.Sim], monkeypatch: pytest.MonkeyPatch
) -> None:
    ma, fr = pair
    # a request cut by the power gets no answer: wait as long as a virtual board needs
    for name in ("READ_TIMEOUT_S", "BATCH_TIMEOUT_S"):
        monkeypatch.setattr(journal, name, 2.0)
    monkeypatch.setattr(lib, "HELLO_TIMEOUT_S", 2.0)
    rng = random.Random(7)
    # An import's puts keep the node's journal batch open up to 64 entries (journal.end
    # commits the rest): a round of 100 commits once in its middle. The first round, not
    # cut, tells how many bytes a round's sync sends; the next rounds cut it before that
    # commit (nothing of the round kept) or after (some of it kept, not sent again).
    per_round, rounds = 100, 4
    cut_short = 0  # syncs cut after some entries had arrived
    sync_bytes = 0
    for batch in range(rounds):
        with connect(ma.device) as client:
            guard.unlock(client, PIN)
            for n in range(per_round):
                client.request("journal.post", timeout=30, kind="notice", to=["FR"],
                               title=f"{batch}.{n}", body="b" * 300)  # fmt: skip
        before = cuts(fr.name)
        bytes_in = sim_status(fr.name)["bytes_in"]
        if batch:
            early = (2000, sync_bytes // 2)
            late = (sync_bytes * 3 // 4, sync_bytes * 19 // 20)
            arm_byte_cut(fr.name, rng.randrange(*(early if batch == 1 else late)))
        try:
            with connect(ma.device) as a, connect(fr.device) as b:
                lib.sync(a, b)
        except RibatError:
            assert cuts(fr.name) > before  # only the cut makes a sync fail
        if not batch:
            sync_bytes = sim_status(fr.name)["bytes_in"] - bytes_in
        arm_byte_cut(fr.name, -1)
        with connect(ma.device) as a, connect(fr.device) as b:
            leg = lib.sync(a, b).legs[0]  # resumed at once, on the rebooted node
        assert "duplicate" not in leg.outcomes, leg  # what arrived is not sent again
        assert vector(fr) == vector(ma)
        cut_short += 0 < leg.sent < per_round
    assert cut_short >= 2
    assert len(items(fr)) == per_round * rounds


def _audit_log(board: sim.Sim) -> list[str]:
    return list(on_flash(board, "print(json.dumps(open('/audit/log').read().splitlines()))"))


def _write_audit_log(board: sim.Sim, lines: list[str]) -> None:
    text = "".join(line + "\n" for line in lines)
    on_flash(board, f"with open('/audit/log', 'w') as f:\n f.write({text!r})\nprint('{{}}')")


def test_a_locked_node_syncs_on_past_its_audit_budget(pair: list[sim.Sim], tmp_path: Path) -> None:
    """A node left locked cannot sign a fold, yet each sync it takes part in adds audit
    entries: past a budget and a half it folds with no signature (marked so) and syncs
    on; a peer that witnessed its head still finds each later head extends it."""
    ma, fr = pair
    assert (
        ribat("config", "set", "-p", fr.device, "--pin", PIN, "audit.max_entries", "16").code == 0
    )
    verdicts = set()
    for i in range(12):  # two entries a sync on fr (import, imported): 24 and more
        post(ma, "--kind", "notice", "--to", "FR", "--title", f"n{i}", "--body", "x")
        done = sync(ma, fr)
        assert [leg["outcomes"] for leg in done["legs"] if leg["sent"]] == [{"stored": 1}]
        verdicts |= {w["verdict"] for w in done["witnessed"] if w["witness"] == "rabat-1"}
    assert verdicts <= {"first", "extends"}
    assert len(items(fr)) == 12

    def audit_log() -> list[bytes]:
        path = tmp_path / "fr-audit.jsonl"
        assert ribat("audit", "export", "-p", fr.device, str(path)).code == 0
        return path.read_bytes().splitlines()

    lines = audit_log()
    first = json.loads(lines[0])
    body = json.loads(first["body"])
    assert "sig" not in first and body["locked"] == body["seq"] and len(lines) <= 1 + 24
    r = ribat("audit", "verify", "-p", fr.device)
    assert r.code == 0 and f"entries up to {body['seq']} were folded while" in r.out, r.err
    # a keyless checkpoint edited to look signed, or to drop its mark, is refused
    unmarked = {"body": first["body"].replace('"locked"', '"x"')}
    text = json.dumps({**body, "seq": str(body["seq"]), "locked": str(body["seq"])})
    for forged in ({**first, "sig": "0" * 128}, unmarked, {"body": text}):
        path = tmp_path / "forged.jsonl"
        path.write_bytes(b"\n".join([json.dumps(forged).encode(), *lines[1:]]) + b"\n")
        r = ribat("audit", "verify", str(path))
        assert r.code == 15 and "not validly signed" in r.err and one_line(r)

    # unlocked, the node signs its next fold, which keeps the mark of the keyless one
    script = "".join(f"config set node.name paris-{i}\n" for i in range(20))
    assert ribat("unlock", "-p", fr.device, "--pin", PIN, stdin=script).code == 0
    lines = audit_log()
    signed_cp = json.loads(lines[0])
    later = json.loads(signed_cp["body"])
    assert "sig" in signed_cp and later["seq"] > body["seq"] and later["locked"] >= body["seq"]
    r = ribat("audit", "verify", "-p", fr.device)
    assert r.code == 0 and f"entries up to {later['locked']} were folded while" in r.out, r.err


@pytest.mark.parametrize("tamper", ["truncated", "rewritten"])
def test_a_peer_catches_an_audit_log_cut_or_rewritten(pair: list[sim.Sim], tamper: str) -> None:
    ma, fr = pair
    post(ma, "--kind", "notice", "--to", "FR", "--title", "t", "--body", "b")
    sync(ma, fr)
    post(ma, "--kind", "notice", "--to", "FR", "--title", "t2", "--body", "b2")
    sync(ma, fr)  # paris-1 has witnessed rabat-1's head after the second post

    lines = _audit_log(ma)
    if tamper == "truncated":
        lines = lines[:-3]
    else:  # the second post's entry changed in place; the chain after it re-linked
        from ribat import chain

        entries = [json.loads(line) for line in lines]
        for k, e in enumerate(entries):
            if e.get("ev") == "post" and e["d"]["id"].endswith(":2"):
                e["d"]["id"] = e["d"]["id"][:-1] + "9"
            if k:
                e["prev"] = chain.line_hash(lines[k - 1].encode())
            lines[k] = json.dumps(e, separators=(", ", ": "))
    _write_audit_log(ma, lines)

    r = ribat("sync", "-p", ma.device, "-p", fr.device)
    assert r.code == 15, (r.out, r.err)
    assert f"paris-1: rabat-1's audit log {tamper}" in r.err and one_line(r)
    # the alarm stays: recorded in paris-1's own audit log, shown by every later sync
    assert "alarm" in audit_events(fr)
    r = ribat("sync", "-p", fr.device, "-p", ma.device)
    assert r.code == 15 and tamper in r.err


def test_nodes_of_two_cells_do_not_sync(new_sim: NewSim, tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    (ma,) = make_cell(new_sim, tmp_path / "one", [("MA", "rabat-1")])
    (fr,) = make_cell(new_sim, tmp_path / "two", [("FR", "paris-1")])
    post(ma, "--kind", "notice", "--to", "MA", "--title", "t", "--body", "b")
    r = ribat("sync", "-p", ma.device, "-p", fr.device)
    assert r.code == 14 and "different cells" in r.err and one_line(r)
    assert vector(fr) == {}


def test_witness_requests_name_a_peer_and_its_head(pair: list[sim.Sim]) -> None:
    ma, fr = pair
    with connect(fr.device) as client:
        theirs = lib.hello(client)
    with connect(ma.device) as client:
        me = lib.hello(client)
        cases = [
            ({"fp": me["fp"], "audit": me["audit"]}, "is not a peer"),  # itself
            ({"fp": "zz", "audit": me["audit"]}, "is not a peer"),
            ({"fp": "0000-0000-0000-0000", "audit": me["audit"]}, "is not a peer"),
            ({"fp": theirs["fp"], "audit": {"seq": "1"}}, "'audit' is a hello's audit head"),
        ]
        for bad, said in cases:
            with pytest.raises(DeviceError, match=said):
                client.request("sync.witness", **bad)
        assert lib.hello(client)["witnessed"] == {}  # none of them was taken for a witness


def test_a_peer_that_does_not_prove_its_log_raises_the_alarm(pair: list[sim.Sim]) -> None:
    """A head past the one witnessed must come with the witnessed line's hash, or a fold
    the node's rules could have made: a relay that shows neither is an alarm; a broker's
    summary (stamped) is given time, as it may predate the peer's news of the witness."""
    ma, fr = pair
    with connect(fr.device) as client:
        peer = lib.hello(client)
    seq = peer["audit"]["seq"]
    later = {"seq": seq + 20, "hash": "ab" * 32}

    def witness(client: NodeClient, audit: dict, **stamp: int) -> dict:
        return dict(client.request("sync.witness", fp=peer["fp"], audit=audit, **stamp))

    now_ms = int(time.time() * 1000)
    with connect(ma.device) as client:
        assert witness(client, peer["audit"])["verdict"] == "first"
        got = witness(client, {**later, "at": {}}, sent=now_ms)  # a broker's: not yet
        assert got == {"verdict": "unproven", "alarm": None}
        assert "unproven" in lib.hello(client)["witnessed"][peer["fp"]]
        # folded away at a head a fold would have kept it under: rewritten
        close = {"seq": seq + 3, "hash": "cd" * 32, "at": {str(seq): "folded"}}
        got = witness(client, close)
        assert got["verdict"].startswith("rewritten") and "folded away" in got["alarm"]
        assert lib.hello(client)["witnessed"][peer["fp"]]["alarm"] == got["alarm"]


def test_a_witness_with_no_proof_from_a_relay_is_an_alarm(pair: list[sim.Sim]) -> None:
    ma, fr = pair
    with connect(fr.device) as client:
        peer = lib.hello(client)
    with connect(ma.device) as client:
        client.request("sync.witness", fp=peer["fp"], audit=peer["audit"])
        claim = {"seq": peer["audit"]["seq"] + 2, "hash": "ef" * 32, "at": {}}
        got = client.request("sync.witness", fp=peer["fp"], audit=claim)
    assert got["alarm"] and got["alarm"].startswith("unproven")
    assert "alarm" in audit_events(ma)
    r = ribat("sync", "-p", ma.device, "-p", fr.device)
    assert r.code == 15 and "unproven" in r.err


def test_forks_a_sync_finds_show_in_journal_status(pair: list[sim.Sim]) -> None:
    ma, fr = pair
    post(ma, "--kind", "notice", "--to", "FR", "--title", "first history", "--body", "1")
    sync(ma, fr)
    # rabat's journal rewound (anyone with its flash can), and a second history signed
    on_flash(ma, "import os\nfor n in os.listdir('/journal/h'):\n os.remove('/journal/h/' + n)\n"
                 "for n in os.listdir('/journal/c'):\n os.remove('/journal/c/' + n)\n"
                 "print('null')")  # fmt: skip
    post(ma, "--kind", "notice", "--to", "FR", "--title", "other history", "--body", "2")
    done = sync(ma, fr)
    assert done["forks"], done
    for board in (ma, fr):
        with connect(board.device) as client:
            origins = {o.node: o for o in journal.status(client).origins}
        assert origins["rabat-1"].forks >= 1, (board.name, origins)
