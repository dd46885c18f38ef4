"""``store.sends``: the broadcaster's records of EVM sends, receipts and variants.

Written before acting: a wave is marked ``sending`` (with the variant about to leave) in
one transaction before any byte leaves, and every relay's answer is written in one
transaction before the next wave. Bulk writes are guarded by the state read: if an item
moved meanwhile, nothing is written (:class:`StaleItems`).
"""

from __future__ import annotations

from airlock.audit import entries as audit_entries
from airlock.queue import items, nonces, sends
from airlock.queue.db import Conn
from airlock.queue.errors import IllegalTransition
from airlock.queue.items import Item
from airlock.queue.sends import Attempt, Lane, Move, Senders, StoredVariant
from airlock.queue.states import State
from airlock.queue.store.core import Core
from airlock.queue.store.items import variant_entry
from airlock.queue.store.records import ChainRecord, SendRecord, VariantDraft


class Sends:
    """The EVM side's records (``store.sends``)."""

    def __init__(self, core: Core) -> None:
        self._core = core

    def dispatchable(self, limit: int = 500, senders: Senders | None = None) -> list[Item]:
        """EVM items due a send, per sender in nonce order, most urgent sender first
        (only ``senders``' when given: the lanes a broadcaster holds)."""
        with self._core.lock:
            return sends.dispatchable(self._core.conn, self._core.clock_ms(), limit, senders)

    def lanes(
        self, watch_from_block: int | None = None, senders: Senders | None = None
    ) -> list[Lane]:
        """In-flight EVM items with every hash they could be mined as (reconcile's input),
        only ``senders``' when given."""
        with self._core.lock:
            return sends.inflight(self._core.conn, watch_from_block, senders)

    def wave_variants(self, item_ids: list[str]) -> dict[str, list[StoredVariant]]:
        """The variants of many items at once (still encrypted): one query for a wave."""
        with self._core.lock:
            return sends.variants_of(self._core.conn, item_ids)

    def open_variant(self, item: Item, variant: StoredVariant) -> bytes:
        """A variant's signed bytes; a tampered ciphertext quarantines the item."""
        return self._core.guarded(
            item,
            lambda: self._core.envelope.open(
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
        with self._core.lock:
            return sends.attempts(self._core.conn, item_id)

    def fates(self, item_id: str) -> dict[int, str | None]:
        """Each variant's fate: None (never sent), sent, mined or replaced."""
        with self._core.lock:
            return sends.fates(self._core.conn, item_id)

    def begin(self, picks: list[tuple[Item, int]]) -> None:
        """Durably mark a wave as on its way, before any byte leaves: queued items move to
        ``sending``, each records the variant about to go out; one audit entry for all.

        Raises :class:`StaleItems` (nothing written) if an item moved since it was read.
        """
        now = self._core.clock_ms()
        moves, notes, entry = [], [], []
        for item, idx in picks:
            if item.state is State.QUEUED:
                moves.append(
                    Move(item.id, State.QUEUED, State.SENDING, _variant_note("dispatch", idx))
                )
            elif item.active_idx != idx:
                notes.append((item.id, item.state, item.state, _variant_note("bump", idx)))
            entry.append({"item": item.id, "variant": idx, "from": str(item.state)})
        with self._core.transaction() as conn:
            sends.move_many(conn, moves, now)
            sends.note_many(conn, notes, now)
            sends.set_active(conn, [(item.id, idx) for item, idx in picks])
            self._core.journal.append(conn, audit_entries.ITEMS_SENDING, None, {"items": entry})

    def record(self, records: list[SendRecord]) -> None:
        """A wave's attempts, what became of each item, and one audit entry: one transaction."""
        now = self._core.clock_ms()
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
        with self._core.transaction() as conn:
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
            self._core.journal.append(conn, audit_entries.ITEMS_SENT, None, {"items": entry})

    def _release_rejected(self, conn: Conn, item_id: str) -> None:
        """Every relay refused these bytes for good: the nonce is still free on chain."""
        item = items.get(conn, item_id)
        if item.holds_nonce and item.chain_id is not None:
            nonces.release(conn, item.id, item.chain_id, item.account)

    def record_chain(self, records: list[ChainRecord]) -> None:
        """Receipts found, replacements and reorgs, with one audit entry: one transaction."""
        now = self._core.clock_ms()
        paths = {r.item_id: _chain_path(r) for r in records}
        with self._core.transaction() as conn:
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
            self._core.journal.append(conn, audit_entries.ITEMS_SETTLED, None, {"items": entry})

    def add_variant(self, item_id: str, variant: VariantDraft) -> int:
        """Store a variant signed after enqueue (a re-signed bump); returns its index."""
        with self._core.transaction() as conn:
            idx = conn.execute(
                "SELECT coalesce(max(idx), -1) + 1 FROM variants WHERE item_id = ?", (item_id,)
            ).fetchone()[0]
            self._core.insert_variant(conn, item_id, idx, variant)
            self._core.journal.append(
                conn,
                audit_entries.ITEM_VARIANT_ADDED,
                item_id,
                variant_entry(idx, variant),
            )
            return int(idx)


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
