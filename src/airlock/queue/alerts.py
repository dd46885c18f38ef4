"""The queue's record of alerts: one row per alert key, counted, de-duplicated, resolvable.

Plain SQL on the caller's connection and transaction. Why in the queue: an alert must
survive a restart (an operator reads `airlock status` after the service died), and the
de-duplication window must hold across processes, or a crash loop would page every time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airlock.encoding.records import Row
from airlock.queue.db import Conn


@dataclass(frozen=True)
class AlertRecord:
    key: str
    message: str
    severity: str
    first_ms: int
    last_ms: int
    count: int
    sent_ms: int | None
    resolved_ms: int | None

    @classmethod
    def from_row(cls, row: Row) -> AlertRecord:
        return cls(*(row[k] for k in _COLUMNS))

    def as_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _COLUMNS}


_COLUMNS = ("key", "message", "severity", "first_ms", "last_ms", "count", "sent_ms", "resolved_ms")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM alerts"


def get(conn: Conn, key: str) -> AlertRecord | None:
    row = conn.execute(f"{_SELECT} WHERE key = ?", (key,)).fetchone()
    return None if row is None else AlertRecord.from_row(row)


def note(
    conn: Conn, key: str, message: str, severity: str, now_ms: int, dedup_ms: int
) -> tuple[AlertRecord, bool]:
    """Count one occurrence; return the record and whether to deliver it now (first time,
    raised again after it was resolved, or the de-duplication window has passed)."""
    old = get(conn, key)
    deliver = (
        old is None
        or old.resolved_ms is not None
        or old.sent_ms is None
        or now_ms - old.sent_ms >= dedup_ms
    )
    if old is None:
        conn.execute(
            "INSERT INTO alerts (key, message, severity, first_ms, last_ms, count, sent_ms)"
            " VALUES (?, ?, ?, ?, ?, 1, ?)",
            (key, message, severity, now_ms, now_ms, now_ms),
        )
    else:
        first = now_ms if old.resolved_ms is not None else old.first_ms
        conn.execute(
            "UPDATE alerts SET message = ?, severity = ?, first_ms = ?, last_ms = ?,"
            " count = count + 1, sent_ms = CASE WHEN ? THEN ? ELSE sent_ms END,"
            " resolved_ms = NULL WHERE key = ?",
            (message, severity, first, now_ms, deliver, now_ms, key),
        )
    record = get(conn, key)
    assert record is not None
    return record, deliver


def resolve(conn: Conn, key: str, now_ms: int) -> bool:
    cursor = conn.execute(
        "UPDATE alerts SET resolved_ms = ? WHERE key = ? AND resolved_ms IS NULL", (now_ms, key)
    )
    return bool(cursor.rowcount == 1)


def open_alerts(conn: Conn) -> list[AlertRecord]:
    rows = conn.execute(f"{_SELECT} WHERE resolved_ms IS NULL ORDER BY last_ms DESC").fetchall()
    return [AlertRecord.from_row(r) for r in rows]


def set_meta(conn: Conn, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def get_meta(conn: Conn, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])
