"""One queue, two engines: the ``queue_location`` fixture and a raw second connection.

A test module that sets ``BACKENDS = ("sqlite", "postgres")`` has every test that uses the
``store`` or ``queue_location`` fixture run once per engine (``pytest_generate_tests``
below: this module is a plugin of tests/conftest.py); everywhere else they are SQLite, the
embedded default. The PostgreSQL runs use the worker's private cluster
(tests/kits/postgres.py), one fresh database per test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airlock.queue.db import Conn, is_postgres
from airlock.queue.store import Store

BOTH = ("sqlite", "postgres")


@pytest.fixture
def queue_backend(request: pytest.FixtureRequest) -> str:
    """``sqlite`` unless the module asks for both engines."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def queue_location(queue_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    """Where the test's queue lives: a file, or a fresh PostgreSQL database's URL."""
    if queue_backend == "postgres":
        return request.getfixturevalue("pg_url")
    return tmp_path / "queue.db"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Both engines for the tests of a module that sets ``BACKENDS`` (this module is a
    plugin of tests/conftest.py)."""
    backends = getattr(metafunc.module, "BACKENDS", None)
    if backends and "queue_backend" in metafunc.fixturenames:
        metafunc.parametrize("queue_backend", backends, indirect=True)


class RawDb:
    """A second, plain connection to a store's database: what an attacker with the file
    (or with the database's credentials) sees. ``?`` placeholders on both engines."""

    def __init__(self, location: Path | str) -> None:
        self.postgres = is_postgres(location)
        if self.postgres:
            from airlock.queue.pg import PostgresDatabase

            self._db: Any = PostgresDatabase.connect(str(location))
            self._conn: Conn = self._db.conn
        else:
            import sqlite3

            raw = sqlite3.connect(location, isolation_level=None)
            raw.row_factory = sqlite3.Row
            self._db, self._conn = raw, raw

    def execute(self, sql: str, parameters: Any = ()) -> Any:
        return self._conn.execute(sql, parameters)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RawDb:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def raw_db(store: Store) -> RawDb:
    return RawDb(store.location)


def stored_bytes(store: Store, request: pytest.FixtureRequest) -> bytes:
    """Every byte the engine keeps of ``store`` on disk: the SQLite file and its WAL, or
    (after a ``CHECKPOINT``) the PostgreSQL database's files and the cluster's WAL."""
    if not is_postgres(store.location):
        files = [store.path, Path(f"{store.path}-wal")]
        return b"".join(p.read_bytes() for p in files if p.exists())
    cluster = request.getfixturevalue("pg_cluster")
    with RawDb(store.location) as conn:
        conn.execute("CHECKPOINT")
        oid = conn.execute(
            "SELECT oid FROM pg_database WHERE datname = current_database()"
        ).fetchone()[0]
    folders = [cluster.data / "base" / str(oid), cluster.data / "pg_wal"]
    return b"".join(p.read_bytes() for f in folders for p in sorted(f.rglob("*")) if p.is_file())
