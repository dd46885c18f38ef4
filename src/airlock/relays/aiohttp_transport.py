"""The network for the asynchronous relay clients: one aiohttp session over one link.

A relay is reached over a link (design/ARCHITECTURE.md, "Links"), so the session binds
its connections to the link's source address or sends them through its proxy, and never
anywhere else: ``trust_env=False`` (HTTP(S)_PROXY from the environment must not reroute
a link) and no redirect followed (a redirect could carry a private transaction to a
public endpoint). aiohttp's exceptions stop here: what leaves is an
:class:`~airlock.relays.errors.HttpError` the clients know how to word.
"""

from __future__ import annotations

import aiohttp
import yarl

from airlock.relays.errors import (
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    ReadTimeout,
)
from airlock.relays.http import READ_CHUNK, BoundedBody, Request, Response, Timeouts

DEFAULT_POOL_SIZE = 100
"""aiohttp's own default connection limit, for clients that set none."""


class AiohttpTransport:
    """A keep-alive connection pool with the client's :class:`Timeouts`.

    ``source_address`` binds every connection to that local address (a link's interface);
    ``proxy`` sends every request through that HTTP proxy; ``pool_size`` bounds the
    connections open at once.
    """

    def __init__(
        self,
        timeouts: Timeouts,
        *,
        source_address: str | None = None,
        proxy: str | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
    ) -> None:
        self._timeouts = timeouts
        self._source = source_address
        self._proxy = proxy
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the pool (in the running loop); a no-op when it is open."""
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(
            limit=self._pool_size,
            local_addr=(self._source, 0) if self._source else None,
        )
        timeout = aiohttp.ClientTimeout(
            total=self._timeouts.total_s, sock_connect=self._timeouts.connect
        )
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def send(self, request: Request) -> Response:
        """One exchange; aiohttp's failures become the layer's, sorted by what they mean
        for a retry: nothing sent (ConnectError), or maybe sent (the others)."""
        if self._session is None:
            raise RuntimeError("the HTTP transport is not started")
        try:
            return await self._exchange(self._session, request)
        except aiohttp.ClientConnectorError as exc:
            raise ConnectError(_detail(exc), str(exc.os_error or exc)) from None
        except aiohttp.ConnectionTimeoutError as exc:
            raise ConnectTimeout(_detail(exc)) from None
        except TimeoutError as exc:
            raise ReadTimeout(_detail(exc)) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectionLost(_detail(exc)) from None

    async def _exchange(self, session: aiohttp.ClientSession, request: Request) -> Response:
        url = yarl.URL(request.url, encoded=True) if request.exact_url else request.url
        async with session.request(
            request.method,
            url,
            data=request.body,
            headers=dict(request.headers),
            proxy=self._proxy,
            allow_redirects=False,
        ) as answer:
            ok = 200 <= answer.status < 300
            if ok or request.error_preview_bytes is None:
                body = await _read_bounded(answer, request.max_bytes)
            else:
                body = await _preview(answer, request.error_preview_bytes)
            return Response(answer.status, body, answer.reason or "", dict(answer.headers))


async def _read_bounded(answer: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, streamed, refused as soon as it passes ``limit``."""
    body = BoundedBody(limit, answer.content_length)
    async for chunk in answer.content.iter_chunked(READ_CHUNK):
        body.add(chunk)
    return body.value()


async def _preview(answer: aiohttp.ClientResponse, size: int) -> bytes:
    """The start of an error answer, best effort: a body that fails is no body."""
    try:
        return await answer.content.read(size)
    except (aiohttp.ClientError, OSError, TimeoutError):
        return b""


def _detail(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
