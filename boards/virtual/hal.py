"""Hardware layer for virtual boards.

The same interface as the real boards' layers, over the virtual board's ROM module
`vboard` (boards/virtual/rom/vboard.py), which the simulator loads before boot.py.
"""

import vboard


class Board:
    def __init__(self, facts: dict) -> None:
        # a virtual board's pins and wires are the simulator's; its wires hold what the
        # board it emulates holds unread (its supervisor counts what would be lost)
        self._rxbuf = min((w["rxbuf"] for w in facts.get("wires", ())), default=0)

    def led(self, percent: int) -> None:
        vboard.set_led(percent)

    def buzzer(self, on: bool) -> None:
        vboard.set_buzzer(on)

    def button(self) -> bool:
        return vboard.button()

    def host_present(self) -> "bool | None":
        """Whether a host holds the serial port open (None: this board cannot tell)."""
        return vboard.host_present()

    def temperature_c(self) -> "float | None":
        return vboard.temperature_c()

    def reset_cause(self) -> str:
        return vboard.RESET_CAUSE

    def unique_id(self) -> bytes:
        return vboard.UID

    def vault(self) -> object:
        """The keys' own flash blocks, outside littlefs (ribat.vault), or None."""
        return vboard.vault

    def wire_rxbuf(self) -> int:
        """The bytes each wire holds unread on the board this one emulates."""
        return self._rxbuf

    def wires(self) -> list:
        """The streams to peer nodes (`ribat sim wire` connects them)."""
        return vboard.wires

    def set_clock(self, t: int) -> None:
        """The clock set ahead to t (the ROM's time.py): never back, as on a real board."""
        import time

        ahead = int(t - (time.time() - vboard.clock_ahead()))
        if ahead > vboard.clock_ahead():
            vboard.set_panel_u32(40, ahead)

    def watchdog(self, timeout_ms: int) -> object:
        """The board's watchdog, armed for good: feed() it within timeout_ms."""
        import machine  # the ROM's (boards/virtual/rom/machine.py)

        return machine.WDT(timeout=timeout_ms)

    def reset(self, hard: bool) -> None:
        if hard:
            vboard.hard_reset()
        vboard.soft_reset()
