"""The library's argument checks: where a bot's names and values meet airlock's.

Which keywords each call takes, how a field is named in an error (the bot's spelling, not
the signer's), which batch element an error is about. Pure except :func:`check_from`,
which derives the HSM key's address.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from airlock.api import txparams
from airlock.errors import InvalidInput
from airlock.queue.items import Kind
from airlock.queue.states import State

if TYPE_CHECKING:
    from airlock.hsm.keyring import HsmEcdsaKey

T = TypeVar("T")

TX_OPTIONS = frozenset(
    {"key", "nonce", "ladder", "bump_pct", "max_fee_cap", "with_cancel", "ttl"}
    | {"idempotency_key", "strategy", "private", "priority"}
    | set(txparams.INTENT_ARGS)
)
ORDER_OPTIONS = frozenset(
    {"symbol", "side", "order_type", "qty", "price", "tif", "ttl", "ref_price"}
    | {"slippage_bps", "idempotency_key", "category", "reduce_only", "strategy"}
)
STATE_NAMES = frozenset(s.value for s in State)
KIND_NAMES = frozenset(k.value for k in Kind)


def names(what: str, value: str | Collection[str] | None, known: frozenset[str]) -> list[str]:
    if value is None:
        return []
    names = [value] if isinstance(value, str) else list(value)
    bad = [n for n in names if n not in known]
    if bad:
        raise InvalidInput(
            f"{what} must be among {', '.join(sorted(known))}, got {bad[0]!r}", field=what
        )
    return names


def flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false, got {value!r}", field=name)
    return value


def check_from(tx: Mapping[str, Any] | None, key: HsmEcdsaKey) -> None:
    """A web3 dict's ``from`` must be the HSM key's address: never sign for another."""
    if tx is None or tx.get("from") is None:
        return
    from airlock.signer.evm import address_from_public_key

    sender = address_from_public_key(key.public_key)
    if str(tx["from"]).lower() != sender.lower():
        raise InvalidInput(
            f"tx['from'] is {tx['from']} but key {key.label!r} is {sender}", field="from"
        )


def field_errors(call: Callable[[], T]) -> T:
    """Name an error's field the way the caller spelt it (``max_fee``, not
    ``max_fee_per_gas``)."""
    try:
        return call()
    except InvalidInput as exc:
        exc.field = txparams.field_name(exc.field)
        raise


# The order intent's names for what a bot calls tif and ttl.
ORDER_FIELD_NAMES = {"time_in_force": "tif", "ttl_s": "ttl"}


@contextmanager
def order_fields() -> Iterator[None]:
    """Name an order error's field the way the caller spelt it."""
    try:
        yield
    except InvalidInput as exc:
        exc.field = ORDER_FIELD_NAMES.get(exc.field or "", exc.field)
        raise


@contextmanager
def at_index(index: int | None) -> Iterator[None]:
    """Tag an error raised for one element of a batch with the element's index."""
    try:
        yield
    except InvalidInput as exc:
        if index is not None and exc.index is None:
            exc.index = index
        raise
