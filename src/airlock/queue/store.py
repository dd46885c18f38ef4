"""The durable, encrypted queue: the one object the rest of airlock writes items through.

Every change is one ``BEGIN IMMEDIATE`` transaction on a WAL database with
``synchronous=FULL``: when a method returns, the change is on disk. Enqueue runs the
idempotency check, nonce allocation, signing (through the caller's ``build``), encryption
and all inserts inside that one transaction, so a crash leaves either all of it or none
of it — a nonce is never burned and never handed out twice.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airlock.audit import entries as audit_entries
from airlock.clock import ClockMs, wall_clock_ms
from airlock.errors import InvalidInput
from airlock.queue import alerts, events, items, nonces, schema, sends, venue
from airlock.queue.alerts import AlertRecord
from airlock.queue.envelope import DEFAULT_ROTATE_AFTER, Envelope, Kek
from airlock.queue.errors import (
    IdempotencyConflict,
    PayloadTampered,
    StaleItems,
    StoreUnavailable,
)
from airlock.queue.items import Item, Kind, Transition
from airlock.queue.journal import CheckpointRecord, Journal
from airlock.queue.sends import Attempt, Lane, Mined, Move, StoredVariant
from airlock.queue.states import LIVE, TERMINAL, IllegalTransition, State
from airlock.queue.ulid import UlidGenerator
from airlock.queue.venue import Fill, VenueRef, VenueSeen


class _KeyTaken(Exception):
    """Inside a batch's transaction: a key found free before it was taken meanwhile."""


@dataclass(frozen=True)
class Draft:
    """What a caller wants queued, before signing. ``request`` is kept (encrypted) so a
    retry with the same idempotency key can be told apart from a different request."""

    kind: Kind
    account: str
    strategy: str
    idempotency_key: str
    request: dict[str, Any]
    priority: int = items.Priority.NORMAL
    ttl_ms: int | None = None
    chain_id: int | None = None
    wants_nonce: bool = False
    explicit_nonce: int | None = None
    private: bool = False
    signer: str | None = None
    venue: venue.VenueDraft | None = None  # Bybit items: the venue reference, kept in clear


@dataclass(frozen=True)
class VariantDraft:
    kind: str  # "step" or "cancel"
    tx_hash: str
    fee_per_gas: int
    tip_per_gas: int | None
    raw: bytes


@dataclass(frozen=True)
class Built:
    """The signed content of an item: an encrypted payload and any signed variants."""

    payload: dict[str, Any]
    variants: tuple[VariantDraft, ...] = ()
    audit: dict[str, Any] = field(default_factory=dict)  # more for the item.enqueued entry


@dataclass(frozen=True)
class Variant:
    idx: int
    kind: str
    tx_hash: str
    fee_per_gas: int
    tip_per_gas: int | None

    def as_json(self) -> dict[str, Any]:
        return {
            "idx": self.idx,
            "kind": self.kind,
            "hash": self.tx_hash,
            "fee_per_gas": str(self.fee_per_gas),
            "tip_per_gas": None if self.tip_per_gas is None else str(self.tip_per_gas),
        }


@dataclass(frozen=True)
class Enqueued:
    item: Item
    existing: bool  # the idempotency key already named this item; nothing new was stored
    variants: list[Variant]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CancelResult:
    item: Item
    action: str  # "cancelled" or "cancel_requested" (the pre-signed cancel fills the nonce)
    message: str


@dataclass(frozen=True)
class SendRecord:
    """What one send of one variant came to, as the broadcaster judged it."""

    item_id: str
    from_state: State  # the item's state when the wave left
    variant_idx: int
    attempts: tuple[Attempt, ...]
    accepted: bool  # a relay took it or already had it: the bump and rebroadcast clocks restart
    target: State | None  # the state the item moves to, if it moves
    reason: str
    head: int | None = None  # the chain head when it was accepted
    retry_ms: int | None = None  # not before this time (a send that got nowhere)


@dataclass(frozen=True)
class ChainRecord:
    """What the chain says about an in-flight item, as reconcile judged it."""

    item_id: str
    from_state: State  # the item's state when reconcile read it
    verdict: str  # "mined", "confirmed", "replaced" or "reorged"
    reason: str
    mined: Mined | None = None
    cancel: bool = False  # what was mined is the item's cancel: it ends replaced, not confirmed


Builder = Callable[[int | None], Built]


