"""A link's pace, as a virtual board's serial port and wire carry bytes."""

import collections


class Pace:
    """One direction of the board's link: each byte takes 1/rate to cross, then latency.
    A rate of 0 is an ideal link: bytes arrive at once."""

    PIECE = 256  # bytes delivered together: a stream, not one lump per write

    def __init__(self, bytes_per_s: float, latency_ms: float) -> None:
        self.rate = bytes_per_s
        self.latency = latency_ms / 1000
        self.busy_until = 0.0
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.queued = 0

    def push(self, data: bytes, now: float) -> None:
        for i in range(0, len(data), self.PIECE):
            piece = data[i : i + self.PIECE]
            if self.rate:
                self.busy_until = max(now, self.busy_until) + len(piece) / self.rate
                due = self.busy_until + self.latency
            else:
                due = now
            self.queue.append((due, piece))
            self.queued += len(piece)

    def arrived(self, now: float) -> bytes:
        """What has crossed the link by now."""
        out = []
        while self.queue and self.queue[0][0] <= now:
            piece = self.queue.popleft()[1]
            self.queued -= len(piece)
            out.append(piece)
        return b"".join(out)

    def next_due(self) -> float | None:
        return self.queue[0][0] if self.queue else None

    def clear(self) -> None:
        self.queue.clear()
        self.queued = 0
