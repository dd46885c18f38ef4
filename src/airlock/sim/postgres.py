"""Start a private, throw-away PostgreSQL cluster on a free loopback port, for the tests and
the drills (what :mod:`airlock.sim.anvil` is for the chain).

Each cluster lives in a fresh temporary directory (``data/``, ``sock/``, ``server.log``) and
is gone, directory and processes, after :meth:`PgCluster.stop`; a reaper process removes it
too if the owner dies without stopping it (SIGKILL, a crashed pytest-xdist worker).

The server programs come from ``PATH``, else from Debian's ``/usr/lib/postgresql/N/bin``
(newest N), which stock Debian keeps off ``PATH``; ``scripts/system-deps.sh postgresql``
installs Debian's ``postgresql`` package when they are missing. PostgreSQL refuses to run
as root, so as root the programs run as the ``postgres`` system user that package creates
(``runuser -u postgres --``) in a directory that user owns with mode 0700; any other user
runs them as itself.

The cluster keeps PostgreSQL's real durability: ``fsync``, ``synchronous_commit`` and
``full_page_writes`` stay on (:data:`DURABILITY`). The queue promises that an acknowledged
enqueue survives a crash; a test, a drill or a benchmark run with them off checks and times
a different database (no commit flush), so benchmarks must keep them on too. The one
shortcut is ``initdb --no-sync``: it skips flushing the fresh cluster's files once, at creation,
which a throw-away cluster never needs after a crash of the machine.

:data:`LIVENESS` makes a dead client's session, and every lock it holds (row locks,
advisory locks), go away quickly; why each value, next to it below.

A fresh database costs ~30-100 ms (``CREATE DATABASE``, PostgreSQL 15's default WAL_LOG
strategy: FILE_COPY took twice as long here, as it checkpoints) and its ``DROP`` ~40-80 ms
(a DROP always forces a checkpoint); initdb ~0.65 s, start ~0.12 s, stop ~0.15-0.8 s (fast
shutdown writes a checkpoint, real fsyncs included).

Driver: psycopg 3, not asyncpg. The queue store is synchronous and shared between threads
(the broadcaster's workers, the API's handlers); psycopg has a synchronous API (and an
async one, should a caller need it) with libpq's connection options (keepalives,
``options=-c ...``), while asyncpg is async only and would need an event loop thread
behind every store call. ``psycopg[binary]`` bundles libpq, so nothing more is needed from
apt. It is imported on first use, so importing this module (tests/conftest.py does, on
every run) costs nothing and works before the driver is installed.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airlock.errors import AirlockError

if TYPE_CHECKING:
    import psycopg

PACKAGE = "postgresql"  # Debian's package: the newest server version plus the postgres user
SYSTEM_USER = "postgres"  # the OS user the package creates; runs the server when we are root
SUPERUSER = "postgres"  # the database role initdb creates (-U); trusted on loopback
DEBIAN_ROOT = Path("/usr/lib/postgresql")
PROGRAMS = ("initdb", "pg_ctl", "postgres")

START_TIMEOUT = 30  # s: pg_ctl -w -t; a cold start takes well under a second here
STOP_TIMEOUT = 10  # s: fast shutdown, before falling back to immediate, then SIGKILL
CONNECT_TIMEOUT = 10  # s: libpq connect_timeout of the admin connections
BIND_ATTEMPTS = 5  # the free port found may be taken before the server binds it
LOG_TAIL_LINES = 30

# The real commit semantics (see the module docstring): written out so nobody's
# postgresql.conf.sample or ~/.psqlrc habit can turn them off unnoticed.
DURABILITY: dict[str, str] = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
}

# How fast a dead client stops holding locks (facts-postgres.md, "Session end"):
# - killed while idle: the kernel closes its socket and the session ends at once;
# - killed mid-query: by default the query runs to its end holding its locks; checking the
#   socket every 250 ms (one poll() per running query) frees them within a quarter second;
# - frozen (SIGSTOP, a hung process) inside a transaction: ended after 5 s idle. The queue's
#   transactions are milliseconds of SQL and HSM calls, so 5 s is far from any real one,
#   and close to the 5 s failover target of issue 16. (A client frozen *outside* a
#   transaction keeps its session locks until idle_session_timeout, which stays off: it
#   would also end a pool's healthy idle connections. Prefer transaction-level locks.)
# - peer host gone without a FIN (TCP only): keepalive probes after 5 s idle, every 2 s,
#   3 misses: ended after ~11 s instead of Debian's 2 h 11 min; unacknowledged sends give
#   up after 10 s.
LIVENESS: dict[str, str] = {
    "client_connection_check_interval": "250ms",
    "idle_in_transaction_session_timeout": "5s",
    "tcp_keepalives_idle": "5s",
    "tcp_keepalives_interval": "2s",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "10s",
}

# The rest: what a private, reproducible cluster needs; none changes what a commit means.
SERVER: dict[str, str] = {
    "listen_addresses": "127.0.0.1",  # loopback only, no IPv6 (pg_hba has no ::1 line)
    "lc_messages": "C",  # English log lines: start_cluster reads "could not bind"
    "timezone": "UTC",  # now() prints the same on every machine
    "jit": "off",  # no LLVM compile pauses on a test's first large query
}

# Trust, but only on the private socket directory and on 127.0.0.1.
PG_HBA = """\
# TYPE  DATABASE  USER  ADDRESS       METHOD   (written by airlock.sim.postgres)
local   all       all                 trust
host    all       all   127.0.0.1/32  trust
"""

Completed = subprocess.CompletedProcess[str]

_BIND_FAILED = re.compile(r"could not bind|could not create any TCP/IP sockets")


class PostgresError(AirlockError):
    """The test cluster did not start, stop or answer."""


class PostgresNotInstalled(PostgresError):
    """The PostgreSQL server programs (or, as root, the postgres user) are missing."""


def find_bindir(path: str | None = None, root: Path = DEBIAN_ROOT) -> Path:
    """The directory holding initdb, pg_ctl and postgres: from ``PATH`` first (a machine
    that put a PostgreSQL there chose it), else Debian's newest ``root/N/bin``."""
    on_path = shutil.which("pg_ctl", path=path)
    candidates = [Path(on_path).resolve().parent] if on_path else []
    candidates += sorted(root.glob("*/bin"), key=_version_key, reverse=True)
    for candidate in candidates:
        if all(os.access(candidate / program, os.X_OK) for program in PROGRAMS):
            return candidate
    raise PostgresNotInstalled(
        f"PostgreSQL server not found (initdb, pg_ctl, postgres on PATH or in {root}/*/bin): "
        f"install Debian's '{PACKAGE}' package (scripts/system-deps.sh {PACKAGE} does)"
    )


