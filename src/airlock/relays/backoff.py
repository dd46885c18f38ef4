"""How long to wait before retrying a request that never left (connection-level failures).

Pure: no I/O and no clock. The Bybit client retries a refused connection with it and
the supervisor spaces its reconnection probes with it; the broadcaster builds one from
the ``retry_*`` settings of ``[bybit]``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    """Exponential backoff with bounded jitter, for connection-level failures only.

    ``delay(n)`` = min(cap, base * factor**n) scaled down by up to ``jitter`` (0..1), so a
    delay never exceeds the cap and many clients coming back from one outage spread out.
    With ``seed`` set the jitter for attempt n is a pure function of (seed, n): tests get
    exact tables. ``max_retries`` bounds the retries of one request.
    """

    base_s: float = 0.5
    factor: float = 2.0
    cap_s: float = 30.0
    jitter: float = 0.2
    max_retries: int = 5
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.cap_s < self.base_s or self.factor < 1:
            raise ValueError("need 0 < base_s <= cap_s and factor >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be within 0..1")
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        # factor**attempt overflows a float past ~1000 attempts; the cap applies long before
        raw = self.cap_s if attempt > 1000 else min(self.cap_s, self.base_s * self.factor**attempt)
        rng = random.Random(f"{self.seed}:{attempt}") if self.seed is not None else random
        return raw * (1 - self.jitter * rng.random())
