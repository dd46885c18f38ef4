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

from airlock.audit.errors import AuditError

DASH = "\u2014"  # em dash, as the signed-note format requires


class CheckpointError(AuditError, ValueError):
    """A note that does not parse or does not verify."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    body: str
    signatures: tuple[tuple[str, bytes, bytes], ...]  # (key name, hint, DER signature)


def body(origin: str, size: int, root: bytes) -> str:
    _check_key_name(origin, "origin")
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
    """Split and parse a note; signatures are not checked here.

    The note is held to airlock's form of it, byte for byte (docs/audit-format.md §2): LF
    line ends only and no other control character, exactly three body lines (no C2SP
    extension lines), canonical base64, at least one signature line.
    """
    _check_characters(note)
    text, sep, sigs = note.partition("\n\n")
    if not sep:
        raise CheckpointError("no blank line between the checkpoint body and its signatures")
    lines = text.split("\n")
    if len(lines) < 3 or "" in lines:
        raise CheckpointError("the checkpoint body needs origin, size and root lines")
    if len(lines) > 3:
        raise CheckpointError(
            f"the checkpoint body has {len(lines)} lines, not 3 (origin, size, root): "
            "extension lines are not part of airlock's checkpoints"
        )
    origin, size_text, root_text = lines
    _check_key_name(origin, "origin")
    root = _base64(root_text, "the root")
    if len(root) != 32:
        raise CheckpointError("the root is not 32 bytes")
    if not sigs.endswith("\n"):
        raise CheckpointError("the signature block must end with a newline")
    signatures = tuple(_signature(line) for line in sigs[:-1].split("\n"))
    return Checkpoint(origin, _size(size_text), root, text + "\n", signatures)


def _check_characters(note: str) -> None:
    """LF is the only line end and the only control character a note holds: the body is
    signed byte for byte, and a CR a transport added must not read as the same note."""
    bad = next((c for c in note if (c < " " and c != "\n") or c == "\x7f"), None)
    if bad == "\r":
        raise CheckpointError("the note has a CR (U+000D): lines end with LF only")
    if bad is not None:
        raise CheckpointError(f"the note holds the control character U+{ord(bad):04X}")


def _check_key_name(name: str, what: str) -> None:
    if not name or not name.isprintable() or any(c in name for c in " +"):
        raise CheckpointError(f"bad {what} {name[:60]!r}: printable, no spaces, no '+'")


def _size(text: str) -> int:
    if (
        not text.isascii()
        or not text.isdigit()
        or (text != "0" and text.startswith("0"))
        or len(text) > 20  # above 2**64; int() refuses 4300+ digits with a ValueError
    ):
        raise CheckpointError(f"tree size {text!r} is not a decimal number")
    return int(text)


def _base64(text: str, what: str) -> bytes:
    """Standard padded base64 in its one canonical spelling (unused bits zero)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CheckpointError(f"{what} is not base64") from None
    if base64.b64encode(raw).decode() != text:
        raise CheckpointError(f"{what} is not canonical base64")
    return raw


def _signature(line: str) -> tuple[str, bytes, bytes]:
    parts = line.split(" ")
    if len(parts) != 3 or parts[0] != DASH or not parts[1]:
        raise CheckpointError(f"malformed signature line {line[:60]!r}")
    _check_key_name(parts[1], "key name")
    blob = _base64(parts[2], "a signature")
    if len(blob) < 5:
        raise CheckpointError("a signature is too short")
    return parts[1], blob[:4], blob[4:]


def verify_note(note: str, public_key: ec.EllipticCurvePublicKey, key_name: str) -> Checkpoint:
    """Parse ``note`` and check its one signature by ``key_name`` with ``public_key``.

    Lines under other names (cosigners) are ignored; two lines under ``key_name`` are
    refused rather than tried in turn, so every verifier reads the same line.
    """
    checkpoint = parse_note(note)
    hint = key_hint(public_key)
    named = [s for s in checkpoint.signatures if s[0] == key_name]
    if len(named) > 1:
        raise CheckpointError(
            f"{len(named)} signature lines by key {key_name!r}: a note carries one"
        )
    if not named or named[0][1] != hint:
        names = ", ".join(f"{n} ({h.hex()})" for n, h, _ in checkpoint.signatures) or "none"
        raise CheckpointError(
            f"no signature by key {key_name!r} with hint {hint.hex()} (found: {names}): "
            "signed by another key"
        )
    try:
        public_key.verify(named[0][2], checkpoint.body.encode(), ec.ECDSA(hashes.SHA256()))
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
