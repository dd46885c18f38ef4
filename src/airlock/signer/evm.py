"""EVM transactions: from a validated intent to signed bytes, with the key in an HSM.

This module is a pure transformation. Its only contact with the outside world is
:meth:`EcdsaSigningKey.sign_digest`, so signing the same intent with the same key always
yields the same bytes (the HSM may pick a different ``k``, but never a different meaning).

The flow, as in ARCHITECTURE.md ("EVM specifics"):

1. :func:`make_intent` validates and normalises everything that came from outside, once.
2. :func:`signing_payload` / :func:`signing_digest` build what gets signed.
3. The HSM returns a raw ``r || s`` (``CKM_ECDSA``): no low-s, no recovery id.
4. :func:`normalise_low_s` applies EIP-2, :func:`recovery_id` finds the parity by
   recovering against the key's known public key (which also proves the signature valid).
5. :func:`sign_transaction` assembles the signed envelope as a :class:`SignedTx`.

Supported: type 0 (legacy, EIP-155 replay-protected only), type 1 (EIP-2930), type 2
(EIP-1559). Unprotected legacy transactions are never produced: they can be replayed on
every chain.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import rlp
from coincurve import PublicKey
from eth_utils import keccak, to_checksum_address

from airlock.errors import AirlockError, InvalidInput
from airlock.hsm.interface import EcdsaSigningKey
from airlock.relays.jsonbody import loads_limited

__all__ = [
    "MAX_CHAIN_ID",
    "MAX_GAS",
    "MAX_NONCE",
    "MAX_UINT256",
    "MIN_GAS",
    "SECP256K1_N",
    "InvalidTransaction",
    "SignatureError",
    "SignedTx",
    "TxIntent",
    "address_from_public_key",
    "make_intent",
    "normalise_low_s",
    "recovery_id",
    "sign_transaction",
    "signing_digest",
    "signing_payload",
]

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
"""Order of the secp256k1 group: valid r and s lie in [1, n-1]."""

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


class SignatureError(AirlockError):
    """Signing failed: unusable key, or the HSM returned a signature that does not check out.

    Never retry blindly on this: a signature that does not recover to the key's own public
    key means the wrong key, a token bug, or tampering, and must not be broadcast.
    """


# --------------------------------------------------------------------------- the intent


@dataclass(frozen=True)
class TxIntent:
    """A validated, normalised transaction, ready to sign.

    Build it with :func:`make_intent` only; that is where validation happens. Do not use
    ``dataclasses.replace`` to derive a new intent (for a fee bump, say): pass the changed
    fields back through :func:`make_intent`, which accepts every normalised value it emits.
    """

    tx_type: int
    chain_id: int
    nonce: int
    to: str | None
    value: int
    data: bytes
    gas: int
    gas_price: int | None
    max_fee_per_gas: int | None
    max_priority_fee_per_gas: int | None
    access_list: tuple[tuple[str, tuple[bytes, ...]], ...]

    @property
    def is_contract_creation(self) -> bool:
        """True when there is no recipient: the data is init code for a new contract."""
        return self.to is None


def make_intent(
    *,
    chain_id: Any,
    nonce: Any,
    to: Any,
    value: Any,
    gas: Any,
    data: Any = "0x",
    gas_price: Any = None,
    max_fee_per_gas: Any = None,
    max_priority_fee_per_gas: Any = None,
    tx_type: Any = None,
    access_list: Any = None,
) -> TxIntent:
    """Validate raw input (CLI strings, JSON, Python values) into a :class:`TxIntent`.

    This is the one boundary: everything after it trusts the intent. Integers may be ints,
    decimal strings or ``0x`` hex strings. Raises :class:`InvalidTransaction` naming the
    field that is wrong and what to do about it.
    """
    if chain_id is None:
        raise InvalidTransaction(
            "chain_id is required: airlock only signs replay-protected transactions "
            "(EIP-155); pass the id of the target chain, e.g. 1 for Ethereum mainnet",
            field="chain_id",
        )
    chain = _parse_uint("chain_id", chain_id, MAX_CHAIN_ID)
    if chain < 1:
        raise InvalidTransaction(
            "chain_id must be at least 1: chain id 0 gives no replay protection; "
            "pass the id of the target chain, e.g. 1 for Ethereum mainnet",
            field="chain_id",
        )
    recipient = _parse_to(to)
    payload = _parse_data(data)
    if recipient is None and not payload:
        raise InvalidTransaction(
            "no recipient ('to') and no data: that would create an empty contract and burn "
            "the value; give a 'to' address, or the contract init code as data",
            field="to",
        )
    gas_limit = _parse_uint("gas", gas, MAX_GAS)
    if gas_limit < MIN_GAS:
        raise InvalidTransaction(
            f"gas must be at least {MIN_GAS} (the intrinsic cost of any transaction), "
            f"got {gas_limit}; raise the gas limit",
            field="gas",
        )
    fees = _parse_fees(gas_price, max_fee_per_gas, max_priority_fee_per_gas)
    accesses = None if access_list is None else _parse_access_list(access_list)
    kind = _resolve_tx_type(tx_type, fees, accesses)
    return TxIntent(
        tx_type=kind,
        chain_id=chain,
        nonce=_parse_uint("nonce", nonce, MAX_NONCE),
        to=recipient,
        value=_parse_uint("value", value, MAX_UINT256),
        data=payload,
        gas=gas_limit,
        gas_price=fees.gas_price,
        max_fee_per_gas=fees.max_fee,
        max_priority_fee_per_gas=fees.max_priority_fee,
        access_list=accesses or (),
    )


@dataclass(frozen=True)
class _Fees:
    gas_price: int | None
    max_fee: int | None
    max_priority_fee: int | None

    @property
    def is_1559(self) -> bool:
        return self.max_fee is not None or self.max_priority_fee is not None


def _parse_fees(gas_price: Any, max_fee: Any, max_priority_fee: Any) -> _Fees:
    """Parse the fee fields and check the combinations that make sense for any type."""
    fees = _Fees(
        gas_price=_parse_optional_uint("gas_price", gas_price),
        max_fee=_parse_optional_uint("max_fee_per_gas", max_fee),
        max_priority_fee=_parse_optional_uint("max_priority_fee_per_gas", max_priority_fee),
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


def _resolve_tx_type(
    tx_type: Any, fees: _Fees, access_list: tuple[tuple[str, tuple[bytes, ...]], ...] | None
) -> int:
    """Pick the transaction type, or check the requested one against the fields given.

    Inference follows eth-account/web3: max fees mean type 2; a gas price with an access
    list (even an empty one) means type 1; a bare gas price means type 0.
    """
    if tx_type is None:
        if fees.is_1559:
            return 2
        return 0 if access_list is None else 1
    kind = _parse_uint("tx_type", tx_type, MAX_UINT256)
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


def _parse_uint(field: str, raw: Any, maximum: int) -> int:
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
            f"{field} must not be negative, got {_show_int(value)}", field=field
        )
    if value > maximum:
        raise InvalidTransaction(
            f"{field} is too large: {_show_int(value)} exceeds the maximum {maximum}",
            field=field,
        )
    return value


def _show_int(value: int) -> str:
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


def _parse_optional_uint(field: str, raw: Any) -> int | None:
    return None if raw is None else _parse_uint(field, raw, MAX_UINT256)


def _parse_address(field: str, raw: Any) -> str:
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


def _parse_to(raw: Any) -> str | None:
    """``None`` or ``""`` means contract creation; anything else must be an address."""
    if raw is None or raw == "":
        return None
    return _parse_address("to", raw)


def _parse_data(raw: Any) -> bytes:
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
        raise InvalidTransaction(f"data must start with 0x, got {_preview(raw)}", field="data")
    digits = raw[2:]
    if not _HEX_DIGITS.fullmatch(digits):
        raise InvalidTransaction(f"data contains non-hex characters: {_preview(raw)}", field="data")
    if len(digits) % 2:
        raise InvalidTransaction(
            f"data has an odd number of hex digits ({len(digits)}); each byte is two "
            "digits: check that the data was copied completely",
            field="data",
        )
    return bytes.fromhex(digits)


def _preview(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _parse_access_list(raw: Any) -> tuple[tuple[str, tuple[bytes, ...]], ...]:
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
                f"access_list is not valid JSON ({_preview(str(exc), 120)}); expected a list "
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
        _parse_storage_key(f"{where}.storageKeys[{j}]", key) for j, key in enumerate(keys)
    )
    return _parse_address(f"{where}.address", address), parsed_keys


def _parse_storage_key(field: str, raw: Any) -> bytes:
    """A storage slot is exactly 32 bytes; short forms like ``0x0`` are refused, not padded,
    because a padded key may not be the slot the author meant."""
    if isinstance(raw, bytes) and len(raw) == 32:
        return raw
    if isinstance(raw, str) and _HEX_BYTES32.fullmatch(raw):
        return bytes.fromhex(raw[2:])
    raise InvalidTransaction(
        f"{field} must be a 32-byte storage key: 0x followed by exactly 64 hex digits "
        f"(left-pad with zeros), got {_preview(str(raw))}",
        field=field,
    )


# --------------------------------------------------------------------------- payloads


def _rlp_to(intent: TxIntent) -> bytes:
    return b"" if intent.to is None else bytes.fromhex(intent.to[2:])


def _rlp_access_list(intent: TxIntent) -> list[list[Any]]:
    return [[bytes.fromhex(addr[2:]), list(keys)] for addr, keys in intent.access_list]


def _unsigned_fields(intent: TxIntent) -> list[Any]:
    """The transaction fields in wire order, without signature (and, for type 0, chain id)."""
    common = [intent.gas, _rlp_to(intent), intent.value, intent.data]
    if intent.tx_type == 0:
        return [intent.nonce, intent.gas_price, *common]
    if intent.tx_type == 1:
        return [intent.chain_id, intent.nonce, intent.gas_price, *common, _rlp_access_list(intent)]
    fees = [intent.max_priority_fee_per_gas, intent.max_fee_per_gas]
    return [intent.chain_id, intent.nonce, *fees, *common, _rlp_access_list(intent)]


def signing_payload(intent: TxIntent) -> bytes:
    """The exact bytes whose keccak256 is signed.

    Type 0: ``rlp([nonce, gasPrice, gas, to, value, data, chainId, 0, 0])`` (EIP-155).
    Types 1/2: ``type_byte || rlp(fields)`` (EIP-2718).
    """
    fields = _unsigned_fields(intent)
    if intent.tx_type == 0:
        return rlp.encode([*fields, intent.chain_id, 0, 0])
    return bytes([intent.tx_type]) + rlp.encode(fields)


def signing_digest(intent: TxIntent) -> bytes:
    """keccak256 of :func:`signing_payload`: the 32 bytes the HSM signs."""
    return keccak(signing_payload(intent))


def _signed_envelope(intent: TxIntent, v: int, r: int, s: int) -> bytes:
    fields = [*_unsigned_fields(intent), v, r, s]
    if intent.tx_type == 0:
        return rlp.encode(fields)
    return bytes([intent.tx_type]) + rlp.encode(fields)


# --------------------------------------------------------------------------- signatures


def normalise_low_s(r: int, s: int) -> tuple[int, int]:
    """Return the low-s twin of a signature (EIP-2): Ethereum rejects s > n/2.

    (r, s) and (r, n - s) are both valid ECDSA signatures; HSMs return either.
    Flipping s flips the recovery id, which is why the id is found afterwards.
    """
    if s > SECP256K1_N // 2:
        return r, SECP256K1_N - s
    return r, s


def _uncompressed_public_key(public_key: bytes) -> bytes:
    """Accept ``04 || X || Y`` (65 bytes) or bare ``X || Y`` (64) and return the 65-byte form."""
    if not isinstance(public_key, bytes | bytearray):
        raise SignatureError(f"public key must be bytes, got {type(public_key).__name__}")
    key = bytes(public_key)
    if len(key) == 64:
        key = b"\x04" + key
    if len(key) != 65 or key[0] != 4:
        raise SignatureError(
            f"public key must be 65 bytes 04||X||Y or 64 bytes X||Y, got {len(public_key)} "
            "bytes; is this a secp256k1 key exported in uncompressed form?"
        )
    try:
        PublicKey(key)
    except ValueError as exc:
        raise SignatureError(f"public key is not a point on secp256k1: {exc}") from None
    return key


@functools.lru_cache(maxsize=256)
def address_from_public_key(public_key: bytes) -> str:
    """The EIP-55 checksum address of a secp256k1 public key (last 20 bytes of keccak(X||Y))."""
    point = _uncompressed_public_key(public_key)
    return to_checksum_address(keccak(point[1:])[-20:])


def recovery_id(digest: bytes, r: int, s: int, public_key: bytes) -> int:
    """Find the recovery id (0 or 1) under which (r, s) recovers to ``public_key``.

    PKCS#11 ECDSA gives no recovery id, so both are tried. Success also proves the
    signature valid for this digest and key. Ids 2 and 3 (r >= n) have probability
    ~2**-128 and are not tried.
    """
    expected = _uncompressed_public_key(public_key)
    _check_scalar("r", r)
    _check_scalar("s", s)
    rs = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    for candidate in (0, 1):
        try:
            recovered = PublicKey.from_signature_and_message(
                rs + bytes([candidate]), digest, hasher=None
            )
        except ValueError:  # coincurve: "failed to recover ECDSA public key"
            continue
        if recovered.format(compressed=False) == expected:
            return candidate
    raise SignatureError(
        "the signature does not recover to the key's public key: the token signed with a "
        "different key than the one it reported, or returned a corrupt signature; "
        "do not broadcast, check the key label and the token"
    )


def _check_scalar(name: str, value: int) -> None:
    if not 1 <= value < SECP256K1_N:
        raise SignatureError(
            f"signature {name} is out of range [1, n-1]; the token returned an invalid "
            "signature, do not broadcast"
        )


def _check_curve(key: EcdsaSigningKey) -> None:
    """Refuse a non-secp256k1 key up front: a P-256 signature could never be recovered."""
    if key.curve != "secp256k1":
        raise SignatureError(
            f"key {key.label!r} is on curve {key.curve!r}, EVM transactions need a "
            "secp256k1 key; choose or generate a secp256k1 key"
        )


def _sign_raw(key: EcdsaSigningKey, digest: bytes) -> tuple[int, int]:
    """Ask the key for a raw r||s signature and parse it, checking length and range."""
    return _parse_signature(key, key.sign_digest(digest))


def _parse_signature(key: EcdsaSigningKey, signature: Any) -> tuple[int, int]:
    """Split a raw r||s signature into integers, checking length and range."""
    if not isinstance(signature, bytes | bytearray) or len(signature) != 64:
        size = len(signature) if isinstance(signature, bytes | bytearray) else "non-bytes"
        raise SignatureError(
            f"key {key.label!r} returned a {size}-byte signature, expected 64 bytes raw r||s "
            "(CKM_ECDSA output); DER-encoded signatures are not accepted"
        )
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    _check_scalar("r", r)
    _check_scalar("s", s)
    return r, s


# --------------------------------------------------------------------------- signed result


@dataclass(frozen=True)
class SignedTx:
    """A signed transaction, ready to broadcast as ``raw``; ``hash`` is its tx hash."""

    raw: bytes
    hash: bytes
    sender: str
    tx_type: int
    nonce: int
    chain_id: int
    v: int
    r: int
    s: int

    @property
    def raw_hex(self) -> str:
        """``raw`` as 0x-prefixed hex, the form eth_sendRawTransaction takes."""
        return "0x" + self.raw.hex()

    @property
    def hash_hex(self) -> str:
        """``hash`` as 0x-prefixed hex, the form explorers and eth_getTransactionReceipt use."""
        return "0x" + self.hash.hex()


def sign_transaction(intent: TxIntent, key: EcdsaSigningKey) -> SignedTx:
    """Sign ``intent`` with ``key`` and return the broadcastable transaction.

    The HSM's raw signature is normalised to low-s and its recovery id is found by
    recovering against the key's public key, so a signature from the wrong key (or a
    corrupted one) raises :class:`SignatureError` instead of producing a transaction that
    would be sent from some other address.
    """
    _check_curve(key)
    digest = signing_digest(intent)
    return _assemble(intent, digest, key.public_key, _sign_raw(key, digest))


SIGN_BATCH = 32  # digests per HSM job: amortises the hand-off, keeps results flowing


def sign_transactions(intents: Sequence[TxIntent], key: EcdsaSigningKey) -> list[SignedTx]:
    """Sign many intents with one key, keeping the HSM busy.

    A key that offers ``submit_digests`` (the HSM key does) gets every digest queued at
    once, in small batches; while the HSM signs the next batch, this thread normalises
    and recovers the previous one. Results are exactly those of :func:`sign_transaction`, in order.
    """
    _check_curve(key)
    digests = [signing_digest(intent) for intent in intents]
    submit = getattr(key, "submit_digests", None)
    if submit is None:
        return [sign_transaction(intent, key) for intent in intents]
    chunks = [
        (intents[i : i + SIGN_BATCH], digests[i : i + SIGN_BATCH])
        for i in range(0, len(intents), SIGN_BATCH)
    ]
    futures = [submit(chunk_digests) for _, chunk_digests in chunks]
    signed: list[SignedTx] = []
    for (chunk_intents, chunk_digests), future in zip(chunks, futures, strict=True):
        for intent, digest, signature in zip(
            chunk_intents, chunk_digests, future.result(), strict=True
        ):
            signed.append(
                _assemble(intent, digest, key.public_key, _parse_signature(key, signature))
            )
    return signed


def _assemble(
    intent: TxIntent, digest: bytes, public_key: bytes, signature: tuple[int, int]
) -> SignedTx:
    """Low-s, recovery id and the signed envelope, from a raw signature of ``digest``."""
    public_key = _uncompressed_public_key(public_key)
    r, s = normalise_low_s(*signature)
    parity = recovery_id(digest, r, s, public_key)
    v = parity + 35 + 2 * intent.chain_id if intent.tx_type == 0 else parity
    raw = _signed_envelope(intent, v, r, s)
    return SignedTx(
        raw=raw,
        hash=keccak(raw),
        sender=address_from_public_key(public_key),
        tx_type=intent.tx_type,
        nonce=intent.nonce,
        chain_id=intent.chain_id,
        v=v,
        r=r,
        s=s,
    )


def intent_as_json(intent: TxIntent) -> dict[str, Any]:
    """A JSON form of ``intent`` that :func:`make_intent` accepts back unchanged.

    Integers that can exceed 2^53 are decimal strings, so no JSON reader rounds them.
    """
    out: dict[str, Any] = {
        "type": intent.tx_type,
        "chain_id": intent.chain_id,
        "nonce": intent.nonce,
        "to": intent.to,
        "value": str(intent.value),
        "data": "0x" + intent.data.hex(),
        "gas": intent.gas,
    }
    if intent.gas_price is not None:
        out["gas_price"] = str(intent.gas_price)
    else:
        out["max_fee_per_gas"] = str(intent.max_fee_per_gas)
        out["max_priority_fee_per_gas"] = str(intent.max_priority_fee_per_gas)
    if intent.tx_type != 0:
        out["access_list"] = [
            {"address": address, "storageKeys": ["0x" + k.hex() for k in keys]}
            for address, keys in intent.access_list
        ]
    return out


def intent_from_json(data: dict[str, Any], **changes: Any) -> TxIntent:
    """Rebuild an intent from :func:`intent_as_json` output, optionally changing fields."""
    fields = {
        "tx_type": data["type"],
        "chain_id": data["chain_id"],
        "nonce": data["nonce"],
        "to": data["to"],
        "value": data["value"],
        "data": data["data"],
        "gas": data["gas"],
        "gas_price": data.get("gas_price"),
        "max_fee_per_gas": data.get("max_fee_per_gas"),
        "max_priority_fee_per_gas": data.get("max_priority_fee_per_gas"),
        "access_list": data.get("access_list"),
    }
    fields.update(changes)
    return make_intent(**fields)
