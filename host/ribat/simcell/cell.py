"""The virtual cell: one provisioned virtual Pico per partner (or N), an authority and its
roster, a local broker with faults on command, and a gateway per node, all on this host.

    $RIBAT_HOME/cell/
        authority/      the cell directory (ribat.cell): authority key, signed roster
        cell.json       the plan: partners, nodes (name, partner, fingerprint), interval
        keeper.json     while running: the keeper's pid, the broker's addresses
        broker/         mosquitto's configuration, ACL and log
        gateways/       one log per node's gateway
        keeper.log      what the keeper said

Nodes are virtual boards named after their partner (ma-1, fr-1...): `--port sim:ma-1`
reaches them like any other. Starting a cell again after `stop` reuses its nodes, their
flash and keys.
"""

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from ribat import schema, sim
from ribat.errors import SimError
from ribat.ops import guard
from ribat.sim import paths

if TYPE_CHECKING:
    from ribat.authority.cell import Cell
    from ribat.deploy import Step

START_TIMEOUT_S = 15.0
CONTROL_TIMEOUT_S = 10.0
GATEWAY_INTERVAL_S = 1.0
MAX_PER_PARTNER = 8


def folder() -> Path:
    return paths.home() / "cell"


def authority_dir() -> Path:
    return folder() / "authority"


def node_names(partners: list[str], per_partner: int) -> list[tuple[str, str]]:
    """(partner, node name) for each node of the cell."""
    return [(p, f"{p.lower()}-{i}") for p in partners for i in range(1, per_partner + 1)]


def parse_partners(text: str) -> list[str]:
    """MA,FR,ES,BE as a list of partner codes; ValueError saying what is wrong."""
    partners = [p.strip().upper() for p in text.split(",") if p.strip()]
    if not partners:
        raise ValueError("name the partners, like MA,FR,ES,BE")
    for p in partners:
        problem = schema.check("node.partner", p)
        if problem is not None:
            raise ValueError(problem)
    if len(set(partners)) != len(partners):
        raise ValueError("a partner is named twice")
    return partners


def keeper_state() -> dict | None:
    """The running keeper's state, None if no virtual cell is running."""
    try:
        state = json.loads((folder() / "keeper.json").read_text())
    except (OSError, ValueError):
        return None
    return state if sim.alive(state["pid"]) else None


def _setup_node(cell: "Cell", partner: str, name: str, pin: str, fast_link: bool) -> dict:
    """A running virtual board with the firmware, provisioned in cell: its identity."""
    from ribat import deploy
    from ribat.device.client import connect
    from ribat.errors import Sealed

    board = sim.find(name)
    if board is None or not board.running:
        board = sim.start(name, "pico", fast_link)
    try:
        deploy.deploy(board.device)
    except Sealed:
        pass  # provisioned when the cell was made: a release updates it (`ribat flash --bundle`)
    with connect(board.device) as client:
        info = guard.identity(client)
        if info["state"] == "unprovisioned":
            guard.provision(client, cell, partner, name, pin)
        elif info["cell"] != cell.id or info["partner"] != partner:
            raise SimError(
                f"virtual board {name} belongs to another cell or partner: "
                f"erase it with `ribat sim stop {name} --erase`"
            )
        return guard.exported_identity(client)


