"""Signing checkpoints with the HSM's audit key: the one part of the audit room that needs
the HSM. Everything an auditor runs (verify, verify-inclusion) needs only a public key."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from airlock.audit.checkpoint import make_note
from airlock.hsm import errors as hsm_errors
from airlock.hsm.keyring import HsmEcdsaKey, KeyRing
from airlock.hsm.kinds import KeyKind
from airlock.queue.journal import CheckpointRecord
from airlock.queue.store import Store

DEFAULT_AUDIT_KEY = "airlock-audit"


class AuditKey:
    """The P-256 key in the HSM that signs checkpoints; created the first time it is needed."""

    def __init__(self, keyring: KeyRing, label: str = DEFAULT_AUDIT_KEY) -> None:
        try:
            keyring.info(label)
        except hsm_errors.KeyNotFound:
            keyring.generate(KeyKind.P256, label)
        self._key: HsmEcdsaKey = keyring.ecdsa_key(label, curve=KeyKind.P256)
        self.label = label
        self.public_key = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), self._key.public_key
        )
        self.pem = keyring.public_key_pem(label)

    def sign_der(self, message: bytes) -> bytes:
        """ECDSA P-256 over SHA-256(message), DER-encoded, computed inside the HSM."""
        raw = self._key.sign_digest(hashlib.sha256(message).digest())
        return encode_dss_signature(
            int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
        )


def checkpoint(store: Store, key: AuditKey) -> CheckpointRecord:
    """Sign the log as it is now (or return the last checkpoint if nothing was added)."""
    return store.audit.sign_checkpoint(
        lambda origin, size, root: make_note(origin, size, root, key.public_key, key.sign_der)
    )


def checkpoint_if_due(
    store: Store, key: AuditKey, max_entries: int = 1000, max_age_ms: int = 60_000
) -> CheckpointRecord | None:
    """Sign when ``max_entries`` entries or ``max_age_ms`` have passed since the last one."""
    size = store.audit.size()
    done = store.audit.checkpoints()
    if size == 0 or (done and done[-1].size == size):
        return None
    if (
        done
        and size - done[-1].size < max_entries
        and (store.now_ms() - done[-1].created_ms < max_age_ms)
    ):
        return None
    return checkpoint(store, key)