def _version_key(bindir: Path) -> tuple[int, ...]:
    """``/usr/lib/postgresql/15/bin`` -> (15,): numeric, so 16 sorts above 9.6."""
    parts = bindir.parent.name.split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else (-1,)


def free_port() -> int:
    """A loopback port free a moment ago. Unlike anvil, postgres cannot bind port 0 and say
    which it got, so another process may take it first: start_cluster retries."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class RunAs:
    """Who runs the server programs: ourselves, or the postgres user when we are root."""

    prefix: tuple[str, ...]
    uid: int
    gid: int

    @classmethod
    def detect(cls) -> RunAs:
        if os.geteuid() != 0:
            return cls((), os.geteuid(), os.getegid())
        try:
            user = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise PostgresNotInstalled(
                f"running as root, and PostgreSQL refuses root: it runs as the "
                f"'{SYSTEM_USER}' user, which does not exist. Install Debian's '{PACKAGE}' "
                f"package (it creates that user)"
            ) from None
        runuser = shutil.which("runuser")
        if runuser is None:
            raise PostgresError("running as root and runuser (util-linux) is not installed")
        return cls((runuser, "-u", SYSTEM_USER, "--"), user.pw_uid, user.pw_gid)

    def run(self, argv: Sequence[str | Path], cwd: Path, timeout: float) -> Completed:
        """Run one server program as this user, in ``cwd`` (ours may be unreadable to it)."""
        command = [*self.prefix, *map(str, argv)]
        env = _program_env()
        try:
            return subprocess.run(
                command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            program = Path(argv[0]).name
            raise PostgresError(f"{program} did not finish within {timeout} s") from exc


def _program_env() -> dict[str, str]:
    """Our environment without PG* variables (a PGPORT or PGDATA of the developer's must not
    leak in), in the C locale so messages are English."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C")
    return env


