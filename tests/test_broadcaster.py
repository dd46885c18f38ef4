"""The broadcaster end to end: real anvil nodes, real SoftHSM keys, a real SQLite queue, and
the project's fault proxy in front of every relay for link faults."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tests.kits.broadcast import (
    FAST,
    all_in,
    assert_mined_exactly_once,
    make_senders,
    queue_transfers,
    relay,
    verify_audit,
)
from tests.kits.waiting import wait_until_async

from airlock.broadcaster.service import Broadcaster
from airlock.config import BroadcasterConfig, RelayConfig
from airlock.queue.states import State
from airlock.queue.store import Store
from airlock.relays.jsonrpc import EvmRelay, started
from airlock.signer.ladder import LadderSpec
from airlock.sim.anvil import Anvil
from airlock.sim.faultproxy import FaultProxy

pytestmark = pytest.mark.anvil


@pytest.fixture
def proxies(anvil: Anvil) -> Iterator[list[FaultProxy]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(FaultProxy(anvil.url, seed=n).start()) for n in range(3)]


@contextlib.asynccontextmanager
async def serving(
    store: Store, configs: list[RelayConfig], settings: BroadcasterConfig = FAST
) -> AsyncIterator[Broadcaster]:
    """A broadcaster running in the background of the test's event loop."""
    relays = [EvmRelay(c) for c in configs]
    async with started(relays), Broadcaster(store, relays, settings).serving() as broadcaster:
        yield broadcaster


async def test_outage_drill_every_transaction_mined_once_in_order(
    store, keyring, anvil, proxies, tmp_path: Path
):
    """200 transactions from 10 HSM senders queued with every relay down; the relays come
    back one by one, one slow, one answering 5xx, one garbage then flaky."""
    for proxy in proxies:
        proxy.set_mode("down")
    senders = make_senders(keyring, anvil, 10)
    queued = queue_transfers(store, senders, 20, anvil)
    ids = [q.item.id for q in queued]
    configs = [relay(f"rpc-{n}", p.url, batch_size=25) for n, p in enumerate(proxies)]
    async with serving(store, configs) as broadcaster:
        # Every relay has been probed and found down, and dispatch rounds have run:
        await wait_until_async(
            lambda: all(
                s.consecutive_failures >= 2 for s in broadcaster.monitor.snapshots().values()
            ),
            10,
            "two failed probes of every relay",
        )
        assert all_in(store, ids, State.QUEUED)  # nothing may leave
        assert not any(p.sent_raw_transactions() for p in proxies)

        proxies[0].set_mode("error", status=503)  # probes fail too: it stays down
        faults = [
            ("error", {"status": 500}),
            ("garbage", {"kind": "html"}),
            ("garbage", {"kind": "wrong_id"}),
            ("lose_response", {}),
        ]
        proxies[1].set_mode("flaky", p=0.5, faults=faults)
        await wait_until_async(
            lambda: not all_in(store, ids, State.QUEUED), 20, "a first send through the flaky relay"
        )
        proxies[2].set_mode("slow", delay_ms=150)
        await wait_until_async(lambda: all_in(store, ids, State.CONFIRMED), 90, "all confirmed")
        assert broadcaster.monitor.usable("rpc-2")
        assert not broadcaster.monitor.usable("rpc-0")
    outcomes = {a.outcome for i in ids for _, a in store.sends.attempts(i)}
    assert "transport" in outcomes and "accepted" in outcomes
    assert not any(a.relay == "rpc-0" for i in ids for _, a in store.sends.attempts(i))
    assert_mined_exactly_once(store, anvil, queued)
    report = verify_audit(store, keyring, tmp_path / "audit")
    assert report.ok, report.problem
    kinds = report.kinds
    assert kinds["items.sent"] >= 1 and kinds["items.settled"] >= 1 and kinds["relay.health"] >= 1


async def test_stuck_transaction_is_bumped_and_the_original_recorded_replaced(
    store, keyring, anvil, proxies
):
    anvil.rpc("evm_setAutomine", [False])
    (sender,) = make_senders(keyring, anvil, 1)
    (queued,) = queue_transfers(store, [sender], 1, anvil, ladder=LadderSpec(levels=3))
    item_id = queued.item.id
    v0, v1 = queued.variants[0], queued.variants[1]
    settings = dataclasses.replace(FAST, bump_after_blocks=1)
    async with serving(store, [relay("rpc-a", proxies[0].url)], settings):
        await wait_until_async(lambda: store.items.get(item_id).state is State.SENT, 10, "sent")
        assert store.items.get(item_id).active_idx == 0
        # A base fee above the first level and below the second: v0 cannot be mined.
        between = (v0.fee_per_gas + v1.fee_per_gas) // 2
        anvil.rpc("anvil_setNextBlockBaseFeePerGas", [hex(between)])
        anvil.rpc("evm_mine", [])
        await wait_until_async(lambda: store.items.get(item_id).active_idx == 1, 10, "the bump")
        assert anvil.rpc("eth_getTransactionReceipt", [v0.tx_hash]) is None
        anvil.rpc("evm_mine", [])
        await wait_until_async(
            lambda: store.items.get(item_id).state is State.CONFIRMED, 10, "mined"
        )
    item = store.items.get(item_id)
    assert item.mined_hash == v1.tx_hash
    assert store.sends.fates(item_id) == {0: "replaced", 1: "mined", 2: None}
    assert v0.fee_per_gas < between < v1.fee_per_gas


