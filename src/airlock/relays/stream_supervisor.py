"""Keeping one real-time stream up: connect, authenticate, subscribe, ping, reconnect.

Venue-agnostic: what the frames mean is a :class:`StreamProtocol`'s business (the Bybit
private stream is one); *when* to connect, how long to wait, when a silent connection is
dead and what a refused key means is decided here, once, for every stream. The rules,
each one a lesson from the libraries this project learned from (pybit, nautilus, ccxt):

- **Fail loud at start.** :meth:`StreamSupervisor.start` makes one attempt: connected,
  authenticated and subscribed within ``auth_timeout_s``, or
  :class:`~airlock.relays.errors.StreamStartError` naming the (redacted) URL and why. A
  wrong URL or a bad key is an operator's mistake; a loop would only hide it.
- **Auth before subscribe, on every connection.** ``subscribe`` is called only after
  ``authenticate`` returned (the ack was read): a venue answers an early subscribe with
  "Request not authorized" (nautilus #2097). Every reconnect authenticates and subscribes
  again, then calls ``on_connected(first=False)``: the caller's REST pass over the gap
  (venues send no snapshot on subscribe).
- **A refused key stops the stream.** Retrying cannot fix a key: the stream stops,
  ``stopped`` says why, ``on_alert`` is called once, and nothing connects again until
  :meth:`StreamSupervisor.resume` (the operator fixed the key), whose attempt is immediate.
- **Silence is a failure.** The supervisor sends ``ping()`` every ``ping_s``; a connection
  with no frame at all (pong or message) for ``stale_s`` is closed and replaced.
- **Backoff between attempts**, from any :class:`~airlock.relays.backoff.Backoff`; the
  attempt count starts again after a connection that authenticated.
- **Nothing outlives its connection.** Pings are sent by the connection's own read loop
  (no timer task that can leak, as pybit's did); cancelling :meth:`StreamSupervisor.run`
  closes the connection. Every wait is the injected ``clock`` and ``sleep`` (the
  connection's receive timeouts included), so tests run without real waits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from airlock.errors import AirlockError
from airlock.redact import redact_url
from airlock.relays.backoff import Backoff
from airlock.relays.errors import (
    StreamAuthError,
    StreamError,
    StreamStartError,
    StreamTransportError,
)
from airlock.relays.ws import Connector, WsConnection, aiohttp_connector

__all__ = [
    "StreamAuthError",
    "StreamError",
    "StreamProtocol",
    "StreamSettings",
    "StreamStartError",
    "StreamSupervisor",
    "StreamTransportError",
]

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

MIN_WAIT_S = 0.001
"""The shortest receive the read loop asks for: a handler that ran past a deadline still
gives frames already waiting in the socket a chance before the connection is judged."""


@dataclass(frozen=True)
class StreamSettings:
    """The supervisor's three bounds, in seconds.

    ``auth_timeout_s`` bounds connect + authenticate + subscribe of each attempt;
    ``ping_s`` spaces the application-level pings (Bybit asks for 20 s); ``stale_s`` is how
    long a connection may stay silent (no pong, no message) before it is replaced. It must
    exceed ``ping_s``, or a quiet but healthy stream would be judged before its pong came.
    """

    auth_timeout_s: float = 10.0
    ping_s: float = 20.0
    stale_s: float = 45.0

    def __post_init__(self) -> None:
        if not (self.auth_timeout_s > 0 and self.ping_s > 0 and self.stale_s > 0):
            raise ValueError("auth_timeout_s, ping_s and stale_s must be positive")
        if not self.stale_s > self.ping_s:
            raise ValueError("stale_s must be longer than ping_s")


class StreamProtocol(Protocol):
    """What one stream says on the wire; the supervisor decides when.

    ``authenticate`` sends the auth request and reads until the ack; it raises
    :class:`~airlock.relays.errors.StreamAuthError` when the venue refuses the credentials
    and :class:`~airlock.relays.errors.StreamError` for anything else. Its second argument
    is the seconds left of ``auth_timeout_s`` (a budget, not a reading of any clock); the
    connection it gets already ends every receive at that bound (``TimeoutError``), so a
    protocol may simply loop on ``receive_text``. ``subscribe`` gets the same connection,
    under the same bound. Every other callback runs while the stream is served:
    ``on_message`` for every frame that is not a heartbeat (keep it quick: pings wait for
    it), ``on_connected(first)`` after every (re)subscribe, ``on_disconnected(why)`` after
    a connection that was up dropped (not when the caller stops or cancels the stream).
    A :class:`StreamAuthError` from ``subscribe``, ``on_message`` or ``on_connected`` stops
    the stream like a refused auth; any other airlock error from them is a drop.
    """

    @property
    def url(self) -> str: ...

    async def authenticate(self, ws: WsConnection, timeout_s: float, /) -> None: ...

    async def subscribe(self, ws: WsConnection, /) -> None: ...

    def ping(self) -> str: ...

    def is_heartbeat(self, text: str, /) -> bool: ...

    async def on_message(self, text: str, /) -> None: ...

    async def on_connected(self, first: bool, /) -> None: ...

    async def on_disconnected(self, why: str, /) -> None: ...


class _Bounded:
    """A connection whose receives end at ``deadline`` (on the supervisor's clock): the
    auth bound holds whatever timeouts the protocol asks for."""

    def __init__(self, ws: WsConnection, clock: Clock, deadline: float) -> None:
        self._ws = ws
        self._clock = clock
        self._deadline = deadline

    def left(self) -> float:
        return max(0.0, self._deadline - self._clock())

    @property
    def closed(self) -> bool:
        return self._ws.closed

    async def send_text(self, text: str) -> None:
        await self._ws.send_text(text)

    async def receive_text(self, timeout_s: float) -> str | None:
        left = self.left()
        if left <= 0:
            raise TimeoutError
        return await self._ws.receive_text(min(timeout_s, left))

    async def close(self) -> None:
        await self._ws.close()


class StreamSupervisor:
    """Keeps one stream up for as long as :meth:`run` runs (see the module's rules).

    State for a status page and the broadcaster: ``is_connected`` (True from a completed
    subscribe to the next drop), ``connected`` (the same as an event to wait on),
    ``reconnects`` (connections that came back after the first), ``last_error`` (why the
    last connection or attempt ended, None before any), ``stopped`` (why the stream is
    stopped after a refused key, None while it may connect).
    """

    def __init__(
        self,
        protocol: StreamProtocol,
        *,
        policy: Backoff,
        settings: StreamSettings | None = None,
        connect: Connector | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        on_alert: Callable[[str], None] | None = None,
    ) -> None:
        self._protocol = protocol
        self._policy = policy
        self._settings = settings or StreamSettings()
        self._connect = connect or aiohttp_connector()
        self._clock = clock
        self._sleep = sleep
        self._on_alert = on_alert
        self._shown = redact_url(protocol.url)
        self._ws: WsConnection | None = None
        self._started = False
        self._running = False
        self._attempt = 0
        self._immediate = False
        self._resumed = asyncio.Event()
        self._stopped: str | None = None
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.last_error: str | None = None

    @property
    def is_connected(self) -> bool:
        return self.connected.is_set()

    @property
    def stopped(self) -> str | None:
        return self._stopped

    @property
    def url(self) -> str:
        """The stream's URL, redacted: what messages and logs name."""
        return self._shown

    # ------------------------------------------------------------------ the caller's side

    async def start(self) -> None:
        """The first connection, authenticated and subscribed within ``auth_timeout_s``,
        then ``on_connected(first=True)``; one attempt, no retry.

        Raises :class:`StreamStartError` (``refused`` True for a refused key) when the
        attempt fails; an error of ``on_connected`` itself propagates as it is.
        """
        if self._started:
            raise RuntimeError(f"stream {self._shown} is already started")
        try:
            ws = await self._open()
        except StreamAuthError as exc:
            raise self._start_error(_refused(exc), refused=True) from exc
        except (AirlockError, TimeoutError) as exc:
            raise self._start_error(self._failure(exc)) from exc
        self._up(ws)
        try:
            await self._protocol.on_connected(True)
        except BaseException:
            await self._release()
            raise
        self._started = True

    async def run(self, stop: asyncio.Event) -> None:
        """Serve the stream until ``stop`` is set (or the task is cancelled), reconnecting
        after every drop; the connection is closed when it returns.

        Errors that are not airlock's (a bug in a callback) end it and propagate.
        """
        if not self._started:
            raise RuntimeError(f"stream {self._shown}: start() first")
        if self._running:
            raise RuntimeError(f"stream {self._shown} is already running")
        self._running = True
        try:
            await _until(stop, self._loop())
        finally:
            self._running = False
            await self._release()

    async def send(self, text: str) -> None:
        """Send one frame over the current connection (a request on a trade stream);
        :class:`StreamTransportError` when the stream is down."""
        ws = self._ws
        if ws is None or not self.is_connected:
            raise StreamTransportError("the stream is not connected")
        await ws.send_text(text)

    def resume(self) -> None:
        """The operator fixed the key: let a stream stopped by a refusal connect again, at
        once (a no-op when it is not stopped)."""
        if self._stopped is None:
            return
        log.info("stream %s: resumed by the operator", self._shown)
        self._stopped = None
        self._immediate = True
        self._resumed.set()

    async def close(self) -> None:
        """Release the connection :meth:`start` opened, when :meth:`run` will not (run
        closes its own on return); :meth:`start` may be called again afterwards."""
        await self._release()
        self._started = False

    # ------------------------------------------------------------------ one connection

    async def _open(self) -> WsConnection:
        """Connect, authenticate, subscribe: all within ``auth_timeout_s`` on the injected
        clock (every receive ends at the bound), the loop's own clock backing it up for
        awaits that are not receives (signing in an HSM, a stuck handshake)."""
        bound = self._settings.auth_timeout_s
        gate_at = self._clock() + bound
        async with asyncio.timeout(bound):
            ws = await self._connect(self._protocol.url, bound)
            try:
                gated = _Bounded(ws, self._clock, gate_at)
                await self._protocol.authenticate(gated, gated.left())
                self._attempt = 0  # authenticated: the next drop starts the backoff over
                await self._protocol.subscribe(gated)
            except BaseException:
                await ws.close()
                raise
        return ws

    async def _pump(self, ws: WsConnection) -> str:
        """Read frames and send pings until the connection drops; why it dropped.

        Pings are sent from here, between receives, so they die with the connection.
        Staleness is judged only when a receive timed out: frames that waited in the
        socket while a handler ran still count.
        """
        ping_s, stale_s = self._settings.ping_s, self._settings.stale_s
        heard = self._clock()
        ping_at = heard + ping_s
        while True:
            now = self._clock()
            if now >= ping_at:
                await ws.send_text(self._protocol.ping())
                ping_at = now + ping_s
            stale_at = heard + stale_s
            try:
                text = await ws.receive_text(max(min(ping_at, stale_at) - now, MIN_WAIT_S))
            except TimeoutError:
                if self._clock() >= stale_at:
                    return f"stale: no frame for {stale_s:g} s"
                continue
            if text is None:
                return "closed by the far end"
            heard = self._clock()
            if not self._protocol.is_heartbeat(text):
                await self._protocol.on_message(text)

    async def _serve(self, ws: WsConnection, *, greet: bool) -> None:
        """One connection from its ``on_connected`` (when ``greet``) to its drop.

        A refused key stops the stream; any other airlock error is a drop like a closed
        socket (the next connection's REST pass covers what this one missed).
        """
        try:
            if greet:
                await self._protocol.on_connected(False)
            why = await self._pump(ws)
        except StreamAuthError as exc:
            why = self._refuse(exc)
        except AirlockError as exc:
            why = self._failure(exc)
        await self._drop(why)

    # ------------------------------------------------------------------ the loop

    async def _loop(self) -> None:
        """Serve the connection start() made, then reconnect forever."""
        if self._ws is not None:
            await self._serve(self._ws, greet=False)
        while True:
            await self._pause()
            ws = await self._reconnect()
            if ws is not None:
                await self._serve(ws, greet=True)

    async def _pause(self) -> None:
        """Wait before the next attempt: until resumed when stopped, not at all right after
        a resume, else the policy's delay for this attempt."""
        while self._stopped is not None:
            await self._resumed.wait()
            self._resumed.clear()
        if self._immediate:
            self._immediate = False
            self._attempt = 0
            return
        delay = self._policy.delay(self._attempt)
        self._attempt += 1
        await self._sleep(delay)

    async def _reconnect(self) -> WsConnection | None:
        """One attempt; the connection, up and counted, or None (the failure recorded)."""
        try:
            ws = await self._open()
        except StreamAuthError as exc:
            self._refuse(exc)
            return None
        except (AirlockError, TimeoutError) as exc:
            self.last_error = self._failure(exc)
            log.warning("stream %s: reconnect failed: %s", self._shown, self.last_error)
            return None
        self.reconnects += 1
        log.info("stream %s: reconnected (%d so far)", self._shown, self.reconnects)
        self._up(ws)
        return ws

    # ------------------------------------------------------------------ state

    def _up(self, ws: WsConnection) -> None:
        self._ws = ws
        self.connected.set()

    async def _drop(self, why: str) -> None:
        """The current connection is gone: closed, recorded, told to the protocol."""
        self.last_error = why
        log.warning("stream %s: dropped: %s", self._shown, why)
        await self._release()
        await self._protocol.on_disconnected(why)

    async def _release(self) -> None:
        """Close the current connection, if any, and mark the stream down; no callbacks
        (this also runs while a cancellation unwinds)."""
        ws, self._ws = self._ws, None
        self.connected.clear()
        if ws is not None:
            await ws.close()

    def _refuse(self, exc: StreamAuthError) -> str:
        """Stop the stream after a refused key: recorded, logged and alerted once."""
        why = f"stream {self._shown}: {_refused(exc)}; stopped until resumed"
        self._stopped = why
        self.last_error = why
        log.error("%s", why)
        if self._on_alert is not None:
            self._on_alert(why)
        return why

    def _failure(self, exc: BaseException) -> str:
        """Why an attempt or a connection failed, in an operator's words."""
        if isinstance(exc, TimeoutError):
            bound = self._settings.auth_timeout_s
            return f"not authenticated and subscribed within {bound:g} s"
        return str(exc) or type(exc).__name__

    def _start_error(self, reason: str, *, refused: bool = False) -> StreamStartError:
        self.last_error = reason
        log.warning("stream %s: did not start: %s", self._shown, reason)
        return StreamStartError(self._shown, reason, refused=refused)


def _refused(exc: StreamAuthError) -> str:
    return (
        f"the venue refused the API key or secret ({exc}); retrying will not help: "
        "fix the key or secret"
    )


async def _until(stop: asyncio.Event, work: Awaitable[None]) -> None:
    """Run ``work`` until it ends or ``stop`` is set; the other is cancelled and awaited,
    so nothing outlives the call, and an error of ``work`` is raised here."""
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, waiter), return_when=asyncio.FIRST_COMPLETED)
    finally:
        task.cancel()
        waiter.cancel()
        await asyncio.gather(task, waiter, return_exceptions=True)
    if not task.cancelled() and (error := task.exception()) is not None:
        raise error
