"""Fee ladders: the fee levels a transaction is pre-signed at, and its cancel.

Pure arithmetic on validated intents. Every step must be accepted by a node as a
replacement of the step below it: go-ethereum, Nethermind, Erigon and reth require the
new fee cap AND the new tip to be strictly greater and at least ``old * 110 // 100``
(legacy transactions: the gas price). A configured percentage may ask for more, never
less. No level goes above the configured maximum fee.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from airlock.errors import InvalidInput

if TYPE_CHECKING:
    from airlock.signer.evm import TxIntent

MIN_BUMP_PCT = 10  # the geth replacement rule
MAX_LADDER = 32
CANCEL_GAS = 21_000
# geth's default RPC fee cap (gas * fee <= 1 ether); nodes refuse anything above it.
NODE_TX_FEE_CAP_WEI = 10**18


@dataclass(frozen=True)
class LadderSpec:
    """How to pre-sign one transaction: ``levels`` fee levels, optional cancel."""

    levels: int = 1
    bump_pct: float = 12.5
    max_fee_cap: int | None = None  # wei per gas; None: only the node's 1-ether tx-fee cap
    with_cancel: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.levels, bool) or not isinstance(self.levels, int):
            raise InvalidInput(
                f"ladder levels must be a whole number, got {self.levels!r}", field="ladder"
            )
        if not 1 <= self.levels <= MAX_LADDER:
            raise InvalidInput(
                f"ladder must have 1..{MAX_LADDER} levels, got {self.levels}", field="ladder"
            )
        if (
            isinstance(self.bump_pct, bool)
            or not isinstance(self.bump_pct, int | float)
            or not MIN_BUMP_PCT <= self.bump_pct <= 1000
        ):
            raise InvalidInput(
                f"bump percentage must be a number between {MIN_BUMP_PCT} (nodes refuse "
                f"smaller replacements) and 1000, got {self.bump_pct!r}",
                field="bump_pct",
            )
        if self.max_fee_cap is not None and (
            isinstance(self.max_fee_cap, bool)
            or not isinstance(self.max_fee_cap, int)
            or self.max_fee_cap <= 0
        ):
            raise InvalidInput(
                f"max fee cap must be a positive whole number of wei per gas, got "
                f"{self.max_fee_cap!r}",
                field="max_fee_cap",
            )


@dataclass(frozen=True)
class Ladder:
    """The intents to sign: ``steps[0]`` is the original, each next one replaces it."""

    steps: tuple[TxIntent, ...]
    cancel: TxIntent | None
    truncated: bool  # fewer steps than asked: the cap stopped the ladder


def bump(old: int, pct: float) -> int:
    """The smallest fee at least ``pct`` percent above ``old`` that nodes accept as a bump."""
    basis_points = round(pct * 100)  # integers only: fees can exceed a float's precision
    by_pct = -(-old * (10_000 + basis_points) // 10_000)
    by_rule = -(-old * (100 + MIN_BUMP_PCT) // 100)
    return max(old + 1, by_pct, by_rule)


def is_valid_replacement(old: TxIntent, new: TxIntent) -> bool:
    """True if a node following the geth rule accepts ``new`` in place of ``old``."""

    def ok(a: int, b: int) -> bool:
        return b > a and b >= a * (100 + MIN_BUMP_PCT) // 100

    if old.gas_price is not None and new.gas_price is not None:
        return ok(old.gas_price, new.gas_price)
    assert old.max_fee_per_gas is not None and new.max_fee_per_gas is not None
    assert old.max_priority_fee_per_gas is not None and new.max_priority_fee_per_gas is not None
    return ok(old.max_fee_per_gas, new.max_fee_per_gas) and ok(
        old.max_priority_fee_per_gas, new.max_priority_fee_per_gas
    )


def _cap_for(intent: TxIntent, spec: LadderSpec) -> int:
    node_cap = NODE_TX_FEE_CAP_WEI // intent.gas
    return node_cap if spec.max_fee_cap is None else min(spec.max_fee_cap, node_cap)


def fee_of(intent: TxIntent) -> int:
    """The fee per gas a replacement is judged on: gasPrice, or maxFeePerGas."""
    fee = intent.gas_price if intent.gas_price is not None else intent.max_fee_per_gas
    assert fee is not None
    return fee


def _with_fees(intent: TxIntent, fee: int, tip: int | None, **changes: object) -> TxIntent:
    # Here, not at the top: the rest of this module is arithmetic, and the CLI reads
    # MAX_LADDER without loading the signer (rlp, eth_utils, coincurve).
    from airlock.signer.evm import make_intent

    fields: dict[str, object] = {
        "chain_id": intent.chain_id,
        "nonce": intent.nonce,
        "to": intent.to,
        "value": intent.value,
        "gas": intent.gas,
        "data": intent.data,
        "tx_type": intent.tx_type,
        "access_list": [
            {"address": a, "storageKeys": ["0x" + k.hex() for k in keys]}
            for a, keys in intent.access_list
        ],
    }
    if intent.gas_price is not None:
        fields["gas_price"] = fee
    else:
        fields["max_fee_per_gas"] = fee
        fields["max_priority_fee_per_gas"] = tip
    fields.update(changes)
    return make_intent(**fields)


def _next_step(intent: TxIntent, spec: LadderSpec, cap: int) -> TxIntent | None:
    """The next fee level above ``intent``, or None when the cap leaves no room for one."""
    fee = min(bump(fee_of(intent), spec.bump_pct), cap)
    tip = None
    if intent.max_priority_fee_per_gas is not None:
        tip = min(bump(intent.max_priority_fee_per_gas, spec.bump_pct), fee)
    candidate = _with_fees(intent, fee, tip)
    return candidate if is_valid_replacement(intent, candidate) else None


def level_above(
    intent: TxIntent, fee: int, tip: int | None, bump_pct: float, cap: int
) -> TxIntent | None:
    """``intent`` one fee level above ``fee``/``tip`` (the top variant signed so far), never
    above ``cap`` nor the node's fee cap; None when no valid replacement fits under them.

    This is how the broadcaster re-signs once the pre-signed ladder has run out."""
    top = _with_fees(intent, fee, tip)
    return _next_step(
        top,
        LadderSpec(bump_pct=bump_pct, max_fee_cap=cap),
        _cap_for(top, LadderSpec(max_fee_cap=cap)),
    )


def build_ladder(base: TxIntent, spec: LadderSpec, sender: str) -> Ladder:
    """The fee levels for ``base`` and, with ``spec.with_cancel``, a cancel at the top fee.

    The cancel is a 0-value, no-data self-transfer from ``sender`` at the same nonce. It
    takes the level above the top step when the cap allows one, so it can replace every
    variant, the top one included; otherwise it takes the top step's fees and can replace
    every variant but the top one.
    """
    cap = _cap_for(base, spec)
    if fee_of(base) > cap:
        raise InvalidInput(
            f"the transaction's fee ({fee_of(base)} wei per gas) is above the cap ({cap} wei "
            "per gas); lower the fee or raise --max-fee-cap",
            field="max_fee_cap",
        )
    steps = [base]
    while len(steps) < spec.levels:
        step = _next_step(steps[-1], spec, cap)
        if step is None:
            break
        steps.append(step)
    cancel = None
    if spec.with_cancel:
        top = _next_step(steps[-1], spec, _cap_for(_cancel_shape(base, sender), spec)) or steps[-1]
        cancel = _cancel_shape(top, sender)
    return Ladder(steps=tuple(steps), cancel=cancel, truncated=len(steps) < spec.levels)


def _cancel_shape(intent: TxIntent, sender: str) -> TxIntent:
    """A 0-value, no-data transfer to ``sender`` with ``intent``'s nonce and fees."""
    return _with_fees(
        intent,
        fee_of(intent),
        intent.max_priority_fee_per_gas,
        to=sender,
        value=0,
        data="0x",
        gas=CANCEL_GAS,
        access_list=None,
    )
