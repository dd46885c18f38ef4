"""Is a relay reachable right now, and when exactly did it come back?

The broadcaster holds signed transactions during an outage and must send them the moment
any relay answers again. This module decides what "answers again" means, in two layers:

* a functional core: :func:`advance` is the whole UP / DEGRADED / DOWN / DISABLED state
  machine with hysteresis, a pure function of (state, counters, event); :class:`Health`
  wraps it for one relay with the bookkeeping an operator wants to see. Time is always
  passed in, so every rule is table-tested without a clock;
* an imperative shell: :class:`Monitor` probes every relay on its own asyncio task, feeds
  the results (and the results of real sends) into the cores, and raises
  :attr:`Monitor.returned` the instant a relay leaves DOWN.

A relay back from DOWN is usable at once (DEGRADED): waiting for ``rise`` successes would
hold queued transactions for seconds for no benefit, since a failed send is retried
anyway. Hysteresis only guards the UP label, which slows probing down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeGuard

from airlock.config import HealthConfig
from airlock.errors import ConfigError

log = logging.getLogger(__name__)

GUARD_FACTOR = 5  # a probe may take this many probe intervals (at least 1 s each) at most


class LinkState(StrEnum):
    """How one relay looks from here."""

    UP = "up"
    """Answered ``rise`` fast probes in a row: probe it rarely, send to it first."""
    DEGRADED = "degraded"
    """Usable, but just back, slow, or failing a little: send to it, probe it often."""
    DOWN = "down"
    """``fall`` failures in a row, or never answered yet: do not send, probe often."""
    DISABLED = "disabled"
    """Answered for another chain: a misconfiguration, final until the operator restarts."""


USABLE = frozenset({LinkState.UP, LinkState.DEGRADED})
DEFAULT_HEALTH = HealthConfig()


class Event(StrEnum):
    """One observation of a relay, already judged against the configuration."""

    FAST = "fast"  # a probe within slow_ms, or a successful send
    SLOW = "slow"  # a probe that succeeded but took longer than slow_ms
    FAIL = "fail"  # a probe or a send that failed in transport
    WRONG_CHAIN = "wrong_chain"  # a probe that answered with another chain id


@dataclass(frozen=True)
class Tally:
    """The state machine's whole memory: the state and the two streak counters."""

    state: LinkState
    fast_streak: int = 0  # consecutive FAST events, capped at rise
    failures: int = 0  # consecutive FAIL events, uncapped (an operator reads it)


def advance(tally: Tally, event: Event, *, rise: int, fall: int) -> Tally:
    """The transition table, as one pure function.

    Both directions pass through DEGRADED: DOWN -> DEGRADED on any success (the relay is
    back and usable), DEGRADED -> UP once the fast streak (counting the success that
    brought it back) reaches ``rise``; UP -> DEGRADED on one failure or one slow answer,
    DEGRADED -> DOWN once the failure streak (counting the one that left UP) reaches
    ``fall``. A wrong chain id disables, and DISABLED never changes.
    """
    if tally.state is LinkState.DISABLED:
        return tally
    if event is Event.WRONG_CHAIN:
        return Tally(LinkState.DISABLED)
    if event is Event.FAIL:
        return Tally(_after_failure(tally.state, tally.failures + 1, fall), 0, tally.failures + 1)
    fast = event is Event.FAST
    streak = min(tally.fast_streak + 1, rise) if fast else 0
    return Tally(_after_success(tally.state, fast, streak, rise), streak, 0)


def _after_failure(state: LinkState, failures: int, fall: int) -> LinkState:
    if state is LinkState.UP:
        return LinkState.DEGRADED
    if state is LinkState.DEGRADED and failures >= fall:
        return LinkState.DOWN
    return state


def _after_success(state: LinkState, fast: bool, fast_streak: int, rise: int) -> LinkState:
    if state is LinkState.DOWN or not fast:
        return LinkState.DEGRADED
    if state is LinkState.DEGRADED and fast_streak >= rise:
        return LinkState.UP
    return state


@dataclass(frozen=True)
class Change:
    """One state change of one relay: what the broadcaster logs, audits and alerts on."""

    relay: str
    old: LinkState
    new: LinkState
    reason: str
    at_ms: int

    @property
    def returned(self) -> bool:
        """The relay was down and can be sent to again: the dispatcher's wake-up call."""
        return self.old is LinkState.DOWN and self.new in USABLE

    @property
    def alert(self) -> bool:
        """Nothing can be sent through this relay any more: an operator should know."""
        return self.new in (LinkState.DOWN, LinkState.DISABLED)


