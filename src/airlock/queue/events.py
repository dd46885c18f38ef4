"""The event stream's storage: every item's creation, state change and fill, numbered.

Rows are written by triggers on ``items``, ``transitions`` and ``fills`` (schema 7), in the
same transaction as the change, so no code path that moves an item can forget its event
and none is written for a change that rolled back. Event ids grow in commit order: SQLite
has one writer at a time, so a reader that has seen event N never later finds a smaller id
appear. A client that remembers the last id it handled gets every later event exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from airlock.encoding.records import Row
from airlock.queue.db import Conn
from airlock.queue.venue import Fill

EventType = Literal["item.created", "item.state", "item.fill"]


@dataclass(frozen=True)
class EventRow:
    id: int
    type: EventType
    item_id: str
    at_ms: int
    from_state: str | None = None
    to_state: str | None = None
    reason: str | None = None
    fill: Fill | None = None


_SELECT = (
    "SELECT e.id, e.type, e.item_id, e.at_ms, e.from_state, e.to_state, e.reason,"
    " f.exec_id, f.link_id, f.order_id, f.symbol, f.side, f.exec_qty, f.exec_price,"
    " f.exec_time_ms FROM events e LEFT JOIN fills f ON f.exec_id = e.exec_id"
)


def after(conn: Conn, event_id: int, limit: int, item_id: str | None = None) -> list[EventRow]:
    """Events with an id above ``event_id``, oldest first, at most ``limit``."""
    sql = _SELECT + " WHERE e.id > ?"
    params: list[int | str] = [event_id]
    if item_id is not None:
        sql += " AND e.item_id = ?"
        params.append(item_id)
    rows = conn.execute(sql + " ORDER BY e.id LIMIT ?", [*params, limit]).fetchall()
    return [_event(r) for r in rows]


def last_id(conn: Conn) -> int:
    return int(conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])


def _event(row: Row) -> EventRow:
    fill = None
    if row["exec_id"] is not None:
        fill = Fill(
            exec_id=row["exec_id"],
            link_id=row["link_id"],
            order_id=row["order_id"],
            symbol=row["symbol"],
            side=row["side"],
            exec_qty=row["exec_qty"],
            exec_price=row["exec_price"],
            exec_time_ms=row["exec_time_ms"],
            item_id=row["item_id"],
        )
    return EventRow(
        id=row["id"],
        type=row["type"],
        item_id=row["item_id"],
        at_ms=row["at_ms"],
        from_state=row["from_state"],
        to_state=row["to_state"],
        reason=row["reason"],
        fill=fill,
    )
