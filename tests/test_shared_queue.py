"""Several broadcasters on one PostgreSQL queue, each behind its own fault proxy to the
chain (its own network path), in one event loop: they share the senders by leases, one
whose path dies lets go of its lanes and another sends them, a holder that dies is taken
over after its lease runs out, and every transfer is mined exactly once, in nonce order.
Real parts: PostgreSQL, anvil, SoftHSM, HTTP proxies on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
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
from tests.kits.labels import unique_label
from tests.kits.waiting import wait_until_async

from airlock.audit import entries as audit_entries
from airlock.broadcaster.keeper import KeeperSettings, LaneKeeper
from airlock.broadcaster.runner import Service
from airlock.broadcaster.service import Broadcaster
from airlock.encoding.canonical import parse_canonical
from airlock.queue.kek import HsmKek
from airlock.queue.leases import evm_lane
from airlock.queue.states import State
from airlock.queue.store import SendRecord, Store
from airlock.relays.jsonrpc import EvmRelay
from airlock.sim.faultproxy import FaultProxy

pytestmark = pytest.mark.anvil

KEEP = KeeperSettings(lease_ms=800, tick_ms=100)


@dataclass
class Node:
    name: str
    store: Store
    proxy: FaultProxy
    service: Service
    keeper: LaneKeeper
    service_task: asyncio.Task[None]


@contextlib.asynccontextmanager
async def node(name: str, url: str, kek: HsmKek, upstream: str) -> AsyncIterator[Node]:
    """A broadcaster on its own connection to the queue and its own path to the chain,
    serving for the block."""
    with FaultProxy(upstream).start() as proxy, Store.open(url, kek) as store:
        evm = Broadcaster(store, [EvmRelay(relay(f"{name}-rpc", proxy.url))], FAST)
        keeper = LaneKeeper(store, settings=KEEP, holder=name)
        service = Service(store, evm, None, keeper=keeper)
        stop = asyncio.Event()
        async with service.started():
            task = asyncio.create_task(service.run(stop))
            try:
                yield Node(name, store, proxy, service, keeper, task)
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)


def lane_decisions(store: Store) -> list[dict]:
    out = []
    for raw in store.audit.entries():
        entry = parse_canonical(raw)
        if entry["type"] == audit_entries.FAILOVER_DECISION and entry["data"]["decision"] == "lane":
            out.append(entry["data"])
    return out


async def test_a_broadcaster_whose_path_dies_hands_its_lanes_over(
    pg_url: str, kek: HsmKek, keyring, anvil, tmp_path: Path
) -> None:
    with Store.open(pg_url, kek) as store:
        senders = make_senders(keyring, anvil, 4)
        first = queue_transfers(store, senders, 2, anvil)
        async with (
            node("alpha", pg_url, kek, anvil.url) as alpha,
            node("beta", pg_url, kek, anvil.url) as beta,
        ):
            await wait_until_async(
                lambda: all_in(store, [q.item.id for q in first], State.CONFIRMED), 60, "first"
            )
            assert len(alpha.keeper.held) == len(beta.keeper.held) == 2  # shared fairly
            cut = set(alpha.keeper.held)
            alpha.proxy.set_mode("down")
            later = queue_transfers(store, senders, 3, anvil)
            await wait_until_async(
                lambda: all_in(store, [q.item.id for q in later], State.CONFIRMED), 60, "later"
            )
            assert beta.keeper.held == {evm_lane(anvil.chain_id, s.address) for s in senders}
            assert alpha.keeper.held == frozenset()
        assert_mined_exactly_once(store, anvil, first + later)
        decisions = lane_decisions(store)
        released = {
            d["lane"] for d in decisions if d["action"] == "release" and d["from"] == "alpha"
        }
        assert cut <= released
        for lane in cut:
            take = next(
                d
                for d in decisions
                if d["lane"] == lane and d["action"] == "take" and d["to"] == "beta"
            )
            assert take["from"] == "alpha" and take["why"].startswith("released by alpha")
        report = verify_audit(store, keyring, tmp_path / "export")
        assert report.ok, report.problem


async def test_the_lanes_of_a_holder_that_died_are_taken_after_its_lease(
    pg_url: str, kek: HsmKek, keyring, anvil
) -> None:
    with Store.open(pg_url, kek) as store, Store.open(pg_url, kek) as ghost_store:
        senders = make_senders(keyring, anvil, 2)
        queued = queue_transfers(store, senders, 3, anvil)
        ghost = LaneKeeper(ghost_store, lambda _lane: True, KEEP, holder="ghost")
        ghost.tick()  # shows presence
        ghost.tick()  # takes both lanes, then never renews them: it died
        assert len(ghost.held) == 2
        async with node("heir", pg_url, kek, anvil.url) as heir:
            await wait_until_async(
                lambda: all_in(store, [q.item.id for q in queued], State.CONFIRMED), 60, "sent"
            )
            assert len(heir.keeper.held) == 2
        assert_mined_exactly_once(store, anvil, queued)
        takes = [d for d in lane_decisions(store) if d["to"] == "heir"]
        assert len(takes) == 2
        assert all(t["from"] == "ghost" and "expired" in t["why"] for t in takes)


async def test_a_taken_lane_is_reconciled_before_anything_is_sent(
    pg_url: str, kek: HsmKek, keyring, anvil
) -> None:
    """The last holder marked an item sending and put it on the wire, then died before
    recording the answer: the heir finds it mined by asking, and sends it never again."""
    with Store.open(pg_url, kek) as store:
        (sender,) = make_senders(keyring, anvil, 1)
        (item,) = queue_transfers(store, [sender], 1, anvil)
        ghost = LaneKeeper(store, lambda _lane: True, KEEP, holder=unique_label("ghost"))
        ghost.tick()
        ghost.tick()
        store.sends.begin([(item.item, 0)])  # marked sending ...
        (variant,) = [raw for meta, raw in store.items.signed_variants(item.item.id)][:1]
        anvil.rpc("eth_sendRawTransaction", ["0x" + variant.hex()])  # ... sent, answer lost
        async with node("heir", pg_url, kek, anvil.url) as heir:
            await wait_until_async(
                lambda: store.items.get(item.item.id).state is State.CONFIRMED, 60, "confirmed"
            )
            assert heir.keeper.held
        assert store.sends.attempts(item.item.id) == []  # the heir never sent it
        assert_mined_exactly_once(store, anvil, [item])


async def test_once_waits_out_a_dead_holder_then_sends_and_lets_go(
    pg_url: str, kek: HsmKek, keyring, anvil
) -> None:
    with Store.open(pg_url, kek) as store:
        senders = make_senders(keyring, anvil, 2)
        queued = queue_transfers(store, senders, 2, anvil)
        ghost = LaneKeeper(store, lambda _lane: True, KEEP, holder="ghost")
        ghost.tick()
        ghost.tick()
        with FaultProxy(anvil.url).start() as proxy:
            evm = Broadcaster(store, [EvmRelay(relay("once-rpc", proxy.url))], FAST)
            keeper = LaneKeeper(store, settings=KEEP, holder="once")
            service = Service(store, evm, None, keeper=keeper)
            async with service.started():
                result = await service.run_once()
        assert result.evm.sent == len(queued)
        assert_mined_exactly_once(store, anvil, queued)
        now = store.leases.now_ms()
        assert not any(
            lease.live(now) and lease.holder == "once" for lease in store.leases.all().values()
        )


async def test_a_broadcaster_outlives_the_database_dropping_its_connection(
    pg_url: str, kek: HsmKek, keyring, anvil, pg_cluster
) -> None:
    """The server ends every airlock session (a restart, a cut path): the broadcaster
    keeps running, connects again, and sends what was queued meanwhile."""
    with Store.open(pg_url, kek) as store:
        senders = make_senders(keyring, anvil, 2)
        first = queue_transfers(store, senders, 1, anvil)
        async with node("survivor", pg_url, kek, anvil.url) as survivor:
            await wait_until_async(
                lambda: all_in(store, [q.item.id for q in first], State.CONFIRMED), 60, "first"
            )
            with pg_cluster.connect() as admin:
                ended = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = 'airlock'"
                ).fetchone()[0]
            assert ended >= 2  # the survivor's connection and this test's
            later = queue_transfers(store, senders, 2, anvil)  # this store connects again
            await wait_until_async(
                lambda: all_in(store, [q.item.id for q in later], State.CONFIRMED), 60, "later"
            )
            assert not survivor.service_task.done()
        assert_mined_exactly_once(store, anvil, first + later)


def test_answers_for_an_item_the_taker_moved_first_are_dropped(
    pg_url: str, kek: HsmKek, keyring, anvil
) -> None:
    """The last holder's wave comes back after the taker reconciled its items: its answers
    are not written over the taker's (nothing of the wave is), and it goes on."""
    with Store.open(pg_url, kek) as store:
        (sender,) = make_senders(keyring, anvil, 1)
        (queued,) = queue_transfers(store, [sender], 1, anvil)
        item = queued.item
        store.sends.begin([(item, 0)])  # the last holder's wave, marked ...
        store.items.transition(item.id, State.SENT, "the taker found it in the pool")
        late = SendRecord(item.id, State.SENDING, 0, (), True, State.SENT, "accepted by rpc")
        last_holder = Broadcaster(store, [EvmRelay(relay("late-rpc", anvil.url))], FAST)
        assert last_holder._record([late]) is False  # ... answered late: dropped
        assert store.items.get(item.id).state is State.SENT
        assert store.sends.attempts(item.id) == []
