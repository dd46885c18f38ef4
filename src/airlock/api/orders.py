"""Queueing Bybit orders the way an operator's tool must: policy, venue, intent key.

What the CLI used to do by hand lives here, so a bot gets the same answer as an operator:

- **Is the venue reachable?** ``venue="auto"`` asks: inside the service, its own link
  supervisor; elsewhere one unsigned GET /v5/market/time (no retry, at most
  :data:`PROBE_TIMEOUT_S`), remembered for :data:`PROBE_FRESH_S` so that a burst of orders
  costs one probe, not one each. ``"up"``/``"down"`` force the answer (drills, or a venue
  the probe cannot see because it is reached over another link).
- **The slow-link rule** (the playbook's): with the venue up but slower than
  ``[failover] backup_latency_ms``, a Market order is sent as an IOC Limit within
  ``critical_slippage_bps`` of its reference price, or refused; audited either way.
- **The intent key**: the HSM's P-256 key that signs every order intent, created (and said
  so) the first time an order needs it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any

from airlock.audit import entries as audit_entries
from airlock.broadcaster.failover import Mode, ModeState, critical_order
from airlock.config import BybitConfig, FailoverConfig, redact_url
from airlock.errors import AirlockError, InvalidInput
from airlock.hsm import errors as hsm_errors
from airlock.hsm.keyring import KeyRing
from airlock.hsm.kinds import KeyKind
from airlock.queue.bybit import IntentKey
from airlock.queue.policy import OrderRequest
from airlock.queue.store import Store

PROBE_TIMEOUT_S = 2.0
"""How long ``venue="auto"`` waits for GET /v5/market/time before calling the venue down."""
PROBE_FRESH_S = 1.0
"""How long one probe's answer stands for the orders queued after it."""

VENUE_MODES = ("auto", "up", "down")


@dataclass(frozen=True)
class Reachability:
    """Whether the venue answers, how fast (None: not measured), and the note to show."""

    reachable: bool
    latency_ms: float | None
    note: str


ReachabilityView = Callable[[], Reachability]
"""The service's own view of its link to the venue (no probe needed inside it)."""


class VenueProbe:
    """Answers "is the venue reachable?" for ``venue="auto"``, one probe per moment."""

    def __init__(self, settings: BybitConfig, clock: Callable[[], float] = time.monotonic):
        self._settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._last: tuple[float, Reachability] | None = None

    def __call__(self) -> Reachability:
        with self._lock:
            now = self._clock()
            if self._last is not None and now - self._last[0] < PROBE_FRESH_S:
                return self._last[1]
            answer = _probe(self._settings)
            self._last = (self._clock(), answer)
            return answer


def reachability(mode: str, view: ReachabilityView) -> Reachability:
    """The venue's reachability for one call: forced by ``mode``, else from ``view``."""
    if mode not in VENUE_MODES:
        raise InvalidInput(
            f"venue must be one of {', '.join(VENUE_MODES)}, got {mode!r}", field="venue"
        )
    if mode == "auto":
        return view()
    reachable = mode == "up"
    state = "reachable" if reachable else "unreachable"
    return Reachability(reachable, None, f"venue taken as {state} (venue={mode}, not probed)")


def _probe(settings: BybitConfig) -> Reachability:
    """One unsigned GET /v5/market/time, no retry, bounded by PROBE_TIMEOUT_S."""
    from airlock.relays.bybit import BybitClient  # aiohttp: only for a probe

    def never_signs(_: bytes) -> str:
        raise RuntimeError("the reachability probe sends no signed request")

    async def ask() -> float:
        client = BybitClient(
            settings.base_url,
            settings.api_key,
            never_signs,
            settings.sign_type,
            timeout_s=PROBE_TIMEOUT_S,
        )
        async with client:
            started = time.monotonic()
            await client.sync_time(retry=False)
            return time.monotonic() - started

    try:
        elapsed = _run_coroutine(ask)
    except (AirlockError, OSError) as exc:
        return Reachability(False, None, f"venue unreachable ({exc}); the outage policy applies")
    shown = redact_url(settings.base_url)
    note = f"venue reachable: {shown} answered the time probe in {elapsed * 1000:.0f} ms"
    return Reachability(True, elapsed * 1000, note)


def _run_coroutine(make: Callable[[], Coroutine[Any, Any, float]]) -> float:
    """Run the probe on a loop of its own, also when the caller is inside one (a bot's
    asyncio code calling the blocking library): then on a short-lived thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    result: list[float] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(asyncio.run(make()))
        except BaseException as exc:  # re-raised in the caller's thread
            error.append(exc)

    thread = threading.Thread(target=run, name="airlock-venue-probe")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


@dataclass(frozen=True)
class SlowLink:
    """What the slow-link rule did to one order: the request to queue, and what to say."""

    request: OrderRequest
    warning: str | None = None


def slow_link_rule(
    store: Store, request: OrderRequest, latency_ms: float, config: FailoverConfig
) -> SlowLink:
    """Above ``backup_latency_ms`` a Market order goes as an IOC Limit within
    ``critical_slippage_bps`` of its ``ref_price``, or is refused (``InvalidInput``); the
    decision is a ``failover.decision`` audit entry either way."""
    if latency_ms <= config.backup_latency_ms:
        return SlowLink(request)
    slow = ModeState(Mode.OUTAGE, 0, "slow-link", {"latency_ms": round(latency_ms, 1)})
    ref = None if request.ref_price is None else str(request.ref_price)
    critical = critical_order(request.order_type, slow, latency_ms, ref, request.side, config)
    if critical.action == "send":
        return SlowLink(request)
    store.audit.record(audit_entries.FAILOVER_DECISION, critical.as_json())
    if critical.action == "refuse":
        raise InvalidInput(
            f"order refused ({critical.rule}): the link to the venue is slow "
            f"({latency_ms:.0f} ms > {config.backup_latency_ms:g} ms); a Market order needs "
            "a ref_price to be sent as a capped limit",
            field="ref_price",
        )
    rewritten = replace(
        request,
        order_type="Limit",
        price=critical.limit_price,
        tif="IOC",
        ref_price=None,
        slippage_bps=None,
    )
    warning = (
        f"slow link ({latency_ms:.0f} ms): Market order sent as an IOC Limit at "
        f"{critical.limit_price} ({config.critical_slippage_bps} bps from the ref price)"
    )
    return SlowLink(rewritten, warning)


def intent_key(ring: KeyRing, label: str) -> tuple[IntentKey, str | None]:
    """The HSM P-256 key that signs order intents, created on first use; with the note to
    show when it was just created."""
    note = None
    try:
        ring.info(label)
    except hsm_errors.KeyNotFound:
        ring.generate(KeyKind.P256, label)
        note = (
            f"created the P-256 intent key {label!r} in the HSM (the broadcaster checks every "
            f"order against it); 'airlock hsm pubkey --key {label}' prints its public key for "
            "auditors"
        )
    key = IntentKey(ring.ecdsa_key(label, curve="p256"), label, ring.public_key_pem(label))
    return key, note
