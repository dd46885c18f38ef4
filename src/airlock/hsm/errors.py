"""Errors raised by the HSM layer.

Each one names the thing that is wrong and what the operator can do about it. The
``pkcs11`` exception types never escape ``airlock.hsm``: :func:`translate` maps them here.
"""

from __future__ import annotations

from airlock.errors import AirlockError


class HsmError(AirlockError):
    """Base class of every HSM-layer failure."""


class ModuleLoadError(HsmError):
    """The configured PKCS#11 module is missing or is not a PKCS#11 library."""


class SoftHsmConfError(HsmError):
    """SOFTHSM2_CONF points at a file SoftHSM cannot read."""


class TokenNotFound(HsmError):
    """No token with the configured label is present in any slot."""


class PinError(HsmError):
    """A PIN could not be obtained, or the token refused it."""


class PinIncorrect(PinError):
    """The token rejected the PIN."""


class PinLocked(PinError):
    """The token has locked the user PIN after too many failures."""


class KeyNotFound(HsmError):
    """No key with the given label (and class) exists on the token."""


class KeyExists(HsmError):
    """A key with this label already exists; airlock never creates duplicates."""


class WrongKeyType(HsmError):
    """The key exists but cannot do what was asked (wrong algorithm or curve)."""


class TokenUnavailable(HsmError):
    """The token went away and could not be reached again."""


class HsmOperationError(HsmError):
    """The token refused or failed an operation for another reason."""
