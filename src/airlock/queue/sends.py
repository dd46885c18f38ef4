"""The broadcaster's records in the queue: send attempts, the variant on the wire, receipts.

Plain SQL on the caller's connection and transaction, like :mod:`airlock.queue.items`.
The decisions (what to send, what a receipt means) are made by the broadcaster; this
module only writes them down and reads back what the next pass needs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from airlock.queue import items
from airlock.queue.items import Item
from airlock.queue.states import State


@dataclass(frozen=True)
class Attempt:
    """One relay's answer to one send of one variant."""

    relay: str
    outcome: str
    rule: str
    message: str
    at_ms: int

    def as_json(self) -> dict[str, object]:
        return {
            "relay": self.relay,
            "outcome": self.outcome,
            "rule": self.rule,
            "message": self.message,
            "at_ms": self.at_ms,
        }


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


def dispatchable(conn: sqlite3.Connection, now_ms: int, limit: int) -> list[Item]:
    """EVM items due a send, in dispatch order: queued ones, and sends to retry.

    Ordered per sender by nonce (the network needs them in that order), senders by
    their most urgent item. Expired queued items are excluded: the expiry pass runs first
    and turns them into cancels or ends them.
    """
    rows = conn.execute(
        f"SELECT {items.COLUMNS} FROM items WHERE kind = 'evm_tx' AND ("
        " (state = 'queued' AND (expires_ms IS NULL OR expires_ms > ? OR cancel_requested = 1))"
        " OR (state = 'sending' AND coalesce(retry_ms, 0) <= ?))"
        " ORDER BY priority, created_ms, id LIMIT ?",
        (now_ms, now_ms, limit),
    ).fetchall()
    found = [Item.from_row(r) for r in rows]
    rank: dict[tuple[int | None, str], int] = {}
    for position, item in enumerate(found):
        rank.setdefault((item.chain_id, item.account), position)
    return sorted(found, key=lambda i: (rank[(i.chain_id, i.account)], i.nonce or 0))


def inflight(conn: sqlite3.Connection, watch_from_block: int | None) -> list[Lane]:
    """Items whose fate the chain decides: sending, sent, waiting for an operator, and
    confirmed ones still within reorg reach (mined at or after ``watch_from_block``)."""
    rows = conn.execute(
        f"SELECT {items.COLUMNS} FROM items WHERE kind = 'evm_tx' AND"
        " (state IN ('sending', 'sent', 'needs_operator')"
        " OR (state = 'confirmed' AND mined_block >= ?))"
        " ORDER BY chain_id, account, nonce",
        (-1 if watch_from_block is None else watch_from_block,),
    ).fetchall()
    lanes = []
    for row in rows:
        item = Item.from_row(row)
        variants = conn.execute(
            "SELECT tx_hash, kind, fate FROM variants WHERE item_id = ? ORDER BY idx", (item.id,)
        ).fetchall()
        lanes.append(
            Lane(
                item,
                tuple(v["tx_hash"] for v in variants),
                tuple(v["kind"] for v in variants),
                tuple(v["fate"] for v in variants),
            )
        )
    return lanes


def record_attempts(
    conn: sqlite3.Connection, item_id: str, variant_idx: int, attempts: Sequence[Attempt]
) -> None:
    first = conn.execute(
        "SELECT coalesce(max(n), 0) + 1 FROM attempts WHERE item_id = ?", (item_id,)
    ).fetchone()[0]
    conn.executemany(
        "INSERT INTO attempts (item_id, n, variant_idx, relay, at_ms, outcome, rule, message)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (item_id, first + i, variant_idx, a.relay, a.at_ms, a.outcome, a.rule, a.message)
            for i, a in enumerate(attempts)
        ],
    )


def attempts(conn: sqlite3.Connection, item_id: str) -> list[tuple[int, Attempt]]:
    """Every attempt for ``item_id`` as (variant index, attempt), oldest first."""
    return [
        (r["variant_idx"], Attempt(r["relay"], r["outcome"], r["rule"], r["message"], r["at_ms"]))
        for r in conn.execute(
            "SELECT variant_idx, relay, at_ms, outcome, rule, message FROM attempts"
            " WHERE item_id = ? ORDER BY n",
            (item_id,),
        )
    ]


def has_attempts(conn: sqlite3.Connection, item_id: str) -> bool:
    row = conn.execute("SELECT 1 FROM attempts WHERE item_id = ? LIMIT 1", (item_id,)).fetchone()
    return row is not None


def set_active(conn: sqlite3.Connection, item_id: str, idx: int) -> None:
    conn.execute("UPDATE items SET active_idx = ? WHERE id = ?", (idx, item_id))


def mark_variant_sent(conn: sqlite3.Connection, item_id: str, idx: int) -> None:
    conn.execute(
        "UPDATE variants SET fate = 'sent' WHERE item_id = ? AND idx = ? AND fate IS NULL",
        (item_id, idx),
    )


def set_sent(conn: sqlite3.Connection, item_id: str, now_ms: int, head: int | None) -> None:
    """The active variant was (re)accepted now: the bump and rebroadcast clocks restart."""
    conn.execute(
        "UPDATE items SET sent_ms = ?, sent_block = coalesce(?, sent_block), retry_ms = NULL"
        " WHERE id = ?",
        (now_ms, head, item_id),
    )


def set_retry(conn: sqlite3.Connection, item_id: str, retry_ms: int | None) -> None:
    conn.execute("UPDATE items SET retry_ms = ? WHERE id = ?", (retry_ms, item_id))


def set_mined(conn: sqlite3.Connection, item_id: str, mined: Mined | None) -> None:
    """Record the receipt (or, after a reorg, forget it) and each sent variant's fate."""
    if mined is None:
        conn.execute(
            "UPDATE items SET mined_hash = NULL, mined_block = NULL, mined_block_hash = NULL"
            " WHERE id = ?",
            (item_id,),
        )
        conn.execute(
            "UPDATE variants SET fate = 'sent' WHERE item_id = ? AND fate IS NOT NULL",
            (item_id,),
        )
        return
    conn.execute(
        "UPDATE items SET mined_hash = ?, mined_block = ?, mined_block_hash = ? WHERE id = ?",
        (mined.tx_hash, mined.block, mined.block_hash, item_id),
    )
    conn.execute(
        "UPDATE variants SET fate = CASE WHEN tx_hash = ? THEN 'mined' ELSE 'replaced' END"
        " WHERE item_id = ? AND (fate IS NOT NULL OR tx_hash = ?)",
        (mined.tx_hash, item_id, mined.tx_hash),
    )


def set_replaced(conn: sqlite3.Connection, item_id: str) -> None:
    conn.execute(
        "UPDATE variants SET fate = 'replaced' WHERE item_id = ? AND fate IS NOT NULL",
        (item_id,),
    )


def fates(conn: sqlite3.Connection, item_id: str) -> dict[int, str | None]:
    return {
        r["idx"]: r["fate"]
        for r in conn.execute("SELECT idx, fate FROM variants WHERE item_id = ?", (item_id,))
    }


def in_state(conn: sqlite3.Connection, state: State) -> int:
    return int(
        conn.execute("SELECT count(*) FROM items WHERE state = ?", (str(state),)).fetchone()[0]
    )
