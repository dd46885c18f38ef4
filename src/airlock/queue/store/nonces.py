"""``store.nonces``: the nonce counters per (chain, sender), and their sync with a node."""

from __future__ import annotations

from airlock.audit import entries as audit_entries
from airlock.queue import nonces
from airlock.queue.store.core import Core


class Nonces:
    """Nonce counters (``store.nonces``)."""

    def __init__(self, core: Core) -> None:
        self._core = core

    def status(self) -> list[nonces.NonceStatus]:
        with self._core.lock:
            return nonces.status(self._core.conn)

    def senders(self, chain_id: int) -> list[str]:
        with self._core.lock:
            return nonces.senders(self._core.conn, chain_id)

    def sync(self, chain_id: int, pending: dict[str, int]) -> list[nonces.SyncResult]:
        """Record the chain's pending nonce per sender (one reading each)."""
        with self._core.transaction() as conn:
            now = self._core.clock_ms()
            results = []
            for sender, value in sorted(pending.items()):
                result = nonces.sync(conn, chain_id, sender, value, now)
                self._core.journal.append(conn, audit_entries.NONCE_SYNC, None, result.as_json())
                results.append(result)
            return results
