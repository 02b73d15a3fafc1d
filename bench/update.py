"""Signed updates against today's REPL deploy, side by side on virtual Picos (their heap,
flash and link pace):

    .venv/bin/python bench/update.py [RUNS]

- transfer: the release's pack over the node's protocol (fw.put pieces), as bytes per
  second against the link's own pace (the board's link.bytes_per_s);
- offer: the fw.offer request (the release's signature checked on the node), here and
  scaled to an RP2040 the way bench/security.py scales (a pi-digits anchor run beside it);
- flash --bundle --confirm: the whole command, from start to a confirmed node;
- flash --bundle: the same, the node confirming itself (after 10 s of service);
- anchor: `ribat flash --source` of the same change onto an unprovisioned board through
  its REPL, the deploy a sealed node no longer takes.

Each RUNS times (default 3), the median printed. Printed, never asserted.
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import security  # the RP2040 scaling
from journal import node  # the bench's provisioned virtual Pico

from ribat import deploy, sim
from ribat.authority.cell import Cell
from ribat.deploy import bundle
from ribat.device import boards
from ribat.device.client import connect
from ribat.ops import guard

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
BOARD = "virtual-rp2-pico"


def changed_source(folder: Path, n: int) -> Path:
    source = folder / f"fw{n}"
    shutil.copytree(boards.firmware_dir(), source)
    with open(source / "ribat" / "link.py", "a") as f:
        f.write(f"\nRELEASE = {n}\n")
    return source


def ribat(*args: str) -> float:
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ribat", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"ribat {' '.join(args)} failed: {done.stderr}")
    return time.perf_counter() - t


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="ribat-bench-update-"))
    os.environ["RIBAT_HOME"] = str(home)
    cell = Cell.create(home / "cell")
    key = home / "release.key"
    cell.add_releaser("bench", bundle.new_key(key).hex())
    rabat = node("rabat", cell, "MA")
    with connect(rabat.device) as client:
        guard.load_roster(client, cell.signed_roster())
    bare = sim.start("bare", "pico")
    rate = boards.load(BOARD).link_bytes_per_s
    fmt = bundle.default_mpy()
    results: dict[str, list[float]] = {k: [] for k in ("put", "offer", "host", "self", "repl")}
    size = 0
    version = 1
    for run in range(RUNS):
        for how in ("steps", "host", "self"):
            version += 1
            src = changed_source(home, version)
            release = bundle.sign(bundle.build(f"0.{version}.0", [BOARD], [fmt], src), key)
            path = home / f"release-{version}.rbun"
            bundle.write(release, path)
            if how == "steps":
                # the protocol's steps, timed one by one (the product's own requests)
                pack = next(iter(release.packs.values()))
                size = len(pack)
                with connect(rabat.device) as client:
                    t = time.perf_counter()
                    client.exchange("fw.offer", release.header, 30.0)
                    results["offer"].append(time.perf_counter() - t)
                    assert client.info is not None
                    piece = client.info.max_frame - 160
                    t = time.perf_counter()
                    for at in range(0, size, piece):
                        client.exchange("fw.put", pack[at : at + piece], 10.0, offset=at)
                    results["put"].append(time.perf_counter() - t)
                ribat("flash", "--bundle", str(path), "-p", rabat.device, "--confirm")  # the rest
            elif how == "host":
                results["host"].append(ribat("flash", "--bundle", str(path), "-p",
                                             rabat.device, "--confirm"))  # fmt: skip
            else:
                results["self"].append(ribat("flash", "--bundle", str(path), "-p", rabat.device))
        # the anchor: the same kind of change through an unprovisioned board's REPL
        deploy.deploy(bare.device, source=changed_source(home, 1000 + run))
        results["repl"].append(ribat("flash", "-p", bare.device, "--source",
                                     str(changed_source(home, 2000 + run))))  # fmt: skip
    med = {k: statistics.median(v) for k, v in results.items()}
    anchor = security.run("anchor", security.PICO_HEAP, 10)
    verify = security.run("verification", security.PICO_HEAP, 5)
    assert anchor is not None and verify is not None
    rp2040_verify = verify["us"] / anchor["us"] * security.RP2040_ANCHOR_MS
    print(f"release pack: {size / 1024:.1f} KB for {BOARD}; medians of {RUNS} runs")
    print(
        f"transfer (fw.put)        {size / med['put'] / 1024:7.1f} KB/s  "
        f"(the link's pace: {rate / 1024:.0f} KB/s, {size / med['put'] / rate:.0%} of it)"
    )
    print(
        f"offer (signature check)  {med['offer'] * 1000:7.0f} ms here; the verification "
        f"alone about {rp2040_verify / 1000:.1f} s on an RP2040 (bench/security.py's scale)"
    )
    print(f"flash --bundle --confirm {med['host']:7.1f} s   (host confirms at first answer)")
    print(f"flash --bundle           {med['self']:7.1f} s   (the node confirms itself)")
    print(f"anchor: flash --source   {med['repl']:7.1f} s   (REPL deploy, unprovisioned board)")
    print(f"ratio bundle/REPL        {med['host'] / med['repl']:7.2f}x  (host-confirmed)")
    for board in (rabat, bare):
        sim.stop(board.name, erase=True)


if __name__ == "__main__":
    main()
