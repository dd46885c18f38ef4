"""The broadcaster's records in the queue: send attempts, the variant on the wire, receipts.

Plain SQL on the caller's connection and transaction, like :mod:`airlock.queue.items`.
The decisions (what to send, what a receipt means) are made by the broadcaster; this
module only writes them down and reads back what the next pass needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from airlock.encoding.records import Row, plain
from airlock.queue import items
from airlock.queue.db import Conn
from airlock.queue.errors import StaleItems
from airlock.queue.items import Item
from airlock.queue.states import State, check_transition


@dataclass(frozen=True)
class Attempt:
    """One relay's answer to one send of one variant."""

    relay: str
    outcome: str
    rule: str
    message: str
    at_ms: int

    def as_json(self) -> dict[str, object]:
        return plain(self)


@dataclass(frozen=True)
class Mined:
    """A receipt of ours: which hash, in which block."""

    tx_hash: str
    block: int
    block_hash: str

    def as_json(self) -> dict[str, object]:
        return {"hash": self.tx_hash, "block": self.block, "block_hash": self.block_hash}


@dataclass(frozen=True)
class Lane:
    """One in-flight EVM item and the hashes of every variant it could be mined as."""

    item: Item
    hashes: tuple[str, ...]  # by variant index
    kinds: tuple[str, ...]  # "step" or "cancel", by variant index
    fates: tuple[str | None, ...]  # None (never sent), sent, mined, replaced

    @property
    def sent_hashes(self) -> list[str]:
        """Every hash that may have reached a relay: only these can have a receipt."""
        return [
            h
            for idx, (h, fate) in enumerate(zip(self.hashes, self.fates, strict=True))
            if fate is not None or idx == self.item.active_idx
        ]


Senders = Sequence[tuple[int | None, str]]
"""(chain id, sender) pairs: the lanes a broadcaster holds on a shared queue."""


def _of_senders(senders: Senders | None, alias: str = "") -> tuple[str, list[Any]]:
    """`` AND (chain_id, account) IN (...)`` for ``senders``; nothing for None (all)."""
    if senders is None:
        return "", []
    if not senders:
        return " AND 1 = 0", []
    pairs = ", ".join("(?, ?)" for _ in senders)
    clause = f" AND ({alias}chain_id, {alias}account) IN (VALUES {pairs})"
    return clause, [value for pair in senders for value in pair]


def dispatchable(conn: Conn, now_ms: int, limit: int, senders: Senders | None = None) -> list[Item]:
    """EVM items due a send, in dispatch order: queued ones, and sends to retry; only
    ``senders``' when given.

    Ordered per sender by nonce (the network needs them in that order), senders by
    their most urgent item. Expired queued items are excluded: the expiry pass runs first
    and turns them into cancels or ends them.
    """
    only, params = _of_senders(senders)
    rows = conn.execute(
        f"SELECT {items.COLUMNS} FROM items WHERE kind = 'evm_tx' AND ("
        " (state = 'queued' AND (expires_ms IS NULL OR expires_ms > ? OR cancel_requested = 1))"
        f" OR (state = 'sending' AND coalesce(retry_ms, 0) <= ?)){only}"
        " ORDER BY priority, created_ms, id LIMIT ?",
        (now_ms, now_ms, *params, limit),
    ).fetchall()
    found = [Item.from_row(r) for r in rows]
    rank: dict[tuple[int | None, str], int] = {}
    for position, item in enumerate(found):
        rank.setdefault((item.chain_id, item.account), position)
    return sorted(found, key=lambda i: (rank[(i.chain_id, i.account)], i.nonce or 0))


def inflight(
    conn: Conn, watch_from_block: int | None, senders: Senders | None = None
) -> list[Lane]:
    """Items whose fate the chain decides: sending, sent, waiting for an operator, and
    confirmed ones (or replaced by their own mined cancel) still within reorg reach
    (mined at or after ``watch_from_block``); only ``senders``' when given.
    One query: the items joined to their variants."""
    columns = ", ".join(f"i.{c.strip()}" for c in items.COLUMNS.split(","))
    only, params = _of_senders(senders, "i.")
    rows = conn.execute(
        f"SELECT {columns}, v.tx_hash AS v_hash, v.kind AS v_kind, v.fate AS v_fate"
        " FROM items i JOIN variants v ON v.item_id = i.id WHERE i.kind = 'evm_tx' AND"
        " (i.state IN ('sending', 'sent', 'needs_operator')"
        " OR (i.state IN ('confirmed', 'replaced') AND i.mined_hash IS NOT NULL"
        f" AND i.mined_block >= ?)){only}"
        " ORDER BY i.chain_id, i.account, i.nonce, i.id, v.idx",
        (-1 if watch_from_block is None else watch_from_block, *params),
    ).fetchall()
    lanes: list[Lane] = []
    group: list[Row] = []
    for row in [*rows, None]:
        if group and (row is None or row["id"] != group[0]["id"]):
            lanes.append(
                Lane(
                    Item.from_row(group[0]),
                    tuple(r["v_hash"] for r in group),
                    tuple(r["v_kind"] for r in group),
                    tuple(r["v_fate"] for r in group),
                )
            )
            group = []
        if row is not None:
            group.append(row)
    return lanes


