"""The Bybit V5 simulator over real HTTP on loopback: signatures computed here, independently,
exactly as ``design/facts-bybit-v5.md`` states them; time moved by an injected clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from tests.kits.clocks import FakeClock  # the venue's clock, moved by the test

from airlock.sim import bybit_engine as eng
from airlock.sim.bybit import CREATE, CREATE_BATCH, BybitSim

KEY = "test_api_key"
SECRET = b"test_secret"
T0 = 1_700_000_000_000
VECTOR = "fd4f31228a46109dc6673062328693696df9a96c7ff04e6491a45e7f63a0fdd7"
CLI_TIMEOUT = 20.0


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: dict[str, Any] | str

    @property
    def code(self) -> int:
        assert isinstance(self.body, dict), self.body
        return int(self.body["retCode"])

    @property
    def result(self) -> Any:
        assert isinstance(self.body, dict)
        return self.body["result"]


class Client:
    """A minimal V5 client: HMAC hex or RSA base64 over ts + key + window + payload."""

    def __init__(
        self,
        sim: BybitSim,
        clock: FakeClock,
        *,
        key: str = KEY,
        secret: bytes | None = SECRET,
        rsa_key: rsa.RSAPrivateKey | None = None,
    ) -> None:
        self.sim, self.clock, self.key, self.secret, self.rsa_key = sim, clock, key, secret, rsa_key

    def sign(self, ts: str, window: str, payload: bytes) -> str:
        text = ts.encode() + self.key.encode() + window.encode() + payload
        if self.rsa_key is not None:
            raw = self.rsa_key.sign(text, padding.PKCS1v15(), hashes.SHA256())
            return base64.b64encode(raw).decode()
        assert self.secret is not None
        return hmac.new(self.secret, text, hashlib.sha256).hexdigest()

    def headers(self, payload: bytes, ts: int | None, window: str, sign: str | None) -> dict:
        stamp = str(self.clock.now if ts is None else ts)
        return {
            "X-BAPI-API-KEY": self.key,
            "X-BAPI-TIMESTAMP": stamp,
            "X-BAPI-RECV-WINDOW": window,
            "X-BAPI-SIGN": sign if sign is not None else self.sign(stamp, window, payload),
            "Content-Type": "application/json",
        }

    def get(
        self, path: str, query: str = "", *, ts: int | None = None, sign: str | None = None
    ) -> Reply:
        headers = self.headers(query.encode(), ts, "5000", sign)
        url = f"{self.sim.url}{path}" + (f"?{query}" if query else "")
        return send(urllib.request.Request(url, headers=headers, method="GET"))

    def post(self, path: str, payload: dict[str, Any] | bytes, *, ts: int | None = None) -> Reply:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = self.headers(body, ts, "5000", None)
        request = urllib.request.Request(
            f"{self.sim.url}{path}", data=body, headers=headers, method="POST"
        )
        return send(request)

    def create(self, **fields: str) -> Reply:
        return self.post(CREATE, {"category": "linear", "symbol": "BTCUSDT", **fields})


def send(request: urllib.request.Request) -> Reply:
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, headers, raw = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        status, headers, raw = exc.code, dict(exc.headers), exc.read()
    try:
        body: dict[str, Any] | str = json.loads(raw)
    except ValueError:
        body = raw.decode()
    return Reply(status, headers, body)


def limit_buy(link: str, price: str = "100", qty: str = "1", **more: str) -> dict[str, str]:
    return {"side": "Buy", "orderType": "Limit", "qty": qty, "price": price,
            "orderLinkId": link, **more}  # fmt: skip


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[BybitSim]:
    with BybitSim(KEY, secret=SECRET, clock_ms=clock) as venue:
        yield venue


@pytest.fixture
def client(sim: BybitSim, clock: FakeClock) -> Client:
    return Client(sim, clock)


# ----------------------------------------------------------------------------- auth


def test_public_hmac_vector_is_reproduced() -> None:
    payload = eng.sign_payload(str(T0), KEY, "5000", b"category=linear&symbol=BTCUSDT")
    assert eng.hmac_signature(SECRET, payload) == VECTOR
    assert eng.verify_hmac(SECRET, payload, VECTOR)


def test_vector_signature_accepted_over_http(client: Client) -> None:
    reply = client.get("/v5/order/realtime", "category=linear&symbol=BTCUSDT", sign=VECTOR)
    assert reply.status == 200 and reply.code == 0, reply.body
    assert reply.body["time"] == T0  # type: ignore[index]


def test_server_time_from_clock(sim: BybitSim, clock: FakeClock) -> None:
    clock.now = T0 + 1234
    reply = send(urllib.request.Request(f"{sim.url}/v5/market/time"))
    assert reply.code == 0
    assert reply.result == {"timeSecond": str((T0 + 1234) // 1000),
                            "timeNano": str((T0 + 1234) * 10**6)}  # fmt: skip
    assert set(reply.body) == {"retCode", "retMsg", "result", "retExtInfo", "time"}


def test_rsa_signature_accepted_and_wrong_one_refused(clock: FakeClock) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with BybitSim(KEY, rsa_public_pem=pem, clock_ms=clock) as venue:
        good = Client(venue, clock, secret=None, rsa_key=key)
        assert good.create(**limit_buy("rsa-1")).code == 0
        assert good.get("/v5/order/realtime", "category=linear").code == 0
        assert (
            Client(venue, clock, secret=None, rsa_key=other).create(**limit_buy("rsa-2")).code
            == eng.SIGN_ERROR
        )
        hmac_client = Client(venue, clock)  # an HMAC hex signature is not an RSA one
        assert hmac_client.create(**limit_buy("rsa-3")).code == eng.SIGN_ERROR
        assert [o["orderLinkId"] for o in venue.orders()] == ["rsa-1"]


def test_signature_covers_exact_bytes(client: Client, sim: BybitSim, clock: FakeClock) -> None:
    body = json.dumps({"category": "linear", "symbol": "BTCUSDT", **limit_buy("x1")}).encode()
    headers = client.headers(body, None, "5000", None)
    tampered = body.replace(b'"qty": "1"', b'"qty": "9"')
    request = urllib.request.Request(
        f"{sim.url}{CREATE}", data=tampered, headers=headers, method="POST"
    )
    assert send(request).code == eng.SIGN_ERROR
    assert sim.orders() == []


@pytest.mark.parametrize(
    ("offset", "accepted"), [(-5000, True), (-5001, False), (999, True), (1000, False)]
)
def test_timestamp_window(client: Client, offset: int, accepted: bool) -> None:
    reply = client.get("/v5/order/realtime", "category=linear", ts=T0 + offset)
    if accepted:
        assert reply.code == 0
    else:
        assert reply.code == eng.TIMESTAMP_ERROR
        message = reply.body["retMsg"]  # type: ignore[index]
        assert f"req_timestamp[{T0 + offset}]" in message
        assert f"server_timestamp[{T0}]" in message and "recv_window[5000]" in message


def test_wrong_key_and_revoked_key(client: Client, sim: BybitSim, clock: FakeClock) -> None:
    stranger = Client(sim, clock, key="someone_else")
    assert stranger.create(**limit_buy("k1")).code == eng.INVALID_KEY
    assert client.create(**limit_buy("k2")).code == 0
    sim.revoke_key()
    assert client.create(**limit_buy("k3")).code == eng.INVALID_KEY
    assert client.get("/v5/order/realtime", "category=linear").code == eng.INVALID_KEY
    assert [o["orderLinkId"] for o in sim.orders()] == ["k2"]


# ------------------------------------------------------------------------------ orders


def test_create_rest_fill_history(client: Client, sim: BybitSim, clock: FakeClock) -> None:
    sim.set_mark_price("BTCUSDT", "110")
    created = client.create(**limit_buy("life-1", price="100", qty="2"))
    assert created.code == 0 and created.result["orderLinkId"] == "life-1"
    order_id = created.result["orderId"]
    open_now = client.get("/v5/order/realtime", "category=linear&symbol=BTCUSDT").result
    assert [(o["orderId"], o["orderStatus"]) for o in open_now["list"]] == [(order_id, "New")]
    assert sim.executions() == []

    clock.now += 50
    sim.set_mark_price("BTCUSDT", "99.5")
    [fill] = sim.executions()
    assert fill["orderId"] == order_id and fill["execQty"] == "2" and fill["execPrice"] == "100"
    assert fill["execTime"] == str(T0 + 50) and fill["isMaker"] is True

    listed = client.get("/v5/execution/list", "category=linear&symbol=BTCUSDT").result["list"]
    assert [e["execId"] for e in listed] == [fill["execId"]]
    assert client.get("/v5/order/realtime", "category=linear").result["list"] == []
    [done] = client.get("/v5/order/history", "category=linear&orderLinkId=life-1").result["list"]
    assert done["orderStatus"] == "Filled" and done["cumExecQty"] == "2"
    by_id = client.get("/v5/order/realtime", f"category=linear&orderId={order_id}")
    assert by_id.result["list"][0]["orderStatus"] == "Filled"  # recently closed, by id


def test_market_and_time_in_force(client: Client, sim: BybitSim) -> None:
    sim.set_mark_price("BTCUSDT", "100")
    market = client.create(side="Sell", orderType="Market", qty="3", orderLinkId="m1")
    assert market.code == 0
    assert sim.order(order_link_id="m1")["orderStatus"] == "Filled"  # type: ignore[index]
    assert sim.executions()[0]["execPrice"] == "100"
    client.create(**limit_buy("po-cross", price="101", timeInForce="PostOnly"))
    client.create(**limit_buy("po-rest", price="99", timeInForce="PostOnly"))
    client.create(**limit_buy("ioc-miss", price="99", timeInForce="IOC"))
    client.create(**limit_buy("fok-hit", price="100", timeInForce="FOK"))
    status = {o["orderLinkId"]: o["orderStatus"] for o in sim.orders()}
    assert status == {"m1": "Filled", "po-cross": "Cancelled", "po-rest": "New",
                      "ioc-miss": "Cancelled", "fok-hit": "Filled"}  # fmt: skip


def test_duplicate_order_link_id(client: Client, sim: BybitSim) -> None:
    assert client.create(**limit_buy("dup-1")).code == 0
    again = client.create(**limit_buy("dup-1", price="90"))
    assert again.code == eng.DUPLICATE_LINK_ID
    assert len(sim.orders()) == 1


@pytest.mark.parametrize("link", ["x" * 37, "has space", "semi;colon", "ünï"])
def test_invalid_order_link_id(client: Client, sim: BybitSim, link: str) -> None:
    assert client.create(**limit_buy(link)).code == eng.PARAM_ERROR
    assert sim.orders() == []


def test_longest_order_link_id_and_bad_fields(client: Client, sim: BybitSim) -> None:
    assert client.create(**limit_buy("A-_9" * 9)).code == 0
    assert client.create(**limit_buy("q0", qty="0")).code == eng.PARAM_ERROR
    assert client.post(CREATE, b"{not json").code == eng.PARAM_ERROR
    assert len(sim.orders()) == 1


def test_cancel(client: Client, sim: BybitSim) -> None:
    client.create(**limit_buy("c1"))
    cancel = {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "c1"}
    assert client.post("/v5/order/cancel", cancel).code == 0
    assert sim.order(order_link_id="c1")["orderStatus"] == "Cancelled"  # type: ignore[index]
    assert client.post("/v5/order/cancel", cancel).code == eng.ORDER_CANCELLED
    missing = {**cancel, "orderLinkId": "nope"}
    assert client.post("/v5/order/cancel", missing).code == eng.ORDER_NOT_EXISTS


def test_batch_partial_success(client: Client, sim: BybitSim) -> None:
    client.create(**limit_buy("b-taken"))
    batch = {"category": "linear", "request": [
        {"symbol": "BTCUSDT", **limit_buy("b-ok")},
        {"symbol": "BTCUSDT", **limit_buy("b-taken")},
        {"symbol": "BTCUSDT", **limit_buy("b-bad", qty="-1")},
    ]}  # fmt: skip
    reply = client.post(CREATE_BATCH, batch)
    assert reply.code == 0
    codes = [item["code"] for item in reply.body["retExtInfo"]["list"]]  # type: ignore[index]
    assert codes == [0, eng.DUPLICATE_LINK_ID, eng.PARAM_ERROR]
    ids = [item["orderId"] for item in reply.result["list"]]
    assert ids[0] and ids[1:] == ["", ""]
    assert [o["orderLinkId"] for o in sim.orders()] == ["b-taken", "b-ok"]
    too_many = {"category": "linear", "request": [{"symbol": "BTCUSDT"}] * 21}
    assert client.post(CREATE_BATCH, too_many).code == eng.PARAM_ERROR


def test_execution_pagination(clock: FakeClock) -> None:
    limits = {CREATE_BATCH: 1000}
    with BybitSim(KEY, secret=SECRET, clock_ms=clock, rate_limits=limits) as venue:
        client = Client(venue, clock)
        venue.set_mark_price("BTCUSDT", "100")
        for batch_no in range(8):
            items = [{"symbol": "BTCUSDT", "side": "Buy", "orderType": "Market", "qty": "1",
                      "orderLinkId": f"p{batch_no}-{i}"} for i in range(20)]  # fmt: skip
            assert client.post(CREATE_BATCH, {"category": "linear", "request": items}).code == 0
            clock.now += 1
        assert client.get("/v5/execution/list", "category=linear&limit=101").code == 10001
        assert client.get("/v5/execution/list", "category=linear&limit=0").code == 10001
        seen: list[str] = []
        cursor, pages = "", 0
        while True:
            query = "category=linear&limit=70" + (f"&cursor={cursor}" if cursor else "")
            reply = client.get("/v5/execution/list", query)
            assert reply.code == 0, reply.body
            seen += [e["execId"] for e in reply.result["list"]]
            cursor, pages = reply.result["nextPageCursor"], pages + 1
            if pages == 1:  # a fill arriving mid-paging must not shift the older pages
                client.create(side="Buy", orderType="Market", qty="1", orderLinkId="late")
            if not cursor:
                break
        all_ids = [e["execId"] for e in venue.executions()]
        assert pages == 3 and len(seen) == 160 == len(set(seen))
        assert set(seen) == set(all_ids[:160])
        assert client.get("/v5/execution/list", "category=linear&cursor=garbage").code == 10001


def test_realtime_pagination(client: Client, clock: FakeClock) -> None:
    for i in range(25):
        clock.now += 100  # 10 creates per second
        assert client.create(**limit_buy(f"r{i}")).code == 0
    first = client.get("/v5/order/realtime", "category=linear").result
    assert len(first["list"]) == 20 and first["nextPageCursor"]
    second = client.get(
        "/v5/order/realtime", f"category=linear&cursor={first['nextPageCursor']}"
    ).result
    assert len(second["list"]) == 5 and second["nextPageCursor"] == ""
    links = {o["orderLinkId"] for o in first["list"] + second["list"]}
    assert links == {f"r{i}" for i in range(25)}


def test_history_retention(client: Client, sim: BybitSim, clock: FakeClock) -> None:
    sim.set_mark_price("BTCUSDT", "100")
    client.create(**limit_buy("keep", price="100"))  # fills
    client.create(**limit_buy("gone", price="50"))
    client.post("/v5/order/cancel", {"category": "linear", "symbol": "BTCUSDT",
                                     "orderLinkId": "gone"})  # fmt: skip
    start = f"&startTime={T0 - 1}"
    clock.now = T0 + eng.DAY_MS + 1
    links = [
        o["orderLinkId"]
        for o in client.get("/v5/order/history", "category=linear" + start).result["list"]
    ]
    assert links == ["keep"]
    clock.now = T0 + 7 * eng.DAY_MS + 1
    assert client.get("/v5/order/history", "category=linear" + start).result["list"] == []
    span = f"category=linear&startTime={T0}&endTime={T0 + 8 * eng.DAY_MS}"
    assert client.get("/v5/order/history", span).code == eng.PARAM_ERROR


# ------------------------------------------------------------------------- rate limits


def test_rate_limit_headers_and_10006(client: Client, clock: FakeClock) -> None:
    remaining = []
    for i in range(10):
        reply = client.create(**limit_buy(f"rl{i}"))
        assert reply.code == 0
        assert reply.headers["X-Bapi-Limit"] == "10"
        assert reply.headers["X-Bapi-Limit-Reset-Timestamp"] == str(T0 + 1000)
        remaining.append(int(reply.headers["X-Bapi-Limit-Status"]))
    assert remaining == list(range(9, -1, -1))
    over = client.create(**limit_buy("rl-over"))
    assert over.code == eng.RATE_LIMITED and over.headers["X-Bapi-Limit-Status"] == "0"
    assert client.get("/v5/order/realtime", "category=linear").code == 0  # other endpoint
    clock.now += 1000
    assert client.create(**limit_buy("rl-later")).code == 0


def test_ip_ban(clock: FakeClock) -> None:
    with BybitSim(KEY, secret=SECRET, clock_ms=clock, rate_limits={"ip": 5}) as venue:
        client = Client(venue, clock)
        for _ in range(5):
            assert client.get("/v5/order/realtime", "category=linear").code == 0
        banned = client.get("/v5/order/realtime", "category=linear")
        assert banned.status == 403 and "access too frequent" in str(banned.body)
        clock.now += 9 * 60 * 1000  # the window has passed, the ban has not
        assert client.get("/v5/order/realtime", "category=linear").status == 403
        clock.now += 60 * 1000
        assert client.get("/v5/order/realtime", "category=linear").code == 0


# ------------------------------------------------------------------------------ faults


def test_lose_response_after_accept(client: Client, sim: BybitSim) -> None:
    sim.inject("lose_response_after_accept", path=CREATE)
    with pytest.raises((urllib.error.URLError, http.client.HTTPException, ConnectionError)):
        client.create(**limit_buy("lost-1"))
    stored = sim.order(order_link_id="lost-1")
    assert stored is not None and stored["orderStatus"] == "New"
    assert [r.lost for r in sim.requests()] == [True]
    assert client.create(**limit_buy("lost-1")).code == eng.DUPLICATE_LINK_ID  # then it answers


def test_http_5xx_and_ret_code_faults(client: Client, sim: BybitSim) -> None:
    sim.inject("http_5xx", status=503, count=2)
    sim.inject("ret_code", code=10016, path=CREATE)
    assert client.create(**limit_buy("f1")).status == 503
    assert client.get("/v5/order/realtime", "category=linear").status == 503
    assert client.create(**limit_buy("f1")).code == 10016
    assert sim.orders() == []  # neither fault processed anything
    sim.inject("delay", ms=20)
    assert client.create(**limit_buy("f1")).code == 0
    records = sim.requests()
    assert [r.status for r in records] == [503, 503, 200, 200]
    assert [r.ret_code for r in records] == [None, None, 10016, 0]
    assert records[-1].headers["X-BAPI-API-KEY"] == KEY
    with pytest.raises(ValueError):
        sim.inject("explode")


# -------------------------------------------------------------------------------- CLI


def test_cli_prints_url_and_stops_on_sigterm(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET + b"\n")
    command = [sys.executable, "-m", "airlock.sim.bybit", "--api-key", KEY,
               "--secret-file", str(secret_file)]  # fmt: skip
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as process:
        # readline() has no timeout: a watchdog kills a venue that never prints, ending it.
        watchdog = threading.Timer(CLI_TIMEOUT, process.kill)
        watchdog.start()
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            watchdog.cancel()
            assert url.startswith("http://127.0.0.1:")
            reply = send(urllib.request.Request(f"{url}/v5/market/time"))
            assert reply.code == 0
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=CLI_TIMEOUT) == 0
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()
