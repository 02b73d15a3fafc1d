"""The journal end to end on virtual Picos: bulletins posted, sealed for the partners they
are released to, moved between nodes through export files, read where they may be read
and refused where they may not; every import outcome (stored, duplicate, gap, fork,
forged, foreign, expired) from entries changed as a relay or a rogue node would; files
that are garbage, cut short or from another cell refused whole; retention."""

import functools
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import FIRMWARE, PIN, NewSim, Run, make_cell, on_flash, release_bundle, ribat
from ribat import entry, sim
from ribat.deploy import bundle, update
from ribat.device.client import connect
from ribat.errors import DeviceError
from ribat.ops import guard
from ribat.ops import journal as lib
from ribat.results import JournalStatus


def post(board: sim.Sim, *args: str) -> str:
    if not {"--title", "--body", "--body-file"} & set(args):
        args = (*args, "--title", "a bulletin")  # one with neither is refused
    r = ribat("post", "-p", board.device, "--pin", PIN, *args)
    assert r.code == 0, r.err
    return r.out.strip()


def items(board: sim.Sim, *args: str) -> list[dict]:
    r = ribat("list", "-p", board.device, "--json", *args)
    assert r.code == 0, r.err
    return [json.loads(line) for line in r.out.splitlines()]


def status(board: sim.Sim) -> JournalStatus:
    with connect(board.device) as client:
        return lib.status(client)


def move(src: sim.Sim, dst: sim.Sim, path: Path, *args: str) -> dict[str, str]:
    """Export src (with args) and import into dst: {entry id: outcome}."""
    r = ribat("journal", "export", "-p", src.device, str(path), *args)
    assert r.code == 0, r.err
    return import_file(dst, path)


def import_file(dst: sim.Sim, path: Path) -> dict[str, str]:
    """Import path into dst: {entry id: outcome}; the exit status is 17 when (and only
    when) an entry was refused as forged or foreign."""
    r = ribat("journal", "import", "-p", dst.device, str(path), "--json")
    outcomes = {d["id"]: d["outcome"] for d in map(json.loads, r.out.splitlines())}
    refused = {"forged", "foreign"} & set(outcomes.values())
    assert r.code == (17 if refused else 0), r.err
    if refused:
        assert "refused as forged or foreign" in r.err and len(r.err.splitlines()) == 1
    return outcomes


def audit_events(board: sim.Sim) -> list[str]:
    r = ribat("audit", "show", "-p", board.device, "--json")
    assert r.code == 0, r.err
    return [e["event"] for e in map(json.loads, r.out.splitlines())]


def one_line(r: Run) -> bool:
    return len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err


@pytest.fixture
def pair(new_sim: NewSim, tmp_path: Path) -> list[sim.Sim]:
    return make_cell(new_sim, tmp_path, [("MA", "rabat-1"), ("FR", "paris-1")])


def test_bulletins_are_read_only_where_released(pair: list[sim.Sim], tmp_path: Path) -> None:
    ma, fr = pair
    r = ribat("post", "-p", ma.device, "--kind", "alert", "--to", "MA", "--title", "x")
    assert r.code == 10 and "locked" in r.err and one_line(r)
    mine = post(ma, "--kind", "alert", "--severity", "flash", "--to", "MA", "--title", "MA only",
                "--body", "for Moroccan eyes")  # fmt: skip
    both = post(ma, "--kind", "notice", "--to", "FR", "--title", "Both", "--body", "shared")
    assert (mine, both) == (mine.split(":")[0] + ":1", mine.split(":")[0] + ":2")

    # what anyone sees on a locked node: ids, origins, expiries; no kind, title or text
    sealed = items(ma)
    assert [i["id"] for i in sealed] == [mine, both]
    assert all(i["kind"] is None and i["title"] is None and i["partner"] == "MA" for i in sealed)

    path = tmp_path / "ma.rbj"
    assert move(ma, fr, path) == {mine: "stored", both: "stored"}
    data = path.read_bytes()
    assert b"for Moroccan eyes" not in data and b"shared" not in data and b"Both" not in data

    r = ribat("show", "-p", fr.device, "--pin", PIN, both)
    assert r.code == 0 and "shared" in r.out and "from MA rabat-1" in r.out, r.err
    r = ribat("show", "-p", fr.device, "--pin", PIN, mine)
    assert r.code == 13 and "not released to FR" in r.err and one_line(r)
    r = ribat("show", "-p", ma.device, "--pin", PIN, mine, "--json")
    assert r.code == 0 and json.loads(r.out)["body"] == "for Moroccan eyes"

    listed = items(fr, "--pin", PIN)
    assert listed[0]["id"] == mine and listed[0]["state"] == "sealed"  # sealed to FR
    assert listed[0]["kind"] is None and listed[0]["title"] is None
    assert listed[1]["title"] == "Both" and listed[1]["to"] == ["MA", "FR"]
    assert [i["id"] for i in items(ma, "--pin", PIN, "--kind", "alert")] == [mine]
    assert items(fr, "--pin", PIN, "--from", "FR") == []
    assert items(fr, "--pin", PIN, "--since", "1h")[0]["id"] == both

    assert ribat("ack", "-p", fr.device, "--pin", PIN, both).code == 0
    assert items(fr, "--pin", PIN)[1]["acknowledged_here"] is True
    r = ribat("ack", "-p", fr.device, "--pin", PIN, mine)
    assert r.code == 13 and one_line(r)

    assert {"post", "export", "read"} <= set(audit_events(ma))
    assert {"import", "imported", "read", "ack"} <= set(audit_events(fr))


