"""The Bybit V5 simulator's WebSocket streams: private (``/v5/private``) and trade
(``/v5/trade``), on the simulator's own server and port, with their faults.

What the facts (``design/facts-bybit-ws.md``) say is reproduced as they say it: the auth
string ``GET/realtime`` + expires, the private and trade reply forms, ``Request not
authorized`` before the auth ack, pongs in both forms, 20001/20006, the trade timestamp
window, no snapshot on subscribe, ``?max_active_time=``. Where they are silent the choice
is marked "unconfirmed" where it is made. :class:`StreamHub` holds the connections; the
simulator (:mod:`airlock.sim.bybit`) owns it, hands it every engine change to push
(:meth:`StreamHub.publish`, with the simulator's lock held) and runs trade ops for it as
REST would. :class:`StreamControl` is the test control mixed into the simulator.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from airlock.encoding.jsonlimit import loads_limited
from airlock.sim.bybit_account import TOPIC_PRODUCT, Dcp
from airlock.sim.bybit_engine import PARAM_ERROR, SIGN_ERROR, Change, VenueRefusal, check_timestamp

PRIVATE_PATH = "/v5/private"
TRADE_PATH = "/v5/trade"
STREAM_KIND = {PRIVATE_PATH: "private", TRADE_PATH: "trade"}
AUTH_PREFIX = b"GET/realtime"
TOPICS = frozenset({"order", "execution", "position", "wallet", *TOPIC_PRODUCT})
TRADE_OPS = frozenset({"order.create", "order.cancel"})
DEFAULT_MAX_ACTIVE_MS = 600_000
MAX_ACTIVE_RANGE_MS = (30_000, 600_000)
REQ_ID_MAX = 36
INVALID_KEY_CODE = 10003
REPEAT_AUTH = 20001
DUPLICATE_REQ_ID = 20006
BAD_OP = 10404
# The venue answers an auth after this much real time, so a subscribe (or trade op) sent
# right behind the auth, without waiting for its ack, meets "Request not authorized" as
# at Bybit (nautilus #2097). How long Bybit takes is unconfirmed.
AUTH_DELAY_S = 0.01
CLOSE_TIMEOUT_S = 2.0
# Private auth failures (ret_msg): "Params Error" is seen (expires too tight); the key and
# signature messages are unconfirmed. Trade: 10001 / 10003 (unconfirmed) / 10004.
AUTH_FAILURES = {
    "params": ("Params Error", PARAM_ERROR),
    "key": ("Invalid apikey", INVALID_KEY_CODE),
    "sign": ("Invalid sign", SIGN_ERROR),
    "repeat": ("Repeat auth", REPEAT_AUTH),  # private form unconfirmed; trade 20001
}


@dataclass(frozen=True)
class StreamEvent:
    """One thing that happened on a stream, at ``time_ms`` of the simulator's clock.

    ``kind``: ``connect``, ``auth`` (``ok``; ``detail`` the failure), ``subscribe`` /
    ``unsubscribe`` (``topic`` the args joined by ","), ``ping``, ``sent`` / ``lost`` /
    ``duplicate`` (a pushed message: ``topic``, ``detail`` its id, or for ``lost`` why:
    ``fault`` or ``silenced``), ``op`` (a trade op: ``topic`` the op, ``detail`` the
    retCode), ``reply_lost`` (a trade reply the fault swallowed), ``close`` (``detail``:
    ``client``, ``drop``, ``idle``, ``revoked``, ``stop``).
    """

    time_ms: int
    conn_id: str
    stream: str
    kind: str
    topic: str = ""
    ok: bool | None = None
    detail: str = ""


@dataclass(frozen=True)
class OpResult:
    """A trade op's outcome, as REST would have answered it."""

    code: int
    message: str
    result: Any
    headers: dict[str, str]


@dataclass(frozen=True)
class Venue:
    """What the streams need from the simulator."""

    clock: Callable[[], int]
    lock: threading.Lock
    key_valid: Callable[[str], bool]
    signature_ok: Callable[[bytes, str], bool]
    execute: Callable[[str, dict[str, Any]], Awaitable[OpResult]]
    dcp: Dcp


@dataclass(frozen=True)
class _Close:
    code: int
    message: bytes


@dataclass(eq=False)
class _Conn:
    conn_id: str
    stream: str
    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    max_active_ms: int
    last_active_ms: int
    queue: asyncio.Queue[str | _Close] = field(default_factory=asyncio.Queue)
    authed: bool = False
    auth_pending: bool = False
    silenced: bool = False
    gone: bool = False
    topics: set[str] = field(default_factory=set)
    req_ids: set[str] = field(default_factory=set)


