"""Unit tests for airlock.signer.evm.

eth-account is the independent reference here: it recovers, decodes and signs the same
transactions, and must agree byte for byte. The key is a software double of an HSM key
(raw r||s, no recovery id, high-s about half the time, like SoftHSM).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
import rlp
from coincurve import PrivateKey
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airlock.errors import InvalidInput
from airlock.hsm.interface import EcdsaSigningKey
from airlock.signer.evm import (
    MAX_CHAIN_ID,
    SECP256K1_N,
    InvalidTransaction,
    SignatureError,
    address_from_public_key,
    make_intent,
    normalise_low_s,
    recovery_id,
    sign_transaction,
    signing_digest,
    signing_payload,
)

HALF_N = SECP256K1_N // 2

# --------------------------------------------------------------------------- test double


@dataclass(frozen=True)
class SoftwareKey:
    """An in-memory stand-in for an HSM secp256k1 key.

    Returns raw r||s like CKM_ECDSA. With ``high_s`` it returns the high-s twin whenever
    the digest's first byte is odd (so ~half the time, deterministically), as SoftHSM does.
    """

    secret: bytes
    label: str = "test-key"
    curve: str = "secp256k1"
    high_s: bool = True

    @property
    def public_key(self) -> bytes:
        return PrivateKey(self.secret).public_key.format(compressed=False)

    @property
    def address(self) -> str:
        return Account.from_key(self.secret).address

    def sign_digest(self, digest: bytes) -> bytes:
        sig = PrivateKey(self.secret).sign_recoverable(digest, hasher=None)
        r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big")
        if self.high_s and digest[0] & 1:
            s = SECP256K1_N - s
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@dataclass(frozen=True)
class LyingKey(SoftwareKey):
    """Reports one public key but signs with another secret: a mislabelled or buggy token."""

    reported: bytes = b""

    @property
    def public_key(self) -> bytes:
        return self.reported


@dataclass(frozen=True)
class FixedSignatureKey(SoftwareKey):
    """Returns a fixed byte string as the signature, whatever the digest."""

    signature: bytes = b""

    def sign_digest(self, digest: bytes) -> bytes:
        return self.signature


EIP155_KEY = SoftwareKey(b"\x46" * 32)
OTHER_SECRET = b"\x01" * 32
ADDRESS = "0x3535353535353535353535353535353535353535"
CHECKSUMMED = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # from the EIP-55 spec


def valid_kwargs(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "chain_id": 1,
        "nonce": 0,
        "to": CHECKSUMMED,
        "value": 1,
        "gas": 21_000,
        "max_fee_per_gas": 30 * 10**9,
        "max_priority_fee_per_gas": 10**9,
    }
    kwargs.update(overrides)
    return kwargs


def legacy_kwargs(**overrides: Any) -> dict[str, Any]:
    return valid_kwargs(
        max_fee_per_gas=None, max_priority_fee_per_gas=None, gas_price=10**9, **overrides
    )


# --------------------------------------------------------------------------- strategies

secrets = st.integers(1, SECP256K1_N - 1).map(lambda k: k.to_bytes(32, "big"))
addresses_raw = st.binary(min_size=20, max_size=20)
address_text = st.one_of(
    addresses_raw.map(lambda b: "0x" + b.hex()),
    addresses_raw.map(lambda b: to_checksum_address(b)),
)
storage_keys = st.binary(min_size=32, max_size=32)
access_lists = st.lists(
    st.tuples(addresses_raw, st.lists(storage_keys, max_size=3)), max_size=3
).map(
    lambda entries: [
        {"address": to_checksum_address(a), "storageKeys": ["0x" + k.hex() for k in keys]}
        for a, keys in entries
    ]
)
uint256 = st.integers(0, 2**256 - 1)
small_or_huge = st.one_of(st.integers(0, 10**30), uint256)


@st.composite
def intents_kwargs(draw: st.DrawFn, tx_type: int) -> dict[str, Any]:
    """make_intent keyword arguments for a valid transaction of ``tx_type``."""
    to = draw(st.one_of(st.none(), address_text))
    data = draw(st.binary(min_size=1 if to is None else 0, max_size=120))
    kwargs: dict[str, Any] = {
        "tx_type": tx_type,
        "chain_id": draw(st.one_of(st.integers(1, 100_000), st.integers(1, MAX_CHAIN_ID))),
        "nonce": draw(st.integers(0, 2**64 - 2)),
        "to": to,
        "value": draw(small_or_huge),
        "gas": draw(st.integers(21_000, 2**64 - 1)),
        "data": data if draw(st.booleans()) else "0x" + data.hex(),
    }
    if tx_type == 2:
        max_fee = draw(small_or_huge)
        kwargs["max_fee_per_gas"] = max_fee
        kwargs["max_priority_fee_per_gas"] = draw(st.integers(0, max_fee))
    else:
        kwargs["gas_price"] = draw(small_or_huge)
    if tx_type in (1, 2):
        kwargs["access_list"] = draw(access_lists)
    return kwargs


def eth_account_dict(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The same transaction in eth-account's JSON-RPC shaped dict."""
    data = kwargs["data"]
    tx: dict[str, Any] = {
        "chainId": kwargs["chain_id"],
        "nonce": kwargs["nonce"],
        "to": to_checksum_address(kwargs["to"]) if kwargs["to"] else "",
        "value": kwargs["value"],
        "gas": kwargs["gas"],
        "data": data if isinstance(data, bytes) else bytes.fromhex(data[2:]),
    }
    if kwargs["tx_type"] == 2:
        tx["type"] = 2
        tx["maxFeePerGas"] = kwargs["max_fee_per_gas"]
        tx["maxPriorityFeePerGas"] = kwargs["max_priority_fee_per_gas"]
    else:
        tx["gasPrice"] = kwargs["gas_price"]
    if kwargs["tx_type"] == 1:
        tx["type"] = 1
    if kwargs["tx_type"] in (1, 2):
        tx["accessList"] = kwargs["access_list"]
    return tx


