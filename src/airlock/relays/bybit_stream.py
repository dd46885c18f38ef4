"""The Bybit V5 private stream's protocol: auth, subscribe, heartbeats, messages.

A :class:`~airlock.relays.stream_supervisor.StreamProtocol` for
:class:`~airlock.relays.stream_supervisor.StreamSupervisor`, which owns the connection's
life (reconnects, backoff, stale detection, the loud first start). Per
design/facts-bybit-ws.md:

* auth: ``{"op":"auth","args":[api_key, expires, signature]}``, the signature over
  ``"GET/realtime" + expires`` made by the HSM like every REST signature
  (:meth:`BybitClient.stream_auth`); expires is on the venue's clock, a margin ahead
  (pybit's 1 s is too tight); subscribe only after the ack;
* ``{"op":"ping"}`` every 20 s; a pong may come in the private, trade or public form;
* messages ``{"id","topic","creationTime","data":[…]}``: no snapshot on subscribe, so
  every (re)subscribe is followed by the caller's REST pass over the gap (``on_gap``).

What the messages mean for the queue is the broadcaster's business: this module hands on
:class:`StreamMessage` records and never touches the store.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airlock.relays.errors import BybitAuthError, StreamAuthError, StreamError, clip
from airlock.relays.ws import WsConnection

if TYPE_CHECKING:
    from airlock.relays.bybit import BybitClient

log = logging.getLogger("airlock.relays.bybit_stream")

TOPICS = ("order", "execution", "position", "wallet")
DCP_TOPICS = {"DERIVATIVES": "dcp.future", "SPOT": "dcp.spot", "OPTIONS": "dcp.option"}
PING = json.dumps({"op": "ping"})
STREAM_HOSTS = {
    "api.bybit.com": "stream.bybit.com",
    "api-testnet.bybit.com": "stream-testnet.bybit.com",
}
# A refused auth is a refused key (retrying cannot fix it: the account stops until the
# operator says so) unless its message says otherwise: "Params Error" is what a late
# expires gets (pybit #152); the venue's other refusal texts are unconfirmed (the facts).
TRANSIENT = ("params error", "timeout", "try again", "busy", "system error")


@dataclass(frozen=True)
class StreamMessage:
    """One pushed message: its topic, the venue's time, and its rows as sent."""

    topic: str
    creation_ms: int
    rows: tuple[dict[str, Any], ...]


Deliver = Callable[[StreamMessage], Awaitable[None]]
OnGap = Callable[[bool], Awaitable[None]]


class BybitPrivateStream:
    """The private stream of one account (``url`` ends in ``/v5/private``)."""

    def __init__(
        self,
        url: str,
        client: BybitClient,
        *,
        deliver: Deliver,
        on_gap: OnGap,
        topics: Sequence[str] = TOPICS,
        expires_margin_ms: int = 10_000,
    ) -> None:
        self.url = url
        self._client = client
        self._deliver = deliver
        self._on_gap = on_gap
        self._topics = tuple(topics)
        self._margin = expires_margin_ms
        self._req = 0
        self.last_message_ms: int | None = None  # our clock, at the last pushed message

    # -- the protocol the supervisor drives ------------------------------------------

    async def authenticate(self, ws: WsConnection, deadline_s: float) -> None:
        try:
            args = await self._client.stream_auth(self._margin)
        except BybitAuthError as exc:  # the account is stopped: no auth until resumed
            raise StreamAuthError(f"{self.url}: {exc}") from None
        await ws.send_text(json.dumps({"op": "auth", "args": args}))
        reply = await _reply(ws, "auth", deadline_s)
        if reply.get("success") is True:
            return
        message = str(reply.get("ret_msg") or reply.get("retMsg") or "auth refused")
        if any(word in message.lower() for word in TRANSIENT):
            raise StreamError(f"{self.url}: auth failed, retrying: {clip(message)}")
        raise StreamAuthError(f"{self.url}: the venue refused the API key: {clip(message)}")

    async def subscribe(self, ws: WsConnection) -> None:
        self._req += 1
        request = {"op": "subscribe", "args": list(self._topics), "req_id": f"al-{self._req}"}
        await ws.send_text(json.dumps(request))
        reply = await _reply(ws, "subscribe", 10.0)
        if reply.get("success") is not True:
            message = clip(str(reply.get("ret_msg") or reply))
            if "not authorized" in message.lower():
                raise StreamAuthError(f"{self.url}: subscription refused: {message}")
            raise StreamError(f"{self.url}: subscription refused: {message}")

    def ping(self) -> str:
        return PING

    def is_heartbeat(self, text: str) -> bool:
        frame = _json(text)
        return frame is not None and (frame.get("op") == "pong" or frame.get("ret_msg") == "pong")

    async def on_message(self, text: str) -> None:
        frame = _json(text)
        if frame is None:
            log.warning("bybit stream: a frame that is not a JSON object: %s", clip(text))
            return
        message = parse_message(frame)
        if message is None:
            if frame.get("op") not in ("auth", "subscribe", "pong"):
                log.info("bybit stream: unexpected frame: %s", clip(text))
            return
        self.last_message_ms = time.time_ns() // 1_000_000
        await self._deliver(message)

    async def on_connected(self, first: bool) -> None:
        await self._on_gap(first)

    async def on_disconnected(self, why: str) -> None:
        log.warning("bybit stream down: %s", why)


def parse_message(frame: dict[str, Any]) -> StreamMessage | None:
    """A pushed message, or None for what is not one (acks, pongs)."""
    topic, data = frame.get("topic"), frame.get("data")
    if not isinstance(topic, str) or not isinstance(data, list):
        return None
    try:
        created = int(frame.get("creationTime") or 0)
    except (TypeError, ValueError):
        created = 0
    rows = tuple(row for row in data if isinstance(row, dict))
    return StreamMessage(topic, created, rows)


def stream_url(base_url: str) -> str:
    """The private stream beside a REST base URL: Bybit's own hosts map to their stream
    hosts (api.bybit.com -> stream.bybit.com, api-testnet -> stream-testnet), any other
    host (the simulator, a gateway) serves both."""
    scheme, _, rest = base_url.rstrip("/").partition("://")
    host = rest.partition("/")[0]
    host = STREAM_HOSTS.get(host, host)
    ws = "wss" if scheme == "https" else "ws"
    return f"{ws}://{host}/v5/private"


async def _reply(ws: WsConnection, op: str, deadline_s: float) -> dict[str, Any]:
    """Frames until the reply to ``op``; pushed messages before it are not expected (no
    subscription yet) and are dropped."""
    end = time.monotonic() + deadline_s
    while True:
        left = end - time.monotonic()
        if left <= 0:
            raise StreamError(f"no {op} reply within {deadline_s:g} s")
        try:
            text = await ws.receive_text(left)
        except TimeoutError:
            raise StreamError(f"no {op} reply within {deadline_s:g} s") from None
        if text is None:
            raise StreamError(f"the venue closed the stream before the {op} reply")
        frame = _json(text)
        if frame is not None and frame.get("op") == op:
            return frame


def _json(text: str) -> dict[str, Any] | None:
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    return frame if isinstance(frame, dict) else None
