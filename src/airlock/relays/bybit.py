"""The asynchronous Bybit V5 REST client that sends queued orders when links return.

Why it is shaped this way (``design/facts-bybit-v5.md``, "Known failures of the anchors"):

- A request signature lapses after ``recv_window``, so every attempt is signed at send
  time with the venue's clock (our clock plus an offset learned from ``/v5/market/time``).
  A 10002 re-syncs and re-signs once.
- Only failures where nothing can have arrived are retried blindly (TRANSPORT: the
  connection was refused or never opened), with :class:`BackoffPolicy`. A create whose
  answer was lost is UNKNOWN: the caller looks the orderLinkId up before any resend, so an
  order is never placed twice and never called failed while it rests on the book.
- Rate limits are honoured *before* sending: the X-Bapi headers of every answer are kept
  per endpoint and, when none are left, the next request waits for the reset timestamp.
  A 10006 anyway waits for the reset and resends once.
- A bad or revoked key stops the account (AUTH_STOP): one alert, no retry loop, and no
  request leaves until :meth:`BybitClient.reset_auth`.
- List reads follow ``nextPageCursor`` to the end; executions are de-duplicated by execId.

Like :mod:`airlock.relays.jsonrpc`: one aiohttp session per endpoint, explicit timeouts,
size-limited reads parsed with :func:`loads_limited`, errors that name the endpoint with
:func:`redact_url`, and the send path (create, cancel) never raises for venue or link
failures: it returns a :class:`Placement`. This module never imports ``airlock.queue``,
``airlock.hsm`` or ``pkcs11``; the request signer is injected.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import quote

import aiohttp
import yarl

from airlock.errors import AirlockError
from airlock.redact import redact_url
from airlock.relays.bybit_codes import (
    CANCEL,
    CREATE,
    VenueOutcome,
    Verdict,
    classify,
    classify_http,
)
from airlock.relays.jsonbody import loads_limited
from airlock.signer.bybit import (
    OrderIntent,
    SignType,
    auth_headers,
    create_order_body,
    signing_payload,
)

__all__ = [
    "BackoffPolicy",
    "BybitApiError",
    "BybitAuthError",
    "BybitClient",
    "BybitError",
    "BybitTransportError",
    "ConnectionSupervisor",
    "Placement",
    "VenueOutcome",
]

SERVER_TIME = "/v5/market/time"
REALTIME = "/v5/order/realtime"
HISTORY = "/v5/order/history"
EXECUTIONS = "/v5/execution/list"
DEFAULT_MAX_RESPONSE_BYTES = 4 << 20
MAX_RATE_WAIT_S = 60.0
"""A reset timestamp further away than this is not believed (a 1 s window resets within
about a second); waiting that long instead lets a 10006 tell us again."""
RATE_MARGIN_MS = 10
"""Waits for a rate-limit reset end this long after the venue's reset timestamp, so that a
clock offset measured to within half a loopback round trip never lands a request a
millisecond early (a 10006). Costs about 1 % of a 10/s limit."""
MAX_PAGES = 10_000
_READ_CHUNK = 1 << 16
_SHOW_CHARS = 160
_CURSOR_SAFE = "%-._~"  # the cursor is already URL-encoded: keep its escapes, encode the rest

Signer = Callable[[bytes], Awaitable[str] | str]
Sleep = Callable[[float], Awaitable[None]]
Alert = Callable[[str], Awaitable[None] | None]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


# ----------------------------------------------------------------------------- errors


class BybitError(AirlockError):
    """A Bybit read failed; ``endpoint`` is the path, the message names the redacted URL."""

    def __init__(self, endpoint: str, reason: str) -> None:
        super().__init__(f"bybit {endpoint}: {reason}")
        self.endpoint = endpoint
        self.reason = reason


class BybitTransportError(BybitError):
    """No usable answer: refused, timed out, lost, not JSON, too big, HTTP non-2xx."""


class BybitApiError(BybitError):
    """The venue answered a read with a non-zero retCode."""

    def __init__(self, endpoint: str, verdict: Verdict) -> None:
        super().__init__(endpoint, f"{verdict.message} (retCode {verdict.ret_code})")
        self.verdict = verdict


class BybitAuthError(BybitError):
    """The key is refused (or the account was stopped after it was): fix the key, then
    :meth:`BybitClient.reset_auth`. Carries the venue's own message."""


