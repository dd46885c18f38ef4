"""The HSM as the rest of airlock uses it: keys by label, and what each key can do.

``KeyRing`` is the safe, high-level face of ``airlock.hsm``. It owns an
:class:`~airlock.hsm.worker.HsmWorker`, so every method may be called from any thread;
``*_async`` variants exist where asyncio code needs them. PKCS#11 exceptions never leave
this module: they become :mod:`airlock.hsm.errors` types with a message to act on.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, TypeVar

import pkcs11
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import Mechanism, ObjectClass

from airlock.config import HsmConfig
from airlock.hsm import errors, keys
from airlock.hsm.keys import KeyInfo
from airlock.hsm.kinds import KeyKind
from airlock.hsm.pin import Prompt, resolve_pin
from airlock.hsm.worker import Connection, HsmWorker

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

T = TypeVar("T")

_CURVES: dict[KeyKind, ec.EllipticCurve] = {
    KeyKind.SECP256K1: ec.SECP256K1(),
    KeyKind.P256: ec.SECP256R1(),
}
_EC_MECHANISM = Mechanism.ECDSA  # raw ECDSA over a digest; SoftHSM has no ECDSA_SHA*


def translate(exc: pkcs11.PKCS11Error, what: str) -> errors.HsmError:
    """Map a stray PKCS#11 exception to an airlock error naming the operation."""
    if isinstance(exc, pkcs11.PinLocked):
        return errors.PinLocked(f"{what}: the token's user PIN is locked")
    if isinstance(exc, pkcs11.PinIncorrect):
        return errors.PinIncorrect(f"{what}: the token rejected the PIN")
    if isinstance(exc, (pkcs11.KeyTypeInconsistent, pkcs11.MechanismInvalid)):
        return errors.WrongKeyType(f"{what}: the key cannot do this ({type(exc).__name__})")
    if isinstance(exc, (pkcs11.TokenNotPresent, pkcs11.DeviceRemoved)):
        return errors.TokenUnavailable(f"{what}: the token is not present")
    return errors.HsmOperationError(f"{what} failed in the HSM: {type(exc).__name__} {exc}")


def _translating(future: Future[T], what: str) -> Future[T]:
    """A Future that carries ``future``'s result, with PKCS#11 errors translated.

    Translation happens on the caller's side of the worker, so the worker still sees the
    raw "session gone" errors it reconnects on.
    """
    out: Future[T] = Future()

    def done(source: Future[T]) -> None:
        exc = source.exception()
        if isinstance(exc, pkcs11.PKCS11Error):
            translated = translate(exc, what)
            translated.__cause__ = exc
            out.set_exception(translated)
        elif exc is not None:
            out.set_exception(exc)
        else:
            out.set_result(source.result())

    future.add_done_callback(done)
    return out


class HsmEcdsaKey:
    """An EC private key in the HSM; satisfies :class:`EcdsaSigningKey`.

    ``submit_digest`` queues a signature and returns at once, so a caller can keep the
    HSM busy while it does its own work on earlier results (see
    :func:`airlock.signer.evm.sign_transactions`).
    """

    def __init__(self, worker: HsmWorker, info: KeyInfo) -> None:
        assert info.public_key is not None
        self._worker = worker
        self._info = info

    @property
    def label(self) -> str:
        return self._info.label

    @property
    def info(self) -> KeyInfo:
        return self._info

    @property
    def curve(self) -> str:
        return str(self._info.kind)

    @property
    def public_key(self) -> bytes:
        assert self._info.public_key is not None
        return self._info.public_key

    def submit_digest(self, digest: bytes) -> Future[bytes]:
        label = self._info.label
        future = self._worker.submit(lambda conn: _ecdsa_sign(conn, label, digest))
        return _translating(future, f"signing with {label!r}")

    def submit_digests(self, digests: list[bytes]) -> Future[list[bytes]]:
        """Queue one job that signs several digests: one hand-off for the whole batch."""
        label = self._info.label
        future = self._worker.submit(
            lambda conn: [_ecdsa_sign(conn, label, digest) for digest in digests]
        )
        return _translating(future, f"signing with {label!r}")

    def sign_digest(self, digest: bytes) -> bytes:
        try:
            return self._worker.run(lambda conn: _ecdsa_sign(conn, self.label, digest))
        except pkcs11.PKCS11Error as exc:
            raise translate(exc, f"signing with {self.label!r}") from exc

    async def sign_digest_async(self, digest: bytes) -> bytes:
        try:
            return await self._worker.arun(lambda conn: _ecdsa_sign(conn, self.label, digest))
        except pkcs11.PKCS11Error as exc:
            raise translate(exc, f"signing with {self.label!r}") from exc

    def __repr__(self) -> str:
        return f"HsmEcdsaKey(label={self.label!r}, curve={self.curve!r})"


def _ecdsa_sign(conn: Connection, label: str, digest: bytes) -> bytes:
    key = keys.find(conn, label, ObjectClass.PRIVATE_KEY)
    return bytes(key.sign(digest, mechanism=_EC_MECHANISM))


