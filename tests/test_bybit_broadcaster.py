"""The Bybit broadcaster against the simulator on loopback: outages, lost answers, clock
skew, rate-limit storms, revoked keys, tampered intents, fills reconciled once."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from tests import bybit_kit as kit

from airlock.queue.states import State
from airlock.queue.store import Store


@pytest.fixture(scope="module")
def keys(keyring) -> kit.BybitKeys:
    return kit.make_keys(keyring)


def test_queued_orders_are_placed_once_when_the_venue_returns(keyring, store: Store, keys):
    queued = kit.queue_orders(store, keys, 5)
    with kit.sim_for(keys) as sim:
        venue = kit.venue(keyring, store, keys, sim.url)

        async def main():
            async with venue.client:
                return await venue.run_once()

        result = asyncio.run(main())
        links = kit.creates(sim)
    assert result.sent == 5, result
    assert Counter(links) == Counter(
        q.item.id and store.venue_item(q.item.id)[1].link_id for q in queued
    )
    for q in queued:
        assert store.get(q.item.id).state is State.SENT
