"""Finding boards: USB serial ports that may be MicroPython boards, and virtual boards.

A port is named by its device path, or as sim:NAME for a virtual board.
"""

import os
from dataclasses import dataclass

from ribat import sim
from ribat.device import transport
from ribat.errors import NoBoard, SeveralBoards

# USB vendor ids of MicroPython boards and of the USB-UART bridges on ESP32 dev kits.
KNOWN_VIDS = {
    0x2E8A: "Raspberry Pi",
    0x303A: "Espressif",
    0xF055: "MicroPython",
    0x10C4: "Silicon Labs CP210x",
    0x1A86: "QinHeng CH340/CH9102",
    0x0403: "FTDI",
}


@dataclass
class Candidate:
    port: str  # device path
    label: str  # what it is: "virtual-rp2-pico", "Raspberry Pi 2e8a:0005"...
    sim_name: str | None = None

    @property
    def name(self) -> str:
        """The port as a user gives it to --port: sim:NAME for a virtual board."""
        return f"sim:{self.sim_name}" if self.sim_name else self.port


def serial_candidates() -> list[Candidate]:
    """USB serial ports whose vendor makes MicroPython boards or the bridges on them."""
    from serial.tools import list_ports

    found = []
    for info in list_ports.comports():
        if info.vid in KNOWN_VIDS:
            label = f"{KNOWN_VIDS[info.vid]} {info.vid:04x}:{info.pid:04x}"
            if info.serial_number:
                label += f" #{info.serial_number}"
            found.append(Candidate(info.device, label))
    return found


def sim_candidates() -> list[Candidate]:
    return [Candidate(s.tty, s.board, s.name) for s in sim.list_sims() if s.running and s.tty]


def candidates() -> list[Candidate]:
    return serial_candidates() + sim_candidates()


def resolve(port: str | None) -> str:
    """The device path for --port (a path or sim:NAME), or the only board there is."""
    port = port or os.environ.get("RIBAT_PORT") or None
    if port:
        if port.startswith("sim:"):
            name = port[4:]
            virtual = sim.find(name)
            if virtual is None:
                raise NoBoard(f"no virtual board named {name}: see `ribat sim list`")
            if virtual.tty is None:
                raise NoBoard(
                    f"virtual board {name} is stopped: start it with "
                    f"`ribat sim start --name {name}`"
                )
            transport.NAMES[virtual.tty] = port  # messages name it as the user did
            transport.SLOWNESS[virtual.tty] = sim.slowness(virtual.board)
            return virtual.tty
        return port
    found = candidates()
    if not found:
        raise NoBoard("no board found: plug one in, or start a virtual one with `ribat sim start`")
    if len(found) > 1:
        listing = ", ".join(f"{c.name} [{c.label}]" for c in found)
        raise SeveralBoards(f"{len(found)} boards found ({listing}): choose one with --port")
    if found[0].sim_name:
        return resolve(found[0].name)  # as if named: what the host knows of it, kept
    return found[0].port
