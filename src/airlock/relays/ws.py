"""The transport seam of the real-time streams: one WebSocket connection, as text frames.

A stream protocol (the Bybit private stream, a test's fake) and
:class:`~airlock.relays.stream_supervisor.StreamSupervisor` see only
:class:`WsConnection`; the supervisor opens one through a :data:`Connector`. Tests hand the
supervisor an in-memory connector; production uses :func:`aiohttp_connector`, which keeps
the HTTP layer's rules (:mod:`airlock.relays.aiohttp_transport`): ``trust_env=False`` and no
proxy unless the caller's session names one, so HTTP(S)_PROXY from the environment never
reroutes a stream; a redirected handshake refused before the auth could leave; bounded
frames; aiohttp's heartbeat off (the protocols send their own
application-level pings, which is what the venues watch). aiohttp's exceptions stop here:
what leaves is a :class:`~airlock.relays.errors.StreamTransportError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

import aiohttp

from airlock.relays.errors import StreamError, StreamTransportError

__all__ = [
    "DEFAULT_CLOSE_S",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "AiohttpWsConnection",
    "Connector",
    "StreamError",
    "StreamTransportError",
    "WsConnection",
    "aiohttp_connector",
]

DEFAULT_MAX_MESSAGE_BYTES = 1 << 20
"""The largest frame read (1 MiB): venue frames are a few KiB; a hostile or broken server
must not make the process buffer an unbounded message."""

DEFAULT_CLOSE_S = 2.0
"""How long a close waits for the far end's close frame: a dead link must not hold a
reconnect up for aiohttp's default 10 s."""


class WsConnection(Protocol):
    """One open WebSocket, as the stream protocols and the supervisor use it.

    ``receive_text(timeout_s)`` returns the next text frame, None once the connection is
    closed (by either side), and raises :class:`TimeoutError` when nothing came within
    ``timeout_s`` (the connection stays usable). Link failures raise
    :class:`~airlock.relays.errors.StreamTransportError`. ``close`` is idempotent.
    """

    @property
    def closed(self) -> bool:
        """True once the connection is closed, by either side."""
        ...

    async def send_text(self, text: str) -> None:
        """Send one text frame."""
        ...

    async def receive_text(self, timeout_s: float) -> str | None:
        """The next text frame; None when closed; TimeoutError after ``timeout_s``."""
        ...

    async def close(self) -> None:
        """Close the connection and release what it holds (idempotent)."""
        ...


Connector = Callable[[str, float], Awaitable[WsConnection]]
"""Opens a connection: (url, connect timeout in seconds) -> an open :class:`WsConnection`,
or :class:`~airlock.relays.errors.StreamTransportError`."""

SessionFactory = Callable[[], aiohttp.ClientSession]


class AiohttpWsConnection:
    """A :class:`WsConnection` over aiohttp; owns its session and closes it with itself.

    One session per connection, so closing a stream can never leave a pool behind (pybit
    leaked its timers and sockets across reconnects).
    """

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session: aiohttp.ClientSession) -> None:
        self._ws = ws
        self._session = session

    @property
    def closed(self) -> bool:
        return self._ws.closed

    async def send_text(self, text: str) -> None:
        if self._ws.closed:
            raise StreamTransportError("send on a closed connection")
        try:
            await self._ws.send_str(text)
        except (aiohttp.ClientError, OSError) as exc:
            raise StreamTransportError(f"send failed: {_detail(exc)}") from None

    async def receive_text(self, timeout_s: float) -> str | None:
        if timeout_s <= 0:  # aiohttp reads 0 as "no timeout": never wait unbounded by mistake
            raise TimeoutError
        try:
            msg = await self._ws.receive(timeout=timeout_s)
        except TimeoutError:  # an OSError too, but not a failure: nothing came in time
            raise
        except (aiohttp.ClientError, OSError) as exc:
            raise StreamTransportError(f"receive failed: {_detail(exc)}") from None
        return self._text(msg)

    def _text(self, msg: aiohttp.WSMessage) -> str | None:
        """A frame as text: None for a close, the error tree for anything unusable."""
        kind = msg.type
        if kind is aiohttp.WSMsgType.TEXT:
            return str(msg.data)
        if kind in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            return None
        if kind is aiohttp.WSMsgType.BINARY:
            try:
                return bytes(msg.data).decode("utf-8")
            except UnicodeDecodeError:
                raise StreamTransportError("a binary frame that is not UTF-8 text") from None
        if kind is aiohttp.WSMsgType.ERROR:  # too big, garbled: aiohttp has closed it
            raise StreamTransportError(_detail(msg.data))
        raise StreamTransportError(f"unexpected frame {kind.name}")

    async def close(self) -> None:
        """Close the socket, then the session, even when the first close fails or is
        cancelled: a stream that goes away takes its socket with it."""
        try:
            await self._ws.close()
        except (aiohttp.ClientError, OSError):
            pass  # already broken: nothing left to say to the far end
        finally:
            await self._session.close()


