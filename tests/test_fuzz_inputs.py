"""Fuzz: amounts, addresses and ids typed at the CLI, and the outage policy.

Contract: each parser yields a value or raises :class:`InvalidInput` with a non-empty
message; the policy never raises for a bad request (it returns a refusal Decision).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from eth_utils import to_checksum_address
from hypothesis import given
from hypothesis import strategies as st
from tests.kits.fuzz import INT_DIGITS_LIMIT, fuzz, huge_ints, no_hang, numberish

from airlock.cli.tx_options import intent_fields
from airlock.errors import InvalidInput
from airlock.queue.policy import (
    RULES,
    CancelRequest,
    Decision,
    OrderRequest,
    PolicyConfig,
    decide_cancel,
    decide_order,
    parse_bps,
)
from airlock.signer import bybit, evm


def refused(call: Any, *args: Any, **kwargs: Any) -> Any:
    """``call(...)``'s value, or None when it raised InvalidInput with a message."""
    with no_hang():
        try:
            return call(*args, **kwargs)
        except InvalidInput as exc:
            assert str(exc).strip(), f"{type(exc).__name__} without a message"
            return None


# ----------------------------------------------------------------------------- addresses


@st.composite
def addresses(draw: st.DrawFn) -> str:
    """Addresses right and wrong: checksummed, lower, upper, mis-checksummed, short, long,
    without 0x, with 0X, with non-hex and non-ASCII characters."""
    raw = draw(st.binary(min_size=20, max_size=20))
    good = to_checksum_address(raw)
    kind = draw(st.integers(0, 8))
    if kind == 0:
        return good
    if kind == 1:
        return good.lower()
    if kind == 2:
        return "0x" + good[2:].upper()
    if kind == 3:  # flip the case of one letter: a checksum that no longer matches
        letters = [i for i, c in enumerate(good) if i > 1 and c.isalpha()]
        if not letters:
            return good
        i = draw(st.sampled_from(letters))
        return good[:i] + good[i].swapcase() + good[i + 1 :]
    if kind == 4:
        return good[2:]
    if kind == 5:
        return "0X" + good[2:]
    if kind == 6:
        cut = draw(st.integers(0, 44))
        return (good + good[2:])[:cut]
    if kind == 7:
        i = draw(st.integers(2, 41))
        return good[:i] + draw(st.characters()) + good[i + 1 :]
    return draw(st.text(max_size=50))


def any_value() -> st.SearchStrategy[Any]:
    """Anything a caller might pass instead of text: numbers, bools, bytes, None, lists."""
    return st.one_of(
        st.none(),
        st.booleans(),
        huge_ints(),
        st.floats(),
        st.decimals(),
        st.binary(max_size=8),
        st.lists(st.integers(), max_size=2),
    )


numbers = numberish() | any_value()


@fuzz(500)
@given(
    chain_id=numbers,
    nonce=numbers,
    to=addresses() | st.none() | any_value(),
    value=numbers,
    gas=numbers,
    data=st.sampled_from(["0x", "", "0x00", "0x0", "00", "0xzz", "0X" + "ab" * 3]) | st.text(),
    fees=st.fixed_dictionaries(
        {},
        optional={
            "gas_price": numbers,
            "max_fee_per_gas": numbers,
            "max_priority_fee_per_gas": numbers,
            "tx_type": numbers,
        },
    ),
)
def test_make_intent_value_or_invalid_input(chain_id, nonce, to, value, gas, data, fees):
    intent = refused(
        evm.make_intent,
        chain_id=chain_id,
        nonce=nonce,
        to=to,
        value=value,
        gas=gas,
        data=data,
        **fees,
    )
    if intent is not None:
        assert isinstance(intent, evm.TxIntent)
        assert 0 <= intent.value <= evm.MAX_UINT256
        assert 1 <= intent.chain_id <= evm.MAX_CHAIN_ID
        assert evm.MIN_GAS <= intent.gas <= evm.MAX_GAS
        assert intent.to is None or intent.to == to_checksum_address(intent.to)


VALID_TX = {
    "chain_id": "1",
    "nonce": "0",
    "to": "0x" + "11" * 20,
    "value": "1",
    "gas": "21000",
    "gas_price": "1",
}
FIELDS = ["chain_id", "nonce", "to", "value", "gas", "gas_price", "max_fee_per_gas", "tx_type"]


@fuzz(500)
@given(field=st.sampled_from(FIELDS), text=numberish() | addresses())
def test_one_bad_field_in_a_valid_intent(field, text):
    """One field of a valid intent replaced: the search reaches every field's parser."""
    kwargs = {**VALID_TX, field: text}
    if field == "max_fee_per_gas":
        kwargs.pop("gas_price")
        kwargs["max_priority_fee_per_gas"] = "0"
    refused(evm.make_intent, **kwargs)


def nested(depth: int, kind: str) -> str:
    opening, closing = ("[", "]") if kind == "list" else ('{"a":', "}")
    return opening * depth + "1" + closing * depth


