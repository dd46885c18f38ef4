"""`airlock db status | migrate | copy` as an operator runs them: subprocesses, a real
SQLite file and a real PostgreSQL server. The move keeps every row and the audit log: an
export taken on the server verifies against the same public key, old checkpoints and all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.kits.backends import RawDb
from tests.kits.cli import TRANSFER, command_line, run

from airlock.queue import schema

pytestmark = pytest.mark.slow


QUEUE = command_line(["evm", "queue", "--key", "mover", "--json"], TRANSFER, {})


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A queue with two transfers, two checkpoints and a cancel in its log."""
    home = tmp_path_factory.mktemp("db-home")
    assert run(home, "init").returncode == 0
    assert run(home, "hsm", "keygen", "--type", "secp256k1", "--label", "mover").returncode == 0
    first = json.loads(run(home, *QUEUE, "--with-cancel").stdout)
    assert run(home, "audit", "checkpoint").returncode == 0
    run(home, *QUEUE)
    assert run(home, "queue", "cancel", first["id"]).returncode == 0
    assert run(home, "audit", "checkpoint").returncode == 0
    return home


def on_server(url: str) -> dict[str, str]:
    return {"AIRLOCK_QUEUE_URL": url}


def test_status_names_the_engine_and_the_version(home: Path) -> None:
    done = run(home, "db", "status", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert (data["engine"], data["version"], data["pending"]) == ("sqlite", schema.CURRENT, 0)
    assert "up to date" in run(home, "db", "status").stdout


def test_migrate_is_safe_to_run_again(home: Path, pg_url: str) -> None:
    for env in ({}, on_server(pg_url), on_server(pg_url)):
        done = run(home, "db", "migrate", "--json", env=env)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["version"] == schema.CURRENT
    data = json.loads(run(home, "db", "status", "--json", env=on_server(pg_url)).stdout)
    assert data["engine"] == "postgres" and data["version"] == schema.CURRENT
    assert "test_" in data["location"]


def test_copy_moves_every_row_and_the_log_verifies_on_the_server(
    home: Path, pg_url: str, tmp_path: Path
) -> None:
    before = json.loads(run(home, "queue", "list", "--json").stdout)
    done = run(home, "db", "copy", "--to", pg_url, "--json")
    assert done.returncode == 0, done.stderr
    copied = json.loads(done.stdout)
    assert copied["tables"]["items"]["rows"] == 2
    assert copied["tables"]["audit_checkpoints"]["rows"] == 2
    assert "copied audit_entries" in done.stderr  # progress, on stderr

    after = json.loads(run(home, "queue", "list", "--json", env=on_server(pg_url)).stdout)
    assert after == before
    # The server's queue goes on where the file stopped: the next nonce, the same chain.
    queued = run(home, *QUEUE, env=on_server(pg_url))
    assert queued.returncode == 0, queued.stderr
    assert json.loads(queued.stdout)["nonce"] == 2
    with RawDb(pg_url) as server, RawDb(home / "queue.db") as file:
        assert server.execute("SELECT count(*) FROM items").fetchone()[0] == 3
        assert file.execute("SELECT count(*) FROM items").fetchone()[0] == 2  # left as it was
    out = tmp_path / "export"
    exported = run(home, "audit", "export", "--out", str(out), env=on_server(pg_url))
    assert exported.returncode == 0, exported.stderr
    pem = tmp_path / "audit.pem"
    pem.write_text(run(home, "audit", "pubkey").stdout)  # the key, read from the file's side
    verified = run(home, "audit", "verify", str(out), "--pubkey", str(pem), "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = json.loads(verified.stdout)
    assert report["entry_types"]["item.enqueued"] == 3 and report["checkpoints"] == 3
    notes = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert len(notes) == 3  # the two signed on SQLite, and the export's own on the server


def test_copy_refuses_a_database_that_is_not_empty(home: Path, pg_url: str) -> None:
    assert run(home, "db", "copy", "--to", pg_url).returncode == 0
    again = run(home, "db", "copy", "--to", pg_url)
    assert again.returncode == 1
    assert "already holds a queue" in again.stderr and again.stdout == ""


def test_copy_refuses_a_password_on_the_command_line(home: Path, pg_url: str) -> None:
    url = pg_url.replace("postgres@", "postgres:secret@")
    done = run(home, "db", "copy", "--to", url)
    assert done.returncode == 1
    assert "~/.pgpass" in done.stderr and "secret" not in done.stderr


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("mysql://h/db", "must be a postgresql://"),
        ("postgresql://127.0.0.1:5432", "must name a database"),
    ],
)
def test_copy_refuses_what_is_not_a_postgresql_database(home: Path, target, message) -> None:
    done = run(home, "db", "copy", "--to", target)
    assert done.returncode == 1 and message in done.stderr


def test_status_reads_a_queue_on_the_server(home: Path, pg_url: str) -> None:
    assert run(home, "db", "copy", "--to", pg_url).returncode == 0
    done = run(home, "status", "--no-probe", "--json", env=on_server(pg_url))
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["queue_path"].startswith("postgresql://") and "test_" in data["queue_path"]
    assert data["queue"]["exists"] and data["queue"]["total"] == 2, data["queue"]
