"""Clients for the Bybit simulator's account endpoints and WebSocket streams, written
here independently of the simulator from ``design/facts-bybit-v5.md`` and
``design/facts-bybit-ws.md``: a signed REST client (HMAC hex) and a WebSocket wrapper
that waits for messages with a bound (never a bare sleep)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from tests.kits.clocks import FakeClock

from airlock.sim.bybit import BybitSim

KEY = "ws_test_key"
SECRET = b"ws_test_secret"
T0 = 1_700_000_000_000
RECV_TIMEOUT_S = 5.0


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def code(self) -> int:
        return int(self.body["retCode"])

    @property
    def result(self) -> Any:
        return self.body["result"]


class Rest:
    """Signed V5 requests: HMAC-SHA256 hex over ts + key + window + payload."""

    def __init__(self, sim: BybitSim, clock: FakeClock, secret: bytes = SECRET) -> None:
        self.sim, self.clock, self.secret = sim, clock, secret

    def _headers(self, payload: bytes) -> dict[str, str]:
        ts, window = str(self.clock.now), "5000"
        text = ts.encode() + KEY.encode() + window.encode() + payload
        return {
            "X-BAPI-API-KEY": KEY,
            "X-BAPI-TIMESTAMP": ts,
            "X-BAPI-RECV-WINDOW": window,
            "X-BAPI-SIGN": hmac.new(self.secret, text, hashlib.sha256).hexdigest(),
            "Content-Type": "application/json",
        }

    def get(self, path: str, query: str = "") -> Reply:
        url = f"{self.sim.url}{path}" + (f"?{query}" if query else "")
        headers = self._headers(query.encode())
        return _send(urllib.request.Request(url, headers=headers, method="GET"))

    def post(self, path: str, payload: dict[str, Any]) -> Reply:
        body = json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.sim.url}{path}", data=body, headers=self._headers(body), method="POST"
        )
        return _send(request)

    def create(self, link: str, **fields: str) -> Reply:
        order = {"category": "linear", "symbol": "BTCUSDT", "side": "Buy",
                 "orderType": "Limit", "qty": "1", "price": "100", "orderLinkId": link}  # fmt: skip
        return self.post("/v5/order/create", {**order, **fields})


def _send(request: urllib.request.Request) -> Reply:
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, headers, raw = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        status, headers, raw = exc.code, dict(exc.headers), exc.read()
    return Reply(status, headers, json.loads(raw))


def auth_args(expires: int, secret: bytes = SECRET, key: str = KEY) -> list[Any]:
    """``[key, expires, HMAC-SHA256 hex of "GET/realtime" + expires]``."""
    signature = hmac.new(secret, f"GET/realtime{expires}".encode(), hashlib.sha256).hexdigest()
    return [key, expires, signature]


class Stream:
    """One WebSocket connection to the simulator, read with bounded waits."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))

    async def recv(self, timeout: float = RECV_TIMEOUT_S) -> dict[str, Any]:
        """The next JSON message; fails on a close or after ``timeout`` seconds."""
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
        data = json.loads(msg.data)
        assert isinstance(data, dict)
        return data

    async def recv_until(
        self, check: Callable[[dict[str, Any]], bool], timeout: float = RECV_TIMEOUT_S
    ) -> dict[str, Any]:
        """The first message that passes ``check`` within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            message = await self.recv(max(0.01, deadline - time.monotonic()))
            if check(message):
                return message

    async def closed(self, timeout: float = RECV_TIMEOUT_S) -> aiohttp.WSMessage:
        """Read until the server closes (or drops) the connection; the closing message."""
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.ws.receive(timeout=max(0.01, deadline - time.monotonic()))
            if msg.type in (
                aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR,
            ):  # fmt: skip
                return msg

    async def auth(self, expires: int, secret: bytes = SECRET) -> dict[str, Any]:
        await self.send({"op": "auth", "args": auth_args(expires, secret)})
        return await self.recv_until(lambda m: m.get("op") == "auth")

    async def subscribe(self, *topics: str) -> dict[str, Any]:
        await self.send({"op": "subscribe", "args": list(topics), "req_id": "sub"})
        return await self.recv_until(lambda m: m.get("op") == "subscribe")


def topic(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda message: message.get("topic") == name