ACCESS_LISTS = [
    "",
    "[]",
    "{}",
    "null",
    "[null]",
    "NaN",
    '[{"address": "0x' + "11" * 20 + '", "storageKeys": []}]',
    '[{"address": "0x' + "11" * 20 + '", "storageKeys": ["0x' + "00" * 32 + '"]}]',
    '[{"address": "0x' + "11" * 20 + '", "storageKeys": ["0x0"]}]',
    '[{"address": "0x' + "11" * 20 + '"}]',
    '[["0x' + "11" * 20 + '", []]]',
    "[" + "1" * 5000 + "]",  # an integer past the int <-> str digit limit
    "[1e999]",
    nested(500, "list"),
    nested(100_000, "list"),  # C-recursion depth: must be refused, not crash the process
    nested(100_000, "dict"),
    "[" * 100_000,
]


@fuzz(300, deadline_ms=5000)
@given(
    access_list=st.sampled_from(ACCESS_LISTS)
    | st.recursive(
        st.none() | st.integers() | st.text(max_size=70) | addresses(),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.sampled_from(["address", "storageKeys", "x"]), inner, max_size=3)
        ),
        max_leaves=8,
    ).map(json.dumps)
    | st.text(max_size=50),
    tx_type=st.sampled_from([None, "1", "2"]),
)
def test_access_list_json_value_or_invalid_input(access_list, tx_type):
    kwargs = dict(VALID_TX, access_list=access_list, tx_type=tx_type)
    if tx_type == "2":
        kwargs.pop("gas_price")
        kwargs.update(max_fee_per_gas="2", max_priority_fee_per_gas="1")
    refused(evm.make_intent, **kwargs)


@fuzz(200)
@given(
    options=st.fixed_dictionaries(
        {
            "chain_id": numberish(),
            "to": addresses(),
            "value": numberish(),
            "gas": numberish(),
            "data": st.just("0x"),
            "gas_price": st.none() | numberish(),
            "max_fee": st.none() | numberish(),
            "priority_fee": st.none() | numberish(),
            "tx_type": st.sampled_from([None, "0", "1", "2"]),
            "access_list": st.none() | st.sampled_from(ACCESS_LISTS[:12]),
            "nonce": st.none() | numberish(),
        }
    )
)
def test_cli_options_through_intent_fields(options):
    """What ``evm sign`` / ``evm queue`` do with their options (click gives them as text)."""
    refused(evm.make_intent, **intent_fields(options), nonce=options["nonce"])


# ----------------------------------------------------------------------------- Bybit


decimals_in = st.one_of(
    numberish(),
    huge_ints(),
    st.decimals(),
    st.sampled_from(
        [
            Decimal("1E+1000000"),  # beyond the default context's Emax
            Decimal("1E-1000000"),
            Decimal("1E-999999999"),  # below Etiny: normalize() would round it to 0
            Decimal("-0"),
            Decimal("0E+5"),
            Decimal("1." + "0" * 500),
            Decimal("sNaN"),
            Decimal("-Infinity"),
        ]
    ),
    st.floats(),
    st.booleans(),
    st.none(),
)


@fuzz(500)
@given(value=decimals_in)
def test_canonical_decimal_value_or_invalid_input(value):
    text = refused(bybit.canonical_decimal, "qty", value)
    if text is not None:
        assert isinstance(text, str)
        assert bybit._PLAIN_DECIMAL_RE.fullmatch(text), text
        assert Decimal(text) > 0, f"{value!r} became {text!r}, not a positive decimal"
        assert bybit.canonical_decimal("qty", text) == text  # one spelling


@fuzz(300)
@given(key=st.text() | st.text(min_size=1000, max_size=1100) | any_value())
def test_order_link_id_for_value_or_invalid_input(key):
    link = refused(bybit.order_link_id_for, key)
    if link is not None:
        assert bybit._ORDER_LINK_ID_RE.fullmatch(link)


def choice_or_junk(choices: tuple[str, ...]) -> st.SearchStrategy[Any]:
    return st.sampled_from(choices) | st.text(max_size=10) | any_value()


symbols = st.sampled_from(["BTCUSDT", "ETHUSDC", "btcusdt", "", "X" * 33]) | st.text(max_size=34)
link_ids = st.sampled_from(["al-abc", "a" * 36, "a" * 37, "", "a b"]) | st.text(max_size=40)


@fuzz(500)
@given(
    fields=st.fixed_dictionaries(
        {
            "category": choice_or_junk(bybit.CATEGORIES),
            "symbol": symbols | any_value(),
            "side": choice_or_junk(bybit.SIDES),
            "order_type": choice_or_junk(bybit.ORDER_TYPES),
            "qty": decimals_in,
            "order_link_id": link_ids | any_value(),
        },
        optional={
            "price": decimals_in,
            "time_in_force": choice_or_junk(bybit.TIMES_IN_FORCE),
            "reduce_only": st.booleans() | any_value(),
            "stray": st.integers(),
        },
    )
)
def test_make_order_intent_value_or_invalid_input(fields):
    intent = refused(bybit.make_order_intent, **fields)
    if intent is not None:
        assert bybit.intent_from_dict(bybit.intent_dict(intent)) == intent