def start(
    partners: list[str],
    per_partner: int = 1,
    pin: str = "",
    interval: float = GATEWAY_INTERVAL_S,
    fast_link: bool = False,
    step: "Step" = lambda message: None,
) -> dict:
    """Make (or restart) the virtual cell and start its keeper; the keeper's status."""
    from ribat.authority.cell import Cell, verify_identity
    from ribat.device.client import connect

    if keeper_state() is not None:
        raise SimError("a virtual cell is already running: see `ribat sim cell status`")
    if not 1 <= per_partner <= MAX_PER_PARTNER:
        raise SimError(f"--nodes-per-partner must be 1 to {MAX_PER_PARTNER}")
    root = folder()
    plan_file = root / "cell.json"
    if plan_file.exists():
        before = json.loads(plan_file.read_text())
        if before["partners"] != partners or before["per_partner"] != per_partner:
            raise SimError(
                f"a virtual cell of {','.join(before['partners'])} "
                f"({before['per_partner']} per partner) exists: start that one, or erase it "
                "with `ribat sim cell stop --erase`"
            )
    root.mkdir(parents=True, exist_ok=True)
    adir = authority_dir()
    cell = Cell.open(adir) if (adir / "authority.pub").exists() else Cell.create(adir)
    members = node_names(partners, per_partner)
    for _, name in members:
        step(f"{name}: virtual Pico, firmware, keys")
    # Each board is a process of its own that mostly waits on its flash and its keys:
    # set up side by side, they take the time of one.
    with ThreadPoolExecutor(len(members)) as pool:
        docs = list(pool.map(lambda m: _setup_node(cell, m[0], m[1], pin, fast_link), members))
    release_key = adir / "release.key"
    if not release_key.exists():  # the cell's own, for a rollout: `ribat flash --bundle`
        from ribat.deploy import bundle

        cell.add_releaser("cell", bundle.new_key(release_key).hex())
    nodes = []
    for (partner, name), doc in zip(members, docs, strict=True):
        body = verify_identity(doc)
        if all(m["fp"] != body["fp"] for m in cell.roster["members"]):
            cell.add(doc)
        nodes.append({"name": name, "partner": partner, "fp": body["fp"]})
    step(f"roster version {cell.roster['version']} to every node")
    signed_roster = cell.signed_roster()
    for n in nodes:
        with connect(_device(n["name"])) as client:
            if guard.identity(client)["roster"] != cell.roster["version"]:
                guard.load_roster(client, signed_roster)
    plan = {"partners": partners, "per_partner": per_partner, "cell": str(adir),
            "interval": interval, "nodes": nodes}  # fmt: skip
    tmp = plan_file.with_suffix(".new")
    tmp.write_text(json.dumps(plan, indent=1))
    os.replace(tmp, plan_file)
    step("broker, fault proxy, gateways")
    sim.launch("ribat.simcell.keeper", root, [], root / "keeper.log",
               "the virtual cell's broker and gateways", START_TIMEOUT_S)  # fmt: skip
    return control({"op": "status"})


def _device(name: str) -> str:
    board = sim.find(name)
    if board is None:
        raise SimError(f"virtual board {name} is gone: `ribat sim cell stop --erase`, start again")
    return board.device


def control(request: dict) -> dict:
    """Send one request to the running keeper; its reply."""
    from ribat.simcell.keeper import control_address

    if keeper_state() is None:
        raise SimError("no virtual cell is running: start one with `ribat sim cell MA,FR,ES,BE`")
    return sim.ask(control_address(folder()), request, "virtual cell", CONTROL_TIMEOUT_S)


def node_of(target: str) -> str:
    """The name of the cell's node called target."""
    plan = _plan()
    names = [n["name"] for n in plan["nodes"]]
    if target not in names:
        raise SimError(f"no node {target!r} in the virtual cell: one of {', '.join(names)}")
    return target


def _plan() -> dict:
    try:
        return json.loads((folder() / "cell.json").read_text())
    except FileNotFoundError:
        raise SimError(
            "there is no virtual cell: make one with `ribat sim cell MA,FR,ES,BE`"
        ) from None


def stop(erase: bool = False) -> list[str]:
    """Stop the keeper (broker, gateways) and the cell's virtual boards; the boards'
    names. With erase, their flash, the authority and the plan go too."""
    state = keeper_state()
    if state is not None:
        control({"op": "stop"})
        deadline = time.monotonic() + 10
        while sim.alive(state["pid"]) and time.monotonic() < deadline:
            time.sleep(0.05)
    plan = _plan()
    names = [n["name"] for n in plan["nodes"]]
    for name in names:
        if sim.find(name) is not None:
            sim.stop(name, erase=erase)
    if erase:
        import shutil

        shutil.rmtree(folder())
    return names
