"""Reading the record: the store's audit log into a :class:`~airlock.slo.records.Timeline`.

The one part of :mod:`airlock.slo` that touches the store. :class:`Follower` keeps its
place (the next entry number), so the service's live gauges read only what was written
since their last look; the CLI reads the whole log once.
"""

from __future__ import annotations

import json

from airlock.queue.store import Store
from airlock.slo.figures import Report, Targets, Window, report
from airlock.slo.records import Timeline


class Follower:
    """A timeline kept current with a store's log, entry by entry."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.timeline = Timeline()

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
