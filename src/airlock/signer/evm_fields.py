"""Parsing raw transaction fields: each field of :func:`airlock.signer.evm.make_intent`.

Pure. Input from outside (CLI strings, JSON, Python values) becomes exact integers, bytes
and checksum addresses, or an :class:`InvalidTransaction` that names the field and says
what to do about it. One function per field or field group; the bounds are the chain's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address

from airlock.encoding.jsonlimit import loads_limited
from airlock.errors import InvalidInput

MAX_UINT256 = 2**256 - 1
MAX_NONCE = 2**64 - 2
"""EIP-2681: a nonce of 2**64-1 can never be used, so it is refused here too."""
MAX_GAS = 2**64 - 1
MIN_GAS = 21_000
"""Intrinsic gas of the cheapest possible transaction; anything lower is always rejected."""
MAX_CHAIN_ID = 2**63 - 37
"""EIP-2294 bound: keeps the EIP-155 ``v`` (35 + 2*chain_id + 1) inside a signed 64-bit int,
which is what clients store. Every real chain id is far below it."""

SUPPORTED_TX_TYPES = (0, 1, 2)

_HEX_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_HEX_BYTES32 = re.compile(r"0x[0-9a-fA-F]{64}")
_DECIMAL = re.compile(r"[0-9]+")
_HEX_INT = re.compile(r"0[xX][0-9a-fA-F]+")
_HEX_DIGITS = re.compile(r"[0-9a-fA-F]*")
_ACCESS_LIST_MAX_DEPTH = 8  # a list of {"address", "storageKeys": [...]} is 3 deep


class InvalidTransaction(InvalidInput):
    """A transaction intent failed validation; the message names the field and the fix."""


def parse_chain_id(raw: Any) -> int:
    """A replay-protected chain id: required, 1 .. MAX_CHAIN_ID."""
    if raw is None:
        raise InvalidTransaction(
            "chain_id is required: airlock only signs replay-protected transactions "
            "(EIP-155); pass the id of the target chain, e.g. 1 for Ethereum mainnet",
            field="chain_id",
        )
    chain = parse_uint("chain_id", raw, MAX_CHAIN_ID)
    if chain < 1:
        raise InvalidTransaction(
            "chain_id must be at least 1: chain id 0 gives no replay protection; "
            "pass the id of the target chain, e.g. 1 for Ethereum mainnet",
            field="chain_id",
        )
    return chain


def parse_gas(raw: Any) -> int:
    """A gas limit: at least the intrinsic cost of any transaction."""
    gas_limit = parse_uint("gas", raw, MAX_GAS)
    if gas_limit < MIN_GAS:
        raise InvalidTransaction(
            f"gas must be at least {MIN_GAS} (the intrinsic cost of any transaction), "
            f"got {gas_limit}; raise the gas limit",
            field="gas",
        )
    return gas_limit


@dataclass(frozen=True)
class Fees:
    gas_price: int | None
    max_fee: int | None
    max_priority_fee: int | None

    @property
    def is_1559(self) -> bool:
        return self.max_fee is not None or self.max_priority_fee is not None


def parse_fees(gas_price: Any, max_fee: Any, max_priority_fee: Any) -> Fees:
    """Parse the fee fields and check the combinations that make sense for any type."""
    fees = Fees(
        gas_price=parse_optional_uint("gas_price", gas_price),
        max_fee=parse_optional_uint("max_fee_per_gas", max_fee),
        max_priority_fee=parse_optional_uint("max_priority_fee_per_gas", max_priority_fee),
    )
    if fees.is_1559 and fees.gas_price is not None:
        raise InvalidTransaction(
            "gas_price cannot be combined with max_fee_per_gas/max_priority_fee_per_gas: "
            "use gas_price for type 0/1 transactions, or the two max fees for type 2",
            field="gas_price",
        )
    if fees.is_1559 and (fees.max_fee is None or fees.max_priority_fee is None):
        missing = "max_fee_per_gas" if fees.max_fee is None else "max_priority_fee_per_gas"
        raise InvalidTransaction(
            f"{missing} is missing: a type 2 (EIP-1559) transaction needs both "
            "max_fee_per_gas and max_priority_fee_per_gas",
            field=missing,
        )
    if (
        fees.max_fee is not None
        and fees.max_priority_fee is not None
        and fees.max_priority_fee > fees.max_fee
    ):
        raise InvalidTransaction(
            f"max_priority_fee_per_gas ({fees.max_priority_fee}) is greater than "
            f"max_fee_per_gas ({fees.max_fee}); nodes reject this: lower the priority fee "
            "or raise the max fee",
            field="max_priority_fee_per_gas",
        )
    if not fees.is_1559 and fees.gas_price is None:
        raise InvalidTransaction(
            "no fee given: pass max_fee_per_gas and max_priority_fee_per_gas (type 2, "
            "EIP-1559), or gas_price (type 0/1)",
            field="max_fee_per_gas",
        )
    return fees


def resolve_tx_type(
    tx_type: Any, fees: Fees, access_list: tuple[tuple[str, tuple[bytes, ...]], ...] | None
) -> int:
    """Pick the transaction type, or check the requested one against the fields given.

    Inference follows eth-account/web3: max fees mean type 2; a gas price with an access
    list (even an empty one) means type 1; a bare gas price means type 0.
    """
    if tx_type is None:
        if fees.is_1559:
            return 2
        return 0 if access_list is None else 1
    kind = parse_uint("tx_type", tx_type, MAX_UINT256)
    if kind not in SUPPORTED_TX_TYPES:
        raise InvalidTransaction(
            f"transaction type {kind} is not supported; use 0 (legacy), 1 (EIP-2930) "
            "or 2 (EIP-1559)",
            field="tx_type",
        )
    if kind == 2 and not fees.is_1559:
        raise InvalidTransaction(
            "gas_price is not used by type 2 (EIP-1559) transactions: pass max_fee_per_gas "
            "and max_priority_fee_per_gas instead",
            field="gas_price",
        )
    if kind in (0, 1) and fees.is_1559:
        raise InvalidTransaction(
            f"max_fee_per_gas/max_priority_fee_per_gas are not used by type {kind} "
            "transactions: pass gas_price instead, or ask for type 2",
            field="max_fee_per_gas",
        )
    if kind == 0 and access_list:
        raise InvalidTransaction(
            "type 0 (legacy) transactions cannot carry an access list: ask for type 1 "
            "(or type 2 with max fees), or drop the access list",
            field="access_list",
        )
    return kind


# --------------------------------------------------------------------------- field parsers


def parse_uint(field: str, raw: Any, maximum: int) -> int:
    """Parse a non-negative integer from an int, a decimal string or a 0x hex string.

    Floats, scientific notation, signs, underscores and bools are refused: each of them
    has turned a fee or a value into something other than the operator meant.
    """
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise InvalidTransaction(
            f"{field} must be a whole number (int, decimal string or 0x hex string), "
            f"got {type(raw).__name__} {raw!r}",
            field=field,
        )
    value = raw if isinstance(raw, int) else _parse_int_text(field, raw)
    if value < 0:
        raise InvalidTransaction(
            f"{field} must not be negative, got {show_int(value)}", field=field
        )
    if value > maximum:
        raise InvalidTransaction(
            f"{field} is too large: {show_int(value)} exceeds the maximum {maximum}",
            field=field,
        )
    return value


def show_int(value: int) -> str:
    """``value`` for a message; a huge one (0x hex has no digit limit) by its size, because
    str() refuses ints past CPython's 4300-digit conversion limit."""
    bits = abs(value).bit_length()
    return str(value) if bits <= 1024 else f"a {bits}-bit number"


