"""Key generation, lookup and description on an open session.

Every function here runs on the HSM worker thread (it is handed a
:class:`~airlock.hsm.worker.Connection`). Private and secret keys are always created
sensitive and non-extractable: airlock never needs, and never asks for, key bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pkcs11
from asn1crypto.core import OctetString
from asn1crypto.keys import ECDomainParameters
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters
from pkcs11.util.rsa import encode_rsa_public_key

from airlock.hsm import errors
from airlock.hsm.kinds import KeyKind
from airlock.hsm.worker import Connection

CURVE_NAMES = {KeyKind.SECP256K1: "secp256k1", KeyKind.P256: "secp256r1"}
_CURVE_OIDS = {"1.3.132.0.10": KeyKind.SECP256K1, "1.2.840.10045.3.1.7": KeyKind.P256}
MIN_HMAC_SECRET = 32


@dataclass(frozen=True)
class KeyInfo:
    """A key on the token as airlock sees it; ``public_key`` is None for secret keys.

    For EC keys ``public_key`` is the uncompressed SEC1 point; for RSA it is the DER
    SubjectPublicKeyInfo.
    """

    label: str
    kind: KeyKind
    public_key: bytes | None = None


_PRIVATE_TEMPLATE = {
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.PRIVATE: True,
}


def _exists(conn: Connection, label: str) -> bool:
    return any(True for _ in conn.session.get_objects({Attribute.LABEL: label}))


def generate(conn: Connection, kind: KeyKind, label: str) -> KeyInfo:
    """Create a key of ``kind`` named ``label``; refuse an existing label."""
    if _exists(conn, label):
        raise errors.KeyExists(f"a key labelled {label!r} already exists on the token")
    session = conn.session
    key_id = os.urandom(16)
    if kind in CURVE_NAMES:
        params = session.create_domain_parameters(
            KeyType.EC,
            {Attribute.EC_PARAMS: encode_named_curve_parameters(CURVE_NAMES[kind])},
            local=True,
        )
        params.generate_keypair(
            store=True,
            label=label,
            id=key_id,
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
            private_template=_PRIVATE_TEMPLATE,
        )
    elif kind in (KeyKind.RSA2048, KeyKind.RSA4096):
        bits = 2048 if kind is KeyKind.RSA2048 else 4096
        session.generate_keypair(
            KeyType.RSA,
            bits,
            store=True,
            label=label,
            id=key_id,
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
            private_template=_PRIVATE_TEMPLATE,
        )
    elif kind is KeyKind.AES256:
        session.generate_key(
            KeyType.AES,
            256,
            store=True,
            label=label,
            id=key_id,
            capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
            template=_PRIVATE_TEMPLATE,
        )
    else:
        raise errors.WrongKeyType(f"{kind} keys are imported, not generated")
    return describe(conn, label)


def import_hmac_secret(conn: Connection, label: str, secret: bytes) -> KeyInfo:
    """Store an HMAC secret (a Bybit API secret) as a non-extractable GENERIC_SECRET.

    The key is proven usable by one HMAC before this returns: some modules (SoftHSM
    among them) accept the object but refuse short secrets only when signing.
    """
    if not secret:
        raise errors.HsmOperationError("the secret is empty")
    if _exists(conn, label):
        raise errors.KeyExists(f"a key labelled {label!r} already exists on the token")
    key = conn.session.create_object(
        {
            Attribute.CLASS: ObjectClass.SECRET_KEY,
            Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
            Attribute.LABEL: label,
            Attribute.ID: os.urandom(16),
            Attribute.VALUE: secret,
            Attribute.TOKEN: True,
            Attribute.SIGN: True,
            Attribute.VERIFY: True,
            **_PRIVATE_TEMPLATE,
        }
    )
    try:
        key.sign(b"airlock import check", mechanism=Mechanism.SHA256_HMAC)
    except pkcs11.KeySizeRange:
        key.destroy()
        raise errors.WrongKeyType(
            f"this HSM refuses HMAC secrets of {len(secret)} bytes (SoftHSM needs at "
            f"least {MIN_HMAC_SECRET}); nothing was stored"
        ) from None
    return describe(conn, label)


def find(conn: Connection, label: str, object_class: ObjectClass) -> Any:
    """The key object with this label and class, cached per session."""
    cache_key = (label, object_class)
    cached = conn.handles.get(cache_key)
    if cached is not None:
        return cached
    try:
        key = conn.session.get_key(object_class=object_class, label=label)
    except pkcs11.NoSuchKey:
        if _exists(conn, label):
            raise errors.WrongKeyType(
                f"key {label!r} exists but has no {object_class.name.lower()} part"
            ) from None
        raise errors.KeyNotFound(
            f"no key labelled {label!r} on the token; 'airlock hsm keys' lists them"
        ) from None
    except pkcs11.MultipleObjectsReturned:
        raise errors.HsmOperationError(
            f"more than one {object_class.name.lower()} object is labelled {label!r}; "
            f"labels must be unique"
        ) from None
    conn.handles[cache_key] = key
    return key


def describe(conn: Connection, label: str) -> KeyInfo:
    """Type and public key of the key named ``label``."""
    objects = list(conn.session.get_objects({Attribute.LABEL: label}))
    if not objects:
        raise errors.KeyNotFound(
            f"no key labelled {label!r} on the token; 'airlock hsm keys' lists them"
        )
    info = None
    for obj in objects:
        info = _describe_object(obj, label) or info
    if info is None:
        raise errors.WrongKeyType(f"object {label!r} is not a key airlock knows how to use")
    return info


def list_keys(conn: Connection) -> list[KeyInfo]:
    """Every key airlock can use, one entry per label, sorted by label."""
    found: dict[str, KeyInfo] = {}
    for object_class in (ObjectClass.PUBLIC_KEY, ObjectClass.SECRET_KEY):
        for obj in conn.session.get_objects({Attribute.CLASS: object_class}):
            label = obj[Attribute.LABEL]
            info = _describe_object(obj, label)
            if info is not None:
                found[label] = info
    return [found[label] for label in sorted(found)]


def _describe_object(obj: Any, label: str) -> KeyInfo | None:
    object_class = obj[Attribute.CLASS]
    key_type = obj[Attribute.KEY_TYPE]
    if object_class == ObjectClass.PUBLIC_KEY and key_type == KeyType.EC:
        kind = curve_of(obj)
        if kind is None:
            return None
        return KeyInfo(label, kind, ec_point(obj))
    if object_class == ObjectClass.PUBLIC_KEY and key_type == KeyType.RSA:
        bits = obj[Attribute.MODULUS_BITS]
        kind = {2048: KeyKind.RSA2048, 4096: KeyKind.RSA4096}.get(bits)
        return KeyInfo(label, kind, encode_rsa_public_key(obj)) if kind else None
    if object_class == ObjectClass.SECRET_KEY and key_type == KeyType.AES:
        return KeyInfo(label, KeyKind.AES256) if obj[Attribute.VALUE_LEN] == 32 else None
    if object_class == ObjectClass.SECRET_KEY and key_type == KeyType.GENERIC_SECRET:
        return KeyInfo(label, KeyKind.HMAC)
    return None


def curve_of(obj: Any) -> KeyKind | None:
    """secp256k1 or P-256 from the key's EC_PARAMS, or None for another curve."""
    params = ECDomainParameters.load(obj[Attribute.EC_PARAMS])
    if params.name != "named":
        return None
    return _CURVE_OIDS.get(params.chosen.dotted)


def ec_point(public_key: Any) -> bytes:
    """The uncompressed SEC1 point; tokens wrap it in a DER OCTET STRING (``04 41 04 ...``)."""
    raw = bytes(public_key[Attribute.EC_POINT])
    if len(raw) == 65 and raw[0] == 0x04:
        return raw  # a module that returns the bare point
    point = OctetString.load(raw).native
    if len(point) != 65 or point[0] != 0x04:
        raise errors.HsmOperationError("the token returned an EC point airlock cannot read")
    return bytes(point)
