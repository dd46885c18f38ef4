"""The audit log's storage: append an entry inside the caller's transaction, read it back.

The entry format and the Merkle math are :mod:`airlock.audit`; this module only stores
them. Entry bodies are encrypted like every payload (table ``audit_entries``, row id =
entry number, column ``body``); the entry and leaf hashes are kept in clear so a
checkpoint can be computed without decrypting the log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from airlock.audit import entries, merkle
from airlock.queue.db import Conn
from airlock.queue.envelope import Envelope
from airlock.queue.errors import AuditIntegrityError, PayloadTampered


@dataclass(frozen=True)
class CheckpointRecord:
    id: int
    size: int
    root: bytes
    note: str
    created_ms: int


class Journal:
    """Appends and reads audit entries on one connection (the store's)."""

    def __init__(self, envelope: Envelope, clock_ms: Callable[[], int]) -> None:
        self._envelope = envelope
        self._clock_ms = clock_ms
        self._head: tuple[int, str] | None = None  # (next seq, prev hash) in this transaction

    def forget_head(self) -> None:
        """Called by the store at each transaction's start and end: the head read inside
        one write transaction holds only until it ends."""
        self._head = None

    def append(
        self,
        conn: Conn,
        kind: str,
        item: str | None,
        data: dict[str, Any],
    ) -> int:
        """Write one entry in the current transaction; returns its number."""
        seq, prev = self._head or self._read_head(conn)
        body = entries.encode(seq, prev, self._clock_ms(), kind, item, data)
        sealed = self._envelope.seal("audit_entries", str(seq), "body", body)
        entry_hash = entries.entry_hash(body)
        conn.execute(
            "INSERT INTO audit_entries (seq, entry_hash, leaf_hash, key_id, body)"
            " VALUES (?, ?, ?, ?, ?)",
            (seq, entry_hash, merkle.leaf_hash(body), sealed.key_id, sealed.blob),
        )
        self._head = (seq + 1, entry_hash.hex())
        return seq

    @staticmethod
    def _read_head(conn: Conn) -> tuple[int, str]:
        last = conn.execute(
            "SELECT seq, entry_hash FROM audit_entries ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return (0, entries.GENESIS_PREV) if last is None else (last[0] + 1, last[1].hex())

    @staticmethod
    def origin(conn: Conn) -> str:
        row = conn.execute("SELECT value FROM meta WHERE key = 'audit_origin'").fetchone()
        origin: str = row[0]
        return origin

    @staticmethod
    def size(conn: Conn) -> int:
        row = conn.execute("SELECT max(seq) FROM audit_entries").fetchone()
        return 0 if row[0] is None else row[0] + 1

    @staticmethod
    def leaves(conn: Conn, stop: int | None = None) -> list[bytes]:
        """Leaf hashes of entries ``0 .. stop-1`` (all when ``stop`` is None)."""
        sql = "SELECT leaf_hash FROM audit_entries"
        args: tuple[int, ...] = ()
        if stop is not None:
            sql, args = sql + " WHERE seq < ?", (stop,)
        return [r[0] for r in conn.execute(sql + " ORDER BY seq", args)]

    def read(self, conn: Conn, start: int, stop: int) -> Iterator[bytes]:
        """Decrypted canonical bytes of entries ``start .. stop-1``, checked against their
        stored leaf hash."""
        rows = conn.execute(
            "SELECT seq, leaf_hash, key_id, body FROM audit_entries"
            " WHERE seq >= ? AND seq < ? ORDER BY seq",
            (start, stop),
        )
        expected = start
        for seq, leaf, key_id, blob in rows:
            if seq != expected:
                raise AuditIntegrityError(f"audit entry {expected} is missing from the database")
            body = self._envelope.open("audit_entries", str(seq), "body", key_id, blob)
            if merkle.leaf_hash(body) != leaf:
                raise PayloadTampered(f"audit entry {seq} does not match its stored leaf hash")
            expected += 1
            yield body
        if expected != stop:
            raise AuditIntegrityError(f"audit entry {expected} is missing from the database")

    @staticmethod
    def checkpoints(conn: Conn) -> list[CheckpointRecord]:
        return [
            CheckpointRecord(*row)
            for row in conn.execute(
                "SELECT id, size, root, note, created_ms FROM audit_checkpoints ORDER BY id"
            )
        ]

    def checkpoint(
        self,
        conn: Conn,
        sign_note: Callable[[str, int, bytes], str],
    ) -> CheckpointRecord:
        """Sign the current tree unless nothing changed; refuse if history was rewritten.

        Called inside the store's write transaction, so no entry lands between computing
        the root and storing the signed note.
        """
        leaves = self.leaves(conn)
        size = len(leaves)
        done = self.checkpoints(conn)
        if done:
            last = done[-1]
            if size < last.size:
                raise AuditIntegrityError(
                    f"the audit log holds {size} entries but checkpoint {last.id} signed "
                    f"{last.size}: entries were removed; refusing to sign"
                )
            if merkle.root(leaves[: last.size]) != last.root:
                raise AuditIntegrityError(
                    f"the first {last.size} audit entries no longer hash to the root signed in "
                    f"checkpoint {last.id}: the log was rewritten; refusing to sign"
                )
            if size == last.size:
                return last
        root = merkle.root(leaves)
        note = sign_note(self.origin(conn), size, root)
        now = self._clock_ms()
        row = conn.execute(
            "INSERT INTO audit_checkpoints (size, root, note, created_ms) VALUES (?, ?, ?, ?)"
            " RETURNING id",
            (size, root, note, now),
        ).fetchone()
        return CheckpointRecord(int(row[0]), size, root, note, now)
