"""ribat against its anchors, side by side in one run on the same virtual board.

    python bench/deploy_vs_mpremote.py [--rounds N] [--json FILE]

Measures, each as the median of N rounds with the two tools interleaved:
- full deploy: `ribat flash` onto a board without firmware, against `mpremote fs cp -r` of
  the same firmware tree (the sources, the loader, the hardware layer and board facts),
  each onto the board just erased (`ribat sim stop --erase`, untimed);
- no-change redeploy: the same two commands again with nothing changed;
- one module changed: `ribat flash --source` of the tree with one line added to a module,
  against the same `mpremote fs cp -r` (which sends only the files whose hash differs);
- command round trip: `ribat config get` as a user runs it, and one request in a session;
- start-up: `ribat --help` against `mpremote --help`;
- heap: what the running node uses on each virtual board, at that board's heap size;
- telemetry: frames received and lost at 100 ms for a few seconds.

Times are wall clock of whole commands, Python start-up included for both tools. Ratios
are anchor / ribat: above 1, ribat is faster.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ribat import sim
from ribat.device import boards
from ribat.device.client import NodeClient, connect
from ribat.device.transport import Port
from ribat.errors import DeployError
from ribat.ops.telemetry import LossCounter

ROOT = Path(__file__).resolve().parents[1]


def timed(*cmd: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")
    return took


def mpremote(tty: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "mpremote", "connect", tty, *args]


def ribat(*args: str) -> list[str]:
    return [sys.executable, "-m", "ribat", *args]


def source_tree(dest: Path, board: boards.Board) -> Path:
    """The firmware as mpremote users would copy it: sources, loader, hardware layer."""
    tree = dest / "fw"
    shutil.copytree(boards.firmware_dir(), tree, ignore=shutil.ignore_patterns("*.ini", "__py*"))
    shutil.copy(board.hal_file(), tree / "hal.py")
    (tree / "board.json").write_text(json.dumps(board.facts))
    return tree


def bytes_in(name: str) -> int:
    return int(sim.control(name, {"op": "status"})["bytes_in"])


def bare(name: str, board: str) -> sim.Sim:
    """The same virtual board with its flash erased: a board with nothing on it."""
    sim.stop(name, erase=True)
    return sim.start(name, board)


def deploy_bench(name: str, board: str, tree: Path, rounds: int) -> dict:
    port = f"sim:{name}"
    results: dict[str, list[float]] = {
        k: []
        for k in (
            "ribat_full", "mpremote_full", "ribat_same", "mpremote_same", "ribat_one",
            "mpremote_one",
        )
    }  # fmt: skip
    wire: dict[str, int] = {}
    changes = 0

    def change_one_module() -> None:
        nonlocal changes
        changes += 1
        with open(tree / "ribat" / "telemetry.py", "a") as f:
            f.write(f"\nCHANGED_{changes} = 1\n")

    for _ in range(rounds):
        bare(name, board)
        before = bytes_in(name)
        results["ribat_full"].append(timed(*ribat("flash", "--port", port)))
        wire["ribat_full"] = bytes_in(name) - before
        before = bytes_in(name)
        results["ribat_same"].append(timed(*ribat("flash", "--port", port)))
        wire["ribat_same"] = bytes_in(name) - before
        change_one_module()
        before = bytes_in(name)
        results["ribat_one"].append(timed(*ribat("flash", "--port", port, "--source", str(tree))))
        wire["ribat_one"] = bytes_in(name) - before

        device = bare(name, board).device
        before = bytes_in(name)
        results["mpremote_full"].append(timed(*mpremote(device, "fs", "cp", "-r", str(tree), ":")))
        wire["mpremote_full"] = bytes_in(name) - before
        before = bytes_in(name)
        results["mpremote_same"].append(timed(*mpremote(device, "fs", "cp", "-r", str(tree), ":")))
        wire["mpremote_same"] = bytes_in(name) - before
        change_one_module()
        before = bytes_in(name)
        results["mpremote_one"].append(timed(*mpremote(device, "fs", "cp", "-r", str(tree), ":")))
        wire["mpremote_one"] = bytes_in(name) - before
    med = {k: statistics.median(v) for k, v in results.items()}
    return {
        "seconds": med,
        "wire_bytes": wire,
        "full_ratio": med["mpremote_full"] / med["ribat_full"],
        "same_ratio": med["mpremote_same"] / med["ribat_same"],
        "one_ratio": med["mpremote_one"] / med["ribat_one"],
    }


def round_trip(s: sim.Sim, rounds: int) -> dict:
    timed(*ribat("flash", "--port", f"sim:{s.name}"))
    cli = [
        timed(*ribat("config", "get", "node.name", "--port", f"sim:{s.name}"))
        for _ in range(rounds)
    ]
    with connect(s.device) as client:
        pings = []
        for _ in range(200):
            start = time.perf_counter()
            client.request("ping")
            pings.append(time.perf_counter() - start)
    return {
        "cli_config_get_s": statistics.median(cli),
        "request_ms": statistics.median(pings) * 1000,
    }


# What each command imports before it says a word: its cli module and what that needs.
COMMAND_IMPORTS = {
    "--help": "ribat.cli",
    "config get": "ribat.cli, ribat.cli.config, ribat.ops.config, ribat.device.client, "
    "ribat.ports",
    "status": "ribat.cli, ribat.cli.node, ribat.device.client, ribat.ports, rich.console",
    "post": "ribat.cli, ribat.cli.journal, ribat.ops.journal, ribat.ops.guard, ribat.ports",
    "sim start": "ribat.cli, ribat.cli.sim, ribat.sim, ribat.device.boards, rich.table",
}


def startup(rounds: int) -> dict:
    """Whole `--help` against mpremote's; per command, the time its imports take over a
    bare interpreter's start (python -X importtime shows which module costs what)."""

    def median(*cmd: str) -> float:
        return statistics.median(timed(*cmd) for _ in range(rounds))

    ours = median(*ribat("--help"))
    anchor = median(sys.executable, "-m", "mpremote", "--help")
    bare = median(sys.executable, "-c", "pass")
    imports = {
        command: median(sys.executable, "-c", f"import {modules}") - bare
        for command, modules in COMMAND_IMPORTS.items()
    }
    return {
        "ribat_help_s": ours,
        "mpremote_help_s": anchor,
        "ratio": anchor / ours,
        "python_s": bare,
        "click_import_s": median(sys.executable, "-c", "import click") - bare,
        "imports_s": imports,
    }


