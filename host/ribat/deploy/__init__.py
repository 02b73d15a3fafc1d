"""Deploying the firmware onto a board that runs MicroPython, over its raw REPL.

The node keeps two firmware slots, /fw/a and /fw/b; /fw/active names the one main.py runs.
A deploy writes the slot that is not active, so whatever happens to it the board still
boots what it booted before:

1. probe: one exec reports the board's MicroPython and the hash of every file it holds;
2. plan: a slot holds two files, the modules' pack and the manifest (ribat.firmware); a
   file already in the target slot with the right hash stays, one in the active slot is
   copied on the board, only the rest crosses the link; a new pack is built on the board
   from the files of the active slot's pack it shares (the probe hashes each) and the
   others, sent; stale files go;
3. write: the target slot loses its manifest first (an incomplete slot never runs) and
   the old versions of the files it gets, then files are written in batched execs and
   each is read back and hashed on the board;
4. commit: the manifest is written, then /fw/active is switched by a rename: the single
   atomic step; main.py is replaced after it, if it changed;
5. restart: a soft reset starts the new firmware, and we wait for it to answer.

Before all this, a running node that reports the same build is asked to hash its own
files (fw.verify, over the protocol): if they all match there is nothing to do, and
nothing is touched, not even a restart. And nothing is written to a flash that has no
room for the new slot.
"""

import time
from dataclasses import dataclass
from pathlib import Path

from ribat.deploy.image import Image, MpyFormat, build, sha256
from ribat.deploy.plan import Plan, check_board, check_space, make_plan
from ribat.deploy.writer import VERIFY_TIMEOUT_S, Deployer, Progress, Step
from ribat.device import boards
from ribat.device.client import HELLO_TIMEOUT_S, NodeClient
from ribat.device.transport import Port, named
from ribat.digest import files_digest
from ribat.errors import DeployError, NoAnswer, RibatError, Sealed
from ribat.ops import guard


@dataclass
class Result:
    plan: Plan
    board: boards.Board
    manifest: dict  # of the firmware deployed
    sent_bytes: int
    seconds: float

    @property
    def firmware(self) -> str:
        m = self.manifest
        return f"{m['firmware']} ({m['revision']}, build {m['build']})"


def _unchanged(
    client: NodeClient, board_name: str | None, source: Path | None, step: Step
) -> tuple[boards.Board, Image, str] | None:
    """The fast path: a running node that already has exactly this firmware, every file's
    hash checked by the node itself. (board, image, slot) if so, None to deploy."""
    try:
        info = client.hello(timeout=HELLO_TIMEOUT_S)
        board = boards.load(board_name or info.board)
        # the build id names the files alone: the node's revision is the one to report
        image = build(board, MpyFormat.from_sys(info.mpy), source, info.revision or "")
        if info.build != image.manifest["build"] or info.board != board.name:
            return None
        step(f"{client.port.name} runs build {info.build}: verifying its files")
        verified = client.request("fw.verify", timeout=VERIFY_TIMEOUT_S)
    except RibatError:
        return None  # no node, an old one, another board: deploy through the REPL
    if (verified["digest"], verified["loader"]) != (
        files_digest(image.hashes),
        sha256(image.loader),
    ):
        return None
    return board, image, verified["slot"]


def _refuse_sealed(client: NodeClient) -> None:
    """A provisioned node is sealed: no REPL, its firmware changes by signed releases only."""
    if client.info is None:
        return
    try:
        state = guard.identity(client)["state"]
    except RibatError:
        return
    if state != "unprovisioned":
        raise Sealed(
            f"{client.port.name} is a provisioned node: it takes signed releases only "
            "(`ribat release build` and `sign`, then `ribat flash --bundle FILE`), or a "
            "deploy once wiped"
        )


def _emulated_board(path: str) -> str | None:
    """The board of an emulated chip on path (sim:NAME): its firmware reports itself as
    the real board, and the board it is (ribat.sim.chip) is known to the host alone."""
    name = named(path)
    if not name.startswith("sim:"):
        return None
    from ribat import sim

    found = sim.find(name[4:])
    if found is None or not boards.load(found.board).engine:
        return None
    return found.board


def deploy(
    path: str,
    board_name: str | None = None,
    source: Path | None = None,
    dry_run: bool = False,
    progress: Progress = lambda done, total: None,
    step: Step = lambda message: None,
) -> Result:
    """Deploy the firmware to the board on path; see the module's docstring. A provisioned
    node is refused (Sealed): it takes signed releases only (ribat.deploy.update)."""
    started = time.monotonic()
    board_name = board_name or _emulated_board(path)
    # One port from probe to the node's first answer: a board's output while no host has
    # its port open is lost, and what it prints as it restarts is the best diagnosis.
    with Port(path) as port:
        client = NodeClient(port)
        unchanged = _unchanged(client, board_name, source, step)
        if unchanged is not None:
            board, image, slot = unchanged
            plan = Plan(slot=slot, keep=sorted(image.hashes))
            return Result(plan, board, image.manifest, 0, time.monotonic() - started)
        _refuse_sealed(client)
        deployer = Deployer(port)
        try:
            step(f"probing {named(path)}")
            report = deployer.probe()
            board = check_board(report, board_name, named(path))
            step(
                f"building firmware for {board.name} (MicroPython {report.micropython}, "
                f".mpy v{report.mpy})"
            )
            image = build(board, report.mpy, source)
            plan = make_plan(report, image)
            check_space(report, plan, image, board)
            sent = 0 if dry_run else deployer.apply(plan, image, progress, step)
            deployer.restart()  # the new firmware if switched, the one it had otherwise
        except BaseException:
            deployer.recover()
            raise
        if dry_run:
            return Result(plan, board, image.manifest, 0, time.monotonic() - started)
        step("waiting for the node to start")
        client = NodeClient(port)
        try:
            info = client.wait_ready()
        except NoAnswer:
            said = client.boot_words()
            raise DeployError(
                f"the firmware was written but the node on {named(path)} does not answer"
                + (f" (it said: {said})" if said else "")
                + f": see its output with `mpremote connect {path} repl`, or deploy again"
            ) from None
    if info.build != image.manifest["build"]:
        if b"a build this node replaced" in bytes(client.text):
            raise DeployError(
                f"the node runs build {info.build} from slot {info.slot}: build "
                f"{image.manifest['build']} is one it ran and replaced before, and a "
                "provisioned node never goes back: deploy a newer build"
            )
        raise DeployError(
            f"the node runs build {info.build} from slot {info.slot}, not the build "
            f"{image.manifest['build']} just written: deploy again, and if this repeats, "
            "report it with the output of `ribat --debug flash`"
        )
    return Result(plan, board, image.manifest, sent, time.monotonic() - started)
