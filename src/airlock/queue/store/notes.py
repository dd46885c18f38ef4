"""``store.alerts`` and ``store.notes``: alerts counted and de-duplicated across
restarts, and the service's notes (heartbeat, pid, last reconcile) for ``airlock status``."""

from __future__ import annotations

from airlock.audit import entries as audit_entries
from airlock.queue import alerts
from airlock.queue.alerts import AlertRecord
from airlock.queue.store.core import Core


class Alerts:
    """Alerts, one row per key (``store.alerts``)."""

    def __init__(self, core: Core) -> None:
        self._core = core

    def note(
        self,
        key: str,
        message: str,
        *,
        severity: str = "warning",
        dedup_ms: int = 300_000,
        item: str | None = None,
    ) -> tuple[AlertRecord, bool]:
        """Count an alert under ``key``; True when it should be delivered now (new, raised
        again after being resolved, or outside the de-duplication window). A delivered
        alert is also an ``alert`` audit entry, naming ``item`` when it is about one (so an
        auditor finds it with the item's other entries); a suppressed repeat only counts."""
        with self._core.transaction() as conn:
            record, deliver = alerts.note(
                conn, key, message, severity, self._core.clock_ms(), dedup_ms
            )
            if deliver:
                data = {"message": message, "key": key, "severity": severity}
                self._core.journal.append(conn, audit_entries.ALERT, item, data)
            return record, deliver

    def resolve(self, key: str) -> bool:
        with self._core.transaction() as conn:
            return alerts.resolve(conn, key, self._core.clock_ms())

    def open(self) -> list[AlertRecord]:
        with self._core.lock:
            return alerts.open_alerts(self._core.conn)


class Notes:
    """The service's notes (``store.notes``)."""

    def __init__(self, core: Core) -> None:
        self._core = core

    def set(self, key: str, value: str) -> None:
        """A service note (last reconcile, heartbeat) that ``airlock status`` reads."""
        with self._core.transaction() as conn:
            alerts.set_meta(conn, f"note.{key}", value)

    def set_many(self, notes: dict[str, str]) -> None:
        """Several service notes in one transaction."""
        with self._core.transaction() as conn:
            for key, value in notes.items():
                alerts.set_meta(conn, f"note.{key}", value)

    def get(self, key: str) -> str | None:
        with self._core.lock:
            return alerts.get_meta(self._core.conn, f"note.{key}")
