"""The account's rows read from the venue, and "risk-reducing" from the reconciled
position (airlock.broadcaster.account_views, airlock.queue.account, the outage policy)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from airlock.broadcaster.account_views import BadRow, Seen, balances_of, position_of
from airlock.config import PolicyConfig
from airlock.queue.account import reduces
from airlock.queue.items import Priority
from airlock.queue.policy import OrderRequest, decide_order

SEEN = Seen(account="bybit", source="rest", seen_ms=2000, venue_ms=1500)
REST_ROW = {
    "symbol": "BTCUSDT", "side": "Buy", "size": "0.02", "avgPrice": "60000",
    "markPrice": "60100", "unrealisedPnl": "2", "cumRealisedPnl": "-1", "updatedTime": "1400",
}  # fmt: skip


def test_a_rest_row_and_a_stream_row_read_the_same():
    rest = position_of(REST_ROW, "linear", SEEN)
    stream_row = dict(REST_ROW, entryPrice="60000", category="linear")
    del stream_row["avgPrice"]
    stream = position_of(stream_row, "inverse", SEEN)  # the row's own category wins
    assert rest == stream
    assert (rest.side, rest.size, rest.avg_price, rest.venue_ms) == ("Buy", "0.02", "60000", 1400)


def test_a_flat_row_is_flat_and_a_row_without_time_takes_the_answers():
    flat = position_of({"symbol": "ETHUSDT", "side": "", "size": "0", "avgPrice": "0"}, "linear",
                       SEEN)  # fmt: skip
    assert (flat.side, flat.size, flat.venue_ms) == ("", "0", 1500)


@pytest.mark.parametrize(
    ("row", "says"),
    [
        ({"side": "Buy", "size": "1"}, "no symbol"),
        ({"symbol": "X", "side": "Buy"}, "no size"),
        ({"symbol": "X", "side": "Buy", "size": "lots"}, "not a decimal"),
        ({"symbol": "X", "side": "Buy", "size": "NaN"}, "not finite"),
        ({"symbol": "X", "side": "Long", "size": "1"}, "side 'Long'"),
        ({"symbol": "X", "side": "Buy", "size": "1", "updatedTime": "soon"}, "not a time"),
    ],
)
def test_rows_that_cannot_be_trusted_are_refused_with_the_reason(row, says):
    with pytest.raises(BadRow, match=says):
        position_of(row, "linear", SEEN)


def test_wallet_coins():
    wallet = {"accountType": "UNIFIED", "coin": [
        {"coin": "USDT", "walletBalance": "100000", "equity": "100002", "locked": "0",
         "unrealisedPnl": "2"},
        {"coin": "BTC", "walletBalance": "0.5"},
    ]}  # fmt: skip
    usdt, btc = balances_of(wallet, SEEN)
    assert (usdt.coin, usdt.wallet_balance, usdt.equity, usdt.venue_ms) == (
        "USDT", "100000", "100002", 1500,
    )  # fmt: skip
    assert (btc.equity, btc.locked) == ("0.5", None)
    with pytest.raises(BadRow, match="no coin list"):
        balances_of({"accountType": "UNIFIED"}, SEEN)
    with pytest.raises(BadRow, match="walletBalance"):
        balances_of({"coin": [{"coin": "USDT"}]}, SEEN)


@pytest.mark.parametrize(
    ("held", "side", "qty", "want"),
    [
        (Decimal("0.02"), "Sell", "0.01", True),  # part of a long
        (Decimal("0.02"), "Sell", "0.02", True),  # all of it
        (Decimal("0.02"), "Sell", "0.03", False),  # past flat: new short exposure
        (Decimal("0.02"), "Buy", "0.01", False),  # adds to the long
        (Decimal("-0.5"), "Buy", "0.5", True),  # closes a short
        (Decimal("0"), "Sell", "0.01", False),  # flat: nothing to reduce
        (None, "Sell", "0.01", False),  # never reconciled: the caller's word only
    ],
)
def test_what_reduces_a_position(held, side, qty, want):
    assert reduces(held, side, Decimal(qty)) is want


def test_the_outage_policy_puts_an_order_that_shrinks_the_position_first():
    sell = OrderRequest("linear", "BTCUSDT", "Sell", "Limit", "0.01", "k-1", "61000", "GTC")
    config = PolicyConfig()
    plain = decide_order(sell, venue_reachable=False, config=config)
    against_long = decide_order(sell, venue_reachable=False, config=config,
                                position=Decimal("0.02"))  # fmt: skip
    adds_to_short = decide_order(sell, venue_reachable=False, config=config,
                                 position=Decimal("-0.02"))  # fmt: skip
    assert plain.priority is Priority.NORMAL
    assert against_long.priority is Priority.RISK_REDUCING
    assert adds_to_short.priority is Priority.NORMAL
    up = decide_order(sell, venue_reachable=True, config=config, position=Decimal("0.02"))
    assert up.priority is Priority.RISK_REDUCING
