"""The SLO figures as live gauges on ``/metrics``, from the same record ``airlock slo`` reads.

At most every ``[slo] live_seconds`` a scrape brings the service's timeline up to date
with the audit log (only the entries written since the last look) and computes the
figures of the last ``live_window_seconds``; scrapes in between get the same numbers.
Everything older than the window is pruned from memory, except each link's last state
and the items still waiting. The first scrape reads from one window before the window
(found by bisection), not the whole log. Units are the report's: percent for availability and the
within-bound share, milliseconds for the two p95 times.

``airlock_slo_value{slo, subject}``: the figure; ``airlock_slo_target{slo}``: its target;
``airlock_slo_met{slo, subject}``: 1 when it meets it, 0 when not (no sample without data).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from airlock.clock import wall_clock_ms
from airlock.config import SloConfig
from airlock.queue.store import Store
from airlock.slo import Follower, Report, Targets, Window
from airlock.slo.figures import prune_point
from airlock.slo.read import seq_at

log = logging.getLogger("airlock.broadcaster.metrics")

SLO_NAMES = {  # the report's figure -> the label value
    "availability": "availability",
    "failover p95": "failover_p95",
    "persist p95": "persist_p95",
    "within bound": "within_bound",
}


class SloCollector(Collector):
    """Registered in the service's metrics registry (:func:`airlock.broadcaster.setup`)."""

    def __init__(
        self, store: Store, config: SloConfig, clock_ms: Callable[[], int] = wall_clock_ms
    ) -> None:
        self._store = store
        self._follower: Follower | None = None  # made at the first scrape
        self._config = config
        self._targets = Targets.of(config)
        self._clock = clock_ms
        self._lock = threading.Lock()  # two scrapes at once: one catches up, one waits
        self._report: Report | None = None
        self._at_ms: int | None = None

    def describe(self) -> list[GaugeMetricFamily]:
        return list(_families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        value, target, met = _families()
        report = self._current()
        for name, key in _TARGET_KEYS.items():
            target.add_metric([name], getattr(self._targets, key))
        for figure in report.figures if report is not None else ():
            if figure.value is None:
                continue
            labels = [SLO_NAMES[figure.name], figure.subject]
            value.add_metric(labels, figure.value)
            met.add_metric(labels, 1.0 if figure.status == "PASS" else 0.0)
        yield from (value, target, met)

    def _current(self) -> Report | None:
        now = self._clock()
        with self._lock:
            fresh = self._at_ms is not None and now - self._at_ms < self._config.live_seconds * 1000
            if fresh:
                return self._report
            window = Window(now - int(self._config.live_window_seconds * 1000), now)
            try:
                follower = self._follower or self._start(window)
                timeline = follower.catch_up()
                timeline.prune(prune_point(timeline, window.from_ms))
                self._report = follower.report(window, self._targets)
            except Exception as exc:  # a scrape must not fail: the queue gauges say more
                log.warning("metrics: SLO figures not computed (%s)", type(exc).__name__)
            self._at_ms = now
            return self._report

    def _start(self, window: Window) -> Follower:
        """Read from one window before the first: a long log is not read whole at the
        first scrape, and the window starts with its links' states and waiting items
        known (an item queued earlier than that, or a link silent since, is not)."""
        warm_up = window.from_ms - (window.to_ms - window.from_ms)
        self._follower = Follower(self._store, seq_at(self._store, warm_up))
        return self._follower


_TARGET_KEYS = {
    "availability": "availability_pct",
    "failover_p95": "failover_ms",
    "persist_p95": "persist_ms",
    "within_bound": "within_bound_pct",
}


def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily(
            "airlock_slo_value",
            "An SLO figure over the live window (percent, or ms for the p95 times)",
            labels=["slo", "subject"],
        ),
        GaugeMetricFamily("airlock_slo_target", "The SLO figure's target ([slo])", labels=["slo"]),
        GaugeMetricFamily(
            "airlock_slo_met", "1 when the SLO figure meets its target, 0 when not",
            labels=["slo", "subject"],
        ),
    )  # fmt: skip
