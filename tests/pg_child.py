"""Child process for tests/test_sim_postgres.py, so the test can kill or freeze it.

Usage:
- ``pg_child.py locks URL idle|query``: take a session advisory lock (key 1) and, in an
  open transaction, a row lock (``lease`` row 1), print "locked <backend pid>", then wait
  idle in that transaction (``idle``) or inside a 600 s query (``query``).
- ``pg_child.py cluster``: start a private cluster, print "<base dir> <postmaster pid>",
  then sleep until killed (the test checks that its reaper cleans up).
"""

from __future__ import annotations

import sys
import time

import psycopg

from airlock.sim.postgres import start_cluster

ADVISORY_KEY = 1
FOREVER_S = 600


def hold_locks(url: str, mode: str) -> None:
    conn = psycopg.connect(url)  # autocommit off: the row lock stays until commit
    conn.execute("SELECT pg_advisory_lock(%s)", [ADVISORY_KEY])
    conn.execute("SELECT id FROM lease WHERE id = 1 FOR UPDATE")
    print("locked", conn.info.backend_pid, flush=True)
    if mode == "query":
        conn.execute("SELECT pg_sleep(%s)", [FOREVER_S])
    time.sleep(FOREVER_S)


def own_cluster() -> None:
    cluster = start_cluster()
    print(cluster.base, cluster.postmaster_pid(), flush=True)
    time.sleep(FOREVER_S)


def main(argv: list[str]) -> None:
    if argv[0] == "locks":
        hold_locks(argv[1], argv[2])
    elif argv[0] == "cluster":
        own_cluster()
    else:
        raise SystemExit(f"unknown mode {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
