"""Items: the typed record, its priorities, and the SQL that reads and moves them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from airlock.encoding.records import Row, from_row
from airlock.queue.db import Conn
from airlock.queue.errors import ItemNotFound
from airlock.queue.states import State, check_transition


class Kind(StrEnum):
    EVM_TX = "evm_tx"
    BYBIT_ORDER = "bybit_order"
    BYBIT_CANCEL = "bybit_cancel"


class Priority(IntEnum):
    """Lower goes first: cancels, then risk-reducing actions, then everything else."""

    CANCEL = 0
    RISK_REDUCING = 10
    NORMAL = 50


@dataclass(frozen=True)
class Item:
    """An item's clear metadata. The payload stays encrypted until asked for."""

    id: str
    kind: Kind
    account: str
    strategy: str
    seq: int
    idempotency_key: str
    priority: int
    state: State
    state_reason: str | None
    created_ms: int
    updated_ms: int
    expires_ms: int | None
    chain_id: int | None
    nonce: int | None
    holds_nonce: bool
    private: bool
    cancel_requested: bool
    signer: str | None
    key_id: int
    # The broadcaster's view (schema 4): the variant on the wire and what the chain said.
    active_idx: int | None = None
    sent_ms: int | None = None
    sent_block: int | None = None
    retry_ms: int | None = None
    mined_hash: str | None = None
    mined_block: int | None = None
    mined_block_hash: str | None = None

    @classmethod
    def from_row(cls, row: Row) -> Item:
        return cls(
            **from_row(
                cls,
                row,
                kind=Kind(row["kind"]),
                state=State(row["state"]),
                holds_nonce=bool(row["holds_nonce"]),
                private=bool(row["private"]),
                cancel_requested=bool(row["cancel_requested"]),
            )
        )

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": str(self.kind),
            "account": self.account,
            "strategy": self.strategy,
            "seq": self.seq,
            "idempotency_key": self.idempotency_key,
            "priority": self.priority,
            "state": str(self.state),
            "state_reason": self.state_reason,
            "created_ms": self.created_ms,
            "updated_ms": self.updated_ms,
            "expires_ms": self.expires_ms,
            "chain_id": self.chain_id,
            "nonce": self.nonce,
            "private": self.private,
            "cancel_requested": self.cancel_requested,
            "signer": self.signer,
            "active_variant": self.active_idx,
            "sent_ms": self.sent_ms,
            "mined": None
            if self.mined_hash is None
            else {
                "hash": self.mined_hash,
                "block": self.mined_block,
                "block_hash": self.mined_block_hash,
            },
        }


@dataclass(frozen=True)
class Transition:
    from_state: State | None
    to_state: State
    reason: str
    at_ms: int


COLUMNS = (
    "id, kind, account, strategy, seq, idempotency_key, priority, state, state_reason,"
    " created_ms, updated_ms, expires_ms, chain_id, nonce, holds_nonce, private,"
    " cancel_requested, signer, key_id, active_idx, sent_ms, sent_block, retry_ms,"
    " mined_hash, mined_block, mined_block_hash"
)
_INSERTED = COLUMNS.split(", active_idx")[0]


def insert(conn: Conn, item: Item, payload: bytes) -> None:
    conn.execute(
        f"INSERT INTO items ({_INSERTED}, payload)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            item.id,
            str(item.kind),
            item.account,
            item.strategy,
            item.seq,
            item.idempotency_key,
            item.priority,
            str(item.state),
            item.state_reason,
            item.created_ms,
            item.updated_ms,
            item.expires_ms,
            item.chain_id,
            item.nonce,
            int(item.holds_nonce),
            int(item.private),
            int(item.cancel_requested),
            item.signer,
            item.key_id,
            payload,
        ),
    )


def get(conn: Conn, item_id: str) -> Item:
    row = conn.execute(f"SELECT {COLUMNS} FROM items WHERE id = ?", (item_id,)).fetchone()
    if row is None:
        raise ItemNotFound(f"no item {item_id!r} in the queue")
    return Item.from_row(row)


def by_idempotency_key(conn: Conn, key: str) -> Item | None:
    row = conn.execute(f"SELECT {COLUMNS} FROM items WHERE idempotency_key = ?", (key,)).fetchone()
    return None if row is None else Item.from_row(row)


def by_idempotency_keys(conn: Conn, keys: list[str]) -> dict[str, Item]:
    """The items the given keys name (absent keys are absent), in chunks the SQLite
    variable limit allows."""
    found: dict[str, Item] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        rows = conn.execute(
            f"SELECT {COLUMNS} FROM items WHERE idempotency_key IN ({marks})", chunk
        ).fetchall()
        found |= {row["idempotency_key"]: Item.from_row(row) for row in rows}
    return found


