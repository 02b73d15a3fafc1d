"""Weak signals (issue 22): two partners that report the same indicator, written their own
way, within the window, both get a convergence alert; nobody else learns anything, not
even the broker that carried it all; lookups are bounded and audited; a token of one
period does not match the next's."""

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from hashlib import sha256
from pathlib import Path

from test_gateway import gateway, wait_for
from test_journal import import_file, post, rewrite, seq_of
from test_watch import console, said

from conftest import FIRMWARE, PIN, Broker, NewSim, make_cell, micropython, on_flash, ribat
from ribat import sim

# Runs unchanged on both interpreters: the normalisation and the tokens.
SHARED = r"""
from binascii import hexlify
from ribat import indicators as I

for kind, text, country, want in (
    ("phone", "+212 6 12 34 56 78", "MA", "+212612345678"),
    ("phone", "00212612345678", "ES", "+212612345678"),
    ("phone", "06 12 34 56 78", "MA", "+212612345678"),
    ("phone", "(01) 23.45.67.89", "FR", "+33123456789"),
    ("plate", "12345-A-6", "MA", "12345A6"),
    ("plate", "12345 a 6", "FR", "12345A6"),
    ("doc", "AB.123/456", "ES", "AB123456"),
    ("account", "FR76 3000 6000 0112 3456 7890 189", "FR", "FR7630006000011234567890189"),
    ("email", " Ali@Example.ORG ", "MA", "ali@example.org"),
    ("name", "Jérôme DUPONT-Lefèvre/1980-03-04", "FR", "jerome dupont lefevre|1980-03-04"),
    ("name", "jerome  dupont lefevre / 19800304", "BE", "jerome dupont lefevre|1980-03-04"),
    ("name", "Straße ŒUVRE", "BE", "strasse oeuvre"),
    ("place", "Tanger-Med", "MA", "tanger med"),
):
    got = I.normalise(kind, text, country)
    assert got == want, (kind, text, got)
for kind, text, country in (("phone", "12", "MA"), ("phone", "0612345678", "XX"),
                            ("plate", "ab#1", "MA"), ("email", "nope", "MA"),
                            ("name", "x/1980-13-01", "MA"), ("car", "x", "MA")):
    try:
        I.normalise(kind, text, country)
        raise AssertionError("accepted: %r" % ((kind, text),))
    except ValueError:
        pass
pair = bytes(range(32))
p = I.period(1796600000, 30 * 86400)
now = I.token(I.period_key(pair, p), "phone", "+212612345678")
assert len(now) == 16
assert now == I.token(I.period_key(pair, p), "phone", "+212612345678")
assert now != I.token(I.period_key(pair, p + 1), "phone", "+212612345678"), "periods match"
assert now != I.token(I.period_key(bytes(32), p), "phone", "+212612345678"), "pairs match"
assert now != I.token(I.period_key(pair, p), "phone", "+212612345679")
print(hexlify(now).decode())
print("OK")
"""


def test_normalisation_and_tokens_are_the_same_on_node_and_host() -> None:
    on_node = micropython(SHARED).split()
    done = subprocess.run([sys.executable, "-c", SHARED], capture_output=True, text=True,
                          cwd=FIRMWARE)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert on_node[-2] == done.stdout.split()[-2]  # the same token, both interpreters


def convergences(board: sim.Sim) -> list[dict]:
    r = ribat("signals", "-p", board.device, "--json")
    assert r.code == 0, r.err
    return [json.loads(line) for line in r.out.splitlines()]


@contextmanager
def capture(broker: Broker) -> Iterator[list[bytes]]:
    """Every message the broker carries while the block runs (topic and payload)."""
    import paho.mqtt.client as mqtt

    got: list[bytes] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda _c, _u, msg: got.append(msg.topic.encode() + b" " + msg.payload)
    client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe("#", 1)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        yield got
    finally:
        time.sleep(1)
        client.loop_stop()
        client.disconnect()


