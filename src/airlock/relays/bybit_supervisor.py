"""Whether the Bybit venue is reachable, and bringing the client back after an outage.

Apart from :mod:`airlock.relays.bybit` because it is a different job: the client sends
one request well; the supervisor decides *when* to probe, how long to back off between
probes, and tells the broadcaster when the venue came back (its cue to reconcile and
flush the queue).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from airlock.relays.backoff import BackoffPolicy
from airlock.relays.bybit_codes import SERVER_TIME
from airlock.relays.errors import BybitAuthError, BybitError
from airlock.vocab import Category

if TYPE_CHECKING:  # the client module re-exports this one: no import back at run time
    from airlock.relays.bybit import BybitClient

Sleep = Callable[[float], Awaitable[None]]


class ConnectionSupervisor:
    """Knows whether the venue is reachable, and brings the client back after outages.

    A probe is the venue time (also re-syncing the clock) plus the cheapest authenticated
    read. :meth:`connect` fails loud on a bad key (no retry: retrying cannot fix a key);
    :meth:`run` probes every ``interval_s`` and, after a disconnection, reconnects with the
    backoff policy and calls ``on_reconnect`` once per reconnection (the caller's cue to
    reconcile and flush the queue). An auth failure while running ends :meth:`run` with
    :class:`BybitAuthError`.
    """

    def __init__(
        self,
        client: BybitClient,
        policy: BackoffPolicy,
        *,
        on_reconnect: Callable[[], Awaitable[None]],
        on_change: Callable[[bool, str], None] | None = None,
        interval_s: float = 5.0,
        category: Category = "linear",
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._client = client
        self._policy = policy
        self._on_reconnect = on_reconnect
        self._interval = interval_s
        self._category = category
        self._sleep = sleep
        self._connected = False
        self._on_change = on_change  # (connected, why): each change of is_connected
        self.last_error = "not probed yet"
        self.latency_ms: float | None = None  # the last successful time probe's round trip

    @property
    def is_connected(self) -> bool:
        return self._connected

    def _set(self, connected: bool, why: str) -> None:
        if connected is not self._connected and self._on_change is not None:
            self._on_change(connected, why)
        self._connected = connected

    async def connect(self) -> None:
        """First connection: raises BybitAuthError (bad key) or BybitError (unreachable)."""
        try:
            await self._probe()
        except BybitError as exc:
            self.last_error = str(exc)
            raise
        self._set(True, "connected")

    async def _probe(self) -> None:
        stopped = self._client.auth_stopped
        if stopped is not None:  # not even the unsigned time request: the account is stopped
            raise BybitAuthError(SERVER_TIME, f"account stopped: {stopped}")
        started = time.monotonic()
        await self._client.sync_time(retry=False)  # the supervisor owns the backoff
        self.latency_ms = (time.monotonic() - started) * 1000
        await self._client.probe_auth(self._category)

    async def _probe_ok(self) -> bool:
        try:
            await self._probe()
        except BybitAuthError as exc:
            self._set(False, f"key refused: {exc}")
            raise
        except BybitError as exc:
            self.last_error = str(exc)
            return False
        return True

    async def run(self) -> None:
        """Probe forever (until cancelled or the key is refused)."""
        while True:
            await self._sleep(self._interval)
            if await self._probe_ok():
                self._set(True, "probe ok")
                continue
            self._set(False, f"probe failed: {self.last_error}")
            attempt = 0
            while True:
                await self._sleep(self._policy.delay(attempt))
                attempt += 1
                if await self._probe_ok():
                    break
            self._set(True, f"answering again after {attempt} attempt(s)")
            await self._on_reconnect()