# ----------------------------------------------------------------------------- backoff


@dataclass(frozen=True)
class BackoffPolicy:
    """Exponential backoff with bounded jitter, for connection-level failures only.

    ``delay(n)`` = min(cap, base * factor**n) scaled down by up to ``jitter`` (0..1), so a
    delay never exceeds the cap and many clients coming back from one outage spread out.
    With ``seed`` set the jitter for attempt n is a pure function of (seed, n): tests get
    exact tables. ``max_retries`` bounds the retries of one request.
    """

    base_s: float = 0.5
    factor: float = 2.0
    cap_s: float = 30.0
    jitter: float = 0.2
    max_retries: int = 5
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.cap_s < self.base_s or self.factor < 1:
            raise ValueError("need 0 < base_s <= cap_s and factor >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be within 0..1")
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        # factor**attempt overflows a float past ~1000 attempts; the cap applies long before
        raw = self.cap_s if attempt > 1000 else min(self.cap_s, self.base_s * self.factor**attempt)
        rng = random.Random(f"{self.seed}:{attempt}") if self.seed is not None else random
        return raw * (1 - self.jitter * rng.random())


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Placement:
    """What became of one create or cancel: the outcome and the venue's words for it.

    ``ret_code`` is None when no V5 answer arrived (TRANSPORT, UNKNOWN after a lost
    answer, HTTP errors); ``rule`` names the table row or check that decided.
    """

    outcome: VenueOutcome
    order_id: str | None
    order_link_id: str
    ret_code: int | None
    ret_msg: str
    rule: str = ""


@dataclass(frozen=True)
class _Reply:
    """A V5 envelope as received."""

    ret_code: int
    ret_msg: str
    result: Any
    headers: dict[str, str]


class _NotSent(Exception):
    """The connection failed before the request left: TRANSPORT, safe to retry."""