@fuzz(300)
@given(
    category=choice_or_junk(bybit.CATEGORIES),
    symbol=symbols | any_value(),
    link_id=link_ids | any_value(),
)
def test_make_cancel_intent_value_or_invalid_input(category, symbol, link_id):
    intent = refused(bybit.make_cancel_intent, category, symbol, link_id)
    if intent is not None:
        assert bybit.cancel_from_dict(bybit.cancel_dict(intent)) == intent


# ----------------------------------------------------------------------------- policy

configs = st.builds(
    PolicyConfig,
    default_ttl_s=st.integers(1, 100),
    max_ttl_s=st.integers(100, 10_000),
    market_ttl_s=st.integers(1, 100),
    immediate_ttl_s=st.integers(1, 100),
    max_slippage_bps=st.integers(0, 9_999),
    allow_market_with_ref=st.booleans(),
    market_limit_tif=st.sampled_from(["GTC", "IOC"]),
)

bps_in = st.one_of(
    st.integers(-10, 20_000),
    numberish(),
    st.decimals(),
    st.sampled_from([Decimal("1E+1000000"), Decimal("9999.9999"), Decimal("-0")]),
    any_value(),
)


@fuzz(600)
@given(
    request=st.builds(
        OrderRequest,
        category=choice_or_junk(bybit.CATEGORIES),
        symbol=st.sampled_from(["BTCUSDT"]) | symbols,
        side=choice_or_junk(bybit.SIDES),
        order_type=choice_or_junk(bybit.ORDER_TYPES),
        qty=decimals_in,
        idempotency_key=st.text(max_size=20) | st.text(min_size=1020, max_size=1030) | any_value(),
        price=decimals_in,
        tif=st.none() | choice_or_junk(bybit.TIMES_IN_FORCE),
        ttl_s=st.none() | huge_ints() | any_value(),
        ref_price=st.none() | decimals_in,
        slippage_bps=st.none() | bps_in,
        reduce_only=st.booleans() | any_value(),
    ),
    venue_reachable=st.booleans(),
    config=configs,
)
def test_decide_order_never_raises(request, venue_reachable, config):
    with no_hang():
        decision = decide_order(request, venue_reachable=venue_reachable, config=config)
    assert isinstance(decision, Decision)
    assert decision.rule in RULES
    assert decision.message
    if decision.action == "refuse":
        assert decision.intent is None
    else:
        assert decision.intent is not None
        assert Decimal(decision.intent.qty) > 0
        json.dumps(decision.as_json())  # what the audit log records


@fuzz(400)
@given(
    ref_price=st.sampled_from(["100.00", "0.0001", "1" * 40, "1." + "0" * 40]) | decimals_in,
    slippage=bps_in,
    side=st.sampled_from(["Buy", "Sell"]),
    order_type=st.sampled_from(["Market"]),
)
def test_market_orders_in_an_outage(ref_price, slippage, side, order_type):
    """The Market-to-Limit rewrite: reference prices and caps of every shape."""
    request = OrderRequest(
        category="linear",
        symbol="BTCUSDT",
        side=side,
        order_type=order_type,
        qty="1",
        idempotency_key="k",
        ref_price=ref_price,
        slippage_bps=slippage,
    )
    with no_hang():
        decision = decide_order(request, venue_reachable=False, config=PolicyConfig())
    assert isinstance(decision, Decision) and decision.rule in RULES


@fuzz(300)
@given(value=bps_in)
def test_parse_bps_value_or_invalid_input(value):
    refused(parse_bps, value)


@fuzz(300)
@given(
    request=st.builds(
        CancelRequest,
        category=choice_or_junk(bybit.CATEGORIES),
        symbol=symbols | any_value(),
        idempotency_key=st.text(max_size=20) | any_value(),
    ),
    sent=st.booleans(),
)
def test_decide_cancel_never_raises(request, sent):
    decision = decide_cancel(request, sent=sent)
    assert isinstance(decision, Decision)
    assert decision.rule in RULES and decision.message


# ----------------------------------------------------------------------------- known limit


@pytest.mark.xfail(
    strict=True,
    raises=ValueError,
    reason=(
        "known limit, not fixed: a Python int object past CPython's 4300-digit int <-> str "
        "limit, passed through the Python API where a string is expected, makes the "
        "InvalidInput message's {value!r} raise ValueError instead. Text and JSON cannot "
        "carry such an int (parsing it raises first), so no CLI, config or venue input "
        "reaches this; fixing it means a safe repr in every message of the validators."
    ),
)
def test_an_int_object_past_the_str_digit_limit_breaks_the_message():
    refused(bybit.make_cancel_intent, 10**INT_DIGITS_LIMIT, "BTCUSDT", "al-x")
