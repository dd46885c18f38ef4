"""The audit log inside the queue: one entry per change, in the same transaction, and
checkpoints that are never inconsistent."""

from __future__ import annotations

import itertools
import json

import pytest
from tests.kits.backends import BOTH, raw_db, stored_bytes
from tests.kits.clocks import FakeClock
from tests.kits.labels import unique_label
from tests.kits.queue import queue_tx

from airlock.audit import entries, merkle
from airlock.audit.checkpoint import verify_note
from airlock.audit.log import AuditKey, checkpoint, checkpoint_if_due
from airlock.broadcaster.alerts import AlertSink
from airlock.config import ServiceConfig
from airlock.queue.errors import NonceConflict
from airlock.queue.journal import AuditIntegrityError
from airlock.queue.states import IllegalTransition, State
from airlock.signer.ladder import LadderSpec

BACKENDS = BOTH


@pytest.fixture(scope="module")
def audit_key(keyring) -> AuditKey:
    return AuditKey(keyring, unique_label("audit"))


def kinds(store) -> list[str]:
    return [json.loads(e)["type"] for e in store.audit.entries()]


def test_every_change_is_one_entry(store, eth_key):
    item = queue_tx(store, eth_key, ladder=LadderSpec(levels=2, with_cancel=True)).item
    store.items.transition(item.id, State.SENDING, "dispatch")
    store.items.transition(item.id, State.SENT, "accepted by rpc-a")
    sender = item.account
    store.nonces.sync(31337, {sender: 1})
    store.keys.rotate()
    assert kinds(store) == [
        entries.ITEM_ENQUEUED,
        entries.ITEM_TRANSITION,
        entries.ITEM_TRANSITION,
        entries.NONCE_SYNC,
        entries.DATA_KEY_ROTATED,
    ]
    first = json.loads(next(store.audit.entries(0, 1)))
    assert first["item"] == item.id and first["prev"] == entries.GENESIS_PREV
    assert [v["kind"] for v in first["data"]["variants"]] == ["step", "step", "cancel"]
    signed = {meta.tx_hash: raw for meta, raw in store.items.signed_variants(item.id)}
    for variant in first["data"]["variants"]:
        assert bytes.fromhex(variant["raw"][2:]) == signed[variant["hash"]]


def test_entries_are_chained_and_encrypted(store, eth_key, request):
    for _ in range(3):
        queue_tx(store, eth_key)
    bodies = list(store.audit.entries())
    for before, after in itertools.pairwise(bodies):
        assert json.loads(after)["prev"] == entries.entry_hash(before).hex()
    raw_file = stored_bytes(store, request)
    for body in bodies:
        assert body not in raw_file
        for variant in json.loads(body)["data"]["variants"]:
            assert variant["raw"][2:].encode() not in raw_file  # only inside ciphertexts


def test_a_refused_change_writes_no_entry(store, eth_key):
    item = queue_tx(store, eth_key).item
    before = store.audit.size()
    with pytest.raises(IllegalTransition):
        store.items.transition(item.id, State.CONFIRMED, "skip")
    with pytest.raises(NonceConflict):
        queue_tx(store, eth_key, nonce=0)
    assert store.audit.size() == before


def test_checkpoint_signs_the_tree_and_is_idempotent(store, eth_key, audit_key):
    queue_tx(store, eth_key)
    first = checkpoint(store, audit_key)
    assert first.size == store.audit.size()
    assert first.root == merkle.root(store.audit.leaves())
    note = verify_note(first.note, audit_key.public_key, store.audit.origin())
    assert (note.size, note.root) == (first.size, first.root)
    assert checkpoint(store, audit_key) == first  # nothing new: no second signature
    queue_tx(store, eth_key)
    second = checkpoint(store, audit_key)
    assert (second.id, second.size) == (first.id + 1, first.size + 1)


def test_never_signs_over_a_rewritten_history(store, eth_key, audit_key):
    queue_tx(store, eth_key)
    queue_tx(store, eth_key)
    checkpoint(store, audit_key)
    queue_tx(store, eth_key)
    conn = raw_db(store)
    conn.execute("UPDATE audit_entries SET leaf_hash = ? WHERE seq = 0", (b"\x00" * 32,))
    conn.close()
    with pytest.raises(AuditIntegrityError, match="no longer hash to the root"):
        checkpoint(store, audit_key)
    assert len(store.audit.checkpoints()) == 1


def test_checkpoint_when_due(queue_location, kek, eth_key, audit_key):
    from airlock.queue.store import Store

    clock = FakeClock()
    with Store.open(queue_location, kek, clock_ms=clock) as store:
        assert checkpoint_if_due(store, audit_key) is None  # empty log
        queue_tx(store, eth_key)
        assert checkpoint_if_due(store, audit_key, max_entries=3).size == 1  # the first one
        queue_tx(store, eth_key)
        assert checkpoint_if_due(store, audit_key, max_entries=3, max_age_ms=5000) is None
        clock.now += 5000
        assert checkpoint_if_due(store, audit_key, max_entries=3, max_age_ms=5000).size == 2
        for _ in range(3):
            queue_tx(store, eth_key)
        assert checkpoint_if_due(store, audit_key, max_entries=3).size == 5


def test_an_integer_beyond_2_53_is_written_as_its_decimal_string(store, eth_key):
    """A node may report any pending nonce: the entry records it instead of failing the
    transaction it belongs to (docs/audit-format.md §1.1)."""
    sender = queue_tx(store, eth_key).item.account
    huge = 2**60
    store.nonces.sync(31337, {sender: huge})
    data = json.loads(list(store.audit.entries())[-1])["data"]
    assert (data["chain_pending"], data["next_after"], data["chain_id"]) == (
        str(huge),
        str(huge),
        31337,  # small integers stay integers
    )
    assert entries.wide_integers({"a": [2**53, -(2**53), 2**53 - 1, True]}) == {
        "a": [str(2**53), str(-(2**53)), 2**53 - 1, True]
    }


async def test_an_alert_about_an_item_names_it_in_its_entry(store, eth_key):
    """The service's alert delivery passes the item down to the queue's audit entry."""
    item = queue_tx(store, eth_key).item
    sink = AlertSink(store, ServiceConfig())
    assert await sink.raise_("evm.item.x", f"item {item.id}: ladder exhausted", item=item.id)
    assert await sink.raise_("relay-down:a", "relay a down")
    about, general = [json.loads(e) for e in list(store.audit.entries())[-2:]]
    assert (about["type"], about["item"]) == (entries.ALERT, item.id)
    assert about["data"] == {
        "key": "evm.item.x",
        "message": f"item {item.id}: ladder exhausted",
        "severity": "warning",
    }
    assert (general["type"], general["item"]) == (entries.ALERT, None)
