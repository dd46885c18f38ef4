"""The queue's Bybit records: each item's venue reference, the venue state last seen, fills.

Plain SQL on the caller's connection and transaction, like :mod:`airlock.queue.sends`.
What a venue answer *means* is decided by the broadcaster; this module writes it down.

Kept in clear, like an EVM item's nonce and hashes: category, symbol, orderLinkId, the
venue's orderId and status, fill ids, quantities and prices. They are venue observations
and routing metadata, not the signed intent (which stays in the encrypted payload); the
dispatcher and ``airlock bybit orders`` read them without the HSM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from airlock.encoding.records import Row, from_row, plain
from airlock.queue import items
from airlock.queue.db import Conn
from airlock.queue.items import Item
from airlock.vocab import Category

Action = Literal["order", "cancel"]
# A venue reference's JSON names (what `airlock bybit orders` and the audit log show).
_VENUE_NAMES = {"link_id": "order_link_id", "status": "venue_status", "cum_qty": "cum_exec_qty"}


@dataclass(frozen=True)
class VenueDraft:
    """The venue reference of a Bybit item being queued."""

    action: Action
    category: Category
    symbol: str
    link_id: str


@dataclass(frozen=True)
class VenueRef:
    """A Bybit item's venue reference. For a cancel, ``link_id`` is the order it cancels."""

    item_id: str
    action: Action
    category: Category
    symbol: str
    link_id: str
    order_id: str | None = None
    status: str | None = None
    cum_qty: str | None = None
    avg_price: str | None = None
    seen_ms: int | None = None

    @classmethod
    def from_row(cls, row: Row) -> VenueRef:
        return cls(**from_row(cls, row))

    def as_json(self) -> dict[str, Any]:
        return plain(self, _VENUE_NAMES, drop=("item_id",))


@dataclass(frozen=True)
class VenueSeen:
    """What the venue said of an order: any field may be unknown (None)."""

    order_id: str | None = None
    status: str | None = None
    cum_qty: str | None = None
    avg_price: str | None = None

    def as_json(self) -> dict[str, Any]:
        return plain(self, {"cum_qty": "cum_exec_qty"})


@dataclass(frozen=True)
class Fill:
    """One execution as the venue reported it (``item_id`` None: not an airlock order)."""

    exec_id: str
    link_id: str
    order_id: str
    symbol: str
    side: str
    exec_qty: str
    exec_price: str
    exec_time_ms: int
    item_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        return plain(self, {"item_id": "item", "link_id": "order_link_id"})


_JOINED = ", ".join(f"i.{c.strip()}" for c in items.COLUMNS.split(","))
_REF = "v.item_id, v.action, v.category, v.symbol, v.link_id, v.order_id, v.status,"
_REF += " v.cum_qty, v.avg_price, v.seen_ms"
_FROM = f"SELECT {_JOINED}, {_REF} FROM items i JOIN venue_orders v ON v.item_id = i.id"


def insert(conn: Conn, item_id: str, ref: VenueDraft) -> None:
    conn.execute(
        "INSERT INTO venue_orders (item_id, action, category, symbol, link_id)"
        " VALUES (?, ?, ?, ?, ?)",
        (item_id, ref.action, ref.category, ref.symbol, ref.link_id),
    )


def _pairs(rows: list[Row]) -> list[tuple[Item, VenueRef]]:
    return [(Item.from_row(r), VenueRef.from_row(r)) for r in rows]


def due(
    conn: Conn, now_ms: int, limit: int, accounts: Sequence[str] | None = None
) -> list[tuple[Item, VenueRef]]:
    """Queued Bybit items due a send, most urgent first (cancels lead: priority 0); only
    ``accounts``' when given (the lanes a broadcaster holds).

    Expired items are left to the expiry pass; items given a retry time wait for it."""
    only = ""
    if accounts is not None:
        only = (
            f" AND i.account IN ({', '.join('?' for _ in accounts)})" if accounts else " AND 1 = 0"
        )
    rows = conn.execute(
        f"{_FROM} WHERE i.state = 'queued'"
        " AND (i.expires_ms IS NULL OR i.expires_ms > ?) AND coalesce(i.retry_ms, 0) <= ?"
        f"{only} ORDER BY i.priority, i.created_ms, i.id LIMIT ?",
        (now_ms, now_ms, *(accounts or ()), limit),
    ).fetchall()
    return _pairs(rows)


