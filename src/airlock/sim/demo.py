"""``airlock demo``: the outage drill on embedded defaults, end to end and self-cleaning.

A SoftHSM token, a local anvil chain, two relays each behind the project's fault proxy, and
the Bybit simulator. With every link cut, transfers from two HSM senders are signed with
fee ladders and pre-signed cancels and queued durably (nonces allocated, payloads
encrypted, every step audited), with a progress display; one is cancelled locally. The
broadcaster runs all along and sends nothing. The links come back one by one — the second
one slow — while the chain's base fee spikes above every first fee level: the broadcaster
dispatches in nonce order, bumps every stuck transaction to its next pre-signed level, and
reconciles until each is confirmed. Then the Bybit half (:mod:`airlock.sim.demo_bybit`).
The audit log is exported and verified offline with only the public key, and a final
report gives items by final state, time to persist, time from link return to first send,
duplicates (must be 0), lost items (must be 0) and the audit verdict. Any failed invariant
raises :class:`DemoFailed` (exit 1). Everything runs in a throw-away data directory and
stops what it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airlock.audit.export import export
from airlock.audit.log import AuditKey
from airlock.audit.verify import verify_export
from airlock.broadcaster.service import Broadcaster
from airlock.config import BroadcasterConfig, HealthConfig, RelayConfig, load_config
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
from airlock.sim.demo_report import read_drill, write_report
from airlock.sim.drill import DemoFailed, until
from airlock.sim.faultproxy import FaultProxy
from airlock.slo.html import AuditVerdict

RECIPIENT = "0x000000000000000000000000000000000000dEaD"
SENDERS = 2
PER_SENDER = 10
TRANSFERS = SENDERS * PER_SENDER
BYBIT_FILLED = 3  # two GTC limits and a market order made a limit at its slippage cap
SLOW_LINK_MS = 150
BLOCK_S = 0.25  # the drill's chain mines a block this often
DRILL = BroadcasterConfig(
    confirmations=1,
    reconcile_seconds=0.3,
    bump_after_blocks=1,
    health=HealthConfig(probe_seconds=0.3, probe_down_seconds=0.05),
)


@dataclass
class _EvmDrill:
    return_ms: int  # when the first link came back (store clock)
    first_send_ms: int  # the first relay answer that accepted a transaction
    bumped: int  # items mined at a level above their first
    mined: list[str]


def run_demo(
    say: Callable[[str], None], *, keep: Path | None = None, report: Path | None = None
) -> dict[str, object]:
    """The drill; ``keep`` names an empty (or new) directory to run it in and leave behind
    (``AIRLOCK_HOME=DIR airlock slo`` reads it afterwards), ``report`` a file for the HTML
    drill report."""
    with _data_dir(keep) as home:
        say(f"data dir {home} ({'kept' if keep is not None else 'removed at the end'})")
        started_ms = time.time_ns() // 1_000_000
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
            keys = _senders(ring, anvil, say)
            anvil.rpc("evm_setAutomine", [False])  # blocks come from the drill's chain loop
            queued, persist_ms = _queue_offline(store, keys, anvil, say)
            cancelled = store.items.cancel(queued.pop()).item.id
            say(f"links down: item {cancelled} cancelled locally, nothing sent")
            drill = asyncio.run(_drain_when_back(store, anvil, [link_a, link_b], queued, say))
            evm_duplicates, evm_lost = _evm_count(store, anvil, queued, keys)
            bybit = bybit_drill(ring, store, say)
            audit_key = AuditKey(ring)
            audit = verify_export(
                export(store, audit_key, home / "audit").out, audit_key.pem.encode()
            )
            states = _state_counts(store)
            slo = read_drill(store, started_ms) if report is not None else None
        result: dict[str, Any] = {
            "senders": [evm.address_from_public_key(k.public_key) for k in keys],
            "queued": TRANSFERS,
            "persist_ms": _spread(persist_ms),
            "link_return_to_first_send_ms": drill.first_send_ms - drill.return_ms,
            "bumped": drill.bumped,
            "mined": len(drill.mined),
            "states": states,
            "duplicates": evm_duplicates + bybit["duplicates"],
            "lost": evm_lost + bybit["lost"],
            "audit_entries": audit.entries,
            "audit_verified": audit.ok,
            "bybit": bybit,
            "data_dir": str(home) if keep is not None else None,
        }
        _report(result, say)
        if report is not None and slo is not None:
            verdict = AuditVerdict(audit.ok, audit.entries, audit.problem)
            write_report(report, *slo, verdict, result)
            result["slo_passed"] = slo[0].passed
            say(f"drill report written to {report} (SLO {'PASS' if slo[0].passed else 'FAIL'})")
        _check(result, audit.ok and bool(audit.intent_keys), audit.problem)
        return result


def _spread(persist_ms: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(persist_ms), 2),
        "mean": round(statistics.fmean(persist_ms), 2),
        "max": round(max(persist_ms), 2),
    }


def _check(result: dict[str, Any], audit_ok: bool, problem: str | None) -> None:
    """The drill's invariants; any failed one raises :class:`DemoFailed` (exit 1)."""
    expected = {"confirmed": TRANSFERS - 1 + BYBIT_FILLED, "cancelled": 2}
    failed = (
        not audit_ok
        or result["states"] != expected
        or result["duplicates"] != 0
        or result["lost"] != 0
        or result["bumped"] == 0
    )
    if failed:
        raise DemoFailed(f"demo invariant failed: {result} {problem or ''}")


