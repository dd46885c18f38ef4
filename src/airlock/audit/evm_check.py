"""Check a signed EVM transaction recorded in the audit log, with no HSM and no node.

The rules are docs/audit-format.md §1.4: a variant has exactly the specified members; the
recorded hash is keccak of the raw bytes; the bytes are a type 0 (EIP-155), 1 or 2
transaction in canonical RLP (what nodes accept); its low-s signature recovers to the
declared sender; chain id, nonce and fees inside the signed bytes are those recorded
beside them; a cancel is an empty-data, 0-value transfer to the sender itself (on an
EIP-7702 account a self-call with data runs code, so it would not be a cancel).

Each transaction is RLP-decoded once; the signing payload is rebuilt from the decoded
fields and the public key recovered with libsecp256k1 (coincurve): about five times
faster than going through eth-account's transaction objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import coincurve
import rlp
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from airlock.audit.errors import AuditError
from airlock.encoding.canonical import MAX_SAFE_INTEGER

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
STEP, CANCEL = "step", "cancel"
VARIANT_MEMBERS = frozenset({"idx", "kind", "hash", "raw", "fee_per_gas", "tip_per_gas"})
_LOWER_HEX = re.compile(r"0x(?:[0-9a-f]{2})+")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,77}")  # 78 digits hold any uint256
# The RLP fields of each transaction type, by their EIP names; all but three are integers.
_FIELDS = {
    2: (
        "chainId",
        "nonce",
        "maxPriorityFeePerGas",
        "maxFeePerGas",
        "gasLimit",
        "to",
        "value",
        "data",
        "accessList",
        "yParity",
        "r",
        "s",
    ),
    1: (
        "chainId",
        "nonce",
        "gasPrice",
        "gasLimit",
        "to",
        "value",
        "data",
        "accessList",
        "yParity",
        "r",
        "s",
    ),
    0: ("nonce", "gasPrice", "gasLimit", "to", "value", "data", "v", "r", "s"),
}
_NOT_INTEGERS = frozenset({"to", "data", "accessList"})


class EvmCheckError(AuditError, ValueError):
    """What is wrong with one recorded transaction."""


@dataclass(frozen=True)
class Declared:
    """What an EVM item declared when queued: every variant of it is held to this."""

    account: str
    sender: bytes
    chain_id: int
    nonce: int


@dataclass(frozen=True)
class SignedTx:
    """The fields of a signed transaction the audit rules look at, and its signature."""

    tx_type: int
    chain_id: int
    nonce: int
    to: bytes
    value: int
    data: bytes
    fee_per_gas: int  # maxFeePerGas (type 2) or gasPrice (types 0 and 1)
    tip_per_gas: int | None  # maxPriorityFeePerGas (type 2) or None
    payload: bytes  # what the signature covers, before keccak
    y: int
    r: int
    s: int


# ------------------------------------------------------------------------------- decoding


def decode(raw: bytes) -> SignedTx:
    """A signed transaction of type 0, 1 or 2 in canonical RLP, or :class:`EvmCheckError`."""
    tx_type, body = _envelope(raw)
    items = _rlp_list(body)
    names = _FIELDS[tx_type]
    if len(items) != len(names):
        raise EvmCheckError(
            f"the raw bytes are not a signed transaction: {len(items)} fields, a type "
            f"{tx_type} transaction has {len(names)}"
        )
    fields = dict(zip(names, items, strict=True))
    ints = {name: _uint(name, value) for name, value in fields.items() if name not in _NOT_INTEGERS}
    to, data = _to(fields["to"]), _bytes("data", fields["data"])
    if tx_type == 0:
        chain_id, y = _eip155(ints["v"])
        payload = rlp.encode([*items[:6], chain_id, 0, 0])
    else:
        _access_list(fields["accessList"])
        chain_id, y = ints["chainId"], ints["yParity"]
        if y > 1:
            raise EvmCheckError(f"yParity is {y}, not 0 or 1: the signature does not recover")
        payload = raw[:1] + rlp.encode(items[:-3])
    fee = ints["maxFeePerGas"] if tx_type == 2 else ints["gasPrice"]
    return SignedTx(
        tx_type=tx_type,
        chain_id=chain_id,
        nonce=ints["nonce"],
        to=to,
        value=ints["value"],
        data=data,
        fee_per_gas=fee,
        tip_per_gas=ints["maxPriorityFeePerGas"] if tx_type == 2 else None,
        payload=payload,
        y=y,
        r=ints["r"],
        s=ints["s"],
    )


def _envelope(raw: bytes) -> tuple[int, bytes]:
    """The EIP-2718 type and the RLP body: a leading 0x01/0x02, or a legacy RLP list."""
    if not raw:
        raise EvmCheckError("the raw bytes are not a signed transaction: they are empty")
    if raw[0] in (1, 2):
        return raw[0], raw[1:]
    if raw[0] >= 0xC0:
        return 0, raw
    if raw[0] <= 0x7F:
        raise EvmCheckError(f"transaction type {raw[0]} is not accepted (types 0, 1 and 2 are)")
    raise EvmCheckError("the raw bytes are not a signed transaction")


def _rlp_list(body: bytes) -> list[Any]:
    try:
        items = rlp.decode(body, strict=True)
    except rlp.exceptions.DecodingError as exc:
        raise EvmCheckError(f"the raw bytes are not a signed transaction: {exc}") from None
    if not isinstance(items, list):
        raise EvmCheckError("the raw bytes are not a signed transaction: not an RLP list")
    if rlp.encode(items) != body:
        raise EvmCheckError("the raw bytes are not canonical RLP (nodes refuse them)")
    return items


def _uint(name: str, value: Any) -> int:
    """An RLP integer: a byte string without leading zeros (zero is empty), <= 32 bytes."""
    raw = _bytes(name, value)
    if raw[:1] == b"\x00":
        raise EvmCheckError(
            f"{name} has a leading zero byte: the raw bytes are not canonical RLP (nodes "
            "refuse them)"
        )
    if len(raw) > 32:
        raise EvmCheckError(f"the raw bytes are not a signed transaction: {name} is over 256 bits")
    return int.from_bytes(raw, "big")


def _bytes(name: str, value: Any) -> bytes:
    if not isinstance(value, bytes):
        raise EvmCheckError(f"the raw bytes are not a signed transaction: {name} is a list")
    return value


def _to(value: Any) -> bytes:
    to = _bytes("to", value)
    if len(to) not in (0, 20):
        raise EvmCheckError(
            f"the raw bytes are not a signed transaction: to is {len(to)} bytes, not 20"
        )
    return to


def _access_list(value: Any) -> None:
    """``[[address (20 bytes), [storage key (32 bytes), ...]], ...]`` (EIP-2930)."""
    ok = isinstance(value, list) and all(
        isinstance(entry, list)
        and len(entry) == 2
        and isinstance(entry[0], bytes)
        and len(entry[0]) == 20
        and isinstance(entry[1], list)
        and all(isinstance(key, bytes) and len(key) == 32 for key in entry[1])
        for entry in value
    )
    if not ok:
        raise EvmCheckError("the raw bytes are not a signed transaction: a malformed access list")


def _eip155(v: int) -> tuple[int, int]:
    """Chain id and y parity from a legacy ``v`` (EIP-155: ``35 + 2 * chainId + y``)."""
    if v < 35:
        raise EvmCheckError("a legacy transaction without EIP-155 replay protection")
    return (v - 35) // 2, (v - 35) % 2


def recover_address(tx: SignedTx) -> bytes:
    """The 20-byte address that signed ``tx``; the signature must be low-s (EIP-2: nodes
    refuse the other half, and airlock normalises every signature it makes)."""
    if tx.y not in (0, 1) or not 0 < tx.r < SECP256K1_N or not 0 < tx.s < SECP256K1_N:
        raise EvmCheckError("y, r or s out of range: the signature does not recover")
    if tx.s > SECP256K1_N // 2:
        raise EvmCheckError("a high-s signature: nodes refuse it (EIP-2)")
    signature = tx.r.to_bytes(32, "big") + tx.s.to_bytes(32, "big") + bytes([tx.y])
    try:
        point = coincurve.PublicKey.from_signature_and_message(
            signature, keccak(tx.payload), hasher=None
        )
    except ValueError:
        raise EvmCheckError("the signature does not recover") from None
    return keccak(point.format(compressed=False)[1:])[-20:]


# ------------------------------------------------------------------------------- the entry


def declared_of(data: dict[str, Any]) -> Declared:
    """The sender, chain id and nonce an ``item.enqueued`` entry of an EVM item declares."""
    sender = data.get("account")
    if not isinstance(sender, str):
        raise EvmCheckError("an EVM item without an account or variants")
    try:
        if to_checksum_address(sender) != sender:
            raise ValueError
    except ValueError:
        raise EvmCheckError(f"declared sender {sender!r} is not a checksum address") from None
    return Declared(
        account=sender,
        sender=bytes.fromhex(sender[2:]),
        chain_id=quantity(data.get("chain_id"), "chain_id", minimum=1),
        nonce=quantity(data.get("nonce"), "nonce", minimum=0),
    )


def quantity(value: Any, name: str, *, minimum: int) -> int:
    """An integer member that may be large: a JSON integer up to 2^53 - 1, its decimal
    string above (§1.1). Each value has exactly one form, so the other form is refused."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
        return value
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        number = int(value)
        if number > MAX_SAFE_INTEGER:
            return number
        raise EvmCheckError(
            f"{name} is the string {value!r}: values up to 2^53 - 1 are JSON integers"
        )
    raise EvmCheckError(
        f"{name} {value!r} is not an integer >= {minimum} (a JSON integer, or a decimal "
        "string above 2^53 - 1)"
    )