def _parse_int_text(field: str, text: str) -> int:
    if _DECIMAL.fullmatch(text):
        try:
            return int(text, 10)
        except ValueError:  # past CPython's int <-> str digit limit (4300 digits)
            raise InvalidTransaction(
                f"{field} is too large: {len(text)} decimal digits, far beyond any valid value",
                field=field,
            ) from None
    if _HEX_INT.fullmatch(text):
        return int(text, 16)
    if text.strip().startswith("-"):
        raise InvalidTransaction(f"{field} must not be negative, got {text!r}", field=field)
    raise InvalidTransaction(
        f"{field} must be a whole number in decimal digits or 0x hex (no sign, decimal "
        f"point, exponent or separators), got {text!r}; in wei, e.g. 1 ether = "
        "1000000000000000000",
        field=field,
    )


def parse_optional_uint(field: str, raw: Any) -> int | None:
    return None if raw is None else parse_uint(field, raw, MAX_UINT256)


def parse_address(field: str, raw: Any) -> str:
    """Return the EIP-55 checksum form of an address, refusing a checksum that does not match.

    A mismatching mixed-case address is refused without suggesting the "corrected" one: a
    checksum error usually means a mistyped character, i.e. a different address.
    """
    if not isinstance(raw, str):
        raise InvalidTransaction(
            f"{field} must be an address string 0x + 40 hex digits, got {type(raw).__name__}",
            field=field,
        )
    if not _HEX_ADDRESS.fullmatch(raw):
        raise InvalidTransaction(_address_shape_problem(field, raw), field=field)
    digits = raw[2:]
    checksummed = to_checksum_address(raw)
    if digits not in (digits.lower(), digits.upper()) and raw != checksummed:
        raise InvalidTransaction(
            f"{field} {raw} has a bad EIP-55 checksum: its upper/lower case letters do not "
            "match, which usually means a mistyped character; copy the address again from "
            "a trusted source",
            field=field,
        )
    return checksummed


