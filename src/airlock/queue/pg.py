"""The queue on a PostgreSQL server, through psycopg 3.

Why psycopg 3 (and not asyncpg): the store is synchronous and shared between threads
(the CLI, the library, the service's worker threads), and psycopg has a synchronous API
with libpq's connection settings; asyncpg is asyncio only. ``psycopg[binary]`` brings its
own libpq, so nothing more comes from apt.

One connection, in autocommit mode (a read never leaves a transaction open holding
locks), used under the store's lock like SQLite's. A write transaction is ``BEGIN``, then
the audit chain's head row locked ``FOR UPDATE`` (see :mod:`airlock.queue.db`), then the
change, then ``COMMIT``. The connection asks the server to notice a dead client quickly
(keepalives, ``client_connection_check_interval``, a bound on idle transactions), so that
a killed broadcaster's locks go within seconds, not the kernel's two hours.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import RowMaker

from airlock.queue.db import Database, Engine, to_pyformat
from airlock.queue.errors import StoreUnavailable
from airlock.redact import redact_url

# Per connection: the server drops a dead or frozen client's session (and its locks).
SESSION_OPTIONS = (
    "-c idle_in_transaction_session_timeout=5s -c client_connection_check_interval=250ms"
)
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
    "connect_timeout": 10,
}


class Row:
    """A result row read by position or by column name, as ``sqlite3.Row`` is."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values = tuple(values)
        self._index = index

    def __getitem__(self, key: int | str) -> Any:
        return self._values[self._index[key] if isinstance(key, str) else key]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def keys(self) -> list[str]:
        return list(self._index)


def _rows(cursor: psycopg.Cursor[Any]) -> RowMaker[Row]:
    index = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: Row(values, index)


class PgConn:
    """The queue's SQL on psycopg: ``?`` placeholders, rows by name or position, and a
    lost server as :class:`StoreUnavailable` (a new connection is made for the next
    transaction or read: a broadcaster outlives a database restart or a cut path)."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Row]:
        query, values = to_pyformat(sql), tuple(parameters) or None
        try:
            return self._db.usable().execute(query, values)
        except psycopg.OperationalError as exc:
            if not self._db.retryable():
                raise self._db.lost(exc) from exc
        try:  # a read outside a transaction, on a connection found dead: once more, anew
            return self._db.usable().execute(query, values)
        except psycopg.OperationalError as exc:
            raise self._db.lost(exc) from exc

    def executemany(self, sql: str, parameters: Any, /) -> psycopg.Cursor[Row]:
        cursor = self._db.usable().cursor()
        try:
            cursor.executemany(to_pyformat(sql), [tuple(p) for p in parameters])
        except psycopg.OperationalError as exc:
            raise self._db.lost(exc) from exc
        return cursor


class PostgresDatabase(Database):
    """A queue in a PostgreSQL database, shared by several broadcasters."""

    engine: Engine = "postgres"

    def __init__(self, url: str, raw: psycopg.Connection[Row]) -> None:
        self.url = url
        self.raw = raw
        self.conn = PgConn(self)
        self.shown = redact_url(url)
        self._in_transaction = False

    @classmethod
    def connect(cls, url: str) -> PostgresDatabase:
        return cls(url, _connect(url))

    def usable(self) -> psycopg.Connection[Row]:
        """The connection; a new one if the last was lost, unless a transaction was open
        on it (that transaction is gone with it: the caller's rollback says so)."""
        if self.raw.closed or self.raw.broken:
            if self._in_transaction:
                raise StoreUnavailable(f"lost the queue at {self.shown} inside a transaction")
            self.raw = _connect(self.url)
        return self.raw

    def lost(self, exc: psycopg.Error) -> StoreUnavailable:
        return StoreUnavailable(f"lost the queue at {self.shown}: {exc}")

    def retryable(self) -> bool:
        """A statement failed on a connection now known dead, outside a transaction:
        nothing of the caller's was done, so it may run again on a new connection (how a
        server restart or a cut path is noticed: by the first statement after it)."""
        return not self._in_transaction and (self.raw.closed or self.raw.broken)

    def begin(self) -> None:
        try:
            self._begin()
        except psycopg.OperationalError as exc:
            self._in_transaction = False
            if not self.retryable():
                raise self.lost(exc) from exc
        else:
            return
        try:  # nothing was written yet: begin again on a new connection
            self._begin()
        except psycopg.OperationalError as exc:
            self._in_transaction = False
            raise self.lost(exc) from exc

    def _begin(self) -> None:
        raw = self.usable()
        # READ COMMITTED: each statement sees every commit made before it, so after the
        # head lock, every earlier writer's changes.
        raw.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        self._in_transaction = True
        raw.execute("SELECT id FROM audit_head WHERE id = 1 FOR UPDATE")

    def commit(self) -> None:
        try:
            self.raw.execute("COMMIT")
        except psycopg.OperationalError as exc:
            # The server may or may not have committed: the caller cannot know, exactly
            # as with a crash; the state guards make the retry safe.
            raise self.lost(exc) from exc
        finally:
            self._in_transaction = False

    def rollback(self) -> None:
        self._in_transaction = False
        if not (self.raw.closed or self.raw.broken):
            self.raw.execute("ROLLBACK")

    def close(self) -> None:
        self.raw.close()

    def now_ms(self) -> int:
        """The server's wall clock (``clock_timestamp()``: not frozen at the transaction's
        start, as ``now()`` is), in ms: the one clock every broadcaster's leases use."""
        row = self.conn.execute(
            "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint"
        ).fetchone()
        assert row is not None
        return int(row[0])

    def version(self) -> int:
        from airlock.queue import pg_schema

        return pg_schema.version(self.raw)

    def migrate(self) -> int:
        from airlock.queue import pg_schema

        return pg_schema.migrate(self.raw, self.shown)


def _connect(url: str) -> psycopg.Connection[Row]:
    try:
        conninfo = make_conninfo(
            url, options=SESSION_OPTIONS, application_name="airlock", **KEEPALIVES
        )
        return psycopg.connect(conninfo, autocommit=True, row_factory=_rows)
    except psycopg.Error as exc:
        raise StoreUnavailable(f"cannot reach the queue at {redact_url(url)}: {exc}") from exc