@dataclass
class PgCluster:
    """A running private cluster; use as a context manager so it always goes away."""

    base: Path
    port: int
    bindir: Path
    run_as: RunAs
    reaper: subprocess.Popen[bytes] | None = None
    stopped: bool = False

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base / "sock"

    @property
    def log(self) -> Path:
        return self.base / "server.log"

    def url(self, dbname: str = "postgres") -> str:
        """``postgresql://postgres@127.0.0.1:PORT/DBNAME``: trusted, no password."""
        quoted = urllib.parse.quote(dbname, safe="")
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{quoted}"

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection[Any]:
        """A psycopg connection to ``dbname`` (autocommit unless told otherwise)."""
        import psycopg

        kwargs.setdefault("autocommit", True)
        kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT)
        return psycopg.connect(self.url(dbname), **kwargs)

    def create_database(self, name: str, template: str = "template1") -> str:
        """Create an empty database (a copy of ``template``) and return its URL.

        A test wanting a migrated schema can migrate one database once and pass its name as
        ``template`` (nobody may be connected to it meanwhile): copying a schema of 20
        tables costs about what an empty database does, far less than migrating again.
        """
        from psycopg import sql

        statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)
        )
        with self.connect() as admin:
            admin.execute(statement)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists, ending any session still connected to it (FORCE): a
        test that leaked a connection must not fail the next one's cleanup."""
        from psycopg import sql

        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        with self.connect() as admin:
            admin.execute(statement)

    def postmaster_pid(self) -> int | None:
        """The server's process id, from its pid file (None once it has stopped)."""
        return _postmaster_pid(self.data)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return _tail(self.log, 0, lines)

    def stop(self) -> None:
        """Fast shutdown (sessions aborted, bounded wait), then the directory is removed.
        Safe to call twice."""
        if self.stopped:
            return
        self.stopped = True
        try:
            _shutdown(self.bindir / "pg_ctl", self.data, self.run_as)
            shutil.rmtree(self.base, ignore_errors=True)
        finally:
            _release_reaper(self.reaper)

    def __enter__(self) -> PgCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_cluster(
    parent: Path | None = None, settings: Mapping[str, str] | None = None
) -> PgCluster:
    """initdb a fresh cluster under ``parent`` (default: the system temp dir; as root the
    postgres user must be able to reach it) and start it, waiting (bounded) until it is
    ready. ``settings`` override or extend the postgresql.conf settings above."""
    bindir = find_bindir()
    run_as = RunAs.detect()
    base = Path(tempfile.mkdtemp(prefix="airlock-pg-", dir=parent))  # mode 0700
    cluster = PgCluster(base, 0, bindir, run_as)
    try:
        os.chown(base, run_as.uid, run_as.gid)
        cluster.reaper = _start_reaper(cluster)
        (base / "sock").mkdir(mode=0o700)
        os.chown(base / "sock", run_as.uid, run_as.gid)
        _initdb(cluster)
        _configure(cluster, {**DURABILITY, **LIVENESS, **SERVER, **(settings or {})})
        cluster.port = _start_server(cluster)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _initdb(cluster: PgCluster) -> None:
    argv: list[str | Path] = [
        cluster.bindir / "initdb",
        "-D",
        cluster.data,
        "-U",
        SUPERUSER,
        "-A",
        "trust",
    ]
    argv += ["-E", "UTF8", "--locale=C", "--no-sync"]
    result = cluster.run_as.run(argv, cwd=cluster.base, timeout=120)
    if result.returncode != 0:
        raise PostgresError(
            f"initdb failed in {cluster.base} (as root, the '{SYSTEM_USER}' user must be able "
            f"to reach it): {(result.stderr or result.stdout).strip()}"
        )


def _configure(cluster: PgCluster, settings: Mapping[str, str]) -> None:
    """Append our settings to postgresql.conf (later lines win) and replace pg_hba.conf;
    the files keep the owner initdb gave them."""
    lines = ["", "# airlock.sim.postgres: a private test cluster"]
    lines.append(f"unix_socket_directories = {_quote(str(cluster.socket_dir))}")
    lines += [f"{name} = {_quote(value)}" for name, value in settings.items()]
    with (cluster.data / "postgresql.conf").open("a") as conf:
        conf.write("\n".join(lines) + "\n")
    (cluster.data / "pg_hba.conf").write_text(PG_HBA)


