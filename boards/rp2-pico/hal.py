"""Hardware layer for RP2040 boards (Pico, Pico W).

The firmware reaches the hardware only through Board; which pins to use comes from the
board's facts (its board.json), handed in by the caller.
"""

import time

import machine
import rp2

_CAUSES = {machine.PWRON_RESET: "power_on", machine.WDT_RESET: "watchdog"}


class Board:
    def __init__(self, facts: dict) -> None:
        self._wires = facts.get("wires", ())  # (the rest of the facts is not kept)
        buzzer = facts.get("buzzer")
        self._buzzer = (
            machine.PWM(machine.Pin(buzzer["pin"]), freq=2000, duty_u16=0) if buzzer else None
        )
        led = facts["led"]
        self._led = machine.Pin(led["pin"], machine.Pin.OUT)
        # The Pico W's LED sits on the Wi-Fi chip and has no PWM: on or off only.
        self._pwm = machine.PWM(self._led, freq=1000) if led.get("pwm") else None
        self._adc = machine.ADC(4) if facts.get("temperature") == "adc4" else None

    def led(self, percent: int) -> None:
        if self._pwm is not None:
            self._pwm.duty_u16(percent * 65535 // 100)
        else:
            self._led.value(1 if percent else 0)

    def buzzer(self, on: bool) -> None:
        """A 2 kHz tone, on a passive buzzer (an active one sounds at any duty)."""
        if self._buzzer is not None:
            self._buzzer.duty_u16(32768 if on else 0)

    def watchdog(self, timeout_ms: int) -> machine.WDT:
        """The chip's watchdog, armed for good (until a hard reset): feed() it within
        timeout_ms, at most 8388 on an RP2040."""
        return machine.WDT(timeout=min(timeout_ms, 8388))

    def button(self) -> bool:
        return rp2.bootsel_button() == 1

    def host_present(self) -> "bool | None":
        """MicroPython tells running code nothing of the USB port's state: an unlocked
        session on this board ends by `ribat lock`, idle time or reset."""
        return None

    def temperature_c(self) -> "float | None":
        if self._adc is None:
            return None
        # RP2040 datasheet 4.9.5: 0.706 V at 27 degrees C, -1.721 mV per degree.
        volts = self._adc.read_u16() * 3.3 / 65535
        return 27 - (volts - 0.706) / 0.001721

    def reset_cause(self) -> str:
        return _CAUSES.get(machine.reset_cause(), "unknown")

    def vault(self) -> object:
        """None: the stock MicroPython image gives littlefs the whole storage region, so no
        flash block is the keys' alone (docs/security.md: what a build that leaves two out
        would give them)."""
        return None

    def unique_id(self) -> bytes:
        return machine.unique_id()

    def wire_rxbuf(self) -> int:
        """The bytes each wire's UART holds unread; what comes past them is lost."""
        return min((w["rxbuf"] for w in self._wires), default=0)

    def wires(self) -> list:
        """The UARTs to peer nodes, on the pins of the board's facts."""
        return [
            machine.UART(
                w["uart"],
                baudrate=w["baud"],
                tx=machine.Pin(w["tx"]),
                rx=machine.Pin(w["rx"]),
                rxbuf=w["rxbuf"],
            )
            for w in self._wires
        ]

    def set_clock(self, t: int) -> None:
        """Set the RTC to unix time t (it restarts at power-up: the board has no battery)."""
        y, mo, d, h, mi, s, wd, _ = time.gmtime(t)
        machine.RTC().datetime((y, mo, d, wd, h, mi, s, 0))

    def reset(self, hard: bool) -> None:
        if hard:
            machine.reset()
        machine.soft_reset()
