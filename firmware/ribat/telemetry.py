"""What the node reports about itself, and the task that pushes it.

Heap and flash figures are refreshed at most every HEAP_EVERY_MS / FLASH_EVERY_MS: a GC
pass or a littlefs walk at every 100 ms frame would itself disturb the node being watched.
"""

import asyncio
import gc
import os
import time

from micropython import const

from ribat import schema

TICK_MS = const(50)
HEAP_EVERY_MS = const(1000)
FLASH_EVERY_MS = const(5000)


class Monitor:
    """Uptime that does not wrap (ticks_ms does, after 12 days), and event-loop lag."""

    def __init__(self) -> None:
        self.uptime_ms = 0
        self.max_lag_ms = 0
        self._last = time.ticks_ms()

    async def run(self) -> None:
        while True:
            await asyncio.sleep_ms(TICK_MS)
            now = time.ticks_ms()
            elapsed = time.ticks_diff(now, self._last)
            self._last = now
            self.uptime_ms += elapsed
            if elapsed - TICK_MS > self.max_lag_ms:
                self.max_lag_ms = elapsed - TICK_MS

    def take_lag(self) -> int:
        lag, self.max_lag_ms = self.max_lag_ms, 0
        return lag


class Sampler:
    def __init__(self, node) -> None:
        self.node = node
        self._heap_at = -HEAP_EVERY_MS
        self._flash_at = -FLASH_EVERY_MS
        self._flash = (0, 0)

    def sample(self, collect: bool = False) -> dict:
        """The node's figures now; collect=True runs the GC first for exact heap figures."""
        node = self.node
        now = node.monitor.uptime_ms
        if collect or now - self._heap_at >= HEAP_EVERY_MS:
            gc.collect()
            self._heap_at = now
        if now - self._flash_at >= FLASH_EVERY_MS:
            st = os.statvfs("/")
            # a full littlefs counts more blocks in use than it has: free comes out
            # negative, and MicroPython shows it unsigned
            free = st[3] if st[3] <= st[2] else 0
            self._flash = (st[1] * free, st[1] * (st[2] - free))
            self._flash_at = now
        temp = node.board.temperature_c()
        link = node.link
        values = (
            now,
            node.reset_cause,
            gc.mem_free(),
            gc.mem_alloc(),
            self._flash[0],
            self._flash[1],
            node.monitor.take_lag(),
            link.rx_ok,
            link.rejected,
            link.tx,
            node.version,
            None if temp is None else round(temp, 1),
            node.keyring.state,
            node.audit.seq,
            node.audit.head,
            [[a[0], a[2]] for a in node.alert_pending],
        )
        return dict(zip(schema.TELEMETRY, values))


async def push(node) -> None:
    """Send a telemetry event every telemetry.interval_ms, on a fixed schedule."""
    config = node.config
    due = time.ticks_ms()
    while True:
        interval = config.get("telemetry.interval_ms")
        due = time.ticks_add(due, interval)
        wait = time.ticks_diff(due, time.ticks_ms())
        if wait < 0:  # fell behind by more than a frame: start the schedule again
            due, wait = time.ticks_ms(), 0
        await asyncio.sleep_ms(wait)
        if config.get("telemetry.enabled"):
            meta = node.sampler.sample()
            meta["event"] = "telemetry"
            node.link.event(meta)
