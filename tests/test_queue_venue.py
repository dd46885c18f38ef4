"""The queue's Bybit records: venue references, the sending mark, venue observations, fills,
and cancels, on a real store with HSM-signed intents."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.kits import bybit as kit
from tests.kits.backends import BOTH
from tests.kits.clocks import FakeClock
from tests.kits.labels import unique_label

from airlock.audit.export import export
from airlock.audit.log import AuditKey
from airlock.audit.order_check import OrderCheckError, check_enqueued_order, key_fingerprint
from airlock.audit.verify import verify_export
from airlock.errors import InvalidInput
from airlock.queue.bybit import cancel_order
from airlock.queue.errors import StaleItems
from airlock.queue.items import Item, Kind, Priority
from airlock.queue.kek import HsmKek
from airlock.queue.states import State
from airlock.queue.store import Store
from airlock.queue.venue import Fill, VenueSeen
from airlock.signer.bybit import (
    cancel_dict,
    cancel_from_dict,
    load_intent_public_key,
    order_link_id_for,
    verify_intent,
)

T0 = 1_700_000_000_000
BACKENDS = BOTH


@pytest.fixture(scope="module")
def keys(keyring) -> kit.BybitKeys:
    return kit.make_keys(keyring)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def clocked(queue_location: Path | str, kek: HsmKek, clock: FakeClock) -> Iterator[Store]:
    """A fresh queue whose time is ``clock``."""
    with Store.open(queue_location, kek, clock_ms=clock) as opened:
        yield opened


def one(store: Store, keys: kit.BybitKeys, key: str, **changes: Any) -> Item:
    (queued,) = kit.queue_orders(store, keys, 1, prefix=key, change=lambda _: changes)
    return queued.item


def entries(store: Store, start: int) -> list[dict[str, Any]]:
    return [json.loads(e) for e in store.audit.entries(start)]


def sent(store: Store, item: Item, order_id: str = "42") -> Item:
    """Take a queued order to ``sent`` the way the broadcaster does."""
    sending = store.venue.begin(item, "sending to bybit (order)")
    return store.venue.record(
        sending, [State.SENT], "placed", VenueSeen(order_id=order_id, status="New")
    )


# -- enqueue ---------------------------------------------------------------------------


def test_an_enqueued_order_has_its_venue_reference(store: Store, keys: kit.BybitKeys) -> None:
    (queued,) = kit.queue_orders(store, keys, 1)
    item = queued.item
    link = order_link_id_for(item.idempotency_key)
    assert item.idempotency_key == "ord-0" and item.kind is Kind.BYBIT_ORDER
    pair = store.venue.order_by_link(link)
    assert pair is not None
    found, ref = pair
    assert found == item
    assert (ref.item_id, ref.action, ref.category, ref.symbol) == (
        item.id,
        "order",
        "linear",
        kit.SYMBOL,
    )
    assert ref.link_id == link == store.items.payload(item.id)["intent"]["orderLinkId"]
    assert (ref.order_id, ref.status, ref.cum_qty, ref.avg_price, ref.seen_ms) == (None,) * 5
    assert store.venue.of_item(item.id) == pair
    assert store.venue.items_by_link([link, "al-unknown"]) == {link: item.id}
    assert store.venue.order_by_link(order_link_id_for("never-queued")) is None


# -- venue_due -------------------------------------------------------------------------


def test_venue_due_puts_cancels_first_and_skips_expired_and_waiting_items(
    clocked: Store, clock: FakeClock, keys: kit.BybitKeys
) -> None:
    a = one(clocked, keys, "a")
    clock.now += 1000
    b = one(clocked, keys, "b")
    clock.now += 1000
    c = one(clocked, keys, "c", ttl_s=60)
    clock.now += 1000
    d = one(clocked, keys, "d")
    assert c.expires_ms == c.created_ms + 60_000
    clock.now += 1000
    sent(clocked, a)
    clock.now += 1000
    cancel = cancel_order(clocked, clocked.items.get(a.id), keys.intent).cancel
    assert cancel is not None
    x = cancel.item
    assert x.created_ms > d.created_ms and x.priority == Priority.CANCEL == 0

    def due(limit: int = 100) -> list[str]:
        return [item.id for item, _ in clocked.venue.due(limit)]

    assert due() == [x.id, b.id, c.id, d.id]  # a is sent: never due again
    assert due(limit=2) == [x.id, b.id]
    assert [ref.action for _, ref in clocked.venue.due()] == ["cancel", "order", "order", "order"]

    # A retry time in the future keeps an item back until it comes.
    clocked.venue.record(clocked.items.get(b.id), [], "backing off", retry_ms=clock.now + 5000)
    assert clocked.items.get(b.id).retry_ms == clock.now + 5000
    assert due() == [x.id, c.id, d.id]
    clock.now += 4999
    assert due() == [x.id, c.id, d.id]
    clock.now += 1
    assert due() == [x.id, b.id, c.id, d.id]

    # An expired item is left to the expiry pass; cancels never expire.
    assert c.expires_ms is not None
    clock.now = c.expires_ms - 1
    assert due() == [x.id, b.id, c.id, d.id]
    clock.now = c.expires_ms
    assert due() == [x.id, b.id, d.id]
    assert clocked.items.get(c.id).state is State.QUEUED
    clock.now = T0 + 10 * 86_400_000
    assert due() == [x.id]


def test_venue_due_for_an_empty_queue(clocked: Store) -> None:
    assert clocked.venue.due() == []


# -- begin_venue -----------------------------------------------------------------------


def test_begin_venue_marks_sending_with_its_time(
    clocked: Store, clock: FakeClock, keys: kit.BybitKeys
) -> None:
    item = one(clocked, keys, "o")
    clocked.venue.record(item, [], "backing off", retry_ms=T0 + 1)
    clock.now += 7
    size = clocked.audit.size()
    sending = clocked.venue.begin(clocked.items.get(item.id), "sending to bybit (order)")
    assert sending.state is State.SENDING
    assert sending.sent_ms == T0 + 7 and sending.retry_ms is None
    assert clocked.items.get(item.id) == sending
    (entry,) = entries(clocked, size)
    assert entry["type"] == "item.transition" and entry["item"] == item.id
    assert (entry["data"]["from"], entry["data"]["to"]) == ("queued", "sending")
    assert clocked.venue.due() == []


@pytest.mark.parametrize("meanwhile", ["sent-by-another", "cancelled"])
def test_begin_venue_refuses_an_item_moved_meanwhile(
    clocked: Store, clock: FakeClock, keys: kit.BybitKeys, meanwhile: str
) -> None:
    item = one(clocked, keys, "o")
    clock.now += 5
    if meanwhile == "cancelled":
        clocked.items.cancel(item.id)
    else:
        clocked.venue.begin(item, "the other dispatcher")
    before, size = clocked.items.get(item.id), clocked.audit.size()
    clock.now += 5
    with pytest.raises(StaleItems):
        clocked.venue.begin(item, "a stale read")
    assert clocked.items.get(item.id) == before  # state, sent_ms and updated_ms untouched
    assert clocked.audit.size() == size


def test_begin_venue_refuses_an_item_read_in_another_state(
    clocked: Store, keys: kit.BybitKeys
) -> None:
    sending = clocked.venue.begin(one(clocked, keys, "o"), "go")
    size = clocked.audit.size()
    with pytest.raises(StaleItems):
        clocked.venue.begin(sending, "again")
    assert clocked.audit.size() == size


# -- record_venue ----------------------------------------------------------------------


def test_record_venue_with_a_path_audits_each_move_with_the_venue_data(
    clocked: Store, clock: FakeClock, keys: kit.BybitKeys
) -> None:
    sending = clocked.venue.begin(one(clocked, keys, "o"), "go")
    clock.now += 100
    seen = VenueSeen(order_id="42", status="Filled", cum_qty="0.01", avg_price="60000")
    size = clocked.audit.size()
    final = clocked.venue.record(sending, [State.SENT, State.CONFIRMED], "filled", seen)
    assert final.state is State.CONFIRMED
    moves = entries(clocked, size)
    assert [e["type"] for e in moves] == ["item.transition", "item.transition"]
    assert [(e["data"]["from"], e["data"]["to"]) for e in moves] == [
        ("sending", "sent"),
        ("sent", "confirmed"),
    ]
    for entry in moves:
        assert entry["item"] == sending.id
        assert entry["data"]["venue"] == seen.as_json()
        assert entry["data"]["reason"] == "filled"
    ref = clocked.venue.of_item(sending.id)
    assert ref is not None
    assert (ref[1].order_id, ref[1].status, ref[1].cum_qty, ref[1].avg_price) == (
        "42",
        "Filled",
        "0.01",
        "60000",
    )
    assert ref[1].seen_ms == T0 + 100
    assert [(t.from_state, t.to_state) for t in clocked.items.history(sending.id)][-2:] == [
        (State.SENDING, State.SENT),
        (State.SENT, State.CONFIRMED),
    ]


def test_record_venue_without_venue_data_leaves_it_out(clocked: Store, keys: kit.BybitKeys) -> None:
    sending = clocked.venue.begin(one(clocked, keys, "o"), "go")
    size = clocked.audit.size()
    clocked.venue.record(sending, [State.QUEUED], "rate limited", retry_ms=T0 + 500)
    stored = clocked.items.get(sending.id)
    assert stored.state is State.QUEUED and stored.retry_ms == T0 + 500
    (entry,) = entries(clocked, size)
    assert entry["type"] == "item.transition" and "venue" not in entry["data"]


def test_record_venue_returns_the_item_as_stored(clocked: Store, keys: kit.BybitKeys) -> None:
    sending = clocked.venue.begin(one(clocked, keys, "o"), "go")
    queued = clocked.venue.record(sending, [State.QUEUED], "rate limited", retry_ms=T0 + 500)
    assert queued == clocked.items.get(sending.id)


def test_record_venue_observed_only_when_the_venue_state_changes(
    clocked: Store, clock: FakeClock, keys: kit.BybitKeys
) -> None:
    item = sent(clocked, one(clocked, keys, "o"))
    clock.now += 10
    size = clocked.audit.size()

    partly = VenueSeen(order_id="42", status="PartiallyFilled", cum_qty="0.004")
    assert clocked.venue.record(item, [], "on the venue", partly).state is State.SENT
    (entry,) = entries(clocked, size)
    assert entry["type"] == "order.observed" and entry["item"] == item.id
    assert entry["data"] == {"state": "sent", "reason": "on the venue", "venue": partly.as_json()}

    # The same view again, a view with nothing known, or no view at all: no entry.
    size = clocked.audit.size()
    clocked.venue.record(item, [], "on the venue", partly)
    clocked.venue.record(item, [], "nothing known", VenueSeen())
    clocked.venue.record(item, [], "not in this listing")
    assert clocked.audit.size() == size
    ref = clocked.venue.of_item(item.id)
    assert ref is not None and ref[1].status == "PartiallyFilled" and ref[1].cum_qty == "0.004"

    # One field moving is a change.
    more = VenueSeen(cum_qty="0.008")
    clocked.venue.record(item, [], "on the venue", more)
    (entry,) = entries(clocked, size)
    assert entry["type"] == "order.observed" and entry["data"]["venue"] == more.as_json()
    ref = clocked.venue.of_item(item.id)
    assert ref is not None and (ref[1].order_id, ref[1].status, ref[1].cum_qty) == (
        "42",
        "PartiallyFilled",
        "0.008",
    )


def test_record_venue_refuses_a_stale_state(clocked: Store, keys: kit.BybitKeys) -> None:
    item = one(clocked, keys, "o")
    sending = clocked.venue.begin(item, "go")
    size = clocked.audit.size()
    with pytest.raises(StaleItems):
        clocked.venue.record(item, [State.SENDING], "stale", VenueSeen(order_id="1"))
    with pytest.raises(StaleItems):
        clocked.venue.record(item, [], "stale", VenueSeen(order_id="1"))
    assert clocked.audit.size() == size
    assert clocked.items.get(item.id) == sending
    ref = clocked.venue.of_item(item.id)
    assert ref is not None and ref[1].order_id is None and ref[1].seen_ms is None


# -- fills -----------------------------------------------------------------------------


def fill(exec_id: str, at: int, item_id: str | None, qty: str = "0.001") -> Fill:
    return Fill(
        exec_id=exec_id,
        link_id="al-x" if item_id is None else "al-mine",
        order_id="42",
        symbol=kit.SYMBOL,
        side="Buy",
        exec_qty=qty,
        exec_price="60000",
        exec_time_ms=at,
        item_id=item_id,
    )


def test_record_fills_keeps_each_exec_id_once(clocked: Store, keys: kit.BybitKeys) -> None:
    a, b = one(clocked, keys, "a"), one(clocked, keys, "b")
    assert clocked.venue.fill_counts() == {} and clocked.venue.latest_fill_ms() is None
    f1, f2 = fill("e1", T0 - 300, a.id), fill("e2", T0 - 200, a.id)
    f3, f4 = fill("e3", T0 - 100, b.id), fill("e4", T0 - 50, None)

    size = clocked.audit.size()
    assert clocked.venue.record_fills([f1, f2]) == [f1, f2]
    assert clocked.venue.record_fills([f2, f3, f4, f3]) == [f3, f4]
    assert clocked.venue.record_fills([f1, f2, f3, f4]) == []
    assert clocked.venue.record_fills([]) == []
    # A second report of an execId (even with other numbers) is not a second fill.
    assert clocked.venue.record_fills([fill("e1", T0, a.id, qty="9")]) == []

    added = entries(clocked, size)
    assert [e["type"] for e in added] == ["order.fills", "order.fills"]
    assert [e["item"] for e in added] == [None, None]
    assert added[0]["data"] == {"fills": [f1.as_json(), f2.as_json()]}
    assert added[1]["data"] == {"fills": [f3.as_json(), f4.as_json()]}

    assert clocked.venue.fills() == [f1, f2, f3, f4]
    assert clocked.venue.fills(a.id) == [f1, f2]
    assert clocked.venue.fill_counts() == {a.id: 2, b.id: 1}  # not airlock's: not counted
    assert clocked.venue.latest_fill_ms() == T0 - 50


# -- cancel_order ----------------------------------------------------------------------


def test_cancel_of_a_queued_order_is_local(store: Store, keys: kit.BybitKeys) -> None:
    (queued,) = kit.queue_orders(store, keys, 1)
    outcome = cancel_order(store, queued.item, keys.intent)
    assert outcome.action == "local" and outcome.rule == "cancel-local"
    assert outcome.cancel is None and outcome.local is not None
    assert outcome.order.state is State.CANCELLED
    assert store.items.get(queued.item.id).state is State.CANCELLED
    assert [i.kind for i in store.items.select()] == [Kind.BYBIT_ORDER]
    assert [ref.action for _, ref in store.venue.all()] == ["order"]
    assert store.venue.due() == []
    # Nothing left to cancel.
    with pytest.raises(InvalidInput, match="nothing to cancel"):
        cancel_order(store, store.items.get(queued.item.id), keys.intent)


def test_cancel_of_a_sent_order_queues_a_signed_cancel(
    store: Store, keys: kit.BybitKeys, keyring, tmp_path: Path
) -> None:
    (queued,) = kit.queue_orders(store, keys, 1)
    order = sent(store, queued.item)
    link = order_link_id_for(order.idempotency_key)
    size = store.audit.size()

    outcome = cancel_order(store, order, keys.intent)
    assert outcome.action == "queued" and outcome.rule == "cancel-first"
    assert outcome.cancel is not None and not outcome.cancel.existing
    cancel = outcome.cancel.item
    assert (cancel.kind, cancel.state, cancel.priority) == (Kind.BYBIT_CANCEL, State.QUEUED, 0)
    assert cancel.expires_ms is None  # cancels never expire
    assert cancel.idempotency_key == f"cancel:{order.idempotency_key}"
    assert store.items.get(order.id).state is State.SENT  # the order itself is untouched

    pair = store.venue.of_item(cancel.id)
    assert pair is not None
    ref = pair[1]
    assert (ref.action, ref.link_id, ref.category, ref.symbol) == (
        "cancel",
        link,
        "linear",
        kit.SYMBOL,
    )
    # The orderLinkId still names the order, not its cancel.
    by_link = store.venue.order_by_link(link)
    assert by_link is not None and by_link[0].id == order.id
    assert store.venue.items_by_link([link]) == {link: order.id}

    payload = store.items.payload(cancel.id)
    intent = cancel_from_dict(payload["intent"])
    assert intent.order_link_id == link and intent.symbol == kit.SYMBOL
    signature = bytes.fromhex(payload["intent_signature"])
    pem = keys.intent.public_pem.encode()
    assert payload["intent_key_pem"] == keys.intent.public_pem
    assert verify_intent(pem, intent, signature)
    assert check_enqueued_order(payload) == key_fingerprint(load_intent_public_key(pem))
    tampered = dict(payload, intent=dict(cancel_dict(intent), symbol="ETHUSDT"))
    assert not verify_intent(pem, cancel_from_dict(tampered["intent"]), signature)
    with pytest.raises(OrderCheckError, match="does not verify"):
        check_enqueued_order(tampered)

    (enqueued,) = entries(store, size)
    assert enqueued["type"] == "item.enqueued" and enqueued["data"]["kind"] == "bybit_cancel"

    # The same request again is the same cancel; nothing new is stored.
    size = store.audit.size()
    again = cancel_order(store, store.items.get(order.id), keys.intent)
    assert again.cancel is not None and again.cancel.existing
    assert again.cancel.item.id == cancel.id
    assert store.audit.size() == size
    assert len(store.items.select()) == 2

    # The auditor's check passes for the order's and the cancel's intents alike.
    store.venue.record(
        store.items.get(order.id), [], "partly filled", VenueSeen(status="PartiallyFilled")
    )
    store.venue.record_fills([fill("e1", 1, order.id)])
    out = tmp_path / "export"
    export(store, AuditKey(keyring, unique_label("audit")), out)
    report = verify_export(out, (out / "audit-key.pem").read_bytes())
    assert report.ok, report.problem
    assert report.kinds["item.enqueued"] == 2
    assert report.kinds["order.observed"] == 1 and report.kinds["order.fills"] == 1
    assert report.intent_keys == {key_fingerprint(load_intent_public_key(pem))}
    assert report.warnings == []


def test_cancel_of_a_sending_order_is_queued_for_the_venue(
    store: Store, keys: kit.BybitKeys
) -> None:
    (queued,) = kit.queue_orders(store, keys, 1)
    sending = store.venue.begin(queued.item, "go")
    # The caller read the order while it was still queued: the local cancel is refused
    # by the state machine and a venue cancel is queued instead.
    outcome = cancel_order(store, queued.item, keys.intent)
    assert outcome.action == "queued" and outcome.cancel is not None
    assert outcome.order.state is State.SENDING
    assert store.items.get(sending.id).state is State.SENDING
    due = store.venue.due()
    assert [(i.id, r.action) for i, r in due] == [(outcome.cancel.item.id, "cancel")]
