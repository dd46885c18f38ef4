"""``airlock demo``: the drill on embedded defaults, grown issue by issue.

Today: a SoftHSM token and a local anvil node. While the "link is down", three transfers
are signed with fee ladders and pre-signed cancels and queued durably (nonces allocated,
payloads encrypted, every step in the audit log); one is cancelled locally. When the
"link returns" the queued transactions are sent in nonce order and mined, the items
move to confirmed, and the audit log is exported and verified offline with only the
public key. Everything runs in a throw-away data directory and stops what it started.
The broadcaster service (later issues) replaces the hand-driven send below.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from airlock.audit.export import export
from airlock.audit.log import AuditKey
from airlock.audit.verify import verify_export
from airlock.config import load_config
from airlock.errors import AirlockError
from airlock.hsm.keyring import HsmEcdsaKey, KeyRing
from airlock.hsm.softhsm import init_embedded
from airlock.queue.evm import enqueue_transaction
from airlock.queue.kek import HsmKek
from airlock.queue.states import State
from airlock.queue.store import Store
from airlock.signer import evm
from airlock.signer.ladder import LadderSpec
from airlock.sim.anvil import Anvil, start_anvil

RECIPIENT = "0x000000000000000000000000000000000000dEaD"
TRANSFERS = 3


class DemoFailed(AirlockError):
    """An invariant of the drill did not hold."""


def run_demo(say: Callable[[str], None]) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="airlock-demo-") as tmp:
        home = Path(tmp)
        say(f"data dir {home} (removed at the end)")
        init_embedded(home)
        say("SoftHSM token created (development and drills only)")
        config = load_config(env={"AIRLOCK_HOME": str(home)})
        with (
            KeyRing.open(config.hsm) as ring,
            Store.open(config.queue.path, HsmKek(ring)) as store,
            start_anvil() as anvil,
        ):
            ring.generate("secp256k1", "demo-eth")
            key = ring.ecdsa_key("demo-eth", curve="secp256k1")
            sender = evm.address_from_public_key(key.public_key)
            say(f"secp256k1 key 'demo-eth' in the HSM: {sender}; anvil on {anvil.url}")
            anvil.rpc("anvil_setBalance", [sender, hex(10**18)])
            queued, persist_ms = _queue_offline(store, key, anvil, say)
            cancelled = store.cancel(queued[-1]).item.id
            say(f"link down: item {cancelled} cancelled locally, nothing sent")
            mined = _send_when_back(store, anvil, queued[:-1], say)
            audit_key = AuditKey(ring)
            report = verify_export(
                export(store, audit_key, home / "audit").out, audit_key.pem.encode()
            )
            states = {str(s): len(store.list([s])) for s in State if store.list([s])}
        say(f"audit export verified offline: {report.entries} entries, ok={report.ok}")
        result: dict[str, object] = {
            "sender": sender,
            "queued": len(queued),
            "max_persist_ms": round(max(persist_ms), 2),
            "mined": mined,
            "states": states,
            "audit_entries": report.entries,
            "audit_verified": report.ok,
        }
        if not report.ok or states != {"confirmed": TRANSFERS - 1, "cancelled": 1}:
            raise DemoFailed(f"demo invariant failed: {result} {report.problem or ''}")
        return result


def _queue_offline(
    store: Store, key: HsmEcdsaKey, anvil: Anvil, say: Callable[[str], None]
) -> tuple[list[str], list[float]]:
    base_fee = int(anvil.rpc("eth_getBlockByNumber", ["latest", False])["baseFeePerGas"], 16)
    ids, persist_ms = [], []
    for n in range(TRANSFERS):
        fields = {
            "chain_id": anvil.chain_id,
            "to": RECIPIENT,
            "value": 10**15 + n,
            "gas": 21000,
            "max_fee_per_gas": 2 * base_fee + 10**9,
            "max_priority_fee_per_gas": 10**9,
        }
        started = time.perf_counter()
        result = enqueue_transaction(
            store, key, fields, ladder=LadderSpec(levels=3, with_cancel=True), ttl_seconds=600
        )
        persist_ms.append((time.perf_counter() - started) * 1000)
        ids.append(result.item.id)
        say(
            f"link down: queued {result.item.id} nonce {result.item.nonce}, "
            f"{len(result.variants)} variants signed and stored in {persist_ms[-1]:.1f} ms"
        )
    return ids, persist_ms


def _send_when_back(
    store: Store, anvil: Anvil, ids: list[str], say: Callable[[str], None]
) -> list[str]:
    say("link back: sending in nonce order")
    mined = []
    for item_id in ids:
        (first, raw), *_ = store.signed_variants(item_id)
        store.transition(item_id, State.SENDING, "demo: link back")
        sent = anvil.rpc("eth_sendRawTransaction", ["0x" + raw.hex()])
        if sent != first.tx_hash:
            raise DemoFailed(f"node returned {sent} for {first.tx_hash}")
        store.transition(item_id, State.SENT, "demo: accepted by anvil")
        receipt = anvil.wait_for_receipt(sent)
        store.transition(
            item_id, State.CONFIRMED, f"demo: mined in block {int(receipt['blockNumber'], 16)}"
        )
        mined.append(sent)
        say(f"mined {sent}")
    return mined
