"""The broadcaster as one service: the EVM side and the Bybit side on one event loop.

``airlock broadcaster run`` builds a :class:`Service` and runs it until SIGTERM/SIGINT.
What it adds to the two sides:

- **Stopping.** A stop is a request: each side finishes the step it is in (a wave already
  marked ``sending`` is sent and recorded; a Bybit pass stops before its next item) and
  returns; whatever is still ``sending`` when the process ends is resolved by the
  reconcile that every start runs first. After ``STOP_S`` the rest is cancelled:
  at worst an answer is not recorded, which is exactly the crash case, and crashes are
  safe by construction.
- **Notes for ``airlock status``.** A heartbeat, the pid and the time of the last
  reconcile, written at most every ``NOTE_S`` (one small transaction, not one per
  loop turn).
- **One failure stops the whole.** If a side ends with an error (a refused Bybit key at
  start), the other side is stopped too and the error reaches the caller: an operator
  must see it, not a half-working service.
- **The watch** (:mod:`airlock.broadcaster.watch`): the failover rules over the links and
  the queue, the EVM side's routing by relay role, escalations.
- **Observability**: ``/metrics``, ``/healthz`` and the live status page (``/``,
  ``/status.json``: what ``airlock status`` shows, its links from this service's own
  monitor) on loopback, and every alert of either side delivered through one
  :class:`~airlock.broadcaster.alerts.AlertSink` (signed webhook, command hook,
  de-duplicated in the queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from airlock.broadcaster import status as status_data
from airlock.broadcaster.alerts import AlertSink
from airlock.broadcaster.keeper import LaneKeeper
from airlock.broadcaster.metrics import Metrics, MetricsServer, service_checks
from airlock.broadcaster.results import PassResult
from airlock.broadcaster.service import Broadcaster
from airlock.broadcaster.venue import VenueBroadcaster, VenueResult
from airlock.broadcaster.watch import Watch
from airlock.config import BybitConfig, FailoverConfig, ServiceConfig
from airlock.queue.errors import StoreUnavailable
from airlock.queue.leases import bybit_account, evm_sender
from airlock.queue.store import Store
from airlock.relays.jsonrpc import started

log = logging.getLogger("airlock.broadcaster")

STOP_S = 15.0  # a stopping service finishes its steps within this, then cancels
NOTE_S = 2.0


@dataclass
class OnceResult:
    evm: PassResult = field(default_factory=PassResult)
    bybit: VenueResult | None = None


class Service:
    """Drains one queue through whichever sides are configured."""

    def __init__(
        self,
        store: Store,
        evm: Broadcaster | None,
        venue: VenueBroadcaster | None,
        *,
        failover: FailoverConfig | None = None,
        settings: ServiceConfig | None = None,
        sink: AlertSink | None = None,
        metrics: Metrics | None = None,
        clock_ms: Callable[[], int] | None = None,
        keeper: LaneKeeper | None = None,
        bybit: BybitConfig | None = None,
    ) -> None:
        if evm is None and venue is None:
            raise ValueError("a service needs an EVM side, a Bybit side, or both")
        self.store = store
        self.evm = evm
        self.venue = venue
        self.settings = settings or ServiceConfig(metrics_port=0)
        self.metrics = metrics
        self.sink = sink
        self.bybit = bybit  # the [bybit] section: the status page's venue row
        self._clock_ms = clock_ms or store.now_ms
        self._alert_tasks: set[asyncio.Task[bool]] = set()
        self.watch = Watch(
            store,
            evm,
            failover or FailoverConfig(),
            raise_alert=sink.raise_ if sink is not None else None,
            deliver=self._deliver if sink is not None else None,
            resolve_alert=sink.resolve if sink is not None else None,
            on_failover=metrics.observe_failover if metrics is not None else None,
            on_persist=metrics.observe_persist if metrics is not None else None,
            clock_ms=self._clock_ms,
        )
        for side in (evm, venue):
            if side is not None:
                side.metrics = metrics
                if sink is not None:
                    side.alert_hook = self._deliver
        if evm is not None:
            evm.router = self.watch.route
        self.keeper = keeper
        if keeper is not None:
            keeper.reach = keeper.reach or self.can_reach
            keeper.reaches_any = self.reaches_any
            keeper.on_taken = self._reconcile_taken
            for side in (evm, venue):
                if side is not None:
                    side.keeper = keeper

    # -- a shared queue: lanes ---------------------------------------------------------

    def can_reach(self, lane: str) -> bool:
        """A usable link for ``lane``: a relay of its chain, or the venue."""
        chain = evm_sender(lane)
        if chain is not None:
            evm = self.evm
            return evm is not None and any(
                r.chain_id == chain[0] and evm.monitor.usable(r.name) for r in evm.relays
            )
        if bybit_account(lane) is not None:
            return self.venue is not None and self.venue.connected()
        return False

    def reaches_any(self) -> bool:
        """Some link is usable: a relay, or the venue."""
        evm, venue = self.evm, self.venue
        if evm is not None and any(evm.monitor.usable(r.name) for r in evm.relays):
            return True
        return venue is not None and venue.connected()

    def _reconcile_taken(self) -> None:
        """A lane was taken: each side reconciles now, and sends for it only after."""
        if self.evm is not None:
            self.evm.reconcile_asked.set()
        if self.venue is not None:
            self.venue.reconnected.set()

    async def _lanes(self, stop: asyncio.Event) -> None:
        """The keeper's ticks until ``stop`` (a stop releases the lanes after the sides)."""
        keeper = self.keeper
        assert keeper is not None
        while not stop.is_set():
            try:
                keeper.apply(await asyncio.to_thread(keeper.cycle))
            except StoreUnavailable as exc:  # cut off from the queue: hold nothing
                log.warning("leases not renewed: %s", exc)
                keeper.lost()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(keeper.settings.tick_ms / 1000):
                    await stop.wait()

    async def _release_lanes(self) -> None:
        """Every lane let go at once for the others, once the sides have finished their
        steps (a lane let go while its wave was in flight would be reconciled by its
        taker and the wave's answers lost: safe, only wasteful)."""
        if self.keeper is None:
            return
        try:
            await asyncio.to_thread(self.keeper.release_all, "broadcaster stopping")
        except StoreUnavailable as exc:
            log.warning("lanes not released (they expire): %s", exc)

    def _deliver(
        self,
        key: str,
        message: str,
        item_id: str | None = None,
        severity: str = "warning",
        details: dict[str, Any] | None = None,
    ) -> None:
        """An alert delivered in the background through the sink (a slow webhook must
        not hold a side or the watch); :meth:`run` waits for them at the end."""
        assert self.sink is not None
        if item_id:
            details = {**(details or {}), "item": item_id}
        task = asyncio.get_running_loop().create_task(
            self.sink.raise_(key, message, severity, details, item=item_id or None)
        )
        self._alert_tasks.add(task)
        task.add_done_callback(self._alert_tasks.discard)

    @contextlib.asynccontextmanager
    async def started(self) -> AsyncIterator[Service]:
        """The relays' and the venue's HTTP clients open for the block."""
        async with contextlib.AsyncExitStack() as stack:
            if self.evm is not None:
                await stack.enter_async_context(started(self.evm.relays))
            if self.venue is not None:
                await stack.enter_async_context(self.venue.client)
            yield self

    async def run_once(self) -> OnceResult:
        """Drain, bump and reconcile until nothing more moves (``--once``). On a shared
        queue, first hold the lanes it can reach (waiting out the leases of a holder that
        died, bounded), and let go of them at the end."""
        result = OnceResult()
        stop = asyncio.Event()
        renewing = None
        if self.keeper is not None:
            await self._hold_lanes_once(self.keeper)
            renewing = asyncio.create_task(self._lanes(stop))  # renewed while it runs
        try:
            if self.evm is not None:
                result.evm = await self.evm.run_once()
            if self.venue is not None:
                result.bybit = await self.venue.run_once()
                result.evm.alerts += result.bybit.alerts
        finally:
            stop.set()
            if renewing is not None:
                await renewing
                await self._release_lanes()
        self.write_notes()
        return result

    async def _hold_lanes_once(self, keeper: LaneKeeper) -> None:
        """Probe the links, then tick until every lane with work is held here, or for two
        leases at most (a lane no link of this one reaches stays with the others)."""
        if self.evm is not None:
            await self.evm.monitor.probe_all()
        if self.venue is not None:
            await self.venue.connect()
        deadline = asyncio.get_running_loop().time() + 2 * keeper.settings.lease_ms / 1000
        while True:
            keeper.apply(await asyncio.to_thread(keeper.cycle))
            missing = await asyncio.to_thread(lambda: self.store.leases.work() - keeper.held)
            if not missing or asyncio.get_running_loop().time() > deadline:
                return
            await asyncio.sleep(keeper.settings.tick_ms / 1000)

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set; see the module doc for how it stops."""
        async with contextlib.AsyncExitStack() as stack:
            if self.metrics is not None and self.settings.metrics_port:
                settings = self.settings
                await stack.enter_async_context(
                    self.serving(settings.metrics_host, settings.metrics_port)
                )
            await self._serve(stop)

    def serving(
        self, host: str, port: int
    ) -> contextlib.AbstractAsyncContextManager[MetricsServer]:
        """The endpoint on ``host:port`` (loopback only; 0 picks a port) for the block:
        ``/metrics``, ``/healthz`` with the service's checks, and the status page.
        :meth:`run` opens it at ``[service] metrics_host:metrics_port``."""
        if self.metrics is None:
            raise ValueError("a service without metrics has no endpoint")
        return self.metrics.serve(
            host, port, checks=service_checks(self.store, self.metrics), status=self.status
        )

    async def status(self) -> dict[str, Any]:
        """What ``airlock status`` shows, its links from this service's own monitor and
        venue supervisor (read on the loop, no probe), the rest from the store (read in
        a worker thread)."""
        links = self.links()
        return await asyncio.to_thread(status_data.document, self.store, links)

    def links(self) -> dict[str, Any]:
        """The LINKS section as the service sees its links now."""
        relays, probes = [], {}
        if self.evm is not None:
            relays = [relay.config for relay in self.evm.relays]
            snapshots = self.evm.monitor.snapshots()
            probes = {name: status_data.live_relay_probe(s) for name, s in snapshots.items()}
        bybit = None
        if self.venue is not None:
            venue, b = self.venue, self.bybit
            connected = venue.supervisor.is_connected
            error = venue.client.auth_stopped or (None if connected else venue.last_error)
            probe = status_data.live_bybit_probe(
                connected, venue.client.offset_ms, venue.supervisor.latency_ms, error
            )
            account, url = (b.account, b.base_url) if b is not None else ("bybit", "-")
            bybit = status_data.bybit_row(account, url, venue.settings.recv_window_ms, probe)
        return status_data.links_section(relays, probes, bybit, probed=True)

    async def _serve(self, stop: asyncio.Event) -> None:
        parts: list[Awaitable[None]] = []
        if self.evm is not None:
            parts.append(self.evm.run(stop))
        if self.venue is not None:
            parts.append(self.venue.run(stop))
        parts.append(self._notes(stop))
        if self.keeper is not None:
            parts.append(self._lanes(stop))
        parts.append(self.watch.run(stop, self._tick if self.metrics is not None else None))
        tasks = [asyncio.ensure_future(part) for part in parts]
        log.info(
            "broadcaster started (pid %d): %d relay(s)%s",
            os.getpid(),
            len(self.evm.relays) if self.evm is not None else 0,
            ", bybit" if self.venue is not None else "",
        )
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                failure = None if task.cancelled() else task.exception()
                if failure is not None:
                    raise failure
        finally:
            stop.set()
            await self._finish(tasks)
            await self._release_lanes()
            if self._alert_tasks:
                await asyncio.gather(*self._alert_tasks, return_exceptions=True)
            self.write_notes()
            log.info("broadcaster stopped")

    def _tick(self) -> None:
        """Each watch pass: the loop is alive, and every link's availability."""
        assert self.metrics is not None
        self.metrics.beat()
        if self.evm is not None:
            self.metrics.set_links(self.evm.monitor.snapshots())
        if self.venue is not None:
            self.metrics.set_link("bybit", self.venue.supervisor.is_connected)
            if self.venue.stream is not None:  # the private stream: fills in real time
                self.metrics.set_link("bybit-stream", self.venue.stream.is_connected)

    async def _finish(self, tasks: Sequence[asyncio.Future[None]]) -> None:
        pending = [t for t in tasks if not t.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=STOP_S)
            for task in late:
                log.warning("stopping: a step did not finish in %.0f s; cancelled", STOP_S)
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for task in tasks:  # retrieve every outcome so none is reported as never awaited
            if task.done() and not task.cancelled():
                task.exception()

    async def _notes(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                self.write_notes()
            except StoreUnavailable as exc:  # a shared queue's server: written next time
                log.warning("service notes not written: %s", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(NOTE_S):  # not wait_for: see broadcaster.md
                    await stop.wait()

    def write_notes(self) -> None:
        """Heartbeat, pid and last reconcile, for ``airlock status``."""
        reconciled = max(
            (side.last_reconcile_ms for side in (self.evm, self.venue) if side is not None),
            default=0,
        )
        self.store.notes.set_many(
            {
                "broadcaster.heartbeat_ms": str(self._clock_ms()),
                "broadcaster.pid": str(os.getpid()),
                **({"broadcaster.last_reconcile_ms": str(reconciled)} if reconciled else {}),
            }
        )
