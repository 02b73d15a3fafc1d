"""The 24/7 watch: a flash or priority bulletin lights the LED and sounds the buzzer of the
unlocked nodes it is released to, whichever link brought it; the button (or `ribat ack`)
signs an acknowledgement that travels back to the author; an alert nobody acknowledges
within alert.ack_timeout_s turns overdue; a pending alert outlives a power cut."""

import datetime
import json
import os
import select
import subprocess
import sys
import time
import zoneinfo
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from test_gateway import gateway, wait_for
from test_journal import import_file, items, post, rewrite, seq_of

from conftest import (
    PIN,
    Broker,
    NewSim,
    copy_firmware,
    make_cell,
    on_flash,
    release_bundle,
    ribat,
    sim_status,
)
from ribat import deploy, sim
from ribat.deploy import bundle, update
from ribat.device.client import NodeClient, connect
from ribat.ops import guard


@contextmanager
def on_duty(board: sim.Sim) -> Iterator[NodeClient]:
    """A duty officer's session on board (its port held, the node unlocked)."""
    with connect(board.device) as client:
        guard.unlock(client, PIN)
        yield client


def led(board: sim.Sim, client: NodeClient | None = None) -> str:
    """The pattern board's LED shows, watched for a heartbeat's length (2 s) and more."""
    if client is not None:
        client.request("ping")  # the session is not idle
    return sim.panel(board.name, 2.2)["led"]


def acks(board: sim.Sim, ident: str) -> list[str]:
    """Who acknowledged bulletin ident, as board's journal tells."""
    (item,) = [i for i in items(board) if i["id"] == ident]
    return [a["node"] for a in item["acknowledgements"]]


def test_a_flash_bulletin_lights_the_nodes_it_is_for_and_the_button_answers(
    new_sim: NewSim, tmp_path: Path
) -> None:
    ma, fr, es = make_cell(
        new_sim, tmp_path, [("MA", "rabat-1"), ("FR", "paris-1"), ("ES", "madrid-1")]
    )
    r = ribat("config", "set", "-p", es.device, "alert.ack_timeout_s", "10")
    assert r.code == 0, r.err
    # paris - rabat - madrid, by wires: no host relays anything
    assert ribat("sim", "wire", ma.name, fr.name).code == 0
    assert ribat("sim", "wire", ma.name, es.name).code == 0
    with on_duty(fr) as paris, on_duty(es) as madrid:
        assert "heartbeat" in led(fr, paris) and "heartbeat" in led(es, madrid)
        post(ma, "--kind", "notice", "--to", "FR,ES", "--title", "Routine", "--body", "x")
        flash = post(
            ma, "--kind", "alert", "--severity", "flash", "--to", "FR,ES",
            "--title", "Threat", "--body", "now",
        )  # fmt: skip
        posted = time.monotonic()
        wait_for(lambda: "flash" in led(fr, paris), "paris shows a flash alert", 45)
        wait_for(lambda: "flash" in led(es, madrid), "madrid shows a flash alert", 45)
        assert sim.panel(fr.name, 2.5)["buzzer_beeps"] >= 1
        seen = [e for e in iter(lambda: paris.next_event(0.2), None) if e.get("event") == "alert"]
        assert [e["id"] for e in seen] == [flash]  # the routine bulletin raised nothing
        assert seen[0]["severity"] == "flash" and seen[0]["from"] == "rabat-1"

        sim.press(fr.name)  # paris's duty officer acknowledges; madrid's does not
        wait_for(lambda: "heartbeat" in led(fr, paris), "paris's LED back to the heartbeat")
        # madrid's alert waits past its 10 s: steady, and the buzzer keeps calling
        wait_for(lambda: "overdue" in led(es, madrid), "madrid's alert overdue", 30)
        assert time.monotonic() - posted >= 10
        assert sim.panel(es.name, 2.5)["buzzer_beeps"] >= 1
    # the acknowledgement is paris's own signed entry, carried back to rabat by the wire
    wait_for(lambda: acks(ma, flash) == ["paris-1"], "rabat sees paris's acknowledgement", 45)
    r = ribat("list", "-p", ma.device, "--unacked")
    assert r.code == 0 and "Threat" not in r.out and "Routine" not in r.out, r.out

    # madrid loses power before anyone acknowledged: its alert is still there after
    sim.power_cycle(es.name)
    es = sim.find(es.name) or es
    with connect(es.device) as client:
        client.wait_ready()
    assert "overdue" in led(es)  # locked now, and the alert still calls
    r = ribat("ack", "-p", es.device, "--pin", PIN, flash)
    assert r.code == 0, r.err
    r = ribat("ack", "-p", es.device, "--pin", PIN, flash)
    assert r.code == 0 and "already" in r.out + r.err, r.out + r.err
    wait_for(lambda: "heartbeat" in led(es), "madrid's LED back to the heartbeat")
    wait_for(
        lambda: sorted(acks(ma, flash)) == ["madrid-1", "paris-1"], "rabat sees both acks", 45
    )