class _Lost(Exception):
    """Sent, but no usable answer: the request may have taken effect."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.message)
        self.verdict = verdict


@dataclass
class _Limit:
    remaining: int
    reset_ms: int
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


# ----------------------------------------------------------------------------- client


class BybitClient:
    """One Bybit account at one base URL (see the module doc for the rules it keeps).

    ``sign(payload)`` returns the X-BAPI-SIGN text for the signing payload (HMAC hex or
    RSA base64, e.g. :func:`airlock.signer.bybit.hmac_signature` over an HSM operation);
    it may be sync or async. ``clock_ms`` and ``sleep`` are injected so tests move time
    instead of waiting. ``on_alert`` is called once each time the account is stopped.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        sign: Signer,
        sign_type: SignType,
        *,
        recv_window_ms: int = 5000,
        timeout_s: float = 10.0,
        connect_timeout_s: float | None = None,
        backoff: BackoffPolicy | None = None,
        clock_ms: Callable[[], int] = wall_clock_ms,
        sleep: Sleep = asyncio.sleep,
        on_alert: Alert | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"base_url must start with http:// or https://: {redact_url(base_url)}"
            )
        if timeout_s <= 0 or max_response_bytes < 1:
            raise ValueError("timeout_s and max_response_bytes must be positive")
        self._base = base_url.rstrip("/")
        self._shown = redact_url(self._base)
        self._api_key = api_key
        self._sign = sign
        self._sign_type = sign_type
        self._recv_window = recv_window_ms
        self._timeout = aiohttp.ClientTimeout(
            total=timeout_s, sock_connect=connect_timeout_s or timeout_s
        )
        self._backoff = backoff or BackoffPolicy()
        self._clock = clock_ms
        self._sleep = sleep
        self._on_alert = on_alert
        self._max_bytes = max_response_bytes
        self._offset_ms = 0
        self._limits: dict[str, _Limit] = {}
        self._stopped: str | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._session is None:
            # trust_env=False: a proxy from the environment must not reroute the link
            self._session = aiohttp.ClientSession(timeout=self._timeout, trust_env=False)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"BybitClient(url={self._shown!r}, sign_type={self._sign_type!r})"

    # -- state -------------------------------------------------------------------------

    @property
    def offset_ms(self) -> int:
        """Venue clock minus ours, as last measured by :meth:`sync_time`."""
        return self._offset_ms

    @property
    def auth_stopped(self) -> str | None:
        """The venue's message that stopped the account, or None if sending is allowed."""
        return self._stopped

    def reset_auth(self) -> None:
        """Allow sending again (after the operator fixed the key)."""
        self._stopped = None

    def server_now_ms(self) -> int:
        return self._clock() + self._offset_ms

    # -- time --------------------------------------------------------------------------

    async def sync_time(self, *, retry: bool = True) -> int:
        """Measure the venue's clock (GET /v5/market/time) and keep the offset; returns it.

        The offset is taken against the midpoint of our clock around the request, so a
        slow link does not bias it by more than half its round trip.
        """
        before = self._clock()
        reply = await self._read_reply("GET", SERVER_TIME, {}, signed=False, retry=retry)
        after = self._clock()
        result = reply.result if isinstance(reply.result, dict) else {}
        try:
            if "timeNano" in result:
                server = int(result["timeNano"]) // 1_000_000
            else:
                server = int(result["timeSecond"]) * 1000
        except (KeyError, TypeError, ValueError, OverflowError):  # 1e999 arrives as inf
            raise BybitTransportError(
                SERVER_TIME, f"{self._shown} answered no usable time: {_clip(repr(result))}"
            ) from None
        self._offset_ms = server - (before + after) // 2
        return self._offset_ms

    # -- sending (never raises for venue or link failures) -----------------------------

    async def create_order(self, intent: OrderIntent) -> Placement:
        """Send one order (the exact :func:`create_order_body` bytes, signed now)."""
        return await self._place("POST", CREATE, create_order_body(intent), intent.order_link_id)

    async def cancel_order(self, category: str, symbol: str, order_link_id: str) -> Placement:
        """Cancel by orderLinkId. 110008/110010 (already finished/cancelled) come back as
        REJECTED with rules ``order-finished``: the order is in a final state."""
        body = _compact({"category": category, "symbol": symbol, "orderLinkId": order_link_id})
        return await self._place("POST", CANCEL, body, order_link_id)

    async def _place(self, method: str, path: str, body: bytes, link_id: str) -> Placement:
        try:
            reply, verdict = await self._exchange(method, path, body=body)
        except _NotSent as exc:
            return Placement(VenueOutcome.TRANSPORT, None, link_id, None, str(exc), "transport")
        except _Lost as exc:
            v = exc.verdict
            return Placement(v.outcome, None, link_id, None, v.message, v.rule)
        except BybitAuthError as exc:
            return Placement(VenueOutcome.AUTH_STOP, None, link_id, None, exc.reason, "stopped")
        except Exception as exc:  # the contract: an outcome, never an exception
            reason = f"{type(exc).__name__}: {exc}"
            return Placement(VenueOutcome.UNKNOWN, None, link_id, None, reason, "internal")
        result = reply.result if isinstance(reply.result, dict) else {}
        order_id = result.get("orderId") if verdict.outcome == VenueOutcome.PLACED else None
        return Placement(
            verdict.outcome,
            str(order_id) if order_id else None,
            link_id,
            reply.ret_code,
            reply.ret_msg,
            verdict.rule,
        )

    # -- reads (raise BybitError) ------------------------------------------------------

    async def probe_auth(self, category: str = "linear") -> None:
        """The cheapest authenticated read (realtime, limit=1): proves key and link."""
        await self._read("GET", REALTIME, {"category": category, "limit": "1"}, retry=False)

    async def order_by_link_id(
        self, category: str, order_link_id: str, *, symbol: str | None = None
    ) -> dict[str, Any] | None:
        """The order with this orderLinkId: realtime first (open and recently closed), then
        history (which may lag); None when neither knows it."""
        params = _params(category=category, symbol=symbol, orderLinkId=order_link_id)
        for path in (REALTIME, HISTORY):
            result = await self._read("GET", path, params)
            for row in _rows(path, result):
                if isinstance(row, dict) and row.get("orderLinkId") == order_link_id:
                    return row
        return None

    async def open_orders(
        self,
        category: str,
        *,
        symbol: str | None = None,
        settle_coin: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Every open order, all pages."""
        params = _params(category=category, symbol=symbol, settleCoin=settle_coin)
        return await self._paged(REALTIME, params, limit)

    async def history(
        self,
        category: str,
        *,
        symbol: str | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        order_status: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Every order in the history span (max 7 days per query, per facts), all pages."""
        params = _params(
            category=category,
            symbol=symbol,
            startTime=start_ms,
            endTime=end_ms,
            orderStatus=order_status,
        )
        return await self._paged(HISTORY, params, limit)

    async def executions(
        self,
        category: str,
        *,
        symbol: str | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Every fill in the span, all pages, each execId once (first seen kept)."""
        params = _params(category=category, symbol=symbol, startTime=start_ms, endTime=end_ms)
        rows = await self._paged(EXECUTIONS, params, limit)
        seen: set[str] = set()
        unique = []
        for row in rows:
            exec_id = str(row.get("execId", ""))
            if exec_id and exec_id in seen:
                continue
            seen.add(exec_id)
            unique.append(row)
        return unique

    async def _paged(self, path: str, params: dict[str, str], limit: int) -> list[dict[str, Any]]:
        """Follow ``nextPageCursor`` until it is empty; refuse a venue that loops."""
        if not 1 <= limit <= 100:
            raise ValueError("limit must be 1-100 (Bybit: 50 for orders, 100 for executions)")
        rows: list[dict[str, Any]] = []
        cursors: set[str] = set()
        cursor = ""
        for _ in range(MAX_PAGES):
            page = {**params, "limit": str(limit)}
            if cursor:
                page["cursor"] = cursor
            result = await self._read("GET", path, page)
            rows.extend(row for row in _rows(path, result) if isinstance(row, dict))
            cursor = str(result.get("nextPageCursor") or "")
            if not cursor:
                return rows
            if not cursor.isascii() and not _is_text(cursor):  # JSON may carry "\ud800"
                raise BybitTransportError(
                    path, f"{self._shown} sent a page cursor that is not text"
                )
            if cursor in cursors:
                raise BybitTransportError(path, f"{self._shown} repeated a page cursor")
            cursors.add(cursor)
        raise BybitTransportError(path, f"more than {MAX_PAGES} pages from {self._shown}")

    async def _read(
        self, method: str, path: str, params: dict[str, str], *, retry: bool = True
    ) -> dict[str, Any]:
        reply = await self._read_reply(method, path, params, retry=retry)
        return reply.result if isinstance(reply.result, dict) else {}

    async def _read_reply(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        *,
        signed: bool = True,
        retry: bool = True,
    ) -> _Reply:
        try:
            reply, verdict = await self._exchange(
                method, path, query=_query(params), signed=signed, retry=retry
            )
        except _NotSent as exc:
            raise BybitTransportError(path, str(exc)) from None
        except _Lost as exc:
            raise BybitTransportError(path, exc.verdict.message) from None
        if verdict.outcome == VenueOutcome.AUTH_STOP:
            raise BybitAuthError(path, verdict.message)
        if verdict.outcome != VenueOutcome.PLACED:
            raise BybitApiError(path, verdict)
        return reply

    # -- one request, with the retries the rules allow ---------------------------------

    async def _exchange(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        query: str | None = None,
        signed: bool = True,
        retry: bool = True,
    ) -> tuple[_Reply, Verdict]:
        """Send until the answer is final for this layer.

        Retried: TRANSPORT (backoff, ``max_retries``), 10002 (re-sync, once), 10006 (wait
        for the reset, once). Everything else goes back to the caller as it came.
        """
        attempt = 0
        resynced = rate_retried = False
        while True:
            if signed and self._stopped is not None:
                raise BybitAuthError(path, f"account stopped: {self._stopped}")
            try:
                reply = await self._send_once(method, path, body, query, signed)
            except _NotSent:
                if not retry or attempt >= self._backoff.max_retries:
                    raise
                await self._sleep(self._backoff.delay(attempt))
                attempt += 1
                continue
            verdict = classify(reply.ret_code, reply.ret_msg, endpoint=path)
            if verdict.outcome == VenueOutcome.RETRY_RESYNC and not resynced:
                resynced = True
                await self.sync_time()
                continue
            if verdict.outcome == VenueOutcome.RATE_LIMITED and not rate_retried:
                rate_retried = True
                await self._wait_reset(path, fallback_s=self._backoff.delay(0))
                continue
            if verdict.outcome == VenueOutcome.AUTH_STOP:
                await self._stop(verdict.message)
            return reply, verdict

    async def _stop(self, message: str) -> None:
        """Stop the account and alert, once per stop (not once per refused request)."""
        if self._stopped is not None:
            return
        self._stopped = message
        if self._on_alert is not None:
            outcome = self._on_alert(f"bybit {self._shown}: account stopped: {message}")
            if inspect.isawaitable(outcome):
                await outcome

    async def _gate(self, path: str) -> None:
        """Wait for the reset if the last answer on ``path`` said none are left; then
        count this request against the known remainder (so concurrent senders share it)."""
        limit = self._limits.get(path)
        if limit is None:
            return
        async with limit.lock:
            if limit.remaining <= 0:
                await self._wait_reset(path, fallback_s=0.0)
            limit.remaining -= 1

    async def _wait_reset(self, path: str, *, fallback_s: float) -> None:
        limit = self._limits.get(path)
        wait = fallback_s
        if limit is not None:
            wait = max(0.0, (limit.reset_ms + RATE_MARGIN_MS - self.server_now_ms()) / 1000)
            limit.remaining = 1 << 30  # the window has passed; the next answer says more
        if wait > 0:
            await self._sleep(min(wait, MAX_RATE_WAIT_S))

    def _note_limits(self, path: str, headers: dict[str, str]) -> None:
        try:
            remaining = int(headers["X-Bapi-Limit-Status"])
            reset = int(headers["X-Bapi-Limit-Reset-Timestamp"])
        except (KeyError, ValueError):
            return
        limit = self._limits.setdefault(path, _Limit(remaining, reset))
        limit.remaining, limit.reset_ms = remaining, reset

    async def _send_once(
        self, method: str, path: str, body: bytes | None, query: str | None, signed: bool
    ) -> _Reply:
        if self._session is None:
            raise RuntimeError("BybitClient is not started; use 'async with'")
        await self._gate(path)
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if signed:
            try:
                headers.update(await self._auth(body, query))
            except Exception as exc:  # the HSM is away: nothing was sent, safe to retry
                raise _NotSent(f"{method} {path}: signing failed: {exc}") from None
        url = yarl.URL(self._base + path + (f"?{query}" if query else ""), encoded=True)
        what = f"{method} {path} to {self._shown}"
        try:
            async with self._session.request(
                method, url, data=body, headers=headers, allow_redirects=False
            ) as response:
                raw = await self._read_limited(response, what)
                answer_headers = dict(response.headers)
                status = response.status
        except aiohttp.ClientConnectorError as exc:
            raise _NotSent(f"{what}: cannot connect: {exc.os_error or exc}") from None
        except aiohttp.ConnectionTimeoutError:
            raise _NotSent(f"{what}: could not connect in time") from None
        except TimeoutError:
            raise _Lost(self._lost(path, f"{what}: no complete answer in time")) from None
        except (aiohttp.ClientError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            raise _Lost(self._lost(path, f"{what}: connection lost: {reason}")) from None
        self._note_limits(path, answer_headers)
        if not 200 <= status < 300:
            text = _clip(raw.decode("utf-8", errors="replace"))
            raise _Lost(classify_http(status, f"{what}: {text}", endpoint=path))
        return self._envelope(path, what, raw, answer_headers)

    def _lost(self, path: str, message: str) -> Verdict:
        outcome = VenueOutcome.UNKNOWN if path == CREATE else VenueOutcome.LATER
        return Verdict(outcome, "lost-answer", message)

    def _envelope(self, path: str, what: str, raw: bytes, headers: dict[str, str]) -> _Reply:
        try:
            answer = loads_limited(raw)
        except ValueError as exc:
            raise _Lost(self._lost(path, f"{what}: answer is not JSON ({exc})")) from None
        code, msg = (
            (answer.get("retCode"), answer.get("retMsg"))
            if isinstance(answer, dict)
            else (None, None)
        )
        if type(code) is not int or not isinstance(msg, str):
            shown = _clip(raw.decode("utf-8", errors="replace"))
            raise _Lost(self._lost(path, f"{what}: not a V5 envelope: {shown}"))
        assert isinstance(answer, dict)
        return _Reply(code, msg, answer.get("result"), headers)

    async def _auth(self, body: bytes | None, query: str | None) -> dict[str, str]:
        timestamp = self.server_now_ms()
        payload = signing_payload(
            timestamp, self._api_key, self._recv_window, body=body, query=query
        )
        signature = self._sign(payload)
        if inspect.isawaitable(signature):
            signature = await signature
        assert isinstance(signature, str)
        return auth_headers(self._api_key, timestamp, self._recv_window, signature, self._sign_type)

    async def _read_limited(self, response: aiohttp.ClientResponse, what: str) -> bytes:
        announced = response.content_length
        if announced is not None and announced > self._max_bytes:
            raise aiohttp.ClientPayloadError(f"{what}: answer of {announced} bytes is too big")
        body = bytearray()
        async for chunk in response.content.iter_chunked(_READ_CHUNK):
            body += chunk
            if len(body) > self._max_bytes:
                raise aiohttp.ClientPayloadError(f"{what}: answer over {self._max_bytes} bytes")
        return bytes(body)


# ----------------------------------------------------------------------------- supervisor


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
        interval_s: float = 5.0,
        category: str = "linear",
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._client = client
        self._policy = policy
        self._on_reconnect = on_reconnect
        self._interval = interval_s
        self._category = category
        self._sleep = sleep
        self._connected = False
        self.latency_ms: float | None = None  # the last successful time probe's round trip

    @property
    def is_connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        """First connection: raises BybitAuthError (bad key) or BybitError (unreachable)."""
        await self._probe()
        self._connected = True

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
        except BybitAuthError:
            self._connected = False
            raise
        except BybitError:
            return False
        return True

    async def run(self) -> None:
        """Probe forever (until cancelled or the key is refused)."""
        while True:
            await self._sleep(self._interval)
            if await self._probe_ok():
                self._connected = True
                continue
            self._connected = False
            attempt = 0
            while True:
                await self._sleep(self._policy.delay(attempt))
                attempt += 1
                if await self._probe_ok():
                    break
            self._connected = True
            await self._on_reconnect()


# ----------------------------------------------------------------------------- helpers


def _compact(fields: dict[str, str]) -> bytes:
    return json.dumps(fields, separators=(",", ":"), sort_keys=True).encode()


def _params(**values: object) -> dict[str, str]:
    return {key: str(value) for key, value in values.items() if value is not None}


def _query(params: dict[str, str]) -> str:
    """``k=v&…`` exactly as sent and signed; the cursor keeps its own URL-encoding."""
    parts = []
    for key, value in params.items():
        safe = _CURSOR_SAFE if key == "cursor" else ""
        parts.append(f"{quote(key, safe='')}={quote(value, safe=safe)}")
    return "&".join(parts)


def _is_text(value: str) -> bool:
    """False for a str holding a lone surrogate (it cannot be encoded, so not sent)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _rows(path: str, result: dict[str, Any]) -> list[Any]:
    rows = result.get("list")
    if not isinstance(rows, list):
        raise BybitTransportError(path, "answer has no result.list")
    return rows


def _clip(text: str) -> str:
    return text if len(text) <= _SHOW_CHARS else text[: _SHOW_CHARS - 1] + "…"
