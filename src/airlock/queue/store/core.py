"""What every part of the store shares: one connection, one lock, the envelope, the
audit journal, the clock, and the few moves that several parts make.

One write transaction per change (``BEGIN IMMEDIATE`` on SQLite's WAL with
``synchronous=FULL``; on PostgreSQL, the audit head's row lock first: queue/db.py): when a
method returns, its change is durable. A state change, its
history row, its event (written by a trigger) and its audit entry are always one
transaction (:meth:`Core.move`). A payload that fails authentication is never sent: its
item is quarantined (:meth:`Core.guarded`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from airlock.audit import entries as audit_entries
from airlock.clock import ClockMs
from airlock.queue import items, nonces
from airlock.queue.db import Conn, Database
from airlock.queue.envelope import Envelope
from airlock.queue.errors import PayloadTampered
from airlock.queue.items import Item
from airlock.queue.journal import Journal
from airlock.queue.states import State
from airlock.queue.store.records import Variant, VariantDraft
from airlock.queue.ulid import UlidGenerator

log = logging.getLogger("airlock.queue")


class Core:
    """The state the parts of one :class:`~airlock.queue.store.Store` share."""

    def __init__(self, db: Database, envelope: Envelope, clock_ms: ClockMs) -> None:
        self.db = db
        self.conn = db.conn
        self.envelope = envelope
        self.clock_ms = clock_ms
        self.lock = threading.RLock()
        self.ids = UlidGenerator()
        self.journal = Journal(envelope, clock_ms)
        self._seqs: dict[str, int] = {}  # next sequence number per strategy, this transaction
        self._listeners: list[Callable[[], None]] = []  # called after each commit

    @contextmanager
    def transaction(self) -> Iterator[Conn]:
        """One durable write transaction; the write lock is held from the start.

        While it is open nobody else can write, so what it reads once (the audit chain's
        head, a strategy's last sequence number) stays true until it ends: those are
        remembered for the transaction and forgotten with it."""
        with self.lock:
            self.db.begin()
            self.journal.forget_head()
            self._seqs.clear()
            try:
                yield self.conn
                self.db.commit()
                self._committed()
            except BaseException:
                self.db.rollback()
                self.envelope.forget_uncommitted()
                raise
            finally:
                self.journal.forget_head()
                self._seqs.clear()

    def on_commit(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` (in the committing thread, lock held: keep it tiny) after each
        write transaction of this process commits; returns the unsubscribe. How an event
        stream in this process wakes at once instead of at its next poll (other
        processes' writes are still found by polling)."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _committed(self) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:  # a listener must never undo or fail a committed write
                log.exception("store: a commit listener failed")

    @contextmanager
    def reading(self) -> Iterator[Conn]:
        """The connection for a read, under the lock (one statement at a time)."""
        with self.lock:
            yield self.conn

    def next_seq(self, conn: Conn, strategy: str) -> int:
        """The strategy's next sequence number, read once per transaction."""
        seq = self._seqs.get(strategy) or items.next_seq(conn, strategy)
        self._seqs[strategy] = seq + 1
        return seq

    # -- moves every part makes ---------------------------------------------------------

    def move(
        self,
        conn: Conn,
        item: Item,
        target: State,
        reason: str,
        chain: dict[str, Any] | None = None,
        venue_seen: dict[str, Any] | None = None,
    ) -> Item:
        """A state change, its history row and its audit entry: one transaction.

        ``chain`` (the receipt behind a move to sent or confirmed) or ``venue_seen`` (what
        Bybit said) goes into the entry."""
        moved = items.move(conn, item, target, reason, self.clock_ms())
        data: dict[str, Any] = {"from": str(item.state), "to": str(moved.state), "reason": reason}
        if chain is not None:
            data["chain"] = chain
        if venue_seen is not None:
            data["venue"] = venue_seen
        self.journal.append(conn, audit_entries.ITEM_TRANSITION, item.id, data)
        return moved

    def leave_queue(self, conn: Conn, item: Item, target: State, reason: str) -> Item:
        """A queued item that never left the machine ends; its nonce slot is freed."""
        was_queued = item.state is State.QUEUED
        moved = self.move(conn, item, target, reason)
        if was_queued and moved.holds_nonce:
            assert moved.chain_id is not None
            nonces.release(conn, moved.id, moved.chain_id, moved.account)
            moved = items.get(conn, moved.id)
        return moved

    def insert_variant(self, conn: Conn, item_id: str, idx: int, variant: VariantDraft) -> None:
        """One signed variant, its bytes encrypted (AAD: table, row, column, key id)."""
        raw = self.envelope.seal("variants", f"{item_id}/{idx}", "raw", variant.raw)
        conn.execute(
            "INSERT INTO variants (item_id, idx, kind, tx_hash, fee_per_gas, tip_per_gas,"
            " key_id, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                item_id,
                idx,
                variant.kind,
                variant.tx_hash,
                str(variant.fee_per_gas),
                None if variant.tip_per_gas is None else str(variant.tip_per_gas),
                raw.key_id,
                raw.blob,
            ),
        )

    @staticmethod
    def variants(conn: Conn, item_id: str) -> list[Variant]:
        """An item's variants' clear metadata (the signed bytes stay encrypted)."""
        return [
            Variant(
                idx=r["idx"],
                kind=r["kind"],
                tx_hash=r["tx_hash"],
                fee_per_gas=int(r["fee_per_gas"]),
                tip_per_gas=None if r["tip_per_gas"] is None else int(r["tip_per_gas"]),
            )
            for r in conn.execute(
                "SELECT idx, kind, tx_hash, fee_per_gas, tip_per_gas FROM variants"
                " WHERE item_id = ? ORDER BY idx",
                (item_id,),
            )
        ]

    # -- decryption, guarded --------------------------------------------------------------

    def open_payload(self, item: Item) -> dict[str, Any]:
        """The item's decrypted payload; a tampered one quarantines the item and raises."""
        with self.lock:
            blob = self.conn.execute(
                "SELECT payload FROM items WHERE id = ?", (item.id,)
            ).fetchone()[0]
        plain = self.guarded(
            item, lambda: self.envelope.open("items", item.id, "payload", item.key_id, blob)
        )
        payload: dict[str, Any] = json.loads(plain)
        return payload

    def guarded(self, item: Item, decrypt: Callable[[], bytes]) -> bytes:
        """Run ``decrypt``; a ciphertext that fails authentication quarantines the item."""
        try:
            with self.lock:
                return decrypt()
        except PayloadTampered as exc:
            self._quarantine(item.id, str(exc))
            raise PayloadTampered(f"item {item.id}: {exc}") from None

    def _quarantine(self, item_id: str, why: str) -> None:
        """Never send an item whose ciphertext failed: quarantine it (or flag it for a human
        when it may already be on the network)."""
        with self.transaction() as conn:
            item = items.get(conn, item_id)
            reason = f"payload failed authentication: {why}"
            if item.state in (State.QUEUED, State.SENDING):
                self.leave_queue(conn, item, State.QUARANTINED, reason)
            elif item.state is State.SENT:
                self.move(conn, item, State.NEEDS_OPERATOR, reason)


def json_bytes(value: Any) -> bytes:
    """A payload as stored (before encryption): compact, keys sorted."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