def test_a_priority_bulletin_blinks_slowly_and_min_severity_silences_it(
    new_sim: NewSim, tmp_path: Path
) -> None:
    ma, fr = make_cell(new_sim, tmp_path, [("MA", "rabat-1"), ("FR", "paris-1")])
    priority = post(
        ma, "--kind", "alert", "--severity", "priority", "--to", "FR", "--title", "Soon",
        "--body", "x",
    )  # fmt: skip
    r = ribat("sync", "-p", ma.device, "-p", fr.device)  # the host relays, paris locked
    assert r.code == 0, r.err
    with on_duty(fr) as paris:  # what came while it was locked is read at the unlock
        wait_for(lambda: "priority" in led(fr, paris), "paris shows a priority alert", 30)
    r = ribat("ack", "-p", fr.device, "--pin", PIN, priority)
    assert r.code == 0, r.err
    # priority bulletins raise nothing once alert.min_severity is flash
    r = ribat("config", "set", "-p", fr.device, "alert.min_severity", "flash")
    assert r.code == 0, r.err
    post(ma, "--kind", "alert", "--severity", "priority", "--to", "FR", "--title", "Again",
         "--body", "y")  # fmt: skip
    assert ribat("sync", "-p", ma.device, "-p", fr.device).code == 0
    with on_duty(fr) as paris:
        time.sleep(2)
        assert "heartbeat" in led(fr, paris)


@contextmanager
def console(board: sim.Sim, *args: str) -> Iterator[subprocess.Popen]:
    """`ribat watch` on board (plain lines, commands on its stdin), until the block ends."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ribat", "watch", "-p", f"sim:{board.name}", "--pin", PIN,
         "--interval", "0.5", *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


def said(proc: subprocess.Popen, text: str, timeout: float = 45) -> str:
    """Read the console's lines until one holds text; that line."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    out = b""
    while True:
        for line in out.decode(errors="replace").splitlines():
            if text in line:
                return line
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(0.0, left))
        assert ready, f"not within {timeout} s: {text!r} from the console: {out!r}"
        got = os.read(fd, 4096)
        assert got, f"the console ended before {text!r}: {out!r}"
        out += got


