"""Reading the record: the store's audit log into a :class:`~airlock.slo.records.Timeline`.

The one part of :mod:`airlock.slo` that touches the store. :class:`Follower` keeps its
place (the next entry number), so the service's live gauges read only what was written
since their last look; the CLI reads the whole log once.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from airlock.audit.export import export
from airlock.audit.log import AuditKey
from airlock.audit.verify import verify_export
from airlock.queue.store import Store
from airlock.slo.figures import Report, Targets, Window, report
from airlock.slo.html import AuditVerdict
from airlock.slo.records import Timeline


class Follower:
    """A timeline kept current with a store's log, entry by entry, from ``start`` (an
    entry number: the whole log by default)."""

    def __init__(self, store: Store, start: int = 0) -> None:
        self.store = store
        self.timeline = Timeline(next_seq=start)

    def catch_up(self) -> Timeline:
        """Feed every entry written since the last call (all of them the first time)."""
        for raw in self.store.audit.entries(self.timeline.next_seq):
            self.timeline.feed(json.loads(raw))
        return self.timeline

    def report(self, window: Window, targets: Targets) -> Report:
        return report(self.catch_up(), window, targets)


def read_report(store: Store, window: Window, targets: Targets) -> Report:
    """The figures of ``window`` from the whole log of ``store``."""
    return Follower(store).report(window, targets)


def seq_at(store: Store, ms: int) -> int:
    """The first entry written at or after ``ms``, by bisection (entry times rise with
    their numbers, each writer's clock aside): a few reads, however long the log."""
    low, high = 0, store.audit.size()
    while low < high:
        middle = (low + high) // 2
        entry = json.loads(next(store.audit.entries(middle, middle + 1)))
        if int(entry["time_ms"]) < ms:
            low = middle + 1
        else:
            high = middle
    return low


def audit_verdict(store: Store, key: AuditKey) -> AuditVerdict:
    """The log verified offline up to its latest signed checkpoint, as an auditor would
    (one is signed first only when there is none): the report's audit line."""
    if store.audit.size() == 0:
        return AuditVerdict(True, 0, None)
    checkpoints = store.audit.checkpoints()
    last = checkpoints[-1].size - 1 if checkpoints else None
    with tempfile.TemporaryDirectory(prefix="airlock-slo-") as tmp:
        result = export(store, key, Path(tmp) / "audit", 0, last)
        verified = verify_export(result.out, key.pem.encode())
    return AuditVerdict(verified.ok, verified.entries, verified.problem)
