"""Hardware layer for ESP32 boards.

The firmware reaches the hardware only through Board; which pins to use comes from the
board's facts (its board.json), handed in by the caller.
"""

import time

import esp32
import machine

_CAUSES = {
    machine.PWRON_RESET: "power_on",
    machine.HARD_RESET: "hard",
    machine.WDT_RESET: "watchdog",
    machine.DEEPSLEEP_RESET: "deepsleep",
    machine.SOFT_RESET: "soft",
}


class Board:
    def __init__(self, facts: dict) -> None:
        self._wires = facts.get("wires", ())  # (the rest of the facts is not kept)
        buzzer = facts.get("buzzer")
        self._buzzer = (
            machine.PWM(machine.Pin(buzzer["pin"]), freq=2000, duty_u16=0) if buzzer else None
        )
        led = facts["led"]
        pin = machine.Pin(led["pin"], machine.Pin.OUT)
        self._led = pin
        self._pwm = machine.PWM(pin, freq=1000) if led.get("pwm") else None
        button = facts["button"]
        self._button = machine.Pin(button["pin"], machine.Pin.IN, machine.Pin.PULL_UP)
        self._button_active = 0 if button.get("active_low") else 1

    def led(self, percent: int) -> None:
        if self._pwm is not None:
            self._pwm.duty_u16(percent * 65535 // 100)
        else:
            self._led.value(1 if percent else 0)

    def buzzer(self, on: bool) -> None:
        """A 2 kHz tone, on a passive buzzer (an active one sounds at any duty)."""
        if self._buzzer is not None:
            self._buzzer.duty_u16(32768 if on else 0)

    def button(self) -> bool:
        return self._button.value() == self._button_active

    def host_present(self) -> "bool | None":
        """MicroPython tells running code nothing of the USB port's state: an unlocked
        session on this board ends by `ribat lock`, idle time or reset."""
        return None

    def temperature_c(self) -> "float | None":
        # Newer chips (S2, S3, C3...) report Celsius; the original ESP32 only a raw
        # Fahrenheit reading.
        read = getattr(esp32, "mcu_temperature", None)
        if read is not None:
            return float(read())
        raw = getattr(esp32, "raw_temperature", None)
        return None if raw is None else (raw() - 32) / 1.8

    def watchdog(self, timeout_ms: int) -> machine.WDT:
        """The task watchdog, armed for good (until a hard reset): feed() it within
        timeout_ms."""
        return machine.WDT(timeout=timeout_ms)

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
            machine.UART(w["uart"], baudrate=w["baud"], tx=w["tx"], rx=w["rx"], rxbuf=w["rxbuf"])
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