def check_against_eth_account(secret: bytes, kwargs: dict[str, Any]) -> None:
    key = SoftwareKey(secret)
    intent = make_intent(**kwargs)
    signed = sign_transaction(intent, key)

    assert Account.recover_transaction(signed.raw) == key.address == signed.sender
    assert signed.hash == keccak(signed.raw)
    assert 1 <= signed.s <= HALF_N
    assert (signed.tx_type, signed.nonce, signed.chain_id) == (
        kwargs["tx_type"],
        kwargs["nonce"],
        kwargs["chain_id"],
    )
    reference = Account.sign_transaction(eth_account_dict(kwargs), secret)
    assert signed.raw == bytes(reference.raw_transaction)
    assert signed.hash == bytes(reference.hash)
    assert (signed.v, signed.r, signed.s) == (reference.v, reference.r, reference.s)
    assert_decodes_to(signed.raw, intent)


def assert_decodes_to(raw: bytes, intent: Any) -> None:
    """Decode ``raw`` independently and compare every field with the intent."""
    to = b"" if intent.to is None else bytes.fromhex(intent.to[2:])
    if intent.tx_type == 0:
        nonce, gas_price, gas, dec_to, value, data, v, _r, _s = rlp.decode(raw)
        ints = [int.from_bytes(x, "big") for x in (nonce, gas_price, gas, value, v)]
        assert ints[:4] == [intent.nonce, intent.gas_price, intent.gas, intent.value]
        assert ints[4] in (35 + 2 * intent.chain_id, 36 + 2 * intent.chain_id)
        assert (dec_to, data) == (to, intent.data)
        return
    decoded = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
    assert decoded["type"] == intent.tx_type
    assert decoded["chainId"] == intent.chain_id
    assert decoded["nonce"] == intent.nonce
    assert bytes(decoded.get("to") or b"") == to
    assert decoded["value"] == intent.value
    assert bytes(decoded["data"]) == intent.data
    assert decoded["gas"] == intent.gas
    if intent.tx_type == 1:
        assert decoded["gasPrice"] == intent.gas_price
    else:
        assert decoded["maxFeePerGas"] == intent.max_fee_per_gas
        assert decoded["maxPriorityFeePerGas"] == intent.max_priority_fee_per_gas
    access = tuple(
        (to_checksum_address(entry["address"]), tuple(k.to_bytes(32, "big") for k in keys))
        for entry in decoded["accessList"]
        for keys in [entry["storageKeys"]]
    )
    assert access == intent.access_list


PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- properties


@PROPERTY
@given(secret=secrets, kwargs=intents_kwargs(0))
def test_type0_matches_eth_account(secret: bytes, kwargs: dict[str, Any]) -> None:
    check_against_eth_account(secret, kwargs)


@PROPERTY
@given(secret=secrets, kwargs=intents_kwargs(1))
def test_type1_matches_eth_account(secret: bytes, kwargs: dict[str, Any]) -> None:
    check_against_eth_account(secret, kwargs)


