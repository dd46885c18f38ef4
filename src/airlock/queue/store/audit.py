"""``store.audit``: the tamper-evident log as stored: entries, leaves, signed checkpoints.

Entries of item changes are written by the other parts inside the change's transaction;
:meth:`Audit.record` writes an entry that changes no item (a relay's health, a refusal).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from airlock.queue.journal import CheckpointRecord
from airlock.queue.store.core import Core


class Audit:
    """The audit log (``store.audit``)."""

    def __init__(self, core: Core) -> None:
        self._core = core

    def record(self, kind: str, data: dict[str, Any], item_id: str | None = None) -> None:
        """An audit entry that changes no item: a relay's health, an alert."""
        with self._core.transaction() as conn:
            self._core.journal.append(conn, kind, item_id, data)

    def origin(self) -> str:
        """The log's name in its checkpoints: unique per database, fixed at creation."""
        with self._core.lock:
            return self._core.journal.origin(self._core.conn)

    def size(self) -> int:
        with self._core.lock:
            return self._core.journal.size(self._core.conn)

    def leaves(self, stop: int | None = None) -> list[bytes]:
        with self._core.lock:
            return self._core.journal.leaves(self._core.conn, stop)

    def entries(self, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """Decrypted entries ``start .. stop-1``, read in chunks so the lock is not held
        between them."""
        stop = self.size() if stop is None else stop
        chunk = 4096
        for first in range(start, stop, chunk):
            with self._core.lock:
                batch = list(
                    self._core.journal.read(self._core.conn, first, min(first + chunk, stop))
                )
            yield from batch

    def checkpoints(self) -> list[CheckpointRecord]:
        with self._core.lock:
            return self._core.journal.checkpoints(self._core.conn)

    def sign_checkpoint(self, sign_note: Callable[[str, int, bytes], str]) -> CheckpointRecord:
        """Sign (through ``sign_note``) the current tree, consistent with the last one."""
        with self._core.transaction() as conn:
            return self._core.journal.checkpoint(conn, sign_note)
