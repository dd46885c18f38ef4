"""The encrypted queue with a real SoftHSM key-encryption key, on both engines: a real
SQLite file and a real PostgreSQL database (``BACKENDS``; the schema tests are per engine)."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path

import pytest
from eth_utils import keccak
from tests.kits.backends import BOTH, RawDb, raw_db, stored_bytes
from tests.kits.clocks import FakeClock
from tests.kits.labels import unique_label
from tests.kits.queue import queue_tx

from airlock.hsm.errors import KeyNotFound
from airlock.queue import schema
from airlock.queue.envelope import field_aad
from airlock.queue.errors import (
    IdempotencyConflict,
    KekError,
    NonceConflict,
    PayloadTampered,
    SchemaTooNew,
    StaleItems,
    StoreUnavailable,
)
from airlock.queue.items import Kind, Priority
from airlock.queue.kek import HsmKek
from airlock.queue.states import IllegalTransition, State
from airlock.queue.store import Built, Draft, Store
from airlock.signer.ladder import LadderSpec

BACKENDS = BOTH


def order_draft(key: str, priority: int = Priority.NORMAL, ttl_ms: int | None = None) -> Draft:
    return Draft(
        kind=Kind.BYBIT_ORDER,
        account="bybit-main",
        strategy="s1",
        idempotency_key=key,
        request={"symbol": "BTCUSDT", "side": "Buy", "qty": "0.01", "key": key},
        priority=priority,
        ttl_ms=ttl_ms,
    )


def order_content(_nonce: int | None) -> Built:
    return Built(payload={"order": {"symbol": "BTCUSDT", "side": "Buy", "qty": "0.01"}})


# --------------------------------------------------------------------------- schema


def test_fresh_file_has_current_schema_and_durable_settings(tmp_path: Path, kek: HsmKek):
    Store.open(tmp_path / "queue.db", kek).close()
    conn = schema.connect(tmp_path / "queue.db")
    assert schema.version(conn) == schema.CURRENT
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    conn.close()


def test_older_file_is_migrated_and_keeps_its_items(tmp_path: Path, kek: HsmKek, eth_key):
    path = tmp_path / "old.db"
    with Store.open(path, kek) as store:
        item = queue_tx(store, eth_key).item
    # Make it a version-1 file: later migrations added these tables.
    conn = sqlite3.connect(path, isolation_level=None)
    dropped = ("transitions", "audit_entries", "audit_checkpoints", "meta", "attempts")
    for trigger in ("events_created", "events_state", "events_fill"):
        conn.execute(f"DROP TRIGGER {trigger}")
    later = ("venue_orders", "fills", "alerts", "events", "leases", "positions", "balances")
    for table in (*dropped, *later):
        conn.execute(f"DROP TABLE {table}")
    for column in ("active_idx", "sent_ms", "sent_block", "retry_ms", "mined_hash"):
        conn.execute(f"ALTER TABLE items DROP COLUMN {column}")
    for column in ("mined_block", "mined_block_hash"):
        conn.execute(f"ALTER TABLE items DROP COLUMN {column}")
    conn.execute("ALTER TABLE variants DROP COLUMN fate")
    conn.execute("PRAGMA user_version=1")
    conn.close()
    with Store.open(path, kek) as store:
        assert schema.version(store.core.conn) == schema.CURRENT
        assert store.items.payload(item.id)["intent"]["nonce"] == 0
        assert [t.to_state for t in store.items.history(item.id)] == [State.QUEUED]
        store.items.transition(item.id, State.SENDING, "after the migration")
        assert [t.to_state for t in store.items.history(item.id)] == [State.QUEUED, State.SENDING]


def test_newer_schema_is_refused_and_the_file_untouched(tmp_path: Path, kek: HsmKek):
    path = tmp_path / "new.db"
    Store.open(path, kek).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA user_version={schema.CURRENT + 5}")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(SchemaTooNew, match=r"newer airlock.*Upgrade airlock"):
        Store.open(path, kek)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path, kek: HsmKek):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreUnavailable, match="cannot open queue database"):
        Store.open(path, kek)


def test_the_queue_room_never_deletes():
    """'Nothing is ever deleted': no DELETE statement exists in the queue package."""
    source = Path(__file__).parents[1] / "src" / "airlock" / "queue"
    for path in source.glob("*.py"):
        assert "DELETE " not in path.read_text().upper(), path


# --------------------------------------------------------------------------- enqueue


def test_enqueue_stores_every_variant_encrypted_with_its_hash(store: Store, eth_key):
    result = queue_tx(store, eth_key, ladder=LadderSpec(levels=3, with_cancel=True))
    assert [v.kind for v in result.variants] == ["step", "step", "step", "cancel"]
    signed = store.items.signed_variants(result.item.id)
    for meta, raw in signed:
        assert meta.tx_hash == "0x" + keccak(raw).hex()
    fees = [v.fee_per_gas for v in result.variants]
    assert fees == sorted(fees) and len(set(fees[:3])) == 3
    payload = store.items.payload(result.item.id)
    assert payload["sender"] == result.item.account
    assert payload["intent"]["nonce"] == result.item.nonce == 0


def test_idempotency_key_returns_the_same_item(store: Store, eth_key):
    first = queue_tx(store, eth_key, idempotency_key="order-7")
    again = queue_tx(store, eth_key, idempotency_key="order-7")
    assert again.existing and again.item.id == first.item.id
    assert len(store.items.select()) == 1
    assert store.nonces.status()[0].next_nonce == 1  # no nonce spent on the retry


def test_idempotency_key_with_other_content_is_refused(store: Store, eth_key):
    queue_tx(store, eth_key, idempotency_key="order-8")
    with pytest.raises(IdempotencyConflict, match="different content"):
        queue_tx(store, eth_key, idempotency_key="order-8", fields={"value": 1})
    assert len(store.items.select()) == 1


def test_idempotency_holds_under_concurrent_retries(store: Store, eth_key):
    results = []

    def worker():
        results.append(queue_tx(store, eth_key, idempotency_key="race"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len({r.item.id for r in results}) == 1
    assert sum(not r.existing for r in results) == 1
    assert len(store.items.select()) == 1


def test_sequence_numbers_are_per_strategy_and_monotonic(store: Store, eth_key):
    seqs = {
        s: [queue_tx(store, eth_key, strategy=s).item.seq for _ in range(3)] for s in ("a", "b")
    }
    assert seqs == {"a": [1, 2, 3], "b": [1, 2, 3]}


def test_priority_orders_dispatch(store: Store):
    normal = store.items.enqueue(order_draft("n1"), order_content).item
    risk = store.items.enqueue(order_draft("r1", Priority.RISK_REDUCING), order_content).item
    cancel = store.items.enqueue(order_draft("c1", Priority.CANCEL), order_content).item
    normal2 = store.items.enqueue(order_draft("n2"), order_content).item
    assert [i.id for i in store.items.ready()] == [cancel.id, risk.id, normal.id, normal2.id]


# --------------------------------------------------------------------------- tampering


def flip_byte(store: Store, table: str, column: str, where: str, args: tuple, at: int = 20):
    conn = raw_db(store)
    blob = bytearray(
        conn.execute(f"SELECT {column} FROM {table} WHERE {where}", args).fetchone()[0]
    )
    blob[at] ^= 0x01
    conn.execute(f"UPDATE {table} SET {column} = ? WHERE {where}", (bytes(blob), *args))
    conn.close()


def test_flipped_payload_byte_quarantines_the_item(store: Store, eth_key):
    item = queue_tx(store, eth_key).item
    flip_byte(store, "items", "payload", "id = ?", (item.id,))
    with pytest.raises(PayloadTampered, match="failed authentication"):
        store.items.payload(item.id)
    after = store.items.get(item.id)
    assert after.state is State.QUARANTINED
    assert "failed authentication" in after.state_reason
    assert item.id not in [i.id for i in store.items.ready()]
    assert not after.holds_nonce  # never sent: its nonce slot is free again


def test_flipped_variant_byte_quarantines_the_item(store: Store, eth_key):
    item = queue_tx(store, eth_key, ladder=LadderSpec(levels=2)).item
    flip_byte(store, "variants", "raw", "item_id = ? AND idx = 1", (item.id,))
    with pytest.raises(PayloadTampered, match=r"variants\.raw"):
        store.items.signed_variants(item.id)
    assert store.items.get(item.id).state is State.QUARANTINED


def test_swapped_ciphertexts_fail_in_both_rows(store: Store, eth_key):
    a = queue_tx(store, eth_key).item
    b = queue_tx(store, eth_key).item
    conn = raw_db(store)
    pa = conn.execute("SELECT payload FROM items WHERE id = ?", (a.id,)).fetchone()[0]
    pb = conn.execute("SELECT payload FROM items WHERE id = ?", (b.id,)).fetchone()[0]
    conn.execute("UPDATE items SET payload = ? WHERE id = ?", (pb, a.id))
    conn.execute("UPDATE items SET payload = ? WHERE id = ?", (pa, b.id))
    conn.close()
    assert sorted(i for i, _ in store.items.verify()) == sorted([a.id, b.id])
    assert {store.items.get(a.id).state, store.items.get(b.id).state} == {State.QUARANTINED}


def test_changed_key_id_fails(store: Store, eth_key):
    item = queue_tx(store, eth_key).item
    store.keys.rotate()
    conn = raw_db(store)
    conn.execute("UPDATE items SET key_id = 2 WHERE id = ?", (item.id,))
    conn.close()
    with pytest.raises(PayloadTampered):
        store.items.payload(item.id)


def test_tampering_a_sent_item_asks_for_an_operator(store: Store, eth_key):
    item = queue_tx(store, eth_key).item
    store.items.transition(item.id, State.SENDING, "test")
    store.items.transition(item.id, State.SENT, "test")
    flip_byte(store, "items", "payload", "id = ?", (item.id,))
    with pytest.raises(PayloadTampered):
        store.items.payload(item.id)
    assert store.items.get(item.id).state is State.NEEDS_OPERATOR


def test_missing_kek_is_a_clear_error_and_nothing_is_lost(queue_location, keyring, kek, eth_key):
    path = queue_location
    with Store.open(path, kek) as store:
        item = queue_tx(store, eth_key).item
    missing = HsmKek(keyring, unique_label("no-such-kek"))
    with pytest.raises(KekError, match=f"wrapped by KEK '{kek.label}'.*set \\[queue\\] kek_label"):
        Store.open(path, missing)  # configured label differs from the one in the file
    conn = RawDb(path)
    conn.execute("UPDATE data_keys SET kek_label = ?", (missing.label,))
    conn.close()
    with pytest.raises(KekError, match="not on the token"):
        Store.open(path, missing)  # the label matches, but this token has no such key
    with pytest.raises(KeyNotFound):  # reading did not create the missing KEK
        keyring.info(missing.label)
    conn = RawDb(path)
    conn.execute("UPDATE data_keys SET kek_label = ?", (kek.label,))
    conn.close()
    with Store.open(path, kek) as store:
        assert store.items.payload(item.id)["intent"]["nonce"] == 0
        assert len(store.keys.all()) == 1


def test_wrong_kek_is_a_clear_error_and_nothing_is_lost(queue_location, keyring, kek, eth_key):
    path = queue_location
    with Store.open(path, kek) as store:
        item = queue_tx(store, eth_key).item
    conn = RawDb(path)
    other = unique_label("other-kek")
    keyring.generate("aes256", other)
    conn.execute("UPDATE data_keys SET kek_label = ?", (other,))  # claims the other key
    conn.close()
    with pytest.raises(KekError, match="cannot unwrap"):
        Store.open(path, HsmKek(keyring, other))
    conn = RawDb(path)
    conn.execute("UPDATE data_keys SET kek_label = ?", (kek.label,))
    conn.close()
    with Store.open(path, kek) as store:
        assert store.items.get(item.id).state is State.QUEUED
        assert store.items.payload(item.id)["sender"] == item.account


def test_kek_label_that_is_not_an_aes_key(tmp_path, keyring):
    label = unique_label("ec-not-kek")
    keyring.generate("p256", label)
    with pytest.raises(KekError, match="not an AES-256"):
        Store.open(tmp_path / "q.db", HsmKek(keyring, label))


def test_raw_file_holds_no_signed_bytes_orders_or_keys(store: Store, eth_key, kek: HsmKek, request):
    marker = bytes.fromhex("c0ffee15" * 8)
    raws = []
    for _ in range(5):
        item = queue_tx(
            store,
            eth_key,
            ladder=LadderSpec(levels=2, with_cancel=True),
            fields={"data": "0x" + marker.hex(), "gas": 60000},
        ).item
        raws += [raw for _, raw in store.items.signed_variants(item.id)]
    store.items.enqueue(order_draft("o-scan"), order_content)
    conn = raw_db(store)
    deks = [
        kek.unwrap(
            r["wrap_nonce"],
            r["wrapped"],
            field_aad("data_keys", str(r["key_id"]), "dek", r["key_id"])
            + b"|"
            + kek.label.encode(),
        )
        for r in conn.execute("SELECT * FROM data_keys")
    ]
    conn.close()
    contents = stored_bytes(store, request)
    assert len(contents) > 10_000  # the scan looks at real data
    needles = {"calldata": marker, "order json": b'"symbol"', "order value": b"BTCUSDT"}
    for i, raw in enumerate(raws):
        needles[f"raw {i}"] = raw
        needles[f"raw hex {i}"] = raw.hex().encode()
        needles[f"raw middle {i}"] = raw[10:42]
    for i, dek in enumerate(deks):
        needles[f"data key {i}"] = dek
        needles[f"data key hex {i}"] = dek.hex().encode()
    found = [name for name, needle in needles.items() if needle in contents]
    assert found == []


# --------------------------------------------------------------------------- states


def test_legal_path_and_reorg_are_recorded(store: Store, eth_key):
    item = queue_tx(store, eth_key).item
    for target in (State.SENDING, State.SENT, State.CONFIRMED, State.SENT, State.CONFIRMED):
        store.items.transition(item.id, target, f"to {target}")
    history = store.items.history(item.id)
    assert [t.to_state for t in history] == [
        State.QUEUED,
        State.SENDING,
        State.SENT,
        State.CONFIRMED,
        State.SENT,
        State.CONFIRMED,
    ]


def test_illegal_transition_raises_and_changes_nothing(store: Store, eth_key):
    item = queue_tx(store, eth_key).item
    with pytest.raises(IllegalTransition, match="from queued to confirmed"):
        store.items.transition(item.id, State.CONFIRMED, "skip ahead")
    assert store.items.get(item.id).state is State.QUEUED
    assert len(store.items.history(item.id)) == 1


def test_cancel_queued_item_locally(store: Store, eth_key):
    item = queue_tx(store, eth_key).item
    result = store.items.cancel(item.id)
    assert result.action == "cancelled" and result.item.state is State.CANCELLED
    with pytest.raises(IllegalTransition, match="only queued items"):
        store.items.cancel(item.id)


def test_cancel_after_send_is_refused(store: Store, eth_key):
    item = queue_tx(store, eth_key).item
    store.items.transition(item.id, State.SENDING, "dispatch")
    with pytest.raises(IllegalTransition, match="may already be on the network"):
        store.items.cancel(item.id)
    assert store.items.get(item.id).state is State.SENDING


def test_cancel_with_later_nonces_sends_the_presigned_cancel(store: Store, eth_key):
    first = queue_tx(store, eth_key, ladder=LadderSpec(with_cancel=True)).item
    queue_tx(store, eth_key)
    result = store.items.cancel(first.id)
    assert result.action == "cancel_requested"
    assert result.item.state is State.QUEUED and result.item.cancel_requested
    assert first.id in [i.id for i in store.items.ready()]


def test_cancel_in_the_middle_frees_the_nonce_for_the_next_item(store: Store, eth_key):
    items = [queue_tx(store, eth_key).item for _ in range(3)]
    result = store.items.cancel(items[1].id)
    assert "now free" in result.message
    assert store.nonces.status()[0].gaps == [1]
    filler = queue_tx(store, eth_key).item
    assert filler.nonce == 1
    assert store.nonces.status()[0].gaps == []
    assert queue_tx(store, eth_key).item.nonce == 3


def test_cancel_of_the_top_nonce_lowers_the_counter(store: Store, eth_key):
    items = [queue_tx(store, eth_key).item for _ in range(3)]
    store.items.cancel(items[2].id)
    assert store.nonces.status()[0].next_nonce == 2
    assert queue_tx(store, eth_key).item.nonce == 2


# --------------------------------------------------------------------------- TTL


def test_ttl_expiry(queue_location, kek: HsmKek, eth_key):
    clock = FakeClock()
    with Store.open(queue_location, kek, clock_ms=clock) as store:
        item = queue_tx(store, eth_key, ttl_s=10).item
        assert item.expires_ms == clock.now + 10_000
        clock.now += 9_999
        assert store.items.expire_due() == []
        assert [i.id for i in store.items.ready()] == [item.id]
        clock.now += 1
        assert store.items.ready() == []  # past its TTL: never dispatched, even before expiry runs
        expired = store.items.expire_due()
        assert [r.item.id for r in expired] == [item.id]
        assert store.items.get(item.id).state is State.EXPIRED
        assert queue_tx(store, eth_key).item.nonce == item.nonce  # the slot was never used


def test_expiry_with_later_nonces_switches_to_the_cancel(queue_location, kek: HsmKek, eth_key):
    clock = FakeClock()
    with Store.open(queue_location, kek, clock_ms=clock) as store:
        first = queue_tx(store, eth_key, ttl_s=5, ladder=LadderSpec(with_cancel=True)).item
        later = queue_tx(store, eth_key).item
        clock.now += 6_000
        [result] = store.items.expire_due()
        assert result.action == "cancel_requested"
        assert store.items.get(first.id).state is State.QUEUED
        assert [i.id for i in store.items.ready()] == [first.id, later.id]
        assert store.items.expire_due() == []  # decided once


def test_bad_ttl_and_keys_are_refused(store: Store, eth_key):
    from airlock.errors import InvalidInput

    with pytest.raises(InvalidInput, match="TTL"):
        queue_tx(store, eth_key, ttl_s=0)
    with pytest.raises(InvalidInput, match="idempotency key"):
        queue_tx(store, eth_key, idempotency_key=" padded ")
    with pytest.raises(InvalidInput, match="strategy"):
        queue_tx(store, eth_key, strategy="")
    with pytest.raises(InvalidInput, match="cap"):
        queue_tx(store, eth_key, ladder=LadderSpec(max_fee_cap=10**9))
    assert store.items.select() == []  # nothing stored, no nonce taken
    assert store.nonces.status() == []


# --------------------------------------------------------------------------- nonces


def test_explicit_nonce_already_used_is_refused(store: Store, eth_key):
    held = queue_tx(store, eth_key).item
    with pytest.raises(NonceConflict, match=f"already used by item {held.id}"):
        queue_tx(store, eth_key, nonce=0)


def test_explicit_nonce_above_the_counter_warns_of_the_gap(store: Store, eth_key):
    queue_tx(store, eth_key)
    result = queue_tx(store, eth_key, nonce=4)
    assert any("leaves nonces 1..3" in w for w in result.warnings)
    assert store.nonces.status()[0].gaps == [1, 2, 3]
    assert [queue_tx(store, eth_key).item.nonce for _ in range(4)] == [1, 2, 3, 5]


def test_sync_raises_and_never_lowers(store: Store, eth_key):
    sender = queue_tx(store, eth_key).item.account
    [up] = store.nonces.sync(31337, {sender: 7})
    assert (up.before, up.after) == (1, 7)
    assert up.conflicts  # the queued nonce-0 item can no longer be mined as signed
    [down] = store.nonces.sync(31337, {sender: 3})  # a lagging node
    assert down.after == 7 and down.behind
    assert store.nonces.status()[0].next_nonce == 7
    assert store.nonces.status()[0].chain_pending == 7
    assert queue_tx(store, eth_key).item.nonce == 7
    with pytest.raises(NonceConflict, match="already used on chain"):
        queue_tx(store, eth_key, nonce=5)


# --------------------------------------------------------------------------- data keys


def test_rotation_keeps_old_keys_for_reading(store: Store, eth_key):
    old = queue_tx(store, eth_key).item
    new_id = store.keys.rotate()
    new = queue_tx(store, eth_key).item
    assert (old.key_id, new.key_id) == (1, new_id) and new_id == 2
    assert store.items.payload(old.id)["intent"]["nonce"] == 0
    assert store.items.payload(new.id)["intent"]["nonce"] == 1


def test_automatic_rotation_by_encryption_count(queue_location, kek: HsmKek, eth_key):
    with Store.open(queue_location, kek, rotate_after=5) as store:
        ids = [queue_tx(store, eth_key, ladder=LadderSpec(levels=2)).item.id for _ in range(6)]
        keys = store.keys.all()
        assert len(keys) >= 3  # 3 encryptions per item, 5 per key
        assert all(k["encryptions"] <= 5 for k in keys)
        assert any("automatic" in k["reason"] for k in keys)
        for item_id in ids:
            assert len(store.items.signed_variants(item_id)) == 2
            store.items.payload(item_id)


def test_export_holds_the_signed_bytes(store: Store, eth_key):
    item = queue_tx(store, eth_key, ladder=LadderSpec(levels=2)).item
    [record] = list(store.items.export())
    assert record["item"]["id"] == item.id
    for variant in record["variants"]:
        assert "0x" + keccak(bytes.fromhex(variant["raw"][2:])).hex() == variant["hash"]
    assert record["history"][0]["to"] == "queued"


def test_retry_of_a_tampered_item_quarantines_it(store: Store, eth_key):
    item = queue_tx(store, eth_key, idempotency_key="tampered-retry").item
    flip_byte(store, "items", "payload", "id = ?", (item.id,))
    with pytest.raises(PayloadTampered):
        queue_tx(store, eth_key, idempotency_key="tampered-retry")
    assert store.items.get(item.id).state is State.QUARANTINED
    assert len(store.items.select()) == 1


def test_quarantine_by_transition_frees_the_nonce(store: Store, eth_key):
    item = queue_tx(store, eth_key).item
    moved = store.items.transition(item.id, State.QUARANTINED, "intent signature did not verify")
    assert not moved.holds_nonce
    assert queue_tx(store, eth_key).item.nonce == item.nonce


def test_a_wave_with_an_item_moved_meanwhile_writes_nothing(store: Store, eth_key):
    first = queue_tx(store, eth_key).item
    second = queue_tx(store, eth_key, fields={"value": 2}).item
    size = store.audit.size()
    store.items.cancel(second.id)  # an operator acts between the broadcaster's read and write
    with pytest.raises(StaleItems, match="1 of 2 items changed state"):
        store.sends.begin([(first, 0), (second, 0)])
    assert (
        store.items.get(first.id).state is State.QUEUED
        and store.items.get(first.id).active_idx is None
    )
    assert store.audit.size() == size + 1  # the cancel's entry only


def test_a_wave_is_one_audit_entry_each_way(store: Store, eth_key):
    queued = [queue_tx(store, eth_key, fields={"value": n}).item for n in range(3)]
    size = store.audit.size()
    store.sends.begin([(item, 0) for item in queued])
    assert store.audit.size() == size + 1
    assert {store.items.get(i.id).state for i in queued} == {State.SENDING}
    assert [t.to_state for t in store.items.history(queued[0].id)] == [State.QUEUED, State.SENDING]


def test_commit_listeners_hear_each_write_and_cannot_break_one(store, eth_key):
    """How an event stream in this process wakes at once (api/http.py)."""
    heard: list[int] = []
    stop = store.events.on_commit(lambda: heard.append(store.events.last_id()))

    def broken() -> None:
        raise RuntimeError("a listener bug")

    stop_broken = store.events.on_commit(broken)
    item = queue_tx(store, eth_key).item  # one write: committed despite the broken listener
    assert heard == [store.events.last_id()] and store.items.get(item.id).state is State.QUEUED
    stop()
    stop_broken()
    store.items.transition(item.id, State.SENDING, "after the unsubscribe")
    assert len(heard) == 1
