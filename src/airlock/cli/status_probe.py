"""The probes of ``airlock status``: every relay and Bybit at once, with short timeouts.

Apart from :mod:`airlock.cli.status_cmds` because probing needs the network stack
(aiohttp, the relays, the health monitor) and ``airlock status --no-probe`` does not.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import aiohttp

from airlock.broadcaster.setup import build_relays
from airlock.config import AirlockConfig, BybitConfig
from airlock.errors import AirlockError
from airlock.hsm.keyring import KeyRing
from airlock.relays.bybit import BybitClient
from airlock.relays.health import HealthSnapshot, LinkState, Monitor
from airlock.relays.jsonrpc import started

RELAY_TIMEOUT_S = 3.0  # a status probe never waits longer than this for one relay ...
RELAY_CONNECT_TIMEOUT_S = 2.0  # ... nor this long for its TCP connect
BYBIT_TIMEOUT_S = 2.0
GUARD_S = 4.0  # the outer bound of every probe, should a client's own timeout not fire


def probe_all(
    settings: AirlockConfig, ring: KeyRing
) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """What one probe says of each relay (by name) and of Bybit (None: not configured)."""
    snapshots, bybit = asyncio.run(_probe_all(settings, ring))
    slow_ms = settings.broadcaster.health.slow_ms
    return {name: _relay_probe(snap, slow_ms) for name, snap in snapshots.items()}, bybit


def _relay_probe(snap: HealthSnapshot, slow_ms: int) -> dict[str, Any]:
    return {
        "state": _one_probe_state(snap, slow_ms),
        "usable": snap.usable,
        "head": snap.head,
        "latency_ms": snap.latency_ms,
        "last_error": None if snap.usable else snap.last_error,
    }


def _one_probe_state(snap: HealthSnapshot, slow_ms: int) -> str:
    """What one probe says: up, slow (answered after slow_ms), down, or wrong-chain.

    The broadcaster's UP/DEGRADED labels need several probes in a row; one probe can only
    tell whether the relay answers, how fast, and for which chain."""
    if snap.state is LinkState.DISABLED:
        return "wrong-chain"
    if not snap.usable:
        return "down"
    if snap.latency_ms is not None and snap.latency_ms > slow_ms:
        return "slow"
    return "up"


async def _probe_all(
    settings: AirlockConfig, ring: KeyRing
) -> tuple[dict[str, HealthSnapshot], dict[str, Any] | None]:
    """Every relay and Bybit at once, each with short timeouts."""
    relays_job = _probe_relays(settings, ring) if settings.relays else _nothing()
    bybit_job = _probe_bybit(settings.bybit) if settings.bybit is not None else _nothing()
    snapshots, bybit = await asyncio.gather(relays_job, bybit_job)
    return snapshots or {}, bybit


async def _nothing() -> None:
    return None


async def _probe_relays(settings: AirlockConfig, ring: KeyRing) -> dict[str, HealthSnapshot]:
    quick = tuple(
        dataclasses.replace(
            relay,
            timeout_seconds=min(relay.timeout_seconds, RELAY_TIMEOUT_S),
            connect_timeout_seconds=min(relay.connect_timeout_seconds, RELAY_CONNECT_TIMEOUT_S),
        )
        for relay in settings.relays
    )
    relays = build_relays(dataclasses.replace(settings, relays=quick), ring)
    async with started(relays):
        monitor = Monitor(relays, settings.broadcaster.health, guard_s=GUARD_S)
        return await monitor.probe_all()


async def _probe_bybit(settings: BybitConfig) -> dict[str, Any]:
    """One unsigned GET /v5/market/time, no retry: reachable, and the venue's clock."""

    def never_signs(_: bytes) -> str:
        raise RuntimeError("the status probe sends no signed request")

    client = BybitClient(
        settings.base_url,
        settings.api_key,
        never_signs,
        settings.sign_type,
        timeout_s=BYBIT_TIMEOUT_S,
    )
    started_at = time.monotonic()
    try:
        async with asyncio.timeout(GUARD_S), client:
            offset = await client.sync_time(retry=False)
    except (AirlockError, OSError, TimeoutError, aiohttp.ClientError) as exc:
        error = str(exc) or type(exc).__name__
        return {"usable": False, "offset_ms": None, "latency_ms": None, "last_error": error}
    latency = round((time.monotonic() - started_at) * 1000)
    return {"usable": True, "offset_ms": offset, "latency_ms": latency, "last_error": None}
