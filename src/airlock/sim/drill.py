"""What the two halves of ``airlock demo`` share: the failure, and a bounded wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from airlock.errors import AirlockError

DRILL_TIMEOUT_S = 60
POLL_S = 0.05


class DemoFailed(AirlockError):
    """An invariant of the drill did not hold."""


async def until(check: Callable[[], bool], timeout_s: float = DRILL_TIMEOUT_S) -> None:
    """Poll ``check`` until it holds; DemoFailed after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise DemoFailed(f"the drill did not get there within {timeout_s} s")
        await asyncio.sleep(POLL_S)
