"""Positions, the wallet and DCP settings of the Bybit simulator: the pure rules on the
account engine, then the REST endpoints over loopback (signed in tests/kits/bybit_stream.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from tests.kits.bybit_stream import KEY, SECRET, T0, Rest
from tests.kits.clocks import FakeClock

from airlock.sim import bybit_engine as eng
from airlock.sim.bybit import BybitSim
from airlock.sim.bybit_account import AccountEngine

POSITIONS = "/v5/position/list"
WALLET = "/v5/account/wallet-balance"
DCP_SET = "/v5/order/disconnected-cancel-all"
DCP_INFO = "/v5/account/query-dcp-info"


def market(engine: AccountEngine, side: str, qty: str, symbol: str = "BTCUSDT",
           category: str = "linear") -> None:  # fmt: skip
    params = {"symbol": symbol, "side": side, "orderType": "Market", "qty": qty}
    engine.create(eng.validate_order(params, category), T0)


def only(engine: AccountEngine) -> dict[str, str]:
    [row] = engine.position_views()
    return row


# ------------------------------------------------------------------------- pure rules


def test_open_add_reduce_close_flip() -> None:
    engine = AccountEngine()
    engine.set_mark("BTCUSDT", Decimal(100), T0)
    market(engine, "Buy", "2")
    engine.set_mark("BTCUSDT", Decimal(110), T0)
    market(engine, "Buy", "1")
    row = only(engine)
    assert (row["side"], row["size"], row["avgPrice"]) == ("Buy", "3", "103.33333333")
    assert row["unrealisedPnl"] == "20.00000001" and row["markPrice"] == "110"
    fees = Decimal("0.11") + Decimal("0.0605")  # taker 0.055 % of 200 and of 110
    assert Decimal(row["cumRealisedPnl"]) == -fees

    engine.set_mark("BTCUSDT", Decimal(120), T0)
    market(engine, "Sell", "1")  # reduce: realise 1 x (120 - 103.33333333)
    row = only(engine)
    realised = Decimal("16.66666667") - Decimal("0.066")
    assert (row["side"], row["size"]) == ("Buy", "2")
    assert Decimal(row["cumRealisedPnl"]) == realised - fees

    market(engine, "Sell", "5")  # close 2, open 3 short at 120
    row = only(engine)
    realised += 2 * Decimal("16.66666667") - Decimal("0.33")
    assert (row["side"], row["size"], row["avgPrice"]) == ("Sell", "3", "120")
    assert Decimal(row["cumRealisedPnl"]) == realised - fees

    engine.set_mark("BTCUSDT", Decimal(90), T0)
    market(engine, "Buy", "3")  # close the short at 90: +90
    row = only(engine)
    realised += 3 * Decimal(30) - Decimal("0.1485")
    assert (row["side"], row["size"], row["avgPrice"], row["unrealisedPnl"]) == ("", "0", "0", "0")
    assert Decimal(row["cumRealisedPnl"]) == realised - fees
    [usdt] = engine.wallet_view(None)["coin"]
    assert Decimal(usdt["walletBalance"]) == Decimal(100000) + realised - fees


def test_maker_fill_fee_and_wallet_equity() -> None:
    engine = AccountEngine(balances={"USDT": Decimal(1000)})
    engine.set_mark("ETHUSDT", Decimal(50), T0)
    params = {"symbol": "ETHUSDT", "side": "Sell", "orderType": "Limit", "qty": "10",
              "price": "60"}  # fmt: skip
    engine.create(eng.validate_order(params, "linear"), T0)
    engine.drain()
    [fill] = engine.set_mark("ETHUSDT", Decimal(61), T0 + 5)
    assert fill.is_maker and fill.fee == Decimal("0.12")  # 0.02 % of 600
    wallet = engine.wallet_view(None)
    [usdt] = wallet["coin"]
    assert usdt["walletBalance"] == "999.88" and usdt["unrealisedPnl"] == "-10"
    assert usdt["equity"] == "989.88" and usdt["locked"] == "0"
    assert wallet["totalEquity"] == "989.88" and wallet["accountType"] == "UNIFIED"
    topics = [c.topic for c in engine.drain()]
    assert topics == ["execution", "order", "position", "wallet"]


def test_spot_fill_pays_only_its_fee() -> None:
    engine = AccountEngine()
    engine.set_mark("BTCUSDT", Decimal(100), T0)
    market(engine, "Buy", "1", category="spot")
    assert engine.position_views() == []
    assert engine.wallet_view(None)["coin"][0]["walletBalance"] == "99999.9"  # 0.1 %


def test_usdc_symbols_settle_in_usdc() -> None:
    engine = AccountEngine()
    engine.set_mark("BTCPERP", Decimal(100), T0)
    market(engine, "Buy", "1", symbol="BTCPERP")
    coins = {c["coin"]: c["walletBalance"] for c in engine.wallet_view(None)["coin"]}
    assert coins == {"USDC": "-0.055", "USDT": "100000"}


# ----------------------------------------------------------------------------- REST


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[BybitSim]:
    with BybitSim(KEY, secret=SECRET, clock_ms=clock, rate_limits={POSITIONS: 1000}) as venue:
        yield venue


@pytest.fixture
def rest(sim: BybitSim, clock: FakeClock) -> Rest:
    return Rest(sim, clock)


def test_position_list_rules(rest: Rest, sim: BybitSim) -> None:
    assert rest.get(POSITIONS, "symbol=BTCUSDT").code == 10001  # category required
    assert rest.get(POSITIONS, "category=spot&symbol=BTCUSDT").code == 10001
    assert rest.get(POSITIONS, "category=linear").code == 10001  # symbol or settleCoin
    assert rest.get(POSITIONS, "category=linear&settleCoin=USDT&limit=201").code == 10001
    flat = rest.get(POSITIONS, "category=linear&symbol=BTCUSDT")
    assert flat.code == 0 and flat.result["nextPageCursor"] == ""
    [row] = flat.result["list"]
    assert (row["symbol"], row["side"], row["size"], row["positionIdx"]) == ("BTCUSDT", "", "0", 0)
    assert (row["leverage"], row["positionStatus"], row["liqPrice"]) == ("10", "Normal", "")
    assert "X-Bapi-Limit-Status" in flat.headers
    sim.set_mark_price("BTCUSDT", "100")
    assert rest.create("p1", orderType="Market", qty="2").code == 0
    [held] = rest.get(POSITIONS, "category=linear&symbol=BTCUSDT").result["list"]
    assert (held["side"], held["size"], held["avgPrice"], held["markPrice"]) == (
        "Buy", "2", "100", "100")  # fmt: skip
    assert held == {k: v for k, v in sim.positions()[0].items() if k != "category"}
    assert rest.get(POSITIONS, "category=inverse").result["list"] == []


def test_position_paging_by_settle_coin(rest: Rest, sim: BybitSim, clock: FakeClock) -> None:
    symbols = [f"C{i}USDT" for i in range(5)]
    for i, symbol in enumerate(symbols):
        sim.set_mark_price(symbol, "10")
        clock.now += 100
        assert rest.create(f"pg{i}", symbol=symbol, orderType="Market").code == 0
    clock.now += 100
    rest.create("closes-c0", symbol="C0USDT", orderType="Market", side="Sell")  # flat again
    seen, cursor, pages = [], "", 0
    while True:
        query = "category=linear&settleCoin=USDT&limit=2" + (f"&cursor={cursor}" if cursor else "")
        reply = rest.get(POSITIONS, query)
        assert reply.code == 0, reply.body
        seen += [r["symbol"] for r in reply.result["list"]]
        cursor, pages = reply.result["nextPageCursor"], pages + 1
        if not cursor:
            break
    assert pages == 2 and seen == ["C4USDT", "C3USDT", "C2USDT", "C1USDT"]
    assert rest.get(POSITIONS, "category=linear&settleCoin=USDC").result["list"] == []


def test_wallet_balance(rest: Rest, sim: BybitSim) -> None:
    assert rest.get(WALLET).code == 10001
    assert rest.get(WALLET, "accountType=CONTRACT").code == 10001
    [item] = rest.get(WALLET, "accountType=UNIFIED").result["list"]
    assert [c["coin"] for c in item["coin"]] == ["USDT"]  # non-zero coins only
    assert item["coin"][0]["walletBalance"] == "100000" == item["totalWalletBalance"]
    both = rest.get(WALLET, "accountType=UNIFIED&coin=USDT,USDC").result["list"][0]["coin"]
    assert [(c["coin"], c["walletBalance"]) for c in both] == [("USDT", "100000"), ("USDC", "0")]
    sim.set_wallet_balance("2500")
    sim.set_mark_price("BTCUSDT", "100")
    rest.create("w1", orderType="Market", qty="10")  # taker fee 0.55
    sim.set_mark_price("BTCUSDT", "101")
    [usdt] = rest.get(WALLET, "accountType=UNIFIED&coin=USDT").result["list"][0]["coin"]
    assert (usdt["walletBalance"], usdt["unrealisedPnl"], usdt["equity"]) == (
        "2499.45", "10", "2509.45")  # fmt: skip
    assert usdt["cumRealisedPnl"] == "-0.55"
    assert sim.wallet()["coin"] == [usdt]


def test_account_endpoints_are_signed(sim: BybitSim, clock: FakeClock) -> None:
    stranger = Rest(sim, clock, secret=b"wrong")
    assert stranger.get(WALLET, "accountType=UNIFIED").code == 10004
    assert stranger.get(POSITIONS, "category=linear&symbol=BTCUSDT").code == 10004
    assert stranger.post(DCP_SET, {"timeWindow": 10}).code == 10004


def test_dcp_refused_without_the_account_flag(rest: Rest, sim: BybitSim) -> None:
    refused = rest.post(DCP_SET, {"product": "DERIVATIVES", "timeWindow": 10})
    assert refused.code == 10005
    info = rest.get(DCP_INFO)
    assert info.code == 0 and info.result == {"dcpInfos": []}
    assert sim.dcp_info() == {"dcpInfos": []}


def test_dcp_settings_read_back(clock: FakeClock) -> None:
    with BybitSim(KEY, secret=SECRET, clock_ms=clock, dcp_allowed=True) as venue:
        rest = Rest(venue, clock)
        windows = {i["product"]: i["timeWindow"] for i in rest.get(DCP_INFO).result["dcpInfos"]}
        assert windows == {"OPTIONS": "10", "DERIVATIVES": "10", "SPOT": "10"}
        assert rest.post(DCP_SET, {"timeWindow": 40}).code == 0  # product defaults to OPTIONS
        clock.now += 200
        assert rest.post(DCP_SET, {"product": "SPOT", "timeWindow": 3}).code == 0
        for bad in ({"timeWindow": 2}, {"timeWindow": 301}, {"product": "SPOT"},
                    {"product": "FUTURES", "timeWindow": 10}, {"timeWindow": True}):  # fmt: skip
            clock.now += 200
            assert rest.post(DCP_SET, bad).code == 10001, bad
        infos = rest.get(DCP_INFO).result["dcpInfos"]
        assert infos == [
            {"product": "OPTIONS", "dcpStatus": "ON", "timeWindow": "40"},
            {"product": "DERIVATIVES", "dcpStatus": "ON", "timeWindow": "10"},
            {"product": "SPOT", "dcpStatus": "ON", "timeWindow": "3"},
        ]
        clock.now += 1000
        over = [rest.post(DCP_SET, {"timeWindow": 10}).code for _ in range(6)]
        assert over == [0, 0, 0, 0, 0, 10006]  # 5 per second
