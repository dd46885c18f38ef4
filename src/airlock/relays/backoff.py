"""How long to wait before retrying a request that never left, or reconnecting a stream.

Pure: no I/O and no clock. Three policies answer one question, ``delay(attempt)``, so a
caller takes any of them as a :class:`Backoff`:

- :class:`BackoffPolicy`: exponential with bounded jitter and a retry count. The Bybit
  client retries a refused connection with it and the REST supervisor spaces its
  reconnection probes with it; the broadcaster builds one from the ``retry_*`` settings of
  ``[bybit]``.
- :class:`FullJitter`: AWS's "full jitter" (uniform between 0 and the exponential
  ceiling), for the stream supervisor: many streams dropped by one outage come back spread
  over the whole window instead of in waves.
- :class:`FixedDelay`: the same delay every time (tests, and venues that ask for it).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@runtime_checkable
class Backoff(Protocol):
    """Anything that says how long to wait before attempt number ``attempt`` (0-based)."""

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt``; never negative."""
        ...


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


@dataclass(frozen=True)
class FullJitter:
    """``delay(n)`` = uniform(0, min(cap, base * 2**n)): AWS's "full jitter".

    Spreading each delay over the whole window (not a band under the ceiling) is what
    keeps a fleet of reconnecting clients from arriving together after an outage. Any
    ``n`` is safe: past the float range the ceiling is simply the cap. With ``seed`` set the
    delay for attempt n is a pure function of (seed, n), so tests get exact tables.
    """

    base_s: float
    cap_s: float
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s or math.isinf(self.cap_s):
            raise ValueError("need 0 < base_s <= cap_s, both finite")

    def ceiling(self, attempt: int) -> float:
        """The window attempt ``attempt`` draws from: min(cap, base * 2**attempt)."""
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        try:
            return min(self.cap_s, math.ldexp(self.base_s, attempt))  # exact; no 2**n float
        except OverflowError:
            return self.cap_s

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt`` (0-based), within 0..ceiling."""
        ceiling = self.ceiling(attempt)
        rng = random.Random(f"{self.seed}:{attempt}") if self.seed is not None else random
        return rng.uniform(0.0, ceiling)


@dataclass(frozen=True)
class FixedDelay:
    """The same ``delay_s`` before every attempt: predictable, for tests and for a venue
    that documents a fixed reconnection pause."""

    delay_s: float

    def __post_init__(self) -> None:
        if not 0 <= self.delay_s < math.inf:
            raise ValueError("delay_s must be finite and >= 0")

    def delay(self, attempt: int) -> float:
        """``delay_s``, whatever the attempt (a negative one is a caller's bug)."""
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        return self.delay_s
