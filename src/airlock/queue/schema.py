"""The queue's schema, as numbered migrations, and the connection settings it relies on.

``PRAGMA user_version`` holds the schema version. :func:`migrate` brings a fresh file or
an older one up to :data:`CURRENT`, one migration per transaction, and refuses a file
from a newer airlock without changing it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from airlock.queue.errors import SchemaTooNew, StoreUnavailable

# Tables keyed by text are WITHOUT ROWID: one B-tree per table instead of two, which is
# fewer pages written (and fsynced) per enqueue.
MIGRATIONS: tuple[str, ...] = (
    # 1: data keys, items, their signed variants, nonce counters.
    """
    CREATE TABLE data_keys (
        key_id       INTEGER PRIMARY KEY,
        kek_label    TEXT    NOT NULL,
        wrap_nonce   BLOB    NOT NULL,
        wrapped      BLOB    NOT NULL,
        created_ms   INTEGER NOT NULL,
        encryptions  INTEGER NOT NULL DEFAULT 0,
        reason       TEXT    NOT NULL
    );
    CREATE TABLE items (
        id               TEXT    PRIMARY KEY,
        kind             TEXT    NOT NULL CHECK (kind IN ('evm_tx', 'bybit_order', 'bybit_cancel')),
        account          TEXT    NOT NULL,
        strategy         TEXT    NOT NULL,
        seq              INTEGER NOT NULL,
        idempotency_key  TEXT    NOT NULL UNIQUE,
        priority         INTEGER NOT NULL,
        state            TEXT    NOT NULL,
        state_reason     TEXT,
        created_ms       INTEGER NOT NULL,
        updated_ms       INTEGER NOT NULL,
        expires_ms       INTEGER,
        chain_id         INTEGER,
        nonce            INTEGER,
        holds_nonce      INTEGER NOT NULL DEFAULT 0,
        private          INTEGER NOT NULL DEFAULT 0,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        signer           TEXT,
        key_id           INTEGER NOT NULL REFERENCES data_keys (key_id),
        payload          BLOB    NOT NULL,
        UNIQUE (strategy, seq)
    ) WITHOUT ROWID;
    CREATE INDEX items_by_state ON items (state, priority, created_ms);
    CREATE UNIQUE INDEX items_nonce_holder ON items (chain_id, account, nonce)
        WHERE holds_nonce = 1;
    CREATE TABLE variants (
        item_id      TEXT    NOT NULL REFERENCES items (id),
        idx          INTEGER NOT NULL,
        kind         TEXT    NOT NULL CHECK (kind IN ('step', 'cancel')),
        tx_hash      TEXT    NOT NULL,
        fee_per_gas  TEXT    NOT NULL,
        tip_per_gas  TEXT,
        key_id       INTEGER NOT NULL REFERENCES data_keys (key_id),
        raw          BLOB    NOT NULL,
        PRIMARY KEY (item_id, idx)
    ) WITHOUT ROWID;
    CREATE TABLE nonces (
        chain_id      INTEGER NOT NULL,
        sender        TEXT    NOT NULL,
        next_nonce    INTEGER NOT NULL,
        base_nonce    INTEGER NOT NULL,
        chain_pending INTEGER,
        synced_ms     INTEGER,
        PRIMARY KEY (chain_id, sender)
    );
    """,
    # 2: every state change after the enqueue, with its reason, for `queue show`.
    """
    CREATE TABLE transitions (
        item_id    TEXT    NOT NULL REFERENCES items (id),
        n          INTEGER NOT NULL,
        from_state TEXT,
        to_state   TEXT    NOT NULL,
        reason     TEXT    NOT NULL,
        at_ms      INTEGER NOT NULL,
        PRIMARY KEY (item_id, n)
    ) WITHOUT ROWID;
    """,
    # 3: the audit log (entries encrypted like every payload) and its signed checkpoints.
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO meta (key, value)
        VALUES ('audit_origin', 'airlock.local/' || lower(hex(randomblob(8))));
    CREATE TABLE audit_entries (
        seq        INTEGER PRIMARY KEY,
        entry_hash BLOB    NOT NULL,
        leaf_hash  BLOB    NOT NULL,
        key_id     INTEGER NOT NULL REFERENCES data_keys (key_id),
        body       BLOB    NOT NULL
    );
    CREATE TABLE audit_checkpoints (
        id         INTEGER PRIMARY KEY,
        size       INTEGER NOT NULL,
        root       BLOB    NOT NULL,
        note       TEXT    NOT NULL,
        created_ms INTEGER NOT NULL
    );
    """,
    # 4: the broadcaster's records: every send attempt, the variant on the wire, receipts.
    """
    ALTER TABLE items ADD COLUMN active_idx INTEGER;
    ALTER TABLE items ADD COLUMN sent_ms INTEGER;
    ALTER TABLE items ADD COLUMN sent_block INTEGER;
    ALTER TABLE items ADD COLUMN retry_ms INTEGER;
    ALTER TABLE items ADD COLUMN mined_hash TEXT;
    ALTER TABLE items ADD COLUMN mined_block INTEGER;
    ALTER TABLE items ADD COLUMN mined_block_hash TEXT;
    ALTER TABLE variants ADD COLUMN fate TEXT;
    CREATE TABLE attempts (
        item_id     TEXT    NOT NULL REFERENCES items (id),
        n           INTEGER NOT NULL,
        variant_idx INTEGER NOT NULL,
        relay       TEXT    NOT NULL,
        at_ms       INTEGER NOT NULL,
        outcome     TEXT    NOT NULL,
        rule        TEXT    NOT NULL,
        message     TEXT,
        PRIMARY KEY (item_id, n)
    ) WITHOUT ROWID;
    """,
    # 5: Bybit: each order's (or cancel's) venue reference and last seen venue state, and
    # every fill of the account once (execId is Bybit's unique fill id).
    """
    CREATE TABLE venue_orders (
        item_id    TEXT    PRIMARY KEY REFERENCES items (id),
        action     TEXT    NOT NULL CHECK (action IN ('order', 'cancel')),
        category   TEXT    NOT NULL,
        symbol     TEXT    NOT NULL,
        link_id    TEXT    NOT NULL,
        order_id   TEXT,
        status     TEXT,
        cum_qty    TEXT,
        avg_price  TEXT,
        seen_ms    INTEGER
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX venue_orders_link ON venue_orders (link_id) WHERE action = 'order';
    CREATE TABLE fills (
        exec_id      TEXT    PRIMARY KEY,
        item_id      TEXT    REFERENCES items (id),
        link_id      TEXT    NOT NULL,
        order_id     TEXT    NOT NULL,
        symbol       TEXT    NOT NULL,
        side         TEXT    NOT NULL,
        exec_qty     TEXT    NOT NULL,
        exec_price   TEXT    NOT NULL,
        exec_time_ms INTEGER NOT NULL,
        seen_ms      INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX fills_by_time ON fills (exec_time_ms);
    """,
    # 6: alerts, one row per alert key: counted, de-duplicated, resolved (`airlock status`).
    """
    CREATE TABLE alerts (
        key         TEXT    PRIMARY KEY,
        message     TEXT    NOT NULL,
        severity    TEXT    NOT NULL,
        first_ms    INTEGER NOT NULL,
        last_ms     INTEGER NOT NULL,
        count       INTEGER NOT NULL,
        sent_ms     INTEGER,
        resolved_ms INTEGER
    ) WITHOUT ROWID;
    """,
    # 7: the event stream of the local API (queue/events.py): every item's creation, state
    # change and fill, numbered in commit order, written by triggers in the transaction of
    # the change. Existing history is numbered once, in time order.
    """
    CREATE TABLE events (
        id         INTEGER PRIMARY KEY,
        item_id    TEXT    NOT NULL,
        type       TEXT    NOT NULL CHECK (type IN ('item.created', 'item.state', 'item.fill')),
        from_state TEXT,
        to_state   TEXT,
        reason     TEXT,
        exec_id    TEXT,
        at_ms      INTEGER NOT NULL
    );
    CREATE INDEX events_by_item ON events (item_id, id);
    INSERT INTO events (item_id, type, from_state, to_state, reason, exec_id, at_ms)
        SELECT item_id, type, from_state, to_state, reason, exec_id, at_ms FROM (
            SELECT id AS item_id, 'item.created' AS type, NULL AS from_state,
                   'queued' AS to_state, NULL AS reason, NULL AS exec_id,
                   created_ms AS at_ms, 0 AS o, 0 AS n
              FROM items
            UNION ALL
            SELECT item_id, 'item.state', from_state, to_state, reason, NULL, at_ms, 1, n
              FROM transitions
            UNION ALL
            SELECT item_id, 'item.fill', NULL, NULL, NULL, exec_id, seen_ms, 2, 0
              FROM fills WHERE item_id IS NOT NULL
        ) ORDER BY at_ms, o, item_id, n;
    CREATE TRIGGER events_created AFTER INSERT ON items BEGIN
        INSERT INTO events (item_id, type, to_state, at_ms)
            VALUES (NEW.id, 'item.created', NEW.state, NEW.created_ms);
    END;
    CREATE TRIGGER events_state AFTER INSERT ON transitions BEGIN
        INSERT INTO events (item_id, type, from_state, to_state, reason, at_ms)
            VALUES (NEW.item_id, 'item.state', NEW.from_state, NEW.to_state, NEW.reason,
                    NEW.at_ms);
    END;
    CREATE TRIGGER events_fill AFTER INSERT ON fills WHEN NEW.item_id IS NOT NULL BEGIN
        INSERT INTO events (item_id, type, exec_id, at_ms)
            VALUES (NEW.item_id, 'item.fill', NEW.exec_id, NEW.seen_ms);
    END;
    """,
    # 8: leases on lanes (queue/leases.py): which broadcaster may send for a sender or a
    # Bybit account, until when. Several broadcasters share a PostgreSQL queue this way.
    """
    CREATE TABLE leases (
        lane        TEXT    PRIMARY KEY,
        holder      TEXT    NOT NULL,
        taken_ms    INTEGER NOT NULL,
        expires_ms  INTEGER NOT NULL,
        released_ms INTEGER,
        why         TEXT    NOT NULL
    ) WITHOUT ROWID;
    """,
    # 9: a venue account's positions and balances, kept by the private stream and REST
    # reconcile (queue/account.py).
    """
    CREATE TABLE positions (
        account          TEXT    NOT NULL,
        category         TEXT    NOT NULL,
        symbol           TEXT    NOT NULL,
        side             TEXT    NOT NULL,
        size             TEXT    NOT NULL,
        avg_price        TEXT    NOT NULL,
        mark_price       TEXT,
        unrealised_pnl   TEXT,
        cum_realised_pnl TEXT,
        venue_ms         INTEGER NOT NULL,
        seen_ms          INTEGER NOT NULL,
        source           TEXT    NOT NULL,
        PRIMARY KEY (account, category, symbol)
    ) WITHOUT ROWID;
    CREATE TABLE balances (
        account        TEXT    NOT NULL,
        coin           TEXT    NOT NULL,
        wallet_balance TEXT    NOT NULL,
        equity         TEXT    NOT NULL,
        locked         TEXT,
        unrealised_pnl TEXT,
        venue_ms       INTEGER NOT NULL,
        seen_ms        INTEGER NOT NULL,
        source         TEXT    NOT NULL,
        PRIMARY KEY (account, coin)
    ) WITHOUT ROWID;
    """,
)
CURRENT = len(MIGRATIONS)
BUSY_TIMEOUT_MS = 10_000


