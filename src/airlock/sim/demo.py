"""``airlock demo``: the drill on embedded defaults, grown issue by issue.

Today: a SoftHSM token, a local anvil node and two relays in front of it, each behind the
project's fault proxy. With both links down, three transfers are signed with fee ladders
and pre-signed cancels and queued durably (nonces allocated, payloads encrypted, every step
in the audit log); one is cancelled locally. The broadcaster runs all along: it sends
nothing while the links are down, and the instant one returns it dispatches in nonce order
through it (the other stays down), reconciles the receipts and confirms. The audit log is
then exported and verified offline with only the public key. Everything runs in a
throw-away data directory and stops what it started.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from airlock.audit.export import export
from airlock.audit.log import AuditKey
from airlock.audit.verify import verify_export
from airlock.broadcaster.service import Broadcaster
from airlock.config import BroadcasterConfig, HealthConfig, RelayConfig, load_config
from airlock.errors import AirlockError
from airlock.hsm.keyring import HsmEcdsaKey, KeyRing
from airlock.hsm.softhsm import init_embedded
from airlock.queue.evm import enqueue_transaction
from airlock.queue.kek import HsmKek
from airlock.queue.states import State
from airlock.queue.store import Store
from airlock.relays.jsonrpc import EvmRelay, started
from airlock.signer import evm
from airlock.signer.ladder import LadderSpec
from airlock.sim.anvil import Anvil, start_anvil
from airlock.sim.demo_bybit import bybit_drill
from airlock.sim.faultproxy import FaultProxy

RECIPIENT = "0x000000000000000000000000000000000000dEaD"
TRANSFERS = 3
BYBIT_FILLED = 3  # two GTC limits and a market order made a limit at its slippage cap
DRILL = BroadcasterConfig(
    confirmations=1,
    reconcile_seconds=0.5,
    health=HealthConfig(probe_seconds=0.5, probe_down_seconds=0.05),
)
DRILL_TIMEOUT_S = 30


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
            FaultProxy(anvil.url, seed=1).start() as link_a,
            FaultProxy(anvil.url, seed=2).start() as link_b,
        ):
            link_a.set_mode("down")
            link_b.set_mode("down")
            ring.generate("secp256k1", "demo-eth")
            key = ring.ecdsa_key("demo-eth", curve="secp256k1")
            sender = evm.address_from_public_key(key.public_key)
            say(f"secp256k1 key 'demo-eth' in the HSM: {sender}; anvil on {anvil.url}")
            anvil.rpc("anvil_setBalance", [sender, hex(10**18)])
            queued, persist_ms = _queue_offline(store, key, anvil, say)
            cancelled = store.cancel(queued[-1]).item.id
            say(f"link down: item {cancelled} cancelled locally, nothing sent")
            mined = asyncio.run(_drain_when_back(store, [link_a, link_b], queued[:-1], say))
            bybit = bybit_drill(ring, store, say)
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
            "bybit": bybit,
        }
        expected = {"confirmed": TRANSFERS - 1 + BYBIT_FILLED, "cancelled": 2}
        if not report.ok or states != expected or not report.intent_keys:
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


async def _drain_when_back(
    store: Store, links: list[FaultProxy], ids: list[str], say: Callable[[str], None]
) -> list[str]:
    """Run the broadcaster while both links are down, then bring one back."""
    relays = [
        EvmRelay(RelayConfig(name=f"rpc-{n}", kind="evm-rpc", url=link.url, chain_id=31337))
        for n, link in zip("ab", links, strict=True)
    ]
    async with started(relays), Broadcaster(store, relays, DRILL).serving() as broadcaster:
        await _until(lambda: broadcaster.monitor.snapshots()["rpc-a"].last_error is not None)
        if any(store.attempts(i) for i in ids):
            raise DemoFailed("something was sent while every link was down")
        say("broadcaster running, both links down: nothing sent")
        links[1].set_mode("pass")
        say("link b back (link a stays down): dispatching in nonce order")
        await _until(lambda: all(store.get(i).state is State.CONFIRMED for i in ids))
    mined = []
    for item_id in ids:
        item = store.get(item_id)
        relays_used = sorted({a.relay for _, a in store.attempts(item_id)})
        say(f"nonce {item.nonce} mined as {item.mined_hash} via {', '.join(relays_used)}")
        mined.append(str(item.mined_hash))
    return mined


async def _until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DRILL_TIMEOUT_S
    while not check():
        if time.monotonic() > deadline:
            raise DemoFailed(f"the drill did not get there within {DRILL_TIMEOUT_S} s")
        await asyncio.sleep(0.05)