def check_enqueued_evm(data: dict[str, Any]) -> str:
    """Check every variant of an ``item.enqueued`` entry; returns the sender."""
    return check_enqueued(data).account


def check_enqueued(data: dict[str, Any]) -> Declared:
    """Check an EVM ``item.enqueued`` entry; returns what it declared, which the item's
    later ``item.variant_added`` entries are held to."""
    variants = data.get("variants")
    if not isinstance(data.get("account"), str) or not isinstance(variants, list) or not variants:
        raise EvmCheckError("an EVM item without an account or variants")
    declared = declared_of(data)
    for idx, variant in enumerate(variants):
        label = f"variant {idx}"
        check_variant(variant, declared, idx, label=label)
        kind = variant["kind"]
        if (idx == 0 and kind != STEP) or (kind == CANCEL and idx != len(variants) - 1):
            raise EvmCheckError(
                f"{label}: the variants are one or more steps, then at most one cancel"
            )
    return declared


def check_added_variant(variant: Any, declared: Declared | None, idx: int | None) -> bytes:
    """Check an ``item.variant_added`` entry's variant: a step, at the item's next index,
    held to the item's declaration when the export holds it. Returns the signer."""
    label = f"variant {idx}" if idx is not None else "the added variant"
    _check_members(variant, idx, label)
    if variant["kind"] != STEP:
        raise EvmCheckError(
            f"{label}: an added variant is a step (an item's cancel is signed when it is queued)"
        )
    return check_variant(variant, declared, idx, label=label)