@PROPERTY
@given(secret=secrets, kwargs=intents_kwargs(2))
def test_type2_matches_eth_account(secret: bytes, kwargs: dict[str, Any]) -> None:
    check_against_eth_account(secret, kwargs)


@settings(max_examples=50, deadline=None)
@given(kwargs=st.one_of(intents_kwargs(0), intents_kwargs(1), intents_kwargs(2)))
def test_normalised_intent_round_trips_through_make_intent(kwargs: dict[str, Any]) -> None:
    """A fee ladder derives intents by feeding fields back in: that must be lossless."""
    intent = make_intent(**kwargs)
    again = make_intent(
        tx_type=intent.tx_type,
        chain_id=intent.chain_id,
        nonce=intent.nonce,
        to=intent.to,
        value=intent.value,
        gas=intent.gas,
        data=intent.data,
        gas_price=intent.gas_price,
        max_fee_per_gas=intent.max_fee_per_gas,
        max_priority_fee_per_gas=intent.max_priority_fee_per_gas,
        access_list=intent.access_list if intent.tx_type else None,
    )
    assert again == intent


def test_double_really_produces_high_s_and_signer_normalises_it() -> None:
    key = SoftwareKey(b"\x46" * 32)
    raw_high = 0
    for nonce in range(40):
        intent = make_intent(**valid_kwargs(nonce=nonce))
        raw_s = int.from_bytes(key.sign_digest(signing_digest(intent))[32:], "big")
        raw_high += raw_s > HALF_N
        signed = sign_transaction(intent, key)
        assert signed.s <= HALF_N
        assert Account.recover_transaction(signed.raw) == key.address
    assert 5 <= raw_high <= 35


def test_double_satisfies_the_key_protocol() -> None:
    assert isinstance(EIP155_KEY, EcdsaSigningKey)


# --------------------------------------------------------------------------- known vector


def test_eip155_example_vector() -> None:
    """The worked example from EIP-155 itself."""
    intent = make_intent(
        chain_id=1,
        nonce=9,
        gas_price=20 * 10**9,
        gas=21_000,
        to=ADDRESS,
        value=10**18,
    )
    assert intent.tx_type == 0
    assert signing_payload(intent).hex() == (
        "ec098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080018080"
    )
    assert signing_digest(intent).hex() == (
        "daf5a779ae972f972197303d7b574746c7ef83eadac0f2791ad23db92e4c8e53"
    )
    signed = sign_transaction(intent, EIP155_KEY)
    assert signed.v == 37
    assert signed.r == 18515461264373351373200002665853028612451056578545711640558177340181847433846
    assert signed.s == 46948507304638947509940763649030358759909902576025900602547168820602576006531
    assert signed.raw_hex == (
        "0xf86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a76400"
        "008025a028ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276a067cbe9d899"
        "7f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83"
    )
    assert signed.hash_hex == "0x" + keccak(signed.raw).hex()
    assert signed.sender == "0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F"


# --------------------------------------------------------------------------- helpers


def test_address_from_public_key_accepts_65_and_64_bytes() -> None:
    public = EIP155_KEY.public_key
    assert address_from_public_key(public) == EIP155_KEY.address
    assert address_from_public_key(public[1:]) == EIP155_KEY.address


@pytest.mark.parametrize("public", [b"\x04" * 33, b"\x05" + b"\x01" * 64, b"\x04" + b"\x01" * 64])
def test_address_from_public_key_rejects_bad_keys(public: bytes) -> None:
    with pytest.raises(SignatureError, match="public key"):
        address_from_public_key(public)


def test_normalise_low_s() -> None:
    assert normalise_low_s(5, HALF_N) == (5, HALF_N)
    assert normalise_low_s(5, HALF_N + 1) == (5, SECP256K1_N - HALF_N - 1)
    assert normalise_low_s(5, SECP256K1_N - 1) == (5, 1)


def test_recovery_id_flips_with_s() -> None:
    digest = keccak(b"airlock")
    sig = PrivateKey(b"\x46" * 32).sign_recoverable(digest, hasher=None)
    r, s, recid = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]
    assert recovery_id(digest, r, s, EIP155_KEY.public_key) == recid
    assert recovery_id(digest, r, SECP256K1_N - s, EIP155_KEY.public_key) == 1 - recid


# --------------------------------------------------------------------------- normalisation


