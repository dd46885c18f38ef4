"""What the rest of airlock may know about a key held in an HSM.

Nothing here imports ``pkcs11``: rooms above ``hsm/`` depend on these protocols, so a
real HSM, SoftHSM, or a pure-software key in a unit test are interchangeable.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class EcdsaSigningKey(Protocol):
    """An elliptic-curve private key that signs pre-hashed digests.

    ``public_key`` is the 65-byte uncompressed SEC1 point (``04 || X || Y``).
    ``sign_digest`` returns the raw ``r || s`` signature (64 bytes for 256-bit curves)
    exactly as the token produced it: no low-s normalisation, no recovery id.
    """

    @property
    def label(self) -> str: ...

    @property
    def curve(self) -> str:  # "secp256k1" or "p256"
        ...

    @property
    def public_key(self) -> bytes: ...

    def sign_digest(self, digest: bytes) -> bytes: ...
