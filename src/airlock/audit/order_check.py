"""Offline checks of a queued Bybit order or cancel in the audit log: its signed intent.

Pure (``cryptography`` only), docs/audit-format.md §1.4: the intent has exactly the
members of its type, its ``type`` is the one the item's kind names (an order item cannot
carry a cancel intent, nor the reverse), and its canonical bytes carry a valid ECDSA
P-256/SHA-256 signature by the key whose PEM the entry names. Auditors compare that key's
fingerprint (reported by ``audit verify``) with the operator's published intent key.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from airlock.audit.errors import AuditError
from airlock.encoding.canonical import CanonicalError, canonical

INTENT_VERSION = 1
# item kind -> (the intent type it carries, that intent's members)
INTENTS = {
    "bybit_order": (
        "bybit.order",
        frozenset(
            {
                "v",
                "type",
                "category",
                "symbol",
                "side",
                "orderType",
                "qty",
                "price",
                "timeInForce",
                "reduceOnly",
                "orderLinkId",
            }
        ),
    ),
    "bybit_cancel": ("bybit.cancel", frozenset({"v", "type", "category", "symbol", "orderLinkId"})),
}
_LOWER_HEX = re.compile(r"(?:[0-9a-f]{2})+")


class OrderCheckError(AuditError, ValueError):
    """A queued order's intent or its signature does not hold."""


def key_fingerprint(key: ec.EllipticCurvePublicKey) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo, hex, first 16 digits."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


def check_enqueued_order(data: dict[str, Any]) -> str:
    """Check a ``bybit_order`` or ``bybit_cancel`` item.enqueued entry; returns the intent
    key's fingerprint.

    An entry's ``kind`` decides the intent type. A stored payload (the queue's copy, which
    holds no ``kind``) is checked against the type its intent names."""
    intent, signature, pem = (
        data.get("intent"),
        data.get("intent_signature"),
        data.get("intent_key_pem"),
    )
    if not isinstance(intent, dict) or not isinstance(signature, str) or not isinstance(pem, str):
        raise OrderCheckError("an order without its intent, intent signature or intent key")
    _check_intent(data.get("kind"), intent)
    if not _LOWER_HEX.fullmatch(signature):
        raise OrderCheckError("the intent signature is not lower-case hex")
    try:
        key = serialization.load_pem_public_key(pem.encode())
        message = canonical(intent)
    except (ValueError, TypeError, CanonicalError, UnsupportedAlgorithm) as exc:
        raise OrderCheckError(f"malformed intent, signature or key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise OrderCheckError("the intent key is not an ECDSA P-256 key")
    try:
        key.verify(bytes.fromhex(signature), message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise OrderCheckError("the order intent's signature does not verify") from None
    return key_fingerprint(key)


def _check_intent(kind: Any, intent: dict[str, Any]) -> None:
    """The intent's version, its type tied to the item's kind, and its exact members."""
    if kind is None:
        kind = next((k for k, (t, _) in INTENTS.items() if t == intent.get("type")), None)
    if kind not in INTENTS:
        raise OrderCheckError(f"item kind {kind!r} carries no order intent")
    intent_type, members = INTENTS[kind]
    if intent.get("type") != intent_type:
        raise OrderCheckError(
            f"a {kind} item carries a {intent.get('type')!r} intent, not a {intent_type!r} one"
        )
    if intent.get("v") != INTENT_VERSION or isinstance(intent.get("v"), bool):
        raise OrderCheckError(f"unknown {intent_type} intent version {intent.get('v')!r}")
    if intent.keys() != members:
        raise OrderCheckError(
            f"the {intent_type} intent has members {', '.join(sorted(intent))}, not "
            f"{', '.join(sorted(members))}"
        )