def test_integers_accept_decimal_and_hex_strings() -> None:
    intent = make_intent(
        **valid_kwargs(
            chain_id="137",
            nonce="0x10",
            value="1000000000000000000",
            gas="21000",
            max_fee_per_gas="0x3b9aca00",
            max_priority_fee_per_gas="1",
        )
    )
    assert (intent.chain_id, intent.nonce, intent.value, intent.gas) == (137, 16, 10**18, 21000)
    assert (intent.max_fee_per_gas, intent.max_priority_fee_per_gas) == (10**9, 1)


@pytest.mark.parametrize("to", [CHECKSUMMED.lower(), "0x" + CHECKSUMMED[2:].upper(), CHECKSUMMED])
def test_address_normalised_to_checksum(to: str) -> None:
    assert make_intent(**valid_kwargs(to=to)).to == CHECKSUMMED


def test_type_inference() -> None:
    assert make_intent(**valid_kwargs()).tx_type == 2
    assert make_intent(**legacy_kwargs()).tx_type == 0
    assert make_intent(**legacy_kwargs(access_list=[])).tx_type == 1
    listed = [{"address": ADDRESS, "storageKeys": ["0x" + "00" * 32]}]
    intent = make_intent(**legacy_kwargs(access_list=json.dumps(listed)))
    assert intent.tx_type == 1
    assert intent.access_list == ((to_checksum_address(ADDRESS), (b"\x00" * 32,)),)
    assert make_intent(**legacy_kwargs(tx_type=1)).access_list == ()


@pytest.mark.parametrize("data", ["", "0x", b""])
def test_empty_data(data: Any) -> None:
    assert make_intent(**valid_kwargs(data=data)).data == b""


def test_contract_creation() -> None:
    intent = make_intent(**valid_kwargs(to=None, data="0x6000", gas=60_000))
    assert intent.is_contract_creation
    signed = sign_transaction(intent, EIP155_KEY)
    assert TypedTransaction.from_bytes(HexBytes(signed.raw)).as_dict().get("to") in (None, b"")
    assert make_intent(**valid_kwargs(to="", data="0x6000")).to is None


# --------------------------------------------------------------------------- bad input


