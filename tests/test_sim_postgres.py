"""The private PostgreSQL cluster of the tests and drills (airlock.sim.postgres, and the
pg_cluster / pg_url fixtures of tests/kits/postgres.py): it runs as the postgres user when
we are root, keeps real durability, frees a dead client's locks quickly, and leaves
nothing behind."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.kits import postgres as pg_kit
from tests.kits.waiting import wait_until

from airlock.sim import postgres as pg

CHILD = Path(__file__).with_name("pg_child.py")
SLOWDOWN = 10  # every time bound below still holds on a machine this many times slower
OVERHEAD_S = 0.1  # what a release costs here beyond the setting that triggers it (< 0.05 s)

Conn = psycopg.Connection[Any]


def _make_programs(bindir: Path, programs: tuple[str, ...] = pg.PROGRAMS) -> Path:
    bindir.mkdir(parents=True)
    for name in programs:
        (bindir / name).write_text("#!/bin/sh\n")
        (bindir / name).chmod(0o755)
    return bindir


def test_bindir_comes_from_path_first_then_the_newest_debian_version(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    for version in ("9.6", "15", "16"):
        _make_programs(root / version / "bin")
    _make_programs(root / "17" / "bin", programs=("initdb", "pg_ctl"))  # no server: not it
    nowhere = str(tmp_path / "empty")
    assert pg.find_bindir(path=nowhere, root=root) == root / "16" / "bin"  # 16 > 9.6
    own = _make_programs(tmp_path / "own")
    assert pg.find_bindir(path=f"{nowhere}:{own}", root=root) == own


def test_a_missing_server_names_the_debian_package(tmp_path: Path) -> None:
    with pytest.raises(pg.PostgresNotInstalled, match="'postgresql' package"):
        pg.find_bindir(path=str(tmp_path / "empty"), root=tmp_path / "none")


def _not_installed() -> pg.PgCluster:
    raise pg.PostgresNotInstalled("PostgreSQL server not found")


def test_missing_postgres_is_a_skip_unless_required() -> None:
    with pytest.raises(pytest.skip.Exception, match="AIRLOCK_REQUIRE_POSTGRES=1"):  # noqa: SIM117
        with pg_kit.cluster_or_skip(start=_not_installed, env={}):
            pass
    required = {pg_kit.REQUIRE_ENV: "1"}
    with pytest.raises(pytest.fail.Exception, match="is set, so this is an error"):  # noqa: SIM117
        with pg_kit.cluster_or_skip(start=_not_installed, env=required):
            pass


def _setting(conn: Conn, name: str) -> str:
    row = conn.execute("SELECT current_setting(%s)", [name]).fetchone()
    assert row is not None
    return str(row[0])


def test_the_server_runs_as_the_postgres_user_with_real_durability(
    pg_cluster: pg.PgCluster,
) -> None:
    pid = pg_cluster.postmaster_pid()
    assert pid is not None
    expected_uid = pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else os.geteuid()
    assert Path(f"/proc/{pid}").stat().st_uid == expected_uid
    data = pg_cluster.data.stat()
    assert (data.st_uid, data.st_mode & 0o777) == (expected_uid, 0o700)
    with pg_cluster.connect() as conn:
        assert {name: _setting(conn, name) for name in pg.DURABILITY} == pg.DURABILITY
        assert _setting(conn, "listen_addresses") == "127.0.0.1"
        assert _setting(conn, "unix_socket_directories") == str(pg_cluster.socket_dir)
        rules = conn.execute("SELECT type, address FROM pg_hba_file_rules").fetchall()
    assert sorted(rules, key=str) == [("host", "127.0.0.1"), ("local", None)]


def test_a_test_database_takes_a_connection_and_keeps_its_rows(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:  # commits at the end of the block, then closes
        conn.execute("CREATE TABLE item (id int PRIMARY KEY, state text NOT NULL)")
        conn.execute("INSERT INTO item VALUES (%s, %s)", [1, "queued"])
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT id, state FROM item").fetchall() == [(1, "queued")]


def test_two_databases_are_independent(pg_cluster: pg.PgCluster, pg_url: str) -> None:
    other = pg_kit.fresh_name()
    other_url = pg_cluster.create_database(other)
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE item (id int)")
        with psycopg.connect(other_url, autocommit=True) as conn:
            found = conn.execute("SELECT to_regclass('item')").fetchone()
        assert found == (None,)
    finally:
        pg_cluster.drop_database(other)
    with pg_cluster.connect() as admin:
        names = admin.execute("SELECT datname FROM pg_database").fetchall()
    assert (other,) not in names


@pytest.fixture
def lease_url(pg_url: str) -> str:
    """A database with one ``lease`` row for the lock holder to lock."""
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE lease (id int PRIMARY KEY)")
        conn.execute("INSERT INTO lease VALUES (1)")
    return pg_url


@pytest.fixture
def observer(lease_url: str) -> Iterator[Conn]:
    with psycopg.connect(lease_url, autocommit=True) as conn:
        yield conn


def _locks_free(conn: Conn) -> bool:
    """Whether both locks the child took are free now (taken and let go at once)."""
    try:
        with conn.transaction():
            row = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", [1]).fetchone()
            if row != (True,):
                return False
            conn.execute("SELECT id FROM lease WHERE id = 1 FOR UPDATE NOWAIT")
    except psycopg.errors.LockNotAvailable:
        return False
    return True


def _backend_state(conn: Conn, pid: int) -> str | None:
    row = conn.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
    return None if row is None else str(row[0])


def _seconds_setting(conn: Conn, name: str) -> float:
    """A duration setting of the running server, in seconds (its unit is ms)."""
    row = conn.execute("SELECT setting::float, unit FROM pg_settings WHERE name = %s", [name])
    value, unit = row.fetchone() or (None, None)
    assert unit == "ms"
    return float(value) / 1000


@pytest.fixture
def lock_holder(lease_url: str, request: pytest.FixtureRequest) -> Iterator[tuple[Any, int]]:
    """A child holding the advisory and the row lock; yields it and its backend's pid."""
    mode: str = request.param
    child = subprocess.Popen(
        [sys.executable, str(CHILD), "locks", lease_url, mode], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        word, backend = child.stdout.readline().split()
        assert word == "locked"
        yield child, int(backend)
    finally:
        child.kill()
        child.wait()


@pytest.mark.slow
@pytest.mark.parametrize("lock_holder", ["query"], indirect=True)
def test_a_client_killed_mid_query_frees_its_locks_within_the_check_interval(
    observer: Conn, lock_holder: tuple[subprocess.Popen[str], int]
) -> None:
    child, backend = lock_holder
    wait_until(lambda: _backend_state(observer, backend) == "active", 10, "the child's query")
    bound = SLOWDOWN * (_seconds_setting(observer, "client_connection_check_interval") + OVERHEAD_S)
    assert not _locks_free(observer)
    start = time.monotonic()
    child.kill()  # without the check, the 600 s query would keep both locks to its end
    wait_until(lambda: _locks_free(observer), bound, "the locks of the killed client")
    print(f"killed mid-query: locks free after {time.monotonic() - start:.3f} s")


@pytest.mark.slow
@pytest.mark.parametrize("lock_holder", ["idle"], indirect=True)
def test_a_client_killed_in_a_transaction_frees_its_locks_at_once(
    observer: Conn, lock_holder: tuple[subprocess.Popen[str], int]
) -> None:
    child, backend = lock_holder
    assert _backend_state(observer, backend) == "idle in transaction"
    start = time.monotonic()
    child.kill()  # the kernel closes its socket: the session ends on the spot
    wait_until(lambda: _locks_free(observer), SLOWDOWN * OVERHEAD_S, "the killed client's locks")
    print(f"killed in a transaction: locks free after {time.monotonic() - start:.3f} s")


@pytest.mark.slow
@pytest.mark.parametrize("lock_holder", ["idle"], indirect=True)
def test_a_frozen_client_in_a_transaction_loses_its_locks_after_the_idle_timeout(
    observer: Conn, lock_holder: tuple[subprocess.Popen[str], int]
) -> None:
    child, _ = lock_holder
    timeout = _seconds_setting(observer, "idle_in_transaction_session_timeout")
    start = time.monotonic()
    child.send_signal(signal.SIGSTOP)  # hung: its socket stays open
    try:
        assert not _locks_free(observer)
        bound = timeout + SLOWDOWN * OVERHEAD_S
        wait_until(lambda: _locks_free(observer), bound, "the frozen client's locks")
        print(f"frozen: locks free after {time.monotonic() - start:.3f} s (timeout {timeout} s)")
    finally:
        child.send_signal(signal.SIGCONT)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (the server's backends and workers)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
def test_stop_leaves_no_directory_and_no_process() -> None:
    cluster = pg.start_cluster()
    with cluster, cluster.connect() as conn:  # a session still open at stop: fast mode ends it
        pid = cluster.postmaster_pid()
        assert pid is not None and conn.info.backend_pid in _children(pid)
        processes = [pid, *_children(pid)]
        assert cluster.reaper is not None
        processes.append(cluster.reaper.pid)
        start = time.monotonic()
        cluster.stop()
        stopped_in = time.monotonic() - start
    assert not cluster.base.exists()
    wait_until(lambda: not any(map(pg.process_alive, processes)), 5, "the server's processes")
    assert stopped_in < SLOWDOWN * 0.5  # about 0.15 s here


@pytest.mark.slow
def test_the_reaper_removes_the_cluster_of_a_killed_owner() -> None:
    child = subprocess.Popen(
        [sys.executable, str(CHILD), "cluster"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        base, pid = child.stdout.readline().split()
    finally:
        child.kill()  # no teardown runs: only the reaper can clean up now
        child.wait()
    gone = lambda: not Path(base).exists() and not pg.process_alive(int(pid))  # noqa: E731
    wait_until(gone, SLOWDOWN * 1.0, "the reaper to remove the killed owner's cluster")


@pytest.mark.slow
def test_two_clusters_started_at_once_get_two_ports() -> None:
    with ThreadPoolExecutor(2) as pool:  # like two xdist workers starting together
        clusters = list(pool.map(lambda _: pg.start_cluster(), range(2)))
    try:
        ports = {cluster.port for cluster in clusters}
        assert len(ports) == 2
        for cluster in clusters:
            with cluster.connect() as conn:
                assert conn.execute("SELECT inet_server_port()").fetchone() == (cluster.port,)
    finally:
        for cluster in clusters:
            cluster.stop()


def test_a_server_that_fails_to_start_says_why_and_leaves_nothing() -> None:
    parent = Path(tempfile.mkdtemp(prefix="airlock-pg-test-"))
    parent.chmod(0o711)  # the postgres user must reach the cluster inside
    try:
        with pytest.raises(pg.PostgresError, match=r"(?s)server log.*shared_buffers"):
            pg.start_cluster(parent=parent, settings={"shared_buffers": "plenty"})
        assert list(parent.iterdir()) == []
    finally:
        shutil.rmtree(parent)
