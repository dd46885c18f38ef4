"""Tests for airlock.queue.policy: the Bybit outage rules applied at enqueue.

The expected prices are worked out by hand in the table comments; the property test checks the
cap with exact ``Fraction`` arithmetic, independent of the module's ``Decimal`` code.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airlock.errors import ConfigError, InvalidInput
from airlock.queue.items import Priority
from airlock.queue.policy import (
    RULES,
    CancelRequest,
    Decision,
    OrderRequest,
    PolicyConfig,
    capped_limit_price,
    decide_cancel,
    decide_order,
    expires_ms,
    parse_bps,
)
from airlock.signer.bybit import order_link_id_for

CONFIG = PolicyConfig()
KEY = "strategy-a/0001"
LINK_ID = order_link_id_for(KEY)


def order(**overrides: Any) -> OrderRequest:
    fields: dict[str, Any] = {
        "category": "linear",
        "symbol": "BTCUSDT",
        "side": "Buy",
        "order_type": "Limit",
        "qty": "0.010",
        "price": "30000.5",
        "idempotency_key": KEY,
    }
    fields.update(overrides)
    return OrderRequest(**fields)


def market(**overrides: Any) -> OrderRequest:
    fields: dict[str, Any] = {"order_type": "Market", "price": None}
    fields.update(overrides)
    return order(**fields)


def mref(**overrides: Any) -> OrderRequest:
    """A Market order carrying a reference price and a slippage cap."""
    fields: dict[str, Any] = {"ref_price": "100.00", "slippage_bps": 50}
    fields.update(overrides)
    return market(**fields)


DOWN = False
UP = True
N, R = Priority.NORMAL, Priority.RISK_REDUCING

# (id, request, venue reachable, action, rule, priority, ttl_s)
ORDER_TABLE: list[tuple[str, OrderRequest, bool, str, str, Priority | None, int | None]] = [
    # venue up: everything valid is queued unchanged
    ("up-limit-gtc", order(), UP, "queue", "venue-up", N, 3600),
    ("up-limit-gtc-ttl", order(ttl_s=120), UP, "queue", "venue-up", N, 120),
    ("up-postonly", order(tif="PostOnly"), UP, "queue", "venue-up", N, 3600),
    ("up-ioc", order(tif="IOC"), UP, "queue", "venue-up", N, 5),
    ("up-fok-reduce", order(tif="FOK", reduce_only=True), UP, "queue", "venue-up", R, 5),
    ("up-market", market(), UP, "queue", "venue-up", N, 5),
    ("up-market-ref", mref(), UP, "queue", "venue-up", N, 5),
    ("up-ttl-over-max", order(ttl_s=86_401), UP, "refuse", "ttl-over-max", None, None),
    ("up-bps-over-cap", mref(slippage_bps=501), UP, "refuse", "slippage-over-cap", None, None),
    # venue down: IOC and FOK never wait
    ("down-ioc", order(tif="IOC"), DOWN, "refuse", "ioc-fok-never-queued", None, None),
    ("down-fok", order(tif="FOK"), DOWN, "refuse", "ioc-fok-never-queued", None, None),
    ("down-ioc-reduce", order(tif="IOC", reduce_only=True), DOWN, "refuse",
     "ioc-fok-never-queued", None, None),
    # venue down: GTC / PostOnly wait with a TTL
    ("down-gtc-default", order(), DOWN, "queue", "gtc-ttl", N, 3600),
    ("down-gtc-explicit", order(tif="GTC", ttl_s=600), DOWN, "queue", "gtc-ttl", N, 600),
    ("down-gtc-max", order(ttl_s=86_400), DOWN, "queue", "gtc-ttl", N, 86_400),
    ("down-gtc-reduce", order(reduce_only=True), DOWN, "queue", "gtc-ttl", R, 3600),
    ("down-postonly", order(tif="PostOnly"), DOWN, "queue", "postonly-ttl", N, 3600),
    ("down-postonly-reduce", order(tif="PostOnly", reduce_only=True, ttl_s=30), DOWN, "queue",
     "postonly-ttl", R, 30),
    ("down-gtc-over-max", order(ttl_s=86_401), DOWN, "refuse", "ttl-over-max", None, None),
    # venue down: Market orders
    ("down-market-bare", market(), DOWN, "refuse", "market-needs-ref-and-slippage", None, None),
    ("down-market-ref", mref(), DOWN, "queue", "market-to-limit", N, 60),
    ("down-market-ref-ttl", mref(ttl_s=20), DOWN, "queue", "market-to-limit", N, 20),
    ("down-market-reduce", mref(reduce_only=True, side="Sell"), DOWN, "queue",
     "market-to-limit", R, 60),
    ("down-market-cap-edge", mref(slippage_bps=500), DOWN, "queue", "market-to-limit", N, 60),
    ("down-market-zero-bps", mref(slippage_bps=0), DOWN, "queue", "market-to-limit", N, 60),
    ("down-market-over-cap", mref(slippage_bps=501), DOWN, "refuse", "slippage-over-cap",
     None, None),
    ("down-market-ttl-over", mref(ttl_s=86_401), DOWN, "refuse", "ttl-over-max", None, None),
    # invalid in any weather
    ("limit-no-price", order(price=None), DOWN, "refuse", "invalid-order", None, None),
    ("limit-no-price-up", order(price=None), UP, "refuse", "invalid-order", None, None),
    ("negative-bps", mref(slippage_bps=-1), DOWN, "refuse", "invalid-order", None, None),
    ("negative-bps-up", mref(slippage_bps="-2.5"), UP, "refuse", "invalid-order", None, None),
    ("bps-garbage", mref(slippage_bps="5%"), DOWN, "refuse", "invalid-order", None, None),
    ("bps-bool", mref(slippage_bps=True), DOWN, "refuse", "invalid-order", None, None),
    ("ref-only", market(ref_price="100"), DOWN, "refuse", "invalid-order", None, None),
    ("bps-only", market(slippage_bps=10), DOWN, "refuse", "invalid-order", None, None),
    ("ref-on-limit", order(ref_price="1", slippage_bps=1), DOWN, "refuse", "invalid-order",
     None, None),
    ("ref-negative", mref(ref_price="-100"), DOWN, "refuse", "invalid-order", None, None),
    ("ttl-zero", order(ttl_s=0), DOWN, "refuse", "invalid-order", None, None),
    ("ttl-negative", order(ttl_s=-5), UP, "refuse", "invalid-order", None, None),
    ("ttl-float", order(ttl_s=1.5), DOWN, "refuse", "invalid-order", None, None),
    ("market-with-price", market(price="1"), DOWN, "refuse", "invalid-order", None, None),
    ("market-gtc", market(tif="GTC"), DOWN, "refuse", "invalid-order", None, None),
    ("bad-tif", order(tif="GTD"), DOWN, "refuse", "invalid-order", None, None),
    ("bad-side", order(side="buy"), DOWN, "refuse", "invalid-order", None, None),
    ("bad-qty", order(qty="0"), DOWN, "refuse", "invalid-order", None, None),
    ("float-qty", order(qty=0.01), DOWN, "refuse", "invalid-order", None, None),
    ("spot-reduce", order(category="spot", reduce_only=True), DOWN, "refuse",
     "invalid-order", None, None),
    ("empty-key", order(idempotency_key=""), DOWN, "refuse", "invalid-order", None, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("request_", "reachable", "action", "rule", "priority", "ttl"),
    [pytest.param(*row[1:], id=row[0]) for row in ORDER_TABLE],
)
def test_order_rules(
    request_: OrderRequest,
    reachable: bool,
    action: str,
    rule: str,
    priority: Priority | None,
    ttl: int | None,
) -> None:
    decision = decide_order(request_, venue_reachable=reachable, config=CONFIG)
    assert (decision.action, decision.rule, decision.priority, decision.ttl_s) == (
        action,
        rule,
        priority,
        ttl,
    ), decision.message
    assert decision.rule in RULES
    assert decision.message
    if action == "refuse":
        assert decision.intent is None
    else:
        assert decision.intent is not None
        assert decision.intent.order_link_id == LINK_ID


CANCEL_TABLE: list[tuple[str, CancelRequest, bool, str, str, Priority | None]] = [
    ("sent", CancelRequest("linear", "BTCUSDT", KEY), True, "queue", "cancel-first",
     Priority.CANCEL),
    ("never-sent", CancelRequest("linear", "BTCUSDT", KEY), False, "local", "cancel-local",
     None),
    ("spot-sent", CancelRequest("spot", "ETHUSDT", KEY), True, "queue", "cancel-first",
     Priority.CANCEL),
    ("bad-category", CancelRequest("option", "BTCUSDT", KEY), True, "refuse", "invalid-cancel",
     None),
    ("bad-symbol", CancelRequest("linear", "btcusdt", KEY), True, "refuse", "invalid-cancel",
     None),
    ("bad-key", CancelRequest("linear", "BTCUSDT", ""), False, "refuse", "invalid-cancel", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("request_", "sent", "action", "rule", "priority"),
    [pytest.param(*row[1:], id=row[0]) for row in CANCEL_TABLE],
)
def test_cancel_rules(
    request_: CancelRequest, sent: bool, action: str, rule: str, priority: Priority | None
) -> None:
    decision = decide_cancel(request_, sent=sent)
    assert (decision.action, decision.rule, decision.priority) == (action, rule, priority)
    assert decision.intent is None and decision.ttl_s is None  # cancels never expire
    assert decision.rule in RULES and decision.message


def test_market_disabled_by_config() -> None:
    config = PolicyConfig(allow_market_with_ref=False)
    decision = decide_order(mref(), venue_reachable=False, config=config)
    assert (decision.action, decision.rule) == ("refuse", "market-disabled-in-outage")
    up = decide_order(mref(), venue_reachable=True, config=config)
    assert up.rule == "venue-up"


def test_every_rule_is_exercised() -> None:
    """The tables cover RULES exactly: no rule untested, no rule name undocumented."""
    fired = {row[4] for row in ORDER_TABLE} | {row[4] for row in CANCEL_TABLE}
    assert fired | {"market-disabled-in-outage"} == set(RULES)


def test_cancel_outranks_every_order_priority() -> None:
    assert Priority.CANCEL < Priority.RISK_REDUCING < Priority.NORMAL


# ----------------------------------------------------------------------------- messages


@pytest.mark.parametrize(
    ("request_", "reachable", "wanted"),
    [
        (order(tif="IOC"), DOWN, "IOC orders cannot wait for a link: send when the venue is "
         "reachable, or use GTC with --ttl"),
        (order(tif="FOK"), DOWN, "FOK orders cannot wait for a link"),
        (market(), DOWN, "give --ref-price and --slippage-bps"),
        (mref(slippage_bps=501), DOWN, "above the maximum of 500 bps: give a smaller cap"),
        (mref(slippage_bps=-1), DOWN, "must be 0 or more"),
        (order(ttl_s=90_000), DOWN, "above the maximum of 86400 s: give a shorter --ttl"),
        (order(price=None), DOWN, "a Limit order needs a price: give --price"),
        (order(ref_price="1", slippage_bps=1), DOWN, "apply to Market orders only"),
        (market(ref_price="1"), DOWN, "give --ref-price and --slippage-bps together"),
        (order(side="buy"), UP, "nothing was queued: correct and resubmit"),
        (order(ttl_s=0), UP, "1 or more"),
    ],
)  # fmt: skip
def test_refusals_say_what_to_do(request_: OrderRequest, reachable: bool, wanted: str) -> None:
    decision = decide_order(request_, venue_reachable=reachable, config=CONFIG)
    assert decision.action == "refuse"
    assert wanted in decision.message


def test_market_disabled_message_offers_alternatives() -> None:
    config = PolicyConfig(allow_market_with_ref=False)
    message = decide_order(mref(), venue_reachable=False, config=config).message
    assert "send it when the venue is reachable" in message and "Limit order" in message


# ----------------------------------------------------------------------------- conversion


@pytest.mark.parametrize(
    ("side", "ref", "bps", "expected"),
    [
        ("Buy", "100.00", 50, "100.5"),  # 100.00 * 1.005 = 100.50 exactly
        ("Sell", "100.00", 50, "99.5"),  # 100.00 * 0.995 = 99.50 exactly
        ("Buy", "100.00", 0, "100"),  # zero slippage: a limit at the reference
        ("Sell", "100.00", 0, "100"),
        ("Buy", "100.00", 500, "105"),  # the default cap's edge
        ("Sell", "100.00", 500, "95"),
        ("Buy", "123.45", 33, "123.85"),  # 123.857385 -> down
        ("Sell", "123.45", 33, "123.05"),  # 123.042615 -> up
        ("Buy", "0.0001234", 77, "0.0001243"),  # 0.00012435018 -> down
        ("Sell", "0.0001234", 77, "0.0001225"),  # 0.00012244982 -> up
        ("Buy", "100", 50, "100"),  # 100.5 -> down to 0 places: the cap is never passed
        ("Sell", "100", 50, "100"),  # 99.5 -> up to 0 places
        ("Buy", 30000, 10, "30030"),  # int ref: 0 places
        ("Sell", Decimal("2.50"), 1, "2.5"),  # 2.49975 -> up to 2 places: 2.50
        ("Buy", "2.5000", Decimal("1.5"), "2.5003"),  # fractional bps: 2.500375 -> down
        ("Sell", "1", 9999, "1"),  # 0.0001 -> up to 0 places, still positive
        ("Sell", "1.0000", 9999, "0.0001"),  # 0.0001 exactly
        ("Buy", "1.0000", 9999, "1.9999"),
    ],
)
def test_capped_limit_price(side: str, ref: Any, bps: Any, expected: str) -> None:
    assert capped_limit_price(side, ref, Decimal(bps)) == expected  # type: ignore[arg-type]


def test_conversion_keeps_the_order_and_its_link_id() -> None:
    decision = decide_order(
        mref(side="Sell", ref_price="123.45", slippage_bps=33, qty="2", reduce_only=True),
        venue_reachable=False,
        config=CONFIG,
    )
    intent = decision.intent
    assert intent is not None
    assert (intent.order_type, intent.time_in_force, intent.price) == ("Limit", "GTC", "123.05")
    assert (intent.side, intent.qty, intent.reduce_only) == ("Sell", "2", True)
    assert intent.order_link_id == LINK_ID  # same idempotency, same orderLinkId
    assert "123.05" in decision.message and "rounded up" in decision.message


def test_converted_tif_is_configurable() -> None:
    config = PolicyConfig(market_limit_tif="IOC")
    intent = decide_order(mref(), venue_reachable=False, config=config).intent
    assert intent is not None and intent.time_in_force == "IOC"


def test_venue_up_leaves_market_orders_alone() -> None:
    decision = decide_order(mref(), venue_reachable=True, config=CONFIG)
    assert decision.intent is not None
    assert (decision.intent.order_type, decision.intent.price) == ("Market", None)
    assert "unused" in decision.message


def test_capped_limit_price_refuses_impossible_caps() -> None:
    with pytest.raises(InvalidInput):
        capped_limit_price("Sell", "100", Decimal(10_000))
    with pytest.raises(InvalidInput):
        capped_limit_price("Buy", "100", Decimal(-1))


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, Decimal(0)), (50, Decimal(50)), ("12.5", Decimal("12.5")), (Decimal("0.0001"), None)],
)
def test_parse_bps(value: Any, expected: Decimal | None) -> None:
    assert parse_bps(value) == (Decimal(value) if expected is None else expected)


@pytest.mark.parametrize("value", [-1, "-0.5", "1e2", " 5", "5%", True, 1.5, None, Decimal("NaN")])
def test_parse_bps_refuses(value: Any) -> None:
    with pytest.raises(InvalidInput):
        parse_bps(value)


_refs = st.builds(
    lambda digits, places: (Decimal(digits).scaleb(-places), places),
    st.integers(min_value=1, max_value=10**15),
    st.integers(min_value=0, max_value=12),
)


@settings(max_examples=500, deadline=None)
@given(
    ref=_refs,
    bps=st.integers(min_value=0, max_value=9999) | st.decimals("0", "9999.9999", places=4),
    side=st.sampled_from(["Buy", "Sell"]),
)
def test_cap_is_never_exceeded(ref: tuple[Decimal, int], bps: Any, side: str) -> None:
    """Buy never above ref*(1+bps/10^4), Sell never below ref*(1-bps/10^4), never past ref."""
    value, places = ref
    typed = f"{value:.{places}f}"  # as the trader would type it, trailing zeros kept
    price = Fraction(capped_limit_price(side, typed, Decimal(bps)))  # type: ignore[arg-type]
    exact_ref = Fraction(typed)
    rate = Fraction(bps) / 10_000
    tick = Fraction(1, 10**places)
    if side == "Buy":
        cap = exact_ref * (1 + rate)
        assert exact_ref <= price <= cap
        assert cap - price < tick  # rounded down by less than one tick, not further
    else:
        cap = exact_ref * (1 - rate)
        assert 0 < cap <= price <= exact_ref
        assert price - cap < tick  # rounded up by less than one tick
    assert (price / tick).denominator == 1  # the ref's decimal places, no more


# ----------------------------------------------------------------------------- config, misc


@pytest.mark.parametrize(
    "overrides",
    [
        {"default_ttl_s": 0},
        {"max_ttl_s": -1},
        {"market_ttl_s": True},
        {"immediate_ttl_s": 1.5},
        {"default_ttl_s": 7200, "max_ttl_s": 3600},
        {"max_slippage_bps": -1},
        {"max_slippage_bps": 10_000},
        {"max_slippage_bps": 5.0},
        {"allow_market_with_ref": "yes"},
        {"market_limit_tif": "FOK"},
    ],
)
def test_bad_config_raises(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        PolicyConfig(**overrides)


def test_config_limits_apply() -> None:
    config = replace(CONFIG, max_slippage_bps=20, max_ttl_s=100, default_ttl_s=50)
    assert decide_order(mref(slippage_bps=21), venue_reachable=False, config=config).rule == (
        "slippage-over-cap"
    )
    assert decide_order(order(), venue_reachable=False, config=config).ttl_s == 50
    assert decide_order(order(ttl_s=101), venue_reachable=False, config=config).rule == (
        "ttl-over-max"
    )


def test_deterministic() -> None:
    for _, request_, reachable, *_ in ORDER_TABLE:
        first = decide_order(request_, venue_reachable=reachable, config=CONFIG)
        assert decide_order(request_, venue_reachable=reachable, config=CONFIG) == first


def test_expires_ms_and_audit_json() -> None:
    queued = decide_order(order(ttl_s=30), venue_reachable=False, config=CONFIG)
    assert expires_ms(queued, 1_000) == 31_000
    assert expires_ms(Decision(action="refuse", rule="x", message="m"), 1_000) is None
    record = queued.as_json()
    assert record["rule"] == "gtc-ttl" and record["priority"] == 50 and record["ttl_s"] == 30
    assert record["intent"]["orderLinkId"] == LINK_ID and record["intent"]["price"] == "30000.5"
    refused = decide_order(order(tif="IOC"), venue_reachable=False, config=CONFIG).as_json()
    assert refused["intent"] is None and refused["priority"] is None