def test_over_the_broker_the_author_and_the_cell_see_who_acknowledged(
    new_sim: NewSim, tmp_path: Path, broker: Broker
) -> None:
    ma, fr, es, be = make_cell(
        new_sim,
        tmp_path,
        [("MA", "rabat-1"), ("FR", "paris-1"), ("ES", "madrid-1"), ("BE", "brussels-1")],
    )
    r = ribat("config", "set", "-p", es.device, "alert.ack_timeout_s", "10")
    assert r.code == 0, r.err
    url = ("--broker", broker.url)
    with (
        gateway(ma, broker),
        gateway(be, broker),
        console(fr, *url) as paris,
        console(es, *url) as madrid,
    ):
        for proc in (paris, madrid):
            said(proc, "on watch")
        flash = post(ma, "--kind", "alert", "--severity", "flash", "--to", "FR,ES",
                     "--title", "Threat", "--body", "now")  # fmt: skip
        line = said(paris, "ALERT flash")
        assert flash in line and "rabat-1 (MA)" in line and "Threat" in line
        said(madrid, "ALERT flash")
        wait_for(lambda: "flash" in led(fr), "paris's panel", 10)
        wait_for(lambda: "flash" in led(es), "madrid's panel", 10)
        assert "heartbeat" in led(be)  # brussels: not for it

        sim.press(fr.name)  # paris acknowledges; madrid does not
        said(paris, "ACK paris-1 acknowledged")
        wait_for(lambda: "overdue" in led(es), "madrid's alert overdue", 30)
        said(madrid, "OVERDUE")

        def cell_says() -> str:
            r = ribat("cell", "status", "--cell", str(tmp_path / "cell"), "--broker", broker.url)
            assert r.code == 0, r.err
            return next((ln for ln in r.out.splitlines() if ln.startswith(f"alert {flash}")), "")

        wait_for(
            lambda: (
                "paris-1 acknowledged after" in cell_says()
                and "madrid-1 OVERDUE, pending for" in cell_says()
            ),
            "cell status tells paris acknowledged and madrid overdue",
            45,
        )
        # the author's node has paris's acknowledgement, and not madrid's
        wait_for(lambda: acks(ma, flash) == ["paris-1"], "rabat holds paris's ack", 45)


def test_the_console_comes_back_with_its_node_and_refuses_a_wrong_pin(
    new_sim: NewSim, tmp_path: Path
) -> None:
    ma, fr = make_cell(new_sim, tmp_path, [("MA", "rabat-1"), ("FR", "paris-1")])
    with console(fr) as paris:
        said(paris, "on watch: paris-1 (FR), unlocked")
        sim.power_cycle(fr.name)  # the board loses power under the console
        said(paris, "lost the node")
        said(paris, "on watch: paris-1 (FR), unlocked")  # and it came back, unlocked again
        post(ma, "--kind", "alert", "--severity", "priority", "--to", "FR", "--title", "Back",
             "--body", "x")  # fmt: skip
        assert ribat("sync", "-p", ma.device, "-p", f"sim:{fr.name}").code != 0  # port held
        assert paris.stdin is not None
        paris.stdin.write(b"quit\n")
        paris.stdin.flush()
        assert paris.wait(15) == 0
    r = ribat("watch", "-p", f"sim:{fr.name}", "--pin", "wrong-pin-000")
    assert r.code == 11 and "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1


def test_times_show_in_the_operators_zone(new_sim: NewSim, tmp_path: Path) -> None:
    (ma,) = make_cell(new_sim, tmp_path, [("MA", "rabat-1")])
    ident = post(ma, "--kind", "notice", "--to", "MA", "--title", "Zoned", "--body", "x")
    written = next(i["written"] for i in items(ma, "--pin", PIN) if i["id"] == ident)
    t = datetime.datetime.fromisoformat(written).timestamp()
    for zone in ("Africa/Casablanca", "Europe/Paris", "America/New_York", "UTC"):
        r = ribat("--tz", zone, "show", "-p", ma.device, "--pin", PIN, ident)
        assert r.code == 0, r.err
        local = datetime.datetime.fromtimestamp(t, zoneinfo.ZoneInfo(zone))
        assert f"written {local:%Y-%m-%d %H:%M %Z}" in r.out, r.out
    r = ribat("--tz", "Mars/Olympus", "list", "-p", ma.device)
    assert r.code == 2 and "no time zone" in r.err and "Traceback" not in r.err