def parse_max_active(text: str | None) -> int:
    """``?max_active_time=`` as milliseconds: ``30s``-``600s`` or ``1m``-``10m``."""
    if text is None:
        return DEFAULT_MAX_ACTIVE_MS
    match = re.fullmatch(r"(\d+)([sm])", text)
    ms = int(match[1]) * (1000 if match[2] == "s" else 60_000) if match else 0
    lo, hi = MAX_ACTIVE_RANGE_MS
    if not lo <= ms <= hi:
        raise ValueError(f"max_active_time must be 30s-600s (or 1m-10m), got {text!r}")
    return ms


def push_messages(changes: list[Change], now_ms: int) -> list[tuple[str, dict[str, Any]]]:
    """One message per topic per command, its ``data`` every item of that topic."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for change in changes:
        groups.setdefault(change.topic, []).append(change.data)
    return [
        (topic, {"id": str(uuid.uuid4()), "topic": topic, "creationTime": now_ms, "data": data})
        for topic, data in groups.items()
    ]


class StreamHub:
    """Every open stream connection, the pushes to them, their faults and their record.

    State is guarded by the simulator's lock (``venue.lock``); sends happen on the
    simulator's loop (``loop``, set when it starts), whichever thread caused them.
    """

    def __init__(self, venue: Venue) -> None:
        self.venue = venue
        self.loop: asyncio.AbstractEventLoop | None = None
        self._conns: dict[str, _Conn] = {}
        self._log: list[StreamEvent] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.refuse_auths = 0
        self.lose_pushes = 0
        self.dup_executions = 0
        self.lose_replies = 0

    # -- the connection ------------------------------------------------------------------

    async def serve(self, request: web.BaseRequest) -> web.StreamResponse:
        stream = STREAM_KIND[request.path]
        try:
            max_active = parse_max_active(request.query.get("max_active_time"))
        except ValueError as exc:  # unconfirmed: how Bybit answers a bad value
            return web.Response(status=400, text=str(exc))
        ws = web.WebSocketResponse(autoping=False, timeout=CLOSE_TIMEOUT_S)
        if not ws.can_prepare(request).ok:
            return web.Response(status=400, text="bybitsim: a WebSocket upgrade is expected")
        await ws.prepare(request)
        now = self.venue.clock()
        conn = _Conn(uuid.uuid4().hex, stream, ws, request.transport, max_active, now)
        with self.venue.lock:
            self._conns[conn.conn_id] = conn
            self._record(conn, "connect")
        writer = asyncio.create_task(self._write(conn))
        try:
            async for msg in ws:
                await self._receive(conn, msg)
        finally:
            with self.venue.lock:
                self._gone(conn, "client")
            writer.cancel()
        return ws

    async def _receive(self, conn: _Conn, msg: Any) -> None:
        with self.venue.lock:
            if conn.silenced or conn.gone:
                return  # a silent path: nothing arrives, so nothing counts as activity
            conn.last_active_ms = self.venue.clock()
        if msg.type == WSMsgType.PING:
            await conn.ws.pong(msg.data)
            return
        if msg.type != WSMsgType.TEXT:
            return
        try:
            data = loads_limited(str(msg.data).encode())
        except ValueError:
            data = None
        if not isinstance(data, dict):
            data = {"op": None}
        if conn.stream == "private":
            self._on_private(conn, data)
        else:
            await self._on_trade(conn, data)

    async def _write(self, conn: _Conn) -> None:
        """Send the connection's queue in order; a close item closes it after the rest."""
        while True:
            item = await conn.queue.get()
            try:
                if isinstance(item, _Close):
                    await conn.ws.close(code=item.code, message=item.message)
                    return
                await conn.ws.send_str(item)
            except (ConnectionError, RuntimeError):
                return

    # -- private stream ------------------------------------------------------------------

    def _on_private(self, conn: _Conn, data: dict[str, Any]) -> None:
        op, now = data.get("op"), self.venue.clock()
        echo = {"req_id": data["req_id"]} if "req_id" in data else {}
        if op == "ping":
            self._reply(conn, {**echo, "op": "pong", "args": [str(now)], "conn_id": conn.conn_id})
            with self.venue.lock:
                self._record(conn, "ping")
        elif op == "auth":
            self._start_auth(conn, data.get("args"), echo)
        elif op in ("subscribe", "unsubscribe"):
            with self.venue.lock:
                ok, message = self._subscribe(conn, str(op), data.get("args"), now)
            self._reply(conn, self._private_ack(conn, str(op), ok, message, echo))
        else:  # unconfirmed: Bybit's answer to an unknown op
            self._reply(conn, self._private_ack(conn, str(op), False, f"Invalid op: {op}", echo))

    @staticmethod
    def _private_ack(
        conn: _Conn, op: str, ok: bool, message: str, echo: dict[str, Any]
    ) -> dict[str, Any]:
        return {**echo, "success": ok, "ret_msg": message, "op": op, "conn_id": conn.conn_id}

    def _subscribe(self, conn: _Conn, op: str, args: Any, now: int) -> tuple[bool, str]:
        """Lock held. The whole request fails on one unknown topic (unconfirmed);
        per-category forms (``order.linear``) and ``execution.fast`` are not simulated;
        subscribing twice is not an error (unconfirmed)."""
        if not conn.authed:
            self._record(conn, op, ok=False, detail="Request not authorized")
            return False, "Request not authorized"
        topics = args if isinstance(args, list) else []
        unknown = [t for t in topics if not isinstance(t, str) or t not in TOPICS]
        if unknown or not topics:
            self._record(conn, op, ok=False, detail=f"bad topics {unknown}")
            return False, f"Invalid topic: {unknown or topics}"
        for topic in topics:
            if op == "subscribe":
                conn.topics.add(topic)
                if topic in TOPIC_PRODUCT:
                    self.venue.dcp.join(topic, conn.conn_id)
            elif topic in conn.topics:
                conn.topics.discard(topic)
                if topic in TOPIC_PRODUCT:
                    self.venue.dcp.leave(topic, conn.conn_id, now)
        self._record(conn, op, topic=",".join(topics), ok=True)
        return True, ""

    # -- auth (both streams) -------------------------------------------------------------

    def _start_auth(self, conn: _Conn, args: Any, echo: dict[str, Any]) -> None:
        with self.venue.lock:
            failure = self._check_auth(conn, args)
            if failure is None:
                conn.auth_pending = True
        key = str(args[0]) if failure is None else ""
        task = asyncio.get_running_loop().create_task(self._finish_auth(conn, key, failure, echo))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _check_auth(self, conn: _Conn, args: Any) -> str | None:
        """Lock held. The failure kind (``AUTH_FAILURES``), or None to accept."""
        if conn.authed or conn.auth_pending:
            return "repeat"
        if not isinstance(args, list) or len(args) != 3:
            return "params"
        key, expires, signature = args
        if isinstance(expires, int) and not isinstance(expires, bool):
            expires = str(expires)
        if not (isinstance(key, str) and isinstance(signature, str) and isinstance(expires, str)):
            return "params"
        if not expires.isdigit() or int(expires) <= self.venue.clock():
            return "params"  # expired: pybit #152 saw "Params Error" for a too-tight expires
        if not self.venue.key_valid(key):
            return "key"
        if self.refuse_auths > 0:
            self.refuse_auths -= 1
            return "sign"
        if not self.venue.signature_ok(AUTH_PREFIX + expires.encode(), signature):
            return "sign"
        return None

    async def _finish_auth(
        self, conn: _Conn, key: str, failure: str | None, echo: dict[str, Any]
    ) -> None:
        await asyncio.sleep(AUTH_DELAY_S)
        with self.venue.lock:
            conn.auth_pending = False
            if failure is None and not self.venue.key_valid(key):
                failure = "key"  # revoked while the auth was under way
            conn.authed = conn.authed or (failure is None and not conn.gone)
            message, code = AUTH_FAILURES[failure] if failure else ("", 0)
            self._record(conn, "auth", ok=failure is None, detail=message)
        # Unconfirmed: whether Bybit closes the connection after a failed auth (it stays).
        if conn.stream == "private":
            self._reply(conn, self._private_ack(conn, "auth", failure is None, message, echo))
        else:
            reply = {"retCode": code, "retMsg": message or "OK", "op": "auth"}
            self._reply(conn, {**echo, **reply, "connId": conn.conn_id})

    # -- trade stream --------------------------------------------------------------------

    async def _on_trade(self, conn: _Conn, data: dict[str, Any]) -> None:
        op, now = data.get("op"), self.venue.clock()
        echo = {"reqId": data["reqId"]} if "reqId" in data else {}
        if op == "auth":
            self._start_auth(conn, data.get("args"), echo)
        elif op == "ping":
            pong = {"retCode": 0, "retMsg": "OK", "op": "pong", "data": [str(now)]}
            self._reply(conn, {**echo, **pong, "connId": conn.conn_id})
            with self.venue.lock:
                self._record(conn, "ping")
        elif isinstance(op, str) and op in TRADE_OPS:
            answer = await self._trade_op(conn, op, data)
            reply = {**echo, **answer, "op": op, "connId": conn.conn_id}
            with self.venue.lock:
                lose = self.lose_replies > 0
                self.lose_replies -= 1 if lose else 0
                self._record(conn, "op", topic=op, detail=str(answer["retCode"]))
                if lose:
                    self._record(conn, "reply_lost", topic=op)
            if not lose:
                self._reply(conn, reply)
        else:  # amend and the batch ops are not simulated
            failed = {"retCode": BAD_OP, "retMsg": f"Invalid op: {op}", "op": op}
            self._reply(conn, {**echo, **failed, "connId": conn.conn_id})

    async def _trade_op(self, conn: _Conn, op: str, data: dict[str, Any]) -> dict[str, Any]:
        """Checks in this order: auth, reqId (20006 per connection, unconfirmed scope), the
        header's timestamp window (10002 as REST), one argument; then REST's own path."""
        now = self.venue.clock()
        try:
            with self.venue.lock:
                self._trade_checks(conn, data, now)
            outcome = await self.venue.execute(op, data["args"][0])
        except VenueRefusal as exc:
            outcome = OpResult(exc.code, exc.message, {}, {})
        header = {**outcome.headers, "Traceid": uuid.uuid4().hex, "Timenow": str(now)}
        return {
            "retCode": outcome.code,
            "retMsg": outcome.message,
            "data": outcome.result,
            "retExtInfo": {},
            "header": header,
        }

    @staticmethod
    def _trade_checks(conn: _Conn, data: dict[str, Any], now: int) -> None:
        if not conn.authed:  # unconfirmed: the retCode of an op before the auth ack
            raise VenueRefusal(PARAM_ERROR, "Request not authorized")
        req_id = data.get("reqId")
        if req_id is not None:
            if not isinstance(req_id, str) or not 0 < len(req_id) <= REQ_ID_MAX:
                raise VenueRefusal(PARAM_ERROR, f"reqId must be 1-{REQ_ID_MAX} characters")
            if req_id in conn.req_ids:
                raise VenueRefusal(DUPLICATE_REQ_ID, "Duplicate reqId")
            conn.req_ids.add(req_id)
        header = data.get("header")
        header = header if isinstance(header, dict) else {}
        ts, window = header.get("X-BAPI-TIMESTAMP"), header.get("X-BAPI-RECV-WINDOW")
        check_timestamp(now, ts if isinstance(ts, str) else None, window and str(window))
        args = data.get("args")
        if not isinstance(args, list) or len(args) != 1 or not isinstance(args[0], dict):
            raise VenueRefusal(PARAM_ERROR, "args must hold exactly one order")

    # -- pushes (lock held) --------------------------------------------------------------

    def publish(self, changes: list[Change], now: int) -> None:
        """Push the changes to every authenticated private connection subscribed to their
        topic, through the faults. Called with the lock held, from any thread."""
        if not changes:
            return
        for topic, message in push_messages(changes, now):
            text = json.dumps(message)
            for conn in list(self._conns.values()):
                if conn.stream == "private" and conn.authed and topic in conn.topics:
                    self._deliver(conn, topic, str(message["id"]), text, now)

    def _deliver(self, conn: _Conn, topic: str, msg_id: str, text: str, now: int) -> None:
        if conn.silenced or self.lose_pushes > 0:
            why = "silenced" if conn.silenced else "fault"
            self.lose_pushes -= 1 if why == "fault" else 0
            self._record(conn, "lost", topic=topic, detail=why)
            return
        conn.last_active_ms = now  # data sent counts as activity (unconfirmed)
        self._send(conn, text)
        self._record(conn, "sent", topic=topic, detail=msg_id)
        if topic == "execution" and self.dup_executions > 0:
            self.dup_executions -= 1
            self._send(conn, text)
            self._record(conn, "duplicate", topic=topic, detail=msg_id)

    def _send(self, conn: _Conn, item: str | _Close) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(conn.queue.put_nowait, item)

    def _reply(self, conn: _Conn, reply: dict[str, Any]) -> None:
        """An answer to the client (loop thread); a silenced connection answers nothing."""
        with self.venue.lock:
            if not conn.silenced and not conn.gone:
                self._send(conn, json.dumps(reply))

    # -- closing (lock held) -------------------------------------------------------------

    def _gone(self, conn: _Conn, reason: str) -> None:
        """Forget the connection now (DCP counts it gone from this moment); idempotent."""
        if conn.gone:
            return
        conn.gone = True
        self._conns.pop(conn.conn_id, None)
        now = self.venue.clock()
        for topic in conn.topics & TOPIC_PRODUCT.keys():
            self.venue.dcp.leave(topic, conn.conn_id, now)
        self._record(conn, "close", detail=reason)

    def close_where(self, keep: Callable[[_Conn], bool], reason: str, *, abrupt: bool) -> int:
        """Close every connection not kept: ``abrupt`` resets it like a network drop (no
        close frame), else a close frame after what is queued. Returns how many."""
        doomed = [c for c in self._conns.values() if not keep(c)]
        for conn in doomed:
            self._gone(conn, reason)
            if abrupt:
                if self.loop is not None and conn.transport is not None:
                    self.loop.call_soon_threadsafe(conn.transport.abort)
            else:  # unconfirmed: the close code Bybit uses
                code = WSCloseCode.POLICY_VIOLATION if reason == "revoked" else WSCloseCode.OK
                self._send(conn, _Close(code, reason.encode()))
        return len(doomed)

    def sweep(self, now: int) -> None:
        """Drop connections idle (nothing received, nothing pushed) longer than their
        max_active_time. Bybit checks every 30 s; this runs on every tick and request."""
        self.close_where(lambda c: now - c.last_active_ms <= c.max_active_ms, "idle", abrupt=False)

    def _record(self, conn: _Conn, kind: str, **fields: Any) -> None:
        self._log.append(StreamEvent(self.venue.clock(), conn.conn_id, conn.stream, kind, **fields))

    # -- views (lock held) ---------------------------------------------------------------

    def log(self) -> list[StreamEvent]:
        return list(self._log)

    def open_streams(self) -> list[dict[str, Any]]:
        return [
            {"conn_id": c.conn_id, "stream": c.stream, "authed": c.authed,
             "topics": sorted(c.topics), "silenced": c.silenced}
            for c in self._conns.values()
        ]  # fmt: skip

    def silence(self, on: bool) -> None:
        for conn in self._conns.values():
            conn.silenced = on


