"""The Bybit side in real time: the private stream's messages into the store at once.

:class:`VenueStream` runs beside :meth:`VenueBroadcaster.run`. It keeps the account's
private stream up (:class:`~airlock.relays.stream_supervisor.StreamSupervisor`: backoff,
stale detection, re-auth and re-subscribe on every reconnect) and applies each message as
it comes: an execution is stored once (by execId, the same table REST reconcile fills),
an order's status change moves its item (audited, on the event stream), positions and
the wallet replace what the store holds when newer. After every (re)connect it asks the
venue side for a full REST pass over the gap — orders, executions with full paging,
positions, wallet — whose results merge with the stream's by the same keys. When
``[bybit] dcp_window_s`` is set, each connect also arms the venue's Disconnect Cancel
Protection for ``dcp_product``.

Start-up rule: if the venue answered REST at start but its stream refuses the key or is
no WebSocket (a wrong ``[bybit.stream] url``), the service fails loud; if the link fails
(the venue unreachable, the connection refused or silent past ``auth_timeout_seconds``:
an outage), the stream keeps trying.
A key refused later stops the stream with one alert until ``airlock bybit resume``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from airlock.broadcaster.account_views import BadRow, Seen, balances_of, position_of
from airlock.config import StreamConfig
from airlock.queue.account import RESUME_NOTE
from airlock.queue.errors import StoreUnavailable
from airlock.relays.backoff import Backoff, FixedDelay, FullJitter
from airlock.relays.bybit_stream import DCP_TOPICS, TOPICS, BybitPrivateStream, StreamMessage
from airlock.relays.bybit_trade import BybitTradeStream
from airlock.relays.errors import BybitError, StreamStartError
from airlock.relays.stream_supervisor import StreamProtocol, StreamSettings, StreamSupervisor
from airlock.relays.ws import Connector

if TYPE_CHECKING:
    from airlock.broadcaster.venue import VenueBroadcaster

log = logging.getLogger("airlock.broadcaster.bybit")

RESUME_POLL_S = 1.0  # how often a running stream looks for `airlock bybit resume`
# What a first attempt's failure says when the venue answered but the stream's settings
# are wrong (relays/ws.py words them): a failure to fix, not to wait out.
MISCONFIGURED = ("not a WebSocket", "redirected")


def backoff_of(config: StreamConfig) -> Backoff:
    if config.backoff == "fixed":
        return FixedDelay(config.backoff_base_seconds)
    return FullJitter(config.backoff_base_seconds, config.backoff_cap_seconds)


class VenueStream:
    """The private stream of one venue side (see the module doc)."""

    def __init__(
        self,
        venue: VenueBroadcaster,
        url: str,
        config: StreamConfig,
        *,
        dcp: tuple[str, int] | None = None,
        connect: Connector | None = None,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.venue = venue
        self.config = config
        self._dcp = dcp  # (product, window_s) to arm at every connect
        self._clock_ms = clock_ms or venue.store.now_ms
        topics = (*TOPICS, DCP_TOPICS[dcp[0]]) if dcp is not None else TOPICS
        self.protocol = BybitPrivateStream(
            url, venue.client, deliver=self.apply, on_gap=self._gap, topics=topics
        )
        self._policy = backoff_of(config)
        self.supervisor = supervisor_for(self.protocol, config, self._alert, connect)
        self.messages = 0  # applied since the start (the status page, tests)
        self._started = False
        self._resumed = asyncio.Event()
        self._tasks: set[asyncio.Future[None]] = set()  # alerts on their way

    @property
    def is_connected(self) -> bool:
        return self.supervisor.is_connected

    async def begin(self) -> None:
        """The first attempt, when the venue answered REST. Loud (raises
        :class:`StreamStartError`) when the venue's answer says the configuration is wrong:
        the key refused, or no WebSocket at the URL (404, a redirect). A link that fails
        meanwhile (refused, reset, silent: the outage is back) is left to :meth:`run`,
        which keeps trying: an outage must never stop the service."""
        try:
            await self.supervisor.start()
        except StreamStartError as exc:
            if exc.refused or any(sign in exc.reason for sign in MISCONFIGURED):
                raise
            log.warning("bybit stream not up at start (%s): retrying", exc.reason)
            return
        self._started = True

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop``; not started yet (the venue was unreachable at start), keep
        trying with the backoff first. A key refused then stops the stream with one alert
        until :meth:`resume`, as a refusal while running does."""
        if not self._started:
            self._started = await start_until_up(
                self.supervisor, self._policy, stop, self._resumed, self._alert, "stream"
            )
        if not stop.is_set():
            watch = asyncio.create_task(self._watch_resume(stop), name="airlock-bybit-resume")
            try:
                await self.supervisor.run(stop)
            finally:
                watch.cancel()
                await asyncio.gather(watch, return_exceptions=True)

    async def _watch_resume(self, stop: asyncio.Event) -> None:
        """``airlock bybit resume`` writes a note; a stopped stream resumes on it."""
        seen = self._resume_note()
        while not stop.is_set():
            await _first(stop.wait(), asyncio.sleep(RESUME_POLL_S))
            note = self._resume_note()
            if note > seen:
                seen = note
                log.info("bybit: resumed by the operator")
                self.resume()

    def _resume_note(self) -> int:
        try:
            raw = self.venue.store.notes.get(RESUME_NOTE)
        except StoreUnavailable:
            return 0
        return int(raw) if raw and raw.isdigit() else 0

    def resume(self) -> None:
        """The operator fixed the key (``airlock bybit resume``): REST, this stream and
        the trade stream (if any) may connect again."""
        self.venue.client.reset_auth()
        self.supervisor.resume()
        self._resumed.set()
        if self.venue.trade is not None:
            self.venue.trade.resume()

    # -- messages ----------------------------------------------------------------------

    async def apply(self, message: StreamMessage) -> None:
        """One pushed message into the store; a store that is away loses nothing (the
        REST pass after the next reconnect covers it)."""
        try:
            self._apply(message)
        except StoreUnavailable as exc:
            log.warning("bybit stream: %s not stored (the next REST pass covers it): %s",
                        message.topic, exc)  # fmt: skip
        self.messages += 1

    def _apply(self, message: StreamMessage) -> None:
        topic, rows = message.topic, list(message.rows)
        if topic in ("execution", "execution.fast"):
            self.venue.apply_fill_rows(rows)
        elif topic == "order":
            self.venue.apply_order_rows(rows)
        elif topic == "position":
            self._positions(message)
        elif topic == "wallet":
            self._wallet(message)
        elif topic.startswith("dcp."):
            log.info("bybit DCP: %s", rows)

    def _seen(self, message: StreamMessage) -> Seen:
        now = self._clock_ms()
        return Seen(self.venue.settings.account, "stream", now, message.creation_ms or now)

    def _positions(self, message: StreamMessage) -> None:
        seen, found = self._seen(message), []
        for row in message.rows:
            try:
                found.append(position_of(row, self.venue.settings.category, seen))
            except BadRow as exc:
                log.warning("bybit stream: a position row not stored: %s", exc)
        self.venue.store.account.put_positions(found)

    def _wallet(self, message: StreamMessage) -> None:
        seen = self._seen(message)
        for wallet in message.rows:
            try:
                self.venue.store.account.put_balances(balances_of(wallet, seen))
            except BadRow as exc:
                log.warning("bybit stream: a wallet row not stored: %s", exc)

    # -- around each connection --------------------------------------------------------

    async def _gap(self, first: bool) -> None:
        """(Re)subscribed: arm DCP, and have the venue side's loop run a full REST pass
        over the gap at once (it merges by execId and orderLinkId with what came here)."""
        if self._dcp is not None:
            await self._arm_dcp(*self._dcp)
        self.venue.account_due = True
        self.venue.reconnected.set()
        log.info("bybit stream %s: REST pass over the gap", "up" if first else "back")

    async def _arm_dcp(self, product: str, window_s: int) -> None:
        try:
            await self.venue.client.set_dcp(product, window_s)
        except BybitError as exc:
            message = f"Disconnect Cancel Protection not armed for {product}: {exc}"
            self.venue.alert_once("bybit-dcp", message)

    def _alert(self, message: str) -> None:
        """The stream's key was refused: the account stops as a refused REST request stops
        it, with the same single alert (whichever side saw the refusal first raised it)."""
        _stop_account(self.venue, message, self._tasks)


