"""What keeps a virtual cell running once `ribat sim cell` has made its nodes: the local
broker (mosquitto, with the cell's ACL), the fault proxy in front of it (the broker every
gateway reaches, ribat.sim.faults), and one `ribat gateway` per node, restarted if it
exits as a site's service manager would. One detached process:

    python -m ribat.simcell.keeper CELL_DIR READY_FD

It reads CELL_DIR/cell.json (the plan ribat.sim.cell wrote), writes CELL_DIR/keeper.json
while it runs, and takes control requests on a Unix socket, one JSON object per
connection: status, partition, heal, faults, stop.
"""

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ribat.sim import paths
from ribat.simcell import broker as sim_broker
from ribat.simcell.faults import FaultProxy, Faults

RESTART_S = 1.0  # a gateway that exited is started again after this long
TICK_S = 0.5


def control_address(cell_dir: Path) -> str:
    return paths.control_address(cell_dir).replace("ribat-sim-", "ribat-cell-")


class Keeper:
    def __init__(self, cell_dir: Path) -> None:
        self.dir = cell_dir
        self.plan = json.loads((cell_dir / "cell.json").read_text())
        self.broker = sim_broker.start(cell_dir / "broker", acl=True)
        self.proxy = FaultProxy((self.broker.host, self.broker.port))
        self.gateways: dict[str, subprocess.Popen] = {}
        self.exited_at: dict[str, float] = {}
        self.restarts: dict[str, int] = {}
        (cell_dir / "gateways").mkdir(exist_ok=True)
        for node in self.plan["nodes"]:
            self._start_gateway(node["name"])
        self.running = True

    def _start_gateway(self, name: str) -> None:
        with open(self.dir / "gateways" / f"{name}.log", "ab") as log:
            self.gateways[name] = subprocess.Popen(
                [sys.executable, "-m", "ribat", "gateway", "-p", f"sim:{name}",
                 "--broker", self.proxy.url, "--interval", str(self.plan["interval"])],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip

    def _look_after_gateways(self) -> None:
        now = time.monotonic()
        for name, proc in self.gateways.items():
            if proc.poll() is None:
                continue
            since = self.exited_at.setdefault(name, now)
            if now - since >= RESTART_S:
                del self.exited_at[name]
                self.restarts[name] = self.restarts.get(name, 0) + 1
                self._start_gateway(name)

    def _fps(self, targets: list[str]) -> set[str]:
        """The fingerprints of the nodes named, or of every node of the partners named."""
        found = set()
        for target in targets:
            hits = [
                n["fp"]
                for n in self.plan["nodes"]
                if target in (n["name"], n["partner"], n["partner"].lower())
            ]
            if not hits:
                raise ValueError(f"no node or partner {target!r} in this cell")
            found.update(hits)
        return found

    def status(self) -> dict:
        cut = self.proxy.partitioned
        nodes = [
            {**n, "partitioned": n["fp"] in cut, "restarts": self.restarts.get(n["name"], 0),
             "gateway": "running" if self.gateways[n["name"]].poll() is None else "restarting"}
            for n in self.plan["nodes"]
        ]  # fmt: skip
        return {"broker": self.proxy.url, "direct": self.broker.url, "cell": self.plan["cell"],
                "nodes": nodes, **self.proxy.status()}  # fmt: skip

    def handle(self, request: dict) -> dict:
        op = request.get("op")
        if op == "status":
            return self.status()
        if op == "partition":
            self.proxy.partition(self._fps(request.get("targets") or []))
            return self.status()
        if op == "heal":
            targets = request.get("targets") or []
            self.proxy.heal(self._fps(targets) if targets else None)
            return self.status()
        if op == "faults":
            self.proxy.set_faults(Faults(**request.get("faults", {})))
            return self.status()
        if op == "stop":
            self.running = False
            return {"stopped": True}
        raise ValueError(f"unknown request {op!r}")

    def stop(self) -> None:
        for proc in self.gateways.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.gateways.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.proxy.close()
        self.broker.stop()


def _serve(keeper: Keeper, server: socket.socket) -> None:
    while keeper.running:
        if select.select([server], [], [], TICK_S)[0]:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(5)
                try:
                    request = json.loads(conn.makefile("rb").readline() or b"{}")
                    reply = keeper.handle(request)
                except (ValueError, TypeError) as e:
                    reply = {"error": str(e)}
                except OSError:
                    continue
                try:
                    conn.sendall(json.dumps(reply).encode() + b"\n")
                except OSError:
                    pass
        keeper._look_after_gateways()


def main(argv: list[str]) -> int:
    cell_dir, ready_fd = Path(argv[0]), int(argv[1])
    try:
        keeper = Keeper(cell_dir)
    except Exception as e:  # any cause: told to `ribat sim cell`, which is waiting
        os.write(ready_fd, json.dumps({"error": str(e)}).encode() + b"\n")
        return 1
    signal.signal(signal.SIGTERM, lambda *_: setattr(keeper, "running", False))
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(control_address(cell_dir))
    server.listen(8)
    state = {"pid": os.getpid(), "broker": keeper.proxy.url, "direct": keeper.broker.url}
    (cell_dir / "keeper.json").write_text(json.dumps(state))
    os.write(ready_fd, json.dumps(state).encode() + b"\n")
    os.close(ready_fd)
    try:
        _serve(keeper, server)
    finally:
        keeper.stop()
        server.close()
        (cell_dir / "keeper.json").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