def test_esp32s_with_psram_hold_a_cell(new_sim: NewSim, tmp_path: Path) -> None:
    """The ESP32s that run a node: a WROVER's heap and an S3's (MicroPython's SPIRAM
    firmwares) provision, post and read, where a plain ESP32's 110 KB are refused at the
    flash."""
    members = [("MA", "rabat-1"), ("FR", "paris-1")]
    ma, fr = make_cell(new_sim, tmp_path, members, kind=["esp32-spiram", "esp32s3-spiram"])
    ident = post(ma, "--kind", "notice", "--to", "FR", "--title", "Both", "--body", "shared")
    assert move(ma, fr, tmp_path / "ma.rbj") == {ident: "stored"}
    r = ribat("show", "-p", fr.device, "--pin", PIN, ident)
    assert r.code == 0 and "shared" in r.out, r.err


def test_bad_posts_get_one_line_and_store_nothing(pair: list[sim.Sim], tmp_path: Path) -> None:
    ma, _ = pair
    cases = [
        (["--kind", "alert", "--to", "ES"], 7, "no node of partner ES"),
        (["--kind", "reply", "--to", "FR"], 7, "give --ref"),
        (["--kind", "reply", "--to", "FR", "--ref", "0000abcd:9"], 7, "no entry 0000abcd:9"),
        (["--kind", "notice", "--to", "FR", "--body", "x" * 2100], 2, "at most 2000 bytes"),
        (["--kind", "notice", "--to", "FR", "--expires", "0"], 2, "a duration like"),
        (["--kind", "notice", "--to", "FR", "--ref", "nope"], 2, "not an entry id"),
        (["--kind", "shout", "--to", "FR"], 2, "shout"),
        (
            ["--kind", "notice", "--to", "FR", "--body-file", str(tmp_path / "no")],
            2,
            "cannot read",
        ),
    ]
    cases.append((["--kind", "notice", "--to", "FR"], 2, "a --title or a body"))
    for args, code, words in cases:
        if code != 2:  # what the node refuses: a post that is not empty
            args = [*args, "--title", "x"]
        r = ribat("post", "-p", ma.device, "--pin", PIN, *args)
        assert r.code == code and words in r.err, (args, r.err)
        assert "Traceback" not in r.err
    assert status(ma).entries == 0
    r = ribat("show", "-p", ma.device, "--pin", PIN, "12345678:1")
    assert r.code == 7 and "no entry" in r.err and one_line(r)


def rewrite(src: Path, dst: Path, change: Callable[[bytes], bytes | None]) -> None:
    """dst: the export src with each entry passed through change (None drops it), its
    digest made right again, as anyone relaying the file could."""
    head, raws = lib.read_file(src)
    out = [c for c in map(change, raws) if c is not None]
    head["entries"] = len(out)
    dst.write_bytes(lib.file_bytes(head, out))


