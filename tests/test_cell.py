"""The virtual cell (`ribat sim cell`): four partners' nodes, a local broker behind a fault
proxy, a gateway per node. Random posts under partitions, power cuts and a lossy broker
end with every node holding every entry and reading only what was released to it; a node
that rolls its flash back and signs a second history, replays and floods is caught by
the others, with the evidence kept."""

import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_gateway import imported_tallies, publish, wait_for

from conftest import PIN, Run, ribat
from ribat import sim
from ribat.authority.cell import Cell
from ribat.device.client import connect
from ribat.gateway import broker
from ribat.ops import journal as lib
from ribat.ops import sync
from ribat.sim import paths

PARTNERS = "MA,FR,ES,BE"


def cell(*args: str) -> Run:
    r = ribat("sim", "cell", *args, timeout=180)
    assert r.code == 0, r.err
    return r


@pytest.fixture
def virtual_cell() -> Iterator[dict]:
    """A running virtual cell of four partners, one node each: its status."""
    cell(PARTNERS, "--pin", PIN, "--interval", "0.5")
    try:
        yield json.loads(cell("status", "--json").out)
    finally:
        ribat("sim", "cell", "stop", "--erase")


def hello(name: str) -> dict:
    with connect(f"{sim.find(name).device}") as client:  # type: ignore[union-attr]
        return sync.hello(client)


