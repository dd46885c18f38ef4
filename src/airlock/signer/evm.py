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
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import rlp
from coincurve import PublicKey
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from airlock.errors import AirlockError
from airlock.hsm.interface import EcdsaSigningKey
from airlock.signer.evm_fields import (
    MAX_CHAIN_ID,
    MAX_GAS,
    MAX_NONCE,
    MAX_UINT256,
    MIN_GAS,
    InvalidTransaction,
    parse_access_list,
    parse_chain_id,
    parse_data,
    parse_fees,
    parse_gas,
    parse_to,
    parse_uint,
    resolve_tx_type,
)

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


def with_nonce(intent: TxIntent, nonce: int) -> TxIntent:
    """``intent`` at ``nonce``: the one field the queue fills in after validation (the
    nonce it allocated), checked like any other nonce, without a second full parse."""
    return replace(intent, nonce=parse_uint("nonce", nonce, MAX_NONCE))


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
    chain = parse_chain_id(chain_id)
    recipient = parse_to(to)
    payload = parse_data(data)
    if recipient is None and not payload:
        raise InvalidTransaction(
            "no recipient ('to') and no data: that would create an empty contract and burn "
            "the value; give a 'to' address, or the contract init code as data",
            field="to",
        )
    gas_limit = parse_gas(gas)
    fees = parse_fees(gas_price, max_fee_per_gas, max_priority_fee_per_gas)
    accesses = None if access_list is None else parse_access_list(access_list)
    kind = resolve_tx_type(tx_type, fees, accesses)
    return TxIntent(
        tx_type=kind,
        chain_id=chain,
        nonce=parse_uint("nonce", nonce, MAX_NONCE),
        to=recipient,
        value=parse_uint("value", value, MAX_UINT256),
        data=payload,
        gas=gas_limit,
        gas_price=fees.gas_price,
        max_fee_per_gas=fees.max_fee,
        max_priority_fee_per_gas=fees.max_priority_fee,
        access_list=accesses or (),
    )


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
        return _rlp([*fields, intent.chain_id, 0, 0])
    return bytes([intent.tx_type]) + _rlp(fields)


def signing_digest(intent: TxIntent) -> bytes:
    """keccak256 of :func:`signing_payload`: the 32 bytes the HSM signs."""
    return keccak(signing_payload(intent))


def _signed_envelope(intent: TxIntent, v: int, r: int, s: int) -> bytes:
    fields = [*_unsigned_fields(intent), v, r, s]
    if intent.tx_type == 0:
        return _rlp(fields)
    return bytes([intent.tx_type]) + _rlp(fields)


def _rlp(fields: list[Any]) -> bytes:
    """``rlp.encode``, typed: pyrlp ships no annotations, so its result is ``Any``."""
    encoded: bytes = rlp.encode(fields)
    return encoded


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
