"""A local MQTT broker for virtual cells, benches and tests: the distribution's mosquitto,
on loopback, on a free port, with the cell's ACL or none.

The ACL is the one a cell's real broker should run (docs/security.md, replication): a
gateway connects with its node's fingerprint as user name and may publish only under its
own node's topics; everyone may read the cell's topics.
"""

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ribat.errors import SimError

ACL = (
    "pattern write ribat/+/summary/%u\n"
    "pattern write ribat/+/entry/%u/#\n"
    "pattern write ribat/+/telemetry/%u\n"
    "pattern read ribat/#\n"
)
START_TIMEOUT_S = 10.0


@dataclass
class Broker:
    host: str
    port: int
    proc: subprocess.Popen
    folder: Path

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def binary() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and os.path.exists(candidate):
            return candidate
    raise SimError("mosquitto is not installed: `apt-get install mosquitto` (make test does)")


def start(folder: Path, acl: bool = True, port: int = 0) -> Broker:
    """Start mosquitto on 127.0.0.1 (on port, or a free one) with its files in folder;
    once it accepts connections."""
    if not port:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false"]
    if os.geteuid() == 0:
        lines.append("user root")  # else it drops to 'mosquitto', who may not read folder
    if acl:
        (folder / "acl").write_text(ACL)
        lines.append(f"acl_file {folder / 'acl'}")
    conf = folder / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    log_path = folder / "mosquitto.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([binary(), "-c", str(conf)], stdout=log, stderr=log)
    broker = Broker("127.0.0.1", port, proc, folder)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            socket.create_connection((broker.host, port), timeout=0.5).close()
            return broker
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                broker.stop()
                said = log_path.read_text().strip()
                raise SimError(f"mosquitto did not start: {said}") from None
            time.sleep(0.05)
