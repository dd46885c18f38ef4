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

Like :mod:`airlock.relays.jsonrpc`, it sends through the one HTTP layer
(:mod:`airlock.relays.http`: one session per endpoint, explicit timeouts, size-limited
reads; ``transport=`` replaces the network in a test); answers are parsed with
:func:`loads_limited`, errors name the endpoint with :func:`redact_url`, and the send path
(create, cancel) never raises for venue or link failures: it returns a
:class:`Placement`. The errors live in :mod:`airlock.relays.errors`, the backoff in
:mod:`airlock.relays.backoff`, the supervisor in :mod:`airlock.relays.bybit_supervisor`;
all are importable from here. This module never imports ``airlock.queue``,
``airlock.hsm`` or ``pkcs11``; the request signer is injected.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from airlock.clock import wall_clock_ms
from airlock.encoding.jsonlimit import loads_limited
from airlock.redact import redact_url
from airlock.relays.aiohttp_transport import AiohttpTransport
from airlock.relays.backoff import BackoffPolicy
from airlock.relays.bybit_codes import (
    CANCEL,
    CREATE,
    DCP_INFO,
    DCP_SET,
    EXECUTIONS,
    HISTORY,
    POSITIONS,
    REALTIME,
    SERVER_TIME,
    WALLET,
    VenueOutcome,
    Verdict,
    classify,
    classify_http,
)
from airlock.relays.bybit_supervisor import ConnectionSupervisor
from airlock.relays.errors import (
    BodyTooLarge,
    BybitApiError,
    BybitAuthError,
    BybitError,
    BybitTransportError,
    ConnectError,
    ConnectTimeout,
    HttpError,
    ReadTimeout,
    clip,
)
from airlock.relays.http import AsyncTransport, HttpClient, Request, Timeouts
from airlock.signer.bybit import (
    OrderIntent,
    auth_headers,
    create_order_body,
    signing_payload,
)
from airlock.vocab import Category, SignType

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

DEFAULT_MAX_RESPONSE_BYTES = 4 << 20
"""4 MiB: one answer is one page of at most 100 rows (or the time, or one order), far
below a JSON-RPC batch (8 MiB); a venue sending more is not sending Bybit V5."""
MAX_RATE_WAIT_S = 60.0
"""A reset timestamp further away than this is not believed (a 1 s window resets within
about a second); waiting that long instead lets a 10006 tell us again."""
RATE_MARGIN_MS = 10
"""Waits for a rate-limit reset end this long after the venue's reset timestamp, so that a
clock offset measured to within half a loopback round trip never lands a request a
millisecond early (a 10006). Costs about 1 % of a 10/s limit."""
MAX_PAGES = 10_000
_CURSOR_SAFE = "%-._~"  # the cursor is already URL-encoded: keep its escapes, encode the rest

Signer = Callable[[bytes], Awaitable[str] | str]
Sleep = Callable[[float], Awaitable[None]]
Alert = Callable[[str], Awaitable[None] | None]


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