async def test_private_transaction_never_reaches_a_public_relay(store, keyring, anvil, proxies):
    """Across the first send, a bump and rebroadcasts, only the private relay sees it."""
    anvil.rpc("evm_setAutomine", [False])
    senders = make_senders(keyring, anvil, 2)
    (private,) = queue_transfers(store, senders[:1], 1, anvil, private=True)
    (public,) = queue_transfers(store, senders[1:], 1, anvil)
    public_proxies, private_proxy = proxies[:2], proxies[2]
    configs = [
        relay("rpc-a", public_proxies[0].url),
        relay("rpc-b", public_proxies[1].url),
        relay("protect", private_proxy.url, kind="evm-private"),
    ]
    settings = dataclasses.replace(FAST, bump_after_blocks=1, rebroadcast_seconds=0.3)
    async with serving(store, configs, settings):
        await wait_until_async(
            lambda: (
                store.items.get(private.item.id).state is State.SENT
                and store.items.get(public.item.id).state is State.SENT
            ),
            10,
            "both sent",
        )
        anvil.rpc("anvil_setNextBlockBaseFeePerGas", [hex(private.variants[0].fee_per_gas + 1)])
        anvil.rpc("evm_mine", [])  # neither fits: both get bumped
        await wait_until_async(
            lambda: store.items.get(private.item.id).active_idx == 1, 10, "the private bump"
        )
        await wait_until_async(
            lambda: len(store.sends.attempts(private.item.id)) >= 3, 30, "a rebroadcast"
        )
        anvil.rpc("evm_mine", [])
        await wait_until_async(
            lambda: store.items.get(private.item.id).state is State.CONFIRMED, 10, "mined"
        )
    private_hashes = {v.tx_hash for v in private.variants}
    private_raws = {"0x" + raw.hex() for _, raw in store.items.signed_variants(private.item.id)}
    for proxy in public_proxies:
        assert proxy.sent_tx_hashes().isdisjoint(private_hashes)
        for request in proxy.requests():  # not even a receipt query names it
            body = request.body.decode(errors="replace").lower()
            assert not any(h[2:] in body for h in private_hashes)
            assert not any(r[2:] in body for r in private_raws)
    assert private_proxy.sent_tx_hashes() & private_hashes
    assert not private_proxy.sent_tx_hashes() & {v.tx_hash for v in public.variants}


async def test_reorg_that_removes_a_receipt_is_detected_and_reconfirmed(
    store, keyring, anvil, proxies
):
    (sender,) = make_senders(keyring, anvil, 1)
    (queued,) = queue_transfers(store, [sender], 1, anvil)
    item_id = queued.item.id
    async with serving(store, [relay("rpc-a", proxies[0].url)]):
        await wait_until_async(
            lambda: store.items.get(item_id).state is State.CONFIRMED, 10, "mined"
        )
        first_block = store.items.get(item_id).mined_block_hash
        anvil.rpc("anvil_reorg", [1, []])  # the block holding it is replaced by an empty one
        assert anvil.rpc("eth_getTransactionReceipt", [queued.variants[0].tx_hash]) is None
        await wait_until_async(
            lambda: (
                [t.to_state for t in store.items.history(item_id)][-2:]
                == [State.SENT, State.CONFIRMED]
                and len(store.items.history(item_id)) > 4
            ),
            15,
            "re-confirmation after the reorg",
        )
    item = store.items.get(item_id)
    assert item.mined_block_hash != first_block
    assert anvil.rpc("eth_getTransactionReceipt", [item.mined_hash]) is not None
    reasons = [t.reason for t in store.items.history(item_id)]
    assert any(r.startswith("reorg:") for r in reasons)


async def test_reorg_that_removes_our_mined_cancel_sends_the_cancel_again(
    store, keyring, anvil, proxies
):
    """The item ended `replaced` by its own pre-signed cancel; a reorg takes the cancel's
    block away: the nonce is empty again, so the item goes back to `sent` and the cancel
    is sent again and mined (found by the chaos suite, seed 114)."""
    (sender,) = make_senders(keyring, anvil, 1)
    first, second = queue_transfers(store, [sender], 2, anvil)
    assert store.items.cancel(first.item.id).action == "cancel_requested"  # nonce 1 waits on it
    cancel = next(v for v in first.variants if v.kind == "cancel")
    ids = (first.item.id, second.item.id)
    async with serving(store, [relay("rpc-a", proxies[0].url)]):
        await wait_until_async(
            lambda: [store.items.get(i).state for i in ids] == [State.REPLACED, State.CONFIRMED],
            10,
            "the cancel and the next nonce mined",
        )
        blocks = [store.items.get(i).mined_block_hash for i in ids]
        anvil.rpc("anvil_reorg", [1, []])  # the block holding both replaced by an empty one
        await wait_until_async(
            lambda: (
                [store.items.get(i).state for i in ids] == [State.REPLACED, State.CONFIRMED]
                and [store.items.get(i).mined_block_hash for i in ids] != blocks
            ),
            20,
            "both mined again",
        )
    assert store.items.get(first.item.id).mined_hash == cancel.tx_hash
    assert [t.to_state for t in store.items.history(first.item.id)][-2:] == [
        State.SENT,
        State.REPLACED,
    ]
    assert int(anvil.rpc("eth_getTransactionCount", [sender.address, "latest"]), 16) == 2