def test_two_partners_that_saw_the_same_number_both_know_and_nobody_else(
    new_sim: NewSim, tmp_path: Path, broker: Broker
) -> None:
    boards = make_cell(
        new_sim,
        tmp_path,
        [("MA", "rabat-1"), ("FR", "paris-1"), ("ES", "madrid-1"), ("BE", "brussels-1")],
    )
    ma, fr, es, be = boards
    with (
        capture(broker) as carried,
        gateway(ma, broker), gateway(fr, broker), gateway(es, broker), gateway(be, broker),
    ):  # fmt: skip
        mine = post(ma, "--kind", "notice", "--to", "MA", "--title", "a caller",
                        "--indicator", "phone:+212 6 12 34 56 78")  # fmt: skip
        for b in boards:  # days later, in the cell's time
            sim.clock(b.name, 3 * 86400)
        body = "a call\nindicator: phone:00212612345678\n"  # the body file's way
        r = ribat("post", "-p", es.device, "--pin", PIN, "--kind", "notice", "--to", "ES",
                      "--title", "a number", "--body-file", "-", stdin=body)  # fmt: skip
        assert r.code == 0, r.err
        theirs = r.out.strip()
        started = time.monotonic()
        wait_for(lambda: len(convergences(es)) == 1, "madrid's convergence", 60)
        wait_for(lambda: len(convergences(ma)) == 1, "rabat's convergence", 60)
        took = time.monotonic() - started
        (at_ma,), (at_es,) = convergences(ma), convergences(es)
        assert (at_ma["partner"], at_ma["their_entry"], at_ma["our_entry"]) == ("ES", theirs, mine)
        assert (at_es["partner"], at_es["their_entry"], at_es["our_entry"]) == ("MA", mine, theirs)
        assert convergences(fr) == [] and convergences(be) == []
        assert "convergence" in sim.panel(ma.name, 2.2)["led"]
        assert "convergence" in sim.panel(es.name, 2.2)["led"]

        def cell_says() -> str:
            r = ribat("cell", "status", "--cell", str(tmp_path / "cell"), "--broker", broker.url)
            return r.out

        wait_for(lambda: "convergence ES+MA" in cell_says(), "cell status shows it", 60)
    # the duty console tells a pending convergence (and rings)
    with console(es) as madrid:
        line = said(madrid, "CONVERGENCE")
        assert "MA (rabat-1)" in line and mine in line
    # neither reads the other's bulletin: content stays under its own releasability
    for reader, ident in ((ma, theirs), (es, mine)):
        r = ribat("show", "-p", reader.device, "--pin", PIN, ident)
        assert r.code == 13 and "not released" in r.err
    # the broker carried tokens (the signal entries), and nothing it can test a guess with
    everything = b"\n".join(carried)
    assert everything.count(b'"k": "signal"') >= 2, "the capture saw no signal entry"
    for form in (b"212612345678", b"12 34 56 78", b"0612345678", b"phone:"):
        assert form not in everything, form
    for unkeyed in (sha256(b"phone:+212612345678").hexdigest()[:32].encode(),
                    sha256(b"+212612345678").hexdigest()[:32].encode()):  # fmt: skip
        assert unkeyed not in everything
    print(f"both convergences within {took:.1f} s of the second report")


