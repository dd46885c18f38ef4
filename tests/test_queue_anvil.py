"""Queued fee ladders and cancels behave on a real node: each step replaces the last."""

from __future__ import annotations

import pytest
from tests.kits.backends import BOTH
from tests.kits.labels import unique_label

from airlock.queue.evm import enqueue_transaction
from airlock.queue.store import Store
from airlock.signer import evm
from airlock.signer.ladder import LadderSpec
from airlock.sim.anvil import Anvil

pytestmark = pytest.mark.anvil
ANVIL_PER_MODULE = True
ANVIL_AUTOMINE = False  # keep transactions pending so they can be replaced
RECIPIENT = "0x" + "22" * 20


BACKENDS = BOTH


@pytest.fixture
def funded(keyring, anvil):
    label = unique_label("ladder")
    keyring.generate("secp256k1", label)
    key = keyring.ecdsa_key(label, curve="secp256k1")
    address = evm.address_from_public_key(key.public_key)
    anvil.rpc("anvil_setBalance", [address, hex(10**21)])
    return key, address


def queue(store: Store, key, anvil: Anvil, **kwargs):
    base_fee = int(anvil.rpc("eth_getBlockByNumber", ["latest", False])["baseFeePerGas"], 16)
    fields = {
        "chain_id": anvil.chain_id,
        "to": RECIPIENT,
        "value": 10**15,
        "gas": 21000,
        "max_fee_per_gas": 2 * base_fee + 10**9,
        "max_priority_fee_per_gas": 10**9,
    }
    return enqueue_transaction(store, key, fields, **kwargs)


def send(anvil: Anvil, raw: bytes) -> str:
    return anvil.rpc("eth_sendRawTransaction", ["0x" + raw.hex()])


def test_each_ladder_step_replaces_the_last_and_the_cancel_wins(store, funded, anvil):
    key, address = funded
    result = queue(store, key, anvil, ladder=LadderSpec(levels=4, with_cancel=True))
    variants = store.items.signed_variants(result.item.id)
    assert [v.kind for v, _ in variants] == ["step"] * 4 + ["cancel"]
    for meta, raw in variants:  # every one is accepted as a replacement of the one before
        assert send(anvil, raw) == meta.tx_hash
    pending = anvil.rpc("txpool_content", [])["pending"]
    [only] = next(v for k, v in pending.items() if k.lower() == address.lower()).values()
    assert only["hash"] == variants[-1][0].tx_hash  # one tx in the pool: the cancel
    anvil.rpc("evm_mine", [])
    cancel_hash = variants[-1][0].tx_hash
    receipt = anvil.wait_for_receipt(cancel_hash)
    assert receipt["status"] == "0x1"
    for meta, _ in variants[:-1]:
        assert anvil.rpc("eth_getTransactionReceipt", [meta.tx_hash]) is None
    assert int(anvil.rpc("eth_getTransactionCount", [address, "latest"]), 16) == 1


def test_lower_step_after_a_higher_one_is_refused_by_the_node(store, funded, anvil):
    key, _ = funded
    result = queue(store, key, anvil, ladder=LadderSpec(levels=2))
    (_, low), (_, high) = store.items.signed_variants(result.item.id)
    send(anvil, high)
    with pytest.raises(Exception, match="underpriced"):
        send(anvil, low)
    anvil.rpc("evm_mine", [])
