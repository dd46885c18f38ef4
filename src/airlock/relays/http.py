"""The one HTTP layer under the relay clients: what a request is, what an answer is, how
long either may take and how much of it is read (httpx's client/transport split).

A client (:class:`~airlock.relays.jsonrpc.EvmRelay`,
:class:`~airlock.relays.bybit.BybitClient`, :func:`airlock.relays.rpc.call`) builds a
:class:`Request` and hands it to a *transport*, which returns a :class:`Response` or
raises an :class:`~airlock.relays.errors.HttpError`. The transport is the one test seam:
anything with ``send(Request) -> Response`` (and, for the asynchronous clients, ``start``
and ``close``) can stand in for the network.

- :class:`~airlock.relays.aiohttp_transport.AiohttpTransport` is the network for the two
  asynchronous clients: one keep-alive session, ``trust_env=False``, bound to a link's
  source address or proxy, redirects never followed.
- :class:`UrllibTransport` is the network for the blocking helper the CLI uses: the
  standard library only, so ``airlock nonce sync`` loads no aiohttp and runs no event loop.

Both read bodies through :class:`BoundedBody` and take one :class:`Timeouts`; every client
checks the size again (:func:`within_limit`), so a fake transport cannot smuggle a body
past a limit. This module imports no aiohttp.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, Self

from airlock.relays.errors import (
    BodyTooLarge,
    ConnectError,
    ConnectionLost,
    ReadTimeout,
)

READ_CHUNK = 1 << 16
"""Bytes asked of the socket per read while a body is streamed in."""


@dataclass(frozen=True)
class Timeouts:
    """How long one request may take.

    ``total_s`` bounds all of it: connecting, sending, and the whole answer.
    ``connect_s`` bounds the TCP (or proxy) connect alone and defaults to the total;
    a short one tells a dead link apart from a slow server quickly.
    """

    total_s: float
    connect_s: float | None = None

    def __post_init__(self) -> None:
        if not self.total_s > 0:
            raise ValueError(f"total_s must be positive, got {self.total_s!r}")
        if self.connect_s is not None and not self.connect_s > 0:
            raise ValueError(f"connect_s must be positive, got {self.connect_s!r}")

    @property
    def connect(self) -> float:
        """The connect timeout in force (``connect_s``, else the total)."""
        return self.total_s if self.connect_s is None else self.connect_s


@dataclass(frozen=True)
class Request:
    """One HTTP request, as a client wants it sent.

    ``max_bytes`` is the client's size limit for the answer. ``exact_url`` sends the URL
    byte for byte (Bybit signs the query string as sent, so nothing may re-quote it).
    ``error_preview_bytes``, when set, reads only the start of a non-2xx answer, best
    effort: the status is the answer, its body only decorates the message.
    """

    method: str
    url: str
    max_bytes: int
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    exact_url: bool = False
    error_preview_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ValueError("max_bytes must be positive")


@dataclass(frozen=True)
class Response:
    """One HTTP answer, its body read in full (within the request's ``max_bytes``)."""

    status: int
    body: bytes = b""
    reason: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class AsyncTransport(Protocol):
    """The network, as the asynchronous clients see it (the test seam)."""

    async def start(self) -> None:
        """Open whatever the transport keeps (idempotent)."""

    async def close(self) -> None:
        """Release it; ``start`` may be called again afterwards."""

    async def send(self, request: Request) -> Response:
        """Send ``request``; its answer, or an :class:`~airlock.relays.errors.HttpError`."""
        ...


class BlockingTransport(Protocol):
    """The network, as the blocking helper sees it (the same seam, without a loop)."""

    def send(self, request: Request) -> Response:
        """Send ``request``; its answer, or an :class:`~airlock.relays.errors.HttpError`."""
        ...


class BoundedBody:
    """A body being read under a size limit: refused as soon as it passes the limit.

    A Content-Length over the limit is refused before anything is read; a body without
    one (or lying about it) is refused at the first chunk that takes it over.
    """

    def __init__(self, limit: int, announced: int | None = None) -> None:
        if announced is not None and announced > limit:
            raise BodyTooLarge(limit, announced)
        self._limit = limit
        self._body = bytearray()

    def add(self, chunk: bytes) -> None:
        self._body += chunk
        if len(self._body) > self._limit:
            raise BodyTooLarge(self._limit)

    def value(self) -> bytes:
        return bytes(self._body)


def within_limit(response: Response, limit: int) -> Response:
    """``response``, or :class:`BodyTooLarge` if its body is over ``limit``: the check a
    client makes whatever transport it was given."""
    if len(response.body) > limit:
        raise BodyTooLarge(limit)
    return response


class HttpClient:
    """What the asynchronous clients share: a transport opened and closed with them.

    ``async with client`` (or :meth:`start` / :meth:`close`) brackets the transport's
    session; a closed client can be started again. :meth:`_send` refuses to run before
    :meth:`start` and checks the answer's size against the client's own limit.
    """

    def __init__(self, transport: AsyncTransport, *, label: str, max_response_bytes: int) -> None:
        if max_response_bytes < 1:
            raise ValueError("max_response_bytes must be positive")
        self._transport = transport
        self._label = label
        self._max_response_bytes = max_response_bytes
        self._started = False

    async def start(self) -> None:
        """Open the transport's session (a no-op when already started)."""
        if not self._started:
            await self._transport.start()
            self._started = True

    async def close(self) -> None:
        """Close the transport's session; the client can be started again afterwards."""
        if self._started:
            self._started = False
            await self._transport.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _require_started(self) -> None:
        """Raise RuntimeError unless started: checked before anything is signed or sent."""
        if not self._started:
            raise RuntimeError(f"{self._label} is not started; use 'async with' or start()")

    async def _send(self, request: Request) -> Response:
        self._require_started()
        return within_limit(await self._transport.send(request), self._max_response_bytes)


class UrllibTransport:
    """The blocking network, standard library only, for one request at a time.

    urllib has one socket timeout, not a total: ``timeouts.total_s`` bounds the
    connect and each read (as the helper always did). The default opener is kept, with
    its environment proxies and redirect handling: the helper calls a URL the operator
    typed (``--rpc``), like curl would, not a configured link.
    """

    def __init__(self, timeouts: Timeouts) -> None:
        self._timeouts = timeouts

    def send(self, request: Request) -> Response:
        try:
            return self._exchange(request)
        except urllib.error.URLError as exc:  # HTTPError never leaves _exchange
            raise ConnectError(str(exc.reason)) from None
        except TimeoutError as exc:
            raise ReadTimeout(_reason(exc)) from None
        except (OSError, http.client.HTTPException) as exc:
            raise ConnectionLost(_reason(exc)) from None

    def _exchange(self, request: Request) -> Response:
        wire = urllib.request.Request(
            request.url, data=request.body, headers=dict(request.headers), method=request.method
        )
        try:
            answer = urllib.request.urlopen(wire, timeout=self._timeouts.total_s)
        except urllib.error.HTTPError as exc:  # a non-2xx status: an answer, not a failure
            with exc:
                body = _error_body(exc, request)
                return Response(exc.code, body, str(exc.reason or ""), dict(exc.headers or {}))
        with answer:
            announced = answer.headers.get("Content-Length")
            body = _read_blocking(answer.read, announced, request.max_bytes)
            return Response(answer.status, body, answer.reason or "", dict(answer.headers))


def _read_blocking(read: Callable[[int], bytes], announced: str | None, limit: int) -> bytes:
    body = BoundedBody(limit, _content_length(announced))
    while chunk := read(READ_CHUNK):
        body.add(chunk)
    return body.value()


def _error_body(exc: urllib.error.HTTPError, request: Request) -> bytes:
    preview = request.error_preview_bytes
    if preview is None:
        return _read_blocking(exc.read, exc.headers.get("Content-Length"), request.max_bytes)
    try:
        return exc.read(preview) if preview else b""
    except (OSError, http.client.HTTPException):
        return b""


def _content_length(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _reason(exc: BaseException) -> str:
    """What the operator reads: the ``reason`` some errors carry (SSL), else the error."""
    return str(getattr(exc, "reason", exc))
