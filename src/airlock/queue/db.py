"""The one place that knows which engine holds the queue: SQLite or PostgreSQL.

The queue's SQL (``queue/items.py``, ``sends.py``, ...) is written once, in what both
engines share (``?`` placeholders, ``ON CONFLICT``, ``RETURNING``), against :class:`Conn`.
A :class:`Database` adapts it and owns the two things that differ:

- **The write transaction.** SQLite has one writer at a time: ``BEGIN IMMEDIATE`` takes
  the write lock at the start. PostgreSQL has many: every write transaction first locks
  the row of the audit chain's head (``audit_head``, one row). Every change writes an
  audit entry, so this is the lock the chain needs anyway to stay one linear chain; taken
  first, it also orders the nonce counters and the event numbers by commit, exactly as
  SQLite's single writer does, and no two writers can deadlock (one lock, one order).
- **The schema and its migrations** (``queue/schema.py``, ``queue/pg_schema.py``).

``location`` is a file path (SQLite, the embedded default) or a ``postgresql://`` URL.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

Engine = Literal["sqlite", "postgres"]


class Conn(Protocol):
    """What the queue's SQL needs of a connection (``sqlite3.Connection`` is one)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, parameters: Any, /) -> Any: ...


def is_postgres(location: Path | str) -> bool:
    text = str(location)
    return text.startswith(("postgresql://", "postgres://"))


class Database:
    """An open queue database: its connection, and how to write to it."""

    engine: Engine
    conn: Conn
    shown: str  # the location, safe to print (no password)

    def begin(self) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def rollback(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def now_ms(self) -> int | None:
        """The server's clock, where there is a server (None: use the store's clock)."""
        return None

    def version(self) -> int:
        raise NotImplementedError

    def migrate(self) -> int:
        """Bring the schema up to the current version; return the version before."""
        raise NotImplementedError


def open_database(location: Path | str) -> Database:
    """The queue at ``location``: a file path, or a ``postgresql://`` URL."""
    if is_postgres(location):
        from airlock.queue.pg import PostgresDatabase  # psycopg: only for a server

        return PostgresDatabase.connect(str(location))
    return SqliteDatabase.connect(Path(location))


class SqliteDatabase(Database):
    """The embedded default: one file, WAL with ``synchronous=FULL``."""

    engine: Engine = "sqlite"

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn
        self.raw = conn
        self.shown = str(path)

    @classmethod
    def connect(cls, path: Path) -> SqliteDatabase:
        from airlock.queue import schema

        return cls(path, schema.connect(path))

    def begin(self) -> None:
        self.raw.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.raw.execute("COMMIT")

    def rollback(self) -> None:
        if self.raw.in_transaction:  # not after a COMMIT that failed and ended it
            self.raw.execute("ROLLBACK")

    def close(self) -> None:
        self.raw.close()

    def version(self) -> int:
        from airlock.queue import schema

        return schema.version(self.raw)

    def migrate(self) -> int:
        from airlock.queue import schema

        return schema.migrate(self.raw, self.path)


_PLACEHOLDER = re.compile(r"\?")


def to_pyformat(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (the queue's SQL has no ``%`` and no ``?``
    inside string literals: checked by a test over every statement)."""
    return _PLACEHOLDER.sub("%s", sql)


__all__ = [
    "Conn",
    "Database",
    "Engine",
    "SqliteDatabase",
    "is_postgres",
    "open_database",
    "to_pyformat",
]