def _address_shape_problem(field: str, raw: str) -> str:
    if not raw.startswith("0x"):
        return f"{field} {raw!r} must start with 0x followed by 40 hex digits"
    digits = raw[2:]
    if not all(c in "0123456789abcdefABCDEF" for c in digits):
        return f"{field} {raw!r} contains non-hex characters; an address is 0x + 40 hex digits"
    return (
        f"{field} {raw!r} has {len(digits)} hex digits, an address has 40; "
        "check that it was copied completely"
    )


def parse_to(raw: Any) -> str | None:
    """``None`` or ``""`` means contract creation; anything else must be an address."""
    if raw is None or raw == "":
        return None
    return parse_address("to", raw)


def parse_data(raw: Any) -> bytes:
    """Calldata as bytes, or as 0x-prefixed hex text with an even number of digits."""
    if isinstance(raw, bytes | bytearray | memoryview):
        return bytes(raw)
    if not isinstance(raw, str):
        raise InvalidTransaction(
            f"data must be 0x-prefixed hex text or bytes, got {type(raw).__name__}",
            field="data",
        )
    if raw == "":
        return b""
    if not raw.startswith(("0x", "0X")):
        raise InvalidTransaction(f"data must start with 0x, got {preview(raw)}", field="data")
    digits = raw[2:]
    if not _HEX_DIGITS.fullmatch(digits):
        raise InvalidTransaction(f"data contains non-hex characters: {preview(raw)}", field="data")
    if len(digits) % 2:
        raise InvalidTransaction(
            f"data has an odd number of hex digits ({len(digits)}); each byte is two "
            "digits: check that the data was copied completely",
            field="data",
        )
    return bytes.fromhex(digits)


def preview(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def parse_access_list(raw: Any) -> tuple[tuple[str, tuple[bytes, ...]], ...]:
    """Parse an EIP-2930 access list from JSON-RPC shaped data or its JSON text.

    Accepted entries: ``{"address": ..., "storageKeys": [...]}`` (the eth_ JSON-RPC shape)
    or ``(address, keys)`` pairs (the normalised form a :class:`TxIntent` holds).
    """
    if isinstance(raw, str):
        try:
            # depth-limited: eth_account raises the recursion limit, after which json.loads
            # on a deeply nested text overflows the C stack (SIGSEGV) instead of raising
            raw = loads_limited(raw.encode("utf-8", "surrogatepass"), _ACCESS_LIST_MAX_DEPTH)
        except ValueError as exc:
            raise InvalidTransaction(
                f"access_list is not valid JSON ({preview(str(exc), 120)}); expected a list "
                'like [{"address": "0x…", "storageKeys": ["0x…64 hex digits"]}]',
                field="access_list",
            ) from None
    if isinstance(raw, str | bytes | Mapping) or not isinstance(raw, Sequence):
        raise InvalidTransaction(
            "access_list must be a list of "
            '{"address": "0x…", "storageKeys": [...]} entries, '
            f"got {type(raw).__name__}",
            field="access_list",
        )
    return tuple(_parse_access_entry(i, entry) for i, entry in enumerate(raw))


def _parse_access_entry(index: int, entry: Any) -> tuple[str, tuple[bytes, ...]]:
    where = f"access_list[{index}]"
    if isinstance(entry, Mapping):
        if set(entry) != {"address", "storageKeys"}:
            raise InvalidTransaction(
                f"{where} must have exactly the keys 'address' and 'storageKeys', "
                f"got {sorted(map(str, entry))}",
                field="access_list",
            )
        address, keys = entry["address"], entry["storageKeys"]
    elif isinstance(entry, Sequence) and not isinstance(entry, str | bytes) and len(entry) == 2:
        address, keys = entry
    else:
        raise InvalidTransaction(
            f'{where} must be an object {{"address": ..., "storageKeys": [...]}}, '
            f"got {type(entry).__name__}",
            field="access_list",
        )
    if isinstance(keys, str | bytes) or not isinstance(keys, Sequence):
        raise InvalidTransaction(
            f"{where}.storageKeys must be a list of 32-byte hex keys", field="access_list"
        )
    parsed_keys = tuple(
        parse_storage_key(f"{where}.storageKeys[{j}]", key) for j, key in enumerate(keys)
    )
    return parse_address(f"{where}.address", address), parsed_keys


def parse_storage_key(field: str, raw: Any) -> bytes:
    """A storage slot is exactly 32 bytes; short forms like ``0x0`` are refused, not padded,
    because a padded key may not be the slot the author meant."""
    if isinstance(raw, bytes) and len(raw) == 32:
        return raw
    if isinstance(raw, str) and _HEX_BYTES32.fullmatch(raw):
        return bytes.fromhex(raw[2:])
    raise InvalidTransaction(
        f"{field} must be a 32-byte storage key: 0x followed by exactly 64 hex digits "
        f"(left-pad with zeros), got {preview(str(raw))}",
        field=field,
    )


# --------------------------------------------------------------------------- payloads
