"""EIP-191 ``personal_sign`` with a secp256k1 key held in an HSM.

Flashbots-style relays authenticate each request with ``X-Flashbots-Signature``: an EIP-191
personal signature of the ASCII text ``0x`` + lowercase hex keccak256 of the exact request
body (forgetting the ``0x`` is a known failure). The relay client must not know about the
HSM, so this module hands it two pure functions (:func:`flashbots_message`,
:func:`personal_message_digest`) and, through :func:`make_flashbots_signer`, an address and
an async callable that signs a digest.

The HSM returns a raw ``r || s`` with no recovery id; as for transactions
(:mod:`airlock.signer.evm`), s is made low (EIP-2) and the recovery id is found by
recovering against the key's own public key, which also proves the signature valid.

:mod:`airlock.signer.evm` is imported inside the functions that touch a key, not at module
level: it imports :mod:`airlock.hsm.interface`, and :mod:`airlock.relays` imports this
module for the pure digest functions while it must never import ``airlock.hsm``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from eth_utils.crypto import keccak

if TYPE_CHECKING:
    from airlock.hsm.interface import EcdsaSigningKey

PERSONAL_MESSAGE_PREFIX = b"\x19Ethereum Signed Message:\n"
DIGEST_BYTES = 32
SIGNATURE_BYTES = 65
V_OFFSET = 27
"""personal_sign signatures carry v = 27 + recovery id (not the EIP-155 form)."""

DigestSigner = Callable[[bytes], Awaitable[bytes]]


def personal_message_digest(message: bytes) -> bytes:
    """keccak256("\\x19Ethereum Signed Message:\\n" + decimal length + message).

    The prefix makes a signed message unusable as a signed transaction.
    """
    data = bytes(message)
    return keccak(PERSONAL_MESSAGE_PREFIX + str(len(data)).encode("ascii") + data)


def flashbots_message(body: bytes) -> bytes:
    """What a Flashbots relay expects signed: ASCII ``0x`` + lowercase hex keccak256(body)."""
    return b"0x" + keccak(bytes(body)).hex().encode("ascii")


async def sign_personal(key: EcdsaSigningKey, message: bytes) -> bytes:
    """The 65-byte ``r || s || v`` personal_sign signature of ``message`` (v is 27 or 28)."""
    return await sign_digest_recoverable(key, personal_message_digest(message))


async def sign_digest_recoverable(key: EcdsaSigningKey, digest: bytes) -> bytes:
    """Sign a 32-byte digest in the HSM; return low-s ``r || s || v`` with v in {27, 28}.

    Raises :class:`airlock.signer.evm.SignatureError` for a key on another curve or a
    signature that does not check out: such a signature must never be sent.
    """
    from airlock.signer import evm  # see the module docstring for why it is imported here

    if not isinstance(digest, bytes | bytearray) or len(digest) != DIGEST_BYTES:
        raise ValueError(f"the digest must be {DIGEST_BYTES} bytes")
    digest = bytes(digest)
    if key.curve != "secp256k1":
        raise evm.SignatureError(
            f"key {key.label!r} is on curve {key.curve!r}; EIP-191 signatures need a secp256k1 key"
        )
    r, s = _split_raw(key, await _raw_signature(key, digest))
    r, s = evm.normalise_low_s(r, s)
    recovery = evm.recovery_id(digest, r, s, key.public_key)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([V_OFFSET + recovery])


def make_flashbots_signer(key: EcdsaSigningKey) -> tuple[str, DigestSigner]:
    """The key's checksum address and an async signer of EIP-191 digests.

    The caller builds :class:`airlock.relays.jsonrpc.FlashbotsAuth` from the pair, so the
    relays never see the key object itself.
    """
    from airlock.signer import evm

    address = evm.address_from_public_key(key.public_key)

    async def sign(digest: bytes) -> bytes:
        return await sign_digest_recoverable(key, digest)

    return address, sign


async def _raw_signature(key: EcdsaSigningKey, digest: bytes) -> bytes:
    """Ask the key for ``r || s`` without blocking the event loop.

    An HSM key offers ``sign_digest_async`` (its worker thread does the PKCS#11 call);
    any other key's blocking ``sign_digest`` runs in a thread.
    """
    sign_async = getattr(key, "sign_digest_async", None)
    if sign_async is not None:
        raw: bytes = await sign_async(digest)
        return raw
    return await asyncio.to_thread(key.sign_digest, digest)


def _split_raw(key: EcdsaSigningKey, signature: object) -> tuple[int, int]:
    """Split a raw 64-byte ``r || s`` into integers, checking length and range."""
    from airlock.signer import evm

    if not isinstance(signature, bytes | bytearray) or len(signature) != 64:
        raise evm.SignatureError(
            f"key {key.label!r} returned something other than a 64-byte raw r||s signature"
        )
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    for name, value in (("r", r), ("s", s)):
        if not 1 <= value < evm.SECP256K1_N:
            raise evm.SignatureError(
                f"key {key.label!r} returned a signature whose {name} is out of range; "
                "the token returned an invalid signature, do not send it"
            )
    return r, s
