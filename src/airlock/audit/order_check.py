"""Offline checks of a queued Bybit order in the audit log: its intent signature.

Pure (``cryptography`` only): the intent's canonical bytes must carry a valid ECDSA
P-256/SHA-256 signature by the key whose PEM the entry names. Auditors compare that key's
fingerprint (reported by ``audit verify``) with the operator's published intent key.
"""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from airlock.audit.canonical import CanonicalError, canonical


class OrderCheckError(ValueError):
    """A queued order's intent or its signature does not hold."""


def key_fingerprint(key: ec.EllipticCurvePublicKey) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo, hex, first 16 digits."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


def check_enqueued_order(data: dict[str, Any]) -> str:
    """Check a ``bybit_order`` or ``bybit_cancel`` item.enqueued entry; returns the intent
    key's fingerprint."""
    intent, signature, pem = (
        data.get("intent"),
        data.get("intent_signature"),
        data.get("intent_key_pem"),
    )
    if not isinstance(intent, dict) or not isinstance(signature, str) or not isinstance(pem, str):
        raise OrderCheckError("an order without its intent, intent signature or intent key")
    try:
        key = serialization.load_pem_public_key(pem.encode())
        der = bytes.fromhex(signature)
        message = canonical(intent)
    except (ValueError, TypeError, CanonicalError, UnsupportedAlgorithm) as exc:
        raise OrderCheckError(f"malformed intent, signature or key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise OrderCheckError("the intent key is not an ECDSA P-256 key")
    try:
        key.verify(der, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise OrderCheckError("the order intent's signature does not verify") from None
    return key_fingerprint(key)
