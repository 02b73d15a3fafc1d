"""The board's clock: the host's, plus what the panel says it runs ahead (vboard, offset
40). In a folder of its own, first on the ROM's path (_boot.py): MicroPython lets a module
there extend its built-in time. A real board without a battery restarts its clock at
power-up and the node sets it from its host's time (ribat.app.Node.follow_clock); here the
board keeps the host's, and only a clock set ahead (Board.set_clock, `ribat sim clock
--advance`) moves it. Everything else is MicroPython's own time module.
"""

import utime
import vboard
from utime import *  # noqa: F403 - the board's time module is MicroPython's, but time()


def time():  # type: ignore[no-redef]  # noqa: F811
    return utime.time() + vboard.clock_ahead()