def test_a_lookup_is_bounded_audited_and_a_period_later_finds_nothing(
    new_sim: NewSim, tmp_path: Path
) -> None:
    ma, es = make_cell(new_sim, tmp_path, [("MA", "rabat-1"), ("ES", "madrid-1")])
    mine = post(ma, "--kind", "notice", "--to", "MA", "--title", "plate",
                "--indicator", "plate:12345-A-6")  # fmt: skip
    assert ribat("sync", "-p", ma.device, "-p", es.device).code == 0
    assert convergences(es) == []  # a report alone converges with nothing
    r = ribat("config", "set", "signals.lookups_per_day", "2", "-p", es.device, "--pin", PIN)
    assert r.code == 0, r.err
    r = ribat("check", "-p", es.device, "--pin", PIN, "plate:12345 a 6")
    assert r.code == 0 and f"MA (rabat-1) reported it in {mine}" in r.out, r.err
    assert "1 lookups left today" in r.err
    r = ribat("check", "-p", es.device, "--pin", PIN, "plate:99999Z9")
    assert r.code == 0 and "no other partner reported it" in r.out
    r = ribat("check", "-p", es.device, "--pin", PIN, "plate:12345A6")
    assert r.code == 13 and "made its 2 lookups today" in r.err
    r = ribat("check", "-p", es.device, "--pin", PIN, "car:12")
    assert r.code == 2 and "an indicator is one of" in r.err
    log = ribat("audit", "show", "-p", es.device).out
    assert "signal-lookup " in log and "signal-lookup-refused" in log
    assert "12345" not in log  # the kind and the outcome, never the value
    assert convergences(es) == [] and convergences(ma) == []  # a lookup reports nothing
    # two periods later the same plate is another token: no lookup or report matches it
    sim.clock(es.name, 61 * 86400)
    r = ribat("check", "-p", es.device, "--pin", PIN, "plate:12345A6")
    assert r.code == 0 and "no other partner reported it" in r.out, r.err
    post(es, "--kind", "notice", "--to", "ES", "--title", "plate", "--indicator", "plate:12345A6")
    assert ribat("sync", "-p", ma.device, "-p", es.device).code == 0
    time.sleep(2)  # a look or two
    assert convergences(es) == [] and convergences(ma) == []


def test_indicators_are_refused_with_one_line(new_sim: NewSim, tmp_path: Path) -> None:
    (ma,) = make_cell(new_sim, tmp_path, [("MA", "rabat-1")])
    r = ribat("post", "-p", ma.device, "--pin", PIN, "--kind", "notice", "--to", "MA",
              "--title", "x", "--indicator", "phone:12")  # fmt: skip
    assert r.code == 2 and "E.164" in r.err and "Traceback" not in r.err
    r = ribat("post", "-p", ma.device, "--pin", PIN, "--kind", "notice", "--to", "MA",
              "--title", "x", "--indicator", "nothing")  # fmt: skip
    assert r.code == 2 and "kind:value" in r.err
    assert ribat("list", "-p", ma.device, "--json").out == ""  # nothing posted


def test_a_signal_that_came_before_its_predecessor_is_matched_once_it_joins(
    new_sim: NewSim, tmp_path: Path
) -> None:
    """A look passes an entry held for its predecessor: it is matched once the gap fills
    (a link may bring an origin's entries in any order), not lost."""
    ma, es = make_cell(new_sim, tmp_path, [("MA", "rabat-1"), ("ES", "madrid-1")])
    theirs = post(es, "--kind", "notice", "--to", "ES", "--title", "a number",
                  "--indicator", "phone:00212612345678")  # fmt: skip
    mine = post(ma, "--kind", "notice", "--to", "MA", "--title", "a caller",
                "--indicator", "phone:+212 6 12 34 56 78")  # fmt: skip
    full = tmp_path / "ma.rbj"
    assert ribat("journal", "export", "-p", ma.device, str(full)).code == 0
    signal_only = tmp_path / "signal.rbj"  # the bulletin is seq 1, its signal entry seq 2
    rewrite(full, signal_only, lambda raw: raw if seq_of(raw) == 2 else None)
    assert list(import_file(es, signal_only).values()) == ["gap"]
    time.sleep(3)  # the node looks once its journal is quiet for a second
    state = on_flash(es, "print(json.dumps(json.loads(open('/journal/sig/state').read())))")
    assert state["scan"] == 3, state  # its look passed its own 2 records and this one
    assert convergences(es) == []
    import_file(es, full)  # the bulletin comes: the signal entry joins its chain
    wait_for(lambda: len(convergences(es)) == 1, "madrid's convergence", 30)
    (at_es,) = convergences(es)
    assert (at_es["partner"], at_es["their_entry"], at_es["our_entry"]) == ("MA", mine, theirs)