def _quote(value: str) -> str:
    """A postgresql.conf value: any value may be single-quoted, quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def _start_server(cluster: PgCluster) -> int:
    """Start on a free port; retry on a new one when another process took it first."""
    pg_ctl = cluster.bindir / "pg_ctl"
    for _ in range(BIND_ATTEMPTS):
        port = free_port()
        offset = cluster.log.stat().st_size if cluster.log.exists() else 0
        argv: list[str | Path] = [pg_ctl, "start", "-D", cluster.data, "-l", cluster.log, "-w"]
        argv += ["-t", str(START_TIMEOUT), "-o", f"-p {port}"]
        result = cluster.run_as.run(argv, cwd=cluster.base, timeout=START_TIMEOUT + 10)
        if result.returncode == 0:
            return port
        tail = _tail(cluster.log, offset, LOG_TAIL_LINES)
        if not _BIND_FAILED.search(tail):
            raise PostgresError(
                f"PostgreSQL did not start: {result.stderr.strip()}\n--- server log ---\n{tail}"
            )
    raise PostgresError(f"PostgreSQL found its port taken {BIND_ATTEMPTS} times in a row")


def _tail(log: Path, offset: int, lines: int) -> str:
    try:
        with log.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no server log)"
    return "\n".join(text.splitlines()[-lines:])


def _postmaster_pid(data: Path) -> int | None:
    try:
        first = (data / "postmaster.pid").read_text().split("\n", 1)[0]
    except (FileNotFoundError, NotADirectoryError):
        return None
    return int(first) if first.strip().isdigit() else None


def _shutdown(pg_ctl: Path, data: Path, run_as: RunAs) -> None:
    """Fast, then immediate (bounded waits), then SIGKILL: the server is gone on return."""
    for mode, timeout in (("fast", STOP_TIMEOUT), ("immediate", 5)):
        if _postmaster_pid(data) is None:
            return
        argv: list[str | Path] = [pg_ctl, "stop", "-D", data, "-m", mode, "-w", "-t", str(timeout)]
        try:
            if run_as.run(argv, cwd=data.parent, timeout=timeout + 5).returncode == 0:
                return
        except PostgresError:
            pass
    pid = _postmaster_pid(data)
    if pid is not None:
        _kill_and_wait(pid)


def _kill_and_wait(pid: int, timeout: float = 5.0) -> None:
    """SIGKILL the postmaster; its children exit when they see it gone."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count: it holds no socket, lock or file)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# The reaper: a process of its own session (a Ctrl-C on the terminal does not reach it)
# that waits for EOF on a pipe only we hold. EOF comes when stop() closes it, or when we
# die however we die; either way it then makes sure the cluster is gone.
_REAPER = """\
import json, shutil, sys
from pathlib import Path
from airlock.sim.postgres import RunAs, _shutdown
spec = json.loads(sys.argv[1])
sys.stdin.buffer.read()
base = Path(spec["base"])
if base.exists():
    _shutdown(Path(spec["pg_ctl"]), base / "data", RunAs(tuple(spec["prefix"]), 0, 0))
    shutil.rmtree(base, ignore_errors=True)
"""


def _start_reaper(cluster: PgCluster) -> subprocess.Popen[bytes]:
    spec = {
        "base": str(cluster.base),
        "pg_ctl": str(cluster.bindir / "pg_ctl"),
        "prefix": list(cluster.run_as.prefix),
    }
    src = str(Path(__file__).resolve().parents[2])  # so the reaper imports this airlock
    path = os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-c", _REAPER, json.dumps(spec)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd="/",
        env={**os.environ, "PYTHONPATH": path},
        start_new_session=True,
    )


def _release_reaper(reaper: subprocess.Popen[bytes] | None) -> None:
    """Tell the reaper the cluster is gone (EOF) and wait for it to exit."""
    if reaper is None:
        return
    if reaper.stdin is not None:
        reaper.stdin.close()
    try:
        reaper.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        reaper.kill()
        reaper.wait()