def aiohttp_connector(
    session_factory: SessionFactory | None = None,
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    close_s: float = DEFAULT_CLOSE_S,
) -> Connector:
    """The production :data:`Connector`.

    ``session_factory`` makes a *new* session for each connection (the connection closes
    it): bind one to a link's source address with a ``TCPConnector(local_addr=...)``. A
    session that trusts the environment is refused, since a stream must never be rerouted
    by a proxy nobody configured. Default: a plain session with ``trust_env=False``.
    """
    if max_message_bytes < 1:
        raise ValueError("max_message_bytes must be positive")
    factory = session_factory or _default_session

    async def connect(url: str, timeout_s: float) -> WsConnection:
        session = factory()
        try:
            if session.trust_env:
                raise ValueError("a stream's session must have trust_env=False")
            ws = await _handshake(session, url, timeout_s, max_message_bytes, close_s)
        except BaseException:
            await session.close()
            raise
        connection = AiohttpWsConnection(ws, session)
        if _redirected(ws):  # checked before a byte of auth is sent: nothing leaked yet
            await connection.close()
            raise StreamTransportError("redirected: a stream never follows a redirect")
        return connection

    return connect


def _default_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(trust_env=False)


async def _handshake(
    session: aiohttp.ClientSession, url: str, timeout_s: float, max_bytes: int, close_s: float
) -> aiohttp.ClientWebSocketResponse:
    """The opening handshake within ``timeout_s``; aiohttp's failures as the error tree,
    in a few words (the supervisor names the redacted URL)."""
    try:
        async with asyncio.timeout(timeout_s):
            return await session.ws_connect(
                url,
                heartbeat=None,  # the protocol pings at the application level
                autoping=True,  # answer the server's own pings
                proxy=None,
                max_msg_size=max_bytes,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=close_s),
            )
    except TimeoutError:
        raise StreamTransportError(f"not connected within {timeout_s:g} s") from None
    except aiohttp.ClientConnectorDNSError as exc:
        raise StreamTransportError(f"name not resolved: {_os_cause(exc)}") from None
    except aiohttp.ClientConnectorError as exc:
        raise StreamTransportError(f"connection refused: {_os_cause(exc)}") from None
    except aiohttp.WSServerHandshakeError as exc:
        reason = f"HTTP {exc.status} {exc.message}".strip()
        raise StreamTransportError(f"not a WebSocket: {reason}") from None
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise StreamTransportError(f"could not connect: {_detail(exc)}") from None


def _redirected(ws: aiohttp.ClientWebSocketResponse) -> bool:
    """Whether the handshake followed a redirect. aiohttp's ``ws_connect`` follows them and
    keeps the handshake's answer private; a test breaks if that attribute goes away."""
    response = ws._response  # the handshake's answer: not exposed otherwise
    return bool(response.history)


def _os_cause(exc: aiohttp.ClientConnectorError) -> str:
    return str(exc.os_error or exc)


def _detail(exc: object) -> str:
    return str(exc) or type(exc).__name__
