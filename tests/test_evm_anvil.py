"""HSM-signed transactions of every type are accepted and mined by a real anvil node."""

from __future__ import annotations

import uuid

import pytest
from eth_account import Account
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airlock.signer import evm
from airlock.sim.anvil import Anvil

pytestmark = pytest.mark.anvil
ANVIL_PER_MODULE = True  # one node and one funded key for the module


@pytest.fixture(scope="module")
def funded_key(keyring, module_anvil):
    label = f"anvil-{uuid.uuid4().hex[:8]}"
    keyring.generate("secp256k1", label)
    key = keyring.ecdsa_key(label, curve="secp256k1")
    address = evm.address_from_public_key(key.public_key)
    module_anvil.rpc("anvil_setBalance", [address, hex(10**21)])
    return key, address


def _send(anvil: Anvil, key, address: str, tx_type: int, value: int, data: bytes) -> dict:
    nonce = int(anvil.rpc("eth_getTransactionCount", [address, "pending"]), 16)
    fees: dict = {"gas_price": 5 * 10**9}
    access_list = None
    if tx_type == 2:
        fees = {"max_fee_per_gas": 5 * 10**9, "max_priority_fee_per_gas": 10**9}
    if tx_type in (1, 2):
        access_list = [{"address": "0x" + "11" * 20, "storageKeys": ["0x" + "00" * 32]}]
    intent = evm.make_intent(
        chain_id=anvil.chain_id,
        nonce=nonce,
        to="0x000000000000000000000000000000000000dEaD",
        value=value,
        gas=100_000,
        data=data,
        tx_type=tx_type,
        access_list=access_list,
        **fees,
    )
    signed = evm.sign_transaction(intent, key)
    assert Account.recover_transaction(signed.raw_hex) == address
    assert signed.s <= evm.SECP256K1_N // 2
    sent = anvil.rpc("eth_sendRawTransaction", [signed.raw_hex])
    assert sent == signed.hash_hex
    receipt = anvil.wait_for_receipt(sent)
    assert int(receipt["status"], 16) == 1
    assert receipt["from"].lower() == address.lower()
    assert int(receipt["type"], 16) == tx_type
    return receipt


@pytest.mark.parametrize("tx_type", [0, 1, 2])
def test_each_type_is_mined(anvil, funded_key, tx_type):
    key, address = funded_key
    receipt = _send(anvil, key, address, tx_type, value=12345, data=b"")
    assert int(receipt["blockNumber"], 16) >= 1


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tx_type=st.sampled_from([0, 1, 2]),
    value=st.integers(min_value=0, max_value=10**15),
    data=st.binary(max_size=64),
)
def test_random_transactions_are_mined(anvil, funded_key, tx_type, value, data):
    key, address = funded_key
    _send(anvil, key, address, tx_type, value, data)


def test_wrong_chain_id_is_refused_by_the_node(anvil, funded_key):
    key, address = funded_key
    intent = evm.make_intent(
        chain_id=anvil.chain_id + 1,
        nonce=0,
        to=address,
        value=0,
        gas=21000,
        max_fee_per_gas=10**9,
        max_priority_fee_per_gas=1,
    )
    signed = evm.sign_transaction(intent, key)
    from airlock.sim.anvil import AnvilError

    with pytest.raises(AnvilError, match=r"(?i)chain"):
        anvil.rpc("eth_sendRawTransaction", [signed.raw_hex])


def test_batch_signing_keeps_order_and_recovers(eth_key):
    address = evm.address_from_public_key(eth_key.public_key)
    intents = [
        evm.make_intent(
            chain_id=5,
            nonce=n,
            to="0x000000000000000000000000000000000000dEaD",
            value=n,
            gas=21000,
            max_fee_per_gas=10**9,
            max_priority_fee_per_gas=1,
        )
        for n in range(40)
    ]
    signed = evm.sign_transactions(intents, eth_key)
    assert [s.nonce for s in signed] == list(range(40))
    assert all(Account.recover_transaction(s.raw_hex) == address for s in signed)
    assert all(s.s <= evm.SECP256K1_N // 2 for s in signed)