def supervisor_for(
    protocol: StreamProtocol,
    config: StreamConfig,
    on_alert: Callable[[str], None],
    connect: Connector | None = None,
) -> StreamSupervisor:
    """A supervisor with ``[bybit.stream]``'s bounds and backoff (both streams use it)."""
    settings = StreamSettings(
        auth_timeout_s=config.auth_timeout_seconds,
        ping_s=config.ping_seconds,
        stale_s=config.stale_seconds,
    )
    return StreamSupervisor(
        protocol, policy=backoff_of(config), settings=settings, connect=connect,
        on_alert=on_alert,
    )  # fmt: skip


async def start_until_up(
    supervisor: StreamSupervisor,
    policy: Backoff,
    stop: asyncio.Event,
    resumed: asyncio.Event,
    on_refused: Callable[[str], None],
    what: str,
) -> bool:
    """Start attempts spaced by ``policy`` until one succeeds (True) or ``stop`` (False).
    A refused key is not retried: ``on_refused`` (the account's one alert), then nothing
    until ``resumed`` is set (``airlock bybit resume``)."""
    attempt = 0
    while not stop.is_set():
        try:
            await supervisor.start()
            return True
        except StreamStartError as exc:
            if exc.refused:
                on_refused(exc.reason)
                resumed.clear()
                await _first(stop.wait(), resumed.wait())
                continue
            log.info("bybit %s not up yet (%s), retrying", what, exc.reason)
            await _first(stop.wait(), asyncio.sleep(policy.delay(attempt)))
            attempt += 1
    return False


