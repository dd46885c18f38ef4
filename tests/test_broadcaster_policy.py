"""The broadcaster's policies on a real node: expiry with a cancel fill, an exhausted ladder,
re-signing within a cap."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.kits.broadcast import (
    FAST,
    fee_fields,
    make_senders,
    queue_transfers,
    relay,
    verify_audit,
)
from tests.kits.clocks import FakeClock

from airlock.broadcaster.service import Broadcaster, Resigner
from airlock.broadcaster.setup import resigner
from airlock.config import BroadcasterConfig
from airlock.queue.evm import enqueue_transaction
from airlock.queue.states import State
from airlock.queue.store import Store, VariantDraft
from airlock.relays.jsonrpc import EvmRelay
from airlock.signer.ladder import LadderSpec
from airlock.sim.anvil import Anvil

pytestmark = pytest.mark.anvil


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(wall=True)  # wall time plus an offset the test moves (TTLs)


@pytest.fixture
def timed_store(tmp_path: Path, kek, clock: FakeClock) -> Iterator[Store]:
    with Store.open(tmp_path / "queue.db", kek, clock_ms=clock) as opened:
        yield opened


async def once(
    store: Store,
    anvil: Anvil,
    settings: BroadcasterConfig = FAST,
    resign: Resigner | None = None,
    clock=None,
) -> Broadcaster:
    async with EvmRelay(relay("rpc-a", anvil.url)) as client:
        kwargs = {} if clock is None else {"clock_ms": clock}
        broadcaster = Broadcaster(store, [client], settings, resigner=resign, **kwargs)
        await broadcaster.run_once()
        return broadcaster


async def test_expired_item_with_later_nonces_sends_its_cancel_and_the_rest_follow(
    timed_store, keyring, anvil, clock
):
    (sender,) = make_senders(keyring, anvil, 1)
    fields = fee_fields(anvil)
    ladder = LadderSpec(levels=2, with_cancel=True)
    first = enqueue_transaction(timed_store, sender.key, fields, ladder=ladder, ttl_s=60)
    later = [
        enqueue_transaction(timed_store, sender.key, dict(fields, value=n + 2), ladder=ladder)
        for n in range(2)
    ]
    clock.offset_ms = 61_000  # the TTL passed while every link was down
    await once(timed_store, anvil, clock=clock)
    cancel = next(v for v in first.variants if v.kind == "cancel")
    item = timed_store.items.get(first.item.id)
    assert item.state is State.REPLACED
    assert item.mined_hash == cancel.tx_hash
    assert "pre-signed cancel" in (item.state_reason or "")
    tx = anvil.rpc("eth_getTransactionByHash", [cancel.tx_hash])
    assert int(tx["value"], 16) == 0 and tx["to"].lower() == sender.address.lower()
    for entry in later:
        assert timed_store.items.get(entry.item.id).state is State.CONFIRMED
    assert int(anvil.rpc("eth_getTransactionCount", [sender.address, "latest"]), 16) == 3


async def test_expired_item_without_later_nonces_never_leaves(timed_store, keyring, anvil, clock):
    (sender,) = make_senders(keyring, anvil, 1)
    lone = enqueue_transaction(
        timed_store,
        sender.key,
        fee_fields(anvil),
        ladder=LadderSpec(with_cancel=True),
        ttl_s=5,
    )
    clock.offset_ms = 6_000
    await once(timed_store, anvil, clock=clock)
    assert timed_store.items.get(lone.item.id).state is State.EXPIRED
    assert timed_store.sends.attempts(lone.item.id) == []
    assert int(anvil.rpc("eth_getTransactionCount", [sender.address, "latest"]), 16) == 0


def price_out(anvil: Anvil, fee: int) -> None:
    """Make every fee up to ``fee`` too low for the next block."""
    anvil.rpc("anvil_setNextBlockBaseFeePerGas", [hex(fee + 1)])
    anvil.rpc("evm_mine", [])


async def test_exhausted_ladder_goes_to_an_operator_with_an_alert(store, keyring, anvil):
    anvil.rpc("evm_setAutomine", [False])
    (sender,) = make_senders(keyring, anvil, 1)
    (queued,) = queue_transfers(store, [sender], 1, anvil, ladder=LadderSpec(levels=2))
    settings = dataclasses.replace(FAST, bump_after_blocks=1)
    await once(store, anvil, settings)
    assert store.items.get(queued.item.id).state is State.SENT
    price_out(anvil, queued.variants[1].fee_per_gas * 2)
    broadcaster = await once(store, anvil, settings)
    item = store.items.get(queued.item.id)
    assert item.state is State.NEEDS_OPERATOR
    assert "no higher fee level left" in (item.state_reason or "")
    assert any(queued.item.id in a and "operator" in a for a in broadcaster.alerts)


async def test_resign_within_the_cap_gets_it_mined(store, keyring, anvil, tmp_path: Path):
    anvil.rpc("evm_setAutomine", [False])
    (sender,) = make_senders(keyring, anvil, 1)
    (queued,) = queue_transfers(store, [sender], 1, anvil, ladder=LadderSpec(levels=1))
    top = queued.variants[0].fee_per_gas
    settings = dataclasses.replace(FAST, bump_after_blocks=1)
    resign = resigner(keyring, cap=top * 10, bump_pct=50)
    await once(store, anvil, settings, resign)
    price_out(anvil, top)  # v0 cannot be mined; a re-signed level +50 % can
    await once(store, anvil, settings, resign)
    variants = store.items.variants(queued.item.id)
    assert len(variants) == 2 and variants[1].fee_per_gas >= top * 3 // 2
    assert store.items.get(queued.item.id).active_idx == 1
    anvil.rpc("evm_mine", [])
    await once(store, anvil, settings, resign)
    item = store.items.get(queued.item.id)
    assert item.state is State.CONFIRMED and item.mined_hash == variants[1].tx_hash
    report = verify_audit(store, keyring, tmp_path / "audit")
    assert report.ok, report.problem
    assert report.kinds["item.variant_added"] == 1


async def test_resign_never_exceeds_its_cap(store, keyring, anvil):
    anvil.rpc("evm_setAutomine", [False])
    (sender,) = make_senders(keyring, anvil, 1)
    (queued,) = queue_transfers(store, [sender], 1, anvil, ladder=LadderSpec(levels=1))
    top = queued.variants[0].fee_per_gas
    settings = dataclasses.replace(FAST, bump_after_blocks=1)
    resign = resigner(keyring, cap=top, bump_pct=50)  # no room above the top level
    await once(store, anvil, settings, resign)
    price_out(anvil, top)
    await once(store, anvil, settings, resign)
    assert len(store.items.variants(queued.item.id)) == 1
    assert store.items.get(queued.item.id).state is State.NEEDS_OPERATOR


def test_audit_refuses_an_added_variant_signed_by_another_key(store, keyring, anvil, tmp_path):
    first, second = make_senders(keyring, anvil, 2)
    (queued,) = queue_transfers(store, [first], 1, anvil)
    (foreign,) = queue_transfers(store, [second], 1, anvil)  # same chain and nonce, other key
    meta = foreign.variants[0]
    raw = store.sends.variant_raw(store.items.get(foreign.item.id), 0)
    draft = VariantDraft("step", meta.tx_hash, meta.fee_per_gas, meta.tip_per_gas, raw)
    store.sends.add_variant(queued.item.id, draft)
    report = verify_audit(store, keyring, tmp_path / "audit")
    assert not report.ok
    assert "signed by" in (report.problem or "") and "not by the declared sender" in report.problem


async def test_relay_on_another_chain_is_disabled_with_an_alert_and_gets_nothing(
    store, keyring, anvil
):
    """A relay configured for chain 1 whose node turns out to be chain 31337 (a wrong URL)
    never receives the chain-1 transactions queued for it."""
    (sender,) = make_senders(keyring, anvil, 1)
    mainnet_tx = enqueue_transaction(store, sender.key, dict(fee_fields(anvil), chain_id=1))
    wrong = dataclasses.replace(relay("mainnet-typo", anvil.url), chain_id=1)
    async with EvmRelay(wrong) as client:
        broadcaster = Broadcaster(store, [client], FAST)
        await broadcaster.run_once()
    assert store.items.get(mainnet_tx.item.id).state is State.QUEUED
    assert store.sends.attempts(mainnet_tx.item.id) == []
    assert any("mainnet-typo disabled" in a and "31337" in a for a in broadcaster.alerts)
    assert not broadcaster.monitor.usable("mainnet-typo")


async def test_tampered_variant_is_quarantined_never_sent(store, keyring, anvil):
    (sender,) = make_senders(keyring, anvil, 1)
    (good, bad) = queue_transfers(store, [sender], 2, anvil)
    conn = sqlite3.connect(store.path, isolation_level=None)
    blob = bytearray(
        conn.execute(
            "SELECT raw FROM variants WHERE item_id = ? AND idx = 0", (bad.item.id,)
        ).fetchone()[0]
    )
    blob[-1] ^= 0x01
    conn.execute(
        "UPDATE variants SET raw = ? WHERE item_id = ? AND idx = 0", (bytes(blob), bad.item.id)
    )
    conn.close()
    broadcaster = await once(store, anvil)
    assert store.items.get(bad.item.id).state is State.QUARANTINED
    assert store.sends.attempts(bad.item.id) == []
    assert any(bad.item.id in a and "quarantined" in a for a in broadcaster.alerts)
    assert store.items.get(good.item.id).state is State.CONFIRMED
