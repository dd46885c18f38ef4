"""What the private stream's messages do to the queue, at once (broadcaster/venue_stream):
the venue's own rows (the simulator's, after real REST placements) handed to the stream's
apply step, twice, and then a REST reconcile over the same span: every execution stored
once, every order moved once, positions and the wallet kept newest-first."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from tests.kits import bybit as kit

from airlock.broadcaster.venue_stream import VenueStream
from airlock.config import StreamConfig
from airlock.queue.states import State
from airlock.queue.store import Store
from airlock.relays.bybit_stream import StreamMessage


@pytest.fixture(scope="module")
def keys(keyring) -> kit.BybitKeys:
    return kit.make_keys(keyring)


async def once(venue):
    async with venue.client:
        return await venue.run_once()


def message(topic: str, rows: list[dict], at: int = 0) -> StreamMessage:
    return StreamMessage(topic, at, tuple(rows))


def test_fills_and_order_changes_land_at_once_and_once(keyring, store: Store, keys):
    queued = kit.queue_orders(store, keys, 3, reachable=True)
    with kit.sim_for(keys) as sim:
        venue = kit.venue(keyring, store, keys, sim.url)
        asyncio.run(once(venue))  # placed over REST
        sim.set_mark_price(kit.SYMBOL, "59000")  # every buy fills
        executions = sim.executions()
        orders = sim.orders()
        assert len(executions) == 3
        stream = VenueStream(venue, "ws://unused", StreamConfig())
        events_before = store.events.after(0, 10_000)[-1].id

        async def push() -> None:
            await stream.apply(message("execution", executions))
            await stream.apply(message("execution", executions[:1]))  # a duplicated message
            await stream.apply(message("order", orders))

        asyncio.run(push())
        stored = store.venue.fills()
        assert sorted(f.exec_id for f in stored) == sorted(e["execId"] for e in executions)
        assert Counter(store.items.get(q.item.id).state for q in queued) == {State.CONFIRMED: 3}
        fills = [e for e in store.events.after(events_before, 10_000) if e.type == "item.fill"]
        assert len(fills) == 3, "each fill on the event stream once"
        assert stream.messages == 3
        # The REST pass over the same span afterwards reads the same executions: none twice.
        listed = len([r for r in sim.requests() if r.path == "/v5/execution/list"])
        result = asyncio.run(once(kit.venue(keyring, store, keys, sim.url)))
        assert len([r for r in sim.requests() if r.path == "/v5/execution/list"]) > listed
    assert result.fills == 0 and len(store.venue.fills()) == 3


def test_positions_and_wallet_from_the_stream_keep_the_newest(keyring, store: Store, keys):
    venue = kit.venue(keyring, store, keys, "http://127.0.0.1:9")
    stream = VenueStream(venue, "ws://unused", StreamConfig())
    row = {"symbol": "BTCUSDT", "side": "Buy", "size": "0.03", "entryPrice": "60000",
           "category": "linear", "updatedTime": "2000"}  # fmt: skip
    older = dict(row, size="0.01", updatedTime="1000")
    wallet = {"accountType": "UNIFIED", "coin": [{"coin": "USDT", "walletBalance": "99990",
                                                  "equity": "99995"}]}  # fmt: skip

    async def push() -> None:
        await stream.apply(message("position", [row], at=2000))
        await stream.apply(message("position", [older], at=1000))  # late: ignored
        await stream.apply(message("position", [{"side": "Buy"}], at=3000))  # bad: skipped
        await stream.apply(message("wallet", [wallet], at=2500))

    asyncio.run(push())
    (position,) = store.account.positions()
    assert (position.size, position.avg_price, position.source) == ("0.03", "60000", "stream")
    (usdt,) = store.account.balances()
    assert (usdt.wallet_balance, usdt.equity, usdt.venue_ms) == ("99990", "99995", 2500)
