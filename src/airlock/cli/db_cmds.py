"""``airlock db``: the queue database itself: its schema version, its migrations, and the
move from the embedded SQLite file to a shared PostgreSQL server (docs/scale.md).

None of these needs the HSM: the schema and the copy work on rows as stored (ciphertexts
stay ciphertexts); the first command that opens the queue afterwards proves the KEK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from airlock.cli import common

if TYPE_CHECKING:
    from airlock.queue.db import Database


@click.group("db")
def db_group() -> None:
    """The queue database: schema version, migrations, moving to PostgreSQL."""


def _open(ctx: click.Context) -> Database:
    from airlock.queue.db import open_database

    location = common.config(ctx).queue.location
    return open_database(location)


def _status(db: Database) -> dict[str, Any]:
    from airlock.queue import schema

    version = db.version()
    return {
        "engine": db.engine,
        "location": db.shown,
        "version": version,
        "current": schema.CURRENT,
        "pending": max(schema.CURRENT - version, 0),
    }


@db_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_context
def db_status(ctx: click.Context, as_json: bool) -> None:
    """Which engine holds the queue, where, and its schema version."""
    db = _open(ctx)
    try:
        data = _status(db)
    finally:
        db.close()

    def text() -> str:
        state = "up to date" if data["pending"] == 0 else f"{data['pending']} migration(s) due"
        if data["version"] > data["current"]:
            state = "written by a newer airlock: upgrade airlock"
        return (
            f"{data['engine']} queue at {data['location']}: schema version "
            f"{data['version']} of {data['current']} ({state})"
        )

    common.emit(as_json, data, text)


@db_group.command("migrate")
@click.option("--json", "as_json", is_flag=True, help="Print the versions as JSON.")
@click.pass_context
def db_migrate(ctx: click.Context, as_json: bool) -> None:
    """Bring the queue's schema up to this airlock's version (safe to run again; several
    broadcasters on one server wait for each other)."""
    db = _open(ctx)
    try:
        before = db.migrate()
        data = {**_status(db), "from": before}
    finally:
        db.close()

    def text() -> str:
        if data["from"] == data["version"]:
            return f"{data['location']}: already at schema version {data['version']}"
        return f"{data['location']}: schema version {data['from']} -> {data['version']}"

    common.emit(as_json, data, text)


@db_group.command("copy")
@click.option(
    "--to",
    "target",
    required=True,
    metavar="URL",
    help="An empty PostgreSQL database: postgresql://user@host:port/db (a password goes "
    "in ~/.pgpass or PGPASSWORD, never on the command line).",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was copied as JSON.")
@click.pass_context
def db_copy(ctx: click.Context, target: str, as_json: bool) -> None:
    """Copy the SQLite queue into an empty PostgreSQL database: every item, key, attempt,
    the audit log and its checkpoints, compared row for row afterwards.

    Stop the broadcaster first (the copy refuses while one runs) and point [queue] url at
    the server afterwards; the file is left as it was."""
    from airlock.broadcaster.lock import ServiceLock
    from airlock.config.checks import postgres_url
    from airlock.errors import AirlockError
    from airlock.queue.copy import copy_to_postgres

    postgres_url("db copy", "--to", target)
    if urlsplit(target).password is not None:
        raise AirlockError(
            "--to carries a password, and the command line is visible to every user: put it "
            "in ~/.pgpass or PGPASSWORD and give the URL without it"
        )
    settings = common.config(ctx)
    if settings.queue.url is not None:
        raise AirlockError(
            "the configured queue is already on PostgreSQL ([queue] url): nothing to copy"
        )
    source = settings.queue.path
    if not source.exists():
        raise AirlockError(f"no queue at {source}: nothing to copy")

    def progress(table: str, done: int, total: int) -> None:
        if done == total:
            click.echo(f"copied {table}: {total} rows", err=True)

    with ServiceLock(source):
        result = copy_to_postgres(source, target, progress)
    data = {
        "source": result.source,
        "target": result.target,
        "version": result.version,
        "rows": result.rows,
        "tables": {t.table: {"rows": t.rows, "sha256": t.digest} for t in result.tables},
    }

    def text() -> str:
        return (
            f"copied {result.rows} rows in {len(result.tables)} tables from {result.source} "
            f"to {result.target} (schema version {result.version}), every table compared.\n"
            f"Next: set [queue] url = {result.target!r} in airlock.toml (or AIRLOCK_QUEUE_URL)"
        )

    common.emit(as_json, data, text)
