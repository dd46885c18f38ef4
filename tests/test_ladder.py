"""Fee ladders: every pre-signed level must be accepted by a node as a replacement.

The ladder code checks itself with ``is_valid_replacement``; these tests re-check the
geth replacement rule independently (integer arithmetic written out here), so a bug that
slips into both ``bump`` and ``is_valid_replacement`` still fails a test.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airlock.errors import InvalidInput
from airlock.signer.evm import TxIntent, make_intent
from airlock.signer.ladder import (
    CANCEL_GAS,
    MAX_LADDER,
    NODE_TX_FEE_CAP_WEI,
    Ladder,
    LadderSpec,
    build_ladder,
    bump,
    fee_of,
    is_valid_replacement,
)

SENDER = "0x" + "ab" * 20
RECIPIENT = "0x" + "cd" * 20
STORAGE_KEY = "0x" + "11" * 32


# --------------------------------------------------------------------------- helpers


def geth_accepts(old: int, new: int) -> bool:
    """go-ethereum's txpool rule for one fee field (price bump 10%), written out here."""
    return new > old and new >= old * 110 // 100


def smallest_accepted(old: int) -> int:
    """The lowest fee geth takes as a replacement of ``old``."""
    return max(old + 1, old * 110 // 100)


def tip_of(intent: TxIntent) -> int | None:
    return intent.max_priority_fee_per_gas


def geth_accepts_intent(old: TxIntent, new: TxIntent) -> bool:
    """The full rule: gas price for type 0/1; fee cap AND tip for type 2."""
    if old.tx_type == 2:
        assert tip_of(old) is not None and tip_of(new) is not None
        return geth_accepts(fee_of(old), fee_of(new)) and geth_accepts(tip_of(old), tip_of(new))
    return geth_accepts(fee_of(old), fee_of(new))


def has_room(top: TxIntent, cap: int) -> bool:
    """True when some replacement of ``top`` fits under ``cap`` (with tip <= fee cap).

    The cheapest replacement takes ``smallest_accepted`` of each field; the tip is never
    above the fee cap, so it fits whenever the fee cap does.
    """
    if smallest_accepted(fee_of(top)) > cap:
        return False
    tip = tip_of(top)
    return tip is None or smallest_accepted(tip) <= cap


def effective_cap(gas: int, max_fee_cap: int | None) -> int:
    """Per-gas fee limit: the operator's cap and geth's 1-ether total-fee cap."""
    node_cap = NODE_TX_FEE_CAP_WEI // gas
    return node_cap if max_fee_cap is None else min(max_fee_cap, node_cap)


def intent(
    *,
    tx_type: int = 2,
    fee: int = 100,
    tip: int = 2,
    gas: int = 50_000,
    nonce: int = 7,
    to: str | None = RECIPIENT,
    value: int = 5,
    data: str = "0x1234",
    chain_id: int = 1,
    access_list: list[dict[str, object]] | None = None,
) -> TxIntent:
    """A validated intent; ``fee`` is the gas price (type 0/1) or max fee (type 2)."""
    fees: dict[str, int] = (
        {"max_fee_per_gas": fee, "max_priority_fee_per_gas": tip}
        if tx_type == 2
        else {"gas_price": fee}
    )
    if tx_type == 1 and access_list is None:
        access_list = []
    return make_intent(
        chain_id=chain_id,
        nonce=nonce,
        to=to,
        value=value,
        gas=gas,
        data=data,
        tx_type=tx_type,
        access_list=access_list,
        **fees,
    )


def assert_same_transaction(base: TxIntent, other: TxIntent) -> None:
    """Everything but the fees is the base's: a fee level must not change what is sent."""
    assert other.nonce == base.nonce
    assert other.to == base.to
    assert other.value == base.value
    assert other.data == base.data
    assert other.chain_id == base.chain_id
    assert other.tx_type == base.tx_type
    assert other.gas == base.gas
    assert other.access_list == base.access_list
    assert (other.gas_price is None) == (base.gas_price is None)


# --------------------------------------------------------------------------- bump


@pytest.mark.parametrize(
    ("old", "pct", "expected"),
    [
        (0, 10, 1),  # a zero fee still has to go up
        (0, 12.5, 1),
        (1, 10, 2),
        (1, 12.5, 2),
        (9, 10, 10),
        (10, 10, 11),
        (10, 12.5, 12),  # 11.25 rounds up
        (19, 10, 21),  # 20.9 rounds up, above geth's floor of 20
        (100, 10, 110),
        (100, 12.5, 113),  # 112.5 rounds up
        (100, 200, 300),
        (1000, 1000, 11_000),
        (3, 33.33, 4),
    ],
)
def test_bump_table(old: int, pct: float, expected: int) -> None:
    assert bump(old, pct) == expected


@pytest.mark.parametrize(
    ("old", "pct", "numerator", "denominator"),
    [
        (2**255 - 1, 12.5, 1125, 1000),
        (2**255 + 1, 10, 11, 10),
        (2**256 - 1, 10, 11, 10),
        (3 * 2**254 + 7, 200, 3, 1),
        (10**70 + 3, 12.5, 9, 8),
    ],
)
def test_bump_huge_values_are_exact(old: int, pct: float, numerator: int, denominator: int) -> None:
    """Fees near 2**256 are past a float's 53-bit mantissa: the result must be exact."""
    expected = -(-old * numerator // denominator)  # ceiling, integers only
    result = bump(old, pct)
    assert type(result) is int
    assert result == expected


@given(old=st.integers(0, 2**256), basis_points=st.integers(1000, 100_000))
def test_bump_is_the_smallest_acceptable_fee(old: int, basis_points: int) -> None:
    """bump() is at least pct percent up, accepted by geth, and the least such integer."""
    pct = basis_points / 100
    wanted = Fraction(old) * (10_000 + basis_points) / 10_000

    def good(fee: int) -> bool:
        return fee >= wanted and geth_accepts(old, fee)

    result = bump(old, pct)
    assert good(result)
    assert not good(result - 1)


# --------------------------------------------------------------------------- is_valid_replacement


@pytest.mark.parametrize(
    ("old_fee", "old_tip", "new_fee", "new_tip", "ok"),
    [
        (100, 2, 110, 3, True),
        (100, 2, 109, 3, False),  # fee cap 9% up only
        (100, 10, 110, 10, False),  # tip not raised
        (100, 10, 110, 11, True),
        (100, 0, 110, 1, True),
        (5, 5, 6, 6, True),  # 5 * 110 // 100 == 5: "strictly greater" decides
        (100, 2, 100, 3, False),
    ],
)
def test_is_valid_replacement_type2(
    old_fee: int, old_tip: int, new_fee: int, new_tip: int, ok: bool
) -> None:
    old = intent(fee=old_fee, tip=old_tip)
    new = intent(fee=new_fee, tip=new_tip)
    assert is_valid_replacement(old, new) is ok
    assert geth_accepts_intent(old, new) is ok


@pytest.mark.parametrize("tx_type", [0, 1])
@pytest.mark.parametrize(
    ("old_price", "new_price", "ok"),
    [(0, 0, False), (0, 1, True), (100, 110, True), (100, 109, False), (1, 2, True)],
)
def test_is_valid_replacement_gas_price(
    tx_type: int, old_price: int, new_price: int, ok: bool
) -> None:
    old = intent(tx_type=tx_type, fee=old_price)
    new = intent(tx_type=tx_type, fee=new_price)
    assert is_valid_replacement(old, new) is ok


# --------------------------------------------------------------------------- LadderSpec


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"levels": 0}, "1..32 levels"),
        ({"levels": 33}, "1..32 levels"),
        ({"levels": -1}, "1..32 levels"),
        ({"bump_pct": 9.99}, "bump percentage"),
        ({"bump_pct": 1001}, "bump percentage"),
        ({"bump_pct": float("nan")}, "bump percentage"),
        ({"max_fee_cap": 0}, "max fee cap"),
        ({"max_fee_cap": -5}, "max fee cap"),
    ],
)
def test_ladder_spec_refuses(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        LadderSpec(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"levels": 1},
        {"levels": MAX_LADDER},
        {"bump_pct": 10},
        {"bump_pct": 1000},
        {"max_fee_cap": 1},
        {"max_fee_cap": None},
    ],
)
def test_ladder_spec_accepts_the_bounds(kwargs: dict[str, object]) -> None:
    LadderSpec(**kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- fixed ladders


def fees(ladder: Ladder) -> list[int]:
    return [fee_of(step) for step in ladder.steps]


def test_ladder_fixed_example() -> None:
    """100 wei at 12.5%: 100, 113, 128, 144; tips 2, 3, 4, 5."""
    ladder = build_ladder(intent(fee=100, tip=2), LadderSpec(levels=4), SENDER)
    assert fees(ladder) == [100, 113, 128, 144]
    assert [tip_of(s) for s in ladder.steps] == [2, 3, 4, 5]
    assert ladder.truncated is False
    assert ladder.cancel is None


def test_ladder_stops_at_the_cap() -> None:
    """With a cap of 120, 113 -> 120 is under geth's 10% floor (124): the ladder stops."""
    ladder = build_ladder(intent(fee=100, tip=2), LadderSpec(levels=5, max_fee_cap=120), SENDER)
    assert fees(ladder) == [100, 113]
    assert ladder.truncated is True


def test_ladder_last_step_lands_on_the_cap() -> None:
    """A cap between the geth floor and the pct bump becomes the last level, exactly."""
    ladder = build_ladder(intent(fee=100, tip=2), LadderSpec(levels=5, max_fee_cap=125), SENDER)
    assert fees(ladder) == [100, 113, 125]
    assert ladder.truncated is True


def test_single_level_ladder_is_the_base() -> None:
    base = intent(fee=100, tip=2)
    ladder = build_ladder(base, LadderSpec(levels=1), SENDER)
    assert ladder.steps == (base,)
    assert ladder.truncated is False


def test_base_fee_above_the_user_cap_is_refused() -> None:
    with pytest.raises(InvalidInput, match="above the cap") as info:
        build_ladder(intent(fee=101, tip=1), LadderSpec(max_fee_cap=100), SENDER)
    assert "101" in str(info.value) and "100" in str(info.value)


def test_base_fee_above_the_node_cap_is_refused() -> None:
    """Without --max-fee-cap the 1-ether total fee cap of geth still applies."""
    gas = 21_000
    at_cap = NODE_TX_FEE_CAP_WEI // gas
    build_ladder(intent(tx_type=0, fee=at_cap, gas=gas), LadderSpec(), SENDER)
    with pytest.raises(InvalidInput, match="above the cap"):
        build_ladder(intent(tx_type=0, fee=at_cap + 1, gas=gas), LadderSpec(), SENDER)


def test_cancel_with_room_goes_one_level_above_the_top() -> None:
    base = intent(fee=100, tip=2)
    ladder = build_ladder(base, LadderSpec(levels=3, max_fee_cap=200, with_cancel=True), SENDER)
    assert fees(ladder) == [100, 113, 128]
    cancel = ladder.cancel
    assert cancel is not None
    assert (fee_of(cancel), tip_of(cancel)) == (144, 5)
    assert cancel.to == to_checksum_address(SENDER)
    assert (cancel.value, cancel.data, cancel.gas) == (0, b"", CANCEL_GAS)
    assert is_valid_replacement(ladder.steps[-1], cancel)


def test_cancel_without_room_takes_the_top_fees() -> None:
    base = intent(fee=100, tip=2)
    ladder = build_ladder(base, LadderSpec(levels=3, max_fee_cap=128, with_cancel=True), SENDER)
    assert fees(ladder) == [100, 113, 128]
    cancel = ladder.cancel
    assert cancel is not None
    assert (fee_of(cancel), tip_of(cancel)) == (128, 4)
    assert not is_valid_replacement(ladder.steps[-1], cancel)


def test_cancel_of_a_contract_creation_is_a_self_transfer() -> None:
    base = intent(to=None, data="0x6000", tx_type=0, fee=10)
    ladder = build_ladder(base, LadderSpec(levels=2, with_cancel=True), SENDER)
    assert all(step.to is None for step in ladder.steps)
    assert ladder.cancel is not None
    assert ladder.cancel.to == to_checksum_address(SENDER)
    assert ladder.cancel.data == b""


# --------------------------------------------------------------------------- properties


@st.composite
def ladder_cases(draw: st.DrawFn) -> tuple[TxIntent, LadderSpec]:
    """A valid base intent and spec, with fees often close to the cap so ladders truncate."""
    tx_type = draw(st.sampled_from([0, 1, 2]))
    gas = draw(st.one_of(st.integers(21_000, 30_000_000), st.integers(21_000, 10**18)))
    max_fee_cap = draw(st.none() | st.integers(1, 10**20))
    cap = effective_cap(gas, max_fee_cap)
    near_cap = st.integers(max(0, cap - 2_000), cap)
    fee = draw(st.one_of(st.integers(0, cap), near_cap, st.integers(0, min(cap, 1_000))))
    tip = draw(st.one_of(st.integers(0, fee), st.just(fee), st.just(0)))
    to = draw(st.sampled_from([RECIPIENT, None]))
    data = draw(st.binary(min_size=0 if to else 1, max_size=8))
    access_list = None
    if tx_type != 0 and draw(st.booleans()):
        access_list = [{"address": RECIPIENT, "storageKeys": [STORAGE_KEY]}]
    base = intent(
        tx_type=tx_type,
        fee=fee,
        tip=tip,
        gas=gas,
        nonce=draw(st.integers(0, 2**64 - 2)),
        to=to,
        value=draw(st.integers(0, 2**256 - 1)),
        data="0x" + data.hex(),
        chain_id=draw(st.integers(1, 2**40)),
        access_list=access_list,
    )
    spec = LadderSpec(
        levels=draw(st.integers(1, MAX_LADDER)),
        bump_pct=draw(st.integers(1000, 20_000)) / 100,  # 10% .. 200%, whole basis points
        max_fee_cap=max_fee_cap,
        with_cancel=draw(st.booleans()),
    )
    return base, spec


PROPERTY_SETTINGS = settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(case=ladder_cases())
def test_every_step_replaces_the_one_below(case: tuple[TxIntent, LadderSpec]) -> None:
    base, spec = case
    ladder = build_ladder(base, spec, SENDER)
    cap = effective_cap(base.gas, spec.max_fee_cap)
    step_pct = Fraction(round(spec.bump_pct * 100), 10_000)

    assert ladder.steps[0] == base
    assert 1 <= len(ladder.steps) <= spec.levels
    for prev, nxt in itertools.pairwise(ladder.steps):
        assert is_valid_replacement(prev, nxt)
        assert geth_accepts_intent(prev, nxt)
        # the configured percentage is honoured unless the cap clipped the level
        assert fee_of(nxt) == cap or fee_of(nxt) >= fee_of(prev) * (1 + step_pct)
        if base.tx_type == 2:
            assert tip_of(nxt) == fee_of(nxt) or tip_of(nxt) >= tip_of(prev) * (1 + step_pct)
    for step in ladder.steps:
        assert_same_transaction(base, step)
        assert fee_of(step) <= cap
        assert fee_of(step) * step.gas <= NODE_TX_FEE_CAP_WEI
        if spec.max_fee_cap is not None:
            assert fee_of(step) <= spec.max_fee_cap
        if step.tx_type == 2:
            assert tip_of(step) <= fee_of(step)


@PROPERTY_SETTINGS
@given(case=ladder_cases())
def test_truncated_exactly_when_the_cap_leaves_no_room(case: tuple[TxIntent, LadderSpec]) -> None:
    """Short ladders are flagged, and only stop when no valid level fits under the cap."""
    base, spec = case
    ladder = build_ladder(base, spec, SENDER)
    cap = effective_cap(base.gas, spec.max_fee_cap)
    assert ladder.truncated is (len(ladder.steps) < spec.levels)
    if ladder.truncated:
        assert not has_room(ladder.steps[-1], cap)


@PROPERTY_SETTINGS
@given(case=ladder_cases())
def test_cancel_replaces_the_ladder(case: tuple[TxIntent, LadderSpec]) -> None:
    base, spec = case
    ladder = build_ladder(base, spec, SENDER)
    cancel, top = ladder.cancel, ladder.steps[-1]
    if not spec.with_cancel:
        assert cancel is None
        return
    assert cancel is not None

    assert cancel.to == to_checksum_address(SENDER)
    assert (cancel.value, cancel.data, cancel.gas) == (0, b"", CANCEL_GAS)
    assert cancel.access_list == ()
    assert (cancel.nonce, cancel.chain_id, cancel.tx_type) == (
        base.nonce,
        base.chain_id,
        base.tx_type,
    )
    assert fee_of(cancel) >= fee_of(top)
    cancel_cap = effective_cap(CANCEL_GAS, spec.max_fee_cap)
    assert fee_of(cancel) <= cancel_cap
    if cancel.tx_type == 2:
        assert tip_of(cancel) <= fee_of(cancel)

    if has_room(top, cancel_cap):
        assert is_valid_replacement(top, cancel)
        assert geth_accepts_intent(top, cancel)
    else:
        assert fee_of(cancel) == fee_of(top)
        assert tip_of(cancel) == tip_of(top)
    for lower in ladder.steps[:-1]:  # it replaces every variant below the top in any case
        assert geth_accepts_intent(lower, cancel)


@pytest.mark.parametrize("levels", [2.5, True, "3"])
def test_levels_must_be_a_whole_number(levels):
    with pytest.raises(InvalidInput, match="whole number"):
        LadderSpec(levels=levels)
