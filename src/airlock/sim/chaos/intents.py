"""What a scenario queues before it starts: funded HSM senders with their transfers, and
Bybit orders queued while the venue was unreachable (what the policy decides then)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from airlock.hsm.keyring import HsmEcdsaKey
from airlock.queue.bybit import enqueue_order
from airlock.queue.evm import enqueue_transaction
from airlock.queue.policy import OrderRequest, PolicyConfig, decide_order
from airlock.queue.store import Store
from airlock.signer import evm
from airlock.signer.ladder import LadderSpec
from airlock.sim.chaos.rig import Rig

RECIPIENT = "0x000000000000000000000000000000000000c4a0"
SYMBOL = "BTCUSDT"
CHAIN_ID = 31337


@dataclass
class Queued:
    """The ids a scenario's invariants check, and the block its balances live in."""

    senders: list[str] = field(default_factory=list)
    evm_ids: list[str] = field(default_factory=list)
    order_ids: list[str] = field(default_factory=list)
    funded_block: int = 0


@dataclass
class Funded:
    """Fresh HSM senders with a balance, and the fee fields their transfers use."""

    keys: list[HsmEcdsaKey]
    senders: list[str]
    funded_block: int
    base_fee: int


def fund_senders(rig: Rig, seed: int, count: int) -> Funded:
    """``count`` new secp256k1 keys in the HSM, their addresses funded on anvil in a block
    a reorg cannot undo."""
    anvil, ring = rig.anvil, rig.ring
    keys, senders = [], []
    for n in range(count):
        label = f"chaos-{seed}-{n}-{os.urandom(3).hex()}"
        ring.generate("secp256k1", label)
        key = ring.ecdsa_key(label, curve="secp256k1")
        address = evm.address_from_public_key(key.public_key)
        anvil.rpc("anvil_setBalance", [address, hex(10**21)])
        keys.append(key)
        senders.append(address)
    anvil.rpc("evm_mine", [])
    block = int(anvil.rpc("eth_blockNumber"), 16)
    base = int(anvil.rpc("eth_getBlockByNumber", ["latest", False])["baseFeePerGas"], 16)
    return Funded(keys, senders, block, base)


def queue_transfer(store: Store, funded: Funded, sender: int, n: int) -> str:
    """Transfer ``n`` of a sender: three fee levels and a pre-signed cancel, its nonce
    allocated in the queue."""
    fields = {
        "chain_id": CHAIN_ID,
        "to": RECIPIENT,
        "value": 10**12 + n,
        "gas": 21000,
        "max_fee_per_gas": 2 * funded.base_fee + 10**9,
        "max_priority_fee_per_gas": 10**9,
    }
    ladder = LadderSpec(levels=3, with_cancel=True)
    key = funded.keys[sender]
    return enqueue_transaction(store, key, fields, ladder=ladder, ttl_s=3600).item.id


def queue_transfers(store: Store, rig: Rig, seed: int, senders: int, per_sender: int) -> Queued:
    """Fresh funded senders, each with ``per_sender`` transfers, round by round."""
    funded = fund_senders(rig, seed, senders)
    queued = Queued(senders=funded.senders, funded_block=funded.funded_block)
    for n in range(per_sender):
        for sender in range(senders):
            queued.evm_ids.append(queue_transfer(store, funded, sender, n))
    return queued


def queue_orders(store: Store, rig: Rig, seed: int, count: int, first: int = 0) -> list[str]:
    """GTC limit buys queued while the venue is unreachable, as the policy decides; the
    even ones at a price the scenario's mark event fills. ``first``: the number of the
    first (its orderLinkId is ``chaos-{seed}-{n}``), for orders queued later."""
    ids = []
    for n in range(first, first + count):
        price = "60000" if n % 2 == 0 else "58000"
        request = OrderRequest(
            "linear",
            SYMBOL,
            "Buy",
            "Limit",
            "0.01",
            f"chaos-{seed}-{n}",
            price,
            "GTC",
            ttl_s=3600,
        )
        decision = decide_order(request, venue_reachable=False, config=PolicyConfig())
        ids.append(enqueue_order(store, request, decision, rig.intent, account="bybit").item.id)
    return ids
