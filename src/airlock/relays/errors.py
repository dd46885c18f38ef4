"""Every error the relays raise, in one tree (httpx's ``_exceptions.py`` is the model)::

    AirlockError
    └── RelayError                    something that speaks to the network failed
        ├── TransportError            no usable answer: the link, the server, or its bytes
        │   ├── HttpError             raised by the HTTP layer (relays/http.py); each
        │   │   │                     client turns it into its own error, naming the
        │   │   │                     endpoint
        │   │   ├── ConnectError      nothing was sent: refused, unreachable
        │   │   │   └── ConnectTimeout    not connected within the connect timeout
        │   │   ├── ReadTimeout       sent, but no complete answer within the total timeout
        │   │   ├── ConnectionLost    sent, then the connection broke
        │   │   └── BodyTooLarge      the answer passed the client's size limit
        │   ├── RelayTransportError   a JSON-RPC relay failed a whole request (jsonrpc)
        │   ├── BybitTransportError   a Bybit read got no usable answer (bybit)
        │   └── StreamTransportError  a stream's link failed: refused, DNS, lost (ws)
        ├── RejectedError             a well-formed answer that says no
        │   ├── RelayRpcError         a JSON-RPC error object for one call (jsonrpc)
        │   ├── BybitApiError         a non-zero retCode for a read (bybit)
        │   ├── BybitAuthError        the key is refused, or the account stopped (bybit)
        │   └── StreamAuthError       a stream's credentials are refused: retrying cannot
        │                             fix it (stream_supervisor)
        ├── BybitError                any Bybit read failed: the base of the three above
        ├── StreamError               a real-time stream failed: the base of the two
        │   │                         Stream* errors above and of the one below
        │   └── StreamStartError      the first connection did not authenticate within
        │                             its bound (stream_supervisor)
        └── RpcError                  the blocking helper failed, for any reason (rpc)

Catch :class:`RelayError` for "the network let us down", :class:`TransportError` for
"mark this link unhealthy", :class:`RejectedError` for "the far end answered, and said no".
The client modules re-export their own names (``from airlock.relays.jsonrpc import
RelayTransportError`` keeps working). No I/O and no aiohttp here: the blocking helper and
the CLI import this without loading the network stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airlock.errors import AirlockError

if TYPE_CHECKING:
    from airlock.relays.bybit_codes import Verdict

SHOW_CHARS = 160
"""How much of what a server sent an error message quotes: enough to recognise it."""


def clip(text: str, limit: int = SHOW_CHARS) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis marks the cut): messages reach
    logs, the CLI and the audit log, and a hostile server must not fill them."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class RelayError(AirlockError):
    """Base of every error a relay, the venue or a node causes."""


class TransportError(RelayError):
    """No usable answer arrived: the request may or may not have had an effect."""


class RejectedError(RelayError):
    """The far end answered in its own protocol, and the answer is an error."""


# ----------------------------------------------------------------- the HTTP layer's own


class HttpError(TransportError):
    """What the HTTP layer raises; ``detail`` is the cause in a few words.

    The clients catch it and say it in their own terms (an endpoint, a method): the layer
    knows neither, so it never reaches a caller outside ``relays/``.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ConnectError(HttpError):
    """The connection was refused or never opened: nothing was sent, a retry is safe.

    ``cause`` is the operating system's reason when there is one (``[Errno 111] …``),
    else the same as ``detail``.
    """

    def __init__(self, detail: str, cause: str | None = None) -> None:
        super().__init__(detail)
        self.cause = detail if cause is None else cause


class ConnectTimeout(ConnectError):
    """Not connected within the connect timeout (nothing was sent)."""


class ReadTimeout(HttpError):
    """The request may have left, but no complete answer came within the total timeout."""


class ConnectionLost(HttpError):
    """The request may have left, then the connection broke (reset, closed, garbled)."""


class BodyTooLarge(HttpError):
    """The answer is over the client's size limit: ``announced`` by its Content-Length
    (refused before reading), or None when reading passed the limit (stopped there)."""

    def __init__(self, limit: int, announced: int | None = None) -> None:
        if announced is None:
            super().__init__(f"answer is over the {limit}-byte limit; stopped reading")
        else:
            super().__init__(f"answer of {announced} bytes is over the {limit}-byte limit")
        self.limit = limit
        self.announced = announced


# ----------------------------------------------------------------- JSON-RPC relays


class RelayTransportError(TransportError):
    """The link or the relay is broken: timeout, refused, HTTP non-2xx, a body that is not
    JSON or is too big, a reply with a wrong id or shape, a result that makes no sense.

    The request may or may not have had an effect; the relay should be marked unhealthy.
    """

    def __init__(self, relay: str, reason: str) -> None:
        super().__init__(f"relay {relay!r}: {reason}")
        self.relay = relay
        self.reason = reason


class RelayRpcError(RejectedError):
    """The relay answered one call with a well-formed JSON-RPC error object."""

    def __init__(self, relay: str, method: str, code: int, message: str) -> None:
        super().__init__(f"relay {relay!r}: {method} failed: {clip(message)} (code {code})")
        self.relay = relay
        self.method = method
        self.code = code
        self.message = message


# ----------------------------------------------------------------- Bybit


class BybitError(RelayError):
    """A Bybit read failed; ``endpoint`` is the path, the message names the redacted URL."""

    def __init__(self, endpoint: str, reason: str) -> None:
        super().__init__(f"bybit {endpoint}: {reason}")
        self.endpoint = endpoint
        self.reason = reason


class BybitTransportError(BybitError, TransportError):
    """No usable answer: refused, timed out, lost, not JSON, too big, HTTP non-2xx."""


class BybitApiError(BybitError, RejectedError):
    """The venue answered a read with a non-zero retCode."""

    def __init__(self, endpoint: str, verdict: Verdict) -> None:
        super().__init__(endpoint, f"{verdict.message} (retCode {verdict.ret_code})")
        self.verdict = verdict


class BybitAuthError(BybitError, RejectedError):
    """The key is refused (or the account was stopped after it was): fix the key, then
    :meth:`~airlock.relays.bybit.BybitClient.reset_auth`. Carries the venue's own message."""


# ----------------------------------------------------------------- the blocking helper


class RpcError(RelayError):
    """The endpoint could not be reached, or answered with an error or garbage."""


# ----------------------------------------------------------------- real-time streams


class StreamError(RelayError):
    """A real-time stream (a WebSocket under :mod:`airlock.relays.stream_supervisor`)
    failed: the base the supervisor and the stream protocols catch."""


class StreamTransportError(StreamError, TransportError):
    """The stream's link failed: refused, DNS, timed out, lost, a frame too big or not text.

    Raised by :mod:`airlock.relays.ws` in place of aiohttp's own errors; the supervisor
    reconnects after it. ``detail`` is the cause in a few words.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class StreamAuthError(StreamError, RejectedError):
    """The venue refused the stream's credentials: retrying cannot fix the key, so the
    supervisor stops that stream and alerts once until the operator resumes it."""


class StreamStartError(StreamError):
    """The first connection did not authenticate and subscribe within its bound.

    ``url`` is redacted; ``reason`` says why (key refused, timeout, unreachable);
    ``refused`` is True when the venue refused the credentials (retrying will not help).
    """

    def __init__(self, url: str, reason: str, *, refused: bool = False) -> None:
        super().__init__(f"stream {url}: did not start: {reason}")
        self.url = url
        self.reason = reason
        self.refused = refused
