"""``store.keys``: the queue's data keys, wrapped by the HSM's key-encryption key."""

from __future__ import annotations

from typing import Any

from airlock.audit import entries as audit_entries
from airlock.queue.store.core import Core


class Keys:
    """Data keys (``store.keys``)."""

    def __init__(self, core: Core) -> None:
        self._core = core

    def rotate(self, reason: str = "rotated by the operator") -> int:
        with self._core.transaction() as conn:
            key_id = self._core.envelope.rotate(reason)
            self._core.journal.append(
                conn, audit_entries.DATA_KEY_ROTATED, None, {"key_id": key_id, "reason": reason}
            )
            return key_id

    def all(self) -> list[dict[str, Any]]:
        with self._core.lock:
            rows = self._core.envelope.key_rows()
            return [{name: r[name] for name in r.keys()} for r in rows]  # noqa: SIM118 (a row iterates its values)