def post_on(name: str, to: str, title: str, cut_after: float | None = None) -> str | None:
    """Post on node name, its power cut cut_after seconds into the command if given: the
    id if the host saw the post acknowledged, else None."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ribat", "post", "-p", f"sim:{name}", "--pin", PIN,
         "--kind", "notice", "--to", to, "--title", title, "--body", f"{title} for {to}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    if cut_after is not None:
        time.sleep(cut_after)
        sim.power_cycle(name)
    out, err = proc.communicate(timeout=90)
    if cut_after is None:
        assert proc.returncode == 0, err
    return out.strip() if proc.returncode == 0 else None


def short(fp: str) -> str:
    """An origin fingerprint as entry ids show it."""
    return fp.replace("-", "")[:8]


def test_the_cell_converges_through_partitions_power_cuts_and_a_lossy_broker(
    virtual_cell: dict, tmp_path: Path
) -> None:
    seed = int(os.environ.get("RIBAT_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    print(f"seed {seed} (RIBAT_SEED={seed} replays this run)")
    nodes = {n["name"]: n for n in virtual_cell["nodes"]}
    partners = PARTNERS.split(",")
    cell("faults", "--delay", "20", "--jitter", "200", "--drop", "0.2", "--duplicate", "0.2")
    acked: dict[str, set[str]] = {}  # entry id -> the partners that may read it
    actions = ["post"] * 12 + ["cut"] * 3 + ["node", "partner", "heal", "heal"]
    rng.shuffle(actions)
    for i, action in enumerate(actions):
        if action in ("node", "partner"):
            cell("partition", rng.choice(list(nodes) if action == "node" else partners))
        elif action == "heal":
            cell("heal")
        else:
            name = rng.choice(list(nodes))
            to = rng.sample(partners, rng.randint(1, 3))
            cut = rng.uniform(0.0, 1.5) if action == "cut" else None
            got = post_on(name, ",".join(to), f"b{i}", cut)
            if got:
                acked[got] = {*to, nodes[name]["partner"]}
    assert len(acked) >= 12
    cell("heal")
    cell("faults")

    def converged() -> bool:
        vectors = [hello(name)["vector"] for name in nodes]
        return (
            all(v == vectors[0] for v in vectors)
            and all(
                int(i.split(":")[1]) <= n
                for i in acked
                for fp, n in vectors[0].items()
                if short(fp) == i.split(":")[0]
            )
            and {i.split(":")[0] for i in acked} <= {short(fp) for fp in vectors[0]}
        )

    wait_for(converged, f"every node holds every entry, seed {seed}", timeout=180)
    total = sum(hello("ma-1")["vector"].values())

    # each node reads exactly what was released to its partner, and holds the rest sealed
    for name, n in nodes.items():
        r = ribat("list", "-p", f"sim:{name}", "--pin", PIN, "--json")
        assert r.code == 0, r.err
        listed = {d["id"]: d for d in map(json.loads, r.out.splitlines())}
        assert len(listed) == total
        for entry_id, d in listed.items():
            readable = d["state"] == "readable"
            assert not readable or n["partner"] in d["to"], (name, d)
            if entry_id in acked:
                assert readable == (n["partner"] in acked[entry_id]), (name, entry_id)
        r = ribat("audit", "verify", "-p", f"sim:{name}")
        assert r.code == 0, r.err

    # every origin's chain verifies on the host, from any node's export
    export = tmp_path / "all.rbj"
    assert ribat("journal", "export", "-p", "sim:fr-1", str(export)).code == 0
    r = ribat("journal", "verify", str(export), "--cell", virtual_cell["cell"])
    assert r.code == 0 and f"{total} entries verify" in r.err, r.err

    state = json.loads(cell("status", "--json").out)
    tally = state["tally"]
    assert tally["dropped"] and tally["duplicated"] and tally["cut"], tally
    host, port = broker.parse_broker(state["direct"])
    cell_id = Cell.open(Path(state["cell"])).id
    view = broker.cell_view(cell_id, broker.summaries(host, port, cell_id))
    assert not view.forks and not view.alarms and not any(n.stale for n in view.nodes)


def test_a_node_that_rolls_back_replays_and_floods_is_caught(
    virtual_cell: dict, tmp_path: Path
) -> None:
    nodes = {n["name"]: n for n in virtual_cell["nodes"]}
    es_fp, ma_fp = nodes["es-1"]["fp"], nodes["ma-1"]["fp"]
    cell_id = Cell.open(Path(virtual_cell["cell"])).id
    direct = virtual_cell["direct"]
    host, port = broker.parse_broker(direct)
    root = f"ribat/{cell_id}/"

    # madrid-1's operator keeps a copy of its flash, then posts
    flash = paths.sims_root() / "es-1" / "flash.img"
    snapshot = tmp_path / "es-1.img"
    sim.stop("es-1")
    shutil.copy(flash, snapshot)
    sim.start("es-1", "pico")
    first = post_on("es-1", "MA", "first story")
    assert first == f"{short(es_fp)}:1"

    def witnessed_by_all() -> bool:
        docs = broker.summaries(host, port, cell_id)
        head = docs.get(es_fp, {}).get("audit", {}).get("seq", 0)
        return all(
            docs.get(n["fp"], {}).get("witnessed", {}).get(es_fp, {}).get("seq", -1) >= head > 0
            for name, n in nodes.items()
            if name != "es-1"
        ) and all(hello(name)["vector"].get(es_fp) == 1 for name in nodes)

    wait_for(witnessed_by_all, "every node holds es-1's entry and witnessed its audit head")
    with connect(sim.find("es-1").device) as client:  # type: ignore[union-attr]
        (story_a,) = lib.export(client, {})

    # ... puts the old flash back, and signs a second history at the same seq
    sim.stop("es-1")
    shutil.copy(snapshot, flash)
    sim.start("es-1", "pico")
    assert post_on("es-1", "FR", "another story") == first
    with connect(sim.find("es-1").device) as client:  # type: ignore[union-attr]
        (story_b,) = lib.export(client, {})
    assert story_a != story_b

    # the peers' witnesses catch the rewound audit log, the summaries show the fork
    def caught() -> bool:
        view = broker.cell_view(cell_id, broker.summaries(host, port, cell_id))
        return any("es-1" in a for a in view.alarms) and any(
            f.startswith("fork: es-1 at seq 1") for f in view.forks
        )

    wait_for(caught, "an audit alarm and a fork against es-1")

    # its owner pushes the second history, replays, floods: under its own name only
    junk = [(f"{root}entry/{es_fp}/{n}", os.urandom(n % 300)) for n in range(2, 1500)]
    publish(direct, [
        (f"{root}entry/{es_fp}/1", story_b),  # the second history
        *junk,
        (f"{root}entry/{es_fp}/1500", story_a),  # a replay where it does not belong
        (f"{root}entry/{ma_fp}/99", story_b),  # another origin's topic: the ACL refuses
    ], es_fp)  # fmt: skip

    def evidence_kept() -> bool:
        for name in ("ma-1", "fr-1", "be-1"):
            with connect(sim.find(name).device) as client:  # type: ignore[union-attr]
                origins = lib.status(client).origins
            if not any(o.fingerprint == es_fp and o.forks >= 1 for o in origins):
                return False
        return True

    wait_for(evidence_kept, "every other node keeps es-1's two entries at seq 1 as evidence")
    assert any(t.get("fork") for t in imported_tallies(sim.find("ma-1")))  # type: ignore[arg-type]

    # the flood cost nothing but time: no gateway fell over, a new post still reaches all
    later = post_on("fr-1", "BE", "after the flood")
    assert later is not None
    fr_fp = nodes["fr-1"]["fp"]
    wait_for(
        lambda: all(hello(name)["vector"].get(fr_fp) == 1 for name in nodes),
        "the post after the flood reaches every node",
    )
    state = json.loads(cell("status", "--json").out)
    logs = paths.home() / "cell" / "gateways"
    for n in state["nodes"]:  # es-1's gateway was restarted while its board was off
        if n["name"] != "es-1":
            assert n["restarts"] == 0, (logs / f"{n['name']}.log").read_text()[-3000:]
    assert all(ma_fp not in hello(name)["vector"] for name in nodes)  # nothing under ma-1
    log = (paths.home() / "cell" / "gateways" / "ma-1.log").read_text()
    assert "messages ignored: not what their topic says" in log


def test_two_nodes_per_partner_and_a_partner_partitioned() -> None:
    cell("MA,FR", "--nodes-per-partner", "2", "--pin", PIN, "--interval", "0.5")
    try:
        state = json.loads(cell("status", "--json").out)
        assert [n["name"] for n in state["nodes"]] == ["ma-1", "ma-2", "fr-1", "fr-2"]
        cell("partition", "FR")
        cut = json.loads(cell("status", "--json").out)
        assert [n["name"] for n in cut["nodes"] if n["partitioned"]] == ["fr-1", "fr-2"]
        r = ribat("sim", "cell", "partition", "PT")
        assert r.code == 9 and "no node or partner 'PT'" in r.err
        got = post_on("ma-2", "FR", "for both French nodes")
        assert got is not None
        ma_fp = next(n["fp"] for n in state["nodes"] if n["name"] == "ma-2")
        wait_for(lambda: hello("ma-1")["vector"].get(ma_fp) == 1, "ma-1 has it")
        assert all(ma_fp not in hello(n)["vector"] for n in ("fr-1", "fr-2"))  # cut off
        cell("heal", "FR")
        wait_for(
            lambda: all(hello(n)["vector"].get(ma_fp) == 1 for n in ("fr-1", "fr-2")),
            "both French nodes have it once healed",
        )
        for name in ("ma-1", "fr-1", "fr-2"):
            r = ribat("show", "-p", f"sim:{name}", "--pin", PIN, got)
            assert r.code == 0 and "for both French nodes" in r.out, (name, r.err)
        # a release rolled out through the running cell (its gateways hold the ports in
        # turn), one node after the other; `cell status` follows it
        release = Path(state["cell"]).parent / "release-0.2.0.rbun"
        for step in (
            (
                "release",
                "build",
                "--version",
                "0.2.0",
                "-b",
                "virtual-rp2-pico",
                "-o",
                str(release),
            ),
            ("release", "sign", str(release), "--key", str(Path(state["cell"]) / "release.key")),
        ):
            assert ribat(*step).code == 0
        ports = [arg for n in state["nodes"] for arg in ("-p", f"sim:{n['name']}")]
        r = ribat("flash", "--bundle", str(release), *ports, timeout=300)
        assert r.code == 0, r.err
        assert r.err.count("release 0.2.0 (was 0.1.0) confirmed by the node") == 4

        def all_on_the_release() -> bool:
            out = ribat("cell", "status", "--cell", state["cell"], "--broker", state["broker"]).out
            return out.count("0.2.0") == 4

        wait_for(all_on_the_release, "cell status shows the release on every node")
    finally:
        ribat("sim", "cell", "stop", "--erase")
