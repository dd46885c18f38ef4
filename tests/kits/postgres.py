"""The private PostgreSQL of the tests: the ``pg_cluster`` and ``pg_url`` fixtures
(registered in tests/conftest.py) and what they are made of.

``pg_cluster`` is one cluster per test process, so one per pytest-xdist worker (each its
own port and directory), started on first use and stopped at the end of the session;
``pg_url`` gives each test a fresh, empty database on it (about 30 ms) and drops it after
the test, connections and all. A test needing a migrated schema can migrate one database
once and copy it with ``pg_cluster.create_database(name, template=...)``.

PostgreSQL missing is a skip, naming the package, unless ``AIRLOCK_REQUIRE_POSTGRES`` is
set (make test sets it: there the Makefile installed PostgreSQL, so missing is a failure).
Cleanup holds on a failure and on Ctrl-C (fixture teardown stops the cluster), and on
SIGKILL of the worker (the cluster's reaper process removes it).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator, Mapping

import pytest

from airlock.sim.postgres import PgCluster, PostgresNotInstalled, start_cluster

REQUIRE_ENV = "AIRLOCK_REQUIRE_POSTGRES"


def required(env: Mapping[str, str] = os.environ) -> bool:
    """Whether a missing PostgreSQL is an error here (any value but empty or 0)."""
    return env.get(REQUIRE_ENV, "") not in ("", "0")


@contextlib.contextmanager
def cluster_or_skip(
    start: Callable[[], PgCluster] = start_cluster, env: Mapping[str, str] = os.environ
) -> Iterator[PgCluster]:
    """A running cluster, stopped when the block ends; a skip (or, when required, a
    failure) if PostgreSQL is not installed. Any other start failure is an error."""
    try:
        cluster = start()
    except PostgresNotInstalled as exc:
        if required(env):
            pytest.fail(f"{exc} ({REQUIRE_ENV} is set, so this is an error)", pytrace=False)
        pytest.skip(f"{exc} (set {REQUIRE_ENV}=1 to make this an error)")
    with cluster:
        yield cluster


def fresh_name() -> str:
    """A database name no other test of this worker uses."""
    return f"test_{secrets.token_hex(6)}"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """This worker's private PostgreSQL cluster (see the module docstring)."""
    with cluster_or_skip() as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    """The URL of a fresh, empty database, dropped after the test."""
    name = fresh_name()
    url = pg_cluster.create_database(name)
    try:
        yield url
    finally:
        pg_cluster.drop_database(name)
