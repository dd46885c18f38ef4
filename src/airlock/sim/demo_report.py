"""The drill's HTML report (``airlock demo --report FILE``): the SLO document of the drill.

The figures are computed from the drill's own audit log by :mod:`airlock.slo`, exactly as
``AIRLOCK_HOME=DIR airlock slo`` computes them afterwards; the drill's in-process
measurements (time to persist around each enqueue, link return to first send) are shown
beside them, so a reader can see that the record and the stopwatch agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airlock.config import SloConfig
from airlock.queue.store import Store
from airlock.slo import Follower, Report, Targets, Timeline, Window
from airlock.slo.html import AuditVerdict, document


def read_drill(store: Store, started_ms: int) -> tuple[Report, Timeline]:
    """The SLO figures of the drill's window, under the default targets."""
    targets = Targets.of(SloConfig())
    follower = Follower(store)
    window = Window(started_ms, store.now_ms())
    return follower.report(window, targets), follower.timeline


def write_report(
    path: Path, report: Report, timeline: Timeline, audit: AuditVerdict, result: dict[str, Any]
) -> None:
    bybit = result["bybit"]
    facts = {
        "items by final state": ", ".join(f"{k} {v}" for k, v in sorted(result["states"].items())),
        "time to persist (drill's stopwatch)": (
            f"p50 {result['persist_ms']['p50']} ms, mean {result['persist_ms']['mean']} ms, "
            f"max {result['persist_ms']['max']} ms"
        ),
        "link return -> first send (drill's stopwatch)": (
            f"EVM {result['link_return_to_first_send_ms']} ms, "
            f"Bybit {bybit['return_to_first_send_ms']} ms"
        ),
        "gas bumps": str(result["bumped"]),
        "duplicates / lost": f"{result['duplicates']} / {result['lost']} (must be 0 / 0)",
    }
    text = document(report, timeline, title="airlock outage drill", audit=audit, facts=facts)
    path.write_text(text, encoding="utf-8")