@contextlib.contextmanager
def _data_dir(keep: Path | None) -> Iterator[Path]:
    if keep is None:
        with tempfile.TemporaryDirectory(prefix="airlock-demo-") as tmp:
            yield Path(tmp)
        return
    if keep.exists() and (not keep.is_dir() or any(keep.iterdir())):
        raise DemoFailed(f"--keep {keep}: not an empty directory (the drill needs a fresh one)")
    keep.mkdir(parents=True, exist_ok=True)
    yield keep


def _state_counts(store: Store) -> dict[str, int]:
    """How many items end in each state, for the states that hold any."""
    return {str(s): len(store.items.select([s])) for s in State if store.items.select([s])}


def _senders(ring: KeyRing, anvil: Anvil, say: Callable[[str], None]) -> list[HsmEcdsaKey]:
    keys = []
    for n in range(SENDERS):
        label = f"demo-eth-{n}"
        ring.generate("secp256k1", label)
        key = ring.ecdsa_key(label, curve="secp256k1")
        address = evm.address_from_public_key(key.public_key)
        anvil.rpc("anvil_setBalance", [address, hex(10**18)])
        keys.append(key)
        say(f"secp256k1 key {label!r} in the HSM: {address}")
    say(f"anvil on {anvil.url}; relays rpc-a and rpc-b each behind a fault proxy, both cut")
    return keys