BAD_INPUTS = [
    pytest.param(
        {"to": CHECKSUMMED[:-1] + CHECKSUMMED[-1].swapcase()},
        r"bad EIP-55 checksum.*copy the address again",
        id="bad-checksum",
    ),
    pytest.param({"to": "0x1234"}, r"has 4 hex digits, an address has 40", id="short-address"),
    pytest.param({"to": "0x" + "g" * 40}, r"contains non-hex characters", id="nonhex-address"),
    pytest.param({"to": "35" * 20}, r"must start with 0x", id="address-no-prefix"),
    pytest.param({"value": -1}, r"value must not be negative", id="negative-value"),
    pytest.param({"value": "-1"}, r"value must not be negative", id="negative-value-text"),
    pytest.param({"value": "1.5"}, r"value must be a whole number", id="fractional-value"),
    pytest.param({"value": "1e18"}, r"value must be a whole number", id="exponent-value"),
    pytest.param({"value": "abc"}, r"value must be a whole number", id="word-value"),
    pytest.param({"value": ""}, r"value must be a whole number", id="empty-value"),
    pytest.param({"value": 1.0}, r"value must be a whole number.*float", id="float-value"),
    pytest.param({"value": True}, r"value must be a whole number.*bool", id="bool-value"),
    pytest.param({"value": 2**256}, r"value is too large", id="huge-value"),
    pytest.param({"nonce": 2**64 - 1}, r"nonce is too large", id="eip2681-nonce"),
    pytest.param({"gas": 20_999}, r"gas must be at least 21000", id="low-gas"),
    pytest.param({"gas": 2**64}, r"gas is too large", id="huge-gas"),
    pytest.param(
        {"max_priority_fee_per_gas": 31 * 10**9},
        r"max_priority_fee_per_gas \(31000000000\) is greater than max_fee_per_gas",
        id="priority-above-max",
    ),
    pytest.param({"chain_id": None}, r"chain_id is required", id="missing-chain"),
    pytest.param({"chain_id": 0}, r"chain_id must be at least 1", id="chain-zero"),
    pytest.param({"chain_id": 2**64}, r"chain_id is too large", id="huge-chain"),
    pytest.param(
        {"tx_type": 2, "gas_price": 1, "max_fee_per_gas": None, "max_priority_fee_per_gas": None},
        r"gas_price is not used by type 2",
        id="gas-price-with-type2",
    ),
    pytest.param(
        {"gas_price": 1}, r"gas_price cannot be combined with max_fee", id="gas-price-and-1559"
    ),
    pytest.param(
        {"max_fee_per_gas": None, "max_priority_fee_per_gas": None},
        r"no fee given",
        id="missing-fees",
    ),
    pytest.param(
        {"max_priority_fee_per_gas": None},
        r"max_priority_fee_per_gas is missing",
        id="missing-priority",
    ),
    pytest.param({"tx_type": 1}, r"not used by type 1", id="1559-fees-with-type1"),
    pytest.param({"tx_type": 3}, r"transaction type 3 is not supported", id="type3"),
    pytest.param({"data": "0x123"}, r"odd number of hex digits \(3\)", id="odd-data"),
    pytest.param({"data": "0xzz"}, r"data contains non-hex characters", id="nonhex-data"),
    pytest.param({"data": "1234"}, r"data must start with 0x", id="data-no-prefix"),
    pytest.param(
        {"to": None, "data": "0x"}, r"no recipient \('to'\) and no data", id="empty-creation"
    ),
    pytest.param(
        {"access_list": [{"address": ADDRESS, "storageKeys": ["0x01"]}]},
        r"access_list\[0\]\.storageKeys\[0\] must be a 32-byte storage key",
        id="short-storage-key",
    ),
    pytest.param(
        {"access_list": [{"address": ADDRESS, "storageKeys": ["0x" + "zz" * 32]}]},
        r"must be a 32-byte storage key",
        id="nonhex-storage-key",
    ),
    pytest.param(
        {"access_list": '[{"address": "0x35",}]'},
        r"access_list is not valid JSON",
        id="bad-access-list-json",
    ),
    pytest.param(
        {"access_list": {"address": ADDRESS, "storageKeys": []}},
        r"access_list must be a list",
        id="access-list-not-list",
    ),
    pytest.param(
        {"access_list": [{"address": ADDRESS, "storagekeys": []}]},
        r"access_list\[0\] must have exactly the keys",
        id="access-list-misspelt-key",
    ),
    pytest.param(
        {"access_list": [{"address": "0x35", "storageKeys": []}]},
        r"access_list\[0\]\.address '0x35' has 2 hex digits",
        id="access-list-bad-address",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_INPUTS)
def test_bad_input_is_refused_with_specific_message(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidTransaction, match=message):
        make_intent(**valid_kwargs(**overrides))


def test_type0_with_access_list_is_refused() -> None:
    listed = [{"address": ADDRESS, "storageKeys": []}]
    with pytest.raises(InvalidTransaction, match=r"type 0 \(legacy\).*cannot carry an access"):
        make_intent(**legacy_kwargs(tx_type=0, access_list=listed))


def test_invalid_transaction_is_invalid_input() -> None:
    """The CLI catches InvalidInput (and ValueError) at the edge."""
    with pytest.raises(InvalidInput):
        make_intent(**valid_kwargs(value="1.5"))


# --------------------------------------------------------------------------- bad keys


def test_wrong_curve_key_is_refused() -> None:
    key = SoftwareKey(b"\x46" * 32, label="audit-p256", curve="p256")
    with pytest.raises(SignatureError, match=r"'audit-p256' is on curve 'p256'.*secp256k1"):
        sign_transaction(make_intent(**valid_kwargs()), key)


def test_key_whose_signatures_do_not_recover_is_refused() -> None:
    key = LyingKey(OTHER_SECRET, reported=EIP155_KEY.public_key)
    with pytest.raises(SignatureError, match=r"does not recover to the key's public key"):
        sign_transaction(make_intent(**valid_kwargs()), key)


@pytest.mark.parametrize(
    ("signature", "message"),
    [
        pytest.param(b"\x01" * 70, r"returned a 70-byte signature", id="der-length"),
        pytest.param(b"\x00" * 32 + b"\x01" * 32, r"signature r is out of range", id="r-zero"),
        pytest.param(
            b"\x01" * 32 + SECP256K1_N.to_bytes(32, "big"),
            r"signature s is out of range",
            id="s-equals-n",
        ),
    ],
)
def test_malformed_signature_is_refused(signature: bytes, message: str) -> None:
    key = FixedSignatureKey(b"\x46" * 32, signature=signature)
    with pytest.raises(SignatureError, match=message):
        sign_transaction(make_intent(**valid_kwargs()), key)
