"""The Bybit half of ``airlock demo``: orders through an outage, against the simulator.

With the venue unreachable, the outage policy decides each order at enqueue: GTC limits
wait with a TTL, an IOC is refused at once, a Market order with a reference price and a
slippage cap becomes a Limit at the cap; each queued intent is signed by the HSM's P-256
intent key, and one order is cancelled locally. The broadcaster runs all along; when the
venue comes back (its clock 3 s behind ours, and the answer to one accepted order lost) it
learns the venue clock, signs each request with the HSM-held API secret, finds the order
whose answer was lost by its orderLinkId instead of sending it again, and places each order
exactly once. The mark then moves through the orders' prices while nobody watches; the
next reconcile reads the fills and confirms the orders.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from airlock.broadcaster.setup import build_venue
from airlock.broadcaster.venue import VenueBroadcaster
from airlock.config import BybitConfig
from airlock.hsm.keyring import KeyRing
from airlock.queue.bybit import IntentKey, OrderRefused, cancel_order, enqueue_order
from airlock.queue.policy import OrderRequest, PolicyConfig, decide_order
from airlock.queue.states import State
from airlock.queue.store import Store
from airlock.sim.anvil import free_port
from airlock.sim.bybit import CREATE, BybitSim
from airlock.sim.drill import DemoFailed, until

API_KEY = "airlock-demo"
SYMBOL = "BTCUSDT"
SKEW_MS = -3000  # the venue's clock runs 3 s behind ours


def bybit_drill(ring: KeyRing, store: Store, say: Callable[[str], None]) -> dict[str, Any]:
    secret = os.urandom(32)
    ring.import_hmac_secret("demo-bybit-hmac", secret)
    ring.generate("p256", "airlock-intents")
    intent_key = IntentKey(
        ring.ecdsa_key("airlock-intents", curve="p256"),
        "airlock-intents",
        ring.public_key_pem("airlock-intents"),
    )
    say("Bybit API secret imported into the HSM; P-256 intent key 'airlock-intents' created")
    port = free_port()
    queued, refused = _queue_in_outage(store, intent_key, say)
    withdrawn = queued.pop()
    cancel_order(store, store.items.get(withdrawn), intent_key)
    say(f"venue down: order {withdrawn} cancelled locally, nothing sent")
    settings = BybitConfig(
        base_url=f"http://127.0.0.1:{port}",
        api_key=API_KEY,
        secret_label="demo-bybit-hmac",
        probe_seconds=0.2,
        reconcile_seconds=0.3,
        retry_base_seconds=0.05,
        retry_cap_seconds=0.3,
    )
    venue = build_venue(settings, ring, store)
    sim = BybitSim(API_KEY, secret=secret, port=port, clock_ms=_skewed_clock)
    sim.inject("lose_response_after_accept", count=1, path=CREATE)
    try:  # the venue is down (not listening) until the drill brings it back
        back_ms = asyncio.run(_drain_when_back(store, venue, sim, queued, say))
        placed = Counter(o["orderLinkId"] for o in sim.orders())
        fills = len(sim.executions())
        first_ms = min(
            r.time_ms - SKEW_MS for r in sim.requests() if r.path == CREATE and r.ret_code == 0
        )
    finally:
        sim.stop()
    links = [_link_id(store, i) for i in queued]
    duplicates = sum(n - 1 for n in placed.values()) + len(set(placed) - set(links))
    lost = len(set(links) - set(placed))
    if duplicates or lost:
        raise DemoFailed(f"orders not placed exactly once: {placed}")
    if len(store.venue.fills()) != fills:
        raise DemoFailed(f"{fills} fills on the venue, {len(store.venue.fills())} reconciled")
    say(f"{len(links)} orders placed exactly once; {fills} fills reconciled, each once")
    return {
        "orders_placed": len(links),
        "orders_refused": refused,
        "fills": fills,
        "duplicates": duplicates,
        "lost": lost,
        "return_to_first_send_ms": first_ms - back_ms,
    }


def _link_id(store: Store, item_id: str) -> str:
    found = store.venue.of_item(item_id)
    if found is None:
        raise DemoFailed(f"queued order {item_id} has no venue reference")
    return found[1].link_id


def _skewed_clock() -> int:
    return time.time_ns() // 1_000_000 + SKEW_MS


def _queue_in_outage(
    store: Store, intent_key: IntentKey, say: Callable[[str], None]
) -> tuple[list[str], int]:
    requests = [
        OrderRequest("linear", SYMBOL, "Buy", "Limit", "0.01", "demo-gtc-1", "60000", "GTC"),
        OrderRequest("linear", SYMBOL, "Buy", "Limit", "0.02", "demo-gtc-2", "59950", "GTC"),
        OrderRequest("linear", SYMBOL, "Buy", "Limit", "0.01", "demo-ioc", "60000", "IOC"),
        OrderRequest(
            "linear",
            SYMBOL,
            "Buy",
            "Market",
            "0.01",
            "demo-mkt",
            ref_price="60000.0",
            slippage_bps=50,
        ),
        OrderRequest("linear", SYMBOL, "Sell", "Limit", "0.01", "demo-gtc-3", "70000", "GTC"),
    ]
    queued, refused = [], 0
    for request in requests:
        decision = decide_order(request, venue_reachable=False, config=PolicyConfig())
        try:
            item = enqueue_order(store, request, decision, intent_key, account="bybit").item
        except OrderRefused as exc:
            refused += 1
            say(f"venue down: {request.idempotency_key} refused at once: {exc}")
            continue
        queued.append(item.id)
        say(f"venue down: {request.idempotency_key} queued ({decision.rule}): {decision.message}")
    return queued, refused


async def _drain_when_back(
    store: Store, venue: VenueBroadcaster, sim: BybitSim, ids: list[str], say: Callable[[str], None]
) -> int:
    """Run the broadcaster with the venue down, bring it back; returns when it came back
    (wall-clock ms)."""
    stop = asyncio.Event()
    async with venue.client:
        task = asyncio.create_task(venue.run(stop))
        try:
            await until(lambda: venue.last_error is not None or task.done())
            if sim.requests():
                raise DemoFailed("something reached the venue while it was down")
            say("broadcaster running, venue down: nothing sent")
            sim.set_mark_price(SYMBOL, "61000")
            await asyncio.to_thread(sim.start)
            back_ms = time.time_ns() // 1_000_000
            say("venue back (clock 3 s behind, one answer will be lost): sending")
            await until(lambda: all(store.items.get(i).state is State.SENT for i in ids))
            say(f"venue clock offset learned: {venue.client.offset_ms:+d} ms")
            sim.set_mark_price(SYMBOL, "59000")
            say("mark moved to 59000 while nobody watched: resting buys filled")
            await until(lambda: all(store.items.get(i).state is State.CONFIRMED for i in ids))
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    return back_ms