def flip(raw: bytes, at: int) -> bytes:
    b = bytearray(raw)
    b[at] ^= 1
    return bytes(b)


def seq_of(raw: bytes) -> int:
    return entry.Header(raw).seq


def test_every_import_outcome(new_sim: NewSim, tmp_path: Path) -> None:
    ma, fr, tg = make_cell(
        new_sim, tmp_path, [("MA", "rabat-1"), ("FR", "paris-1"), ("MA", "tanger-1")]
    )
    for n in range(3):
        post(ma, "--kind", "notice", "--to", "FR", "--title", f"n{n}")
    full = tmp_path / "ma.rbj"
    assert ribat("journal", "export", "-p", ma.device, str(full)).code == 0
    prefix = lib.read_file(full)[1][0][1:5].hex()

    # the newest alone is held as a gap; the rest connect it
    only3 = tmp_path / "only3.rbj"
    rewrite(full, only3, lambda raw: raw if seq_of(raw) == 3 else None)
    assert import_file(fr, only3) == {f"{prefix}:3": "gap"}
    assert status(fr).held == 1
    assert import_file(fr, full) == {f"{prefix}:1": "stored", f"{prefix}:2": "stored",
                                     f"{prefix}:3": "duplicate"}  # fmt: skip
    assert status(fr).held == 0 and status(fr).origins[0].head == 3

    # tanger's bulletin, changed in the signature, a signed field, or the content
    post(tg, "--kind", "alert", "--to", "FR", "--title", "t")
    tfile = tmp_path / "tg.rbj"
    assert ribat("journal", "export", "-p", tg.device, str(tfile)).code == 0
    for at in (100, 47, entry.SIGNED + 60, entry.SIGNED + 1):  # sig, expires, text, a wrap
        bad = tmp_path / f"bad{at}.rbj"
        rewrite(tfile, bad, functools.partial(flip, at=at))
        assert list(import_file(fr, bad).values()) == ["forged"], at
    stripped = tmp_path / "stripped.rbj"
    rewrite(tfile, stripped, lambda raw: raw[: entry.SIGNED])  # content withheld
    assert list(import_file(fr, stripped).values()) == ["forged"]

    # once the cell takes tanger out of the roster, its entries are foreign at paris
    env = {"RIBAT_CELL": str(tmp_path / "cell")}
    assert ribat("cell", "roster", "remove", "tanger-1", env=env).code == 0
    assert ribat("cell", "load", "-p", fr.device, env=env).code == 0
    assert list(import_file(fr, tfile).values()) == ["foreign"]

    # expired on the way: its header is kept (the chain stays whole), its content not
    post(ma, "--kind", "notice", "--to", "FR", "--expires", "1s")
    time.sleep(2.5)
    late = tmp_path / "late.rbj"
    assert move(ma, fr, late, "--since", f"{prefix}:3") == {f"{prefix}:4": "expired"}
    r = ribat("show", "-p", fr.device, "--pin", PIN, f"{prefix}:4")
    assert r.code == 13 and "expired" in r.err and one_line(r)

    # rabat rewinds its journal (anyone who has its flash can) and signs a second seq 1
    on_flash(
        ma,
        "def rm(p):\n"
        "    for e in os.ilistdir(p):\n"
        "        q = p + '/' + e[0]\n"
        "        rm(q) if e[1] & 0x4000 else os.remove(q)\n"
        "    os.rmdir(p)\n"
        "rm('/journal')\n"
        "print('null')\n",
    )
    post(ma, "--kind", "notice", "--to", "FR", "--title", "other history")
    forked = tmp_path / "forked.rbj"
    assert move(ma, fr, forked) == {f"{prefix}:1": "fork"}
    origin = next(o for o in status(fr).origins if o.node == "rabat-1")
    assert origin.forks == 1 and origin.head == 4
    assert import_file(fr, forked) == {f"{prefix}:1": "fork"}  # evidence kept once
    assert (
        origin.forks
        == next(o for o in status(fr).origins if o.fingerprint == origin.fingerprint).forks
    )


