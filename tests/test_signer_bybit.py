"""Tests for airlock.signer.bybit: intents, orderLinkIds, intent signatures, request signing.

Python's ``hmac`` and ``cryptography`` are the independent references; the HSM paths use the
session's real SoftHSM token (``keyring`` fixture).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from decimal import Decimal
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.kits.labels import unique_label

from airlock.errors import InvalidInput
from airlock.hsm.keyring import HsmEcdsaKey, KeyRing
from airlock.signer.bybit import (
    OrderIntent,
    auth_headers,
    canonical_decimal,
    create_order_body,
    hmac_signature,
    intent_bytes,
    make_order_intent,
    order_link_id_for,
    rsa_signature,
    sign_intent,
    signing_payload,
    verify_intent,
)

# The public HMAC vector from ../shared/design/facts-bybit-v5.md.
VECTOR_KEY = "test_api_key"
VECTOR_SECRET = b"test_secret"
VECTOR_TS = 1700000000000
VECTOR_WINDOW = 5000
VECTOR_QUERY = "category=linear&symbol=BTCUSDT"
VECTOR_HEX = "fd4f31228a46109dc6673062328693696df9a96c7ff04e6491a45e7f63a0fdd7"

SECRET_36 = b"AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"  # Bybit API secrets are 36 characters
LINK_ID = order_link_id_for("item-1")
_DROP = object()  # an override that removes the field


def limit_raw(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "category": "linear",
        "symbol": "BTCUSDT",
        "side": "Buy",
        "order_type": "Limit",
        "qty": "0.010",
        "price": "65000.50",
        "time_in_force": "GTC",
        "reduce_only": False,
        "order_link_id": LINK_ID,
    }
    raw.update(overrides)
    return {k: v for k, v in raw.items() if v is not _DROP}


def market_raw(**overrides: Any) -> dict[str, Any]:
    market: dict[str, Any] = {"order_type": "Market", "price": _DROP, "time_in_force": _DROP}
    return limit_raw(**{**market, **overrides})


@pytest.fixture
def p256_key(keyring: KeyRing) -> tuple[HsmEcdsaKey, bytes]:
    label = unique_label("intent")
    keyring.generate("p256", label)
    return keyring.ecdsa_key(label, curve="p256"), keyring.public_key_pem(label).encode()


# ----------------------------------------------------------------------------- intents


def test_limit_intent_is_canonicalised() -> None:
    intent = make_order_intent(**limit_raw())
    assert intent == OrderIntent(
        category="linear",
        symbol="BTCUSDT",
        side="Buy",
        order_type="Limit",
        qty="0.01",
        price="65000.5",
        time_in_force="GTC",
        reduce_only=False,
        order_link_id=LINK_ID,
    )


def test_defaults() -> None:
    limit = make_order_intent(**limit_raw(time_in_force=_DROP, reduce_only=_DROP))
    assert (limit.time_in_force, limit.reduce_only) == ("GTC", False)
    market = make_order_intent(**market_raw())
    assert (market.price, market.time_in_force) == (None, "IOC")


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("1.50", "1.5"),
        ("1.5", "1.5"),
        ("01.5", "1.5"),
        ("100", "100"),
        ("100.000", "100"),
        ("0.00000001", "0.00000001"),
        ("1" * 40 + "." + "0" * 39 + "1", "1" * 40 + "." + "0" * 39 + "1"),
        (7, "7"),
        (Decimal("1E+2"), "100"),
        (Decimal("2.50"), "2.5"),
        (Decimal("1." + "0" * 150), "1"),
        (Decimal("1E-40"), "0." + "0" * 39 + "1"),
    ],
)
def test_decimal_spellings(spelling: Any, canonical: str) -> None:
    assert canonical_decimal("qty", spelling) == canonical


def test_intent_bytes_stable_across_spellings() -> None:
    a = make_order_intent(**limit_raw(qty="1.50", price="65000.50"))
    b = make_order_intent(**limit_raw(qty="1.5", price="065000.5"))
    c = make_order_intent(**limit_raw(qty=Decimal("1.500"), price="65000.5000"))
    assert intent_bytes(a) == intent_bytes(b) == intent_bytes(c)
    assert intent_bytes(a) == (
        b'{"category":"linear","orderLinkId":"' + LINK_ID.encode() + b'","orderType":"Limit",'
        b'"price":"65000.5","qty":"1.5","reduceOnly":false,"side":"Buy","symbol":"BTCUSDT",'
        b'"timeInForce":"GTC","type":"bybit.order","v":1}'
    )


def test_market_intent_bytes_carry_null_price() -> None:
    data = json.loads(intent_bytes(make_order_intent(**market_raw())))
    assert data["price"] is None and data["timeInForce"] == "IOC"


def test_create_order_body() -> None:
    limit = json.loads(create_order_body(make_order_intent(**limit_raw())))
    assert limit == {
        "category": "linear",
        "symbol": "BTCUSDT",
        "side": "Buy",
        "orderType": "Limit",
        "qty": "0.01",
        "price": "65000.5",
        "timeInForce": "GTC",
        "reduceOnly": False,
        "orderLinkId": LINK_ID,
    }
    assert "price" not in json.loads(create_order_body(make_order_intent(**market_raw())))


INVALID = [
    # (overrides, builder, message fragment)
    ({"qty": "-1"}, limit_raw, "qty must be a positive decimal, got '-1'"),
    ({"qty": "0"}, limit_raw, "qty must be a positive decimal, got '0'"),
    ({"qty": "0.000"}, limit_raw, "qty must be a positive decimal, got '0.000'"),
    ({"qty": "1e3"}, limit_raw, "qty must be a positive decimal, got '1e3'"),
    ({"qty": "NaN"}, limit_raw, "qty must be a positive decimal, got 'NaN'"),
    ({"qty": "Infinity"}, limit_raw, "qty must be a positive decimal, got 'Infinity'"),
    ({"qty": " 1"}, limit_raw, "qty must be a positive decimal, got ' 1'"),
    ({"qty": "1_000"}, limit_raw, "qty must be a positive decimal, got '1_000'"),
    ({"qty": "+1"}, limit_raw, "qty must be a positive decimal, got '+1'"),
    ({"qty": ".5"}, limit_raw, "qty must be a positive decimal, got '.5'"),
    ({"qty": "5."}, limit_raw, "qty must be a positive decimal, got '5.'"),
    ({"qty": "\u0661"}, limit_raw, "qty must be a positive decimal"),  # Arabic-Indic one
    ({"qty": "1" * 41}, limit_raw, "at most 40+40 digits"),
    ({"qty": 0.1}, limit_raw, "not a float"),
    ({"qty": True}, limit_raw, "not a bool"),
    ({"qty": -3}, limit_raw, "qty must be a positive decimal, got -3"),
    ({"qty": Decimal("NaN")}, limit_raw, "qty must be a positive decimal"),
    ({"qty": Decimal("-1")}, limit_raw, "qty must be a positive decimal"),
    ({"qty": ["1"]}, limit_raw, "expected a string"),
    ({"qty": Decimal("1E+40")}, limit_raw, "at most 40+40 digits"),
    ({"qty": Decimal("1E-41")}, limit_raw, "at most 40+40 digits"),
    ({"qty": 10**40}, limit_raw, "at most 40+40 digits"),
    ({"price": "-5"}, limit_raw, "price must be a positive decimal, got '-5'"),
    ({"price": _DROP}, limit_raw, "price is required for Limit orders"),
    ({"price": "100"}, market_raw, "price must be absent for Market orders, got '100'"),
    ({"time_in_force": "GTC"}, market_raw, "time_in_force must be IOC or absent for Market"),
    ({"time_in_force": "gtc"}, limit_raw, "time_in_force must be one of GTC | IOC | FOK"),
    ({"category": "option"}, limit_raw, "category must be one of linear | spot | inverse"),
    ({"category": "Linear"}, limit_raw, "category must be one of"),
    ({"side": "buy"}, limit_raw, "side must be one of Buy | Sell, got 'buy'"),
    ({"order_type": "Stop"}, limit_raw, "order_type must be one of Limit | Market"),
    ({"symbol": "btcusdt"}, limit_raw, "symbol must be 1-32 upper-case"),
    ({"symbol": "BTC-USDT"}, limit_raw, "symbol must be 1-32 upper-case"),
    ({"symbol": "B" * 33}, limit_raw, "symbol must be 1-32 upper-case"),
    ({"symbol": "BTCUSDT\n"}, limit_raw, "symbol must be 1-32 upper-case"),
    ({"symbol": "ＢＴＣ"}, limit_raw, "symbol must be 1-32 upper-case"),
    ({"symbol": ""}, limit_raw, "symbol must be 1-32 upper-case"),
    ({"reduce_only": "true"}, limit_raw, "reduce_only must be true or false, got 'true'"),
    ({"reduce_only": 1}, limit_raw, "reduce_only must be true or false, got 1"),
    ({"category": "spot", "reduce_only": True}, limit_raw, "not spot"),
    ({"order_link_id": "x" * 37}, limit_raw, "order_link_id must be 1-36 characters"),
    ({"order_link_id": ""}, limit_raw, "order_link_id must be 1-36 characters"),
    ({"order_link_id": "a b"}, limit_raw, "order_link_id must be 1-36 characters"),
    ({"order_link_id": "id\n"}, limit_raw, "order_link_id must be 1-36 characters"),
    ({"order_link_id": "ïd"}, limit_raw, "order_link_id must be 1-36 characters"),
    ({"order_link_id": _DROP}, limit_raw, "missing order field(s): order_link_id"),
    ({"qty": _DROP, "symbol": _DROP}, limit_raw, "missing order field(s): symbol, qty"),
    ({"leverage": "10"}, limit_raw, "unknown order field(s): leverage"),
]


@pytest.mark.parametrize(("overrides", "builder", "message"), INVALID)
def test_invalid_input_refused(overrides: dict[str, Any], builder: Any, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        make_order_intent(**builder(**overrides))
    assert message in str(caught.value)


def test_valid_variants_accepted() -> None:
    assert make_order_intent(**limit_raw(category="spot")).category == "spot"
    assert make_order_intent(**limit_raw(category="inverse", symbol="BTCUSD")).symbol == "BTCUSD"
    assert make_order_intent(**limit_raw(time_in_force="PostOnly")).time_in_force == "PostOnly"
    assert make_order_intent(**market_raw(time_in_force="IOC", side="Sell")).side == "Sell"
    assert make_order_intent(**limit_raw(reduce_only=True)).reduce_only is True
    assert make_order_intent(**limit_raw(order_link_id="A_b-9" * 7 + "z")).order_link_id


# ----------------------------------------------------------------------------- orderLinkId

_LINK_RULE = re.compile(r"[0-9A-Za-z_-]{1,36}")


def test_order_link_id_shape_and_determinism() -> None:
    link = order_link_id_for("01J9Z3-queue-item-42")
    assert link == order_link_id_for("01J9Z3-queue-item-42")
    assert _LINK_RULE.fullmatch(link) and len(link) == 35
    assert link.startswith("al-") and link == link.lower()
    assert order_link_id_for("a") != order_link_id_for("A")
    assert order_link_id_for("ok") != "ok"  # never the key itself


def test_order_link_id_known_value() -> None:
    """Pin the derivation: changing it would re-place every queued order under a new id."""
    digest = hashlib.sha256(b"airlock/bybit/orderLinkId/v1\x00item-1").digest()[:20]
    assert order_link_id_for("item-1") == "al-" + base64.b32encode(digest).decode().lower()


@pytest.mark.parametrize("bad", ["", "x" * 1025, "\ud800", None, 42])
def test_order_link_id_bad_keys(bad: Any) -> None:
    with pytest.raises(InvalidInput, match="idempotency key"):
        order_link_id_for(bad)


@settings(max_examples=300)
@given(
    st.lists(
        st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=200),
        min_size=2,
        max_size=20,
        unique=True,
    )
)
def test_order_link_id_property(keys: list[str]) -> None:
    links = [order_link_id_for(k) for k in keys]
    assert len(set(links)) == len(keys)
    for key, link in zip(keys, links, strict=True):
        assert _LINK_RULE.fullmatch(link)
        assert link == order_link_id_for(key)
        make_order_intent(**limit_raw(order_link_id=link))  # accepted by the intent rule


# ----------------------------------------------------------------------------- intent signatures


def test_sign_verify_round_trip(p256_key: tuple[HsmEcdsaKey, bytes]) -> None:
    key, pem = p256_key
    intent = make_order_intent(**limit_raw())
    signature = sign_intent(key, intent)
    assert verify_intent(pem, intent, signature)
    # independent check with cryptography directly over the canonical bytes
    public = serialization.load_pem_public_key(pem)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, intent_bytes(intent), ec.ECDSA(hashes.SHA256()))
    # a differently spelled but equal intent verifies with the same signature
    respelled = make_order_intent(**limit_raw(qty="0.0100", price="65000.500"))
    assert verify_intent(pem, respelled, signature)


@pytest.mark.parametrize(
    "changes",
    [
        {"qty": "0.011"},
        {"price": "65000.6"},
        {"side": "Sell"},
        {"symbol": "ETHUSDT"},
        {"category": "inverse"},
        {"time_in_force": "IOC"},
        {"reduce_only": True},
        {"order_link_id": order_link_id_for("item-2")},
    ],
)
def test_tampered_intent_fails(p256_key: tuple[HsmEcdsaKey, bytes], changes: dict) -> None:
    key, pem = p256_key
    intent = make_order_intent(**limit_raw())
    signature = sign_intent(key, intent)
    assert not verify_intent(pem, make_order_intent(**limit_raw(**changes)), signature)


def test_market_switch_fails(p256_key: tuple[HsmEcdsaKey, bytes]) -> None:
    key, pem = p256_key
    signature = sign_intent(key, make_order_intent(**limit_raw()))
    assert not verify_intent(pem, make_order_intent(**market_raw()), signature)


def test_other_key_fails(keyring: KeyRing, p256_key: tuple[HsmEcdsaKey, bytes]) -> None:
    _, pem = p256_key
    other_label = unique_label("intent-other")
    keyring.generate("p256", other_label)
    other = keyring.ecdsa_key(other_label, curve="p256")
    intent = make_order_intent(**limit_raw())
    forged = sign_intent(other, intent)
    assert not verify_intent(pem, intent, forged)
    assert verify_intent(keyring.public_key_pem(other_label).encode(), intent, forged)


@pytest.mark.parametrize("garbage", [b"", b"\x30\x00", b"\x00" * 64, b"\xff" * 72])
def test_malformed_signature_is_false(p256_key: tuple[HsmEcdsaKey, bytes], garbage: bytes) -> None:
    _, pem = p256_key
    assert verify_intent(pem, make_order_intent(**limit_raw()), garbage) is False


def test_truncated_signature_is_false(p256_key: tuple[HsmEcdsaKey, bytes]) -> None:
    key, pem = p256_key
    intent = make_order_intent(**limit_raw())
    signature = sign_intent(key, intent)
    assert verify_intent(pem, intent, signature[:-1]) is False
    assert verify_intent(pem, intent, signature + b"\x00") is False


def test_bad_public_key_raises(keyring: KeyRing) -> None:
    with pytest.raises(InvalidInput, match="not a PEM public key"):
        verify_intent(b"nope", make_order_intent(**limit_raw()), b"")
    rsa_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(InvalidInput, match="P-256"):
        verify_intent(rsa_pem, make_order_intent(**limit_raw()), b"")


def test_sign_intent_refuses_wrong_length() -> None:
    class Broken:
        def sign_digest(self, digest: bytes) -> bytes:
            return b"\x01" * 65

    with pytest.raises(InvalidInput, match="65-byte signature"):
        sign_intent(Broken(), make_order_intent(**limit_raw()))


# ----------------------------------------------------------------------------- request signing


def test_signing_payload_get_and_post() -> None:
    get = signing_payload(VECTOR_TS, VECTOR_KEY, VECTOR_WINDOW, query=VECTOR_QUERY)
    assert get == b"1700000000000test_api_key5000category=linear&symbol=BTCUSDT"
    body = b'{"category":"linear","symbol":"BTCUSDT"}'
    post = signing_payload(VECTOR_TS, VECTOR_KEY, VECTOR_WINDOW, body=body)
    assert post == b"1700000000000test_api_key5000" + body
    assert signing_payload(VECTOR_TS, VECTOR_KEY, VECTOR_WINDOW, query="").endswith(b"5000")


def test_hmac_vector_in_python() -> None:
    payload = signing_payload(VECTOR_TS, VECTOR_KEY, VECTOR_WINDOW, query=VECTOR_QUERY)
    expected = hmac.new(VECTOR_SECRET, payload, hashlib.sha256).hexdigest()
    assert expected == VECTOR_HEX
    sign = lambda data: hmac.new(VECTOR_SECRET, data, hashlib.sha256).digest()  # noqa: E731
    assert hmac_signature(sign, payload) == VECTOR_HEX


def test_hmac_vector_through_hsm(keyring: KeyRing) -> None:
    """The vector's 11-byte secret through a real SoftHSM HMAC key.

    SoftHSM refuses HMAC secrets under 32 bytes, so the secret is imported zero-padded to 32.
    That is the same HMAC key: RFC 2104 zero-pads any key shorter than the hash's block size
    (64 bytes for SHA-256), so K and K || 00.. give identical MACs (checked first in Python).
    """
    padded = VECTOR_SECRET.ljust(32, b"\x00")
    payload = signing_payload(VECTOR_TS, VECTOR_KEY, VECTOR_WINDOW, query=VECTOR_QUERY)
    assert hmac.new(padded, payload, hashlib.sha256).hexdigest() == VECTOR_HEX
    label = unique_label("bybit-hmac")
    keyring.import_hmac_secret(label, padded)
    signature = hmac_signature(lambda data: keyring.hmac_sha256(label, data), payload)
    assert signature == VECTOR_HEX
    headers = auth_headers(VECTOR_KEY, VECTOR_TS, VECTOR_WINDOW, signature, "hmac")
    assert headers == {
        "X-BAPI-API-KEY": VECTOR_KEY,
        "X-BAPI-TIMESTAMP": "1700000000000",
        "X-BAPI-RECV-WINDOW": "5000",
        "X-BAPI-SIGN": VECTOR_HEX,
        "X-BAPI-SIGN-TYPE": "2",
    }


def test_hmac_post_body_through_hsm(keyring: KeyRing) -> None:
    label = unique_label("bybit-hmac")
    keyring.import_hmac_secret(label, SECRET_36)
    body = create_order_body(make_order_intent(**limit_raw()))
    payload = signing_payload(VECTOR_TS, VECTOR_KEY, 5000, body=body)
    via_hsm = hmac_signature(lambda data: keyring.hmac_sha256(label, data), payload)
    expected = hmac.new(SECRET_36, payload, hashlib.sha256).hexdigest()
    assert via_hsm == expected


def test_rsa_through_hsm(keyring: KeyRing) -> None:
    label = unique_label("bybit-rsa")
    keyring.generate("rsa2048", label)
    payload = signing_payload(VECTOR_TS, VECTOR_KEY, VECTOR_WINDOW, query=VECTOR_QUERY)
    signature = rsa_signature(lambda data: keyring.rsa_sign_sha256(label, data), payload)
    raw = base64.b64decode(signature, validate=True)
    assert len(raw) == 256
    public = serialization.load_pem_public_key(keyring.public_key_pem(label).encode())
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(raw, payload, padding.PKCS1v15(), hashes.SHA256())
    headers = auth_headers(VECTOR_KEY, VECTOR_TS, VECTOR_WINDOW, signature, "rsa")
    assert headers["X-BAPI-SIGN"] == signature and "X-BAPI-SIGN-TYPE" not in headers


REQUEST_INVALID = [
    (lambda: signing_payload(VECTOR_TS, VECTOR_KEY, 5000), "exactly one of body"),
    (lambda: signing_payload(VECTOR_TS, VECTOR_KEY, 5000, body=b"{}", query=""), "exactly one"),
    (lambda: signing_payload(VECTOR_TS, VECTOR_KEY, 5000, query="?a=1"), "must not start with"),
    (lambda: signing_payload(VECTOR_TS, VECTOR_KEY, 5000, query="a=b c"), "URL-encoded"),
    (lambda: signing_payload(VECTOR_TS, VECTOR_KEY, 5000, query="a=é"), "URL-encoded"),
    (lambda: signing_payload(VECTOR_TS, VECTOR_KEY, 5000, body="{}"), "exact bytes"),  # type: ignore[arg-type]
    (lambda: signing_payload(0, VECTOR_KEY, 5000, query=""), "timestamp_ms must be a positive"),
    (lambda: signing_payload(True, VECTOR_KEY, 5000, query=""), "timestamp_ms must be"),
    (lambda: signing_payload(1.5, VECTOR_KEY, 5000, query=""), "timestamp_ms must be"),  # type: ignore[arg-type]
    (lambda: signing_payload(VECTOR_TS, VECTOR_KEY, 0, query=""), "recv_window_ms must be"),
    (lambda: signing_payload(VECTOR_TS, VECTOR_KEY, 60_001, query=""), "at most 60000"),
    (lambda: signing_payload(VECTOR_TS, "", 5000, query=""), "api_key must be"),
    (lambda: signing_payload(VECTOR_TS, "key with space", 5000, query=""), "api_key must be"),
    (lambda: hmac_signature(lambda d: b"\x00" * 31, b"x"), "returned 31 bytes"),
    (lambda: rsa_signature(lambda d: b"\x00" * 10, b"x"), "returned 10 bytes"),
    (lambda: auth_headers(VECTOR_KEY, VECTOR_TS, 5000, VECTOR_HEX.upper(), "hmac"), "lower-case"),
    (lambda: auth_headers(VECTOR_KEY, VECTOR_TS, 5000, "not base64!", "rsa"), "base64"),
    (lambda: auth_headers(VECTOR_KEY, VECTOR_TS, 5000, VECTOR_HEX, "md5"), "sign_type must be"),  # type: ignore[arg-type]
    (lambda: auth_headers(VECTOR_KEY, VECTOR_TS, 0, VECTOR_HEX, "hmac"), "recv_window_ms"),
]


@pytest.mark.parametrize(("call", "message"), REQUEST_INVALID)
def test_request_invalid_input(call: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        call()
