"""Checkpoint notes (C2SP signed-note + tlog-checkpoint, ECDSA P-256) with a software key."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from airlock.audit.checkpoint import (
    DASH,
    Checkpoint,
    CheckpointError,
    body,
    key_hint,
    load_public_key,
    make_note,
    parse_note,
    spki_der,
    verify_note,
)

ORIGIN = "airlock.local/0123456789abcdef"
SIZE = 42
ROOT = hashlib.sha256(b"a tree root").digest()
ROOT_B64 = base64.b64encode(ROOT).decode()

Signer = Callable[[bytes], bytes]


def _signer(private_key: ec.EllipticCurvePrivateKey) -> Signer:
    return lambda message: private_key.sign(message, ec.ECDSA(hashes.SHA256()))


@pytest.fixture(scope="module")
def private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def other_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def note(private_key: ec.EllipticCurvePrivateKey) -> str:
    return make_note(ORIGIN, SIZE, ROOT, private_key.public_key(), _signer(private_key))


def _pem(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _with_body(note: str, new_body: str) -> str:
    """The same signature block under another body."""
    return new_body + note[note.index("\n\n") + 1 :]


# ------------------------------------------------------------------------ round trip


def test_round_trip(private_key: ec.EllipticCurvePrivateKey, note: str) -> None:
    public_key = private_key.public_key()
    parsed = parse_note(note)
    assert isinstance(parsed, Checkpoint)
    assert (parsed.origin, parsed.size, parsed.root) == (ORIGIN, SIZE, ROOT)
    assert parsed.body == f"{ORIGIN}\n{SIZE}\n{ROOT_B64}\n"
    assert verify_note(note, public_key, ORIGIN) == parsed


@pytest.mark.parametrize("size", [0, 1, 10, 2**53, 2**64 + 1])
def test_round_trip_sizes(private_key: ec.EllipticCurvePrivateKey, size: int) -> None:
    root = bytes(range(32))
    note = make_note(ORIGIN, size, root, private_key.public_key(), _signer(private_key))
    checkpoint = verify_note(note, private_key.public_key(), ORIGIN)
    assert (checkpoint.size, checkpoint.root) == (size, root)


def test_exact_layout(private_key: ec.EllipticCurvePrivateKey, note: str) -> None:
    public_key = private_key.public_key()
    head, sig_line = note.split("\n\n")
    assert head == f"{ORIGIN}\n{SIZE}\n{ROOT_B64}"
    assert note.endswith("\n") and note.count("\n") == 5
    assert DASH == "\u2014"
    assert sig_line.startswith("\u2014 ")
    assert note.encode("utf-8").count(b"\xe2\x80\x94") == 1
    dash, key_name, blob_b64 = sig_line.rstrip("\n").split(" ")
    assert (dash, key_name) == ("\u2014", ORIGIN)

    blob = base64.b64decode(blob_b64, validate=True)
    assert base64.b64encode(blob).decode() == blob_b64  # standard, padded base64
    hint, der = blob[:4], blob[4:]
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert spki_der(public_key) == spki
    assert hint == hashlib.sha256(spki).digest()[:4] == key_hint(public_key)
    decode_dss_signature(der)  # a DER ECDSA signature
    # It signs the body, final newline included, with P-256 / SHA-256.
    public_key.verify(der, f"{head}\n".encode(), ec.ECDSA(hashes.SHA256()))

    parsed = parse_note(note)
    assert parsed.signatures == ((ORIGIN, hint, der),)


def test_body_function() -> None:
    assert body(ORIGIN, SIZE, ROOT) == f"{ORIGIN}\n{SIZE}\n{ROOT_B64}\n"
    for bad in ["", "two\nlines", " leading", "trailing ", "tab\t"]:
        with pytest.raises(CheckpointError, match="bad origin"):
            body(bad, SIZE, ROOT)


def test_signature_is_over_body_bytes(private_key: ec.EllipticCurvePrivateKey) -> None:
    seen: list[bytes] = []

    def sign(message: bytes) -> bytes:
        seen.append(message)
        return _signer(private_key)(message)

    make_note(ORIGIN, SIZE, ROOT, private_key.public_key(), sign)
    assert seen == [f"{ORIGIN}\n{SIZE}\n{ROOT_B64}\n".encode()]


def test_cosigned_note_verifies_with_either_key(
    private_key: ec.EllipticCurvePrivateKey, other_key: ec.EllipticCurvePrivateKey, note: str
) -> None:
    text = parse_note(note).body
    der = _signer(other_key)(text.encode())
    blob = base64.b64encode(key_hint(other_key.public_key()) + der).decode()
    cosigned = f"{note}{DASH} witness.example {blob}\n"
    assert len(parse_note(cosigned).signatures) == 2
    verify_note(cosigned, private_key.public_key(), ORIGIN)
    verify_note(cosigned, other_key.public_key(), "witness.example")


# --------------------------------------------------------------------------- forgery


def test_another_key(other_key: ec.EllipticCurvePrivateKey, note: str) -> None:
    with pytest.raises(CheckpointError, match="another key"):
        verify_note(note, other_key.public_key(), ORIGIN)


def test_another_key_name(private_key: ec.EllipticCurvePrivateKey, note: str) -> None:
    with pytest.raises(CheckpointError, match="another key"):
        verify_note(note, private_key.public_key(), "airlock.local/another")


def test_other_key_claiming_our_hint(
    private_key: ec.EllipticCurvePrivateKey, other_key: ec.EllipticCurvePrivateKey
) -> None:
    # A signature by another key under our name and hint: the hint matches, the math does not.
    text = body(ORIGIN, SIZE, ROOT)
    der = _signer(other_key)(text.encode())
    blob = base64.b64encode(key_hint(private_key.public_key()) + der).decode()
    forged = f"{text}\n{DASH} {ORIGIN} {blob}\n"
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_note(forged, private_key.public_key(), ORIGIN)


@pytest.mark.parametrize(
    "new_body",
    [
        f"{ORIGIN}\n{SIZE + 1}\n{ROOT_B64}\n",
        f"{ORIGIN}\n{SIZE - 1}\n{ROOT_B64}\n",
        f"{ORIGIN}\n{SIZE}\n{base64.b64encode(bytes(32)).decode()}\n",
        f"{ORIGIN}\n{SIZE}\n{base64.b64encode(ROOT[:-1] + bytes([ROOT[-1] ^ 1])).decode()}\n",
        f"airlock.local/another\n{SIZE}\n{ROOT_B64}\n",
        f"{ORIGIN}x\n{SIZE}\n{ROOT_B64}\n",
    ],
    ids=["size+1", "size-1", "zero-root", "root-bit", "origin", "origin-suffix"],
)
def test_altered_body_does_not_verify(
    private_key: ec.EllipticCurvePrivateKey, note: str, new_body: str
) -> None:
    altered = _with_body(note, new_body)
    parse_note(altered)  # still well formed
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_note(altered, private_key.public_key(), ORIGIN)


def test_altered_signature_does_not_verify(
    private_key: ec.EllipticCurvePrivateKey, note: str
) -> None:
    ((_, hint, der),) = parse_note(note).signatures
    bad_der = der[:-1] + bytes([der[-1] ^ 1])
    blob = base64.b64encode(hint + bad_der).decode()
    altered = f"{parse_note(note).body}\n{DASH} {ORIGIN} {blob}\n"
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_note(altered, private_key.public_key(), ORIGIN)
    garbage = base64.b64encode(hint + b"not DER at all").decode()
    altered = f"{parse_note(note).body}\n{DASH} {ORIGIN} {garbage}\n"
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_note(altered, private_key.public_key(), ORIGIN)


# ------------------------------------------------------------------------- malformed


def _sig_block(note: str) -> str:
    return note[note.index("\n\n") + 2 :]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda n: n.replace("\n\n", "\n"), "no blank line"),
        (lambda n: n.replace(f"\n{SIZE}\n", f"\n0{SIZE}\n"), "not a decimal number"),
        (lambda n: n.replace(f"\n{SIZE}\n", "\n01\n"), "not a decimal number"),
        (lambda n: n.replace(f"\n{SIZE}\n", "\nx\n"), "not a decimal number"),
        (lambda n: n.replace(f"\n{SIZE}\n", "\n\n"), "origin, size and root"),
        (lambda n: n.replace(f"\n{SIZE}\n", "\n-1\n"), "not a decimal number"),
        (lambda n: n.replace(f"\n{SIZE}\n", "\n+42\n"), "not a decimal number"),
        (lambda n: n.replace(f"\n{SIZE}\n", "\n 42\n"), "not a decimal number"),
        (lambda n: n.replace(f"\n{SIZE}\n", "\n4_2\n"), "not a decimal number"),
        (lambda n: n.replace(f"\n{SIZE}\n", "\n0x2a\n"), "not a decimal number"),
        (lambda n: n.replace(ROOT_B64, "not base64!"), "root is not base64"),
        (lambda n: n.replace(ROOT_B64, ROOT_B64.rstrip("=")), "root is not base64"),
        (lambda n: n.replace(ROOT_B64, base64.b64encode(ROOT[:31]).decode()), "not 32 bytes"),
        (lambda n: n.replace(ROOT_B64, base64.b64encode(ROOT + b"!").decode()), "not 32 bytes"),
        (lambda n: n.replace(ROOT_B64, ""), "origin, size and root"),
        (lambda n: n.replace(DASH, "-"), "malformed signature line"),
        (lambda n: n.replace(DASH, "\u2013"), "malformed signature line"),
        (lambda n: n.replace(f"{DASH} ", DASH), "malformed signature line"),
        (lambda n: n.replace(f"{DASH} {ORIGIN} ", f"{DASH} {ORIGIN}  "), "malformed signature"),
        (lambda n: n[:-1] + " extra\n", "malformed signature line"),
        (lambda n: n + "\n", "malformed signature line"),
        (lambda n: n[:-1], "must end with a newline"),
        (lambda n: n[: n.index("\n\n") + 2], "must end with a newline"),
        (lambda n: n.replace(_sig_block(n), f"{DASH} {ORIGIN} ###\n"), "signature is not base64"),
        (lambda n: n.replace(_sig_block(n), f"{DASH} {ORIGIN} AAAAAA==\n"), "too short"),
        (lambda n: n.split("\n", 1)[1], "origin, size and root"),
        (lambda n: "\n\n" + _sig_block(n), "origin, size and root"),
    ],
    ids=[
        "no-blank-line",
        "size-leading-zero",
        "size-01",
        "size-x",
        "size-empty",
        "size-negative",
        "size-plus",
        "size-space",
        "size-underscore",
        "size-hex",
        "root-not-base64",
        "root-unpadded",
        "root-31-bytes",
        "root-33-bytes",
        "root-empty",
        "hyphen",
        "en-dash",
        "no-space-after-dash",
        "double-space",
        "four-fields",
        "trailing-blank-line",
        "no-final-newline",
        "no-signature",
        "signature-not-base64",
        "signature-too-short",
        "two-body-lines",
        "empty-body",
    ],
)
def test_malformed_notes(note: str, make: Callable[[str], str], message: str) -> None:
    bad = make(note)
    assert bad != note
    with pytest.raises(CheckpointError, match=message):
        parse_note(bad)


def test_superscript_size_is_a_checkpoint_error(note: str) -> None:
    with pytest.raises(CheckpointError):
        parse_note(note.replace(f"\n{SIZE}\n", "\n\u00b2\n"))


def test_non_ascii_digits_are_refused(note: str) -> None:
    with pytest.raises(CheckpointError, match="not a decimal number"):
        parse_note(note.replace(f"\n{SIZE}\n", "\n\u0664\u0662\n"))


@pytest.mark.parametrize("where", ["root", "signature"])
def test_non_ascii_base64_is_a_checkpoint_error(note: str, where: str) -> None:
    bad = {
        "root": note.replace(ROOT_B64, ROOT_B64[:-2] + "é="),
        "signature": note[:-2] + "é\n",
    }[where]
    with pytest.raises(CheckpointError):
        parse_note(bad)


def test_origin_with_space_is_refused_or_round_trips(
    private_key: ec.EllipticCurvePrivateKey,
) -> None:
    try:
        note = make_note("my log", SIZE, ROOT, private_key.public_key(), _signer(private_key))
    except CheckpointError:
        return
    verify_note(note, private_key.public_key(), "my log")


# --------------------------------------------------------------------- public keys


def test_load_public_key_accepts_p256(private_key: ec.EllipticCurvePrivateKey) -> None:
    key = load_public_key(_pem(private_key.public_key()))
    assert spki_der(key) == spki_der(private_key.public_key())


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key(),
        lambda: ec.generate_private_key(ec.SECP256K1()).public_key(),
        lambda: ec.generate_private_key(ec.SECP384R1()).public_key(),
        lambda: ed25519.Ed25519PrivateKey.generate().public_key(),
    ],
    ids=["rsa", "secp256k1", "p384", "ed25519"],
)
def test_load_public_key_refuses_other_keys(make_key: Callable[[], object]) -> None:
    with pytest.raises(CheckpointError, match="ECDSA P-256"):
        load_public_key(_pem(make_key()))


def test_load_public_key_refuses_garbage(private_key: ec.EllipticCurvePrivateKey) -> None:
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    der = spki_der(private_key.public_key())
    for garbage in [
        b"",
        b"garbage",
        b"-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n",
        _pem(private_key.public_key())[:-40],
        private_pem,
        der,
    ]:
        with pytest.raises(CheckpointError, match="not a PEM public key"):
            load_public_key(garbage)


# ------------------------------------------------------- airlock's form, byte for byte (§2)


def _sign_body(private_key: ec.EllipticCurvePrivateKey, text: str, name: str = ORIGIN) -> str:
    """A note over any ``text``, validly signed: only the form rules can refuse it."""
    der = _signer(private_key)(text.encode())
    blob = base64.b64encode(key_hint(private_key.public_key()) + der).decode()
    return f"{text}\n{DASH} {name} {blob}\n"


def _unused_bits_set(data: bytes) -> str:
    text = base64.b64encode(data).decode()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    stem = text.rstrip("=")
    changed = stem[:-1] + alphabet[alphabet.index(stem[-1]) ^ 1] + text[len(stem) :]
    assert base64.b64decode(changed) == data and changed != text
    return changed


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda n: n.replace("\n", "\r\n"), "has a CR (U+000D): lines end with LF only"),
        (lambda n: n.replace("\n", "\r"), "has a CR (U+000D): lines end with LF only"),
        (lambda n: n.replace("\n\n", "\n\r\n"), "has a CR (U+000D)"),
        (lambda n: n[:-1] + "\r\n", "has a CR (U+000D)"),
        (lambda n: "\t" + n, "holds the control character U+0009"),
        (lambda n: n.replace(ORIGIN, ORIGIN + "\x00"), "holds the control character U+0000"),
        (lambda n: n + f"{DASH} w\x7f AAAAAAAA\n", "holds the control character U+007F"),
        (lambda n: "\ufeff" + n, "bad origin"),
        (
            lambda n: n.replace(ROOT_B64, _unused_bits_set(ROOT)),
            "the root is not canonical base64",
        ),
        (
            lambda n: n[: n.rindex(" ") + 1] + _unused_bits_set(b"\x30" * 74) + "\n",
            "a signature is not canonical base64",
        ),
        (lambda n: n.replace(f"{DASH} {ORIGIN}", f"{DASH} a+b"), "bad key name 'a+b'"),
    ],
    ids=[
        "crlf",
        "cr-only",
        "crlf-blank-line",
        "crlf-last",
        "tab",
        "nul",
        "del",
        "bom",
        "root-unused-bits",
        "signature-unused-bits",
        "key-name-plus",
    ],
)
def test_notes_outside_airlocks_form(note: str, make: Callable[[str], str], message: str) -> None:
    bad = make(note)
    assert bad != note
    with pytest.raises(CheckpointError, match=re.escape(message)):
        parse_note(bad)


def test_an_extension_line_is_refused_even_when_signed(
    private_key: ec.EllipticCurvePrivateKey,
) -> None:
    """C2SP tlog-checkpoint allows extension lines after the root; airlock's checkpoints
    have none, so a four-line body is not one of its notes (even with a good signature)."""
    signed = _sign_body(private_key, f"{ORIGIN}\n{SIZE}\n{ROOT_B64}\nextension line\n")
    with pytest.raises(CheckpointError, match=r"has 4 lines, not 3 .*extension lines"):
        verify_note(signed, private_key.public_key(), ORIGIN)


def test_two_signature_lines_by_one_key_are_refused(
    private_key: ec.EllipticCurvePrivateKey, note: str
) -> None:
    """Which of two lines would a verifier try? Refusing both makes every verifier agree."""
    again = _sign_body(private_key, parse_note(note).body).split("\n\n", 1)[1]
    assert again != note.split("\n\n", 1)[1]  # ECDSA: another valid signature
    for doubled in (note + again, note + note.split("\n\n", 1)[1]):
        with pytest.raises(CheckpointError, match=f"2 signature lines by key '{ORIGIN}'"):
            verify_note(doubled, private_key.public_key(), ORIGIN)