@dataclass(frozen=True)
class StoredVariant:
    """A variant as stored: its metadata and its still-encrypted bytes."""

    idx: int
    kind: str
    tx_hash: str
    fate: str | None
    key_id: int
    blob: bytes


def variants_of(conn: Conn, item_ids: Sequence[str]) -> dict[str, list[StoredVariant]]:
    """Every variant of every item in ``item_ids``, in one query."""
    found: dict[str, list[StoredVariant]] = {i: [] for i in item_ids}
    for start in range(0, len(item_ids), 500):
        chunk = list(item_ids[start : start + 500])
        marks = ", ".join("?" for _ in chunk)
        for r in conn.execute(
            "SELECT item_id, idx, kind, tx_hash, fate, key_id, raw FROM variants"
            f" WHERE item_id IN ({marks}) ORDER BY item_id, idx",
            chunk,
        ):
            found[r["item_id"]].append(
                StoredVariant(r["idx"], r["kind"], r["tx_hash"], r["fate"], r["key_id"], r["raw"])
            )
    return found


@dataclass(frozen=True)
class Move:
    """One state change of one item, from the state it was read in."""

    item_id: str
    src: State
    dst: State
    reason: str


def move_many(conn: Conn, moves: Sequence[Move], now_ms: int) -> None:
    """Apply ``moves`` (each checked against the state machine) with their history rows.

    Each update is guarded by the state the caller read; if any item moved meanwhile,
    :class:`StaleItems` is raised and the caller's transaction rolls back."""
    if not moves:
        return
    for move in moves:
        check_transition(move.src, move.dst)
    cursor = conn.executemany(
        "UPDATE items SET state = ?, state_reason = ?, updated_ms = ? WHERE id = ? AND state = ?",
        [(str(m.dst), m.reason, now_ms, m.item_id, str(m.src)) for m in moves],
    )
    if cursor.rowcount != len(moves):
        raise StaleItems(
            f"{len(moves) - cursor.rowcount} of {len(moves)} items changed state since they "
            "were read; nothing was written"
        )
    note_many(conn, [(m.item_id, m.src, m.dst, m.reason) for m in moves], now_ms)


def note_many(conn: Conn, notes: Sequence[tuple[str, State, State, str]], now_ms: int) -> None:
    """History rows (item, from, to, reason); from == to for a note without a move."""
    conn.executemany(
        "INSERT INTO transitions (item_id, n, from_state, to_state, reason, at_ms)"
        " SELECT ?, coalesce(max(n), 0) + 1, ?, ?, ?, ? FROM transitions WHERE item_id = ?",
        [(i, str(src), str(dst), reason, now_ms, i) for i, src, dst, reason in notes],
    )


