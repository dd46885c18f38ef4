"""The Bybit V5 client: the retCode table and backoff as tables, the HTTP shell against the
real simulator on loopback. Time is moved by injected clocks and sleeps, never waited for."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from tests.kits.clocks import FakeClock

from airlock.relays.bybit import (
    BackoffPolicy,
    BybitAuthError,
    BybitClient,
    ConnectionSupervisor,
    VenueOutcome,
)
from airlock.relays.bybit_codes import CANCEL, CREATE, classify, classify_http
from airlock.signer.bybit import OrderIntent, hmac_signature, make_order_intent, order_link_id_for
from airlock.sim.bybit import BybitSim

KEY = "airlock-test-key"
SECRET = b"0123456789abcdef0123456789abcdef0123"  # 36 bytes
T0 = 1_700_000_000_000
V = VenueOutcome
INSTANT = BackoffPolicy(base_s=0.5, factor=2.0, cap_s=4.0, jitter=0.0, max_retries=3)


def hmac_sign(secret: bytes = SECRET) -> Any:
    return lambda payload: hmac_signature(
        lambda p: hmac.new(secret, p, hashlib.sha256).digest(), payload
    )


def intent(n: int, *, price: str = "100") -> OrderIntent:
    return make_order_intent(
        category="linear",
        symbol="BTCUSDT",
        side="Buy",
        order_type="Limit",
        qty="0.01",
        price=price,
        order_link_id=order_link_id_for(f"order-{n}"),
    )


def client(sim: BybitSim, clock: FakeClock, **kw: Any) -> BybitClient:
    kw.setdefault("backoff", INSTANT)
    kw.setdefault("clock_ms", clock)
    kw.setdefault("sleep", clock.sleep)
    return BybitClient(sim.url, KEY, kw.pop("sign", hmac_sign()), "hmac", **kw)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def creates(sim: BybitSim) -> list[Any]:
    return [r for r in sim.requests() if r.path == CREATE]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[BybitSim]:
    with BybitSim(KEY, secret=SECRET, clock_ms=clock) as venue:
        yield venue


# ----------------------------------------------------------------------------- pure: codes

CODE_TABLE = [
    # (code, outcome on create, outcome on cancel)
    (0, V.PLACED, V.PLACED),
    (10000, V.UNKNOWN, V.LATER),
    (10016, V.UNKNOWN, V.LATER),
    (170007, V.UNKNOWN, V.LATER),
    (170146, V.UNKNOWN, V.LATER),
    (10001, V.REJECTED, V.REJECTED),
    (10002, V.RETRY_RESYNC, V.RETRY_RESYNC),
    (10003, V.AUTH_STOP, V.AUTH_STOP),
    (10004, V.AUTH_STOP, V.AUTH_STOP),
    (10005, V.AUTH_STOP, V.AUTH_STOP),
    (10010, V.AUTH_STOP, V.AUTH_STOP),
    (10006, V.RATE_LIMITED, V.RATE_LIMITED),
    (10014, V.UNKNOWN, V.UNKNOWN),
    (110001, V.REJECTED, V.REJECTED),
    (110003, V.REJECTED, V.REJECTED),
    (110004, V.REJECTED, V.REJECTED),
    (110007, V.REJECTED, V.REJECTED),
    (110012, V.REJECTED, V.REJECTED),
    (110020, V.REJECTED, V.REJECTED),
    (110008, V.REJECTED, V.REJECTED),
    (110010, V.REJECTED, V.REJECTED),
    (110072, V.ALREADY_PLACED, V.ALREADY_PLACED),
    (170141, V.ALREADY_PLACED, V.ALREADY_PLACED),
    (110079, V.LATER, V.LATER),
    # the trade stream's own (facts-bybit-ws.md)
    (10403, V.LATER, V.LATER),
    (10429, V.LATER, V.LATER),
    (10019, V.LATER, V.LATER),
    (20006, V.UNKNOWN, V.LATER),
]


def test_the_dcp_switch_refusing_the_feature_does_not_stop_the_key() -> None:
    from airlock.relays.bybit_codes import DCP_SET

    assert classify(10005, "no", endpoint=DCP_SET).outcome == V.REJECTED
    assert classify(10003, "bad key", endpoint=DCP_SET).outcome == V.AUTH_STOP


@pytest.mark.parametrize(("code", "on_create", "on_cancel"), CODE_TABLE)
def test_classify_every_code_from_the_facts(
    code: int, on_create: VenueOutcome, on_cancel: VenueOutcome
) -> None:
    verdict = classify(code, "msg", endpoint=CREATE)
    assert (verdict.outcome, verdict.known, verdict.ret_code) == (on_create, True, code)
    assert verdict.rule and verdict.message == "msg"
    assert classify(code, "msg", endpoint=CANCEL).outcome == on_cancel


def test_an_unknown_code_is_final_and_flagged() -> None:
    verdict = classify(999999, "new thing", endpoint=CREATE)
    assert (verdict.outcome, verdict.known, verdict.rule) == (V.REJECTED, False, "unrecognised")


@pytest.mark.parametrize(
    ("status", "endpoint", "outcome"),
    [
        (403, CREATE, V.LATER),
        (429, CREATE, V.LATER),
        (502, CREATE, V.UNKNOWN),
        (502, CANCEL, V.LATER),
    ],
)
def test_classify_http(status: int, endpoint: str, outcome: VenueOutcome) -> None:
    assert classify_http(status, "x", endpoint=endpoint).outcome == outcome


# ----------------------------------------------------------------------------- pure: backoff


def test_backoff_grows_then_caps_without_jitter() -> None:
    policy = BackoffPolicy(base_s=0.5, factor=2.0, cap_s=5.0, jitter=0.0)
    assert [policy.delay(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert policy.delay(10_000) == 5.0


def test_backoff_jitter_is_bounded_and_seeded() -> None:
    policy = BackoffPolicy(base_s=1.0, factor=2.0, cap_s=8.0, jitter=0.5, seed=7)
    delays = [policy.delay(n) for n in range(8)]
    assert delays == [BackoffPolicy(1.0, 2.0, 8.0, 0.5, seed=7).delay(n) for n in range(8)]
    assert delays != [BackoffPolicy(1.0, 2.0, 8.0, 0.5, seed=8).delay(n) for n in range(8)]
    for n, delay in enumerate(delays):
        raw = min(8.0, 2.0**n)
        assert raw * 0.5 <= delay <= raw


@pytest.mark.parametrize(
    "kwargs",
    [{"base_s": 0}, {"cap_s": 0.1}, {"factor": 0.5}, {"jitter": 1.5}, {"max_retries": -1}],
)
def test_backoff_refuses_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        BackoffPolicy(**kwargs)


# ----------------------------------------------------------------------------- against the sim


async def test_create_is_placed(sim: BybitSim, clock: FakeClock) -> None:
    async with client(sim, clock) as bybit:
        placed = await bybit.create_order(intent(1))
    [order] = sim.orders()
    assert (placed.outcome, placed.ret_code, placed.rule) == (V.PLACED, 0, "ok")
    assert placed.order_id == order["orderId"]
    assert placed.order_link_id == order["orderLinkId"] == intent(1).order_link_id


async def test_duplicate_is_already_placed_and_found(sim: BybitSim, clock: FakeClock) -> None:
    async with client(sim, clock) as bybit:
        first = await bybit.create_order(intent(1))
        again = await bybit.create_order(intent(1))
        found = await bybit.order_by_link_id("linear", intent(1).order_link_id)
    assert (again.outcome, again.ret_code, again.order_id) == (V.ALREADY_PLACED, 110072, None)
    assert found is not None and found["orderId"] == first.order_id
    assert len(sim.orders()) == 1


async def test_lost_answer_is_unknown_then_found_without_resend(
    sim: BybitSim, clock: FakeClock
) -> None:
    sim.inject("lose_response_after_accept", path=CREATE)
    async with client(sim, clock) as bybit:
        placed = await bybit.create_order(intent(1))
        assert placed.outcome == V.UNKNOWN and placed.ret_code is None
        found = await bybit.order_by_link_id("linear", intent(1).order_link_id, symbol="BTCUSDT")
    assert found is not None and found["orderId"] == sim.orders()[0]["orderId"]
    assert len(creates(sim)) == 1


async def test_lookup_of_an_unknown_link_id_is_none(sim: BybitSim, clock: FakeClock) -> None:
    async with client(sim, clock) as bybit:
        assert await bybit.order_by_link_id("linear", "nope") is None
    assert [r.path for r in sim.requests()] == ["/v5/order/realtime", "/v5/order/history"]


async def test_server_timeout_code_is_unknown(sim: BybitSim, clock: FakeClock) -> None:
    sim.inject("ret_code", code=10016, path=CREATE)
    async with client(sim, clock) as bybit:
        placed = await bybit.create_order(intent(1))
    assert (placed.outcome, placed.ret_code) == (V.UNKNOWN, 10016)
    assert len(creates(sim)) == 1


async def test_http_5xx_on_create_is_unknown(sim: BybitSim, clock: FakeClock) -> None:
    sim.inject("http_5xx", status=502, path=CREATE)
    async with client(sim, clock) as bybit:
        placed = await bybit.create_order(intent(1))
    assert placed.outcome == V.UNKNOWN and "502" in placed.ret_msg


async def test_clock_skew_resyncs_and_resigns_once(sim: BybitSim, clock: FakeClock) -> None:
    async with client(sim, clock, clock_ms=lambda: clock.now + 3000) as bybit:
        placed = await bybit.create_order(intent(1))
        assert bybit.offset_ms == -3000
    assert placed.outcome == V.PLACED
    assert [(r.path, r.ret_code) for r in sim.requests()] == [
        (CREATE, 10002),
        ("/v5/market/time", 0),
        (CREATE, 0),
    ]
    first, second = creates(sim)
    assert first.headers["X-BAPI-SIGN"] != second.headers["X-BAPI-SIGN"]


async def test_persistent_skew_gives_up_after_one_resync(sim: BybitSim, clock: FakeClock) -> None:
    sim.inject("ret_code", code=10002, count=2, path=CREATE)
    async with client(sim, clock) as bybit:
        placed = await bybit.create_order(intent(1))
    assert (placed.outcome, placed.ret_code) == (V.RETRY_RESYNC, 10002)
    assert len(creates(sim)) == 2


async def test_revoked_key_stops_once_and_alerts_once(sim: BybitSim, clock: FakeClock) -> None:
    alerts: list[str] = []
    async with client(sim, clock, on_alert=alerts.append) as bybit:
        assert (await bybit.create_order(intent(1))).outcome == V.PLACED
        sim.revoke_key()
        stopped = await bybit.create_order(intent(2))
        seen = len(sim.requests())
        again = await bybit.create_order(intent(3))
        with pytest.raises(BybitAuthError):
            await bybit.open_orders("linear")
        assert len(sim.requests()) == seen  # neither touched the network
        assert bybit.auth_stopped == "API key is invalid."
        bybit.reset_auth()
        assert (await bybit.create_order(intent(4))).outcome == V.AUTH_STOP
    assert (stopped.outcome, stopped.ret_code) == (V.AUTH_STOP, 10003)
    assert again.outcome == V.AUTH_STOP and again.ret_code is None
    assert len(alerts) == 2 and "API key is invalid." in alerts[0]  # one per stop


async def test_rate_limit_waits_for_reset_and_never_hits_10006(clock: FakeClock) -> None:
    with BybitSim(KEY, secret=SECRET, clock_ms=clock, rate_limits={CREATE: 5}) as venue:
        async with client(venue, clock) as bybit:
            placed = [await bybit.create_order(intent(n)) for n in range(12)]
    assert [p.outcome for p in placed] == [V.PLACED] * 12
    assert [r.ret_code for r in creates(venue)] == [0] * 12
    assert clock.slept == [1.01, 1.01]  # the reset, plus RATE_MARGIN_MS


async def test_unexpected_10006_waits_for_reset_and_resends_once(clock: FakeClock) -> None:
    with BybitSim(KEY, secret=SECRET, clock_ms=clock, rate_limits={CREATE: 1}) as venue:
        async with client(venue, clock) as bybit:
            await bybit.create_order(intent(0))
            bybit._limits.clear()  # as if another process spent the window
            clock.now += 200
            placed = await bybit.create_order(intent(1))
    assert placed.outcome == V.PLACED
    assert [r.ret_code for r in creates(venue)] == [0, 10006, 0]
    assert clock.slept == [0.81]


async def test_executions_read_every_page(clock: FakeClock) -> None:
    with BybitSim(KEY, secret=SECRET, clock_ms=clock, rate_limits={CREATE: 1000}) as venue:
        async with client(venue, clock) as bybit:
            for n in range(160):
                assert (await bybit.create_order(intent(n))).outcome == V.PLACED
            venue.set_mark_price("BTCUSDT", "99")
            rows = await bybit.executions("linear", symbol="BTCUSDT", limit=50)
            history = await bybit.history("linear", limit=50)
            open_now = await bybit.open_orders("linear", symbol="BTCUSDT")
    ids = [row["execId"] for row in rows]
    assert len(ids) == len(set(ids)) == 160
    assert set(ids) == {e["execId"] for e in venue.executions()}
    pages = [r for r in venue.requests() if r.path == "/v5/execution/list"]
    assert len(pages) == 4 and "cursor=" in pages[-1].query
    assert len(history) == 160 and open_now == []


async def test_open_orders_paginates(sim: BybitSim, clock: FakeClock) -> None:
    async with client(sim, clock) as bybit:
        for n in range(7):
            await bybit.create_order(intent(n))
            clock.now += 200  # stay under 10/s
        rows = await bybit.open_orders("linear", limit=3)
        cancelled = await bybit.cancel_order("linear", "BTCUSDT", intent(0).order_link_id)
        twice = await bybit.cancel_order("linear", "BTCUSDT", intent(0).order_link_id)
    assert len({r["orderLinkId"] for r in rows}) == 7
    assert cancelled.outcome == V.PLACED
    assert (twice.outcome, twice.ret_code, twice.rule) == (V.REJECTED, 110010, "order-finished")


async def test_transport_retries_with_backoff_then_gives_up(clock: FakeClock) -> None:
    bybit = BybitClient(
        f"http://127.0.0.1:{closed_port()}",
        KEY,
        hmac_sign(),
        "hmac",
        backoff=INSTANT,
        clock_ms=clock,
        sleep=clock.sleep,
    )
    async with bybit:
        placed = await bybit.create_order(intent(1))
    assert placed.outcome == V.TRANSPORT and "cannot connect" in placed.ret_msg
    assert clock.slept == [0.5, 1.0, 2.0]


async def test_transport_retry_succeeds_when_the_venue_comes_up(clock: FakeClock) -> None:
    port = closed_port()
    venue = BybitSim(KEY, secret=SECRET, clock_ms=clock, port=port)

    async def sleep_then_start(seconds: float) -> None:
        await clock.sleep(seconds)
        if len(clock.slept) == 2:
            venue.start()

    bybit = BybitClient(
        venue.url, KEY, hmac_sign(), "hmac", backoff=INSTANT, clock_ms=clock, sleep=sleep_then_start
    )
    try:
        async with bybit:
            placed = await bybit.create_order(intent(1))
    finally:
        venue.stop()
    assert placed.outcome == V.PLACED and clock.slept == [0.5, 1.0]


# ----------------------------------------------------------------------------- supervisor


class Steps:
    """A sleep the test releases one call at a time, so the supervisor's loop is stepped."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._parked: asyncio.Queue[asyncio.Future[None]] = asyncio.Queue()

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        parked = asyncio.get_running_loop().create_future()
        await self._parked.put(parked)
        await parked

    async def parked(self) -> asyncio.Future[None]:
        return await asyncio.wait_for(self._parked.get(), 30)

    async def step(self, parked: asyncio.Future[None]) -> asyncio.Future[None]:
        """Let the parked sleep return; wait until the loop parks again."""
        parked.set_result(None)
        return await self.parked()


