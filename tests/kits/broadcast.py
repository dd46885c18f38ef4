"""Broadcaster tests' parts: funded HSM senders, queued transfers, relays, a fast
configuration, and checks against the chain (each item mined once, the audit verified)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.kits.labels import unique_label

from airlock.audit.export import export
from airlock.audit.log import AuditKey
from airlock.audit.verify import verify_export
from airlock.config import BroadcasterConfig, HealthConfig, RelayConfig
from airlock.hsm.keyring import HsmEcdsaKey, KeyRing
from airlock.queue.evm import enqueue_transaction
from airlock.queue.states import State
from airlock.queue.store import Enqueued, Store
from airlock.signer import evm
from airlock.signer.ladder import LadderSpec
from airlock.sim.anvil import Anvil

RECIPIENT = "0x" + "22" * 20
GWEI = 10**9

FAST = BroadcasterConfig(
    confirmations=1,
    reorg_depth=16,
    bump_after_blocks=1000,
    bump_after_seconds=3600,
    rebroadcast_seconds=3600,
    reconcile_seconds=0.2,
    health=HealthConfig(probe_seconds=0.2, probe_down_seconds=0.05, fall=2, rise=2),
)


@dataclass(frozen=True)
class Sender:
    key: HsmEcdsaKey
    address: str


def make_senders(keyring: KeyRing, anvil: Anvil, count: int) -> list[Sender]:
    senders = []
    for _ in range(count):
        label = unique_label("sender")
        keyring.generate("secp256k1", label)
        key = keyring.ecdsa_key(label, curve="secp256k1")
        address = evm.address_from_public_key(key.public_key)
        anvil.rpc("anvil_setBalance", [address, hex(10**21)])
        senders.append(Sender(key, address))
    return senders


def fee_fields(anvil: Anvil, value: int = 10**12) -> dict[str, Any]:
    base_fee = int(anvil.rpc("eth_getBlockByNumber", ["latest", False])["baseFeePerGas"], 16)
    return {
        "chain_id": anvil.chain_id,
        "to": RECIPIENT,
        "value": value,
        "gas": 21000,
        "max_fee_per_gas": 2 * base_fee + GWEI,
        "max_priority_fee_per_gas": GWEI,
    }


def queue_transfers(
    store: Store,
    senders: list[Sender],
    per_sender: int,
    anvil: Anvil,
    *,
    ladder: LadderSpec | None = None,
    private: bool = False,
) -> list[Enqueued]:
    fields = fee_fields(anvil)
    ladder = ladder or LadderSpec(levels=3, with_cancel=True)
    queued = []
    for n in range(per_sender):
        for sender in senders:
            fields_n = dict(fields, value=fields["value"] + n)
            queued.append(
                enqueue_transaction(store, sender.key, fields_n, ladder=ladder, private=private)
            )
    return queued


def relay(name: str, url: str, kind: str = "evm-rpc", **changes: Any) -> RelayConfig:
    settings: dict[str, Any] = {"timeout_seconds": 2.0, "connect_timeout_seconds": 0.5}
    settings.update(changes)
    return RelayConfig(name=name, kind=kind, url=url, chain_id=31337, **settings)


def all_in(store: Store, ids: list[str], state: State) -> bool:
    return all(store.items.get(i).state is state for i in ids)


def assert_mined_exactly_once(store: Store, anvil: Anvil, queued: list[Enqueued]) -> None:
    """Every item confirmed with a receipt of its own hash at its own nonce, each sender's
    chain nonce equal to its number of items, and nonces mined in order."""
    by_sender: dict[str, list[tuple[int, int]]] = {}
    mined_hashes = set()
    for entry in queued:
        item = store.items.get(entry.item.id)
        assert item.state is State.CONFIRMED, (item.id, item.state, item.state_reason)
        assert item.mined_hash in {v.tx_hash for v in store.items.variants(item.id)}
        assert item.mined_hash not in mined_hashes
        mined_hashes.add(item.mined_hash)
        receipt = anvil.rpc("eth_getTransactionReceipt", [item.mined_hash])
        assert receipt is not None and int(receipt["status"], 16) == 1
        tx = anvil.rpc("eth_getTransactionByHash", [item.mined_hash])
        assert int(tx["nonce"], 16) == item.nonce
        by_sender.setdefault(item.account, []).append((item.nonce, int(receipt["blockNumber"], 16)))
    for sender, mined in by_sender.items():
        count = int(anvil.rpc("eth_getTransactionCount", [sender, "latest"]), 16)
        assert count == len(mined), (sender, count, len(mined))
        assert sorted(n for n, _ in mined) == list(range(len(mined)))
        blocks = [b for _, b in sorted(mined)]
        assert blocks == sorted(blocks), "mined out of nonce order"


def verify_audit(store: Store, keyring: KeyRing, out: Path) -> Any:
    key = AuditKey(keyring, unique_label("audit"))
    export(store, key, out)
    report = verify_export(out, (out / "audit-key.pem").read_bytes())
    return report