def test_list_follows_what_comes_and_status_counts_pending_alerts(
    new_sim: NewSim, tmp_path: Path
) -> None:
    ma, fr = make_cell(new_sim, tmp_path, [("MA", "rabat-1"), ("FR", "paris-1")])
    assert ribat("sim", "wire", ma.name, fr.name).code == 0
    follow = subprocess.Popen(
        [sys.executable, "-m", "ribat", "list", "-p", f"sim:{fr.name}", "--pin", PIN,
         "--follow", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        ident = post(ma, "--kind", "alert", "--severity", "flash", "--to", "FR",
                     "--title", "Followed", "--body", "x")  # fmt: skip
        line = said(follow, ident)
        item = json.loads(line)
        assert item["title"] == "Followed" and item["severity"] == "flash"
        assert item["node"] == "rabat-1" and item["written"].endswith("Z")
        wait_for(lambda: "flash" in led(fr), "paris, unlocked by the list, raised the alert", 10)
    finally:
        follow.terminate()
        follow.wait(10)
    # paris was unlocked when it came: the alert is pending, and its status says so
    r = ribat("status", "-p", f"sim:{fr.name}")
    assert r.code == 0 and "1 pending" in r.out, r.out


# A firmware that hangs its loop a few seconds after a start that finds /hang (removed
# first: the start after the watchdog's reset runs as usual).
HANG = """

_main = main


async def main(node):
    import os

    async def hang():
        await asyncio.sleep_ms(2500)
        while True:  # no await: the loop, and the watchdog's feeding, stop here
            pass

    try:
        os.remove("/hang")
        asyncio.create_task(hang())
    except OSError:
        pass
    await _main(node)
"""


def test_a_hung_node_is_restarted_by_its_watchdog(new_sim: NewSim, tmp_path: Path) -> None:
    (ma,) = make_cell(new_sim, tmp_path, [("MA", "rabat-1")])
    src = copy_firmware(tmp_path)
    with open(src / "ribat" / "app.py", "a") as f:
        f.write(HANG)
    update.send(ma.device, bundle.read(release_bundle(tmp_path, "0.2.0", src)), confirm=True)
    on_flash(ma, "open('/hang', 'w').close()\nprint('{}')")
    started = time.monotonic()
    wait_for(lambda: sim_status(ma.name)["reset_cause"] == "watchdog", "a watchdog reset", 30)
    assert time.monotonic() - started >= 8  # not fed for 8 s: 2.5 s running, then hung
    with connect(sim.find(ma.name).device) as client:  # type: ignore[union-attr]
        assert client.wait_ready().name == "rabat-1"
        assert client.request("status")["reset_cause"] == "watchdog"
    assert sim_status(ma.name)["watchdog_resets"] == 1
    # an unprovisioned board has none armed: its REPL stays a host's for as long as it likes
    board = new_sim()
    deploy.deploy(board.device)
    time.sleep(10)
    assert sim_status(board.name)["watchdog_resets"] == 0


def test_an_alert_that_came_before_its_predecessor_is_raised_once_it_joins(
    new_sim: NewSim, tmp_path: Path
) -> None:
    """The watch passes a bulletin held for its predecessor (a link may bring an origin's
    entries in any order): it is raised once the gap fills, not lost."""
    ma, fr = make_cell(new_sim, tmp_path, [("MA", "rabat-1"), ("FR", "paris-1")])
    post(ma, "--kind", "notice", "--to", "FR", "--title", "first")
    post(ma, "--kind", "alert", "--severity", "flash", "--to", "FR", "--title", "second")
    full, second = tmp_path / "ma.rbj", tmp_path / "second.rbj"
    assert ribat("journal", "export", "-p", ma.device, str(full)).code == 0
    rewrite(full, second, lambda raw: raw if seq_of(raw) == 2 else None)
    assert list(import_file(fr, second).values()) == ["gap"]
    with on_duty(fr) as client:  # the watch looks, and passes it: held
        assert "flash" not in led(fr, client)
    import_file(fr, full)  # the first comes: the second joins its chain
    with on_duty(fr) as client:
        wait_for(lambda: "flash" in led(fr, client), "paris raised the alert", 20)
