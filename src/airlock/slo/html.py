"""The drill report: one self-contained HTML document (no external assets, no script).

What is signed off after the monthly drill: the link timeline (up, degraded = slow or just
back, down), items waiting, sent, bumped and confirmed over time, the SLO table with each
figure's target and verdict, and the audit log's verdict. Stable hooks for readers and
tests: ``data-plot`` on each plot, ``id="slo-table"`` with one ``tr[data-figure]`` per
figure, ``id="audit-verdict"`` with ``data-ok``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from airlock.slo import svg
from airlock.slo.figures import Report
from airlock.slo.records import Mark, Timeline
from airlock.slo.render import value_text

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:960px;padding:12px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%}td,th{padding:4px 8px;border-bottom:1px solid #eee;
text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
.PASS{color:#2e7d32;font-weight:600}.FAIL{color:#c62828;font-weight:600}.NO{color:#777}
.ok{color:#2e7d32}.bad{color:#c62828}svg{background:#fafafa;border:1px solid #eee}
.legend span{display:inline-block;margin-right:14px}.sw{display:inline-block;width:12px;
height:12px;margin-right:4px;vertical-align:middle}
"""


@dataclass(frozen=True)
class AuditVerdict:
    ok: bool
    entries: int
    problem: str | None = None


def document(
    report: Report,
    timeline: Timeline,
    *,
    title: str,
    audit: AuditVerdict | None,
    facts: Mapping[str, str] | None = None,
) -> str:
    """The whole document as text."""
    t0, t1 = report.window.from_ms, report.window.to_ms
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p>Window: {_when(t0)} to {_when(t1)} ({(t1 - t0) / 1000:.1f} s). "
        f"Verdict: {_verdict(report.passed)}</p>",
    ]
    if facts:
        parts.append(_facts(facts))
    parts += ["<h2>Links</h2>", _legend(), _links_plot(report, t0, t1)]
    parts += ["<h2>Items</h2>", svg.steps(item_series(timeline.marks, t0, t1), t0, t1)]
    parts += ["<h2>Service levels</h2>", _table(report), _details(report)]
    parts += ["<h2>Audit log</h2>", _audit(audit), "</body></html>"]
    return "\n".join(parts)


def item_series(
    marks: Sequence[Mark], t0: int, t1: int
) -> list[tuple[str, list[tuple[int, float]]]]:
    """Waiting (both sides together), and cumulative sent, bumped and confirmed."""
    waiting: dict[str, int] = {}
    out: dict[str, list[tuple[int, float]]] = {"waiting": [], "sent": [], "bumped": [],
                                                "confirmed": []}  # fmt: skip
    totals = {"sent": 0, "bumped": 0, "confirmed": 0}
    for mark in sorted(marks, key=lambda m: m.at_ms):
        if mark.what == "waiting":
            waiting[mark.side] = mark.value
            point = float(sum(waiting.values()))
            key = "waiting"
        elif mark.what in totals:
            totals[mark.what] += 1
            point, key = float(totals[mark.what]), mark.what
        else:
            continue
        out[key].append((min(max(mark.at_ms, t0), t1), point))
    return list(out.items())


def _links_plot(report: Report, t0: int, t1: int) -> str:
    if not report.links:
        return "<p>No link changes were recorded in the window.</p>"
    return svg.lanes([(link.link, link.segments) for link in report.links], t0, t1)


def _legend() -> str:
    spans = "".join(
        f'<span><i class="sw" style="background:{colour}"></i>{escape(state)}</span>'
        for state, colour in svg.STATE_COLOURS.items()
    )
    return f'<p class="legend">{spans} (degraded: slow or just back)</p>'


def _table(report: Report) -> str:
    rows = "".join(
        f'<tr data-figure="{escape(f.name)}" data-subject="{escape(f.subject)}" '
        f'data-status="{f.status}"><td>{escape(f.name)}</td><td>{escape(f.subject)}</td>'
        f'<td>{escape(f.target)}</td><td class="num">{escape(value_text(f))}</td>'
        f'<td class="{f.status.split()[0]}">{f.status}</td></tr>'
        for f in report.figures
    )
    head = "<tr><th>figure</th><th>of</th><th>target</th><th>value</th><th>status</th></tr>"
    return f'<table id="slo-table"><thead>{head}</thead><tbody>{rows}</tbody></table>'


def _details(report: Report) -> str:
    lines = []
    for link in report.links:
        total = sum(o.ms for o in link.outages) / 1000
        lines.append(f"{link.link}: {len(link.outages)} outage(s), {total:.1f} s in all")
    for side in ("evm", "bybit"):
        spread = report.failover_ms(side)
        if spread.count:
            lines.append(f"failover {side}: {spread.count} event(s), mean {spread.mean:.0f} ms, "
                         f"p95 {spread.p95:.0f} ms")  # fmt: skip
    persist = report.persist_ms
    if persist.count:
        lines.append(f"persist: {persist.count} item(s), mean {persist.mean:.1f} ms, "
                     f"p50 {persist.p50:.0f} ms, max {persist.max:.0f} ms")  # fmt: skip
    for q in report.queued:
        lines.append(f"queued age {q.kind}/{q.strategy}: p50 {q.age_s.p50:.1f} s, p95 "
                     f"{q.age_s.p95:.1f} s, max {q.age_s.max:.1f} s; {q.fates}")  # fmt: skip
    return "<ul>" + "".join(f"<li>{escape(line)}</li>" for line in lines) + "</ul>"


def _audit(audit: AuditVerdict | None) -> str:
    if audit is None:
        return '<p id="audit-verdict" data-ok="unknown">Not verified in this report.</p>'
    if audit.ok:
        return (
            f'<p id="audit-verdict" data-ok="true" class="ok">{audit.entries} entries, verified '
            "offline with the public key alone.</p>"
        )
    problem = escape(audit.problem or "unknown problem")
    return f'<p id="audit-verdict" data-ok="false" class="bad">FAILED: {problem}</p>'


def _facts(facts: Mapping[str, str]) -> str:
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in facts.items())
    return f'<table id="drill-facts">{rows}</table>'


def _verdict(passed: bool) -> str:
    return '<b class="PASS">PASS</b>' if passed else '<b class="FAIL">FAIL</b>'


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