async def _first(*waits: Coroutine[Any, Any, Any]) -> None:
    """Wait for the first of ``waits`` to finish; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class TradeLink:
    """The trade stream (``[bybit] send_over = "ws"``): orders and cancels over it while it
    is up, REST otherwise (:mod:`airlock.relays.bybit_trade`). Optional by nature: a trade
    stream that does not come up at start is retried, never fatal."""

    def __init__(
        self,
        venue: VenueBroadcaster,
        url: str,
        config: StreamConfig,
        connect: Connector | None = None,
        reply_timeout_s: float = 5.0,
    ) -> None:  # fmt: skip
        self.sender = BybitTradeStream(url, venue.client, reply_timeout_s=reply_timeout_s)
        self._venue = venue
        self._policy = backoff_of(config)
        self._tasks: set[asyncio.Future[None]] = set()
        self._resumed = asyncio.Event()
        self.supervisor = supervisor_for(self.sender, config, self._alert, connect)
        self.sender.supervisor = self.supervisor

    async def run(self, stop: asyncio.Event) -> None:
        """Orders go over REST until the trade stream is up; then serve it until ``stop``."""
        up = await start_until_up(
            self.supervisor, self._policy, stop, self._resumed, self._alert, "trade stream"
        )
        if up:
            await self.supervisor.run(stop)

    def resume(self) -> None:
        self.supervisor.resume()
        self._resumed.set()

    def _alert(self, message: str) -> None:
        _stop_account(self._venue, message, self._tasks)


def _stop_account(venue: VenueBroadcaster, message: str, tasks: set[asyncio.Future[None]]) -> None:
    """A stream's key was refused: stop the account (REST too) with its one alert."""
    task = asyncio.ensure_future(venue.client.stop_account(message))
    tasks.add(task)
    task.add_done_callback(tasks.discard)