def check_variant(variant: Any, declared: Declared | None, idx: int | None, *, label: str) -> bytes:
    """One variant's own rules, and the declaration's when given. Returns the signer."""
    _check_members(variant, idx, label)
    raw = _raw(variant["raw"], label)
    expected = "0x" + keccak(raw).hex()
    if variant["hash"] != expected:
        raise EvmCheckError(f"{label}: recorded hash is not the hash of its raw bytes")
    try:
        tx = decode(raw)
        signer = recover_address(tx)
    except EvmCheckError as exc:
        raise EvmCheckError(f"{label}: {exc}") from None
    if declared is not None:
        _check_declared(tx, signer, declared, variant["kind"], label)
    _check_fees(variant, tx, label)
    return signer


def _check_members(variant: Any, idx: int | None, label: str) -> None:
    if not isinstance(variant, dict):
        raise EvmCheckError(f"{label}: a variant is not an object")
    if variant.keys() != VARIANT_MEMBERS:
        members = ", ".join(sorted(VARIANT_MEMBERS))
        raise EvmCheckError(f"{label}: members {', '.join(sorted(variant))}, not {members}")
    found = variant["idx"]
    if not isinstance(found, int) or isinstance(found, bool) or (idx is not None and found != idx):
        want = "an integer" if idx is None else str(idx)
        raise EvmCheckError(f"{label}: idx is {found!r}, not {want} (its place among the item's)")
    if variant["kind"] not in (STEP, CANCEL):
        raise EvmCheckError(f"{label}: kind {variant['kind']!r} is not 'step' or 'cancel'")


