"""The key-encryption key: an AES-256 key inside the HSM that wraps the queue's data keys.

The KEK is created the first time a data key must be wrapped (a fresh queue). Reading
never creates it: if the data keys exist and the KEK does not, that is an error to fix,
not a reason to make a new key that could never unwrap them.
"""

from __future__ import annotations

from airlock.hsm import errors as hsm_errors
from airlock.hsm.keyring import KeyRing
from airlock.hsm.kinds import KeyKind
from airlock.queue.errors import KekError

DEFAULT_KEK_LABEL = "airlock-kek"


class HsmKek:
    """AES-GCM with a non-extractable HSM key; satisfies :class:`airlock.queue.envelope.Kek`."""

    def __init__(self, keyring: KeyRing, label: str = DEFAULT_KEK_LABEL) -> None:
        self._keyring = keyring
        self.label = label
        self._checked = False

    def _ensure(self, *, create: bool) -> None:
        if self._checked:
            return
        try:
            info = self._keyring.info(self.label)
        except hsm_errors.KeyNotFound:
            if not create:
                raise KekError(
                    f"key-encryption key {self.label!r} is not on the token: the queue's data "
                    "keys were wrapped by it and cannot be read without it. Point [hsm] at the "
                    "token that holds it (or [queue] kek_label at its label). Nothing was "
                    "changed."
                ) from None
            info = self._keyring.generate(KeyKind.AES256, self.label)
        if info.kind is not KeyKind.AES256:
            raise KekError(
                f"key {self.label!r} is {info.kind}, not an AES-256 key-encryption key; "
                "set [queue] kek_label to another label"
            )
        self._checked = True

    def wrap(self, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        self._ensure(create=True)
        return self._keyring.aes_gcm_encrypt(self.label, nonce, plaintext, aad)

    def unwrap(self, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        self._ensure(create=False)
        try:
            return self._keyring.aes_gcm_decrypt(self.label, nonce, ciphertext, aad)
        except hsm_errors.HsmOperationError as exc:
            raise KekError(
                f"key-encryption key {self.label!r} cannot unwrap the queue's data keys: it is "
                "not the key they were wrapped with (same label, different key?) or a wrapped "
                f"key was altered. Nothing was changed. ({exc})"
            ) from exc
