"""The Bybit side of the broadcaster: send queued orders and cancels, then reconcile.

One account, one :class:`~airlock.relays.bybit.BybitClient`. The rules it keeps are in
:mod:`airlock.broadcaster.venue_decide` (pure); this module is the shell around them:

- Before a request leaves, the item's intent is decrypted and its signature verified with
  the intent key taken from the HSM at start (never the PEM stored beside the intent): an
  intent that does not verify is quarantined and alerted, never sent.
- Each item is marked ``sending`` durably before its request leaves; requests go one at a
  time, most urgent first (cancels lead), paced by the client's rate-limit bookkeeping.
- Reconcile at start, on every reconnect and periodically: unresolved sends are looked up
  by orderLinkId; open orders and history (every page) give each sent order's status;
  executions (every page) give fills, stored once per execId.
- A refused key stops the account with one alert (the client's); nothing more is sent or
  read for it until the service restarts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airlock.audit import entries as audit_entries
from airlock.broadcaster import venue_decide as decide
from airlock.broadcaster.linklog import LinkLog
from airlock.broadcaster.results import AlertHook, alert_key
from airlock.broadcaster.venue_account import read_account
from airlock.broadcaster.venue_decide import Step
from airlock.errors import InvalidInput
from airlock.queue.errors import (
    IllegalTransition,
    PayloadTampered,
    StaleItems,
    StoreUnavailable,
)
from airlock.queue.items import Item, Kind
from airlock.queue.leases import bybit_lane
from airlock.queue.payloads import SignedIntent
from airlock.queue.states import State
from airlock.queue.store import Store
from airlock.queue.venue import VenueRef, VenueSeen
from airlock.relays.bybit import (
    BackoffPolicy,
    BybitAuthError,
    BybitClient,
    BybitError,
    ConnectionSupervisor,
    Placement,
)
from airlock.signer.bybit import (
    CancelIntent,
    OrderIntent,
    cancel_from_dict,
    intent_from_dict,
    order_link_id_for,
    verify_intent,
)
from airlock.vocab import Category

if TYPE_CHECKING:
    from airlock.broadcaster.keeper import LaneKeeper
    from airlock.broadcaster.metrics import Metrics
    from airlock.broadcaster.venue_stream import TradeLink, VenueStream

log = logging.getLogger("airlock.broadcaster.bybit")

DUE_BATCH = 100  # queued items read per dispatch step
IDLE_TICK_S = 0.2  # how often an idle service looks for new work in the queue
STORE_RETRY_S = 1.0  # a shared queue's server unreachable: try again after this
STOP_S = 10.0
ONCE_WAIT_MS = 15_000  # --once waits for a retry or an unresolved send this long at most


@dataclass
class VenueResult:
    """What one Bybit pass changed; ``--once`` stops when a pass changes nothing."""

    sent: int = 0  # requests that reached a decision (placed, rejected, cancel accepted)
    settled: int = 0  # state changes decided by reconcile
    requeued: int = 0  # back in the queue: nothing was processed
    quarantined: int = 0
    fills: int = 0  # fills seen for the first time
    alerts: list[str] = field(default_factory=list)
    halted: bool = False  # the pass stopped early (link down, rate limit, account stopped)

    @property
    def progress(self) -> int:
        return self.sent + self.settled + self.quarantined + self.fills

    def add(self, other: VenueResult) -> None:
        self.sent += other.sent
        self.settled += other.settled
        self.requeued += other.requeued
        self.quarantined += other.quarantined
        self.fills += other.fills
        self.alerts += other.alerts
        self.halted = self.halted or other.halted


@dataclass(frozen=True)
class VenueSettings:
    """The service's timing (``[bybit]`` in airlock.toml)."""

    recv_window_ms: int = 5000
    probe_s: float = 5.0
    reconcile_s: float = 30.0
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    category: Category = "linear"
    account: str = "bybit"  # the queue's name for the account
    account_s: float = 60.0  # positions and wallet over REST, also after every reconnect
    settle_coin: str = "USDT"  # whose open positions a complete listing asks for


