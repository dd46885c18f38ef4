"""The service's watch: applies the failover rules to what the links and the queue say.

Every ``WATCH_S`` it judges the link mode (:func:`failover.judge_mode` over the EVM
relays' health), checks the escalation rules against the queue, refreshes the link
metrics and beats the health check. It also answers the EVM broadcaster's routing
question (which relay role may carry a send of this priority now) through :meth:`route`.

Audit: every change of mode, the first routing decision of each kind in each mode, and
every escalation raised or cleared is a ``failover.decision`` entry naming its rule and
inputs. Per-send routing is not audited one by one (a drain would write thousands of
identical entries): the first decision of a kind stands for the ones that follow it until
the mode changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from airlock.audit import entries as audit_entries
from airlock.broadcaster import failover
from airlock.broadcaster.failover import LinkView, Mode, ModeState, RouteLinks
from airlock.broadcaster.service import Broadcaster
from airlock.config import FailoverConfig
from airlock.queue.errors import StoreUnavailable
from airlock.queue.states import State
from airlock.queue.store import Store

log = logging.getLogger("airlock.broadcaster.failover")

WATCH_S = 0.5
REPEAT_S = 30.0  # an escalation that holds is raised again this often (the sink
# de-duplicates delivery; this only bounds how often the queue counts it)
WAITING_STATES = ("queued", "sending")  # the escalation rules count what still waits
PERSIST_SCAN = 1000  # queued items looked at per pass for the outage-to-persist metric

RaiseAlert = Callable[[str, str, str, dict[str, Any] | None], Coroutine[Any, Any, bool]]
# (key, message, item id, severity, details): delivered in the background by the service
Deliver = Callable[[str, str, str | None, str, dict[str, Any] | None], None]


class Watch:
    def __init__(
        self,
        store: Store,
        evm: Broadcaster | None,
        config: FailoverConfig,
        *,
        raise_alert: RaiseAlert | None = None,
        deliver: Deliver | None = None,
        resolve_alert: Callable[[str], bool] | None = None,
        on_failover: Callable[[float], None] | None = None,
        on_persist: Callable[[float], None] | None = None,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.store = store
        self.evm = evm
        self.config = config
        self._raise = raise_alert
        self._deliver = deliver
        self._resolve = resolve_alert
        self._on_failover = on_failover
        self._on_persist = on_persist
        self._outage_wall_ms: int | None = None  # when the current outage was detected
        self._persist_seen: set[str] = set()
        self._clock_ms = clock_ms or store.now_ms
        self.mode: ModeState | None = None
        self._judged_at = 0
        self._routed: set[tuple[int, str]] = set()  # (mode since, rule) already audited
        self._escalated: dict[str, int] = {}  # key -> when last raised
        self._failed_over = False

    # -- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, tick: Callable[[], None] | None = None) -> None:
        while not stop.is_set():
            try:
                await self.check()
            except StoreUnavailable as exc:  # a shared queue's server: judged next pass
                log.warning("failover rules not applied this pass: %s", exc)
            if tick is not None:
                tick()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WATCH_S):
                    await stop.wait()

    async def check(self) -> None:
        self.judge_links()
        await self.judge_queue()

    # -- links ---------------------------------------------------------------------------

    def links(self) -> list[LinkView]:
        if self.evm is None:
            return []
        snaps = self.evm.monitor.snapshots()
        return [
            LinkView(
                name=relay.name,
                role="backup" if relay.config.role == "backup" else "primary",
                last_ack_ms=snaps[relay.name].last_ok_ms,
                missed_acks=snaps[relay.name].consecutive_failures,
                latency_ms=snaps[relay.name].latency_ms,
            )
            for relay in self.evm.relays
        ]

    def _link_now(self) -> int:
        """Link times are on the health monitor's (monotonic) clock, not the store's."""
        return self.evm.monitor.now_ms() if self.evm is not None else self._clock_ms()

    def judge_links(self) -> ModeState:
        now = self._link_now()
        self._judged_at = now
        links = self.links()
        unprobed = [v.name for v in links if v.last_ack_ms is None and v.missed_acks == 0]
        if unprobed and self.mode is None:
            # Start-up: a relay not yet probed is unknown, not down. No outage is declared
            # (or alerted) before every link has had its first probe.
            return ModeState(Mode.NORMAL, now, "not-probed-yet", {"unprobed": unprobed})
        state = failover.judge_mode(links, now, self.config, self.mode)
        previous, self.mode = self.mode, state
        if previous is None or previous.mode is not state.mode:
            self._decided(state.as_json())
            if state.mode is Mode.OUTAGE:
                self._failed_over = False
                self._outage_wall_ms = self._clock_ms()
                self._persist_seen.clear()
                log.warning("OUTAGE (%s): %s", state.rule, state.inputs)
                if self._deliver is not None:
                    message = f"outage: {state.rule}"
                    self._deliver("outage", message, None, "critical", state.inputs)
            elif previous is not None:
                self._outage_wall_ms = None
                log.info("links back: %s", state.rule)
                if self._resolve is not None:
                    self._resolve("outage")
        return state

    def route(self, priority: int) -> RouteLinks:
        """The relay role a send of ``priority`` may use now ("primary", "backup" or
        "none"); the EVM broadcaster's ``router``."""
        now = self._link_now()
        mode = self.mode
        if mode is None or now - self._judged_at >= WATCH_S * 1000:
            mode = self.judge_links()  # --once runs have no watch loop: judge when stale
        backups = self._backups_usable()
        decision = failover.route(priority, mode, now, self.config, backups)
        key = (mode.since_ms, decision.rule)
        if key not in self._routed and mode.rule != "not-probed-yet":
            self._routed.add(key)
            self._decided(decision.as_json() | {"priority": priority})
        if decision.links == "backup" and not self._failed_over:
            self._failed_over = True
            if self._on_failover is not None:
                self._on_failover((now - mode.since_ms) / 1000)
        return decision.links

    def _backups_usable(self) -> bool:
        if self.evm is None:
            return False
        return any(
            r.config.role == "backup" and self.evm.monitor.usable(r.name) for r in self.evm.relays
        )

    # -- queue ---------------------------------------------------------------------------

    def _observe_persisted(self) -> None:
        """Time from outage detection to each item persisted during it (the metric)."""
        start = self._outage_wall_ms
        if start is None or self._on_persist is None:
            return
        for item in self.store.items.select([State.QUEUED], limit=PERSIST_SCAN):
            if item.created_ms >= start and item.id not in self._persist_seen:
                self._persist_seen.add(item.id)
                self._on_persist((item.created_ms - start) / 1000)

    async def judge_queue(self) -> None:
        self._observe_persisted()
        waiting, oldest = 0, None
        for _kind, state, count, created in self.store.items.counts_by_kind():
            if state in WAITING_STATES:
                waiting += count
                if created is not None:  # never NULL in a group of rows (created_ms NOT NULL)
                    oldest = created if oldest is None else min(oldest, created)
        age = None if oldest is None else self._clock_ms() - oldest
        now = self._clock_ms()
        raised = {e.key: e for e in failover.escalations(waiting, age, self.config)}
        for key, escalation in raised.items():
            last = self._escalated.get(key)
            if last is None:
                self._decided(escalation.as_json())
            if last is None or now - last >= REPEAT_S * 1000:
                self._escalated[key] = now
                await self._alert_now(key, escalation.message, "critical", escalation.inputs)
        for key in sorted(set(self._escalated) - set(raised)):
            del self._escalated[key]
            self._decided({"decision": "escalation-cleared", "rule": key, "inputs": {}})
            if self._resolve is not None:
                self._resolve(key)

    # -- records -------------------------------------------------------------------------

    def _decided(self, data: dict[str, Any]) -> None:
        self.store.audit.record(audit_entries.FAILOVER_DECISION, data)

    async def _alert_now(
        self, key: str, message: str, severity: str, details: dict[str, Any]
    ) -> None:
        """Raised every pass while it holds; the sink's de-duplication decides what goes
        out (a repeat within the window only counts)."""
        if self._raise is not None:
            await self._raise(key, message, severity, details)