def record_attempts(conn: Conn, sends: Sequence[tuple[str, int, Sequence[Attempt]]]) -> None:
    """Every attempt of every (item, variant index, attempts) send of a wave."""
    ids = sorted({item_id for item_id, _, _ in sends})
    last: dict[str, int] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        last.update(
            conn.execute(
                f"SELECT item_id, max(n) FROM attempts WHERE item_id IN ({marks}) GROUP BY item_id",
                chunk,
            ).fetchall()
        )
    rows = []
    for item_id, idx, tries in sends:
        for attempt in tries:
            last[item_id] = last.get(item_id, 0) + 1
            rows.append(
                (
                    item_id,
                    last[item_id],
                    idx,
                    attempt.relay,
                    attempt.at_ms,
                    attempt.outcome,
                    attempt.rule,
                    attempt.message,
                )
            )
    conn.executemany(
        "INSERT INTO attempts (item_id, n, variant_idx, relay, at_ms, outcome, rule, message)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def attempts(conn: Conn, item_id: str) -> list[tuple[int, Attempt]]:
    """Every attempt for ``item_id`` as (variant index, attempt), oldest first."""
    return [
        (r["variant_idx"], Attempt(r["relay"], r["outcome"], r["rule"], r["message"], r["at_ms"]))
        for r in conn.execute(
            "SELECT variant_idx, relay, at_ms, outcome, rule, message FROM attempts"
            " WHERE item_id = ? ORDER BY n",
            (item_id,),
        )
    ]


def has_attempts(conn: Conn, item_id: str) -> bool:
    row = conn.execute("SELECT 1 FROM attempts WHERE item_id = ? LIMIT 1", (item_id,)).fetchone()
    return row is not None


def set_active(conn: Conn, picks: Sequence[tuple[str, int]]) -> None:
    """Record which variant of each item goes out next."""
    conn.executemany("UPDATE items SET active_idx = ? WHERE id = ?", [(idx, i) for i, idx in picks])


def mark_sent(conn: Conn, sent: Sequence[tuple[str, int]], now_ms: int, head: int | None) -> None:
    """The (item, variant) sends a relay took: fates recorded, bump clocks restarted."""
    conn.executemany(
        "UPDATE variants SET fate = 'sent' WHERE item_id = ? AND idx = ? AND fate IS NULL",
        list(sent),
    )
    conn.executemany(
        "UPDATE items SET sent_ms = ?, sent_block = coalesce(?, sent_block), retry_ms = NULL"
        " WHERE id = ?",
        [(now_ms, head, i) for i, _ in sent],
    )


def set_retry(conn: Conn, retries: Sequence[tuple[str, int | None]]) -> None:
    conn.executemany("UPDATE items SET retry_ms = ? WHERE id = ?", [(r, i) for i, r in retries])


def set_mined(conn: Conn, mined: Sequence[tuple[str, Mined]]) -> None:
    """Record receipts and each sent variant's fate: the mined one, the others replaced."""
    conn.executemany(
        "UPDATE items SET mined_hash = ?, mined_block = ?, mined_block_hash = ? WHERE id = ?",
        [(m.tx_hash, m.block, m.block_hash, i) for i, m in mined],
    )
    conn.executemany(
        "UPDATE variants SET fate = CASE WHEN tx_hash = ? THEN 'mined' ELSE 'replaced' END"
        " WHERE item_id = ? AND (fate IS NOT NULL OR tx_hash = ?)",
        [(m.tx_hash, i, m.tx_hash) for i, m in mined],
    )


def forget_mined(conn: Conn, item_ids: Sequence[str], now_ms: int) -> None:
    """A reorg took the receipts away: back to sent variants, clocks restarted.

    The active variant's fate goes back to unknown (NULL, as for a send no relay took):
    its bytes are in no block and perhaps in no node's pool, so every reconcile resends
    them (``pending_move``) until a relay takes them again. The rebroadcast that follows
    the reorg at once can reach no relay (links down, or the failover rules holding the
    item), and without this the item waited, in no pool, for the bump or rebroadcast
    timers (found by the chaos suite)."""
    conn.executemany(
        "UPDATE items SET mined_hash = NULL, mined_block = NULL, mined_block_hash = NULL,"
        " sent_ms = ? WHERE id = ?",
        [(now_ms, i) for i in item_ids],
    )
    conn.executemany(
        "UPDATE variants SET fate = 'sent' WHERE item_id = ? AND fate IS NOT NULL",
        [(i,) for i in item_ids],
    )
    conn.executemany(
        "UPDATE variants SET fate = NULL WHERE item_id = ?"
        " AND idx = (SELECT coalesce(active_idx, 0) FROM items WHERE id = ?)",
        [(i, i) for i in item_ids],
    )


def set_replaced(conn: Conn, item_ids: Sequence[str]) -> None:
    conn.executemany(
        "UPDATE variants SET fate = 'replaced' WHERE item_id = ? AND fate IS NOT NULL",
        [(i,) for i in item_ids],
    )


def fates(conn: Conn, item_id: str) -> dict[int, str | None]:
    return {
        r["idx"]: r["fate"]
        for r in conn.execute("SELECT idx, fate FROM variants WHERE item_id = ?", (item_id,))
    }


def in_state(conn: Conn, state: State) -> int:
    return int(
        conn.execute("SELECT count(*) FROM items WHERE state = ?", (str(state),)).fetchone()[0]
    )
