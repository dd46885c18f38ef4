"""Moving up: an SQLite queue copied into an empty PostgreSQL database, whole.

Every row of every table is copied as it is stored: the ciphertexts keep their table,
row id, column and data key id, which are their associated data (queue/envelope.py), so
they decrypt on the server with the same KEK; the audit log keeps its entries, leaves,
checkpoints and its origin (``meta.audit_origin``), so an export taken after the move
verifies against the same public key, the old checkpoints included.

The copy is one PostgreSQL transaction (all or nothing) read from one SQLite read
transaction (one consistent snapshot, even while a CLI writes). The event triggers are
off while the copied events go in (they would number every copied item a second time),
and the sequences are moved past the copied ids. Then each table is compared, row for
row, by a digest of its rows in key order on both sides.

Refused: a target that is not empty (a version, or any table), a source from an older
or newer airlock than this one (``airlock db migrate`` first).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airlock.queue import schema
from airlock.queue.errors import QueueError
from airlock.queue.pg import PostgresDatabase

# In the order their foreign keys need.
TABLES = (
    "data_keys",
    "items",
    "variants",
    "nonces",
    "transitions",
    "attempts",
    "venue_orders",
    "fills",
    "alerts",
    "meta",
    "audit_entries",
    "audit_checkpoints",
    "events",
    "leases",
    "positions",
    "balances",
)
TRIGGERS = {
    "items": "events_created",
    "transitions": "events_state",
    "fills": "events_fill",
}
IDENTITY = ("events", "audit_checkpoints")  # ids a sequence hands out on PostgreSQL
BATCH = 2_000

Progress = Callable[[str, int, int], None]
"""``(table, rows copied so far, rows in the table)``."""


class CopyRefused(QueueError):
    """The copy would lose or overwrite something: nothing was written."""


@dataclass(frozen=True)
class TableCopy:
    table: str
    rows: int
    digest: str  # SHA-256 of the rows in key order, the same on both sides


@dataclass(frozen=True)
class CopyResult:
    source: str
    target: str
    version: int
    tables: tuple[TableCopy, ...]

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)


def copy_to_postgres(source: Path, target: str, progress: Progress | None = None) -> CopyResult:
    """Copy the SQLite queue at ``source`` into the empty database at ``target``."""
    src = schema.connect(source)
    try:
        version = schema.version(src)
        if version != schema.CURRENT:
            raise CopyRefused(
                f"{source} has schema version {version}, this airlock {schema.CURRENT}: "
                "run `airlock db migrate` on it first (with the same airlock as the copy)"
            )
        dst = PostgresDatabase.connect(target)
        try:
            _refuse_unless_empty(dst)
            dst.migrate()
            src.execute("BEGIN")  # one snapshot of the source for the whole copy
            try:
                copied = _copy_all(src, dst, progress)
            finally:
                src.execute("ROLLBACK")
        finally:
            dst.close()
    finally:
        src.close()
    return CopyResult(str(source), dst.shown, version, copied)


def _refuse_unless_empty(dst: PostgresDatabase) -> None:
    version = dst.version()
    if version != 0:
        raise CopyRefused(
            f"{dst.shown} already holds a queue (schema version {version}): "
            "copy into a new, empty database"
        )
    tables = dst.conn.execute(
        "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
    ).fetchone()[0]
    if tables:
        raise CopyRefused(f"{dst.shown} is not empty ({tables} tables): use a new database")


def _copy_all(
    src: sqlite3.Connection, dst: PostgresDatabase, progress: Progress | None
) -> tuple[TableCopy, ...]:
    raw = dst.raw
    copied = []
    with raw.transaction():
        for table, trigger in TRIGGERS.items():
            raw.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
        for table in TABLES:
            copied.append(_copy_table(src, dst, table, progress))
        for table, trigger in TRIGGERS.items():
            raw.execute(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}")
        for table in IDENTITY:
            raw.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
            )
        for table in TABLES:
            there = _digest(dst.conn, table, _columns(src, table), _key(src, table))
            here = next(c for c in copied if c.table == table)
            if there != (here.rows, here.digest):
                raise CopyRefused(
                    f"table {table}: {there[0]} rows on the server after the copy, "
                    f"{here.rows} in the file, or their contents differ; nothing was written"
                )
    return tuple(copied)


def _copy_table(
    src: sqlite3.Connection, dst: PostgresDatabase, table: str, progress: Progress | None
) -> TableCopy:
    columns = _columns(src, table)
    key = _key(src, table)
    total = src.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    names = ", ".join(columns)
    insert = f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' for _ in columns)})"
    if table == "meta":  # the new database made its own origin: the source's wins
        insert += " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    digest = hashlib.sha256()
    done = 0
    cursor = src.execute(f"SELECT {names} FROM {table} ORDER BY {key}")
    while rows := cursor.fetchmany(BATCH):
        values = [tuple(row) for row in rows]
        for row in values:
            digest.update(_row_bytes(row))
        dst.conn.executemany(insert, values)
        done += len(values)
        if progress is not None:
            progress(table, done, total)
    if progress is not None and total == 0:
        progress(table, 0, 0)
    return TableCopy(table, done, digest.hexdigest())


def _columns(src: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in src.execute(f"PRAGMA table_info({table})")]


def _key(src: sqlite3.Connection, table: str) -> str:
    """The table's primary key columns, in key order (every column where it has none)."""
    info = list(src.execute(f"PRAGMA table_info({table})"))
    pk = sorted((r[5], r[1]) for r in info if r[5])
    return ", ".join(name for _, name in pk) if pk else ", ".join(r[1] for r in info)


def _digest(conn: Any, table: str, columns: list[str], key: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    rows = 0
    for row in conn.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {key}"):
        digest.update(_row_bytes(tuple(row)))
        rows += 1
    return rows, digest.hexdigest()


def _row_bytes(row: tuple[Any, ...]) -> bytes:
    """A row as bytes that are the same for the same values on both engines."""
    return repr(tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)).encode() + b"\n"


__all__ = ["CopyRefused", "CopyResult", "TableCopy", "copy_to_postgres"]