def connect(path: Path) -> sqlite3.Connection:
    """Open ``path`` with the durability settings every queue write relies on.

    WAL with ``synchronous=FULL``: a transaction is on disk when COMMIT returns. Autocommit
    mode (``isolation_level=None``) so that transactions are explicit ``BEGIN IMMEDIATE``
    blocks: the write lock is taken at the start, never upgraded mid-way.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
        conn.row_factory = sqlite3.Row
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise StoreUnavailable(f"cannot open queue database {path}: {exc}") from exc
    if mode != "wal":
        conn.close()
        raise StoreUnavailable(f"queue database {path}: WAL mode unavailable (got {mode})")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return conn


def version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, path: Path, target: int = CURRENT) -> int:
    """Apply the missing migrations up to ``target``; return the version before."""
    start = version(conn)
    if start > CURRENT:
        raise SchemaTooNew(
            f"queue database {path} has schema version {start}, but this airlock knows "
            f"versions up to {CURRENT}: it was written by a newer airlock. Upgrade airlock; "
            "the file was not changed."
        )
    for number in range(start + 1, target + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            if version(conn) >= number:  # another process migrated meanwhile
                conn.execute("ROLLBACK")
                continue
            for statement in _statements(MIGRATIONS[number - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return start


def _statements(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit on its own)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        raise ValueError(f"incomplete SQL statement in migration: {current!r}")
    return statements