@dataclass(frozen=True)
class HealthSnapshot:
    """One relay's health at one moment, for ``links status`` and the metrics."""

    relay: str
    chain_id: int
    state: LinkState
    latency_ms: int | None
    last_ok_ms: int | None
    last_error: str | None
    last_error_ms: int | None
    consecutive_failures: int
    head: int | None

    @property
    def usable(self) -> bool:
        return self.state in USABLE

    def as_json(self) -> dict[str, Any]:
        return {
            "relay": self.relay,
            "chain_id": self.chain_id,
            "state": str(self.state),
            "usable": self.usable,
            "latency_ms": self.latency_ms,
            "last_ok_ms": self.last_ok_ms,
            "last_error": self.last_error,
            "last_error_ms": self.last_error_ms,
            "consecutive_failures": self.consecutive_failures,
            "head": self.head,
        }


class Health:
    """The health of one relay: the pure state machine plus what an operator wants to see.

    No clock and no I/O: every observation carries its own ``now_ms``. It starts DOWN
    because nothing is known yet, so the first success is reported as "returned" and a
    freshly started dispatcher wakes on it like after any outage.
    """

    def __init__(self, relay: str, chain_id: int, config: HealthConfig = DEFAULT_HEALTH) -> None:
        if config.rise < 1 or config.fall < 1 or config.slow_ms < 0:
            raise ConfigError(
                f"health: rise and fall must be >= 1 and slow_ms >= 0, got rise={config.rise} "
                f"fall={config.fall} slow_ms={config.slow_ms}"
            )
        self.relay = relay
        self.chain_id = chain_id
        self._config = config
        self._tally = Tally(LinkState.DOWN)
        self.last_error: str | None = None
        self.last_error_ms: int | None = None
        self.last_ok_ms: int | None = None
        self.latency_ms: int | None = None
        self.head: int | None = None

    @property
    def state(self) -> LinkState:
        return self._tally.state

    @property
    def usable(self) -> bool:
        return self._tally.state in USABLE

    @property
    def consecutive_failures(self) -> int:
        return self._tally.failures

    def probe_ok(
        self, latency_ms: int, chain_id: int, now_ms: int, *, block_number: int | None = None
    ) -> Change | None:
        """A probe answered. The chain id is checked first: an answer for another chain
        means every transaction sent there is wasted (or replayed elsewhere), so it
        disables the relay instead of counting as a success."""
        if self.state is LinkState.DISABLED:
            return None
        if chain_id != self.chain_id:
            reason = f"chain id mismatch: relay reports {chain_id}, configured {self.chain_id}"
            self._failed(reason, now_ms)
            return self._apply(Event.WRONG_CHAIN, reason, now_ms)
        self.latency_ms = latency_ms
        self.last_ok_ms = now_ms
        if block_number is not None:
            self.head = block_number
        if latency_ms > self._config.slow_ms:
            reason = f"slow probe: {latency_ms} ms > {self._config.slow_ms} ms"
            return self._apply(Event.SLOW, reason, now_ms)
        return self._apply(Event.FAST, f"probe ok in {latency_ms} ms", now_ms)

    def probe_failed(self, reason: str, now_ms: int) -> Change | None:
        """A probe failed or timed out."""
        if self.state is LinkState.DISABLED:
            return None
        self._failed(reason, now_ms)
        return self._apply(Event.FAIL, f"probe failed: {reason}", now_ms)

    def send_failed(self, reason: str, now_ms: int) -> Change | None:
        """A real send failed in transport: as telling as a failed probe, and earlier."""
        if self.state is LinkState.DISABLED:
            return None
        self._failed(reason, now_ms)
        return self._apply(Event.FAIL, f"send failed: {reason}", now_ms)

    def send_ok(self, now_ms: int) -> Change | None:
        """A real send went through: counts like a fast probe (no latency, no chain id)."""
        if self.state is LinkState.DISABLED:
            return None
        self.last_ok_ms = now_ms
        return self._apply(Event.FAST, "send ok", now_ms)

    def snapshot(self) -> HealthSnapshot:
        return HealthSnapshot(
            relay=self.relay,
            chain_id=self.chain_id,
            state=self.state,
            latency_ms=self.latency_ms,
            last_ok_ms=self.last_ok_ms,
            last_error=self.last_error,
            last_error_ms=self.last_error_ms,
            consecutive_failures=self.consecutive_failures,
            head=self.head,
        )

    def _failed(self, reason: str, now_ms: int) -> None:
        # Kept after recovery: "what was the last outage about" is a question operators ask.
        self.last_error = reason
        self.last_error_ms = now_ms

    def _apply(self, event: Event, detail: str, now_ms: int) -> Change | None:
        old = self._tally
        self._tally = advance(old, event, rise=self._config.rise, fall=self._config.fall)
        if self._tally.state is old.state:
            return None
        reason = _reason(old, self._tally, detail)
        return Change(self.relay, old.state, self._tally.state, reason, now_ms)


