"""One transaction's arguments, from keywords and/or a web3.py ``TxParams`` dict.

Pure: names in, :func:`airlock.signer.evm.make_intent` arguments out. Most Python bots
already build ``{"to": ..., "value": ..., "maxFeePerGas": ..., "chainId": ...}`` for
``w3.eth.send_transaction``; :meth:`Airlock.queue_transaction` takes that dict as it is,
and keywords for the rest. A field given both ways is refused rather than guessed at.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airlock.errors import InvalidInput
from airlock.queue.items import Priority

# web3.py TxParams key -> our keyword (the make_intent field it feeds).
WEB3_KEYS: dict[str, str] = {
    "chainId": "chain_id",
    "to": "to",
    "value": "value",
    "gas": "gas",
    "data": "data",
    "input": "data",
    "maxFeePerGas": "max_fee",
    "maxPriorityFeePerGas": "priority_fee",
    "gasPrice": "gas_price",
    "nonce": "nonce",
    "type": "tx_type",
    "accessList": "access_list",
}
IGNORED_WEB3_KEYS = frozenset({"from"})  # checked against the key's address by the caller

# Our keyword -> make_intent's argument.
INTENT_ARGS: dict[str, str] = {
    "chain_id": "chain_id",
    "to": "to",
    "value": "value",
    "gas": "gas",
    "data": "data",
    "max_fee": "max_fee_per_gas",
    "priority_fee": "max_priority_fee_per_gas",
    "gas_price": "gas_price",
    "tx_type": "tx_type",
    "access_list": "access_list",
}
# make_intent's names back to ours, for the field of an error.
FIELD_NAMES: dict[str, str] = {v: k for k, v in INTENT_ARGS.items()}

PRIORITIES: dict[str, Priority] = {
    "cancel": Priority.CANCEL,
    "risk-reducing": Priority.RISK_REDUCING,
    "normal": Priority.NORMAL,
}


def merge(tx: Mapping[str, Any] | None, keywords: Mapping[str, Any]) -> dict[str, Any]:
    """Our keyword arguments, from ``tx`` (web3 names) and ``keywords`` (ours; None = unset)."""
    merged = {k: v for k, v in keywords.items() if v is not None}
    if tx is None:
        return merged
    if not isinstance(tx, Mapping):
        raise InvalidInput(
            f"tx must be a dict of web3 TxParams, got {type(tx).__name__}", field="tx"
        )
    for web3_key, value in tx.items():
        if web3_key in IGNORED_WEB3_KEYS:
            continue
        ours = WEB3_KEYS.get(web3_key)
        if ours is None:
            known = ", ".join(sorted(WEB3_KEYS) + sorted(IGNORED_WEB3_KEYS))
            raise InvalidInput(
                f"tx has a field airlock does not sign: {web3_key!r} (known: {known})",
                field=web3_key,
            )
        if ours in merged:
            raise InvalidInput(
                f"{ours} is given twice (as tx[{web3_key!r}] and as a keyword): give it once",
                field=ours,
            )
        merged[ours] = _web3_value(ours, value)
    return merged


def _web3_value(name: str, value: Any) -> Any:
    """web3 spells the type as an int or ``"0x2"`` and data as HexBytes or ``"0x…"``."""
    if name == "tx_type" and isinstance(value, str) and value.lower().startswith("0x"):
        try:
            return int(value, 16)
        except ValueError:
            raise InvalidInput(f"type must be 0, 1 or 2, got {value!r}", field="tx_type") from None
    if name == "data" and isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if name == "access_list" and isinstance(value, list | tuple):
        return [dict(entry) if isinstance(entry, Mapping) else entry for entry in value]
    return value


def intent_arguments(options: Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`make_intent` arguments (all but the nonce) from our keywords."""
    return {INTENT_ARGS[name]: options.get(name) for name in INTENT_ARGS} | {
        "data": options.get("data", "0x")
    }


def priority(value: str | int) -> Priority:
    """``"cancel"``, ``"risk-reducing"``, ``"normal"`` or a :class:`Priority`."""
    if isinstance(value, Priority):
        return value
    if isinstance(value, str) and value in PRIORITIES:
        return PRIORITIES[value]
    raise InvalidInput(
        f"priority must be one of {', '.join(PRIORITIES)}, got {value!r}", field="priority"
    )


def whole_number(name: str, value: Any) -> int | None:
    """An optional whole number given as an int or a decimal string (JSON carries integers
    past 2^53 as strings)."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 78:
        return int(value)
    raise InvalidInput(f"{name} must be a whole number, got {value!r}", field=name)


def field_name(internal: str | None) -> str | None:
    """The keyword a bot used for the make_intent field an error names (``max_fee_per_gas``
    is ``max_fee``; ``access_list[0].address`` stays as it is)."""
    if internal is None:
        return None
    head, sep, rest = internal.partition("[")
    return FIELD_NAMES.get(head, head) + sep + rest