async def test_supervisor_bad_key_at_connect_fails_loud(sim: BybitSim, clock: FakeClock) -> None:
    alerts: list[str] = []
    async with client(sim, clock, sign=hmac_sign(b"wrong" * 8), on_alert=alerts.append) as bybit:
        supervisor = ConnectionSupervisor(bybit, INSTANT, on_reconnect=_nothing)
        with pytest.raises(BybitAuthError, match="error sign"):
            await supervisor.connect()
    assert not supervisor.is_connected
    assert [r.path for r in sim.requests()] == ["/v5/market/time", "/v5/order/realtime"]
    assert len(alerts) == 1


async def _nothing() -> None:
    return None


async def test_supervisor_reconnects_after_the_venue_restarts() -> None:
    reconnects: list[int] = []

    async def on_reconnect() -> None:
        reconnects.append(1)

    steps = Steps()
    first = BybitSim(KEY, secret=SECRET).start()
    port = first.port
    second = BybitSim(KEY, secret=SECRET, port=port)
    policy = BackoffPolicy(base_s=1.0, factor=2.0, cap_s=8.0, jitter=0.0, max_retries=0)
    # BybitSim.stop() leaves accepted connections open but unanswered (a half-open peer,
    # as after a real outage): the first probe after it ends by the client's timeout. The
    # healthy probes must answer inside it too: 1 s is far above their few ms here.
    bybit = BybitClient(first.url, KEY, hmac_sign(), "hmac", backoff=policy, timeout_s=1.0)
    try:
        async with bybit:
            supervisor = ConnectionSupervisor(
                bybit, policy, on_reconnect=on_reconnect, interval_s=5.0, sleep=steps
            )
            await supervisor.connect()
            assert supervisor.is_connected
            task = asyncio.create_task(supervisor.run())
            parked = await steps.parked()
            parked = await steps.step(parked)  # a healthy probe
            assert supervisor.is_connected and reconnects == []
            first.stop()
            parked = await steps.step(parked)  # probe fails: backing off
            assert not supervisor.is_connected
            parked = await steps.step(parked)  # still down: next backoff
            assert not supervisor.is_connected
            second.start()
            parked = await steps.step(parked)  # back
            assert supervisor.is_connected and reconnects == [1]
            parked = await steps.step(parked)  # healthy again, no second reconnect
            assert supervisor.is_connected and reconnects == [1]
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    finally:
        first.stop()
        second.stop()
    assert steps.delays == [5.0, 5.0, 1.0, 2.0, 5.0, 5.0]


async def test_a_signing_failure_is_not_a_send(clock: FakeClock) -> None:
    """The HSM away at send time: nothing left the machine, so the order is TRANSPORT
    (safe to retry), never UNKNOWN, and the venue saw nothing."""

    def hsm_gone(_: bytes) -> str:
        raise RuntimeError("token not present")

    with BybitSim(KEY, secret=SECRET, clock_ms=clock) as venue:
        async with BybitClient(
            venue.url, KEY, hsm_gone, "hmac", clock_ms=clock, sleep=clock.sleep,
            backoff=BackoffPolicy(max_retries=1, seed=1),
        ) as bybit:  # fmt: skip
            placed = await bybit.create_order(intent(0))
        assert creates(venue) == []
    assert placed.outcome is V.TRANSPORT and "signing failed" in placed.ret_msg
