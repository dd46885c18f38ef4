"""EIP-191 personal signatures from a real SoftHSM secp256k1 key, checked by eth_account."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import pytest
from coincurve import PrivateKey
from eth_account import Account
from eth_account.messages import defunct_hash_message, encode_defunct
from eth_utils import keccak

from airlock.signer import eip191
from airlock.signer.evm import SECP256K1_N, SignatureError, address_from_public_key

EMPTY_KECCAK = "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"


@dataclass(frozen=True)
class SoftwareKey:
    """A pure in-memory secp256k1 key with only the blocking ``sign_digest`` (no HSM)."""

    secret: bytes
    label: str = "soft"
    curve: str = "secp256k1"
    signer: bytes | None = None  # sign with this secret instead: a lying token
    high_s: bool = False  # return the high-s twin, as tokens may

    @property
    def public_key(self) -> bytes:
        return PrivateKey(self.secret).public_key.format(compressed=False)

    def sign_digest(self, digest: bytes) -> bytes:
        raw = PrivateKey(self.signer or self.secret).sign_recoverable(digest, hasher=None)
        r, s = raw[:32], int.from_bytes(raw[32:64], "big")
        if self.high_s:
            s = SECP256K1_N - s
        return r + s.to_bytes(32, "big")


@pytest.mark.parametrize("message", [b"", b"hello", "päivää".encode(), bytes(range(256))])
def test_digest_is_the_eip191_personal_digest(message):
    assert eip191.personal_message_digest(message) == bytes(defunct_hash_message(message))


def test_flashbots_message_is_0x_and_lowercase_hex_of_keccak():
    assert eip191.flashbots_message(b"") == b"0x" + EMPTY_KECCAK.encode()
    body = b'{"jsonrpc":"2.0","id":1,"method":"eth_sendPrivateTransaction","params":[]}'
    message = eip191.flashbots_message(body)
    assert message == b"0x" + keccak(body).hex().encode()
    assert len(message) == 66 and message == message.lower()


async def test_hsm_personal_signatures_recover_to_the_key(eth_key):
    address = address_from_public_key(eth_key.public_key)
    for i in range(12):  # SoftHSM picks random k: high s and both parities show up
        message = f"airlock message {i}".encode()
        signature = await eip191.sign_personal(eth_key, message)
        assert len(signature) == 65
        assert int.from_bytes(signature[32:64], "big") <= SECP256K1_N // 2
        assert signature[64] in (27, 28)
        recovered = Account.recover_message(encode_defunct(primitive=message), signature=signature)
        assert recovered == address


async def test_hsm_flashbots_signature_of_a_real_body_recovers(eth_key):
    address, sign = eip191.make_flashbots_signer(eth_key)
    assert address == address_from_public_key(eth_key.public_key)
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 7,
            "method": "eth_sendPrivateTransaction",
            "params": [{"tx": "0x02"}],
        },
        separators=(",", ":"),
    ).encode()
    digest = eip191.personal_message_digest(eip191.flashbots_message(body))
    signature = await sign(digest)
    text = "0x" + keccak(body).hex()
    assert Account.recover_message(encode_defunct(text=text), signature=signature) == address
    # Without the 0x (the known failure) the same signature names somebody else.
    wrong = Account.recover_message(encode_defunct(text=keccak(body).hex()), signature=signature)
    assert wrong != address


@pytest.mark.parametrize("high_s", [False, True])
async def test_a_software_key_signs_through_a_thread_and_s_is_made_low(high_s):
    key = SoftwareKey(b"\x11" * 32, high_s=high_s)
    signature = await eip191.sign_personal(key, b"soft")
    assert int.from_bytes(signature[32:64], "big") <= SECP256K1_N // 2
    recovered = Account.recover_message(encode_defunct(primitive=b"soft"), signature=signature)
    assert recovered == Account.from_key(key.secret).address


async def test_a_signature_from_another_key_is_refused():
    key = SoftwareKey(b"\x11" * 32, signer=b"\x22" * 32)
    with pytest.raises(SignatureError, match="does not recover"):
        await eip191.sign_personal(key, b"x")


async def test_a_p256_key_is_refused(keyring):
    label = f"p256-{uuid.uuid4().hex[:12]}"
    keyring.generate("p256", label)
    key = keyring.ecdsa_key(label, curve="p256")
    with pytest.raises(SignatureError, match="secp256k1"):
        await eip191.sign_personal(key, b"x")


async def test_a_digest_must_be_32_bytes(eth_key):
    with pytest.raises(ValueError, match="32 bytes"):
        await eip191.sign_digest_recoverable(eth_key, b"\x00" * 31)