class StreamControl:
    """The streams' test control, mixed into the simulator: every method is thread-safe
    and, like ``inject``, may be called from tests and from the chaos suite."""

    _streams: StreamHub

    def drop_streams(self) -> int:
        """Reset every stream connection now, as a network drop; returns how many."""
        with self._streams.venue.lock:
            return self._streams.close_where(lambda c: False, "drop", abrupt=True)

    def silence_streams(self, on: bool = True) -> None:
        """Every connection open now stops answering (pings, auths, ops) and receiving
        pushes (recorded ``lost``/``silenced``); what it sends no longer counts as activity,
        so the venue drops it after its max_active_time. New connections are not silenced."""
        with self._streams.venue.lock:
            self._streams.silence(on)

    def refuse_stream_auth(self, count: int = 1) -> None:
        """The next ``count`` stream auths (either stream) fail as a bad signature."""
        with self._streams.venue.lock:
            self._streams.refuse_auths += _positive(count)

    def lose_stream_messages(self, count: int = 1) -> None:
        """The next ``count`` pushed messages (one per connection it was for) are not
        delivered, though the state changed: what a REST reconcile must recover."""
        with self._streams.venue.lock:
            self._streams.lose_pushes += _positive(count)

    def duplicate_executions(self, count: int = 1) -> None:
        """The next ``count`` execution messages (per connection) are delivered twice."""
        with self._streams.venue.lock:
            self._streams.dup_executions += _positive(count)

    def lose_trade_replies(self, count: int = 1) -> None:
        """The next ``count`` trade-stream op replies are not sent; the op was executed."""
        with self._streams.venue.lock:
            self._streams.lose_replies += _positive(count)

    def stream_log(self) -> list[StreamEvent]:
        """Everything that happened on the streams, oldest first."""
        with self._streams.venue.lock:
            return self._streams.log()

    def open_streams(self) -> list[dict[str, Any]]:
        """The connections open now: conn_id, stream, authed, topics, silenced."""
        with self._streams.venue.lock:
            return self._streams.open_streams()


def _positive(count: int) -> int:
    if count < 1:
        raise ValueError("count must be at least 1")
    return count