def select(
    conn: Conn,
    states: list[State] | None = None,
    limit: int | None = None,
    *,
    kinds: list[Kind] | None = None,
    after: str | None = None,
    newest_first: bool = False,
) -> list[Item]:
    """Items in creation order (or newest first), optionally only in ``states``, of
    ``kinds``, after an id (before it, newest first)."""
    where: list[str] = []
    params: list[object] = []
    if states:
        where.append(f"state IN ({', '.join('?' for _ in states)})")
        params += [str(s) for s in states]
    if kinds:
        where.append(f"kind IN ({', '.join('?' for _ in kinds)})")
        params += [str(k) for k in kinds]
    if after is not None:
        where.append("id < ?" if newest_first else "id > ?")
        params.append(after)
    sql = f"SELECT {COLUMNS} FROM items"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC" if newest_first else " ORDER BY id"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return [Item.from_row(r) for r in conn.execute(sql, params)]


def ready(conn: Conn, now_ms: int, limit: int) -> list[Item]:
    """Queued, unexpired items in dispatch order: priority, then age.

    A cancel requested for an expired EVM item still goes out: it fills the nonce.
    """
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM items WHERE state = 'queued'"
        " AND (expires_ms IS NULL OR expires_ms > ? OR cancel_requested = 1)"
        " ORDER BY priority, created_ms, id LIMIT ?",
        (now_ms, limit),
    ).fetchall()
    return [Item.from_row(r) for r in rows]


def due_to_expire(conn: Conn, now_ms: int) -> list[Item]:
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM items WHERE state = 'queued' AND cancel_requested = 0"
        " AND expires_ms IS NOT NULL AND expires_ms <= ? ORDER BY id",
        (now_ms,),
    ).fetchall()
    return [Item.from_row(r) for r in rows]


def next_seq(conn: Conn, strategy: str) -> int:
    row = conn.execute(
        "SELECT coalesce(max(seq), 0) + 1 FROM items WHERE strategy = ?", (strategy,)
    ).fetchone()
    return int(row[0])


def record(
    conn: Conn,
    item_id: str,
    from_state: State | None,
    to_state: State,
    reason: str,
    now_ms: int,
) -> None:
    """Append one row to the item's history (``n`` counts from 1 per item; the enqueue
    itself is not a row)."""
    conn.execute(
        "INSERT INTO transitions (item_id, n, from_state, to_state, reason, at_ms)"
        " SELECT ?, coalesce(max(n), 0) + 1, ?, ?, ?, ? FROM transitions WHERE item_id = ?",
        (
            item_id,
            None if from_state is None else str(from_state),
            str(to_state),
            reason,
            now_ms,
            item_id,
        ),
    )


def move(conn: Conn, item: Item, target: State, reason: str, now_ms: int) -> Item:
    """Change ``item``'s state if the table allows it, and record why."""
    src, dst = check_transition(item.state, target)
    cursor = conn.execute(
        "UPDATE items SET state = ?, state_reason = ?, updated_ms = ? WHERE id = ? AND state = ?",
        (str(dst), reason, now_ms, item.id, str(src)),
    )
    if cursor.rowcount != 1:  # someone else moved it since it was read
        return move(conn, get(conn, item.id), target, reason, now_ms)
    record(conn, item.id, src, dst, reason, now_ms)
    return get(conn, item.id)


def has_cancel_variant(conn: Conn, item_id: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM variants WHERE item_id = ? AND kind = 'cancel'", (item_id,)
    ).fetchone()
    return row is not None


def request_cancel(conn: Conn, item: Item, note: str, now_ms: int) -> Item:
    """Keep ``item`` queued but send its pre-signed cancel in its place; record why."""
    conn.execute(
        "UPDATE items SET cancel_requested = 1, state_reason = ?, updated_ms = ? WHERE id = ?",
        (note, now_ms, item.id),
    )
    record(conn, item.id, item.state, item.state, note, now_ms)
    return get(conn, item.id)


def history(conn: Conn, item_id: str) -> list[Transition]:
    rows = conn.execute(
        "SELECT from_state, to_state, reason, at_ms FROM transitions WHERE item_id = ? ORDER BY n",
        (item_id,),
    ).fetchall()
    return [
        Transition(
            from_state=None if r["from_state"] is None else State(r["from_state"]),
            to_state=State(r["to_state"]),
            reason=r["reason"],
            at_ms=r["at_ms"],
        )
        for r in rows
    ]
