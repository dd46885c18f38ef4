"""The public library (airlock.Airlock, AsyncAirlock) on the real SoftHSM token and a real
queue file: transactions, orders, batches, cancels, listings, events, waiting, imports."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from eth_utils import keccak
from hexbytes import HexBytes
from tests.kits.api import DOWN, GWEI, TO, make_config, order_args, snapshot, tx_args

import airlock
from airlock import (
    Airlock,
    AsyncAirlock,
    ConfigError,
    IdempotencyConflict,
    InvalidInput,
    ItemEnded,
    ItemNotFound,
    OrderRefused,
    Queued,
    WaitTimeout,
)
from airlock.api.orders import Reachability
from airlock.api.waiting import WAIT_POLL_S
from airlock.config import AirlockConfig
from airlock.hsm.keyring import KeyRing
from airlock.queue import schema
from airlock.queue.errors import NonceConflict
from airlock.queue.items import Kind, Priority
from airlock.queue.kek import HsmKek
from airlock.queue.states import State
from airlock.queue.store import Built, Draft, Store
from airlock.queue.venue import Fill


def audit_after(store: Store, start: int) -> list[tuple[str, dict[str, Any]]]:
    """(type, data) of every audit entry written since ``start``."""
    return [(e["type"], e["data"]) for e in map(json.loads, store.audit.entries(start))]


def recovered(raw: bytes | str) -> str:
    return Account.recover_transaction(raw)


@pytest.fixture
def config(tmp_path: Path, dead_url: str) -> AirlockConfig:
    return make_config(tmp_path, dead_url)


@pytest.fixture
def make_al(config: AirlockConfig, keyring: KeyRing, store: Store) -> Callable[..., Airlock]:
    """An Airlock over the session's token and this test's queue; the venue is down unless
    the test says otherwise (never probed: no network here)."""

    def make(**kwargs: Any) -> Airlock:
        kwargs.setdefault("venue_view", lambda: DOWN)
        return Airlock(config, keyring, store, **kwargs)

    return make


@pytest.fixture
def al(make_al: Callable[..., Airlock]) -> Airlock:
    return make_al()


# --------------------------------------------------------------------- one transaction


def test_keywords_sign_a_ladder_and_cancel_whose_hashes_recover_to_the_sender(al, eth_key):
    queued = al.queue_transaction(
        **tx_args(eth_key, ladder=3, with_cancel=True, ttl=3600, idempotency_key="pay-1")
    )
    assert (queued.kind, queued.state, queued.nonce, queued.chain_id) == (
        Kind.EVM_TX,
        State.QUEUED,
        0,
        1,
    )
    assert not queued.replayed and queued.idempotency_key == "pay-1"
    assert queued.expires_ms == queued.created_ms + 3_600_000
    assert [v.kind for v in queued.variants] == ["step", "step", "step", "cancel"]
    signed = al.store.items.signed_variants(queued.id)
    assert [meta.tx_hash for meta, _ in signed] == list(queued.hashes)
    for meta, raw in signed:
        assert "0x" + keccak(raw).hex() == meta.tx_hash
        assert recovered(raw) == queued.account
    fees = [v.fee_per_gas for v in queued.variants[:3]]
    assert fees[0] == 30 * GWEI and fees[0] < fees[1] < fees[2]


def test_a_web3_txparams_dict_is_signed_as_given(al, eth_key):
    sender = al.queue_transaction(**tx_args(eth_key)).account
    storage_key = "0x" + "00" * 31 + "01"
    tx = {
        "from": sender.lower(),
        "chainId": 1,
        "to": TO,
        "value": 5,
        "gas": 60000,
        "maxFeePerGas": 40 * GWEI,
        "maxPriorityFeePerGas": 2 * GWEI,
        "type": "0x2",
        "data": b"\xca\xfe",
        "accessList": [{"address": TO, "storageKeys": [storage_key]}],
    }
    queued = al.queue_transaction(tx, key=eth_key.label, ladder=2, idempotency_key="w3")
    assert queued.nonce == 1 and len(queued.variants) == 2
    record = al.inspect(queued.id)
    for variant in record["variants"]:
        assert recovered(variant["raw"]) == sender
    signed = TypedTransaction.from_bytes(HexBytes(record["variants"][0]["raw"]))
    fields = signed.as_dict()
    assert fields["data"] == b"\xca\xfe" and fields["value"] == 5 and fields["gas"] == 60000
    assert fields["chainId"] == 1 and fields["maxFeePerGas"] == 40 * GWEI
    (entry,) = fields["accessList"]
    assert "0x" + bytes(entry["address"]).hex() == TO
    assert tuple(entry["storageKeys"]) == (int(storage_key, 16),)


def test_replaying_an_idempotency_key_answers_the_same_item_and_stores_nothing(al, eth_key):
    first = al.queue_transaction(**tx_args(eth_key, idempotency_key="pay-42"))
    before, audit_size = snapshot(al), al.store.audit.size()
    again = al.queue_transaction(**tx_args(eth_key, idempotency_key="pay-42"))
    assert (again.id, again.replayed, again.nonce) == (first.id, True, first.nonce)
    assert again.hashes == first.hashes
    assert any("already queued" in w for w in again.warnings)
    assert snapshot(al) == before and al.store.audit.size() == audit_size


def test_the_same_key_with_other_content_is_a_conflict(al, eth_key):
    al.queue_transaction(**tx_args(eth_key, idempotency_key="pay-43"))
    before = snapshot(al)
    with pytest.raises(IdempotencyConflict, match="different content"):
        al.queue_transaction(**tx_args(eth_key, value=1001, idempotency_key="pay-43"))
    assert snapshot(al) == before


BAD_TRANSACTIONS = [
    ({"to": "0x1234"}, "to"),
    ({"value": -1}, "value"),
    ({"priority_fee": 31 * GWEI}, "priority_fee"),
    ({"max_fee": "thirty"}, "max_fee"),
    ({"gas": 100}, "gas"),
    ({"chain_id": 0}, "chain_id"),
    ({"tx_type": 7}, "tx_type"),
    ({"gas_price": GWEI}, "gas_price"),
    ({"access_list": "not json"}, "access_list"),
    ({"data": "0xabc"}, "data"),
    ({"ladder": 0}, "ladder"),
    ({"ladder": "3"}, "ladder"),
    ({"bump_pct": 1}, "bump_pct"),
    ({"bump_pct": 0}, "bump_pct"),
    ({"max_fee_cap": -5}, "max_fee_cap"),
    ({"max_fee_cap": 0}, "max_fee_cap"),
    ({"max_fee_cap": "6e10"}, "max_fee_cap"),
    ({"max_fee_cap": GWEI}, "max_fee_cap"),  # the fee itself is above the cap
    ({"with_cancel": "no"}, "with_cancel"),
    ({"ttl": 0}, "ttl"),
    ({"ttl": "3600"}, "ttl"),
    ({"idempotency_key": " padded"}, "idempotency_key"),
    ({"idempotency_key": 42}, "idempotency_key"),
    ({"strategy": ""}, "strategy"),
    ({"strategy": 7}, "strategy"),
    ({"priority": "urgent"}, "priority"),
    ({"private": "yes"}, "private"),
    ({"nonce": -1}, "nonce"),
    ({"colour": "red"}, "colour"),
    ({"key": None}, "key"),
    ({"key": "no-such-key-here"}, "key"),
]


@pytest.mark.parametrize(("changes", "field"), BAD_TRANSACTIONS)
def test_bad_transaction_input_names_the_field_the_bot_used(al, eth_key, changes, field):
    with pytest.raises(InvalidInput) as caught:
        al.queue_transaction(**tx_args(eth_key, **changes))
    assert caught.value.field == field, caught.value
    assert al.items() == [] and al.store.events.last_id() == 0


def test_a_field_in_the_dict_and_as_a_keyword_is_refused(al, eth_key):
    tx = {"chainId": 1, "to": TO, "value": 1, "gas": 21000}
    with pytest.raises(InvalidInput, match="given twice") as caught:
        al.queue_transaction(tx, key=eth_key.label, value=2, max_fee=GWEI, priority_fee=GWEI)
    assert caught.value.field == "value"
    assert al.items() == []


def test_a_dict_from_another_address_or_with_unknown_fields_is_refused(al, eth_key):
    base = {"chainId": 1, "to": TO, "value": 1, "gas": 21000, "maxFeePerGas": GWEI}
    base["maxPriorityFeePerGas"] = GWEI
    with pytest.raises(InvalidInput, match="but key") as caught:
        al.queue_transaction(base | {"from": "0x" + "cd" * 20}, key=eth_key.label)
    assert caught.value.field == "from"
    with pytest.raises(InvalidInput, match="does not sign") as caught:
        al.queue_transaction(base | {"blobVersionedHashes": []}, key=eth_key.label)
    assert caught.value.field == "blobVersionedHashes"
    assert al.items() == []


def test_integers_past_2_53_are_accepted_as_decimal_strings(al, eth_key):
    big_value = str(2**70 + 3)
    queued = al.queue_transaction(
        **tx_args(
            eth_key,
            value=big_value,
            max_fee="30000000000",
            max_fee_cap="60000000000",
            nonce=str(2**53 + 1),
            ladder=4,
        )
    )
    intent = al.inspect(queued.id)["payload"]["intent"]
    assert intent["value"] == big_value and queued.nonce == 2**53 + 1
    assert all(v.fee_per_gas <= 60 * GWEI for v in queued.variants)
    assert al.store.items.payload(queued.id)["request"]["ladder"]["max_fee_cap"] == "60000000000"
    shown = json.loads(json.dumps(queued.as_json()))
    assert shown["nonce"] == str(2**53 + 1) and shown["chain_id"] == 1
    assert shown["variants"][0]["fee_per_gas"] == "30000000000"


# ---------------------------------------------------------------------- transaction batches


def test_a_batch_takes_consecutive_nonces_in_order(al, eth_key):
    web3 = {"chainId": 1, "to": TO, "value": 7, "gas": 21000, "gasPrice": GWEI, "type": 0}
    done = al.queue_transactions(
        [
            tx_args(eth_key, idempotency_key="b-0"),
            {"tx": web3, "key": eth_key.label, "idempotency_key": "b-1"},
            tx_args(eth_key, idempotency_key="b-2", with_cancel=True),
        ]
    )
    assert [q.nonce for q in done] == [0, 1, 2]
    assert [q.idempotency_key for q in done] == ["b-0", "b-1", "b-2"]
    assert [i.id for i in al.items()] == [q.id for q in done]
    for queued in done:
        for _, raw in al.store.items.signed_variants(queued.id):
            assert recovered(raw) == queued.account


def test_a_bad_element_refuses_the_whole_batch_and_names_its_index(al, eth_key):
    al.queue_transaction(**tx_args(eth_key, idempotency_key="first"))
    before = snapshot(al)
    batch = [tx_args(eth_key, idempotency_key=f"k-{i}") for i in range(4)]
    batch[2]["gas"] = 5
    with pytest.raises(InvalidInput) as caught:
        al.queue_transactions(batch)
    assert (caught.value.index, caught.value.field) == (2, "gas")
    assert snapshot(al) == before
    with pytest.raises(InvalidInput) as caught:
        al.queue_transactions([batch[0], "not a dict"])  # type: ignore[list-item]
    assert caught.value.index == 1
    assert snapshot(al) == before


def test_a_failure_inside_the_batch_transaction_rolls_every_element_back(al, eth_key):
    """Element 1 asks for the nonce element 0 was just given: found only under the lock."""
    before = snapshot(al)
    batch = [tx_args(eth_key, idempotency_key="n-0"), tx_args(eth_key, nonce=0)]
    with pytest.raises(NonceConflict) as caught:
        al.queue_transactions(batch)
    assert caught.value.index == 1
    assert snapshot(al) == before
    assert al.queue_transaction(**tx_args(eth_key)).nonce == 0  # nonce 0 was never burned


def test_a_key_repeated_within_one_batch_is_refused(al, eth_key):
    before = snapshot(al)
    batch = [tx_args(eth_key, idempotency_key="twice"), tx_args(eth_key, idempotency_key="twice")]
    with pytest.raises(IdempotencyConflict, match="more than once"):
        al.queue_transactions(batch)
    assert snapshot(al) == before


def test_a_batch_answers_an_already_queued_key_as_a_replay(al, eth_key):
    first = al.queue_transaction(**tx_args(eth_key, idempotency_key="old"))
    done = al.queue_transactions(
        [tx_args(eth_key, idempotency_key="new-1"), tx_args(eth_key, idempotency_key="old")]
    )
    assert [q.replayed for q in done] == [False, True]
    assert done[1].id == first.id and [q.nonce for q in done] == [1, 0]
    assert len(al.items()) == 2


def test_a_batch_with_a_conflicting_known_key_stores_nothing(al, eth_key):
    al.queue_transaction(**tx_args(eth_key, idempotency_key="old"))
    before = snapshot(al)
    batch = [
        tx_args(eth_key, idempotency_key="new-1"),
        tx_args(eth_key, value=9, idempotency_key="old"),
    ]
    with pytest.raises(IdempotencyConflict) as caught:
        al.queue_transactions(batch)
    assert caught.value.index == 1
    assert snapshot(al) == before


# ------------------------------------------------------------------------------ orders


def test_a_gtc_order_while_the_venue_is_down_is_queued_under_gtc_ttl(al):
    queued = al.queue_order(**order_args("o-1"), venue="down")
    assert (queued.kind, queued.state, queued.rule) == (Kind.BYBIT_ORDER, State.QUEUED, "gtc-ttl")
    assert queued.venue_reachable is False and not queued.replayed
    assert queued.expires_ms == queued.created_ms + 600_000
    assert queued.order_link_id and queued.order_link_id.startswith("al-")
    assert queued.intent is not None and queued.intent["orderLinkId"] == queued.order_link_id
    assert (queued.symbol, queued.category, queued.account) == ("BTCUSDT", "linear", "bybit")
    assert any("venue=down" in n for n in queued.notes)


def test_an_ioc_order_while_down_is_refused_audited_and_not_queued(al):
    size = al.store.audit.size()
    with pytest.raises(OrderRefused) as caught:
        al.queue_order(**order_args("ioc-1", tif="IOC"), venue="down")
    assert caught.value.rule == "ioc-fok-never-queued"
    assert al.items() == []
    refused = [d for t, d in audit_after(al.store, size) if t == "order.refused"]
    assert [d["decision"]["rule"] for d in refused] == ["ioc-fok-never-queued"]
    assert refused[0]["request"]["idempotency_key"] == "ioc-1"


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"qty": "0.01.0"}, "qty"), ({"qty": 0.01}, "qty"), ({"price": None}, "price")],
)
def test_a_malformed_order_is_refused_as_invalid_naming_the_field(al, changes, field):
    with pytest.raises(OrderRefused) as caught:
        al.queue_order(**order_args("bad", **changes), venue="down")
    assert (caught.value.rule, caught.value.field) == ("invalid-order", field)
    assert al.items() == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"symbol": None}, "symbol"),
        ({"colour": "red"}, "colour"),
        ({"reduce_only": 1}, "reduce_only"),
        ({"strategy": 7}, "strategy"),
        ({"strategy": " edge"}, "strategy"),
    ],
)
def test_missing_or_unknown_order_arguments_name_the_field(al, changes, field):
    with pytest.raises(InvalidInput) as caught:
        al.queue_order(**order_args("bad", **changes), venue="down")
    assert caught.value.field == field
    assert al.items() == []


def test_an_unknown_venue_mode_is_bad_input(al):
    with pytest.raises(InvalidInput) as caught:
        al.queue_order(**order_args("v"), venue="sideways")
    assert caught.value.field == "venue"


def test_replaying_an_order_key_answers_the_same_order(al):
    first = al.queue_order(**order_args("o-2"), venue="down")
    before = snapshot(al)
    again = al.queue_order(**order_args("o-2"), venue="up")  # the policy now would differ
    assert (again.id, again.replayed, again.rule) == (first.id, True, "gtc-ttl")
    assert any("nothing new stored" in w for w in again.warnings)
    assert snapshot(al) == before
    with pytest.raises(IdempotencyConflict):
        al.queue_order(**order_args("o-2", qty="0.02"), venue="down")
    assert snapshot(al) == before


def test_an_ioc_retry_during_an_outage_answers_the_order_queued_while_up(al):
    first = al.queue_order(**order_args("ioc-up", tif="IOC"), venue="up")
    again = al.queue_order(**order_args("ioc-up", tif="IOC"), venue="down")
    assert (first.rule, again.id, again.replayed) == ("venue-up", first.id, True)


def slow(latency_ms: float = 950.0) -> Callable[[], Reachability]:
    return lambda: Reachability(True, latency_ms, f"venue answered in {latency_ms:.0f} ms")


def test_a_market_order_on_a_slow_link_goes_as_a_capped_ioc_limit(make_al):
    al = make_al(venue_view=slow())
    size = al.store.audit.size()
    market = order_args("m-1", order_type="Market", price=None, tif=None, ref_price="60000")
    queued = al.queue_order(**market)
    assert queued.state is State.QUEUED and queued.venue_reachable is True
    assert queued.intent is not None
    assert (queued.intent["orderType"], queued.intent["timeInForce"]) == ("Limit", "IOC")
    assert queued.intent["price"] == "60060"  # 10 bps over the ref: a Buy's cap
    assert any("slow link" in w and "IOC Limit" in w for w in queued.warnings)
    decisions = [d for t, d in audit_after(al.store, size) if t == "failover.decision"]
    assert [(d["rule"], d["limit_price"]) for d in decisions] == [("slow-backup-limit", "60060")]


def test_a_market_order_on_a_slow_link_without_ref_price_is_refused(make_al):
    al = make_al(venue_view=slow())
    size = al.store.audit.size()
    with pytest.raises(InvalidInput, match="slow") as caught:
        al.queue_order(**order_args("m-2", order_type="Market", price=None, tif=None))
    assert caught.value.field == "ref_price"
    assert al.items() == []
    decisions = [d for t, d in audit_after(al.store, size) if t == "failover.decision"]
    assert [(d["rule"], d["action"]) for d in decisions] == [("slow-backup-refuse", "refuse")]


def test_a_fast_link_leaves_a_market_order_alone(make_al):
    al = make_al(venue_view=slow(latency_ms=20.0))
    size = al.store.audit.size()
    queued = al.queue_order(**order_args("m-3", order_type="Market", price=None, tif=None))
    assert queued.rule == "venue-up" and queued.intent["orderType"] == "Market"
    assert queued.warnings == ()
    assert "failover.decision" not in [t for t, _ in audit_after(al.store, size)]


def test_retrying_a_slow_link_order_when_the_link_is_fast_again_is_a_replay(make_al):
    market = order_args("m-4", order_type="Market", price=None, tif=None, ref_price="60000")
    first = make_al(venue_view=slow()).queue_order(**market)
    again = make_al(venue_view=slow(latency_ms=20.0)).queue_order(**market)
    assert (again.id, again.replayed) == (first.id, True)


def test_the_intent_key_is_created_on_first_use_and_said_so_once(al, config, keyring):
    label = config.bybit.intent_key_label
    first = al.queue_order(**order_args("k-1"), venue="down")
    assert any(f"created the P-256 intent key {label!r}" in n for n in first.notes)
    assert keyring.info(label) is not None
    second = al.queue_order(**order_args("k-2"), venue="down")
    assert not any("created" in n for n in second.notes)
    assert second.intent["orderLinkId"] != first.intent["orderLinkId"]


def test_orders_need_a_bybit_section(tmp_path, dead_url, keyring, store):
    al = Airlock(make_config(tmp_path, dead_url, bybit=False), keyring, store)
    for call in (
        lambda: al.queue_order(**order_args("x"), venue="down"),
        lambda: al.queue_orders([order_args("x")], venue="down"),
    ):
        with pytest.raises(ConfigError, match=r"no \[bybit\] section in .*airlock.toml"):
            call()
    assert al.items() == []


# ------------------------------------------------------------------------- order batches


def test_a_batch_of_a_hundred_orders_is_queued_in_one_call(al):
    done = al.queue_orders([order_args(f"batch-{i}") for i in range(100)], venue="down")
    assert len(done) == 100 and len({q.id for q in done}) == 100
    assert all(q.state is State.QUEUED and q.rule == "gtc-ttl" for q in done)
    assert [q.seq for q in done] == sorted(q.seq for q in done)
    assert [i.id for i in al.items(kind="bybit_order")] == [q.id for q in done]
    assert len({q.order_link_id for q in done}) == 100


def test_one_refused_order_refuses_the_batch_and_names_its_index(al):
    batch = [order_args(f"r-{i}") for i in range(10)]
    batch[7]["tif"] = "FOK"
    with pytest.raises(OrderRefused) as caught:
        al.queue_orders(batch, venue="down")
    assert (caught.value.index, caught.value.rule) == (7, "ioc-fok-never-queued")
    assert al.items() == []


def test_a_batch_of_one_still_names_the_index(al):
    with pytest.raises(OrderRefused) as caught:
        al.queue_orders([order_args("solo", qty="-1")], venue="down")
    assert (caught.value.index, caught.value.field) == (0, "qty")


def test_venue_is_given_once_per_order_batch(al):
    with pytest.raises(InvalidInput) as caught:
        al.queue_orders([order_args("a"), order_args("b") | {"venue": "up"}], venue="down")
    assert (caught.value.field, caught.value.index) == ("venue", 1)
    assert al.items() == []


# ------------------------------------------------------------------------------ cancel


def test_cancelling_a_never_sent_order_is_local(al):
    order = al.queue_order(**order_args("c-1"), venue="down")
    done = al.cancel(order.id)
    assert (done.action, done.rule, done.cancel_item) == ("local", "cancel-local", None)
    assert done.item.state is State.CANCELLED and al.item(order.id).state is State.CANCELLED


def test_cancelling_a_queued_transaction_is_local_and_frees_its_nonce(al, eth_key):
    queued = al.queue_transaction(**tx_args(eth_key))
    done = al.cancel(queued.id)
    assert done.action == "local" and done.item.state is State.CANCELLED
    assert "nothing was sent" in done.message
    assert al.queue_transaction(**tx_args(eth_key)).nonce == queued.nonce


def test_cancelling_a_nonce_later_ones_need_uses_the_presigned_cancel(al, eth_key):
    first = al.queue_transaction(**tx_args(eth_key, with_cancel=True))
    al.queue_transaction(**tx_args(eth_key))
    done = al.cancel(first.id)
    assert done.action == "presigned" and "pre-signed cancel" in done.message
    assert done.item.state is State.QUEUED and done.item.cancel_requested


def test_cancelling_a_sent_order_queues_a_signed_cancel_once(al):
    order = al.queue_order(**order_args("c-2"), venue="down")
    al.store.items.transition(order.id, State.SENDING, "test: on the wire")
    al.store.items.transition(order.id, State.SENT, "test: the venue took it")
    done = al.cancel(order.id)
    assert done.action == "queued" and done.rule == "cancel-first" and not done.replayed
    cancel = done.cancel_item
    assert cancel is not None
    assert (cancel.kind, cancel.state, cancel.priority) == (
        Kind.BYBIT_CANCEL,
        State.QUEUED,
        Priority.CANCEL,
    )
    assert cancel.order_link_id == order.order_link_id and done.item.state is State.SENT
    again = al.cancel(order.id)
    assert again.replayed and again.cancel_item.id == cancel.id
    with pytest.raises(InvalidInput, match="itself a cancel"):
        al.cancel(cancel.id)


def test_cancelling_an_unknown_item_is_not_found(al):
    with pytest.raises(ItemNotFound):
        al.cancel("01HZZZZZZZZZZZZZZZZZZZZZZZ")


# ------------------------------------------------------------------------------ reading


@pytest.fixture
def mixed(al, eth_key) -> list[str]:
    """Five items: tx, order, tx (sent), order (cancelled), tx; their ids in order."""
    ids = [
        al.queue_transaction(**tx_args(eth_key)).id,
        al.queue_order(**order_args("m-a"), venue="down").id,
        al.queue_transaction(**tx_args(eth_key)).id,
        al.queue_order(**order_args("m-b"), venue="down").id,
        al.queue_transaction(**tx_args(eth_key)).id,
    ]
    al.store.items.transition(ids[2], State.SENDING, "test")
    al.store.items.transition(ids[2], State.SENT, "test")
    al.cancel(ids[3])
    return ids


def test_items_filter_by_state_and_kind(al, mixed):
    def ids(**filters: Any) -> list[str]:
        return [i.id for i in al.items(**filters)]

    assert ids() == mixed
    assert ids(state="queued") == [mixed[0], mixed[1], mixed[4]]
    assert ids(state=["sent", "cancelled"]) == [mixed[2], mixed[3]]
    assert ids(kind="evm_tx") == [mixed[0], mixed[2], mixed[4]]
    assert ids(kind=["bybit_order", "bybit_cancel"]) == [mixed[1], mixed[3]]
    assert ids(state="queued", kind="bybit_order") == [mixed[1]]


def test_items_page_with_after_limit_and_newest_first(al, mixed):
    def ids(**filters: Any) -> list[str]:
        return [i.id for i in al.items(**filters)]

    assert ids(limit=2) == mixed[:2]
    assert ids(after=mixed[1], limit=2) == mixed[2:4]
    assert ids(after=mixed[4]) == []
    assert ids(newest_first=True) == mixed[::-1]
    assert ids(newest_first=True, after=mixed[3], limit=2) == [mixed[2], mixed[1]]
    assert ids(kind="evm_tx", newest_first=True, limit=1) == [mixed[4]]


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"state": "pending"}, "state"),
        ({"state": ["queued", "done"]}, "state"),
        ({"kind": "evm"}, "kind"),
        ({"limit": 0}, "limit"),
        ({"limit": True}, "limit"),
    ],
)
def test_bad_listing_filters_name_the_field(al, filters, field):
    with pytest.raises(InvalidInput) as caught:
        al.items(**filters)
    assert caught.value.field == field


def test_an_order_is_found_by_its_order_link_id_with_its_fills(al):
    queued = al.queue_order(**order_args("f-1"), venue="down")
    assert al.order(queued.order_link_id).id == queued.id
    fill = Fill(
        "exec-1",
        queued.order_link_id,
        "bybit-1",
        "BTCUSDT",
        "Buy",
        "0.004",
        "60000",
        1_700_000_000_000,
        queued.id,
    )
    al.store.venue.record_fills([fill])
    item = al.item(queued.id)
    assert [(f.exec_id, f.qty, f.price) for f in item.fills] == [("exec-1", "0.004", "60000")]
    assert item.variants == () and item.nonce is None
    with pytest.raises(ItemNotFound):
        al.order("al-nosuchorder")


def test_an_unknown_item_id_is_not_found(al):
    with pytest.raises(ItemNotFound):
        al.item("01HZZZZZZZZZZZZZZZZZZZZZZZ")


# ------------------------------------------------------------------------------- events


def test_events_record_creations_state_changes_and_new_fills(al, eth_key):
    tx = al.queue_transaction(**tx_args(eth_key))
    order = al.queue_order(**order_args("e-1"), venue="down")
    al.store.items.transition(tx.id, State.SENDING, "wave 1")
    al.store.items.transition(tx.id, State.SENT, "relay took it")
    fill = Fill(
        "exec-9", order.order_link_id, "bybit-9", "BTCUSDT", "Buy", "0.01", "60000", 1, order.id
    )
    al.store.venue.record_fills([fill])
    al.store.venue.record_fills([fill])  # seen again: not a new fill
    events = al.events()
    assert [(e.type, e.item_id) for e in events] == [
        ("item.created", tx.id),
        ("item.created", order.id),
        ("item.state", tx.id),
        ("item.state", tx.id),
        ("item.fill", order.id),
    ]
    ids = [e.id for e in events]
    assert ids == sorted(set(ids)) and ids[-1] == al.store.events.last_id()
    assert events[0].state == "queued" and events[0].from_state is None
    assert [(e.from_state, e.state, e.reason) for e in events[2:4]] == [
        ("queued", "sending", "wave 1"),
        ("sending", "sent", "relay took it"),
    ]
    assert events[4].fill is not None and events[4].fill.exec_id == "exec-9"
    assert [e.id for e in al.events(after=ids[1], limit=2)] == ids[2:4]
    assert al.events(after=ids[-1]) == []
    assert [e.type for e in al.events(item_id=order.id)] == ["item.created", "item.fill"]


def test_a_rolled_back_enqueue_leaves_no_event(al, eth_key):
    al.queue_transaction(**tx_args(eth_key))
    before = snapshot(al)

    def failing_build(_: int | None) -> Built:
        raise RuntimeError("the HSM went away mid-enqueue")

    draft = Draft(
        kind=Kind.BYBIT_ORDER, account="bybit", strategy="s", idempotency_key="rb", request={}
    )
    with pytest.raises(RuntimeError, match="went away"):
        al.store.items.enqueue(draft, failing_build)
    assert snapshot(al) == before
    later = al.queue_transaction(**tx_args(eth_key))
    (created,) = al.events(after=before[1])
    assert (created.id, created.item_id) == (before[1] + 1, later.id)


def test_migrating_a_file_without_events_numbers_its_history_once(
    tmp_path: Path, kek: HsmKek, eth_key, config, keyring
):
    path = tmp_path / "v6.db"
    with Store.open(path, kek) as store:
        al = Airlock(config, keyring, store, venue_view=lambda: DOWN)
        first = al.queue_transaction(**tx_args(eth_key)).id
        second = al.queue_order(**order_args("mig"), venue="down").id
        al.store.items.transition(first, State.SENDING, "before the upgrade")
    conn = sqlite3.connect(path, isolation_level=None)
    for trigger in ("events_created", "events_state", "events_fill"):
        conn.execute(f"DROP TRIGGER {trigger}")
    for table in ("events", "leases", "positions", "balances"):  # the tables after 6
        conn.execute(f"DROP TABLE {table}")
    conn.execute("PRAGMA user_version=6")
    conn.close()
    with Store.open(path, kek) as store:
        assert schema.version(store.core.conn) == schema.CURRENT
        al = Airlock(config, keyring, store)
        events = al.events()
        assert sorted((e.type, e.item_id) for e in events if e.type == "item.created") == sorted(
            [("item.created", first), ("item.created", second)]
        )
        assert [(e.type, e.state) for e in al.events(item_id=first)] == [
            ("item.created", "queued"),
            ("item.state", "sending"),
        ]
        assert len(events) == 3
        store.items.transition(first, State.SENT, "after the upgrade")  # the triggers are back
        (new,) = al.events(after=events[-1].id)
        assert (new.item_id, new.from_state, new.state) == (first, "sending", "sent")


# -------------------------------------------------------------------------------- wait


def test_wait_returns_once_the_item_reaches_the_state(make_al, eth_key, store):
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 1:
            for target in (State.SENDING, State.SENT, State.CONFIRMED):
                store.items.transition(item_id, target, "test: the broadcaster moved it")

    al = make_al(sleep=sleep)
    item_id = al.queue_transaction(**tx_args(eth_key)).id
    done = al.wait(item_id, until={"confirmed"}, timeout=120)
    assert done.state is State.CONFIRMED and slept == [WAIT_POLL_S]
    assert al.wait(item_id, until="confirmed").state is State.CONFIRMED  # already there


def test_wait_raises_item_ended_when_the_item_ends_elsewhere(make_al, eth_key, store):
    al = make_al(sleep=lambda _: store.items.cancel(item_id))
    item_id = al.queue_transaction(**tx_args(eth_key)).id
    with pytest.raises(ItemEnded, match="ended cancelled") as caught:
        al.wait(item_id, until=["sent", "confirmed"], timeout=120)
    assert caught.value.item.state is State.CANCELLED


def test_wait_times_out_on_the_injected_clock(make_al, eth_key):
    now = [1000.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += 1.0

    al = make_al(monotonic=lambda: now[0], sleep=sleep)
    item_id = al.queue_transaction(**tx_args(eth_key)).id
    with pytest.raises(WaitTimeout, match="still queued after 5 s") as caught:
        al.wait(item_id, until="confirmed", timeout=5)
    assert isinstance(caught.value, TimeoutError) and caught.value.item.id == item_id
    assert slept == [WAIT_POLL_S] * 5


def test_wait_for_no_state_or_an_unknown_one_is_bad_input(al, eth_key):
    item_id = al.queue_transaction(**tx_args(eth_key)).id
    for until in ([], "mined"):
        with pytest.raises(InvalidInput) as caught:
            al.wait(item_id, until=until, timeout=1)
        assert caught.value.field == "until"


# ------------------------------------------------------------------------------- asyncio


async def test_async_airlock_queues_reads_and_waits(al, eth_key):
    aal = AsyncAirlock(al)
    queued = await aal.queue_transaction(**tx_args(eth_key, idempotency_key="async-1"))
    again = await aal.queue_transaction(**tx_args(eth_key, idempotency_key="async-1"))
    assert again.replayed and again.id == queued.id
    order = await aal.queue_order(**order_args("async-o"), venue="down")
    assert not isinstance(await aal.item(order.id), Queued)  # the item, not the answer
    assert [i.id for i in await aal.items(kind="evm_tx")] == [queued.id]
    assert (await aal.order(order.order_link_id)).id == order.id
    assert [e.item_id for e in await aal.events()] == [queued.id, order.id]
    batch = await aal.queue_orders([order_args("async-b1"), order_args("async-b2")], venue="down")
    assert len(batch) == 2
    al.store.items.transition(queued.id, State.SENDING, "test")
    assert (await aal.wait(queued.id, until="sending", timeout=5)).state is State.SENDING
    done = await aal.cancel(order.id)
    assert done.action == "local"
    with pytest.raises(ItemEnded):
        await aal.wait(order.id, until="sent", timeout=5)


async def test_async_wait_times_out_on_the_airlocks_clock(make_al, eth_key):
    now = iter(range(0, 1000, 10))
    al = make_al(monotonic=lambda: float(next(now)))
    item_id = al.queue_transaction(**tx_args(eth_key)).id
    with pytest.raises(WaitTimeout) as caught:
        await AsyncAirlock(al).wait(item_id, until="confirmed", timeout=5)
    assert caught.value.item.state is State.QUEUED


# ------------------------------------------------------------------- package and records


def test_import_airlock_is_lazy_and_every_exported_name_resolves():
    probe = (
        "import json, sys, airlock\n"
        "before = sorted(m for m in sys.modules if m.startswith(('airlock.', 'pkcs11')))\n"
        "names = {n: type(getattr(airlock, n)).__name__ for n in airlock.__all__}\n"
        "print(json.dumps({'before': before, 'names': names}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    seen = json.loads(out.stdout)
    assert seen["before"] == []
    assert set(seen["names"]) == set(airlock.__all__)
    assert seen["names"]["Airlock"] == "type" and seen["names"]["OrderRefused"] == "type"
    with pytest.raises(AttributeError):
        _ = airlock.NoSuchThing  # type: ignore[attr-defined]
    assert set(airlock.__all__) <= set(dir(airlock))


def test_records_are_json_with_big_integers_as_strings(al, eth_key):
    queued = al.queue_transaction(**tx_args(eth_key, nonce=2**60, with_cancel=True))
    order = al.queue_order(**order_args("j-1"), venue="down")
    al.store.items.transition(queued.id, State.SENDING, "test")
    cancelled = al.cancel(order.id)
    records = [queued, al.item(queued.id), order, cancelled, *al.events()]
    texts = [json.dumps(r.as_json()) for r in records]
    shown = json.loads(texts[0])
    assert shown["nonce"] == str(2**60) and shown["replayed"] is False
    assert shown["kind"] == "evm_tx" and shown["state"] == "queued"
    assert [v["kind"] for v in shown["variants"]] == ["step", "cancel"]
    assert json.loads(texts[1])["state"] == "sending"
    assert json.loads(texts[2])["intent"]["orderLinkId"] == order.order_link_id
    assert json.loads(texts[3])["action"] == "local"
    state_event = json.loads(texts[-1])
    assert (state_event["type"], state_event["state"]) == ("item.state", "cancelled")
    assert state_event["item"] == order.id