def test_bad_files_are_refused_whole(pair: list[sim.Sim], tmp_path: Path) -> None:
    ma, fr = pair
    post(ma, "--kind", "notice", "--to", "FR")
    good = tmp_path / "good.rbj"
    assert ribat("journal", "export", "-p", ma.device, str(good)).code == 0
    data = good.read_bytes()
    cases = {
        "garbage.rbj": (b"\x00\x01 not a journal at all" * 20, "not a ribat journal export"),
        "cut.rbj": (data[: len(data) - 30], "cut short or damaged"),
        "flipped.rbj": (data[:200] + bytes([data[200] ^ 4]) + data[201:], "cut short or damaged"),
    }
    head, raws = lib.read_file(good)
    del head["format"]
    other = lib.file_bytes({**head, "cell": "0000-1111-2222-3333"}, raws)
    cases["other-cell.rbj"] = (other, "comes from cell 0000-1111-2222-3333")
    for name, (content, words) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        r = ribat("journal", "import", "-p", fr.device, str(path))
        assert r.code == 14 and words in r.err and one_line(r), (name, r.err)
    r = ribat("journal", "import", "-p", fr.device, str(tmp_path / "missing.rbj"))
    assert r.code == 14 and "cannot read" in r.err
    assert status(fr).entries == 0
    assert "import" not in audit_events(fr)
    r = ribat("journal", "export", "-p", ma.device, str(good), "--since", "zz:1")
    assert r.code == 2 and "ORIGIN:SEQ" in r.err


def test_expired_content_is_purged_and_the_chain_stays(new_sim: NewSim, tmp_path: Path) -> None:
    (ma,) = make_cell(new_sim, tmp_path, [("MA", "rabat-1")])
    # long enough to be exported whole first, on a loaded host too
    short = post(ma, "--kind", "alert", "--to", "MA", "--body", "gone soon", "--expires", "6s")
    kept = post(ma, "--kind", "notice", "--to", "MA", "--body", "stays")
    before = tmp_path / "before.rbj"
    assert ribat("journal", "export", "-p", ma.device, str(before)).code == 0
    ciphertext = min(lib.read_file(before)[1], key=seq_of)[entry.SIGNED + 41 :]
    assert ciphertext, "purged before it was exported: the test's expiry is too short"
    deadline = time.monotonic() + 20
    while items(ma)[0]["state"] != "expired":
        assert time.monotonic() < deadline, "not purged in time"
        time.sleep(0.5)
    r = ribat("show", "-p", ma.device, "--pin", PIN, short)
    assert r.code == 13 and "expired" in r.err
    assert "stays" in ribat("show", "-p", ma.device, "--pin", PIN, kept).out
    after = tmp_path / "after.rbj"
    assert ribat("journal", "export", "-p", ma.device, str(after)).code == 0
    raws = sorted(lib.read_file(after)[1], key=seq_of)
    assert len(raws[0]) == entry.SIGNED and len(raws[1]) > entry.SIGNED  # header only
    assert status(ma).origins[0].head == 2
    # the content's bytes are gone from the node's files (littlefs may keep freed blocks
    # until it reuses them: docs/security.md)
    files = on_flash(
        ma,
        "import binascii\n"
        "print(json.dumps([binascii.hexlify(open('/journal/c/' + n, 'rb').read()).decode()"
        " for n in os.listdir('/journal/c')]))",
    )
    assert all(ciphertext.hex() not in f for f in files) and files


def test_a_request_too_big_for_the_heap_is_answered(new_sim: NewSim, tmp_path: Path) -> None:
    """The virtual Pico W's heap (160 KB, 64-bit objects) is the tightest: in a long
    unlocked session its 500-byte posts all go through, and a request that cannot fit (a
    4 KB frame of 1,300 empty lists, some 80 KB decoded; and maybe a 2 KB bulletin) is
    refused at once as out of memory. The node goes on, with nothing half stored."""
    (ma,) = make_cell(new_sim, tmp_path, [("MA", "rabat-1")], "pico-w")
    posted = 0
    with connect(ma.device) as client:  # one long session, as a duty officer's
        guard.unlock(client, PIN)
        for n in (500,) * 5 + (2000,) * 3:
            t = time.monotonic()
            try:
                lib.post(client, "notice", "routine", [], "t", "b" * n, 3600, [])
                posted += 1
            except DeviceError as e:
                assert n == 2000 and "short of memory" in str(e) and "a shorter one" in str(e), e
            assert time.monotonic() - t < 10  # an answer, not a wait for the timeout
        t = time.monotonic()
        with pytest.raises(DeviceError, match=r"short of memory .* try again"):
            client.request("ping", pad=[[]] * 1300)
        assert time.monotonic() - t < 10
        lib.post(client, "notice", "routine", [], "t", "b" * 500, 3600, [])
        posted += 1
        guard.lock(client)
    post(ma, "--kind", "notice", "--to", "MA", "--body", "short")
    assert status(ma).entries == posted + 1  # nothing half stored


