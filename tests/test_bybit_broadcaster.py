"""The Bybit broadcaster against the simulator on loopback: outages, lost answers, clock
skew, rate-limit storms, revoked keys, tampered intents, fills reconciled once."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import pytest
from tests.kits import bybit as kit
from tests.kits.waiting import wait_until_async

from airlock.audit import entries as audit_entries
from airlock.broadcaster.venue import VenueBroadcaster
from airlock.encoding.canonical import parse_canonical as parse
from airlock.queue.bybit import cancel_order
from airlock.queue.items import Kind
from airlock.queue.states import State
from airlock.queue.store import Built, Draft, Store
from airlock.queue.venue import VenueDraft
from airlock.relays.bybit import BybitAuthError
from airlock.signer.bybit import intent_dict, make_order_intent, order_link_id_for, sign_intent
from airlock.sim.anvil import free_port
from airlock.sim.bybit import CREATE, BybitSim


@pytest.fixture(scope="module")
def keys(keyring) -> kit.BybitKeys:
    return kit.make_keys(keyring)


def link_ids(store: Store, queued) -> list[str]:
    return [store.venue.of_item(q.item.id)[1].link_id for q in queued]


def states(store: Store, queued) -> Counter[str]:
    return Counter(str(store.items.get(q.item.id).state) for q in queued)


def audit_types(store: Store) -> list[tuple[str, dict]]:
    out = []
    for raw in store.audit.entries():
        entry = parse(raw)
        out.append((entry["type"], entry["data"]))
    return out


def alerts(store: Store) -> list[str]:
    return [d["message"] for t, d in audit_types(store) if t == audit_entries.ALERT]


async def once(venue: VenueBroadcaster):
    async with venue.client:
        return await venue.run_once()


def test_queued_orders_are_placed_once_when_the_venue_returns(keyring, store: Store, keys):
    queued = kit.queue_orders(store, keys, 5)
    with kit.sim_for(keys) as sim:
        result = asyncio.run(once(kit.venue(keyring, store, keys, sim.url)))
        sent = kit.creates(sim)
        views = {o["orderLinkId"]: o for o in sim.orders()}
    assert result.sent == 5, result
    assert sent == link_ids(store, queued)  # in queue order, each once
    for q in queued:
        item, ref = store.venue.of_item(q.item.id)
        assert item.state is State.SENT
        assert ref.order_id == views[ref.link_id]["orderId"] and ref.status == "New"


def test_outage_with_lost_answers_skewed_clock_and_rate_limit_storm(keyring, store: Store, keys):
    """100 orders queued while Bybit is unreachable are each placed exactly once after it
    returns, although the venue drops answers after accepting, its clock is 3 s behind
    ours (unsynced requests would be refused: 'in the future'), and 10006 storms hit."""
    queued = kit.queue_orders(store, keys, 100)
    expected = link_ids(store, queued)
    port = free_port()
    skewed = lambda: time.time_ns() // 1_000_000 - 3000  # noqa: E731
    sim = kit.sim_for(keys, port=port, clock_ms=skewed, rate_limits={CREATE: 25})
    sim.inject("lose_response_after_accept", count=10, path=CREATE)
    sim.inject("ret_code", count=15, path=CREATE, code=10006)
    sim.inject("lose_response_after_accept", count=5, path=CREATE)
    venue = kit.venue(keyring, store, keys, f"http://127.0.0.1:{port}")

    async def main() -> None:
        stop = asyncio.Event()
        async with venue.client:
            task = asyncio.create_task(venue.run(stop))
            await wait_until_async(lambda: not venue.supervisor.is_connected, 5, "start")
            assert states(store, queued) == {"queued": 100}  # nothing left while down
            await asyncio.to_thread(sim.start)
            try:
                await wait_until_async(
                    lambda: states(store, queued)["sent"] == 100, 300, "every order placed"
                )
            finally:
                stop.set()
                await asyncio.wait_for(task, 10)

    try:
        asyncio.run(main())
        requests = sim.requests()
        orders = sim.orders()
    finally:
        sim.stop()
    placed = Counter(o["orderLinkId"] for o in orders)
    assert placed == Counter(expected), "each order exactly once, nothing else"
    sent_ids = {json.loads(r.body)["orderLinkId"] for r in requests if r.path == CREATE}
    assert sent_ids == set(expected), "never under a second orderLinkId"
    codes = Counter(r.ret_code for r in requests if r.path == CREATE)
    assert codes[10002] == 0, "the venue clock was learned before signing"
    assert codes == {0: 100, 10006: 15}, codes  # each placed by one accepted request
    assert sum(r.lost for r in requests) == 15
    lookups = [r for r in requests if r.path == "/v5/order/realtime" and "orderLinkId" in r.query]
    assert len(lookups) >= 15, "every lost answer was looked up, not resent"


def test_fills_during_an_outage_are_reconciled_once_across_pages(keyring, store: Store, keys):
    queued = kit.queue_orders(store, keys, 160, reachable=True)
    with kit.sim_for(keys, rate_limits={CREATE: 1000}) as sim:
        venue = kit.venue(keyring, store, keys, sim.url)
        asyncio.run(once(venue))
        assert states(store, queued) == {"sent": 160}
        sim.set_mark_price(kit.SYMBOL, "59000")  # every buy at 60000 fills, nobody watching
        assert len(sim.executions()) == 160
        first = asyncio.run(once(kit.venue(keyring, store, keys, sim.url)))
        again = asyncio.run(once(kit.venue(keyring, store, keys, sim.url)))
        venue_fills = {e["execId"] for e in sim.executions()}
        pages = [r for r in sim.requests() if r.path == "/v5/execution/list"]
    assert first.fills == 160 and again.fills == 0
    stored = store.venue.fills()
    assert {f.exec_id for f in stored} == venue_fills and len(stored) == 160
    assert {f.item_id for f in stored} == {q.item.id for q in queued}
    assert any("cursor=" in r.query for r in pages), "more than one page was read"
    for q in queued:
        item, ref = store.venue.of_item(q.item.id)
        assert (item.state, ref.status, ref.cum_qty) == (State.CONFIRMED, "Filled", "0.01")
    fills_entries = [d for t, d in audit_types(store) if t == audit_entries.ORDER_FILLS]
    assert sum(len(d["fills"]) for d in fills_entries) == 160


def test_revoked_key_stops_the_account_with_one_alert(keyring, store: Store, keys):
    queued = kit.queue_orders(store, keys, 12)
    with kit.sim_for(keys, rate_limits={CREATE: 4}) as sim:
        venue = kit.venue(keyring, store, keys, sim.url)

        async def main() -> int:
            stop = asyncio.Event()
            async with venue.client:
                task = asyncio.create_task(venue.run(stop))
                await wait_until_async(lambda: states(store, queued)["sent"] >= 2, 10, "sends")
                sim.revoke_key()
                await wait_until_async(lambda: venue.client.auth_stopped, 10, "the stop")
                stop.set()
                await asyncio.wait_for(task, 10)  # requests already on their way finish
                seen = len(sim.requests())
                for _ in range(5):  # more passes, a reconnect: nothing goes out any more
                    await venue.dispatch()
                    await venue.reconcile()
                    await venue._on_reconnect()
                    await venue.dispatch()
                with pytest.raises(BybitAuthError, match="account stopped"):
                    await venue.run(asyncio.Event())  # a stopped account does not reconnect
                return seen

        seen = asyncio.run(main())
        after = sim.requests()
    assert len(after) == seen, "no request after the stop"
    refused = [r.ret_code for r in after].count(10003)
    assert 1 <= refused <= 2, refused  # the refused request (and one in flight beside it)
    stops = [a for a in alerts(store) if "account stopped" in a]
    assert len(stops) == 1, alerts(store)
    counts = states(store, queued)
    assert counts["sent"] >= 2 and counts["sent"] + counts["queued"] == 12, counts


def test_tampered_intents_are_quarantined_never_sent(keyring, store: Store, keys):
    good = kit.queue_orders(store, keys, 1)[0]
    # A row whose intent was changed after signing (qty 0.01 -> 5): signature fails.
    signed = make_order_intent(
        category="linear", symbol=kit.SYMBOL, side="Buy", order_type="Limit", qty="0.01",
        price="60000", time_in_force="GTC", order_link_id=order_link_id_for("evil-1"),
    )  # fmt: skip
    changed = make_order_intent(
        category="linear", symbol=kit.SYMBOL, side="Buy", order_type="Limit", qty="5",
        price="60000", time_in_force="GTC", order_link_id=order_link_id_for("evil-1"),
    )  # fmt: skip
    bad_sig = sign_intent(keys.intent.key, signed).hex()
    # A row signed by another key, which also brings its own PEM along.
    rogue = kit.make_keys(keyring).intent
    other = make_order_intent(
        category="linear", symbol=kit.SYMBOL, side="Sell", order_type="Limit", qty="1",
        price="1", time_in_force="GTC", order_link_id=order_link_id_for("evil-2"),
    )  # fmt: skip
    rows = [
        ("evil-1", changed, bad_sig, keys.intent.public_pem),
        ("evil-2", other, sign_intent(rogue.key, other).hex(), rogue.public_pem),
    ]
    evil = []
    for key, intent, signature, pem in rows:
        payload = {"intent": intent_dict(intent), "intent_signature": signature,
                   "intent_key_pem": pem}  # fmt: skip
        draft = Draft(
            kind=Kind.BYBIT_ORDER, account="bybit", strategy="default", idempotency_key=key,
            request={"k": key}, venue=VenueDraft("order", "linear", kit.SYMBOL,
                                                 intent.order_link_id),
        )  # fmt: skip
        evil.append(
            store.items.enqueue(draft, lambda _n, p=payload: Built(payload=p, audit={})).item
        )
    with kit.sim_for(keys) as sim:
        result = asyncio.run(once(kit.venue(keyring, store, keys, sim.url)))
        sent = kit.creates(sim)
    assert sent == link_ids(store, [good])
    assert result.quarantined == 2
    for item in evil:
        moved = store.items.get(item.id)
        assert moved.state is State.QUARANTINED and "intent" in (moved.state_reason or "")
    assert len([a for a in alerts(store) if "quarantined" in a]) == 2


def test_cancel_goes_ahead_of_new_orders_and_settles(keyring, store: Store, keys):
    first = kit.queue_orders(store, keys, 1, prefix="old")[0]
    with kit.sim_for(keys) as sim:
        asyncio.run(once(kit.venue(keyring, store, keys, sim.url)))
        newer = kit.queue_orders(store, keys, 2, prefix="new")
        cancel = cancel_order(store, store.items.get(first.item.id), keys.intent)
        assert cancel.action == "queued" and cancel.cancel is not None
        asyncio.run(once(kit.venue(keyring, store, keys, sim.url)))
        paths = [r.path for r in sim.requests() if r.path in (CREATE, "/v5/order/cancel")]
        status = sim.order(order_link_id=link_ids(store, [first])[0])["orderStatus"]
    assert paths == [CREATE, "/v5/order/cancel", CREATE, CREATE]
    assert status == "Cancelled"
    assert store.items.get(cancel.cancel.item.id).state is State.CONFIRMED
    order, ref = store.venue.of_item(first.item.id)
    assert (order.state, ref.status) == (State.CONFIRMED, "Cancelled")
    assert states(store, newer) == {"sent": 2}


def test_cancel_of_an_order_still_queued_never_touches_the_venue(keyring, store: Store, keys):
    order = kit.queue_orders(store, keys, 1)[0]
    outcome = cancel_order(store, store.items.get(order.item.id), keys.intent)
    assert outcome.action == "local" and outcome.cancel is None
    with kit.sim_for(keys) as sim:
        asyncio.run(once(kit.venue(keyring, store, keys, sim.url)))
        assert [r.path for r in sim.requests() if r.path.startswith("/v5/order/c")] == []
    assert store.items.get(order.item.id).state is State.CANCELLED


def test_a_send_cut_off_by_a_crash_is_resolved_by_lookup_not_resent(
    keyring, tmp_path: Path, kek, keys
):
    """The process died after the order reached the venue but before the answer was
    written: reconcile finds it by orderLinkId and never sends it again."""
    now = [time.time_ns() // 1_000_000]
    with Store.open(tmp_path / "q.db", kek, clock_ms=lambda: now[0]) as store:
        placed, unknown = kit.queue_orders(store, keys, 2)
        for q in (placed, unknown):
            store.venue.begin(store.items.get(q.item.id), "sending to bybit (order)")
        with kit.sim_for(keys) as sim:
            venue = kit.venue(keyring, store, keys, sim.url)

            async def place_behind_its_back() -> None:
                intent = make_order_intent(
                    **{k: v for k, v in _intent_kwargs(store, placed.item.id).items()}
                )
                async with venue.client:
                    await venue.client.sync_time()
                    await venue.client.create_order(intent)

            async def reconcile() -> None:
                fresh = kit.venue(keyring, store, keys, sim.url, recv_window_ms=1000)
                async with fresh.client:
                    assert await fresh.connect()
                    await fresh.reconcile()

            asyncio.run(place_behind_its_back())
            asyncio.run(reconcile())
            assert store.items.get(placed.item.id).state is State.SENT
            assert store.items.get(unknown.item.id).state is State.SENDING  # may still appear
            now[0] += 1000 + 5_000  # at recv_window + grace: still waiting
            asyncio.run(reconcile())
            assert store.items.get(unknown.item.id).state is State.SENDING
            now[0] += 1  # past it: that request can no longer be processed
            asyncio.run(reconcile())
            assert store.items.get(unknown.item.id).state is State.QUEUED
            asyncio.run(once(kit.venue(keyring, store, keys, sim.url, recv_window_ms=1000)))
            sent = kit.creates(sim)
        assert store.items.get(unknown.item.id).state is State.SENT
        assert Counter(sent) == Counter(link_ids(store, [placed, unknown]))


def _intent_kwargs(store: Store, item_id: str) -> dict:
    data = store.items.payload(item_id)["intent"]
    return {
        "category": data["category"], "symbol": data["symbol"], "side": data["side"],
        "order_type": data["orderType"], "qty": data["qty"], "price": data["price"],
        "time_in_force": data["timeInForce"], "order_link_id": data["orderLinkId"],
    }  # fmt: skip


def test_refused_order_is_final_and_the_rest_go_on(keyring, store: Store, keys):
    queued = kit.queue_orders(store, keys, 3)
    with kit.sim_for(keys) as sim:
        sim.inject("ret_code", count=1, path=CREATE, code=110007)  # insufficient balance
        asyncio.run(once(kit.venue(keyring, store, keys, sim.url)))
    first = store.items.get(queued[0].item.id)
    assert first.state is State.REJECTED and "110007" in (first.state_reason or "")
    assert states(store, queued[1:]) == {"sent": 2}


def test_a_bad_key_at_first_connect_fails_loud(keyring, store: Store, keys):
    kit.queue_orders(store, keys, 1)
    with BybitSim("another-key", secret=keys.secret) as sim:
        with pytest.raises(BybitAuthError):
            asyncio.run(once(kit.venue(keyring, store, keys, sim.url)))
        assert [r.path for r in sim.requests()].count(CREATE) == 0


def test_rsa_key_in_the_hsm_signs_requests_the_venue_verifies(keyring, store: Store, keys):
    """A self-generated API key: the venue holds only the PEM `airlock hsm pubkey` prints."""
    label = kit.unique_label("bybit-rsa")
    keyring.generate("rsa2048", label)
    pem = keyring.public_key_pem(label).encode()
    queued = kit.queue_orders(store, keys, 2)
    with BybitSim(kit.API_KEY, rsa_public_pem=pem) as sim:
        venue = kit.venue(keyring, store, keys, sim.url, secret_label=None, rsa_key_label=label)
        asyncio.run(once(venue))
        signed = [r for r in sim.requests() if r.path == CREATE]
    assert states(store, queued) == {"sent": 2}
    assert [r.ret_code for r in signed] == [0, 0]
    assert all(len(r.headers["X-BAPI-SIGN"]) == 344 for r in signed)  # base64 of 256 bytes


def test_an_order_cancelled_elsewhere_is_caught_by_the_next_periodic_pass(
    keyring, store: Store, keys
):
    """Cancelled at the venue by someone else (the web UI) while the service runs: the
    next periodic reconcile records it, with the venue's status."""
    queued = kit.queue_orders(store, keys, 3)
    with kit.sim_for(keys) as sim:
        venue = kit.venue(keyring, store, keys, sim.url)
        other = kit.venue(keyring, store, keys, sim.url).client
        target = link_ids(store, queued[:1])[0]

        async def main() -> None:
            stop = asyncio.Event()
            async with venue.client, other:
                task = asyncio.create_task(venue.run(stop))
                try:
                    await wait_until_async(
                        lambda: store.venue.of_item(queued[0].item.id)[1].status == "New", 10, "New"
                    )
                    await other.sync_time()
                    assert (await other.cancel_order("linear", kit.SYMBOL, target)).order_id
                    await wait_until_async(
                        lambda: store.items.get(queued[0].item.id).state is State.CONFIRMED,
                        10,
                        "the periodic pass",
                    )
                finally:
                    stop.set()
                    await asyncio.wait_for(task, 10)

        asyncio.run(main())
    item, ref = store.venue.of_item(queued[0].item.id)
    assert ref.status == "Cancelled" and "Cancelled" in (item.state_reason or "")
    assert states(store, queued[1:]) == {"sent": 2}


def test_a_reconcile_slower_than_its_interval_does_not_starve_the_drain(
    keyring, store: Store, keys
):
    """A loaded machine: following hundreds of sent orders takes longer than
    reconcile_seconds. The service used to start the next reconcile before sending
    anything, forever (the CI failure of 2026-12-04); now each dispatch sends at least one
    item before it yields, and the next reconcile is due an interval after one ends."""
    queued = kit.queue_orders(store, keys, 5)

    async def drain(venue: VenueBroadcaster) -> None:
        stop = asyncio.Event()
        async with venue.client:
            task = asyncio.create_task(venue.run(stop))
            try:
                await wait_until_async(
                    lambda: states(store, queued) == Counter({"sent": 5}) or task.done(),
                    30,
                    "every order placed",
                )
            finally:
                stop.set()
                await asyncio.wait_for(task, 10)

    with kit.sim_for(keys) as sim:
        # A reconcile is always due: the interval is shorter than any reconcile.
        venue = kit.venue(keyring, store, keys, sim.url, reconcile_seconds=0.0)
        asyncio.run(drain(venue))
        assert sorted(kit.creates(sim)) == sorted(link_ids(store, queued))