class BybitClient(HttpClient):
    """One Bybit account at one base URL (see the module doc for the rules it keeps).

    ``sign(payload)`` returns the X-BAPI-SIGN text for the signing payload (HMAC hex or
    RSA base64, e.g. :func:`airlock.signer.bybit.hmac_signature` over an HSM operation);
    it may be sync or async. ``clock_ms`` and ``sleep`` are injected so tests move time
    instead of waiting. ``on_alert`` is called once each time the account is stopped.
    ``transport`` replaces the network (tests); by default it is an
    :class:`AiohttpTransport` with ``timeout_s`` / ``connect_timeout_s``.
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
        transport: AsyncTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"base_url must start with http:// or https://: {redact_url(base_url)}"
            )
        if timeout_s <= 0 or max_response_bytes < 1:
            raise ValueError("timeout_s and max_response_bytes must be positive")
        timeouts = Timeouts(timeout_s, connect_timeout_s or timeout_s)
        super().__init__(
            transport or AiohttpTransport(timeouts),
            label="BybitClient",
            max_response_bytes=max_response_bytes,
        )
        self._base = base_url.rstrip("/")
        self._shown = redact_url(self._base)
        self._api_key = api_key
        self._sign = sign
        self._sign_type = sign_type
        self._recv_window = recv_window_ms
        self._backoff = backoff or BackoffPolicy()
        self._clock = clock_ms
        self._sleep = sleep
        self._on_alert = on_alert
        self._offset_ms = 0
        self._limits: dict[str, _Limit] = {}
        self._stopped: str | None = None

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

    @property
    def recv_window_ms(self) -> int:
        return self._recv_window

    async def pace(self, path: str) -> None:
        """Wait as a REST send to ``path`` would (the trade stream shares the limits)."""
        await self._gate(path)

    def note_limits(self, path: str, headers: dict[str, str]) -> None:
        """What an answer's ``X-Bapi-Limit*`` headers say of ``path``'s limit."""
        self._note_limits(path, headers)

    async def stop_account(self, message: str) -> None:
        """The key was refused elsewhere (the trade stream): stop and alert once."""
        await self._stop(message)

    async def stream_auth(self, margin_ms: int = 10_000) -> list[str]:
        """The private stream's auth arguments ``[api_key, expires, signature]``: expires
        ``margin_ms`` ahead on the venue's clock, the signature over ``GET/realtime`` +
        expires made like every REST signature (in the HSM). Refused once the account is
        stopped (:class:`BybitAuthError`)."""
        if self._stopped is not None:
            raise BybitAuthError("/v5/private", f"account stopped: {self._stopped}")
        expires = str(self.server_now_ms() + margin_ms)
        signature = self._sign(f"GET/realtime{expires}".encode())
        if inspect.isawaitable(signature):
            signature = await signature
        assert isinstance(signature, str)
        return [self._api_key, expires, signature]

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
                SERVER_TIME, f"{self._shown} answered no usable time: {clip(repr(result))}"
            ) from None
        self._offset_ms = server - (before + after) // 2
        return self._offset_ms

    # -- sending (never raises for venue or link failures) -----------------------------

    async def create_order(self, intent: OrderIntent) -> Placement:
        """Send one order (the exact :func:`create_order_body` bytes, signed now)."""
        return await self._place("POST", CREATE, create_order_body(intent), intent.order_link_id)

    async def cancel_order(self, category: Category, symbol: str, order_link_id: str) -> Placement:
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

    async def probe_auth(self, category: Category = "linear") -> None:
        """The cheapest authenticated read (realtime, limit=1): proves key and link."""
        await self._read("GET", REALTIME, {"category": category, "limit": "1"}, retry=False)

    async def order_by_link_id(
        self, category: Category, order_link_id: str, *, symbol: str | None = None
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
        category: Category,
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
        category: Category,
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
        category: Category,
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

    async def positions(
        self,
        category: Category,
        *,
        symbol: str | None = None,
        settle_coin: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Every position row, all pages. Linear needs ``symbol`` (shown even when flat)
        or ``settle_coin`` (open positions only: a complete listing)."""
        params = _params(category=category, symbol=symbol, settleCoin=settle_coin)
        return await self._paged(POSITIONS, params, limit)

    async def wallet_balance(self, account_type: str = "UNIFIED") -> list[dict[str, Any]]:
        """The account type's wallets (``list[].coin[]``: non-zero coins only)."""
        result = await self._read("GET", WALLET, {"accountType": account_type})
        return [row for row in _rows(WALLET, result) if isinstance(row, dict)]

    async def set_dcp(self, product: str, window_s: int) -> None:
        """Arm Disconnect Cancel Protection for ``product`` (its window in seconds); raises
        :class:`BybitApiError` when the venue refuses (most accounts may not use it)."""
        body = json.dumps({"product": product, "timeWindow": window_s}).encode()
        try:  # an account that may not use DCP is refused the feature, not the key:
            _reply, verdict = await self._exchange("POST", DCP_SET, body=body)  # bybit_codes
        except _NotSent as exc:
            raise BybitTransportError(DCP_SET, str(exc)) from None
        except _Lost as exc:
            raise BybitTransportError(DCP_SET, exc.verdict.message) from None
        if verdict.outcome == VenueOutcome.AUTH_STOP:
            raise BybitAuthError(DCP_SET, verdict.message)
        if verdict.outcome != VenueOutcome.PLACED:
            raise BybitApiError(DCP_SET, verdict)

    async def dcp_info(self) -> list[dict[str, Any]]:
        """What the venue holds armed (``dcpInfos``: product, dcpStatus, timeWindow)."""
        result = await self._read("GET", DCP_INFO, {})
        infos = result.get("dcpInfos")
        return [row for row in infos if isinstance(row, dict)] if isinstance(infos, list) else []

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
        self._require_started()
        await self._gate(path)
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if signed:
            try:
                headers.update(await self._auth(body, query))
            except Exception as exc:  # the HSM is away: nothing was sent, safe to retry
                raise _NotSent(f"{method} {path}: signing failed: {exc}") from None
        url = self._base + path + (f"?{query}" if query else "")
        what = f"{method} {path} to {self._shown}"
        # exact_url: the query string is signed as sent, so nothing may re-quote it
        request = Request(
            method, url, self._max_response_bytes, body=body, headers=headers, exact_url=True
        )
        try:
            response = await self._send(request)
        except HttpError as exc:
            raise self._failure(path, what, exc) from None
        self._note_limits(path, response.headers)
        if not response.ok:
            text = clip(response.body.decode("utf-8", errors="replace"))
            raise _Lost(classify_http(response.status, f"{what}: {text}", endpoint=path))
        return self._envelope(path, what, response.body, response.headers)

    def _failure(self, path: str, what: str, exc: HttpError) -> _NotSent | _Lost:
        """The HTTP layer's failure as this layer's: not sent (retry), or lost (look up)."""
        if isinstance(exc, ConnectTimeout):
            return _NotSent(f"{what}: could not connect in time")
        if isinstance(exc, ConnectError):
            return _NotSent(f"{what}: cannot connect: {exc.cause}")
        if isinstance(exc, ReadTimeout):
            return _Lost(self._lost(path, f"{what}: no complete answer in time"))
        reason = exc.detail
        if isinstance(exc, BodyTooLarge) and exc.announced is not None:
            reason = f"{what}: answer of {exc.announced} bytes is too big"
        elif isinstance(exc, BodyTooLarge):
            reason = f"{what}: answer over {exc.limit} bytes"
        return _Lost(self._lost(path, f"{what}: connection lost: {reason}"))

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
            shown = clip(raw.decode("utf-8", errors="replace"))
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
