"""Bounded polls: how a test waits for something to happen (never a bare sleep)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

POLL_S = 0.05


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL_S)


async def wait_until_async(check: Callable[[], bool], timeout: float, what: str) -> None:
    """:func:`wait_until` for a test whose event loop must keep running meanwhile."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(POLL_S)
