"""Checkpoints as signed notes (C2SP signed-note + tlog-checkpoint), ECDSA P-256.

A checkpoint note is::

    <origin>\\n
    <tree size, decimal>\\n
    <base64 of the 32-byte root>\\n
    \\n
    — <key name> <base64(key hint (4 bytes) || DER ECDSA signature)>\\n

The signature covers the first three lines (the body, final newline included) and is
ECDSA P-256 with SHA-256, DER-encoded. The key hint is the first four bytes of SHA-256 of
the key's DER SubjectPublicKeyInfo (the C2SP rule for ECDSA keys). airlock's key name is
the log's origin. Pure: the signing itself is a callable, the verification uses only a
public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

DASH = "\u2014"  # em dash, as the signed-note format requires


class CheckpointError(ValueError):
    """A note that does not parse or does not verify."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    body: str
    signatures: tuple[tuple[str, bytes, bytes], ...]  # (key name, hint, DER signature)


def body(origin: str, size: int, root: bytes) -> str:
    if not origin or not origin.isprintable() or any(c in origin for c in " +"):
        raise CheckpointError(f"bad origin {origin!r}: printable, no spaces, no '+'")
    if size < 0 or len(root) != 32:
        raise CheckpointError("a checkpoint needs a size >= 0 and a 32-byte root")
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def spki_der(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_hint(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return hashlib.sha256(spki_der(public_key)).digest()[:4]


def make_note(
    origin: str,
    size: int,
    root: bytes,
    public_key: ec.EllipticCurvePublicKey,
    sign_der: Callable[[bytes], bytes],
) -> str:
    """A signed checkpoint; ``sign_der(message)`` returns a DER ECDSA P-256/SHA-256 signature."""
    text = body(origin, size, root)
    signature = sign_der(text.encode())
    line = base64.b64encode(key_hint(public_key) + signature).decode()
    return f"{text}\n{DASH} {origin} {line}\n"


def parse_note(note: str) -> Checkpoint:
    """Split and parse a note; signatures are not checked here."""
    text, sep, sigs = note.partition("\n\n")
    if not sep:
        raise CheckpointError("no blank line between the checkpoint body and its signatures")
    text += "\n"
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise CheckpointError("the checkpoint body needs origin, size and root lines")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if (
        not size_text.isascii()
        or not size_text.isdigit()
        or (size_text != "0" and size_text.startswith("0"))
        or len(size_text) > 20  # above 2**64; int() refuses 4300+ digits with a ValueError
    ):
        raise CheckpointError(f"tree size {size_text!r} is not a decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except (binascii.Error, ValueError):
        raise CheckpointError("the root is not base64") from None
    if len(root) != 32:
        raise CheckpointError("the root is not 32 bytes")
    signatures = []
    if not sigs.endswith("\n"):
        raise CheckpointError("the signature block must end with a newline")
    for line in sigs[:-1].split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != DASH:
            raise CheckpointError(f"malformed signature line {line[:60]!r}")
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except (binascii.Error, ValueError):
            raise CheckpointError("a signature is not base64") from None
        if len(blob) < 5:
            raise CheckpointError("a signature is too short")
        signatures.append((parts[1], blob[:4], blob[4:]))
    return Checkpoint(origin, int(size_text), root, text, tuple(signatures))


def verify_note(note: str, public_key: ec.EllipticCurvePublicKey, key_name: str) -> Checkpoint:
    """Parse ``note`` and check its signature by ``key_name`` with ``public_key``."""
    checkpoint = parse_note(note)
    hint = key_hint(public_key)
    mine = [s for s in checkpoint.signatures if s[0] == key_name and s[1] == hint]
    if not mine:
        names = ", ".join(f"{n} ({h.hex()})" for n, h, _ in checkpoint.signatures) or "none"
        raise CheckpointError(
            f"no signature by key {key_name!r} with hint {hint.hex()} (found: {names}): "
            "signed by another key"
        )
    try:
        public_key.verify(mine[0][2], checkpoint.body.encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise CheckpointError(
            "the signature does not verify: the note was altered or forged"
        ) from None
    return checkpoint


def load_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:  # e.g. a damaged algorithm OID
        raise CheckpointError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CheckpointError("the audit key must be an ECDSA P-256 public key")
    return key
