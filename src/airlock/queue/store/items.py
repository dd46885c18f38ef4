"""``store.items``: queueing, reading, moving and cancelling items.

Enqueue runs the idempotency check, nonce allocation, signing (through the caller's
``build``), encryption and every insert inside one transaction, so a crash leaves all of
it or none of it: a nonce is never burned and never handed out twice.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from airlock.audit import entries as audit_entries
from airlock.errors import InvalidInput
from airlock.queue import items, nonces, sends, venue
from airlock.queue.db import Conn
from airlock.queue.errors import (
    IdempotencyConflict,
    IllegalTransition,
    PayloadTampered,
    StoreUnavailable,
)
from airlock.queue.items import Item, Kind, Transition
from airlock.queue.states import LIVE, TERMINAL, State
from airlock.queue.store.core import Core, json_bytes
from airlock.queue.store.records import (
    Builder,
    Built,
    CancelResult,
    Draft,
    Enqueued,
    Variant,
    VariantDraft,
)


class _KeyTaken(Exception):
    """Inside a batch's transaction: a key found free before was taken meanwhile."""


class Items:
    """The items of one queue (``store.items``)."""

    def __init__(self, core: Core) -> None:
        self._core = core

    # -- enqueue ----------------------------------------------------------------------

    def enqueue(self, draft: Draft, build: Builder) -> Enqueued:
        """Store a new item, or return the one its idempotency key already names.

        ``build`` receives the allocated nonce (None for items without one) and returns
        the signed content; it runs inside the write transaction, so the nonce it signs
        with is stored together with the signature or not at all.
        """
        received = self._core.clock_ms()  # the persist time starts here (the SLO report)
        with self._core.transaction() as conn:
            existing = items.by_idempotency_key(conn, draft.idempotency_key)
            if existing is None:
                return self._enqueue_new(conn, draft, build, received)
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
        received = self._core.clock_ms()
        keys = [draft.idempotency_key for draft, _ in requests]
        _refuse_repeated(keys)
        for _attempt in range(3):
            known = self._known(requests, keys)
            try:
                return self._enqueue_fresh(requests, keys, known, received)
            except _KeyTaken:  # another writer queued one of the keys meanwhile: read again
                continue
        raise StoreUnavailable("the batch's idempotency keys kept being taken by other writers")

    def _known(
        self, requests: Sequence[tuple[Draft, Builder]], keys: list[str]
    ) -> dict[str, Enqueued]:
        """The batch's keys already queued, compared with what is asked (before the lock)."""
        with self._core.reading() as conn:
            stored = items.by_idempotency_keys(conn, keys)
        known: dict[str, Enqueued] = {}
        for index, (draft, _) in enumerate(requests):
            existing = stored.get(draft.idempotency_key)
            if existing is not None:
                with _element(index):
                    known[draft.idempotency_key] = self._existing(existing, draft)
        return known

    def _enqueue_fresh(
        self,
        requests: Sequence[tuple[Draft, Builder]],
        keys: list[str],
        known: dict[str, Enqueued],
        received: int,
    ) -> list[Enqueued]:
        with self._core.transaction() as conn:
            if items.by_idempotency_keys(conn, [k for k in keys if k not in known]):
                raise _KeyTaken
            done = []
            for index, (draft, build) in enumerate(requests):
                with _element(index):
                    done.append(
                        known.get(draft.idempotency_key)
                        or self._enqueue_new(conn, draft, build, received)
                    )
            return done

    def _enqueue_new(self, conn: Conn, draft: Draft, build: Builder, received: int) -> Enqueued:
        warnings: list[str] = []
        nonce = None
        if draft.wants_nonce:
            assert draft.chain_id is not None
            allocation = nonces.allocate(conn, draft.chain_id, draft.account, draft.explicit_nonce)
            nonce = allocation.nonce
            warnings += allocation.warnings
            nonces.claim(conn, draft.chain_id, draft.account, nonce)
        built = build(nonce)
        item = self._insert(conn, draft, nonce, built, received)
        variants = [
            Variant(i, v.kind, v.tx_hash, v.fee_per_gas, v.tip_per_gas)
            for i, v in enumerate(built.variants)
        ]
        return Enqueued(item, False, variants, warnings)

    def _existing(self, item: Item, draft: Draft) -> Enqueued:
        stored = self._core.open_payload(item)
        if stored.get("request") != draft.request:
            raise IdempotencyConflict(
                f"idempotency key {draft.idempotency_key!r} already names item {item.id}, "
                "which was queued with different content; use a new key for a new request"
            )
        return Enqueued(item, True, self.variants(item.id))

    def _insert(
        self, conn: Conn, draft: Draft, nonce: int | None, built: Built, received: int
    ) -> Item:
        core = self._core
        now = core.clock_ms()
        item_id = core.ids.new(now)
        payload = dict(built.payload, request=draft.request)
        sealed = core.envelope.seal("items", item_id, "payload", json_bytes(payload))
        item = Item(
            id=item_id,
            kind=draft.kind,
            account=draft.account,
            strategy=draft.strategy,
            seq=core.next_seq(conn, draft.strategy),
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
            core.insert_variant(conn, item_id, idx, variant)
        core.journal.append(
            conn, audit_entries.ITEM_ENQUEUED, item_id, _enqueued_entry(item, built, received)
        )
        return item

    # -- reading ----------------------------------------------------------------------

    def by_key(self, key: str) -> Item | None:
        """The item an idempotency key names, if any."""
        with self._core.reading() as conn:
            return items.by_idempotency_key(conn, key)

    def get(self, item_id: str) -> Item:
        """The item's clear metadata (raises :class:`ItemNotFound`)."""
        with self._core.reading() as conn:
            return items.get(conn, item_id)

    def select(
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
        with self._core.reading() as conn:
            return items.select(
                conn, states, limit, kinds=kinds, after=after, newest_first=newest_first
            )

    def ready(self, limit: int = 100) -> list[Item]:
        """Queued items the dispatcher may send now, most urgent first."""
        with self._core.reading() as conn:
            return items.ready(conn, self._core.clock_ms(), limit)

    def history(self, item_id: str) -> list[Transition]:
        """Every state change, the enqueue first (it is the item's creation: not a row)."""
        with self._core.reading() as conn:
            item = items.get(conn, item_id)
            later = items.history(conn, item_id)
        return [Transition(None, State.QUEUED, "enqueued", item.created_ms), *later]

    def variants(self, item_id: str) -> list[Variant]:
        """The item's variants' clear metadata: index, kind, hash, fees."""
        with self._core.reading() as conn:
            return self._core.variants(conn, item_id)

    def payload(self, item_id: str) -> dict[str, Any]:
        """The decrypted payload; a tampered one quarantines its item and raises."""
        return self._core.open_payload(self.get(item_id))

    def signed_variants(self, item_id: str) -> list[tuple[Variant, bytes]]:
        """Every variant with its decrypted signed bytes; tampering quarantines the item."""
        item = self.get(item_id)
        with self._core.reading() as conn:
            rows = conn.execute(
                "SELECT idx, key_id, raw FROM variants WHERE item_id = ? ORDER BY idx",
                (item_id,),
            ).fetchall()
            metas = self._core.variants(conn, item_id)
        envelope = self._core.envelope
        out = []
        for meta, row in zip(metas, rows, strict=True):
            raw = self._core.guarded(
                item,
                functools.partial(
                    envelope.open,
                    "variants",
                    f"{item_id}/{row['idx']}",
                    "raw",
                    row["key_id"],
                    row["raw"],
                ),
            )
            out.append((meta, raw))
        return out

    def counts_by_kind(self) -> list[tuple[str, str, int, int | None]]:
        """(kind, state, count, oldest created_ms) for every kind and state present."""
        with self._core.reading() as conn:
            rows = conn.execute(
                "SELECT kind, state, count(*), min(created_ms) FROM items GROUP BY kind, state"
            ).fetchall()
        return [(r[0], r[1], int(r[2]), r[3]) for r in rows]

    def count(self, state: State) -> int:
        """How many items are in ``state``."""
        with self._core.reading() as conn:
            return sends.in_state(conn, state)

    # -- changes --------------------------------------------------------------------

    def transition(self, item_id: str, target: State, reason: str) -> Item:
        """Move an item through the state machine; illegal moves raise IllegalTransition."""
        with self._core.transaction() as conn:
            item = items.get(conn, item_id)
            if item.state is State.QUEUED and target in TERMINAL:
                return self._core.leave_queue(conn, item, target, reason)
            return self._core.move(conn, item, target, reason)

    def cancel(self, item_id: str, reason: str = "cancelled by the operator") -> CancelResult:
        """Withdraw an item that has not been sent, without touching the network.

        An EVM item with later live nonces behind it and a pre-signed cancel keeps its
        place and sends the cancel instead, so the sender's sequence is not stuck.
        """
        with self._core.transaction() as conn:
            item = items.get(conn, item_id)
            if item.state is not State.QUEUED:
                raise _not_queued(item)
            if item.cancel_requested:
                return CancelResult(item, "cancel_requested", "a cancel is already requested")
            return self._withdraw(conn, item, State.CANCELLED, reason)

    def expire_due(self) -> list[CancelResult]:
        """Expire queued items whose TTL has passed (or switch them to their cancel)."""
        results = []
        with self._core.transaction() as conn:
            for item in items.due_to_expire(conn, self._core.clock_ms()):
                results.append(self._withdraw(conn, item, State.EXPIRED, "TTL passed before send"))
        return results

    def _withdraw(self, conn: Conn, item: Item, target: State, reason: str) -> CancelResult:
        waiting = item.kind is Kind.EVM_TX and nonces.later_live(conn, item)
        if waiting and items.has_cancel_variant(conn, item.id):
            note = f"{reason}: pre-signed cancel requested to fill nonce {item.nonce}"
            requested = items.request_cancel(conn, item, note, self._core.clock_ms())
            self._core.journal.append(
                conn, audit_entries.ITEM_CANCEL_REQUESTED, item.id, {"reason": note}
            )
            return CancelResult(
                requested,
                "cancel_requested",
                f"later nonces of {item.account} wait on nonce {item.nonce}: its "
                "pre-signed cancel (a 0-value self-transfer) will be sent instead",
            )
        moved = self._core.leave_queue(conn, item, target, reason)
        message = f"{target} locally; nothing was sent"
        if waiting:
            message += (
                f". Nonce {moved.nonce} of {moved.account} is now free and later nonces wait "
                "on it: the next transaction queued for this sender takes it"
            )
        return CancelResult(moved, str(target), message)

    # -- checks and export ----------------------------------------------------------------

    def verify(self, states: frozenset[State] = LIVE) -> list[tuple[str, str]]:
        """Decrypt every item in ``states``; quarantine the bad ones. Returns (id, problem)."""
        problems = []
        for item in self.select(sorted(states)):
            try:
                self._core.open_payload(item)
                self.signed_variants(item.id)
            except PayloadTampered as exc:
                problems.append((item.id, str(exc)))
        return problems

    def export(self, states: list[State] | None = None) -> Iterator[dict[str, Any]]:
        """Each item decrypted, with its variants' signed bytes and its history."""
        for item in self.select(states):
            yield self.export_one(item)

    def export_one(self, item: Item) -> dict[str, Any]:
        """One item as a JSON-ready record; ``error`` instead of a payload if it is tampered."""
        record: dict[str, Any] = {"item": item.as_json()}
        try:
            record["payload"] = self._core.open_payload(item)
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


def _refuse_repeated(keys: list[str]) -> None:
    counts = Counter(keys)
    if len(counts) == len(keys):
        return
    repeated = sorted(k for k, n in counts.items() if n > 1)
    error = IdempotencyConflict(
        f"idempotency key(s) {', '.join(map(repr, repeated))} appear more than once "
        "in one batch; give each item its own key"
    )
    error.index = next(i for i, k in enumerate(keys) if k in keys[:i])
    raise error


@contextmanager
def _element(index: int) -> Iterator[None]:
    """Name the batch element an error is about (``InvalidInput.index``)."""
    try:
        yield
    except InvalidInput as exc:
        if exc.index is None:
            exc.index = index
        raise


def _not_queued(item: Item) -> IllegalTransition:
    if item.state in (State.SENDING, State.SENT):
        return IllegalTransition(
            f"item {item.id} is {item.state}: it may already be on the network, so it "
            "cannot be cancelled locally"
        )
    return IllegalTransition(f"item {item.id} is {item.state}; only queued items can be cancelled")


def _enqueued_entry(item: Item, built: Built, received: int) -> dict[str, Any]:
    """What the audit log keeps of a new item: its metadata, when its request reached the
    store (``received_ms``: the entry's own time minus it is the time to persist, signing
    included) and every signed variant."""
    skip = ("id", "state_reason", "active_variant", "sent_ms", "mined")
    data = {k: v for k, v in item.as_json().items() if k not in skip}
    data["received_ms"] = received
    data["variants"] = [variant_entry(idx, v) for idx, v in enumerate(built.variants)]
    data.update(built.audit)
    return data


def variant_entry(idx: int, v: VariantDraft) -> dict[str, Any]:
    """A signed variant as the audit log records it (with its raw bytes)."""
    return {
        "idx": idx,
        "kind": v.kind,
        "hash": v.tx_hash,
        "fee_per_gas": str(v.fee_per_gas),
        "tip_per_gas": None if v.tip_per_gas is None else str(v.tip_per_gas),
        "raw": "0x" + v.raw.hex(),
    }