def _raw(value: Any, label: str) -> bytes:
    try:
        if not isinstance(value, str) or not value.startswith("0x"):
            raise ValueError
        raw = bytes.fromhex(value[2:])
    except ValueError:
        raise EvmCheckError(f"{label}: raw is not hex") from None
    if not _LOWER_HEX.fullmatch(value):
        raise EvmCheckError(f"{label}: raw is not 0x and lower-case hex digits")
    return raw


def _check_declared(tx: SignedTx, signer: bytes, declared: Declared, kind: str, label: str) -> None:
    if signer != declared.sender:
        raise EvmCheckError(
            f"{label}: signed by {to_checksum_address(signer)}, not by the declared "
            f"sender {declared.account}"
        )
    if tx.chain_id != declared.chain_id or tx.nonce != declared.nonce:
        raise EvmCheckError(
            f"{label}: signed for chain {tx.chain_id} nonce {tx.nonce}, "
            f"declared chain {declared.chain_id} nonce {declared.nonce}"
        )
    if kind == CANCEL and (tx.to != declared.sender or tx.value):
        raise EvmCheckError(f"{label}: a cancel must be a 0-value transfer to the sender")
    if kind == CANCEL and tx.data:
        raise EvmCheckError(
            f"{label}: a cancel must carry no call data (on an EIP-7702 account a self-call "
            "runs code)"
        )


def _check_fees(variant: dict[str, Any], tx: SignedTx, label: str) -> None:
    """The recorded fee levels are the signed ones: what the broadcaster's bump rules and
    an auditor's fee report read must be what the chain would charge."""
    signed_fee = "maxFeePerGas" if tx.tx_type == 2 else "gasPrice"
    if _decimal(variant["fee_per_gas"]) != tx.fee_per_gas:
        raise EvmCheckError(
            f"{label}: fee_per_gas {variant['fee_per_gas']!r} is not the signed "
            f"{signed_fee} {tx.fee_per_gas}"
        )
    tip = variant["tip_per_gas"]
    if tx.tip_per_gas is None and tip is not None:
        raise EvmCheckError(
            f"{label}: tip_per_gas {tip!r} must be null for a type {tx.tx_type} transaction"
        )
    if tx.tip_per_gas is not None and _decimal(tip) != tx.tip_per_gas:
        raise EvmCheckError(
            f"{label}: tip_per_gas {tip!r} is not the signed maxPriorityFeePerGas {tx.tip_per_gas}"
        )


def _decimal(value: Any) -> int | None:
    """A wei amount: a decimal string without sign or leading zeros; None otherwise."""
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        return int(value)
    return None