def _queue_offline(
    store: Store, keys: list[HsmEcdsaKey], anvil: Anvil, say: Callable[[str], None]
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
        started_at = time.perf_counter()
        result = enqueue_transaction(
            store,
            keys[n % SENDERS],
            fields,
            ladder=LadderSpec(levels=3, with_cancel=True),
            ttl_s=600,
        )
        persist_ms.append((time.perf_counter() - started_at) * 1000)
        ids.append(result.item.id)
        done = n + 1
        if done % 5 == 0 or done == TRANSFERS:
            bar = "#" * (done * 20 // TRANSFERS)
            say(
                f"links down: signing and queueing [{bar:<20}] {done}/{TRANSFERS} "
                f"(3 fee levels + a cancel each, {persist_ms[-1]:.1f} ms to persist the last)"
            )
    return ids, persist_ms


async def _drain_when_back(
    store: Store, anvil: Anvil, links: list[FaultProxy], ids: list[str], say: Callable[[str], None]
) -> _EvmDrill:
    """Run the broadcaster with both links cut, then bring b back, then a (slow), while the
    base fee sits above every first level until the broadcaster has bumped them."""
    relays = [
        EvmRelay(RelayConfig(name=f"rpc-{n}", kind="evm-rpc", url=link.url, chain_id=31337))
        for n, link in zip("ab", links, strict=True)
    ]
    first_fee = int(store.items.variants(ids[0])[0].fee_per_gas)
    second_fee = int(store.items.variants(ids[0])[1].fee_per_gas)
    spike = (first_fee + second_fee) // 2
    stop_chain = asyncio.Event()

    def spiking() -> bool:
        return not all(store.sends.fates(i).get(1) is not None for i in ids)

    async def chain() -> None:
        """A block every BLOCK_S; the base fee spikes until every item was bumped."""
        while not stop_chain.is_set():
            if spiking():
                await asyncio.to_thread(anvil.rpc, "anvil_setNextBlockBaseFeePerGas", [hex(spike)])
            await asyncio.to_thread(anvil.rpc, "evm_mine", [])
            await asyncio.sleep(BLOCK_S)

    async with started(relays), Broadcaster(store, relays, DRILL).serving() as broadcaster:
        await until(lambda: broadcaster.monitor.snapshots()["rpc-a"].last_error is not None)
        if any(store.sends.attempts(i) for i in ids):
            raise DemoFailed("something was sent while every link was down")
        say("broadcaster running, both links down: nothing sent")
        miner = asyncio.create_task(chain())
        try:
            say(f"gas spike: the base fee jumps to {spike} wei, above every first fee level")
            return_ms = store.now_ms()
            links[1].set_mode("pass")
            say("link b back (link a still down): dispatching in nonce order")
            await until(lambda: any(store.sends.attempts(i) for i in ids))
            links[0].set_mode("slow", delay_ms=SLOW_LINK_MS)
            say(f"link a back, slow ({SLOW_LINK_MS} ms a request): both links carry sends")
            await until(lambda: not spiking())
            say("every stuck transfer bumped to its next pre-signed fee level; spike over")
            await until(lambda: all(store.items.get(i).state is State.CONFIRMED for i in ids))
        finally:
            stop_chain.set()
            await miner
    first_send = min(
        a.at_ms for i in ids for _, a in store.sends.attempts(i) if a.outcome == "accepted"
    )
    mined, bumped = [], 0
    for item_id in ids:
        item = store.items.get(item_id)
        bumped += item.active_idx is not None and item.active_idx > 0
        mined.append(str(item.mined_hash))
    say(f"{len(mined)} transfers mined in nonce order, {bumped} of them at a bumped level")
    return _EvmDrill(return_ms, first_send, bumped, mined)


def _evm_count(
    store: Store, anvil: Anvil, ids: list[str], keys: list[HsmEcdsaKey]
) -> tuple[int, int]:
    """Duplicates (more than one of an item's variants mined, or more chain nonces used than
    items) and lost items (confirmed items whose hash has no receipt), from the chain."""
    duplicates = lost = 0
    for item_id in ids:
        hashes = [v.tx_hash for v in store.items.variants(item_id)]
        receipts = [h for h in hashes if anvil.rpc("eth_getTransactionReceipt", [h])]
        duplicates += max(0, len(receipts) - 1)
        lost += not receipts
    used = sum(
        int(anvil.rpc("eth_getTransactionCount", [evm.address_from_public_key(k.public_key),
                                                  "latest"]), 16)
        for k in keys
    )  # fmt: skip
    return duplicates + max(0, used - len(ids)), lost


def _report(result: dict[str, Any], say: Callable[[str], None]) -> None:
    bybit = result["bybit"]
    states = ", ".join(f"{k} {v}" for k, v in sorted(result["states"].items()))
    say("— drill report —")
    say(f"items by final state: {states}")
    say(
        f"time to persist a signed item: p50 {result['persist_ms']['p50']} ms, "
        f"max {result['persist_ms']['max']} ms"
    )
    say(
        f"link return -> first send: EVM {result['link_return_to_first_send_ms']} ms, "
        f"Bybit {bybit['return_to_first_send_ms']} ms"
    )
    say(f"gas bumps: {result['bumped']}; Bybit fills reconciled: {bybit['fills']}")
    say(f"duplicates: {result['duplicates']} (must be 0); lost: {result['lost']} (must be 0)")
    verdict = "verified" if result["audit_verified"] else "FAILED"
    say(f"audit log: {result['audit_entries']} entries, {verdict} offline with the public key")
