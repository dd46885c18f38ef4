"""The one fake clock of the tests: epoch milliseconds that move when the test moves them.

Everything in airlock that reads the time takes a ``clock_ms`` callable (the store, the
Bybit simulator, the venue client), so a test hands it a :class:`FakeClock` and jumps past
a TTL, a backoff or a retention window without waiting for it.
"""

from __future__ import annotations

import time

T0 = 1_800_000_000_000
"""The default start: a fixed moment (January 2027), so readings are the same every run."""


class FakeClock:
    """A ``clock_ms``: ``now`` until the test changes it.

    - ``now``: the reading; set it or add to it to move time.
    - ``tick_ms``: added before every reading, so each reading is later than the last
      (audit entries with strictly increasing times, without the test moving anything).
    - ``wall=True``: real wall time instead of ``now``, for a service that also waits in
      real time (probes, timeouts) while the test jumps past its TTLs.
    - ``offset_ms``: added to every reading, in either mode.
    - :meth:`sleep`: an async sleep that moves the clock instead of waiting, and records
      how long it was asked to sleep in ``slept``.
    """

    def __init__(self, now: int = T0, *, tick_ms: int = 0, wall: bool = False) -> None:
        self.now = now
        self.tick_ms = tick_ms
        self.wall = wall
        self.offset_ms = 0
        self.slept: list[float] = []

    def __call__(self) -> int:
        if self.wall:
            return time.time_ns() // 1_000_000 + self.offset_ms
        self.now += self.tick_ms
        return self.now + self.offset_ms

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += round(seconds * 1000)
