"""The key types airlock knows, apart from :mod:`airlock.hsm.keys` so that naming one (the
CLI's ``--type`` choices) does not load the PKCS#11 library."""

from __future__ import annotations

from enum import StrEnum


class KeyKind(StrEnum):
    """The key types airlock can generate or import, by their CLI names."""

    SECP256K1 = "secp256k1"
    P256 = "p256"
    RSA2048 = "rsa2048"
    RSA4096 = "rsa4096"
    AES256 = "aes256"
    HMAC = "hmac"
