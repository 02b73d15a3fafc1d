"""Whoever holds a provisioned node's USB port, without its PIN: no prompt (Ctrl-C,
Ctrl-D, Ctrl-A, a crash, unmodified mpremote), no setting that weakens the node, no wipe
without the PIN or the button, no deploy at all (signed releases only: test_update.py).
Each of these worked before the node was sealed (issue 19)."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_key_leak import RecordingPort

from conftest import FIRMWARE, PIN, NewSim, make_cell, on_flash, release_bundle, ribat, sim_status
from ribat import codec, deploy, sim
from ribat.deploy import bundle, update
from ribat.device.client import NodeClient
from ribat.device.transport import Port
from ribat.errors import DeviceError, Locked, Sealed
from ribat.ops import guard
from ribat.ops import journal as lib
from ribat.sim import paths


@pytest.fixture
def sealed(new_sim: NewSim, tmp_path: Path) -> sim.Sim:
    """A provisioned node (locked)."""
    (board,) = make_cell(new_sim, tmp_path, [("MA", "rabat-1")])
    return board


def said(device: str, send: bytes, listen: float = 2.0) -> bytes:
    """What the board says in the seconds after it is sent bytes."""
    with Port(device) as port:
        port.write(send)
        out = b""
        deadline = time.monotonic() + listen
        while (left := deadline - time.monotonic()) > 0:
            out += port.read(left)
    return out


def boot_id(board: sim.Sim) -> str:
    with NodeClient(Port(board.device)) as client:
        return client.wait_ready().boot


def mpremote_gets_in(device: str) -> bool:
    try:
        done = subprocess.run(
            [sys.executable, "-m", "mpremote", "connect", device, "exec", "print(6 * 7)"],
            capture_output=True, text=True, timeout=12,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return False
    return "42" in done.stdout


def test_no_prompt_answers_on_a_sealed_node(sealed: sim.Sim) -> None:
    before = boot_id(sealed)
    for keys in (b"\r\x03\x03", b"\r\x03\r\x01", b"\x04", b"\r\x02\x04", b"\x03\x01\x04\x05A\x01"):
        out = said(sealed.device, keys)
        assert b">>>" not in out and b"raw REPL" not in out, (keys, out)
    assert boot_id(sealed) == before  # it did not even restart: those were bytes
    assert not mpremote_gets_in(sealed.device)
    # nor in the instants after a power cycle, Ctrl-C sent all the way through the start
    sim.power_cycle(sealed.name)
    out = said(sealed.device, b"\x03" * 64 + b"\r\x01", listen=1.0)
    assert b">>>" not in out and b"raw REPL" not in out, out
    assert boot_id(sealed) != before


def test_a_crash_restarts_a_sealed_node(sealed: sim.Sim, tmp_path: Path) -> None:
    src = tmp_path / "crashing"
    shutil.copytree(FIRMWARE, src, ignore=shutil.ignore_patterns("__pycache__", "mypy.ini"))
    app = src / "ribat" / "app.py"
    serve = "    await node.link.serve(lambda frame: service.handle(node, frame))\n"
    assert serve in app.read_text()
    crash = (
        "    asyncio.create_task(node.link.serve(lambda frame: service.handle(node, frame)))\n"
        "    await asyncio.sleep_ms(1500)\n"
        "    raise RuntimeError('a crash')  # out of the application: an unsealed one ends here\n"
    )
    app.write_text(app.read_text().replace(serve, crash))
    # confirmed by the host as soon as it answers: from then on it crashes for good
    update.send(sealed.device, bundle.read(release_bundle(tmp_path, "0.2.0", src)), confirm=True)
    out = said(sealed.device, b"", listen=5.0)
    assert b"a crash" in out  # it did crash, and said so
    assert b">>>" not in out and b"raw REPL" not in out, out
    assert sim_status(sealed.name)["reset_cause"] == "hard"  # machine.reset(), each time
    assert not mpremote_gets_in(sealed.device)


def test_no_deploy_reaches_a_sealed_node_pin_or_not(sealed: sim.Sim, tmp_path: Path) -> None:
    """Its REPL stays closed even to an unlocked session: a sealed node's firmware changes
    by signed releases only (test_update.py)."""
    src = tmp_path / "fw"
    shutil.copytree(FIRMWARE, src, ignore=shutil.ignore_patterns("__pycache__", "mypy.ini"))
    with open(src / "ribat" / "telemetry.py", "a") as f:
        f.write("\nCHANGED = 1\n")
    before = boot_id(sealed)
    with pytest.raises(Sealed, match="signed releases only"):
        deploy.deploy(sealed.device, source=src)
    r = ribat("flash", "-p", sealed.device, "--source", str(src))
    assert r.code == 8 and "signed releases only" in r.err
    with NodeClient(Port(sealed.device)) as client:
        client.wait_ready()
        guard.unlock(client, PIN)
        with pytest.raises(DeviceError, match="unknown operation"):
            client.request("repl.open")  # what an unlocked session could ask before
        guard.lock(client)
    assert boot_id(sealed) == before  # nothing written, nothing restarted
    assert not mpremote_gets_in(sealed.device)


def test_a_locked_node_keeps_its_security_settings(sealed: sim.Sim) -> None:
    for key, value in (
        ("pin.max_tries", "15"),
        ("pin.idle_s", "3600"),
        ("audit.max_entries", "16"),
        ("node.partner", "FR"),
        ("node.name", "not-rabat"),
    ):
        r = ribat("config", "set", "-p", sealed.device, key, value)
        assert r.code == 10 and "unlocked session" in r.err, (key, r.err)
        r = ribat("config", "unset", "-p", sealed.device, key)
        assert r.code == 10, (key, r.err)
    got = ribat("config", "get", "-p", sealed.device, "pin.max_tries")
    assert got.out.strip().endswith("8")
    # what does not weaken it still changes locked; the rest with the PIN
    assert ribat("config", "set", "-p", sealed.device, "led.brightness", "20").code == 0
    r = ribat("config", "set", "-p", sealed.device, "--pin", PIN, "pin.max_tries", "5")
    assert r.code == 0, r.err


def test_a_wipe_needs_the_pin_or_the_button(sealed: sim.Sim) -> None:
    def state() -> str:
        with NodeClient(Port(sealed.device)) as client:
            client.wait_ready()
            return str(client.request("identity")["state"])

    with NodeClient(Port(sealed.device)) as client:
        client.hello()
        with pytest.raises(Locked, match="button"):
            client.request("wipe", confirm=True)
    r = ribat("wipe", "-p", sealed.device, "--yes", "--pin", "000000")
    assert r.code == 11 and state() == "locked"
    # --button with no press: the window closes, nothing is wiped
    r = ribat("wipe", "-p", sealed.device, "--yes", "--button", timeout=60)
    assert r.code == 10 and "no press" in r.err and state() == "locked"
    # --button, pressed in the window
    proc = subprocess.Popen(
        [sys.executable, "-m", "ribat", "wipe", "-p", sealed.device, "--yes", "--button"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    assert "press and hold the button" in proc.stderr.readline()
    sim.press(sealed.name, hold=1.0)
    assert proc.wait(30) == 0
    assert state() == "unprovisioned"
    events = ribat("audit", "show", "-p", sealed.device).out
    assert "why=button" in events


def _frames_sent(port: RecordingPort) -> list[bytes]:
    """Each request line the host wrote, whole (marker to newline)."""
    lines = bytes(port.sent).split(b"\n")
    return [line + b"\n" for line in lines if line.startswith(bytes((codec.MARK,)))]


def _op_of(line: bytes) -> str:
    meta = codec.decode(line[1:-1]).meta or {}
    return str(meta.get("op"))


def _answer(client: NodeClient, line: bytes) -> dict:
    """Send a recorded request line again, as a man in the middle would; the answer."""
    seq = codec.decode(line[1:-1]).seq
    client.port.write(line)
    frame = client._wait(seq, 10)
    assert frame is not None and frame.meta is not None
    return frame.meta


def test_a_recorded_session_replays_nothing(sealed: sim.Sim) -> None:
    port = RecordingPort(sealed.device)
    client = NodeClient(port)
    client.hello()
    guard.unlock(client, PIN)
    post = lib.post(client, "notice", "routine", ["MA"], "once", "only once", 3600, [])
    guard.lock(client)
    recorded = _frames_sent(port)
    unlock_line = next(line for line in recorded if _op_of(line) == "unlock")
    post_line = next(line for line in recorded if _op_of(line) == "journal.post")
    assert PIN.encode() not in bytes(port.sent)  # sealed, as the key leak test shows whole

    def rejected_auth() -> int:
        status = client.request("status")
        return int(status["rx_rejected"][codec.AUTH])

    before = rejected_auth()
    tries = client.request("identity")["tries"]
    # the recorded unlock: its PIN key is gone, nothing opens and no PIN is counted
    answer = _answer(client, unlock_line)
    assert answer.get("error") == "auth", answer
    assert client.request("identity")["state"] == "locked"
    assert client.request("identity")["tries"] == tries
    # a recorded post of that session, sent while locked: not the session's, refused
    answer = _answer(client, post_line)
    assert answer.get("error") == "locked", answer
    # ... and in a new session, whose key it was not made with
    guard.unlock(client, PIN)
    answer = _answer(client, post_line)
    assert answer.get("error") == "auth", answer
    # a request of this session sent twice: the second is refused
    client.request("ping")
    again = _frames_sent(port)[-1]
    assert _answer(client, again).get("error") == "auth"
    # a request altered on the way: refused
    text = codec.decode(again[1:-1])
    assert text.meta is not None
    altered = codec.encode(
        codec.REQUEST, text.seq, {**text.meta, "n": text.meta["n"] + 5, "op": "journal.list"}
    )
    assert _answer(client, altered).get("error") == "auth"
    # and a plain request (another host on the port) does not read content
    client.close_session()
    plain = client.request("journal.list")
    assert all("t" not in item for item in plain["items"])
    client.open_session(b"\x00" * 32)  # a made-up session key: refused, not taken as plain
    with pytest.raises(DeviceError) as refused:
        client.request("journal.list")
    assert refused.value.cause == "auth"
    client.close_session()
    assert rejected_auth() >= before + 4
    client.close()
    listed = ribat("list", "-p", sealed.device, "--pin", PIN, "--json").out.splitlines()
    assert [json.loads(line)["id"] for line in listed] == [post["id"]]  # posted once


def test_a_wipe_leaves_nothing_to_carve(sealed: sim.Sim) -> None:
    """The sealed keys and the tries live in the vault, blocks outside littlefs that a
    wipe erases: no seal, whole or in part, is left anywhere on the chip to try PINs on
    (littlefs frees a deleted file's blocks without erasing them)."""
    image = paths.sims_root() / sealed.name / "flash.img"
    vault = image.read_bytes()[-2 * 4096 :]
    at = vault.find(b"RBV1")
    length = int.from_bytes(vault[at + 8 : at + 10], "big")
    record = json.loads(vault[at + 10 : at + 10 + length])
    blob = bytes.fromhex(record["seal"])
    assert blob[:4] == b"RBK1" and record["tries"] == 0

    r = ribat("wipe", "-p", sealed.device, "--yes", "--pin", PIN)
    assert r.code == 0, r.err
    after = image.read_bytes()
    for form in (blob, blob[:24], record["seal"].encode(), record["seal"][:48].encode()):
        assert form not in after
    # no seal made under any PIN: its magic and iteration count, raw or in hex
    assert b"RBK1\x00\x00\x18\x00" not in after and b"52424b3100001800" not in after.lower()


def test_a_try_count_put_back_is_caught(sealed: sim.Sim) -> None:
    """The vault's blocks written back from before three wrong PINs (what a flash
    programmer can do): the audit log, which says three, wins, and says so."""
    image = paths.sims_root() / sealed.name / "flash.img"
    vault = image.read_bytes()[-2 * 4096 :]
    for _ in range(3):
        assert ribat("unlock", "-p", sealed.device, "--pin", "not-the-pin-0").code == 11
    sim.stop(sealed.name)
    with open(image, "r+b") as f:
        f.seek(-2 * 4096, 2)
        f.write(vault)
    again = sim.start(sealed.name, sealed.board)
    with NodeClient(Port(again.device)) as client:
        client.wait_ready()
        assert client.request("identity")["tries"] == 3
    events = ribat("audit", "show", "-p", again.device).out
    assert "tries-restored" in events and "counted=0" in events and "logged=3" in events


def test_a_sealed_node_never_goes_back_to_a_build_it_replaced(
    sealed: sim.Sim, tmp_path: Path
) -> None:
    """Its flash edited to make the slot of a release it replaced active again: the node
    refuses to run it, says so in its audit log, and runs the newer one."""
    for n, version in enumerate(("0.2.0", "0.3.0")):
        src = tmp_path / f"fw{n}"
        shutil.copytree(FIRMWARE, src, ignore=shutil.ignore_patterns("__pycache__", "mypy.ini"))
        with open(src / "ribat" / "telemetry.py", "a") as f:
            f.write(f"\nRELEASE = {n}\n")
        release = bundle.read(release_bundle(tmp_path, version, src))
        update.send(sealed.device, release, confirm=True)
    with NodeClient(Port(sealed.device)) as client:
        newer = client.wait_ready()
    assert newer.firmware == "0.3.0"
    older_slot = "b" if newer.slot == "a" else "a"
    on_flash(
        sealed,
        f"with open('/fw/active', 'w') as f:\n    f.write({older_slot!r})\nprint('{{}}')",
    )
    with NodeClient(Port(sealed.device)) as client:
        info = client.wait_ready()
    assert (info.firmware, info.slot, info.fallback) == ("0.3.0", newer.slot, True)
    events = ribat("audit", "show", "-p", sealed.device).out
    assert "downgrade-refused" in events
