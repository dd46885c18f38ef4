"""A Bybit V5 REST simulator on loopback, faithful where airlock's correctness depends on it.

airlock sends queued orders when links return, so what it must get right is exactly what
breaks then: request signatures that expire (10002), keys that were revoked (10003),
signatures over the wrong bytes (10004), rate limits (10006, X-Bapi headers, the per-IP
403 ban), "already placed" (110072 on a reused orderLinkId), answers lost after the venue
accepted an order, and reconciliation through paged, cursor-driven order and execution
queries. This simulator reproduces those (``design/facts-bybit-v5.md``, "What a faithful
simulator reproduces") with an injectable clock, so tests never sleep to move time.
It also keeps positions and a UNIFIED wallet (``/v5/position/list``,
``/v5/account/wallet-balance``), Disconnect Cancel Protection, and serves the private
and trade WebSocket streams on the same port (``design/facts-bybit-ws.md``).

The pure rules live in :mod:`airlock.sim.bybit_engine` and :mod:`airlock.sim.bybit_account`;
the streams in :mod:`airlock.sim.bybit_ws`; this module is the HTTP shell: routing, the V5
envelope, auth headers, rate-limit accounting, fault injection, the request record and
the timers (DCP windows, idle streams) checked on every request and every tick. Like the
other simulators it runs its own loop in a daemon thread, and every test-control method
is thread-safe.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from airlock.clock import wall_clock_ms
from airlock.encoding.jsonlimit import loads_limited
from airlock.sim import bybit_engine as eng
from airlock.sim.bybit_account import (
    CANCEL_BY_DCP,
    DEFAULT_BALANCE,
    PRODUCT_CATEGORIES,
    AccountEngine,
    Dcp,
)
from airlock.sim.bybit_engine import VenueRefusal
from airlock.sim.bybit_ws import STREAM_KIND, OpResult, StreamControl, StreamHub, Venue
from airlock.sim.loopthread import HOST, LoopThread, reset_connection

CREATE = "/v5/order/create"
CREATE_BATCH = "/v5/order/create-batch"
CANCEL = "/v5/order/cancel"
REALTIME = "/v5/order/realtime"
HISTORY = "/v5/order/history"
EXECUTIONS = "/v5/execution/list"
POSITIONS = "/v5/position/list"
WALLET = "/v5/account/wallet-balance"
DCP_SET = "/v5/order/disconnected-cancel-all"
DCP_INFO = "/v5/account/query-dcp-info"
SERVER_TIME = "/v5/market/time"
IP_KEY = "ip"
TRADE_PATHS = {"order.create": CREATE, "order.cancel": CANCEL}
TICK_S = 0.05  # real seconds between checks of the timers on the simulator's clock

DEFAULT_RATE_LIMITS: dict[str, int] = {
    CREATE: 10,
    CANCEL: 10,
    # Facts: a batch counts per order; its own bucket and 20/s (so one full batch of 20
    # fits) are inferences, the facts give no number for it.
    CREATE_BATCH: 20,
    REALTIME: 50,
    HISTORY: 50,
    EXECUTIONS: 50,
    POSITIONS: 50,
    WALLET: 50,
    DCP_SET: 5,
    DCP_INFO: 10,  # inference: no number in the facts (a third-party tool says 10/s)
    IP_KEY: 600,
}
IP_SPAN_MS = 5000
IP_BAN_MS = 10 * 60 * 1000
FAULTS = frozenset({"lose_response_after_accept", "delay", "http_5xx", "ret_code"})
RECORDED_HEADERS = (
    "X-BAPI-API-KEY",
    "X-BAPI-TIMESTAMP",
    "X-BAPI-RECV-WINDOW",
    "X-BAPI-SIGN",
    "X-BAPI-SIGN-TYPE",
)


@dataclass(frozen=True)
class SimRequest:
    """One request as the venue saw and answered it. ``ret_code`` is None when no V5
    envelope was answered (HTTP error, 403 ban, lost response)."""

    time_ms: int
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    status: int
    ret_code: int | None
    lost: bool = False


@dataclass
class Fault:
    """An injected fault for the next ``count`` requests (to ``path``, if given)."""

    kind: str
    params: dict[str, Any]
    count: int
    path: str | None


@dataclass
class _Answer:
    """What a handler produced: a V5 envelope, or a bare HTTP status and text."""

    status: int = 200
    ret_code: int | None = 0
    ret_msg: str = "OK"
    result: Any = field(default_factory=dict)
    ext: Any = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    text: str | None = None


Handler = Callable[[Mapping[str, Any], int], _Answer]


class BybitSim(StreamControl, LoopThread):
    """A Bybit V5 venue with one account on 127.0.0.1 (see the module doc).

    Exactly one of ``secret`` (HMAC key) or ``rsa_public_pem`` (a self-generated RSA key
    registered with the venue) authenticates ``api_key``, over REST and on the streams.
    ``rate_limits`` overrides the per-endpoint limits per rolling second (keyed by path;
    trade-stream ops share the REST create/cancel counters, unconfirmed) and the per-IP
    limit per 5 s (key ``"ip"``). ``balance``: the wallet's starting USDT.
    ``dcp_allowed``: the account may use Disconnect Cancel Protection (only institutional
    accounts may); without it ``disconnected-cancel-all`` is refused.
    """

    def __init__(
        self,
        api_key: str,
        *,
        secret: bytes | None = None,
        rsa_public_pem: bytes | None = None,
        port: int = 0,
        clock_ms: Callable[[], int] = wall_clock_ms,
        rate_limits: dict[str, int] | None = None,
        balance: str | Decimal = DEFAULT_BALANCE,
        dcp_allowed: bool = False,
    ) -> None:
        if (secret is None) == (rsa_public_pem is None):
            raise ValueError("give exactly one of secret (HMAC) or rsa_public_pem (RSA)")
        super().__init__(port)
        self.thread_name = "bybitsim"
        self.api_key = api_key
        self._secret = secret
        self._rsa = eng.load_rsa_public(rsa_public_pem) if rsa_public_pem is not None else None
        self._clock = clock_ms
        self._limits = {**DEFAULT_RATE_LIMITS, **(rate_limits or {})}
        self._windows: dict[str, eng.Window] = {}
        self._ip_window = eng.Window(self._limits[IP_KEY], IP_SPAN_MS)
        self._banned_until: int | None = None
        self._revoked = False
        self._engine = AccountEngine(balances={"USDT": Decimal(balance)})
        self._dcp = Dcp(allowed=dcp_allowed)
        self._faults: list[Fault] = []
        self._requests: list[SimRequest] = []
        self._lock = threading.Lock()
        self._listener: asyncio.Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._streams = StreamHub(
            Venue(clock_ms, self._lock, self._key_valid, self._signature_ok, self._trade_op,
                  self._dcp)
        )  # fmt: skip
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", CREATE): self._create,
            ("POST", CREATE_BATCH): self._create_batch,
            ("POST", CANCEL): self._cancel,
            ("GET", REALTIME): self._realtime,
            ("GET", HISTORY): self._history,
            ("GET", EXECUTIONS): self._executions,
            ("GET", POSITIONS): self._positions,
            ("GET", WALLET): self._wallet,
            ("POST", DCP_SET): self._dcp_set,
            ("GET", DCP_INFO): self._dcp_info,
        }

    @property
    def ws_url(self) -> str:
        """The streams' base: ``ws_url + "/v5/private"`` and ``ws_url + "/v5/trade"``."""
        return f"ws://{HOST}:{self.port}"

    # -- lifecycle -------------------------------------------------------------------

    async def _astart(self) -> None:
        self._streams.loop = asyncio.get_running_loop()
        self._listener = await self._open_listener(self._handle)
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self.check_timers()

    async def _astop(self) -> None:
        with self._lock:
            self._streams.close_where(lambda c: False, "stop", abrupt=True)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        await self._cancel_the_rest()
        await asyncio.sleep(0)

    # -- test control (any thread) -----------------------------------------------------

    def set_mark_price(self, symbol: str, price: str) -> None:
        """Move the mark; resting limit orders it crosses fill now (and are pushed)."""
        with self._lock:
            self._engine.set_mark(symbol, Decimal(price), self._clock())
            self._publish()

    def revoke_key(self) -> None:
        """From now on the key is refused with 10003, as Bybit does for a deleted key;
        stream auths fail, and authenticated streams are closed (code 1008, unconfirmed)."""
        with self._lock:
            self._revoked = True
            self._streams.close_where(lambda c: not c.authed, "revoked", abrupt=False)

    def set_wallet_balance(self, amount: str, coin: str = "USDT") -> None:
        """Set a coin's walletBalance now (pushed on the wallet topic)."""
        with self._lock:
            self._engine.set_balance(coin, Decimal(amount))
            self._publish()

    def positions(self) -> list[dict[str, Any]]:
        """Every position the venue holds (REST rows plus category), flat ones too."""
        with self._lock:
            return self._engine.position_views()

    def wallet(self) -> dict[str, Any]:
        """The UNIFIED wallet as ``wallet-balance`` lists it (non-zero coins)."""
        with self._lock:
            return self._engine.wallet_view(None)

    def dcp_info(self) -> dict[str, Any]:
        """What ``query-dcp-info`` answers now."""
        with self._lock:
            return self._dcp.info()

    def check_timers(self) -> None:
        """Run the timer check now (it also runs on every request and every tick): fire
        DCP for each product whose window has passed, drop idle stream connections."""
        with self._lock:
            if not (self._dcp.gone_since or self._streams.open_streams()):
                return  # nothing to time: the clock is not even read
            now = self._clock()
            for product in self._dcp.due(now):
                self._engine.cancel_all(PRODUCT_CATEGORIES[product], now, CANCEL_BY_DCP)
            self._publish()
            self._streams.sweep(now)

    def inject(self, fault: str, *, count: int = 1, path: str | None = None, **params: Any) -> None:
        """Arm ``fault`` for the next ``count`` requests (to ``path`` if given).

        ``lose_response_after_accept``: process, then reset the connection unanswered;
        ``delay``: ``ms=`` real milliseconds before processing; ``http_5xx``: ``status=``
        answered as-is, nothing processed; ``ret_code``: ``code=`` answered in a V5
        envelope, nothing processed. Faults fire in the order they were armed.
        """
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {sorted(FAULTS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._faults.append(Fault(fault, dict(params), count, path))

    def clear_faults(self) -> None:
        """Disarm every fault armed and not yet consumed by a request."""
        with self._lock:
            self._faults.clear()

    def orders(self) -> list[dict[str, Any]]:
        """Every order the venue holds (whatever any query would show), oldest first."""
        with self._lock:
            return [o.view() for o in sorted(self._engine.orders.values(), key=lambda o: o.seq)]

    def order(self, *, order_id: str = "", order_link_id: str = "") -> dict[str, Any] | None:
        with self._lock:
            found = self._engine.find(order_id, order_link_id)
            return found.view() if found is not None else None

    def executions(self) -> list[dict[str, Any]]:
        """Every fill, oldest first."""
        with self._lock:
            return [e.view() for e in self._engine.executions]

    def requests(self) -> list[SimRequest]:
        with self._lock:
            return list(self._requests)

    # -- request handling --------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        self.check_timers()
        if request.path in STREAM_KIND:
            return await self._streams.serve(request)
        body = await request.read()
        query = request.raw_path.partition("?")[2]
        fault = self._take_fault(request.path)
        now = self._clock()
        answer = self._ip_gate(now)
        if answer is None and fault is not None and fault.kind == "delay":
            await asyncio.sleep(float(fault.params.get("ms", 0)) / 1000)
        if answer is None:
            answer = self._faulted(fault) or self._serve(request, query, body)
        lost = fault is not None and fault.kind == "lose_response_after_accept"
        self._record(request, query, body, now, answer, lost)
        if lost:
            await reset_connection(request)
        return _to_response(answer, self._clock())

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path is None or fault.path == path:
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _ip_gate(self, now: int) -> _Answer | None:
        """600 requests per 5 s per IP (all loopback clients are one IP); past it, HTTP 403
        for 10 minutes of the injected clock."""
        with self._lock:
            if self._banned_until is not None and now < self._banned_until:
                return _Answer(status=403, ret_code=None, text="access too frequent")
            if not self._ip_window.take(now):
                self._banned_until = now + IP_BAN_MS
                return _Answer(status=403, ret_code=None, text="access too frequent")
        return None

    @staticmethod
    def _faulted(fault: Fault | None) -> _Answer | None:
        if fault is None:
            return None
        if fault.kind == "http_5xx":
            status = int(fault.params.get("status", 502))
            return _Answer(status=status, ret_code=None, text=f"bybitsim: injected {status}")
        if fault.kind == "ret_code":
            code = int(fault.params.get("code", 10016))
            return _Answer(ret_code=code, ret_msg="injected error", result={})
        return None

    def _serve(self, request: web.BaseRequest, query: str, body: bytes) -> _Answer:
        if request.method == "GET" and request.path == SERVER_TIME:
            now = self._clock()
            return _Answer(result={"timeSecond": str(now // 1000), "timeNano": str(now * 10**6)})
        handler = self._routes.get((request.method, request.path))
        if handler is None:
            return _Answer(status=404, ret_code=None, text="bybitsim: no such endpoint")
        try:
            payload = body if request.method == "POST" else query.encode()
            self._authenticate(request.headers, payload)
            params = _post_params(body) if request.method == "POST" else _get_params(query)
            units = _batch_size(params) if request.path == CREATE_BATCH else 1
        except VenueRefusal as exc:
            return _Answer(ret_code=exc.code, ret_msg=exc.message, result={})
        return self._run(request.path, handler, params, units)

    def _run(self, path: str, handler: Handler, params: Mapping[str, Any], units: int) -> _Answer:
        """Rate-limit, then run an authenticated request (REST or trade stream) and push
        what changed; the limit headers go with every answer, a refusal's too."""
        headers, allowed = self._rate(path, units)
        if not allowed:
            answer = _Answer(ret_code=eng.RATE_LIMITED, ret_msg="Too many visits!")
        else:
            with self._lock:
                try:
                    answer = handler(params, self._clock())
                except VenueRefusal as exc:
                    answer = _Answer(ret_code=exc.code, ret_msg=exc.message, result={})
                self._publish()
        answer.headers.update(headers)
        return answer

    async def _trade_op(self, op: str, params: dict[str, Any]) -> OpResult:
        """A trade-stream op, run exactly as its REST request (signature and timestamp
        already checked by the stream). Not in :meth:`requests`: see :meth:`stream_log`."""
        self.check_timers()
        path = TRADE_PATHS[op]
        answer = self._run(path, self._routes["POST", path], params, 1)
        return OpResult(answer.ret_code or 0, answer.ret_msg, answer.result, answer.headers)

    def _publish(self) -> None:
        """Lock held: push the engine's changes to the streams."""
        changes = self._engine.drain()
        if changes:
            self._streams.publish(changes, self._clock())

    def _key_valid(self, key: str) -> bool:
        return key == self.api_key and not self._revoked

    def _signature_ok(self, payload: bytes, signature: str) -> bool:
        if self._secret is not None:
            return eng.verify_hmac(self._secret, payload, signature)
        assert self._rsa is not None
        return eng.verify_rsa(self._rsa, payload, signature)

    def _authenticate(self, headers: Mapping[str, str], payload: bytes) -> None:
        """Key (10003), then the timestamp window (10002), then the signature over the
        exact bytes received (10004)."""
        key = headers.get("X-BAPI-API-KEY")
        if key is None or not self._key_valid(key):
            raise VenueRefusal(eng.INVALID_KEY, "API key is invalid.")
        timestamp = headers.get("X-BAPI-TIMESTAMP")
        window = headers.get("X-BAPI-RECV-WINDOW")
        eng.check_timestamp(self._clock(), timestamp, window)
        assert timestamp is not None
        signed = eng.sign_payload(timestamp, key, window or "", payload)
        if not self._signature_ok(signed, headers.get("X-BAPI-SIGN", "")):
            raise VenueRefusal(eng.SIGN_ERROR, "error sign! origin_string[" + signed.decode() + "]")

    def _rate(self, path: str, units: int) -> tuple[dict[str, str], bool]:
        """Per-account, per-endpoint rolling second; headers on every answer, 10006 past it."""
        now = self._clock()
        with self._lock:
            window = self._windows.setdefault(path, eng.Window(self._limits[path]))
            allowed = window.take(now, units)
            headers = {
                "X-Bapi-Limit": str(window.limit),
                "X-Bapi-Limit-Status": str(window.remaining(now)),
                "X-Bapi-Limit-Reset-Timestamp": str(window.reset_ms(now)),
            }
        return headers, allowed

    def _record(
        self,
        request: web.BaseRequest,
        query: str,
        body: bytes,
        now: int,
        answer: _Answer,
        lost: bool,
    ) -> None:
        headers = {h: request.headers[h] for h in RECORDED_HEADERS if h in request.headers}
        item = SimRequest(
            now, request.method, request.path, query, headers, body, answer.status,
            answer.ret_code if answer.text is None else None, lost,
        )  # fmt: skip
        with self._lock:
            self._requests.append(item)

    # -- endpoints (called with the lock held) -------------------------------------------

    def _create(self, params: Mapping[str, Any], now: int) -> _Answer:
        order = self._engine.create(eng.validate_order(params), now)
        return _Answer(
            result={"orderId": order.order_id, "orderLinkId": order.request.order_link_id}
        )

    def _create_batch(self, params: Mapping[str, Any], now: int) -> _Answer:
        """Each item succeeds or fails on its own: results in ``result.list``, codes in
        ``retExtInfo.list``, the envelope itself OK."""
        category, items = params["category"], params["request"]
        results, codes = [], []
        for item in items:
            item_map = item if isinstance(item, dict) else {}
            try:
                order = self._engine.create(eng.validate_order(item_map, category), now)
                order_id, code, msg = order.order_id, eng.OK, "OK"
            except VenueRefusal as exc:
                order_id, code, msg = "", exc.code, exc.message
            results.append(
                {
                    "category": category,
                    "symbol": item_map.get("symbol", ""),
                    "orderId": order_id,
                    "orderLinkId": item_map.get("orderLinkId", ""),
                    "createAt": str(now) if order_id else "",
                }
            )
            codes.append({"code": code, "msg": msg})
        return _Answer(result={"list": results}, ext={"list": codes})

    def _cancel(self, params: Mapping[str, Any], now: int) -> _Answer:
        category, symbol = _category(params), params.get("symbol")
        order_id, link_id = params.get("orderId") or "", params.get("orderLinkId") or ""
        if not isinstance(symbol, str) or not (order_id or link_id):
            raise VenueRefusal(eng.PARAM_ERROR, "symbol and orderId or orderLinkId are required")
        order = self._engine.cancel(category, symbol, str(order_id), str(link_id), now)
        return _Answer(
            result={"orderId": order.order_id, "orderLinkId": order.request.order_link_id}
        )

    def _realtime(self, q: Mapping[str, Any], now: int) -> _Answer:
        category = _category(q)
        limit = eng.parse_limit(q.get("limit"), 20, 50)
        rows, cursor = eng.page(
            self._engine.realtime(category, q), "order", q.get("cursor"), limit, _seq
        )
        return _list_answer(category, [o.view() for o in rows], cursor)

    def _history(self, q: Mapping[str, Any], now: int) -> _Answer:
        category = _category(q)
        limit = eng.parse_limit(q.get("limit"), 20, 50)
        rows, cursor = eng.page(
            self._engine.history(category, q, now), "order", q.get("cursor"), limit, _seq
        )
        return _list_answer(category, [o.view() for o in rows], cursor)

    def _executions(self, q: Mapping[str, Any], now: int) -> _Answer:
        category = _category(q)
        limit = eng.parse_limit(q.get("limit"), 50, 100)
        rows, cursor = eng.page(
            self._engine.execution_list(category, q, now), "exec", q.get("cursor"), limit, _seq
        )
        return _list_answer(category, [e.view() for e in rows], cursor)

    def _positions(self, q: Mapping[str, Any], now: int) -> _Answer:
        return _list_answer(*self._engine.position_list(q, now))

    def _wallet(self, q: Mapping[str, Any], now: int) -> _Answer:
        return _Answer(result=self._engine.wallet_balance(q))

    def _dcp_set(self, params: Mapping[str, Any], now: int) -> _Answer:
        self._dcp.configure(params)
        return _Answer(ret_msg="success")

    def _dcp_info(self, q: Mapping[str, Any], now: int) -> _Answer:
        return _Answer(ret_msg="success", result=self._dcp.info())


# --------------------------------------------------------------------------- helpers


def _seq(item: Any) -> int:
    return int(item.seq)


def _batch_size(params: Mapping[str, Any]) -> int:
    """The number of orders in a well-formed batch (what it costs in rate limit); a
    malformed or oversized batch is refused with 10001 before it is counted."""
    category = params.get("category")
    items = params.get("request")
    if category not in eng.CATEGORIES or not isinstance(items, list) or not items:
        raise VenueRefusal(eng.PARAM_ERROR, "category and a non-empty request list needed")
    maximum = eng.BATCH_MAX_SPOT if category == "spot" else eng.BATCH_MAX
    if len(items) > maximum:
        raise VenueRefusal(eng.PARAM_ERROR, f"at most {maximum} orders per batch")
    return len(items)


def _category(params: Mapping[str, Any]) -> str:
    category = params.get("category")
    if category not in eng.CATEGORIES:
        raise VenueRefusal(eng.PARAM_ERROR, f"category must be one of {sorted(eng.CATEGORIES)}")
    return str(category)


def _list_answer(category: str, rows: list[dict[str, Any]], cursor: str) -> _Answer:
    return _Answer(result={"category": category, "list": rows, "nextPageCursor": cursor})


def _post_params(body: bytes) -> dict[str, Any]:
    try:
        payload = loads_limited(body)  # never plain json.loads: see airlock.encoding.jsonlimit
    except ValueError as exc:
        raise VenueRefusal(eng.PARAM_ERROR, f"request body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise VenueRefusal(eng.PARAM_ERROR, "request body must be a JSON object")
    return payload


def _get_params(query: str) -> dict[str, str]:
    return dict(parse_qsl(query, keep_blank_values=True))


def _to_response(answer: _Answer, now: int) -> web.Response:
    if answer.text is not None:
        return web.Response(status=answer.status, text=answer.text, headers=answer.headers)
    envelope = {
        "retCode": answer.ret_code,
        "retMsg": answer.ret_msg,
        "result": answer.result,
        "retExtInfo": answer.ext,
        "time": now,
    }
    return web.Response(
        status=answer.status,
        body=json.dumps(envelope).encode(),
        content_type="application/json",
        headers=answer.headers,
    )


# ------------------------------------------------------------------------------ command


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m airlock.sim.bybit", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--api-key", required=True)
    auth = parser.add_mutually_exclusive_group(required=True)
    auth.add_argument("--secret-file", type=Path, help="file holding the HMAC secret")
    auth.add_argument("--rsa-pubkey", type=Path, help="PEM file of the registered RSA key")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Foreground venue: print the URL on one line, serve until SIGTERM or SIGINT."""
    args = _parse_args(argv)
    secret = args.secret_file.read_bytes().strip() if args.secret_file else None
    pem = args.rsa_pubkey.read_bytes() if args.rsa_pubkey else None
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with BybitSim(args.api_key, secret=secret, rsa_public_pem=pem, port=args.port) as sim:
        print(sim.url, flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