def heap() -> dict:
    from ribat import deploy

    found = {}
    for short, name in boards.virtual_names().items():
        s = sim.start(f"bench-heap-{short}", short)
        try:
            deploy.deploy(s.device)
            with connect(s.device) as client:
                status = client.request("status")
            found[name] = {
                "heap_bytes": boards.load(name).heap_bytes,
                "used": status["heap_used"],
                "free": status["heap_free"],
            }
        except DeployError as e:  # the node does not start in that heap: said, not hidden
            found[name] = {"heap_bytes": boards.load(name).heap_bytes, "error": str(e)}
        finally:
            sim.stop(s.name, erase=True)
    return found


def telemetry(s: sim.Sim, seconds: float) -> dict:
    """Frames received and lost at a 100 ms interval, timed from the first such frame."""
    with NodeClient(Port(s.device)) as client:
        client.wait_ready()
        client.request("config.set", set={"telemetry.interval_ms": 100})
        losses = LossCounter()
        first = 0.0
        while not first or time.monotonic() < first + seconds:
            event = client.next_event(2.0)
            if not event or event.get("event") != "telemetry":
                continue
            first = first or time.monotonic()  # the old 1 s interval may sleep until now
            losses.see(event["seq"])
        took = time.monotonic() - first
        client.request("config.set", set={"telemetry.interval_ms": 1000})
    return {"frames": losses.received, "lost": losses.lost, "per_s": (losses.received - 1) / took}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--board",
        choices=[b for b in sorted(boards.virtual_names()) if b != "esp32"],  # (a node: not there)
        default="pico",
        help="virtual board to measure on (its link's rate and latency)",
    )
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["RIBAT_HOME"] = str(Path(tmp) / "home")
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")
        sim.start("bench", args.board)
        try:
            tree = source_tree(Path(tmp), boards.load(boards.virtual_names()[args.board]))
            deployed = deploy_bench("bench", args.board, tree, args.rounds)
            s = bare("bench", args.board)
            report = {
                "deploy": deployed,
                "round_trip": round_trip(s, args.rounds),
                "startup": startup(args.rounds * 2),
                "telemetry_100ms": telemetry(s, 5.0),
                "heap": heap(),
            }
        finally:
            sim.stop("bench", erase=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    show(report, args.rounds, args.board)


def show(r: dict, rounds: int, board: str) -> None:
    d = r["deploy"]
    sec, wire = d["seconds"], d["wire_bytes"]
    print(f"ribat bench: medians of {rounds} rounds on one virtual {board} (anchor / ribat)")
    print(
        f"  full deploy      ribat {sec['ribat_full']:.3f} s ({wire['ribat_full']} B sent)  "
        f"mpremote cp -r {sec['mpremote_full']:.3f} s ({wire['mpremote_full']} B)  "
        f"ratio {d['full_ratio']:.2f}x"
    )
    print(
        f"  no-change again  ribat {sec['ribat_same']:.3f} s ({wire['ribat_same']} B sent)  "
        f"mpremote cp -r {sec['mpremote_same']:.3f} s ({wire['mpremote_same']} B)  "
        f"ratio {d['same_ratio']:.2f}x"
    )
    print(
        f"  one module       ribat {sec['ribat_one']:.3f} s ({wire['ribat_one']} B sent)  "
        f"mpremote cp -r {sec['mpremote_one']:.3f} s ({wire['mpremote_one']} B)  "
        f"ratio {d['one_ratio']:.2f}x"
    )
    rt = r["round_trip"]
    print(
        f"  round trip       `ribat config get` {rt['cli_config_get_s'] * 1000:.0f} ms; "
        f"one request in a session {rt['request_ms']:.2f} ms"
    )
    st = r["startup"]
    print(
        f"  start-up         `ribat --help` {st['ribat_help_s'] * 1000:.0f} ms; "
        f"`mpremote --help` {st['mpremote_help_s'] * 1000:.0f} ms; ratio {st['ratio']:.2f}x"
    )
    print(
        f"  imports          over a bare python start ({st['python_s'] * 1000:.0f} ms; "
        f"click alone {st['click_import_s'] * 1000:.0f} ms): "
        + ", ".join(f"{c} {s * 1000:.0f} ms" for c, s in st["imports_s"].items())
    )
    t = r["telemetry_100ms"]
    print(f"  telemetry 100 ms {t['frames']} frames, {t['per_s']:.1f}/s, {t['lost']} lost")
    for name, h in r["heap"].items():
        if "error" in h:
            print(f"  heap {name:22} does not start: {h['error']}")
            continue
        print(
            f"  heap {name:22} {h['used'] / 1024:.1f} KB used, {h['free'] / 1024:.1f} KB free "
            f"of {h['heap_bytes'] / 1024:.0f} KB"
        )


if __name__ == "__main__":
    main()