class KeyRing:
    """Keys on one token, reached through one serialised session."""

    def __init__(self, worker: HsmWorker) -> None:
        self._worker = worker

    @classmethod
    def open(
        cls, config: HsmConfig, *, pin: str | None = None, prompt: Prompt | None = None
    ) -> KeyRing:
        """Resolve the PIN (see :mod:`airlock.hsm.pin`), load the module and log in."""
        if pin is None:
            pin = resolve_pin(config.pin_source, prompt=prompt)
        try:
            return cls(HsmWorker(config, pin))
        except pkcs11.PKCS11Error as exc:
            raise translate(exc, f"opening token {config.token_label!r}") from exc

    @property
    def worker(self) -> HsmWorker:
        return self._worker

    def close(self) -> None:
        self._worker.close()

    def __enter__(self) -> KeyRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, what: str, fn: Callable[[Connection], T]) -> T:
        try:
            return self._worker.run(fn)
        except pkcs11.PKCS11Error as exc:
            raise translate(exc, what) from exc

    # -- keys ---------------------------------------------------------------------

    def generate(self, kind: KeyKind | str, label: str) -> KeyInfo:
        kind = _kind(kind)
        _check_label(label)
        return self._run(
            f"generating {kind} key {label!r}", lambda c: keys.generate(c, kind, label)
        )

    def import_hmac_secret(self, label: str, secret: bytes) -> KeyInfo:
        _check_label(label)
        return self._run(
            f"importing secret {label!r}", lambda c: keys.import_hmac_secret(c, label, secret)
        )

    def list(self) -> list[KeyInfo]:
        return self._run("listing keys", keys.list_keys)

    def info(self, label: str) -> KeyInfo:
        return self._run(f"looking up {label!r}", lambda c: keys.describe(c, label))

    def ecdsa_key(self, label: str, curve: KeyKind | str | None = None) -> HsmEcdsaKey:
        """The EC signing key ``label``; with ``curve``, refuse a key on another curve."""
        info = self.info(label)
        if info.kind not in _CURVES:
            raise errors.WrongKeyType(f"key {label!r} is {info.kind}, not an EC signing key")
        if curve is not None and info.kind != _kind(curve):
            raise errors.WrongKeyType(f"key {label!r} is {info.kind}, not {_kind(curve)}")
        return HsmEcdsaKey(self._worker, info)

    def public_key_pem(self, label: str) -> str:
        """SubjectPublicKeyInfo PEM of an EC or RSA key, to hand to a verifier or Bybit."""
        info = self.info(label)
        if info.public_key is None:
            raise errors.WrongKeyType(f"key {label!r} is a secret key; it has no public key")
        public: PublicKeyTypes
        if info.kind in _CURVES:
            public = ec.EllipticCurvePublicKey.from_encoded_point(
                _CURVES[info.kind], info.public_key
            )
        else:
            public = serialization.load_der_public_key(info.public_key)
        return public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    # -- operations other rooms need ------------------------------------------------

    def hmac_sha256(self, label: str, data: bytes) -> bytes:
        """HMAC-SHA256 with an imported secret (Bybit request signing)."""
        self._require(label, KeyKind.HMAC)

        def op(conn: Connection) -> bytes:
            key = keys.find(conn, label, ObjectClass.SECRET_KEY)
            return bytes(key.sign(data, mechanism=Mechanism.SHA256_HMAC))

        return self._run(f"HMAC with {label!r}", op)

    def rsa_sign_sha256(self, label: str, data: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 with SHA-256 (Bybit self-generated RSA API keys)."""
        info = self._require(label, KeyKind.RSA2048, KeyKind.RSA4096)

        def op(conn: Connection) -> bytes:
            key = keys.find(conn, info.label, ObjectClass.PRIVATE_KEY)
            return bytes(key.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS))

        return self._run(f"RSA signing with {label!r}", op)

    def aes_gcm_encrypt(self, label: str, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """AES-256-GCM inside the HSM (wrapping data keys under the key-encryption key)."""
        self._require(label, KeyKind.AES256)

        def op(conn: Connection) -> bytes:
            key = keys.find(conn, label, ObjectClass.SECRET_KEY)
            params = pkcs11.GCMParams(nonce, aad, 128)
            return bytes(
                key.encrypt(plaintext, mechanism=Mechanism.AES_GCM, mechanism_param=params)
            )

        return self._run(f"AES-GCM encrypt with {label!r}", op)

    def aes_gcm_decrypt(self, label: str, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        """Inverse of :meth:`aes_gcm_encrypt`; a failed tag is an :class:`HsmOperationError`."""
        self._require(label, KeyKind.AES256)

        def op(conn: Connection) -> bytes:
            key = keys.find(conn, label, ObjectClass.SECRET_KEY)
            params = pkcs11.GCMParams(nonce, aad, 128)
            return bytes(
                key.decrypt(ciphertext, mechanism=Mechanism.AES_GCM, mechanism_param=params)
            )

        return self._run(f"AES-GCM decrypt with {label!r}", op)

    def _require(self, label: str, *kinds: KeyKind) -> KeyInfo:
        info = self.info(label)
        if info.kind not in kinds:
            wanted = " or ".join(str(k) for k in kinds)
            raise errors.WrongKeyType(f"key {label!r} is {info.kind}, not {wanted}")
        return info


def _kind(kind: KeyKind | str) -> KeyKind:
    try:
        return KeyKind(kind)
    except ValueError:
        choices = ", ".join(k.value for k in KeyKind)
        raise errors.WrongKeyType(f"unknown key type {kind!r}; choose one of {choices}") from None


def _check_label(label: str) -> None:
    if not label or len(label) > 64 or not label.isprintable() or label != label.strip():
        raise errors.HsmOperationError(
            f"bad key label {label!r}: use 1-64 printable characters, no edge spaces"
        )