def in_states(conn: Conn, states: Sequence[str]) -> list[tuple[Item, VenueRef]]:
    marks = ", ".join("?" for _ in states)
    rows = conn.execute(
        f"{_FROM} WHERE i.state IN ({marks}) ORDER BY i.created_ms, i.id", tuple(states)
    ).fetchall()
    return _pairs(rows)


def every(conn: Conn, limit: int | None) -> list[tuple[Item, VenueRef]]:
    sql = f"{_FROM} ORDER BY i.created_ms DESC, i.id DESC"
    rows = (
        conn.execute(sql + " LIMIT ?", (limit,)).fetchall()
        if limit
        else conn.execute(sql).fetchall()
    )
    return _pairs(rows)


def of_item(conn: Conn, item_id: str) -> tuple[Item, VenueRef] | None:
    rows = conn.execute(f"{_FROM} WHERE i.id = ?", (item_id,)).fetchall()
    return _pairs(rows)[0] if rows else None


def order_by_link(conn: Conn, link_id: str) -> tuple[Item, VenueRef] | None:
    rows = conn.execute(
        f"{_FROM} WHERE v.link_id = ? AND v.action = 'order'", (link_id,)
    ).fetchall()
    return _pairs(rows)[0] if rows else None


def item_ids_by_link(conn: Conn, link_ids: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for start in range(0, len(link_ids), 500):
        chunk = list(link_ids[start : start + 500])
        marks = ", ".join("?" for _ in chunk)
        for row in conn.execute(
            f"SELECT link_id, item_id FROM venue_orders WHERE action = 'order'"
            f" AND link_id IN ({marks})",
            chunk,
        ):
            found[row[0]] = row[1]
    return found


def note_seen(conn: Conn, item_id: str, seen: VenueSeen, now_ms: int) -> None:
    """Keep what the venue said; unknown (None) fields keep their last value."""
    conn.execute(
        "UPDATE venue_orders SET order_id = coalesce(?, order_id),"
        " status = coalesce(?, status), cum_qty = coalesce(?, cum_qty),"
        " avg_price = coalesce(?, avg_price), seen_ms = ? WHERE item_id = ?",
        (seen.order_id, seen.status, seen.cum_qty, seen.avg_price, now_ms, item_id),
    )


def set_retry(conn: Conn, item_id: str, retry_ms: int | None) -> None:
    conn.execute("UPDATE items SET retry_ms = ? WHERE id = ?", (retry_ms, item_id))


def set_sent_ms(conn: Conn, item_id: str, now_ms: int) -> None:
    conn.execute("UPDATE items SET sent_ms = ?, retry_ms = NULL WHERE id = ?", (now_ms, item_id))


def add_fills(conn: Conn, fills: Sequence[Fill], now_ms: int) -> list[Fill]:
    """Insert each fill unless its execId is already known; return the new ones."""
    new = []
    for fill in fills:
        cursor = conn.execute(
            "INSERT INTO fills (exec_id, item_id, link_id, order_id, symbol, side,"
            " exec_qty, exec_price, exec_time_ms, seen_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (exec_id) DO NOTHING",
            (
                fill.exec_id,
                fill.item_id,
                fill.link_id,
                fill.order_id,
                fill.symbol,
                fill.side,
                fill.exec_qty,
                fill.exec_price,
                fill.exec_time_ms,
                now_ms,
            ),
        )
        if cursor.rowcount == 1:
            new.append(fill)
    return new


def fills(conn: Conn, item_id: str | None = None) -> list[Fill]:
    where, args = ("WHERE item_id = ?", (item_id,)) if item_id is not None else ("", ())
    rows = conn.execute(
        "SELECT exec_id, item_id, link_id, order_id, symbol, side, exec_qty, exec_price,"
        f" exec_time_ms FROM fills {where} ORDER BY exec_time_ms, exec_id",
        args,
    ).fetchall()
    return [
        Fill(
            exec_id=r["exec_id"],
            link_id=r["link_id"],
            order_id=r["order_id"],
            symbol=r["symbol"],
            side=r["side"],
            exec_qty=r["exec_qty"],
            exec_price=r["exec_price"],
            exec_time_ms=r["exec_time_ms"],
            item_id=r["item_id"],
        )
        for r in rows
    ]


def fill_counts(conn: Conn) -> dict[str, int]:
    rows = conn.execute(
        "SELECT item_id, count(*) FROM fills WHERE item_id IS NOT NULL GROUP BY item_id"
    ).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def latest_fill_ms(conn: Conn) -> int | None:
    row = conn.execute("SELECT max(exec_time_ms) FROM fills").fetchone()
    return None if row[0] is None else int(row[0])
