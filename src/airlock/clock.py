"""Time, in the one form every room passes around: an injectable ``clock_ms``.

A leaf. Code that reads the time takes a ``clock_ms: ClockMs`` argument (defaulting to
:func:`wall_clock_ms`) so that tests and the simulators can move time instead of waiting
for it, and so that "now" is the same reading everywhere one decision is made.
"""

from __future__ import annotations

import time
from collections.abc import Callable

ClockMs = Callable[[], int]
"""Milliseconds since the Unix epoch, as an integer."""


def wall_clock_ms() -> int:
    """The machine's wall clock in integer milliseconds (no float rounding)."""
    return time.time_ns() // 1_000_000
