"""The virtual board's `machine`: the unix port's built-in module plus what a board has and
the unix port lacks (reset, reset_cause, unique_id), so board code and tools such as
`mpremote reset` work unchanged. Imported by _boot.py before the flash hides the ROM.
"""

import vboard
from umachine import *  # noqa: F403

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

_CAUSES = {"power_on": PWRON_RESET, "hard": HARD_RESET, "watchdog": WDT_RESET}


def reset() -> None:
    vboard.hard_reset()


def reset_cause() -> int:
    return _CAUSES.get(vboard.RESET_CAUSE, HARD_RESET)


def unique_id() -> bytes:
    return vboard.UID


class WDT:
    """The watchdog: once made, it cannot be stopped; a board not fed within timeout ms is
    reset by the simulator (vboard's panel), as an RP2040's or an ESP32's would be."""

    def __init__(self, id: int = 0, timeout: int = 5000) -> None:
        vboard.arm_watchdog(timeout)

    def feed(self) -> None:
        vboard.feed_watchdog()
