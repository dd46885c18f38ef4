"""The Bybit simulator's WebSocket streams over real loopback connections: auth, heartbeats,
pushes, the trade stream, DCP and every stream fault. Signatures are made here
(tests/kits/bybit_stream.py); time windows move on an injected clock, never by sleeping.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from tests.kits.bybit_stream import KEY, SECRET, T0, Rest, Stream, auth_args, topic
from tests.kits.clocks import FakeClock
from tests.kits.waiting import wait_until_async

from airlock.sim.bybit import BybitSim

Connect = Callable[..., Awaitable[Stream]]
EXPIRES = T0 + 10_000
TOPICS = ("order", "execution", "position", "wallet")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[BybitSim]:
    with BybitSim(KEY, secret=SECRET, clock_ms=clock, dcp_allowed=True) as venue:
        yield venue


@pytest.fixture
def rest(sim: BybitSim, clock: FakeClock) -> Rest:
    return Rest(sim, clock)


@pytest.fixture
async def connect(sim: BybitSim) -> AsyncIterator[Connect]:
    async with aiohttp.ClientSession() as session:

        async def open_stream(path: str = "/v5/private", query: str = "") -> Stream:
            url = f"{sim.ws_url}{path}" + (f"?{query}" if query else "")
            return Stream(await session.ws_connect(url, autoping=False))

        yield open_stream


async def private(connect: Connect, *topics: str, query: str = "") -> Stream:
    stream = await connect("/v5/private", query)
    assert (await stream.auth(EXPIRES))["success"] is True
    if topics:
        assert (await stream.subscribe(*topics))["success"] is True
    return stream


async def trade(connect: Connect) -> Stream:
    stream = await connect("/v5/trade")
    assert (await stream.auth(EXPIRES))["retCode"] == 0
    return stream


def kinds(sim: BybitSim, kind: str) -> list[Any]:
    return [e for e in sim.stream_log() if e.kind == kind]


# ------------------------------------------------------------------------- private auth


async def test_private_auth_reply_exactly(connect: Connect, sim: BybitSim) -> None:
    stream = await connect()
    reply = await stream.auth(EXPIRES)
    assert set(reply) == {"success", "ret_msg", "op", "conn_id"}
    assert reply["success"] is True and reply["ret_msg"] == "" and reply["op"] == "auth"
    [event] = kinds(sim, "auth")
    assert event.ok is True and event.conn_id == reply["conn_id"] and event.time_ms == T0
    again = await stream.auth(EXPIRES)  # a second auth on the same connection
    assert again["success"] is False


async def test_bad_signature_and_expired(connect: Connect) -> None:
    stream = await connect()
    bad = await stream.auth(EXPIRES, secret=b"not-the-secret")
    assert bad["success"] is False and bad["ret_msg"] and bad["op"] == "auth"
    expired = await stream.auth(T0)  # expires must be later than the venue's now
    assert expired == {**expired, "success": False, "ret_msg": "Params Error"}
    refused = await stream.subscribe("order")
    assert refused["success"] is False and refused["ret_msg"] == "Request not authorized"
    assert (await stream.auth(EXPIRES))["success"] is True  # the connection stays usable


async def test_subscribe_before_the_auth_ack(connect: Connect) -> None:
    stream = await connect()
    early = await stream.subscribe("order")
    assert early["success"] is False and early["ret_msg"] == "Request not authorized"
    # Sent right behind the auth, without waiting for its ack: still not authorized.
    await stream.send({"op": "auth", "args": auth_args(EXPIRES)})
    await stream.send({"op": "subscribe", "args": ["order"], "req_id": "eager"})
    first = await stream.recv()
    assert first["op"] == "subscribe" and first["success"] is False
    assert first["req_id"] == "eager"
    assert (await stream.recv())["success"] is True  # the auth ack, after it
    assert (await stream.subscribe("order", "wallet"))["success"] is True


async def test_rsa_keyed_stream_auth(clock: FakeClock) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    raw = key.sign(f"GET/realtime{EXPIRES}".encode(), padding.PKCS1v15(), hashes.SHA256())
    with BybitSim(KEY, rsa_public_pem=pem, clock_ms=clock) as venue:
        async with aiohttp.ClientSession() as session:
            stream = Stream(await session.ws_connect(f"{venue.ws_url}/v5/private"))
            hex_one = await stream.auth(EXPIRES)  # an HMAC signature is not an RSA one
            assert hex_one["success"] is False
            await stream.send(
                {"op": "auth", "args": [KEY, EXPIRES, base64.b64encode(raw).decode()]}
            )
            assert (await stream.recv())["success"] is True


async def test_unknown_topic_and_op(connect: Connect) -> None:
    stream = await private(connect)
    assert (await stream.subscribe("order", "greeks.nope"))["success"] is False
    await stream.send({"op": "dance"})
    assert (await stream.recv())["success"] is False
    await stream.ws.send_str("not json")
    assert (await stream.recv())["success"] is False


# ------------------------------------------------------------------------ heartbeats


async def test_private_and_trade_pongs(connect: Connect, clock: FakeClock) -> None:
    stream = await connect()
    await stream.send({"op": "ping"})
    pong = await stream.recv()
    assert pong == {"op": "pong", "args": [str(T0)], "conn_id": pong["conn_id"]}
    clock.now += 20_000
    await stream.send({"op": "ping", "req_id": "hb-1"})
    assert await stream.recv() == {"req_id": "hb-1", "op": "pong", "args": [str(T0 + 20_000)],
                                   "conn_id": pong["conn_id"]}  # fmt: skip
    trader = await connect("/v5/trade")
    await trader.send({"op": "ping", "reqId": "t-1"})
    tpong = await trader.recv()
    assert tpong == {"reqId": "t-1", "retCode": 0, "retMsg": "OK", "op": "pong",
                     "data": [str(T0 + 20_000)], "connId": tpong["connId"]}  # fmt: skip
    await stream.ws.ping(b"frame")  # protocol-level pings are answered too
    msg = await stream.ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.PONG and msg.data == b"frame"


async def test_idle_connection_dropped_after_max_active_time(
    connect: Connect, sim: BybitSim, clock: FakeClock
) -> None:
    kept = await private(connect, query="max_active_time=30s")
    idle = await private(connect, query="max_active_time=30s")
    clock.now += 25_000
    await kept.send({"op": "ping"})
    await kept.recv()
    clock.now += 5_001  # idle: 30.001 s without a frame; kept: 5.001 s since its ping
    sim.check_timers()
    await idle.closed()
    assert len(sim.open_streams()) == 1
    assert [e.detail for e in kinds(sim, "close")] == ["idle"]
    clock.now += 600_000
    sim.check_timers()
    await kept.closed()


async def test_bad_max_active_time_refused(connect: Connect) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await connect("/v5/private", "max_active_time=5s")
    assert caught.value.status == 400
    assert await connect("/v5/private", "max_active_time=10m")


# ----------------------------------------------------------------------------- pushes


async def test_pushes_after_create_and_mark_move(
    connect: Connect, sim: BybitSim, rest: Rest, clock: FakeClock
) -> None:
    stream = await private(connect, *TOPICS)
    sim.set_mark_price("BTCUSDT", "110")
    created = rest.create("push-1", qty="2")
    assert created.code == 0
    order = await stream.recv_until(topic("order"))
    assert set(order) == {"id", "topic", "creationTime", "data"}
    assert order["creationTime"] == T0
    [row] = order["data"]
    assert row["orderLinkId"] == "push-1" and row["orderStatus"] == "New"
    assert row["cancelType"] == "UNKNOWN" and row["rejectReason"] == "EC_NoError"
    assert (row["leavesQty"], row["cumExecQty"], row["avgPrice"]) == ("2", "0", "")
    assert row["createdTime"] == row["updatedTime"] == str(T0)
    flat = (await stream.recv_until(topic("position")))["data"][0]
    assert (flat["side"], flat["size"], flat["symbol"]) == ("", "0", "BTCUSDT")

    clock.now += 7
    sim.set_mark_price("BTCUSDT", "99")  # crosses the resting buy: a maker fill at 100
    [fill] = (await stream.recv_until(topic("execution")))["data"]
    assert fill["orderLinkId"] == "push-1" and fill["execType"] == "Trade"
    assert (fill["execPrice"], fill["execQty"], fill["execValue"]) == ("100", "2", "200")
    assert fill["isMaker"] is True and fill["execFee"] == "0.04"  # 0.02 % maker
    assert fill["execTime"] == str(T0 + 7) and fill["leavesQty"] == "0"
    assert isinstance(fill["seq"], int) and fill["execId"]
    done = (await stream.recv_until(topic("order")))["data"][0]
    assert (done["orderStatus"], done["cumExecQty"], done["avgPrice"]) == ("Filled", "2", "100")
    position = (await stream.recv_until(topic("position")))["data"][0]
    assert (position["side"], position["size"], position["entryPrice"]) == ("Buy", "2", "100")
    assert "avgPrice" not in position and position["markPrice"] == "99"
    assert position["unrealisedPnl"] == "-2" and position["cumRealisedPnl"] == "-0.04"
    wallet = (await stream.recv_until(topic("wallet")))["data"][0]
    [usdt] = wallet["coin"]
    assert usdt["walletBalance"] == "99999.96" and usdt["equity"] == "99997.96"
    assert sim.executions()[0]["execId"] == fill["execId"]


async def test_cancel_pushes_cancel_type_and_only_subscribed_topics(
    connect: Connect, rest: Rest
) -> None:
    orders_only = await private(connect, "order")
    everything = await private(connect, *TOPICS)
    rest.create("cx-1")
    rest.post("/v5/order/cancel", {"category": "linear", "symbol": "BTCUSDT",
                                   "orderLinkId": "cx-1"})  # fmt: skip
    seen = [(await orders_only.recv())["data"][0]["orderStatus"] for _ in range(2)]
    assert seen == ["New", "Cancelled"]
    await everything.recv_until(lambda m: m.get("topic") == "order"
                                and m["data"][0]["cancelType"] == "CancelByUser")  # fmt: skip
    await orders_only.send({"op": "ping", "req_id": "after"})
    assert (await orders_only.recv())["op"] == "pong"  # nothing else was pushed to it


# ------------------------------------------------------------------------ trade stream


def trade_op(op: str, args: dict[str, Any], req_id: str, ts: int = T0) -> dict[str, Any]:
    header = {"X-BAPI-TIMESTAMP": str(ts), "X-BAPI-RECV-WINDOW": "5000"}
    return {"reqId": req_id, "header": header, "op": op, "args": [args]}


ORDER = {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit",
         "qty": "1", "price": "100"}  # fmt: skip


async def test_trade_auth_forms(connect: Connect, sim: BybitSim) -> None:
    stream = await connect("/v5/trade")
    bad = await stream.auth(EXPIRES, secret=b"wrong")
    assert bad["retCode"] == 10004 and bad["op"] == "auth"
    early = trade_op("order.create", {**ORDER, "orderLinkId": "early"}, "r0")
    await stream.send(early)
    assert (await stream.recv())["retCode"] != 0
    ok = await stream.auth(EXPIRES)
    assert ok == {"retCode": 0, "retMsg": "OK", "op": "auth", "connId": ok["connId"]}
    assert (await stream.auth(EXPIRES))["retCode"] == 20001
    assert sim.orders() == []


async def test_trade_create_cancel_idempotency_and_20006(
    connect: Connect, sim: BybitSim, rest: Rest
) -> None:
    stream = await trade(connect)
    await stream.send(trade_op("order.create", {**ORDER, "orderLinkId": "ws-1"}, "req-1"))
    reply = await stream.recv()
    assert set(reply) == {"reqId", "retCode", "retMsg", "op", "data", "retExtInfo", "header",
                          "connId"}  # fmt: skip
    assert (reply["reqId"], reply["retCode"], reply["op"]) == ("req-1", 0, "order.create")
    assert reply["data"]["orderLinkId"] == "ws-1" and reply["data"]["orderId"]
    header = reply["header"]
    assert (header["X-Bapi-Limit"], header["X-Bapi-Limit-Status"]) == ("10", "9")
    assert header["Timenow"] == str(T0) and header["Traceid"]
    assert "X-Bapi-Limit-Reset-Timestamp" in header

    await stream.send(trade_op("order.create", {**ORDER, "orderLinkId": "ws-1"}, "req-2"))
    dup = await stream.recv()
    assert dup["retCode"] == 110072 and dup["data"] == {}
    assert rest.create("ws-1").code == 110072  # REST and the stream share one book
    await stream.send(trade_op("order.create", {**ORDER, "orderLinkId": "ws-2"}, "req-1"))
    assert (await stream.recv())["retCode"] == 20006
    assert [o["orderLinkId"] for o in sim.orders()] == ["ws-1"]

    cancel = {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "ws-1"}
    await stream.send(trade_op("order.cancel", cancel, "req-3"))
    cancelled = await stream.recv()
    assert cancelled["retCode"] == 0 and cancelled["data"]["orderLinkId"] == "ws-1"
    await stream.send(trade_op("order.cancel", cancel, "req-4"))
    assert (await stream.recv())["retCode"] == 110010
    assert sim.order(order_link_id="ws-1")["orderStatus"] == "Cancelled"  # type: ignore[index]
    ops = [(e.topic, e.detail) for e in kinds(sim, "op")]
    assert ops[0] == ("order.create", "0") and ops[-1] == ("order.cancel", "110010")


async def test_trade_timestamp_validation_and_bad_op(connect: Connect, sim: BybitSim) -> None:
    stream = await trade(connect)
    for ts, code in ((T0 - 5001, 10002), (T0 + 1000, 10002), (T0 - 5000, 0), (T0 + 999, 0)):
        await stream.send(trade_op("order.create", {**ORDER, "orderLinkId": f"ts{code}{ts}"},
                                   f"ts-{ts}", ts=ts))  # fmt: skip
        assert (await stream.recv())["retCode"] == code, ts
    await stream.send(trade_op("order.create", {**ORDER, "qty": "-1"}, "bad-qty"))
    assert (await stream.recv())["retCode"] == 10001
    await stream.send(trade_op("order.amend", ORDER, "amend"))
    assert (await stream.recv())["retCode"] == 10404
    assert len(sim.orders()) == 2


async def test_trade_ops_share_the_rest_rate_limit(connect: Connect, rest: Rest) -> None:
    stream = await trade(connect)
    for i in range(5):
        assert rest.create(f"mix-{i}").code == 0
    codes = []
    for i in range(6):
        await stream.send(trade_op("order.create", {**ORDER, "orderLinkId": f"ws-rl-{i}"},
                                   f"rl-{i}"))  # fmt: skip
        codes.append((await stream.recv())["retCode"])
    assert codes == [0, 0, 0, 0, 0, 10006]


# --------------------------------------------------------------------------------- DCP


async def test_dcp_fires_after_the_window(
    connect: Connect, sim: BybitSim, rest: Rest, clock: FakeClock
) -> None:
    dcp_body = {"product": "DERIVATIVES", "timeWindow": 5}
    assert rest.post("/v5/order/disconnected-cancel-all", dcp_body).code == 0
    guard = await private(connect, "dcp.future")
    watcher = await private(connect, "order")  # not on a dcp topic: does not count
    assert rest.create("dcp-1").code == 0
    assert rest.create("dcp-spot", category="spot").code == 0
    sim.drop_streams()
    await guard.closed()
    watcher = await private(connect, "order")
    clock.now += 5000
    sim.check_timers()  # exactly the window: not yet
    assert sim.order(order_link_id="dcp-1")["orderStatus"] == "New"  # type: ignore[index]
    clock.now += 1
    assert rest.get("/v5/order/realtime", "category=linear").code == 0  # a request checks too
    gone = sim.order(order_link_id="dcp-1")
    assert gone is not None and gone["orderStatus"] == "Cancelled"
    assert gone["cancelType"] == "CancelByDCP"
    assert sim.order(order_link_id="dcp-spot")["orderStatus"] == "New"  # type: ignore[index]
    pushed = await watcher.recv_until(topic("order"))
    assert pushed["data"][0]["cancelType"] == "CancelByDCP"
    history = rest.get("/v5/order/history", "category=linear&orderLinkId=dcp-1").result["list"]
    assert [(o["orderStatus"], o["cancelType"]) for o in history] == [("Cancelled", "CancelByDCP")]


async def test_dcp_reset_by_resubscribing_within_the_window(
    connect: Connect, sim: BybitSim, rest: Rest, clock: FakeClock
) -> None:
    assert rest.post("/v5/order/disconnected-cancel-all",
                     {"product": "DERIVATIVES", "timeWindow": 3}).code == 0  # fmt: skip
    assert rest.get("/v5/account/query-dcp-info").result["dcpInfos"][1] == {
        "product": "DERIVATIVES", "dcpStatus": "ON", "timeWindow": "3"}  # fmt: skip
    first = await private(connect, "dcp.future")
    assert rest.create("keep-1").code == 0
    await first.ws.close()
    await wait_until_async(lambda: not sim.open_streams(), 5, "the close to reach the venue")
    clock.now += 2000
    await private(connect, "dcp.future")  # back within the window
    clock.now += 60_000
    sim.check_timers()
    assert sim.order(order_link_id="keep-1")["orderStatus"] == "New"  # type: ignore[index]


async def test_dcp_needs_a_subscriber(sim: BybitSim, rest: Rest, clock: FakeClock) -> None:
    assert rest.create("lonely").code == 0
    clock.now += 3_600_000
    sim.check_timers()
    assert sim.order(order_link_id="lonely")["orderStatus"] == "New"  # type: ignore[index]


# ------------------------------------------------------------------------------ faults


async def test_drop_streams(connect: Connect, sim: BybitSim) -> None:
    streams = [await private(connect, "order"), await trade(connect)]
    assert sim.drop_streams() == 2
    for stream in streams:
        await stream.closed()
    assert sim.open_streams() == []
    assert sorted(e.detail for e in kinds(sim, "close")) == ["drop", "drop"]
    assert (await private(connect, "order")).ws.closed is False  # reconnecting works


async def test_silenced_stream_stays_up_answers_nothing_then_is_dropped(
    connect: Connect, sim: BybitSim, rest: Rest, clock: FakeClock
) -> None:
    stream = await private(connect, "order", query="max_active_time=60s")
    sim.silence_streams()
    await stream.send({"op": "ping", "req_id": "unanswered"})
    rest.create("hushed")
    fresh = await private(connect, "order")  # a new connection is not silenced
    sim.silence_streams(False)
    await stream.send({"op": "ping", "req_id": "answered"})
    first = await stream.recv()
    assert first["req_id"] == "answered"  # neither the first pong nor the push came
    lost = kinds(sim, "lost")
    assert [(e.topic, e.detail) for e in lost] == [("order", "silenced")]
    assert fresh.ws.closed is False
    sim.silence_streams()
    clock.now += 30_000
    await stream.send({"op": "ping"})  # not heard: does not keep it alive
    clock.now += 30_001
    sim.check_timers()
    await stream.closed()


async def test_refused_auths(connect: Connect, sim: BybitSim) -> None:
    sim.refuse_stream_auth(count=2)
    stream = await connect()
    assert (await stream.auth(EXPIRES))["success"] is False
    trader = await connect("/v5/trade")
    assert (await trader.auth(EXPIRES))["retCode"] == 10004
    assert (await stream.auth(EXPIRES))["success"] is True
    assert [e.ok for e in kinds(sim, "auth")] == [False, False, True]


async def test_revoked_key_closes_streams_and_refuses_auth(
    connect: Connect, sim: BybitSim, rest: Rest
) -> None:
    authed = await private(connect, "order")
    trader = await trade(connect)
    anonymous = await connect()
    sim.revoke_key()
    closing = await authed.closed()
    assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1008
    await trader.closed()
    refused = await anonymous.auth(EXPIRES)
    assert refused["success"] is False and refused["ret_msg"] == "Invalid apikey"
    retry = await connect("/v5/trade")
    assert (await retry.auth(EXPIRES))["retCode"] == 10003
    assert rest.create("after-revoke").code == 10003


async def test_lost_messages_change_state_without_a_push(
    connect: Connect, sim: BybitSim, rest: Rest
) -> None:
    stream = await private(connect, "order")
    sim.lose_stream_messages(count=1)
    rest.create("lost-1")
    rest.create("seen-2")
    first = await stream.recv()
    assert first["data"][0]["orderLinkId"] == "seen-2"
    assert sim.order(order_link_id="lost-1") is not None
    [lost] = kinds(sim, "lost")
    assert (lost.topic, lost.detail) == ("order", "fault")


async def test_duplicated_executions(connect: Connect, sim: BybitSim, rest: Rest) -> None:
    stream = await private(connect, "execution")
    sim.set_mark_price("BTCUSDT", "100")
    sim.duplicate_executions(count=1)
    rest.create("twice", orderType="Market")
    rest.create("once", orderType="Market")
    got = [await stream.recv() for _ in range(3)]
    links = [m["data"][0]["orderLinkId"] for m in got]
    assert links == ["twice", "twice", "once"]
    assert got[0] == got[1] and Decimal(got[0]["data"][0]["execFee"]) == Decimal("0.055")
    assert len(kinds(sim, "duplicate")) == 1 and len(sim.executions()) == 2


async def test_lost_trade_reply(connect: Connect, sim: BybitSim) -> None:
    stream = await trade(connect)
    sim.lose_trade_replies(count=1)
    await stream.send(trade_op("order.create", {**ORDER, "orderLinkId": "no-answer"}, "q1"))
    await stream.send(trade_op("order.create", {**ORDER, "orderLinkId": "no-answer"}, "q2"))
    reply = await stream.recv()
    assert reply["reqId"] == "q2" and reply["retCode"] == 110072  # the first one was placed
    assert [o["orderLinkId"] for o in sim.orders()] == ["no-answer"]
    assert [e.topic for e in kinds(sim, "reply_lost")] == ["order.create"]


async def test_stream_log_records_connections(connect: Connect, sim: BybitSim) -> None:
    stream = await private(connect, "order", "dcp.spot")
    await stream.ws.close()
    await wait_until_async(lambda: bool(kinds(sim, "close")), 5, "the close to be logged")
    log = [(e.stream, e.kind, e.topic) for e in sim.stream_log()]
    assert log == [("private", "connect", ""), ("private", "auth", ""),
                   ("private", "subscribe", "order,dcp.spot"),
                   ("private", "close", "")]  # fmt: skip
    assert kinds(sim, "close")[0].detail == "client"
