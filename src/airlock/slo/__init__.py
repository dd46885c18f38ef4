"""Service-level figures from the record: the audit log, not process memory.

``read_report(store, window, targets)`` gives a :class:`Report` (availability and outages
per link, time to failover, time to persist, queued age per kind and strategy, each
against its target); :mod:`airlock.slo.render` writes it as JSON or text and
:mod:`airlock.slo.html` as the drill's self-contained HTML document. The figures are pure
functions of a :class:`Timeline` (:mod:`airlock.slo.figures`); reading the store is
:mod:`airlock.slo.read`'s job alone.
"""

from airlock.slo.figures import Figure, Report, Targets, Window, report
from airlock.slo.read import Follower, read_report
from airlock.slo.records import Timeline

__all__ = ["Figure", "Follower", "Report", "Targets", "Timeline", "Window", "read_report", "report"]
