"""Orders over the Bybit V5 trade stream (``[bybit] send_over = "ws"``).

A :class:`~airlock.relays.stream_supervisor.StreamProtocol` (auth in the trade form,
pings, replies matched to requests by ``reqId``) plus the two sends the venue side needs,
``create_order`` and ``cancel_order``, answering a
:class:`~airlock.relays.bybit.Placement` exactly as the REST client does, so the same
pure rules judge it (design/facts-bybit-ws.md, "Trade WebSocket"):

* the request is the REST body, under ``{"reqId","header":{X-BAPI-TIMESTAMP,
  X-BAPI-RECV-WINDOW},"op","args":[body]}``; the auth covers it (no per-request
  signature); the same orderLinkId, so a resend is the same order;
* the same rate pacing: the REST client's limit book is consulted before and fed after
  (the reply carries the same ``X-Bapi-Limit*`` headers);
* an answer that does not come (the stream dropped after the send, or the reply timeout)
  is a lost answer: ``unknown`` for a create, and the venue side looks the orderLinkId up
  before any resend, as for REST;
* a stream that is down sends nothing: the caller gets None and uses REST.

The trade stream's own codes (10403, 10429, 10019: not processed; 20006: a repeated
reqId) are rows of the one verdict table, :mod:`airlock.relays.bybit_codes`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

from airlock.relays.bybit import BybitClient, Placement
from airlock.relays.bybit_codes import CANCEL, CREATE, VenueOutcome, classify
from airlock.relays.errors import (
    BybitAuthError,
    StreamAuthError,
    StreamError,
    StreamTransportError,
    clip,
)
from airlock.relays.ws import WsConnection
from airlock.signer.bybit import OrderIntent, create_order_body

if TYPE_CHECKING:
    from airlock.relays.stream_supervisor import StreamSupervisor

log = logging.getLogger("airlock.relays.bybit_trade")

PING = json.dumps({"op": "ping"})
REFUSED_CODES = frozenset({10003, 10004, 10005, 10010})
REPEAT_AUTH = 20001


class BybitTradeStream:
    """The trade stream of one account (``url`` ends in ``/v5/trade``)."""

    def __init__(self, url: str, client: BybitClient, *, reply_timeout_s: float = 5.0) -> None:
        self.url = url
        self._client = client
        self._timeout = reply_timeout_s
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.supervisor: StreamSupervisor | None = None  # set by its owner

    # -- the protocol ----------------------------------------------------------------

    async def authenticate(self, ws: WsConnection, deadline_s: float) -> None:
        try:
            args = await self._client.stream_auth()
        except BybitAuthError as exc:  # the account is stopped: no auth until resumed
            raise StreamAuthError(f"{self.url}: {exc}") from None
        await ws.send_text(json.dumps({"op": "auth", "args": args}))
        while True:
            text = await ws.receive_text(deadline_s)
            if text is None:
                raise StreamError(f"{self.url}: closed before the auth reply")
            frame = _json(text)
            if frame is None or frame.get("op") != "auth":
                continue
            code = frame.get("retCode")
            if code in (0, REPEAT_AUTH):
                return
            message = clip(str(frame.get("retMsg") or frame))
            if code in REFUSED_CODES:
                raise StreamAuthError(f"{self.url}: the venue refused the API key: {message}")
            raise StreamError(f"{self.url}: auth failed ({code}): {message}")

    async def subscribe(self, ws: WsConnection) -> None:
        return  # the trade stream has no topics

    def ping(self) -> str:
        return PING

    def is_heartbeat(self, text: str) -> bool:
        frame = _json(text)
        return frame is not None and frame.get("op") == "pong"

    async def on_message(self, text: str) -> None:
        frame = _json(text)
        req_id = frame.get("reqId") if frame is not None else None
        future = self._pending.get(str(req_id)) if req_id is not None else None
        if future is not None and not future.done():
            assert frame is not None
            future.set_result(frame)
        elif frame is not None and frame.get("op") not in ("auth", "pong"):
            log.info("bybit trade stream: a reply nobody waits for: %s", clip(text))

    async def on_connected(self, first: bool) -> None:
        return

    async def on_disconnected(self, why: str) -> None:
        for future in self._pending.values():  # sent, unanswered: the answer is lost
            if not future.done():
                future.set_exception(StreamTransportError(f"stream dropped: {why}"))

    # -- the sends -------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        return self.supervisor is not None and self.supervisor.is_connected

    async def create_order(self, intent: OrderIntent) -> Placement | None:
        """One order over the stream; None when the stream is down (send it over REST)."""
        body = json.loads(create_order_body(intent))
        return await self._place("order.create", CREATE, body, intent.order_link_id)

    async def cancel_order(
        self, category: str, symbol: str, order_link_id: str
    ) -> Placement | None:
        body = {"category": category, "symbol": symbol, "orderLinkId": order_link_id}
        return await self._place("order.cancel", CANCEL, body, order_link_id)

    async def _place(
        self, op: str, path: str, body: dict[str, Any], link_id: str
    ) -> Placement | None:
        if not self.usable or self._client.auth_stopped is not None:
            return None
        assert self.supervisor is not None
        await self._client.pace(path)
        req_id = uuid.uuid4().hex  # 32 characters: Bybit allows up to 36
        header = {
            "X-BAPI-TIMESTAMP": str(self._client.server_now_ms()),
            "X-BAPI-RECV-WINDOW": str(self._client.recv_window_ms),
        }
        frame = {"reqId": req_id, "header": header, "op": op, "args": [body]}
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = future
        try:
            try:
                await self.supervisor.send(json.dumps(frame))
            except StreamTransportError:
                return None  # nothing left: REST takes it
            try:
                reply = await asyncio.wait_for(future, self._timeout)
            except (TimeoutError, StreamTransportError) as exc:
                return _lost(path, link_id, f"trade stream: {exc or 'no reply in time'}")
        finally:
            self._pending.pop(req_id, None)
        return await self._judge(reply, path, link_id)

    async def _judge(self, reply: dict[str, Any], path: str, link_id: str) -> Placement:
        headers = reply.get("header")
        if isinstance(headers, dict):
            self._client.note_limits(path, {str(k): str(v) for k, v in headers.items()})
        code, message = reply.get("retCode"), str(reply.get("retMsg") or "")
        if type(code) is not int:
            return _lost(
                path, link_id, f"trade stream: a reply without retCode: {clip(str(reply))}"
            )
        verdict = classify(code, message, endpoint=path)
        if verdict.outcome is VenueOutcome.AUTH_STOP:
            await self._client.stop_account(message)
        data = reply.get("data")
        data = data if isinstance(data, dict) else {}
        order_id = data.get("orderId") if verdict.outcome is VenueOutcome.PLACED else None
        return Placement(
            verdict.outcome, str(order_id) if order_id else None, link_id, code, message,
            verdict.rule,
        )  # fmt: skip


def _lost(path: str, link_id: str, why: str) -> Placement:
    outcome = VenueOutcome.UNKNOWN if path == CREATE else VenueOutcome.LATER
    return Placement(outcome, None, link_id, None, why, "lost-answer")


def _json(text: str) -> dict[str, Any] | None:
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    return frame if isinstance(frame, dict) else None
