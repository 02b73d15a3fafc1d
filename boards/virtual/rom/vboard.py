"""The virtual board's peripherals, as its ROM provides them (MicroPython, unix port).

The simulator (host/ribat/sim/supervisor.py) starts the interpreter with the board's
identity in environment variables and shares a small "panel" file with it:

    offset 0  u32  flash writes to let through before a power cut (0xFFFFFFFF: none armed);
                   counted down here, so it survives the resets on the way
    offset 4  u32  flash writes (program or erase) since the simulator started
    offset 8  u8   1 while the virtual button is held
    offset 12 u8   LED level in percent, written here for the simulator to show
    offset 16 u8   1 while a host holds the serial port open
    offset 20 u8   1 while the buzzer sounds
    offset 24 u32  LED changes (on to off, off to on, or a new level) since the start
    offset 28 u32  times the buzzer started to sound since the start
    offset 32 u32  the watchdog's timeout in ms once armed (machine.WDT), 0 if not
    offset 36 u32  the watchdog's feeds: the simulator resets a board whose count stands
                   still for the timeout (reset cause "watchdog"), and disarms it at reset
    offset 40 u32  seconds the board's clock is ahead of its host's (time.py in this ROM):
                   moved forward by the node (Board.set_clock) or by `ribat sim clock`

Messages to the simulator go to a pipe of their own as lines b"\\x00ribat-sim <word>"
(stderr is the serial link's, as on a board).
"""

import os
import struct
import time

BOARD = os.getenv("RIBAT_SIM_BOARD") or "virtual"
RESET_CAUSE = os.getenv("RIBAT_SIM_RESET_CAUSE") or "power_on"
UID = bytes.fromhex(os.getenv("RIBAT_SIM_UID") or "00")

_panel = open(os.getenv("RIBAT_SIM_PANEL") or "/dev/null", "r+b")
_word = bytearray(4)
# The board's UARTs to peer nodes: pseudo-terminals the simulator carries to the other
# boards' (see host/ribat/sim/wire.py). Opened now, before the flash is mounted over /.
wires = [open(p, "r+b") for p in (os.getenv("RIBAT_SIM_WIRES") or "").split(":") if p]
# The keys' own flash blocks after littlefs's (a vflash.Flash, set by _boot.py), or None.
vault: object = None
# The host's CPU sensor where it has one; opened now, as the flash will soon be mounted at /.
try:
    _thermal = open("/sys/class/thermal/thermal_zone0/temp", "rb")
except OSError:
    _thermal = None


# The simulator's pipe for reports (opened now, before the flash is mounted over /);
# stderr is the serial link's, as on a board
_reports = open(os.getenv("RIBAT_SIM_REPORTS") or "/dev/null", "w")


def report(word: str) -> None:
    _reports.write("\x00ribat-sim " + word + "\n")  # (unbuffered: a flush would fsync a pipe)


def halt() -> None:
    """Wait for the simulator to cut the power; it does so as soon as it reads our report."""
    while True:
        time.sleep_ms(1000)


def panel_u32(offset: int) -> int:
    _panel.seek(offset)
    _panel.readinto(_word)
    return struct.unpack("<I", _word)[0]


def set_panel_u32(offset: int, value: int) -> None:
    _panel.seek(offset)
    _panel.write(struct.pack("<I", value))


def button() -> bool:
    return panel_u32(8) & 0xFF == 1


def host_present() -> bool:
    return panel_u32(16) & 0xFF == 1


def set_led(percent: int) -> None:
    _panel.seek(12)
    _panel.write(bytes((percent,)))
    set_panel_u32(24, panel_u32(24) + 1)


def arm_watchdog(timeout_ms: int) -> None:
    set_panel_u32(32, timeout_ms)
    feed_watchdog()


def feed_watchdog() -> None:
    set_panel_u32(36, (panel_u32(36) + 1) & 0xFFFFFFFF)


def set_buzzer(on: bool) -> None:
    _panel.seek(20)
    _panel.write(bytes((1 if on else 0,)))
    if on:
        set_panel_u32(28, panel_u32(28) + 1)


def temperature_c() -> "float | None":
    if _thermal is None:
        return None
    _thermal.seek(0)
    return int(_thermal.read()) / 1000


def hard_reset() -> None:
    report("hard-reset")
    halt()


def soft_reset() -> None:
    """A soft reset from running code. The unix port, started with -i, would take the
    SystemExit of machine.soft_reset() to its REPL instead of exiting: so the simulator
    ends this run and starts the next, as a board restarts MicroPython."""
    report("soft-reset")
    halt()


def clock_ahead() -> int:
    """Seconds the board's clock runs ahead of the host's (offset 40)."""
    return panel_u32(40)
