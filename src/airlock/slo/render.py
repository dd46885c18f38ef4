"""The report as JSON (``airlock slo --json``) and as the text table an operator reads."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from airlock.slo.figures import Figure, Report, Spread

SCHEMA = "airlock-slo/1"


def as_json(report: Report) -> dict[str, Any]:
    """Every figure with its inputs; times in Unix milliseconds, durations in ms or s as
    the key says."""
    return {
        "schema": SCHEMA,
        "window": {"from_ms": report.window.from_ms, "to_ms": report.window.to_ms},
        "targets": asdict(report.targets) | {"strategy_bounds_s": dict(
            report.targets.strategy_bounds_s)},
        "passed": report.passed,
        "figures": [asdict(f) for f in report.figures],
        "links": [
            {
                "link": link.link,
                "side": link.side,
                "availability_pct": link.availability_pct,
                "watched_ms": link.watched_ms,
                "available_ms": link.available_ms,
                "outages": len(link.outages),
                "outage_ms": _spread(Spread.of(o.ms for o in link.outages)),
                "outage_list": [asdict(o) for o in link.outages],
            }
            for link in report.links
        ],
        "failover": {
            side: _spread(report.failover_ms(side))
            | {"unresolved": sum(1 for f in report.failovers if f.side == side and f.ms is None)}
            for side in ("evm", "bybit")
        }
        | {"events": [asdict(f) | {"ms": f.ms} for f in report.failovers]},
        "persist_ms": _spread(report.persist_ms),
        "queued": [
            {
                "kind": q.kind,
                "strategy": q.strategy,
                "bound_s": q.bound_s,
                "age_s": _spread(q.age_s),
                "fates": q.fates,
                "within": q.within,
                "decided": q.decided,
                "within_pct": q.within_pct,
            }
            for q in report.queued
        ],
    }  # fmt: skip


def _spread(spread: Spread) -> dict[str, Any]:
    return {k: (None if v is None else round(v, 3)) for k, v in asdict(spread).items()}


def render_text(report: Report) -> str:
    """The SLO table, one line per figure, then the verdict."""
    header = ["FIGURE", "OF", "TARGET", "VALUE", "STATUS"]
    rows = [[f.name, f.subject, f.target, value_text(f), f.status] for f in report.figures]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]  # fmt: skip
    if not rows:
        lines.append("(no records in the window)")
    verdict = "every figure met its target" if report.passed else "some figures FAILED"
    return "\n".join([*lines, "", f"SLO: {verdict}"])


def value_text(figure: Figure) -> str:
    if figure.value is None:
        return "-"
    if figure.unit == "%":
        return f"{figure.value:.3f} %"
    return f"{figure.value:.1f} {figure.unit}"