class Store:
    """One queue database. Safe to share between threads; several processes may open it."""

    def __init__(
        self, path: Path, conn: sqlite3.Connection, envelope: Envelope, clock_ms: ClockMs
    ) -> None:
        self.path = path
        self._conn = conn
        self._envelope = envelope
        self._clock_ms = clock_ms
        self._lock = threading.RLock()
        self._ids = UlidGenerator()
        self._journal = Journal(envelope, clock_ms)
        self._seqs: dict[str, int] = {}  # next sequence number per strategy, this transaction

    @classmethod
    def open(
        cls,
        path: Path,
        kek: Kek,
        *,
        clock_ms: ClockMs = wall_clock_ms,
        rotate_after: int = DEFAULT_ROTATE_AFTER,
    ) -> Store:
        """Open (creating or migrating) the queue at ``path``; prove the KEK works."""
        conn = schema.connect(path)
        try:
            schema.migrate(conn, path)
            store = cls(path, conn, Envelope(conn, kek, clock_ms, rotate_after), clock_ms)
            with store.transaction():
                store._envelope.ensure_primary()
        except BaseException:
            conn.close()
            raise
        return store

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One durable write transaction; the write lock is held from the start.

        While it is open nobody else can write, so what it reads once (the audit chain's
        head, a strategy's last sequence number) stays true until it ends: those are
        remembered for the transaction and forgotten with it."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._journal.forget_head()
            self._seqs.clear()
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                self._envelope.forget_uncommitted()
                raise
            finally:
                self._journal.forget_head()
                self._seqs.clear()
            self._conn.execute("COMMIT")

    def now_ms(self) -> int:
        return self._clock_ms()

    # -- enqueue ----------------------------------------------------------------------

    def enqueue(self, draft: Draft, build: Builder) -> Enqueued:
        """Store a new item, or return the one its idempotency key already names.

        ``build`` receives the allocated nonce (None for items without one) and returns
        the signed content; it runs inside the write transaction, so the nonce it signs
        with is stored together with the signature or not at all.
        """
        with self.transaction() as conn:
            existing = items.by_idempotency_key(conn, draft.idempotency_key)
            if existing is None:
                return self._enqueue_new(conn, draft, build)
        # Compared after the transaction: a tampered payload quarantines its item, and
        # that must not be rolled back with this read-only transaction.
        return self._existing(existing, draft)

    def enqueue_many(self, requests: Sequence[tuple[Draft, Builder]]) -> list[Enqueued]:
        """Store several items in one durable transaction: every one of them, or none.

        Each answers as :meth:`enqueue` would: a key that already names an item with the
        same content answers with that item; a key naming different content raises
        :class:`IdempotencyConflict` before anything is written; so does a key repeated
        within the batch. Nonces are allocated in the order given.
        """
        keys = [draft.idempotency_key for draft, _ in requests]
        counts = Counter(keys)
        if len(counts) < len(keys):
            repeated = sorted(k for k, n in counts.items() if n > 1)
            error = IdempotencyConflict(
                f"idempotency key(s) {', '.join(map(repr, repeated))} appear more than once "
                "in one batch; give each item its own key"
            )
            error.index = next(i for i, k in enumerate(keys) if k in keys[:i])
            raise error
        for _attempt in range(3):
            with self._lock:
                stored = items.by_idempotency_keys(self._conn, keys)
            known: dict[str, Enqueued] = {}
            for index, (draft, _) in enumerate(requests):
                existing = stored.get(draft.idempotency_key)
                if existing is not None:
                    with _element(index):
                        known[draft.idempotency_key] = self._existing(existing, draft)
            try:
                with self.transaction() as conn:
                    fresh = [k for k in keys if k not in known]
                    if items.by_idempotency_keys(conn, fresh):
                        raise _KeyTaken  # another writer queued one of them meanwhile
                    done = []
                    for index, (draft, build) in enumerate(requests):
                        with _element(index):
                            done.append(
                                known.get(draft.idempotency_key)
                                or self._enqueue_new(conn, draft, build)
                            )
                    return done
            except _KeyTaken:
                continue
        raise StoreUnavailable("the batch's idempotency keys kept being taken by other writers")

    def _enqueue_new(self, conn: sqlite3.Connection, draft: Draft, build: Builder) -> Enqueued:
        warnings: list[str] = []
        nonce = None
        if draft.wants_nonce:
            assert draft.chain_id is not None
            allocation = nonces.allocate(conn, draft.chain_id, draft.account, draft.explicit_nonce)
            nonce = allocation.nonce
            warnings += allocation.warnings
            nonces.claim(conn, draft.chain_id, draft.account, nonce)
        built = build(nonce)
        item = self._insert(conn, draft, nonce, built)
        variants = [
            Variant(i, v.kind, v.tx_hash, v.fee_per_gas, v.tip_per_gas)
            for i, v in enumerate(built.variants)
        ]
        return Enqueued(item, False, variants, warnings)

    def _existing(self, item: Item, draft: Draft) -> Enqueued:
        stored = self._open_payload(item)
        if stored.get("request") != draft.request:
            raise IdempotencyConflict(
                f"idempotency key {draft.idempotency_key!r} already names item {item.id}, "
                "which was queued with different content; use a new key for a new request"
            )
        return Enqueued(item, True, self.variants(item.id))

    def _insert(
        self, conn: sqlite3.Connection, draft: Draft, nonce: int | None, built: Built
    ) -> Item:
        now = self._clock_ms()
        item_id = self._ids.new(now)
        payload = dict(built.payload, request=draft.request)
        sealed = self._envelope.seal("items", item_id, "payload", _json_bytes(payload))
        item = Item(
            id=item_id,
            kind=draft.kind,
            account=draft.account,
            strategy=draft.strategy,
            seq=self._next_seq(conn, draft.strategy),
            idempotency_key=draft.idempotency_key,
            priority=int(draft.priority),
            state=State.QUEUED,
            state_reason="enqueued",
            created_ms=now,
            updated_ms=now,
            expires_ms=None if draft.ttl_ms is None else now + draft.ttl_ms,
            chain_id=draft.chain_id,
            nonce=nonce,
            holds_nonce=nonce is not None,
            private=draft.private,
            cancel_requested=False,
            signer=draft.signer,
            key_id=sealed.key_id,
        )
        items.insert(conn, item, sealed.blob)
        if draft.venue is not None:
            venue.insert(conn, item_id, draft.venue)
        for idx, variant in enumerate(built.variants):
            self._insert_variant(conn, item_id, idx, variant)
        self._journal.append(
            conn, audit_entries.ITEM_ENQUEUED, item_id, _enqueued_entry(item, built)
        )
        return item

    def _next_seq(self, conn: sqlite3.Connection, strategy: str) -> int:
        seq = self._seqs.get(strategy) or items.next_seq(conn, strategy)
        self._seqs[strategy] = seq + 1
        return seq

    def _insert_variant(
        self, conn: sqlite3.Connection, item_id: str, idx: int, variant: VariantDraft
    ) -> None:
        raw = self._envelope.seal("variants", f"{item_id}/{idx}", "raw", variant.raw)
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

    # -- reading ----------------------------------------------------------------------

    def by_idempotency_key(self, key: str) -> Item | None:
        with self._lock:
            return items.by_idempotency_key(self._conn, key)

    def get(self, item_id: str) -> Item:
        with self._lock:
            return items.get(self._conn, item_id)

    def list(
        self,
        states: list[State] | None = None,
        limit: int | None = None,
        *,
        kinds: list[Kind] | None = None,
        after: str | None = None,
        newest_first: bool = False,
    ) -> list[Item]:
        """Items in creation order (their ids sort so), or newest first; ``after`` an id
        pages onwards."""
        with self._lock:
            return items.select(
                self._conn, states, limit, kinds=kinds, after=after, newest_first=newest_first
            )

    def events(
        self, after: int = 0, limit: int = 1000, item_id: str | None = None
    ) -> list[events.EventRow]:
        """Events numbered above ``after``, oldest first: the local API's event stream."""
        with self._lock:
            return events.after(self._conn, after, limit, item_id)

    def last_event_id(self) -> int:
        with self._lock:
            return events.last_id(self._conn)

    def ready(self, limit: int = 100) -> list[Item]:
        """Queued items the dispatcher may send now, most urgent first."""
        with self._lock:
            return items.ready(self._conn, self._clock_ms(), limit)

    def history(self, item_id: str) -> list[Transition]:
        """Every state change, the enqueue first (it is the item's creation: not a row)."""
        with self._lock:
            item = items.get(self._conn, item_id)
            later = items.history(self._conn, item_id)
        return [Transition(None, State.QUEUED, "enqueued", item.created_ms), *later]

    def variants(self, item_id: str) -> list[Variant]:
        with self._lock:
            return self._variants(self._conn, item_id)

    @staticmethod
    def _variants(conn: sqlite3.Connection, item_id: str) -> list[Variant]:
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

    def payload(self, item_id: str) -> dict[str, Any]:
        """The decrypted payload; a tampered one quarantines its item and raises."""
        return self._open_payload(self.get(item_id))

    def signed_variants(self, item_id: str) -> list[tuple[Variant, bytes]]:
        """Every variant with its decrypted signed bytes; tampering quarantines the item."""
        item = self.get(item_id)
        out = []
        with self._lock:
            rows = self._conn.execute(
                "SELECT idx, key_id, raw FROM variants WHERE item_id = ? ORDER BY idx",
                (item_id,),
            ).fetchall()
            metas = self._variants(self._conn, item_id)
        for meta, row in zip(metas, rows, strict=True):
            raw = self._guarded(
                item,
                lambda r=row: self._envelope.open(
                    "variants", f"{item_id}/{r['idx']}", "raw", r["key_id"], r["raw"]
                ),
            )
            out.append((meta, raw))
        return out

    def _open_payload(self, item: Item) -> dict[str, Any]:
        with self._lock:
            blob = self._conn.execute(
                "SELECT payload FROM items WHERE id = ?", (item.id,)
            ).fetchone()[0]
        plain = self._guarded(
            item, lambda: self._envelope.open("items", item.id, "payload", item.key_id, blob)
        )
        return json.loads(plain)

    def _guarded(self, item: Item, decrypt: Callable[[], bytes]) -> bytes:
        try:
            with self._lock:
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
                self._leave_queue(conn, item, State.QUARANTINED, reason)
            elif item.state is State.SENT:
                self._move(conn, item, State.NEEDS_OPERATOR, reason)

    # -- changes --------------------------------------------------------------------

    def transition(self, item_id: str, target: State, reason: str) -> Item:
        """Move an item through the state machine; illegal moves raise IllegalTransition."""
        with self.transaction() as conn:
            item = items.get(conn, item_id)
            if item.state is State.QUEUED and target in TERMINAL:
                return self._leave_queue(conn, item, target, reason)
            return self._move(conn, item, target, reason)

    def cancel(self, item_id: str, reason: str = "cancelled by the operator") -> CancelResult:
        """Withdraw an item that has not been sent, without touching the network.

        An EVM item with later live nonces behind it and a pre-signed cancel keeps its
        place and sends the cancel instead, so the sender's sequence is not stuck.
        """
        with self.transaction() as conn:
            item = items.get(conn, item_id)
            if item.state is not State.QUEUED:
                raise _not_queued(item)
            if item.cancel_requested:
                return CancelResult(item, "cancel_requested", "a cancel is already requested")
            return self._withdraw(conn, item, State.CANCELLED, reason)

    def expire_due(self) -> list[CancelResult]:
        """Expire queued items whose TTL has passed (or switch them to their cancel)."""
        results = []
        with self.transaction() as conn:
            for item in items.due_to_expire(conn, self._clock_ms()):
                results.append(self._withdraw(conn, item, State.EXPIRED, "TTL passed before send"))
        return results

    def _withdraw(
        self, conn: sqlite3.Connection, item: Item, target: State, reason: str
    ) -> CancelResult:
        waiting = item.kind is Kind.EVM_TX and nonces.later_live(conn, item)
        if waiting and items.has_cancel_variant(conn, item.id):
            note = f"{reason}: pre-signed cancel requested to fill nonce {item.nonce}"
            requested = items.request_cancel(conn, item, note, self._clock_ms())
            self._journal.append(
                conn, audit_entries.ITEM_CANCEL_REQUESTED, item.id, {"reason": note}
            )
            return CancelResult(
                requested,
                "cancel_requested",
                f"later nonces of {item.account} wait on nonce {item.nonce}: its "
                "pre-signed cancel (a 0-value self-transfer) will be sent instead",
            )
        moved = self._leave_queue(conn, item, target, reason)
        message = f"{target} locally; nothing was sent"
        if waiting:
            message += (
                f". Nonce {moved.nonce} of {moved.account} is now free and later nonces wait "
                "on it: the next transaction queued for this sender takes it"
            )
        return CancelResult(moved, str(target), message)

    def _move(
        self,
        conn: sqlite3.Connection,
        item: Item,
        target: State,
        reason: str,
        chain: dict[str, Any] | None = None,
        venue_seen: dict[str, Any] | None = None,
    ) -> Item:
        """A state change, its history row and its audit entry: one transaction.

        ``chain`` (the receipt behind a move to sent or confirmed) or ``venue_seen`` (what
        Bybit said) goes into the entry."""
        moved = items.move(conn, item, target, reason, self._clock_ms())
        data: dict[str, Any] = {"from": str(item.state), "to": str(moved.state), "reason": reason}
        if chain is not None:
            data["chain"] = chain
        if venue_seen is not None:
            data["venue"] = venue_seen
        self._journal.append(conn, audit_entries.ITEM_TRANSITION, item.id, data)
        return moved

    def _leave_queue(
        self, conn: sqlite3.Connection, item: Item, target: State, reason: str
    ) -> Item:
        """A queued item that never left the machine ends; its nonce slot is freed."""
        was_queued = item.state is State.QUEUED
        moved = self._move(conn, item, target, reason)
        if was_queued and moved.holds_nonce:
            assert moved.chain_id is not None
            nonces.release(conn, moved.id, moved.chain_id, moved.account)
            moved = items.get(conn, moved.id)
        return moved

    # -- broadcasting -------------------------------------------------------------------

    def dispatchable(self, limit: int = 500) -> list[Item]:
        """EVM items due a send, per sender in nonce order, most urgent sender first."""
        with self._lock:
            return sends.dispatchable(self._conn, self._clock_ms(), limit)

    def lanes(self, watch_from_block: int | None = None) -> list[Lane]:
        """In-flight EVM items with every hash they could be mined as (reconcile's input)."""
        with self._lock:
            return sends.inflight(self._conn, watch_from_block)

    def wave_variants(self, item_ids: list[str]) -> dict[str, list[StoredVariant]]:
        """The variants of many items at once (still encrypted): one query for a wave."""
        with self._lock:
            return sends.variants_of(self._conn, item_ids)

    def open_variant(self, item: Item, variant: StoredVariant) -> bytes:
        """A variant's signed bytes; a tampered ciphertext quarantines the item."""
        return self._guarded(
            item,
            lambda: self._envelope.open(
                "variants", f"{item.id}/{variant.idx}", "raw", variant.key_id, variant.blob
            ),
        )

    def variant_raw(self, item: Item, idx: int) -> bytes:
        """One variant's signed bytes; a tampered ciphertext quarantines the item."""
        found = {v.idx: v for v in self.wave_variants([item.id])[item.id]}
        if idx not in found:
            raise IllegalTransition(f"item {item.id} has no variant {idx}")
        return self.open_variant(item, found[idx])

    def attempts(self, item_id: str) -> list[tuple[int, Attempt]]:
        with self._lock:
            return sends.attempts(self._conn, item_id)

    def fates(self, item_id: str) -> dict[int, str | None]:
        """Each variant's fate: None (never sent), sent, mined or replaced."""
        with self._lock:
            return sends.fates(self._conn, item_id)

    def begin_sends(self, picks: list[tuple[Item, int]]) -> None:
        """Durably mark a wave as on its way, before any byte leaves: queued items move to
        ``sending``, each records the variant about to go out; one audit entry for all.

        Raises :class:`StaleItems` (nothing written) if an item moved since it was read.
        """
        now = self._clock_ms()
        moves, notes, entry = [], [], []
        for item, idx in picks:
            if item.state is State.QUEUED:
                moves.append(
                    Move(item.id, State.QUEUED, State.SENDING, _variant_note("dispatch", idx))
                )
            elif item.active_idx != idx:
                notes.append((item.id, item.state, item.state, _variant_note("bump", idx)))
            entry.append({"item": item.id, "variant": idx, "from": str(item.state)})
        with self.transaction() as conn:
            sends.move_many(conn, moves, now)
            sends.note_many(conn, notes, now)
            sends.set_active(conn, [(item.id, idx) for item, idx in picks])
            self._journal.append(conn, audit_entries.ITEMS_SENDING, None, {"items": entry})

    def record_sends(self, records: list[SendRecord]) -> None:
        """A wave's attempts, what became of each item, and one audit entry: one transaction."""
        now = self._clock_ms()
        moves = [
            Move(r.item_id, r.from_state, r.target, r.reason)
            for r in records
            if r.target is not None and r.target is not r.from_state
        ]
        entry = [
            {
                "item": r.item_id,
                "variant": r.variant_idx,
                "attempts": [a.as_json() for a in r.attempts],
                "verdict": r.reason,
                "from": str(r.from_state),
                "to": str(r.target or r.from_state),
            }
            for r in records
        ]
        heads = {r.head for r in records if r.accepted}
        with self.transaction() as conn:
            sends.record_attempts(conn, [(r.item_id, r.variant_idx, r.attempts) for r in records])
            for head in heads:
                accepted = [
                    (r.item_id, r.variant_idx) for r in records if r.accepted and r.head == head
                ]
                sends.mark_sent(conn, accepted, now, head)
            sends.set_retry(conn, [(r.item_id, r.retry_ms) for r in records if not r.accepted])
            sends.move_many(conn, moves, now)
            for move in moves:
                if move.dst is State.REJECTED:
                    self._release_rejected(conn, move.item_id)
            self._journal.append(conn, audit_entries.ITEMS_SENT, None, {"items": entry})

    def _release_rejected(self, conn: sqlite3.Connection, item_id: str) -> None:
        """Every relay refused these bytes for good: the nonce is still free on chain."""
        item = items.get(conn, item_id)
        if item.holds_nonce and item.chain_id is not None:
            nonces.release(conn, item.id, item.chain_id, item.account)

    def record_chain(self, records: list[ChainRecord]) -> None:
        """Receipts found, replacements and reorgs, with one audit entry: one transaction."""
        now = self._clock_ms()
        paths = {r.item_id: _chain_path(r) for r in records}
        with self.transaction() as conn:
            sends.set_mined(
                conn,
                [
                    (r.item_id, r.mined)
                    for r in records
                    if r.mined is not None and r.verdict != "reorged"
                ],
            )
            sends.set_replaced(conn, [r.item_id for r in records if r.verdict == "replaced"])
            reorged = [r for r in records if r.verdict == "reorged"]
            sends.forget_mined(conn, [r.item_id for r in reorged], now)
            sends.note_many(
                conn,
                [
                    (r.item_id, r.from_state, r.from_state, r.reason)
                    for r in reorged
                    if not paths[r.item_id]
                ],
                now,
            )
            step = 0
            while True:
                moves = [
                    Move(
                        r.item_id,
                        ([r.from_state, *paths[r.item_id]])[step],
                        paths[r.item_id][step],
                        r.reason,
                    )
                    for r in records
                    if len(paths[r.item_id]) > step
                ]
                if not moves:
                    break
                sends.move_many(conn, moves, now)
                step += 1
            entry = [
                {
                    "item": r.item_id,
                    "verdict": r.verdict,
                    "from": str(r.from_state),
                    "to": str(paths[r.item_id][-1] if paths[r.item_id] else r.from_state),
                    "reason": r.reason,
                    "chain": None if r.mined is None else r.mined.as_json(),
                }
                for r in records
            ]
            self._journal.append(conn, audit_entries.ITEMS_SETTLED, None, {"items": entry})

    def add_variant(self, item_id: str, variant: VariantDraft) -> int:
        """Store a variant signed after enqueue (a re-signed bump); returns its index."""
        with self.transaction() as conn:
            idx = conn.execute(
                "SELECT coalesce(max(idx), -1) + 1 FROM variants WHERE item_id = ?", (item_id,)
            ).fetchone()[0]
            self._insert_variant(conn, item_id, idx, variant)
            self._journal.append(
                conn,
                audit_entries.ITEM_VARIANT_ADDED,
                item_id,
                _variant_entry(idx, variant),
            )
            return int(idx)

    def record_event(self, kind: str, data: dict[str, Any], item_id: str | None = None) -> None:
        """An audit entry that changes no item: a relay's health, an alert."""
        with self.transaction() as conn:
            self._journal.append(conn, kind, item_id, data)

    # -- Bybit ------------------------------------------------------------------------

    def venue_due(self, limit: int = 100) -> list[tuple[Item, VenueRef]]:
        """Queued Bybit items due a send, most urgent first (cancels lead)."""
        with self._lock:
            return venue.due(self._conn, self._clock_ms(), limit)

    def venue_items(self, states: list[State]) -> list[tuple[Item, VenueRef]]:
        with self._lock:
            return venue.in_states(self._conn, [str(s) for s in states])

    def venue_all(self, limit: int | None = None) -> list[tuple[Item, VenueRef]]:
        """Every Bybit item, newest first."""
        with self._lock:
            return venue.every(self._conn, limit)

    def venue_item(self, item_id: str) -> tuple[Item, VenueRef] | None:
        with self._lock:
            return venue.of_item(self._conn, item_id)

    def venue_order_by_link(self, link_id: str) -> tuple[Item, VenueRef] | None:
        """The queued order with this orderLinkId (cancels are not returned)."""
        with self._lock:
            return venue.order_by_link(self._conn, link_id)

    def venue_items_by_link(self, link_ids: list[str]) -> dict[str, str]:
        with self._lock:
            return venue.item_ids_by_link(self._conn, link_ids)

    def begin_venue(self, item: Item, reason: str) -> Item:
        """Durably mark a queued Bybit item ``sending`` before its request leaves.

        Raises :class:`StaleItems` (nothing written) if the item moved since it was read."""
        with self.transaction() as conn:
            current = items.get(conn, item.id)
            if current.state is not State.QUEUED or item.state is not State.QUEUED:
                raise StaleItems(f"item {item.id} is {current.state}, no longer queued")
            venue.set_sent_ms(conn, item.id, self._clock_ms())
            return self._move(conn, current, State.SENDING, reason)

    def record_venue(
        self,
        item: Item,
        path: list[State],
        reason: str,
        seen: VenueSeen | None = None,
        *,
        retry_ms: int | None = None,
    ) -> Item:
        """What the venue said of one item: the states it passes through (``path``, maybe
        empty), its venue state, and a retry time; one transaction, audited.

        A venue change with no state change is an ``order.observed`` entry. Raises
        :class:`StaleItems` (nothing written) if the item moved since it was read."""
        now = self._clock_ms()
        with self.transaction() as conn:
            current = items.get(conn, item.id)
            if current.state is not item.state:
                raise StaleItems(f"item {item.id} is {current.state}, not {item.state}")
            before = venue.of_item(conn, item.id)
            seen_json = None if seen is None else seen.as_json()
            if seen is not None:
                venue.note_seen(conn, item.id, seen, now)
            for target in path:
                current = self._move(conn, current, target, reason, venue_seen=seen_json)
            if retry_ms is not None or current.state is State.QUEUED:
                venue.set_retry(conn, item.id, retry_ms)
            after = venue.of_item(conn, item.id)
            changed = (
                before is not None and after is not None and _venue_changed(before[1], after[1])
            )
            if not path and changed:
                assert seen_json is not None
                data = {"state": str(current.state), "reason": reason, "venue": seen_json}
                self._journal.append(conn, audit_entries.ORDER_OBSERVED, item.id, data)
            return items.get(conn, item.id)

    def record_fills(self, found: list[Fill]) -> list[Fill]:
        """Store fills not seen before (by execId) and audit them in one entry; returns
        the new ones."""
        if not found:
            return []
        with self.transaction() as conn:
            new = venue.add_fills(conn, found, self._clock_ms())
            if new:
                data = {"fills": [f.as_json() for f in new]}
                self._journal.append(conn, audit_entries.ORDER_FILLS, None, data)
            return new

    def fills(self, item_id: str | None = None) -> list[Fill]:
        with self._lock:
            return venue.fills(self._conn, item_id)

    def fill_counts(self) -> dict[str, int]:
        with self._lock:
            return venue.fill_counts(self._conn)

    def latest_fill_ms(self) -> int | None:
        with self._lock:
            return venue.latest_fill_ms(self._conn)

    # -- alerts and service notes ------------------------------------------------------

    def note_alert(
        self,
        key: str,
        message: str,
        *,
        severity: str = "warning",
        dedup_ms: int = 300_000,
        item: str | None = None,
    ) -> tuple[AlertRecord, bool]:
        """Count an alert under ``key``; True when it should be delivered now (new, raised
        again after being resolved, or outside the de-duplication window). A delivered
        alert is also an ``alert`` audit entry, naming ``item`` when it is about one (so an
        auditor finds it with the item's other entries); a suppressed repeat only counts."""
        with self.transaction() as conn:
            record, deliver = alerts.note(conn, key, message, severity, self._clock_ms(), dedup_ms)
            if deliver:
                data = {"message": message, "key": key, "severity": severity}
                self._journal.append(conn, audit_entries.ALERT, item, data)
            return record, deliver

    def resolve_alert(self, key: str) -> bool:
        with self.transaction() as conn:
            return alerts.resolve(conn, key, self._clock_ms())

    def open_alerts(self) -> list[AlertRecord]:
        with self._lock:
            return alerts.open_alerts(self._conn)

    def set_note(self, key: str, value: str) -> None:
        """A service note (last reconcile, heartbeat) that ``airlock status`` reads."""
        with self.transaction() as conn:
            alerts.set_meta(conn, f"note.{key}", value)

    def set_notes(self, notes: dict[str, str]) -> None:
        """Several service notes in one transaction."""
        with self.transaction() as conn:
            for key, value in notes.items():
                alerts.set_meta(conn, f"note.{key}", value)

    def note(self, key: str) -> str | None:
        with self._lock:
            return alerts.get_meta(self._conn, f"note.{key}")

    def counts_by_kind(self) -> list[tuple[str, str, int, int | None]]:
        """(kind, state, count, oldest created_ms) for every kind and state present."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT kind, state, count(*), min(created_ms) FROM items GROUP BY kind, state"
            ).fetchall()
        return [(r[0], r[1], int(r[2]), r[3]) for r in rows]

    def count(self, state: State) -> int:
        with self._lock:
            return sends.in_state(self._conn, state)

    # -- nonces -----------------------------------------------------------------------

    def nonce_status(self) -> list[nonces.NonceStatus]:
        with self._lock:
            return nonces.status(self._conn)

    def nonce_senders(self, chain_id: int) -> list[str]:
        with self._lock:
            return nonces.senders(self._conn, chain_id)

    def nonce_sync(self, chain_id: int, pending: dict[str, int]) -> list[nonces.SyncResult]:
        """Record the chain's pending nonce per sender (one reading each)."""
        with self.transaction() as conn:
            now = self._clock_ms()
            results = []
            for sender, value in sorted(pending.items()):
                result = nonces.sync(conn, chain_id, sender, value, now)
                self._journal.append(conn, audit_entries.NONCE_SYNC, None, result.as_json())
                results.append(result)
            return results

    # -- data keys --------------------------------------------------------------------

    def rotate_key(self, reason: str = "rotated by the operator") -> int:
        with self.transaction() as conn:
            key_id = self._envelope.rotate(reason)
            self._journal.append(
                conn, audit_entries.DATA_KEY_ROTATED, None, {"key_id": key_id, "reason": reason}
            )
            return key_id

    def data_keys(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._envelope.key_rows()]

    # -- audit log --------------------------------------------------------------------

    def audit_origin(self) -> str:
        """The log's name in its checkpoints: unique per database, fixed at creation."""
        with self._lock:
            return self._journal.origin(self._conn)

    def audit_size(self) -> int:
        with self._lock:
            return self._journal.size(self._conn)

    def audit_leaves(self, stop: int | None = None) -> list[bytes]:
        with self._lock:
            return self._journal.leaves(self._conn, stop)

    def audit_entries(self, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """Decrypted entries ``start .. stop-1``, read in chunks so the lock is not held
        between them."""
        stop = self.audit_size() if stop is None else stop
        chunk = 4096
        for first in range(start, stop, chunk):
            with self._lock:
                batch = list(self._journal.read(self._conn, first, min(first + chunk, stop)))
            yield from batch

    def audit_checkpoints(self) -> list[CheckpointRecord]:
        with self._lock:
            return self._journal.checkpoints(self._conn)

    def sign_checkpoint(self, sign_note: Callable[[str, int, bytes], str]) -> CheckpointRecord:
        """Sign (through ``sign_note``) the current tree, consistent with the last one."""
        with self.transaction() as conn:
            return self._journal.checkpoint(conn, sign_note)

    # -- checks and export ----------------------------------------------------------------

    def verify(self, states: frozenset[State] = LIVE) -> list[tuple[str, str]]:
        """Decrypt every item in ``states``; quarantine the bad ones. Returns (id, problem)."""
        problems = []
        for item in self.list(sorted(states)):
            try:
                self._open_payload(item)
                self.signed_variants(item.id)
            except PayloadTampered as exc:
                problems.append((item.id, str(exc)))
        return problems

    def export(self, states: list[State] | None = None) -> Iterator[dict[str, Any]]:
        """Each item decrypted, with its variants' signed bytes and its history."""
        for item in self.list(states):
            yield self.export_one(item)

    def export_one(self, item: Item) -> dict[str, Any]:
        """One item as a JSON-ready record; ``error`` instead of a payload if it is tampered."""
        record: dict[str, Any] = {"item": item.as_json()}
        try:
            record["payload"] = self._open_payload(item)
            record["variants"] = [
                dict(meta.as_json(), raw="0x" + raw.hex())
                for meta, raw in self.signed_variants(item.id)
            ]
        except PayloadTampered as exc:
            record["error"] = str(exc)
            record["item"] = self.get(item.id).as_json()
        record["history"] = [
            {"from": t.from_state, "to": t.to_state, "reason": t.reason, "at_ms": t.at_ms}
            for t in self.history(item.id)
        ]
        return record


@contextmanager
def _element(index: int) -> Iterator[None]:
    """Name the batch element an error is about (``InvalidInput.index``)."""
    try:
        yield
    except InvalidInput as exc:
        if exc.index is None:
            exc.index = index
        raise


def _venue_changed(before: VenueRef, after: VenueRef) -> bool:
    fields = ("order_id", "status", "cum_qty", "avg_price")
    return any(getattr(before, f) != getattr(after, f) for f in fields)


def _not_queued(item: Item) -> IllegalTransition:
    if item.state in (State.SENDING, State.SENT):
        return IllegalTransition(
            f"item {item.id} is {item.state}: it may already be on the network, so it "
            "cannot be cancelled locally"
        )
    return IllegalTransition(f"item {item.id} is {item.state}; only queued items can be cancelled")


def _enqueued_entry(item: Item, built: Built) -> dict[str, Any]:
    """What the audit log keeps of a new item: its metadata and every signed variant."""
    skip = ("id", "state_reason", "active_variant", "sent_ms", "mined")
    data = {k: v for k, v in item.as_json().items() if k not in skip}
    data["variants"] = [_variant_entry(idx, v) for idx, v in enumerate(built.variants)]
    data.update(built.audit)
    return data


def _variant_entry(idx: int, v: VariantDraft) -> dict[str, Any]:
    return {
        "idx": idx,
        "kind": v.kind,
        "hash": v.tx_hash,
        "fee_per_gas": str(v.fee_per_gas),
        "tip_per_gas": None if v.tip_per_gas is None else str(v.tip_per_gas),
        "raw": "0x" + v.raw.hex(),
    }


def _chain_path(record: ChainRecord) -> list[State]:
    """The states an item passes through for a reconcile verdict, from where it is."""
    src = record.from_state
    if record.verdict == "reorged":
        return [State.SENT] if src in (State.CONFIRMED, State.REPLACED) else []
    lead = [State.SENT] if src is State.SENDING else []
    if record.verdict == "mined":
        return lead
    if record.verdict == "confirmed":
        final = State.REPLACED if record.cancel else State.CONFIRMED
        return [*lead, final] if src is not final else []
    if record.verdict == "replaced":
        return [*lead, State.REPLACED]
    raise ValueError(f"unknown reconcile verdict {record.verdict!r}")


def _variant_note(action: str, idx: int) -> str:
    return f"{action}: variant {idx} goes out"


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