class VenueBroadcaster:
    """Drains one store's Bybit items through one client. One event loop owns it."""

    def __init__(
        self,
        store: Store,
        client: BybitClient,
        intent_public_pem: bytes,
        settings: VenueSettings,
        *,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.store = store
        self.client = client
        self.settings = settings
        self._intent_pem = intent_public_pem
        self._clock_ms = clock_ms or store.now_ms  # the clock the store stamps sent_ms with
        self.supervisor = ConnectionSupervisor(
            client,
            settings.backoff,
            on_reconnect=self._on_reconnect,
            on_change=self._on_link,
            interval_s=settings.probe_s,
            category=settings.category,
        )
        self.reconnected = asyncio.Event()
        self.alerts: list[str] = []
        self.last_error: str | None = None  # why the venue was unreachable, last time
        self.alert_hook: AlertHook | None = None  # the service's alert delivery, if any
        self.metrics: Metrics | None = None
        self._stop: asyncio.Event | None = None  # set while serving: a stop parks the pass
        self._paused_until = 0
        self._failures = 0
        self.last_reconcile_ms = 0  # when the last reconcile started (the status notes)
        self._reconciled_ms = 0  # ... and ended (when the next is due)
        self._fills_from: int | None = None  # in-process watermark of executions read
        self.keeper: LaneKeeper | None = None  # a shared queue: the lanes this one holds
        self._generation = 0  # the keeper's, at the last reconcile
        self.link_log = LinkLog(store, "bybit", lambda: self.keeper.holder if self.keeper else None)
        self.stream: VenueStream | None = None  # the private stream, when [bybit.stream] is on
        self.trade: TradeLink | None = None  # the trade stream, with send_over = "ws"
        self.account_due = True  # positions and wallet: read at the next reconcile
        self._account_ms = 0

    # -- the loops ---------------------------------------------------------------------

    async def connect(self) -> bool:
        """Measure the venue clock and prove the key. A refused key raises
        :class:`BybitAuthError` (fail loud: retrying cannot fix a key); an unreachable
        venue returns False (the supervisor keeps trying)."""
        try:
            await self.supervisor.connect()
        except BybitAuthError:
            raise
        except BybitError as exc:
            self.last_error = str(exc)
            log.warning("bybit unreachable at start: %s", exc)
            return False
        log.info("bybit connected, venue clock offset %+d ms", self.client.offset_ms)
        return True

    async def run_once(self, max_idle_passes: int = 100) -> VenueResult:
        """Connect, then dispatch and reconcile until nothing more can progress: nothing is
        due, nothing is backing off for long, no send is waiting to be resolved. Gives up
        after ``max_idle_passes`` passes in a row without progress."""
        total = VenueResult()
        if not await self.connect():
            return total
        if self.keeper is not None:  # lanes just taken are sent for once reconciled
            total.add(await self.reconcile())
        idle = 0
        while idle < max_idle_passes:
            result = VenueResult()
            self.store.items.expire_due()
            result.add(await self.dispatch())
            result.add(await self.reconcile())
            total.add(result)
            idle = 0 if result.progress else idle + 1
            if result.progress == 0 and not await self._retry_soon():
                break
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set: dispatch when connected, reconcile at start, on
        reconnect and periodically; the private and trade streams beside it. Raises
        :class:`BybitAuthError` if the key is refused at the first connection, and
        :class:`StreamStartError` if the venue answers but its stream does not start."""
        self._stop = stop
        self.link_log.restart()
        answered = await self.connect()
        if not answered:
            self.link_log.first_view("bybit", "down", self.last_error)
        elif self.stream is not None:
            await self.stream.begin()  # loud: the venue answers, so must its stream
        watcher = asyncio.create_task(self._supervise(), name="airlock-bybit-supervisor")
        streaming = None
        if self.stream is not None:
            streaming = asyncio.create_task(self.stream.run(stop), name="airlock-bybit-stream")
        trading = None
        if self.trade is not None:
            trading = asyncio.create_task(self.trade.run(stop), name="airlock-bybit-trade")
        try:
            reconcile = True
            while not stop.is_set():
                _raise_if_failed(streaming)
                if self.reconnected.is_set():
                    self.reconnected.clear()
                    reconcile = True
                try:
                    if reconcile or self._reconcile_due():
                        await self.reconcile()
                        reconcile = False
                    self.store.items.expire_due()
                    result = await self.dispatch(yield_to_reconcile=True)
                except StoreUnavailable as exc:  # a shared queue's server went away
                    log.warning("the queue is unreachable, retrying: %s", exc)
                    if self.keeper is not None:
                        self.keeper.lost()
                    reconcile = True
                    await _wait_any(stop, asyncio.Event(), STORE_RETRY_S)
                    continue
                if result.sent and not result.halted:
                    continue  # a backlog: keep going
                await _wait_any(stop, self.reconnected, IDLE_TICK_S)
        finally:
            tasks = [t for t in (watcher, streaming, trading) if t is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _supervise(self) -> None:
        try:
            await self.supervisor.run()
        except BybitAuthError as exc:
            log.error("bybit key refused; the account is stopped: %s", exc.reason)

    def _on_link(self, connected: bool, why: str) -> None:
        old, new = ("down", "up") if connected else ("up", "down")
        self.link_log.changed("bybit", old, new, why)

    async def _on_reconnect(self) -> None:
        log.info("bybit reachable again: reconciling, then sending")
        self._paused_until = 0
        self._failures = 0
        self.reconnected.set()

    def _reconcile_due(self) -> bool:
        """``reconcile_s`` after the last reconcile *ended*: a reconcile slower than the
        interval (hundreds of sent orders to follow on a loaded machine) must leave time
        to send, not start again at once."""
        elapsed = self._clock_ms() - self._reconciled_ms
        return elapsed >= self.settings.reconcile_s * 1000

    async def _retry_soon(self) -> bool:
        """In ``--once`` runs: wait (a few seconds at most) for items backing off and for
        sends the venue may still show; False when there is nothing worth waiting for."""
        if not self._usable():
            return False
        now = self._clock_ms()
        grace = self.settings.recv_window_ms + decide.LOOKUP_GRACE_MS
        waits = [i.retry_ms for i, _ in self._in_states([State.QUEUED]) if i.retry_ms]
        waits += [
            (i.sent_ms or now) + grace + 1
            for i, r in self._in_states([State.SENDING])
            if r.action == "order"
        ]
        if not waits:
            return False
        wait_ms = min(waits) - now
        if wait_ms > ONCE_WAIT_MS:
            return False
        await asyncio.sleep(max(wait_ms / 1000, IDLE_TICK_S / 2))
        return True

    def _usable(self) -> bool:
        return self.client.auth_stopped is None and self.supervisor.is_connected

    def connected(self) -> bool:
        """The venue is reachable with a working key (what a Bybit lane needs)."""
        return self._usable()

    def _accounts(self, sendable: bool = False) -> list[str] | None:
        """The Bybit accounts this broadcaster may reconcile (or send for): every one
        (None) unless it shares the queue with others."""
        return None if self.keeper is None else self.keeper.bybit_accounts(sendable)

    def _in_states(self, states: list[State]) -> list[tuple[Item, VenueRef]]:
        pairs = self.store.venue.in_states(states)
        accounts = self._accounts()
        return pairs if accounts is None else [p for p in pairs if p[0].account in accounts]

    # -- dispatch ----------------------------------------------------------------------

    async def dispatch(self, *, yield_to_reconcile: bool = False) -> VenueResult:
        """Send what is due, most urgent first, one request at a time, until the queue is
        empty or an answer says to stop (link down, rate limit, account stopped) — or,
        with ``yield_to_reconcile``, until a periodic reconcile is due (a long drain at
        the venue's rate limit must not hold back fills and status changes)."""
        result = VenueResult()
        handled = 0  # a call sends at least one item before it yields: the drain never starves
        while self._usable() and self._clock_ms() >= self._paused_until:
            due = self.store.venue.due(DUE_BATCH, self._accounts(sendable=True))
            if not due:
                break
            moved = 0
            for item, ref in due:
                if yield_to_reconcile and handled and self._reconcile_due():
                    return result
                handled += 1
                if self._stop is not None and self._stop.is_set():
                    return result  # stopping: what is not yet marked sending stays queued
                step = await self._dispatch_one(item, ref, result)
                moved += step is not None and bool(step.path)
                if step is not None and step.halt:
                    result.halted = True
                    return result
            if not moved:
                break  # everything due is waiting on something else
        return result

    async def _create(self, intent: OrderIntent) -> Placement:
        """Over the trade stream when it is configured and up, else REST."""
        placed = await self.trade.sender.create_order(intent) if self.trade else None
        return placed or await self.client.create_order(intent)

    async def _cancel(self, category: Category, symbol: str, link_id: str) -> Placement:
        sender = self.trade.sender if self.trade else None
        placed = await sender.cancel_order(category, symbol, link_id) if sender else None
        return placed or await self.client.cancel_order(category, symbol, link_id)

    async def _dispatch_one(self, item: Item, ref: VenueRef, result: VenueResult) -> Step | None:
        checked = self._checked_intent(item, ref, result)
        if checked is None:
            return None
        if isinstance(checked, CancelIntent):
            wait = self._cancel_precheck(item, ref)
            if wait is not None:
                if wait.path:
                    self._record(item, wait, result)
                return wait
        try:
            sending = self.store.venue.begin(item, f"sending to bybit ({ref.action})")
        except StaleItems:
            return None
        if isinstance(checked, OrderIntent):
            placement = await self._create(checked)
            step = decide.judge_order_send(placement)
        else:
            placement = await self._cancel(checked.category, checked.symbol, checked.order_link_id)
            step = decide.judge_cancel_send(placement)
        if self.metrics is not None:
            self.metrics.observe_send("bybit", str(placement.outcome))
        seen = None
        if placement.order_id is not None and ref.action == "order":
            seen = VenueSeen(order_id=placement.order_id)
        if step.lookup:
            step, seen = await self._look_up(sending, ref, step)
        self._record(sending, step, result, seen)
        self._note_link(step)
        return step

    def _checked_intent(
        self, item: Item, ref: VenueRef, result: VenueResult
    ) -> OrderIntent | CancelIntent | None:
        """The item's intent if its signature verifies with the HSM's intent key and it
        matches the item; otherwise the item is quarantined (or already was) and alerted."""
        try:
            payload = self.store.items.payload(item.id)
        except PayloadTampered as exc:
            self._alert(result, f"item {item.id} quarantined: {exc}", item.id)
            result.quarantined += 1
            return None
        why = _intent_problem(item, ref, payload, self._intent_pem)
        if isinstance(why, OrderIntent | CancelIntent):
            return why
        try:
            self.store.venue.record(item, [State.QUARANTINED], f"intent refused: {why}")
        except StaleItems:
            return None
        result.quarantined += 1
        self._alert(result, f"item {item.id} quarantined, never sent: intent {why}", item.id)
        return None

    def _cancel_precheck(self, item: Item, ref: VenueRef) -> Step | None:
        target = self.store.venue.order_by_link(ref.link_id)
        if target is None:  # cancel_order never makes one: a human must look
            why = f"cancel of orderLinkId {ref.link_id}, which no queued order has"
            return Step((State.NEEDS_OPERATOR,), why, alert=why)
        order, _ = target
        if order.state is State.QUEUED:
            try:
                self.store.items.cancel(order.id, "cancel-local: the order had not left")
            except IllegalTransition:  # taken by a send meanwhile: decide next pass
                return Step(reason="the order is being sent; the cancel waits")
        return decide.cancel_before_send(order.state)

    async def _look_up(
        self, item: Item, ref: VenueRef, step: Step
    ) -> tuple[Step, VenueSeen | None]:
        """After an answer that may hide a placed order: ask the venue by orderLinkId."""
        try:
            row = await self.client.order_by_link_id(ref.category, ref.link_id, symbol=ref.symbol)
        except BybitError as exc:
            return Step(reason=f"{step.reason}; lookup failed ({exc.reason}): next pass"), None
        if row is None:
            return Step(reason=f"{step.reason}; not visible yet: looked up next pass"), None
        found = decide.judge_order_row(item.state, row)
        reason = f"{step.reason}; found on the venue: {found.reason}"
        return Step(found.path, reason, alert=found.alert), decide.seen_of(row)

    def _record(
        self,
        item: Item,
        step: Step,
        result: VenueResult,
        seen: VenueSeen | None = None,
        *,
        settling: bool = False,
    ) -> None:
        retry_ms = None
        if step.retry:
            retry_ms = self._clock_ms() + int(self.settings.backoff.delay(self._failures) * 1000)
        try:
            self.store.venue.record(item, list(step.path), step.reason, seen, retry_ms=retry_ms)
        except StaleItems:
            return
        if step.path and settling:
            result.settled += 1  # reconcile changed it (a resend it queued is due at once)
        elif step.path and step.path[-1] is State.QUEUED:
            result.requeued += 1  # nothing was processed: not progress
        elif step.path:
            result.sent += 1
        if step.alert:
            self._alert(result, f"item {item.id}: {step.alert}", item.id)

    def _note_link(self, step: Step) -> None:
        """Consecutive 'not processed' answers pause the whole account with backoff."""
        if step.halt:
            self._paused_until = self._clock_ms() + int(
                self.settings.backoff.delay(self._failures) * 1000
            )
            self._failures += 1
        elif step.path:
            self._failures = 0

    # -- reconcile ---------------------------------------------------------------------

    async def reconcile(self) -> VenueResult:
        """Resolve unknown sends, follow sent orders to their final state, read new fills."""
        result = VenueResult()
        self.last_reconcile_ms = self._clock_ms()
        if self.client.auth_stopped is not None:
            return result
        held = self._accounts()
        if held == []:
            return result  # a shared queue, and no Bybit lane held here
        if self.keeper is not None and self.keeper.generation != self._generation:
            self._generation = self.keeper.generation
            self._fills_from = None  # a lane taken: read fills from what the store knows
        try:
            await self._resolve_sending(result)
            await self._follow_sent(result)
            self._settle_cancels(result)
            await self._read_fills(result)
            # Fills found by polling were missed by the stream: so were their positions.
            self.account_due = self.account_due or result.fills > 0
            if self.account_due or self._account_age_ms() >= self.settings.account_s * 1000:
                await read_account(self)
        except BybitAuthError:
            result.halted = True  # the client alerted once and stopped the account
        except BybitError as exc:
            log.info("bybit reconcile incomplete, resumed next pass: %s", exc)
            result.halted = True
        if self.keeper is not None and held is not None and not result.halted:
            self.keeper.reconciled({bybit_lane(a) for a in held}, self._generation)
        if self.metrics is not None:
            self.metrics.observe_reconcile(
                "bybit",
                "failed" if result.halted else "settled",
                1 if result.halted else result.settled,
            )
            if result.fills:
                self.metrics.observe_reconcile("bybit", "fills", result.fills)
        self._reconciled_ms = self._clock_ms()
        return result

    async def _resolve_sending(self, result: VenueResult) -> None:
        for item, ref in self._in_states([State.SENDING]):
            if ref.action == "cancel":
                step = Step((State.QUEUED,), "cancel outcome unknown after a restart: sent again")
                self._record(item, step, result)
                continue
            row = await self.client.order_by_link_id(ref.category, ref.link_id, symbol=ref.symbol)
            if row is None:
                sent_ms = item.sent_ms or item.updated_ms
                step = decide.judge_missing(
                    item.state, sent_ms, self._clock_ms(), self.settings.recv_window_ms
                )
                self._record(item, step, result, settling=True)
            else:
                self._settle(item, decide.judge_order_row(item.state, row), row, result)

    async def _follow_sent(self, result: VenueResult) -> None:
        live = [
            (i, r)
            for i, r in self._in_states([State.SENT, State.NEEDS_OPERATOR])
            if r.action == "order"
        ]
        if not live:
            return
        now = self.client.server_now_ms()
        oldest = min((i.sent_ms or i.created_ms) for i, _ in live)
        start = max(oldest - decide.FILL_OVERLAP_MS, now - decide.MAX_SPAN_MS + 1)
        listings = []
        for category in sorted({r.category for _, r in live}):
            listings.append(await self.client.open_orders(category, limit=50))
            listings.append(
                await self.client.history(category, start_ms=start, end_ms=now, limit=50)
            )
        rows = decide.newest_rows(*listings)
        for item, ref in live:
            row = rows.get(ref.link_id)
            if row is not None:
                self._settle(item, decide.judge_order_row(item.state, row), row, result)

    def apply_order_rows(self, rows: Sequence[dict[str, Any]]) -> VenueResult:
        """Order rows pushed by the private stream: each sent order they name moves at
        once, as a reconcile would move it (an order still ``sending`` waits for its own
        answer or lookup). Cancels whose order is now final settle too."""
        result = VenueResult()
        newest = decide.newest_rows(list(rows))
        found = self.store.venue.items_by_link(sorted(newest))
        for link_id, item_id in found.items():
            pair = self.store.venue.of_item(item_id)
            if pair is None or pair[1].action != "order":
                continue
            item = pair[0]
            if item.state in (State.SENT, State.NEEDS_OPERATOR):
                row = newest[link_id]
                self._settle(item, decide.judge_order_row(item.state, row), row, result)
        self._settle_cancels(result)
        return result

    def apply_fill_rows(self, rows: Sequence[dict[str, Any]]) -> int:
        """Executions pushed by the private stream, stored at once; each execId once, with
        what REST reconcile stores (the same table, keyed by execId)."""
        links = sorted({str(r.get("orderLinkId") or "") for r in rows} - {""})
        item_ids = self.store.venue.items_by_link(links)
        found = [f for r in rows if (f := decide.fill_of(r, item_ids)) is not None]
        new = self.store.venue.record_fills(found)
        if new and self.metrics is not None:
            self.metrics.observe_reconcile("bybit", "fills", len(new))
        return len(new)

    def _settle_cancels(self, result: VenueResult) -> None:
        for item, ref in self._in_states([State.SENT]):
            if ref.action != "cancel":
                continue
            target = self.store.venue.order_by_link(ref.link_id)
            if target is None:
                continue
            order, order_ref = target
            step = decide.judge_cancel_target(order.state, order_ref.status)
            if step.path:
                self._record(item, step, result, settling=True)

    def _settle(self, item: Item, step: Step, row: dict[str, Any], result: VenueResult) -> None:
        self._record(item, step, result, decide.seen_of(row), settling=True)

    async def _read_fills(self, result: VenueResult) -> None:
        now = self.client.server_now_ms()
        start = self._fills_from
        if start is None:
            start = decide.fills_window(now, self.store.venue.latest_fill_ms(), self._oldest_sent())
        categories = {r.category for _, r in self.store.venue.all(limit=1000)}
        rows = []
        for category in sorted(categories or {self.settings.category}):
            rows += await self.client.executions(category, start_ms=start, end_ms=now)
        links = sorted({str(r.get("orderLinkId") or "") for r in rows} - {""})
        item_ids = self.store.venue.items_by_link(links)
        found = [f for r in rows if (f := decide.fill_of(r, item_ids)) is not None]
        new = self.store.venue.record_fills(found)
        result.fills += len(new)
        self._fills_from = max(start, now - decide.FILL_OVERLAP_MS)

    def _oldest_sent(self) -> int | None:
        sent = [i.sent_ms for i, _ in self.store.venue.all() if i.sent_ms is not None]
        return min(sent) if sent else None

    # -- alerts ------------------------------------------------------------------------

    def _alert(
        self, result: VenueResult, message: str, item_id: str | None = None, key: str = ""
    ) -> None:
        log.warning("ALERT %s", message)
        result.alerts.append(message)
        self.alerts.append(message)
        key = key or alert_key("bybit", item_id, message)
        if self.alert_hook is not None:
            self.alert_hook(key, message, item_id)
        else:  # the entry the service's delivery would write (docs/audit-format.md §1.4)
            data = {"key": key, "message": message, "severity": "warning"}
            self.store.audit.record(audit_entries.ALERT, data, item_id)

    def alert_once(self, key: str, message: str) -> None:
        """An alert of the account as a whole (its stream stopped, DCP refused): one key,
        de-duplicated by the service's delivery."""
        self._alert(VenueResult(), message, key=key)

    def _account_age_ms(self) -> int:
        return self._clock_ms() - self._account_ms

    def account_read(self) -> None:
        """The REST pass over positions and wallet is done (:func:`read_account`)."""
        self.account_due = False
        self._account_ms = self._clock_ms()

    def alert_from_client(self, message: str) -> None:
        """The client's one alert when the key is refused (wired as its ``on_alert``)."""
        self._alert(VenueResult(), message, key="bybit-account-stopped")


def _raise_if_failed(task: asyncio.Task[None] | None) -> None:
    """The stream's task ended with an error (a refused key): the service must stop."""
    if task is not None and task.done() and not task.cancelled():
        error = task.exception()
        if error is not None:
            raise error


def _intent_problem(
    item: Item, ref: VenueRef, payload: dict[str, Any], trusted_pem: bytes
) -> OrderIntent | CancelIntent | str:
    """The verified intent, or why it is refused."""
    try:
        signed = SignedIntent.of(payload)
        if item.kind is Kind.BYBIT_ORDER:
            intent: OrderIntent | CancelIntent = intent_from_dict(signed.intent)
            expected_link = order_link_id_for(item.idempotency_key)
        else:
            intent = cancel_from_dict(signed.intent)
            expected_link = ref.link_id
    except (InvalidInput, ValueError) as exc:
        return f"malformed: {exc}"
    if not verify_intent(trusted_pem, intent, signed.signature):
        return "signature does not verify with the HSM intent key"
    if intent.order_link_id != expected_link or intent.order_link_id != ref.link_id:
        return "orderLinkId does not match the item"
    if (intent.category, intent.symbol) != (ref.category, ref.symbol):
        return "category or symbol does not match the item"
    return intent


async def _wait_any(stop: asyncio.Event, other: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(other.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