def _reason(old: Tally, new: Tally, detail: str) -> str:
    """Why a change happened, in words an operator reading the audit log understands."""
    if new.state is LinkState.UP:
        return f"{new.fast_streak} consecutive fast successes; last: {detail}"
    if new.state is LinkState.DOWN:
        return f"{new.failures} consecutive failures; last: {detail}"
    if old.state is LinkState.DOWN:
        return f"answering again: {detail}"
    return detail


class ProbeResult(Protocol):
    """What a probe returns: which chain the relay serves, and its head block."""

    chain_id: int
    block_number: int


class ProbeTarget(Protocol):
    """A relay the monitor can probe; the relay client implements it (with its own
    connect and request timeouts). ``probe`` raises any :class:`Exception` on failure."""

    @property
    def name(self) -> str: ...

    @property
    def chain_id(self) -> int: ...

    async def probe(self) -> Any: ...


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def guard_timeout(interval_s: float) -> float:
    """The outer bound of one probe: the target's own timeouts should fire long before,
    this only keeps a target with a bug (or none) from freezing its relay's health."""
    return max(interval_s, 1.0) * GUARD_FACTOR


class Monitor:
    """Probes every relay on its own task and turns the results into events.

    ``returned`` is set the instant any relay goes from DOWN to usable; the dispatcher
    awaits it and clears it. ``changed`` is set on any change. Both are only ever set
    here, never cleared, so a waiter cannot miss a change that happened before it waited.
    """

    def __init__(
        self,
        targets: Sequence[ProbeTarget],
        config: HealthConfig,
        *,
        on_change: Callable[[Change], None] | None = None,
        clock_ms: Callable[[], int] = monotonic_ms,
        guard_s: float | None = None,
    ) -> None:
        if config.probe_seconds <= 0 or config.probe_down_seconds <= 0:
            raise ConfigError("health: probe_seconds and probe_down_seconds must be > 0")
        names = [target.name for target in targets]
        if len(set(names)) != len(names):
            raise ConfigError(f"health: relay names must be unique, got {names}")
        self._targets = {target.name: target for target in targets}
        self._health = {t.name: Health(t.name, t.chain_id, config) for t in targets}
        self._kicks = {name: asyncio.Event() for name in names}
        self._locks = {name: asyncio.Lock() for name in names}
        self._config = config
        self._on_change = on_change
        self._clock_ms = clock_ms
        self._guard_s = guard_s
        self._running = False
        self.returned = asyncio.Event()
        self.changed = asyncio.Event()

    # -- queries -------------------------------------------------------------------------

    def now_ms(self) -> int:
        """The monitor's clock (monotonic by default): ``last_ok_ms`` is on it."""
        return self._clock_ms()

    def usable(self, name: str) -> bool:
        return self._get(name).usable

    def usable_names(self) -> list[str]:
        """Usable relays, UP before DEGRADED, each group in configuration order."""
        ups = [n for n, h in self._health.items() if h.state is LinkState.UP]
        degraded = [n for n, h in self._health.items() if h.state is LinkState.DEGRADED]
        return ups + degraded

    def snapshots(self) -> dict[str, HealthSnapshot]:
        return {name: health.snapshot() for name, health in self._health.items()}

    def head(self, name: str) -> int | None:
        """The last block number a probe of this relay saw."""
        return self._get(name).head

    def best_head(self) -> int | None:
        """The highest head seen by any relay that is not disabled: a lagging or down
        relay never lowers it, and a relay on another chain must not raise it."""
        heads = [
            h.head
            for h in self._health.values()
            if h.head is not None and h.state is not LinkState.DISABLED
        ]
        return max(heads, default=None)

    # -- inputs --------------------------------------------------------------------------

    def kick(self, name: str) -> None:
        """Probe this relay now instead of at its next interval (a send through it just
        failed, so its health is in doubt). Takes effect while :meth:`run` is running."""
        self._get(name)
        self._kicks[name].set()

    def report_send(self, name: str, ok: bool, reason: str = "") -> None:
        """Feed a real send's transport result in; sends are probes we get for free."""
        health = self._get(name)
        now = self._clock_ms()
        if ok:
            self._emit(health.send_ok(now))
            return
        self._emit(health.send_failed(reason or "send failed", now))
        self.kick(name)

    # -- probing -------------------------------------------------------------------------

    async def run(self) -> None:
        """Watch every relay until cancelled; cancelling cancels every probe task.

        Returns by itself only when no relay is left to watch (none configured, or all
        disabled), since nothing can then ever come back.
        """
        if self._running:
            raise RuntimeError("Monitor.run() is already running")
        self._running = True
        try:
            async with asyncio.TaskGroup() as group:
                for name in self._targets:
                    group.create_task(self._watch(name), name=f"health-probe:{name}")
        finally:
            self._running = False

    async def probe_all(self) -> dict[str, HealthSnapshot]:
        """Probe every relay once, concurrently, and return everyone's snapshot."""
        await asyncio.gather(*(self._probe_once(name) for name in self._targets))
        return self.snapshots()

    async def _watch(self, name: str) -> None:
        while self._health[name].state is not LinkState.DISABLED:
            await self._probe_once(name)
            await self._wait_for_next(name)

    async def _wait_for_next(self, name: str) -> None:
        """Sleep one interval, or less if kicked. A kick during a probe is kept and ends
        the next wait at once: the probe in flight may predate the failed send."""
        kicked = self._kicks[name]
        # asyncio.timeout, not wait_for: Python 3.11's wait_for can lose a cancellation
        # that arrives as the wait ends, and the monitor would then never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._interval(name)):
                await kicked.wait()
        kicked.clear()

    def _interval(self, name: str) -> float:
        if self._health[name].state is LinkState.UP:
            return self._config.probe_seconds
        return self._config.probe_down_seconds

    async def _probe_once(self, name: str) -> None:
        """One probe, serialised per relay so two results never race into its Health."""
        async with self._locks[name]:
            health = self._health[name]
            if health.state is LinkState.DISABLED:
                return
            started = self._clock_ms()
            try:
                chain_id, block_number = await self._bounded_probe(name)
            except Exception as exc:
                self._emit(health.probe_failed(_describe(exc), self._clock_ms()))
                return
            now = self._clock_ms()
            self._emit(health.probe_ok(now - started, chain_id, now, block_number=block_number))

    async def _bounded_probe(self, name: str) -> tuple[int, int | None]:
        guard = self._guard_s or guard_timeout(self._interval(name))
        scope = asyncio.timeout(guard)
        try:
            async with scope:
                result = await self._targets[name].probe()
        except TimeoutError:
            if scope.expired():
                raise TimeoutError(f"probe hung for more than {guard:g} s") from None
            raise
        return _read_result(result)

    def _emit(self, change: Change | None) -> None:
        """Events first, so a failing callback can never keep the dispatcher asleep."""
        if change is None:
            return
        self.changed.set()
        if change.returned:
            self.returned.set()
        if self._on_change is None:
            return
        try:
            self._on_change(change)
        except Exception:
            log.exception("health: on_change callback failed for %s", change)

    def _get(self, name: str) -> Health:
        try:
            return self._health[name]
        except KeyError:
            raise KeyError(f"unknown relay {name!r}; known: {sorted(self._health)}") from None


def _read_result(result: Any) -> tuple[int, int | None]:
    """The chain id and head of a probe answer; a malformed answer is a failed probe."""
    chain_id = getattr(result, "chain_id", None)
    block_number = getattr(result, "block_number", None)
    if not _is_int(chain_id) or not (block_number is None or _is_int(block_number)):
        raise ValueError(f"probe returned a malformed result: {result!r}")
    return chain_id, block_number


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
