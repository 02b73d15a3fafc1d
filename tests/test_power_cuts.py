"""Power cuts at every point of a config save and across a deploy: afterwards the flash
mounts (never reformatted), the node boots and answers, the config is the old one or the
new one whole, the firmware the old build or the new one, and a new deploy completes.

The virtual board cuts the power after an armed number of flash writes (tearing that write
in half, as NOR flash is left by a real power loss) or of bytes from the host.
"""

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import FIRMWARE, sim_status
from ribat import deploy, sim
from ribat.device.client import NodeClient, connect
from ribat.device.transport import Port
from ribat.errors import RibatError

OLD = {"node.name": "old-name", "led.brightness": 10, "alert.min_severity": "priority"}
NEW = {"node.name": "new-name", "led.brightness": 90, "alert.min_severity": "flash"}
SWEEP_POINTS = 24  # cut points spread over a deploy


def arm_flash_cut(name: str, writes: int | None) -> None:
    sim.control(name, {"op": "cut_after_flash_writes", "n": writes})


def arm_byte_cut(name: str, n: int) -> None:
    sim.control(name, {"op": "cut_after_input_bytes", "n": n})


def cuts(name: str) -> int:
    return sim_status(name)["power_cuts"]


def set_config(tty: str, values: dict) -> None:
    with connect(tty) as client:
        client.request("config.set", set=values)


def read_config(tty: str) -> dict:
    with connect(tty) as client:
        values = client.request("config.get")["values"]
    return {key: values[key] for key in OLD}


def test_power_cut_at_every_flash_write_of_a_config_save(node: sim.Sim) -> None:
    formats = sim_status(node.name)["formats"]
    k = 0
    while True:
        set_config(node.device, OLD)
        before = cuts(node.name)
        arm_flash_cut(node.name, k)
        with NodeClient(Port(node.device)) as client:
            client.wait_ready()
            try:
                client.request("config.set", timeout=1.5, set=NEW)
            except RibatError:
                pass  # the node lost power before it could answer
        cut = cuts(node.name) > before
        arm_flash_cut(node.name, None)
        assert read_config(node.device) in (OLD, NEW), f"mixed config after a cut at write {k}"
        if not cut:
            break  # the save needed fewer than k writes: every one of them has been cut
        k += 1
    assert k >= 3, "a save that wrote almost nothing: the sweep tested nothing"
    assert read_config(node.device) == NEW
    assert sim_status(node.name)["formats"] == formats  # the flash always mounted


def changed_firmware(tmp_path: Path) -> Path:
    src = tmp_path / "new-fw"
    shutil.copytree(FIRMWARE, src)
    for module in ("app.py", "link.py", "telemetry.py"):
        with open(src / "ribat" / module, "a") as f:
            f.write("\nCHANGED = 1\n")
    return src


def build_of(tty: str) -> str | None:
    with connect(tty) as client:
        assert client.info is not None
        assert not client.info.fallback
        return client.info.build


def shipped_firmware_only(tty: str) -> str:
    """The shipped firmware active and the other slot gone: every iteration of a sweep
    starts from here, so each deploy writes the same. Its build."""
    result = deploy.deploy(tty)
    inactive = "b" if result.plan.slot == "a" else "a"
    done = subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", tty, "fs", "rm", "-r", f":fw/{inactive}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 or "No such file" in done.stdout + done.stderr, done.stderr
    return str(result.manifest["build"])


def sweep(name: str, tty: str, src: Path, arm, total: int) -> dict:
    """Deploy src over the shipped firmware again and again, cutting the power at points
    spread over `total` (flash writes or bytes the deploy took when measured): after every
    cut the node runs the old build or the new one, and a deploy the cut point did not
    reach has completed. Returns {cut point: build running after it}."""
    new = deploy.deploy(tty, source=src).manifest["build"]
    formats = sim_status(name)["formats"]
    # spread over the whole deploy, plus its very end, where the switch happens
    points = sorted(
        {total * i // SWEEP_POINTS for i in range(SWEEP_POINTS)}
        | {total - 3, total - 2, total - 1}
    )
    seen = {}
    for point in points:
        old = shipped_firmware_only(tty)
        before = cuts(name)
        arm(name, point)
        try:
            deploy.deploy(tty, source=src)
            completed = True
        except RibatError:
            completed = False  # cut: the deploy fails, as it must
        cut = cuts(name) > before
        arm_flash_cut(name, None)
        arm_byte_cut(name, -1)
        build = build_of(tty)
        assert cut or completed, f"a deploy failed with no power cut at {point} of {total}"
        assert build in (old, new), f"build {build} running after a cut at {point} of {total}"
        assert cut or build == new
        seen[point] = (cut, build == new)
    assert sim_status(name)["formats"] == formats  # the flash always mounted
    assert deploy.deploy(tty, source=src).manifest["build"] == build_of(tty) == new
    return seen


def measure(name: str, tty: str, src: Path, counter: str) -> int:
    """How many flash writes or input bytes a deploy of src over the shipped firmware takes."""
    shipped_firmware_only(tty)
    before = sim_status(name)[counter]
    deploy.deploy(tty, source=src)
    return int(sim_status(name)[counter] - before)


def test_power_cut_across_a_deploy_by_flash_writes(node: sim.Sim, tmp_path: Path) -> None:
    src = changed_firmware(tmp_path)
    writes = measure(node.name, node.device, src, "flash_writes")
    assert writes > SWEEP_POINTS
    seen = sweep(node.name, node.device, src, arm_flash_cut, writes)
    # one atomic switch: cut before it, the old build runs; after it (the new build's first
    # start writes its audit entries), the new one: never old again once new
    assert sum(cut for cut, _ in seen.values()) >= SWEEP_POINTS
    builds = [is_new for _, (cut, is_new) in sorted(seen.items()) if cut]
    assert builds == sorted(builds) and not builds[0]


def test_power_cut_across_a_deploy_by_bytes_from_the_host(node: sim.Sim, tmp_path: Path) -> None:
    src = changed_firmware(tmp_path)
    total = measure(node.name, node.device, src, "bytes_in")
    seen = sweep(node.name, node.device, src, arm_byte_cut, total)
    assert sum(cut for cut, _ in seen.values()) >= SWEEP_POINTS


def test_power_cut_during_the_first_deploy_leaves_a_reachable_board(board: sim.Sim) -> None:
    for point in (50, 400, 2000):
        arm_flash_cut(board.name, point)
        try:
            deploy.deploy(board.device)
        except RibatError:
            pass
        arm_flash_cut(board.name, None)
    deploy.deploy(board.device)
    assert build_of(board.device)
    assert sim_status(board.name)["formats"] == 1  # the first boot's, and no other
