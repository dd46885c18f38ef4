"""Check a signed EVM transaction recorded in the audit log, with no HSM and no node.

The recorded hash must be keccak of the raw bytes, the signature must recover to the
declared sender, and the chain id and nonce inside the signed bytes must be those
declared; a cancel must be a 0-value transfer to the sender itself.
"""

from __future__ import annotations

from typing import Any

import rlp
from eth_account import Account
from eth_utils import keccak, to_checksum_address


class EvmCheckError(ValueError):
    """What is wrong with one recorded transaction."""


def decode_fields(raw: bytes) -> dict[str, Any]:
    """chain id, nonce, to and value from a signed transaction of type 0, 1 or 2."""
    try:
        if raw and raw[0] in (1, 2):
            fields = rlp.decode(raw[1:])
            to_at = 4 if raw[0] == 1 else 5
            chain_id = _uint(fields[0])
            nonce, to, value = fields[1], fields[to_at], fields[to_at + 1]
        else:
            fields = rlp.decode(raw)
            nonce, to, value = fields[0], fields[3], fields[4]
            v = _uint(fields[6])
            if v < 35:
                raise EvmCheckError("a legacy transaction without EIP-155 replay protection")
            chain_id = (v - 35) // 2
        return {
            "chain_id": chain_id,
            "nonce": _uint(nonce),
            "to": to_checksum_address(to) if to else None,
            "value": _uint(value),
        }
    except EvmCheckError:
        raise
    except (rlp.exceptions.DecodingError, IndexError, TypeError, ValueError):
        raise EvmCheckError("the raw bytes are not a signed transaction") from None


def _uint(value: Any) -> int:
    if not isinstance(value, bytes):
        raise TypeError("not a byte string")
    return int.from_bytes(value, "big")


def check_enqueued_evm(data: dict[str, Any]) -> str:
    """Check every variant of an ``item.enqueued`` entry; returns the sender."""
    sender = data.get("account")
    variants = data.get("variants")
    if not isinstance(sender, str) or not isinstance(variants, list) or not variants:
        raise EvmCheckError("an EVM item without an account or variants")
    for variant in variants:
        if not isinstance(variant, dict):
            raise EvmCheckError("a variant is not an object")
        label = f"variant {variant.get('idx')}"
        try:
            raw = bytes.fromhex(str(variant.get("raw", ""))[2:])
        except ValueError:
            raise EvmCheckError(f"{label}: raw is not hex") from None
        if "0x" + keccak(raw).hex() != variant.get("hash"):
            raise EvmCheckError(f"{label}: recorded hash is not the hash of its raw bytes")
        try:
            fields = decode_fields(raw)
        except EvmCheckError as exc:
            raise EvmCheckError(f"{label}: {exc}") from None
        try:
            recovered = Account.recover_transaction(raw)
        except Exception:  # eth-account raises many types for garbage input
            raise EvmCheckError(f"{label}: the signature does not recover") from None
        if recovered != sender:
            raise EvmCheckError(
                f"{label}: signed by {recovered}, not by the declared sender {sender}"
            )
        if fields["chain_id"] != data.get("chain_id") or fields["nonce"] != data.get("nonce"):
            raise EvmCheckError(
                f"{label}: signed for chain {fields['chain_id']} nonce {fields['nonce']}, "
                f"declared chain {data.get('chain_id')} nonce {data.get('nonce')}"
            )
        if variant.get("kind") == "cancel" and (fields["to"] != sender or fields["value"]):
            raise EvmCheckError(f"{label}: a cancel must be a 0-value transfer to the sender")
    return sender
