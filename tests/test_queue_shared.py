"""Several writers on one queue, each with its own connection (as several broadcasters,
CLI processes and API handlers are): on both engines, the database keeps the rules.

- racing retries of one idempotency key make one item;
- concurrent enqueues for one sender hold nonces 0..n-1, none twice, none skipped;
- the audit log stays one hash chain, whoever wrote, and its export verifies;
- a writer's open transaction keeps every other writer out until it ends (the one write
  lock: SQLite's, or PostgreSQL's row lock on the audit head).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.kits.backends import BOTH
from tests.kits.labels import unique_label
from tests.kits.queue import queue_tx

from airlock.audit.export import export
from airlock.audit.log import AuditKey
from airlock.audit.verify import verify_export
from airlock.queue.kek import HsmKek
from airlock.queue.store import Enqueued, Store

BACKENDS = BOTH
WRITERS = 4
PER_WRITER = 8


@pytest.fixture
def stores(queue_location: Path | str, kek: HsmKek) -> Iterator[list[Store]]:
    """One queue, opened ``WRITERS`` times: a connection each."""
    opened = [Store.open(queue_location, kek) for _ in range(WRITERS)]
    try:
        yield opened
    finally:
        for store in opened:
            store.close()


def in_threads(work: Callable[[Store], list[Enqueued]], stores: list[Store]) -> list[Enqueued]:
    """Run ``work`` on every store at once; every result, or the first error raised."""
    results: list[Enqueued] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(stores))

    def run(store: Store) -> None:
        try:
            start.wait(timeout=30)
            results.extend(work(store))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a writer did not finish in 120 s"
    if errors:
        raise errors[0]
    return results


def test_racing_retries_of_one_key_make_one_item(stores: list[Store], eth_key) -> None:
    results = in_threads(lambda s: [queue_tx(s, eth_key, idempotency_key="one")], stores)
    assert len({r.item.id for r in results}) == 1
    assert sum(not r.existing for r in results) == 1
    assert len(stores[0].items.select()) == 1
    assert stores[0].audit.size() == 1  # one enqueue entry, not one per retry


def test_concurrent_enqueues_hold_contiguous_nonces(stores: list[Store], eth_key) -> None:
    results = in_threads(lambda s: [queue_tx(s, eth_key) for _ in range(PER_WRITER)], stores)
    total = WRITERS * PER_WRITER
    assert len({r.item.id for r in results}) == total
    held = sorted(item.nonce for item in stores[0].items.select())
    assert held == list(range(total))
    (counter,) = stores[0].nonces.status()
    assert counter.next_nonce == total and counter.gaps == []
    for store in stores:  # every connection sees the same payloads decrypt
        assert store.items.payload(results[-1].item.id)["intent"]["nonce"] is not None


def test_the_log_stays_one_chain_whoever_writes(
    stores: list[Store], eth_key, keyring, tmp_path: Path
) -> None:
    in_threads(lambda s: [queue_tx(s, eth_key) for _ in range(PER_WRITER)], stores)

    def rotate_then_queue(store: Store) -> list[Enqueued]:
        store.keys.rotate("test")
        return [queue_tx(store, eth_key)]

    in_threads(rotate_then_queue, stores)
    total = WRITERS * (PER_WRITER + 2)  # every rotation and every enqueue is an entry
    assert stores[1].audit.size() == total
    out = tmp_path / "export"
    export(stores[2], AuditKey(keyring, unique_label("shared-audit")), out)
    report = verify_export(out, (out / "audit-key.pem").read_bytes())
    assert report.ok, report.problem
    assert report.kinds["item.enqueued"] == WRITERS * (PER_WRITER + 1)


def test_an_open_write_keeps_every_other_writer_out(stores: list[Store], eth_key) -> None:
    first, second = stores[0], stores[1]
    done = threading.Event()

    def other() -> None:
        queue_tx(second, eth_key)
        done.set()

    with first.core.transaction():
        thread = threading.Thread(target=other)
        thread.start()
        assert not done.wait(timeout=0.3)  # the other writer waits for the lock
    thread.join(timeout=30)
    assert done.is_set()
    assert [i.nonce for i in first.items.select()] == [0]
