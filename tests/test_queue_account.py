"""store.account: positions and balances, the newer state always winning (both engines)."""

from __future__ import annotations

from dataclasses import replace

from tests.kits.backends import BOTH

from airlock.queue.account import Balance, Position

BACKENDS = BOTH


def position(symbol: str = "BTCUSDT", size: str = "0.01", venue_ms: int = 1000, **kw) -> Position:
    base = Position(
        account="bybit", category="linear", symbol=symbol, side="Buy", size=size,
        avg_price="60000", mark_price="60100", unrealised_pnl="1", cum_realised_pnl="0",
        venue_ms=venue_ms, seen_ms=venue_ms + 5, source="stream",
    )  # fmt: skip
    return replace(base, **kw)


def test_a_newer_position_replaces_an_older_one_never_the_reverse(store):
    store.account.put_positions([position(size="0.01", venue_ms=1000)])
    store.account.put_positions([position(size="0.03", venue_ms=3000)])
    store.account.put_positions([position(size="0.02", venue_ms=2000, source="rest")])  # late
    (got,) = store.account.positions()
    assert (got.size, got.venue_ms, got.source) == ("0.03", 3000, "stream")
    assert store.account.position("bybit", "linear", "BTCUSDT") == got
    assert store.account.position("bybit", "linear", "ETHUSDT") is None


def test_a_complete_rest_listing_flattens_what_it_leaves_out(store):
    store.account.put_positions([position("BTCUSDT"), position("ETHUSDT", venue_ms=5000)])
    listing = [position("SOLUSDT", venue_ms=4000, source="rest")]
    store.account.reconcile_positions("bybit", "linear", listing, venue_ms=4000)
    got = {p.symbol: p for p in store.account.positions("bybit")}
    assert (got["BTCUSDT"].size, got["BTCUSDT"].side, got["BTCUSDT"].source) == ("0", "", "rest")
    assert got["ETHUSDT"].size == "0.01", "a stream state newer than the listing stays"
    assert got["SOLUSDT"].size == "0.01"
    assert store.account.positions("other") == []


def test_balances_upsert_by_coin_newest_wins(store):
    usdt = Balance("bybit", "USDT", "100000", "100010", "0", "10", 1000, 1001, "rest")
    store.account.put_balances([usdt, replace(usdt, coin="BTC", wallet_balance="1")])
    store.account.put_balances([replace(usdt, wallet_balance="99990", venue_ms=2000)])
    store.account.put_balances([replace(usdt, wallet_balance="5", venue_ms=1500)])  # late
    got = {b.coin: b.wallet_balance for b in store.account.balances("bybit")}
    assert got == {"BTC": "1", "USDT": "99990"}
