"""A signed release onto a node, over its own protocol (no REPL), resumable; and onto
several nodes, one at a time, each confirmed before the next (the node's side, and the
trial that follows: firmware/ribat/update.py).

1. offer: the node checks the release's header (signer in its roster, a build for its
   board, newer than what it runs and ever confirmed) and says how much of the pack it
   has already: a transfer cut anywhere (power, cable, Ctrl-C) goes on from there;
2. put: the rest of the pack, in pieces that fit its frames;
3. commit: the node checks the whole pack's hash, puts the new slot on trial, makes it
   active and restarts;
4. confirm: the node confirms the build itself once it has run for a while (or the host
   does, `confirm=True`, once the build answers); a build that does not confirm within its
   starts gives way to the one it replaced, and that is an error here.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

from ribat.deploy.bundle import Bundle
from ribat.deploy.image import MpyFormat
from ribat.deploy.writer import Progress, Step
from ribat.device.client import NodeClient, NodeInfo
from ribat.device.transport import Port
from ribat.errors import BoardRestarted, DeployError, NoAnswer, PortGone

OFFER_TIMEOUT_S = 30.0  # a signature checked: some 1.5 s on an RP2040, more under load
PUT_TIMEOUT_S = 10.0
COMMIT_TIMEOUT_S = 30.0  # the pack hashed, a few files written
START_TIMEOUT_S = 20.0  # from the commit's restart to the new build's first answer
SELF_CONFIRM_S = 10.0  # a build on trial confirms itself after running this long (app.py)
POLL_S = 0.5
RESUMES = 5  # transfers taken up again within one run after the node restarted
_FRAME_SPARE = 160


@dataclass
class Outcome:
    path: str
    version: str
    previous: str
    sent_bytes: int  # of the pack: less than its size when a transfer resumed
    resumed_at: int  # what the node had of the pack when this run began
    seconds: float
    confirmed_by: str  # "node" or "host"


def send(
    path: str,
    bundle: Bundle,
    confirm: bool = False,
    progress: Progress = lambda done, total: None,
    step: Step = lambda message: None,
) -> Outcome:
    """The release in bundle onto the node on path, confirmed (see the module)."""
    started = time.monotonic()
    with Port(path) as port:
        client = NodeClient(port)
        info = client.wait_ready()
        previous = info.firmware
        step(f"{path} runs {previous} ({info.board}); offering release {bundle.version}")
        target = bundle.target(info.board, str(MpyFormat.from_sys(info.mpy)))
        if target is None:
            raise DeployError(
                f"release {bundle.version} has no build for {info.board} with .mpy "
                f"v{MpyFormat.from_sys(info.mpy)}: build it with --board {info.board}"
            )
        pack = bundle.packs[(target["board"], target["mpy"])]
        sent, resumed_at = 0, -1
        for attempt in range(RESUMES + 1):
            try:
                have = client.exchange("fw.offer", bundle.header, OFFER_TIMEOUT_S)[0]["have"]
                resumed_at = have if resumed_at < 0 else resumed_at
                if have:
                    step(f"the node has {have} of {len(pack)} bytes already: resuming there")
                piece = max(64, info.max_frame - _FRAME_SPARE)
                while have < len(pack):
                    chunk = pack[have : have + piece]
                    have = client.exchange("fw.put", chunk, PUT_TIMEOUT_S, offset=have)[0]["have"]
                    sent += len(chunk)
                    progress(have, len(pack))
                step(f"{len(pack)} bytes on the node: checking and switching")
                client.request("fw.commit", timeout=COMMIT_TIMEOUT_S)
                break
            except (BoardRestarted, NoAnswer) as e:
                if attempt == RESUMES:
                    raise
                step(f"the transfer stopped ({e}): taking it up again")
                info = client.wait_ready(START_TIMEOUT_S)
        by = _until_confirmed(client, info, bundle.version, confirm, step)
    return Outcome(path, bundle.version, previous, sent, max(0, resumed_at),
                   time.monotonic() - started, by)  # fmt: skip


def _until_confirmed(
    client: NodeClient, before: NodeInfo, version: str, confirm: bool, step: Step
) -> str:
    step(f"waiting for release {version} to start")
    info = client.wait_ready(START_TIMEOUT_S, not_boot=before.boot)
    deadline = time.monotonic() + (SELF_CONFIRM_S + START_TIMEOUT_S) * 4
    said = None
    while True:
        if info.firmware != version:
            raise DeployError(_went_back(client.port.name, version, info))
        if info.trial is None:
            return "node"
        if confirm:
            client.request("fw.confirm")
            return "host"
        if time.monotonic() > deadline:
            raise DeployError(
                f"release {version} runs on {client.port.name} on trial, unconfirmed: "
                "confirm it with `ribat flash --confirm`, or let it go back"
            )
        if info.trial != said:
            step(
                f"release {version} runs on trial (start {info.trial}): waiting for it to confirm"
            )
            said = info.trial
        time.sleep(POLL_S)
        try:
            info = client.wait_ready(START_TIMEOUT_S)
        except PortGone:
            info = client.wait_ready(START_TIMEOUT_S)


def _went_back(path: str, version: str, info: NodeInfo) -> str:
    r = info.reverted or {}
    if r.get("version") == version:
        return (
            f"release {version} did not confirm on {path} within {r.get('starts')} starts: "
            f"the node went back to {info.firmware} by itself (see `ribat audit show`)"
        )
    return f"release {version} is not running on {path}: it runs {info.firmware}"


def confirm_running(path: str) -> NodeInfo:
    """Confirm the release on trial on the node on path; its info (trial None if it was)."""
    with Port(path) as port:
        client = NodeClient(port)
        info = client.wait_ready()
        if info.trial is not None:
            client.request("fw.confirm")
            info = client.hello()
        return info


def rollout(
    paths: list[str],
    bundle: Bundle,
    confirm: bool = False,
    progress: Progress = lambda done, total: None,
    step: Step = lambda message: None,
    done: Callable[[Outcome], None] = lambda outcome: None,
) -> list[Outcome]:
    """The release onto each node in turn, each confirmed before the next; the first
    failure stops the rollout (the nodes after it keep what they run)."""
    outcomes = []
    for path in paths:
        outcome = send(path, bundle, confirm, progress, step)
        done(outcome)
        outcomes.append(outcome)
    return outcomes