def test_a_pico_w_fed_by_syncs_lists_in_a_session(new_sim: NewSim, tmp_path: Path) -> None:
    """A sync leaves its modules loaded (7 KB); on the Pico W they are the heap a list of
    bulletins needs in an officer's session, so the unlock drops them (a sync reloads
    them). Before, the list after a sync was refused for memory."""
    ma, fr = make_cell(new_sim, tmp_path, [("MA", "rabat-1"), ("FR", "paris-1")], "pico-w")
    post(fr, "--kind", "notice", "--to", "MA", "--title", "from paris", "--body", "x")
    assert ribat("sync", "-p", ma.device, "-p", fr.device).code == 0
    with connect(ma.device) as client:  # one session, as a duty officer's
        guard.unlock(client, PIN)
        for _ in range(5):
            lib.post(client, "notice", "routine", ["FR"], "t", "b" * 500, 3600, [])
        listed = lib.entries(client)
        assert len(listed) == 6 and all(b.state == "readable" for b in listed)
        guard.lock(client)
    assert ribat("sync", "-p", ma.device, "-p", fr.device).code == 0  # reloaded for it
    assert len(items(fr)) == 6


def test_a_full_journal_leaves_room_for_the_next_firmware(new_sim: NewSim, tmp_path: Path) -> None:
    """The node keeps free, whatever its journal, as much flash as a firmware slot takes
    (in littlefs blocks) less what its other slot holds already: the next firmware deploys
    beside the running one, the one after over the old slot, and every entry stays."""
    (ma,) = make_cell(new_sim, tmp_path, [("MA", "rabat-1")])
    posted = 0
    with connect(ma.device) as client:
        guard.unlock(client, PIN)
        with pytest.raises(DeviceError, match="journal is full"):
            while True:
                lib.post(client, "notice", "routine", [], "t", "b" * 2000, 3600, [])
                posted += 1
    assert posted > 100
    one_slot = status(ma).flash_reserved_bytes
    for n in (1, 2):
        src = tmp_path / f"fw{n}"
        shutil.copytree(FIRMWARE, src, ignore=shutil.ignore_patterns("__pycache__", "mypy.ini"))
        for module in ("app", "journal", "link"):
            with open(src / "ribat" / f"{module}.py", "a") as f:
                f.write(f"\nCHANGED = {n}\n")
        release = bundle.read(release_bundle(tmp_path, f"0.{n + 1}.0", src))
        update.send(ma.device, release, confirm=True)
        with connect(ma.device) as client:
            assert client.wait_ready().build == release.manifest["targets"][0]["build"]
    after = status(ma)
    assert after.entries == posted and after.origins[0].head == posted
    # both slots on flash: the next deploy writes over the old one, the node keeps less
    assert after.flash_reserved_bytes < one_slot / 2


def test_the_hosts_post_limits_are_the_nodes() -> None:
    import re

    source = (FIRMWARE / "ribat" / "bulletins.py").read_text()
    for name, value in (("MAX_TITLE", lib.TITLE_BYTES), ("MAX_BODY", lib.BODY_BYTES)):
        assert re.search(rf"^{name} = const\({value}\)", source, re.M), name


def test_the_node_refuses_an_oversized_body_whoever_sends_it(
    new_sim: NewSim, tmp_path: Path
) -> None:
    """The host's check is for a clear error; the node's is the rule (a host that skips it)."""
    (ma,) = make_cell(new_sim, tmp_path, [("MA", "rabat-1")])
    with connect(ma.device) as client:
        guard.unlock(client, PIN)
        with pytest.raises(DeviceError, match="at most 2000 bytes"):
            lib.post(client, "notice", "routine", ["MA"], "t", "x" * 2100, 3600, [])
        guard.lock(client)
    assert status(ma).entries == 0
