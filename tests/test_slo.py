"""The SLO figures as pure functions of the record (airlock.slo.figures, records, render)."""

from __future__ import annotations

from typing import Any

import pytest

from airlock.cli.slo_cmds import duration_s, moment, window_of
from airlock.errors import InvalidInput
from airlock.slo import Targets, Timeline, Window, report
from airlock.slo.figures import Spread, prune_point, rank
from airlock.slo.html import AuditVerdict, document
from airlock.slo.render import as_json, render_text

T0 = 1_000_000


class Log:
    """Audit entries as the store writes them, with the fields the figures read."""

    def __init__(self) -> None:
        self.timeline = Timeline()
        self.seq = 0

    def add(self, at: int, type_: str, data: dict[str, Any], item: str | None = None) -> None:
        entry = {"seq": self.seq, "time_ms": T0 + at, "type": type_, "item": item, "data": data}
        self.timeline.feed(entry)
        self.seq += 1

    def link(self, at: int, relay: str, old: str, new: str, **extra: Any) -> None:
        self.add(at, "relay.health", {"relay": relay, "from": old, "to": new, **extra})

    def enqueue(self, at: int, item: str, kind: str = "evm_tx", received: int | None = None,
                strategy: str = "default") -> None:  # fmt: skip
        data = {"kind": kind, "strategy": strategy, "created_ms": T0 + at}
        if received is not None:
            data["received_ms"] = T0 + received
        self.add(at, "item.enqueued", data, item)

    def move(self, at: int, item: str, old: str, new: str) -> None:
        self.add(at, "item.transition", {"from": old, "to": new, "reason": "test"}, item)

    def sent(self, at: int, item: str, outcome: str = "accepted", to: str = "sent") -> None:
        attempt = {"relay": "a", "outcome": outcome, "at_ms": T0 + at}
        row = {"item": item, "variant": 0, "attempts": [attempt], "from": "sending", "to": to}
        self.add(at, "items.sent", {"items": [row]})

    def figures(self, end: int, **targets: Any):
        return report(self.timeline, Window(T0, T0 + end), Targets(**targets))


# -- availability and outages ----------------------------------------------------------------


def test_availability_counts_only_watched_time_and_names_each_outage():
    log = Log()
    log.link(100, "a", "unknown", "up")  # watched from here: the first 100 ms do not count
    log.link(400, "a", "up", "down")
    log.link(600, "a", "down", "degraded")  # degraded (slow, just back) is available
    log.link(700, "a", "degraded", "up")
    log.link(900, "a", "up", "down")
    out = log.figures(1100)
    (link,) = out.links
    assert link.watched_ms == 1000 and link.available_ms == 300 + 300
    assert link.availability_pct == pytest.approx(60.0)
    assert [(o.start_ms - T0, o.end_ms - T0, o.ongoing) for o in link.outages] == [
        (400, 600, False),
        (900, 1100, True),
    ]
    (row,) = [f for f in out.figures if f.name == "availability"]
    assert row.status == "FAIL" and row.subject == "a"


def test_a_restart_inside_an_outage_is_one_outage_and_fleet_links_are_apart():
    log = Log()
    log.link(0, "a", "unknown", "down", by="east")
    log.link(500, "a", "unknown", "down", by="east")  # restarted, still down
    log.link(800, "a", "down", "up", by="east")
    log.link(0, "a", "unknown", "up", by="west")
    out = log.figures(1000)
    east, west = out.links
    assert (east.link, west.link) == ("east/a", "west/a")
    assert [(o.start_ms - T0, o.end_ms - T0) for o in east.outages] == [(0, 800)]
    assert west.availability_pct == 100.0


def test_a_window_clips_the_segments_and_a_link_never_seen_has_no_figure():
    log = Log()
    log.link(0, "a", "unknown", "down")
    log.link(1000, "a", "down", "up")
    out = report(log.timeline, Window(T0 + 500, T0 + 1500), Targets())
    (link,) = out.links
    assert link.watched_ms == 1000 and link.available_ms == 500
    assert Log().figures(1000).links == ()


# -- failover ------------------------------------------------------------------------------


def test_return_clock_runs_from_the_first_link_back_to_the_first_accepted_send():
    log = Log()
    log.link(0, "a", "unknown", "down")
    log.link(0, "b", "unknown", "down")
    log.enqueue(10, "i1")
    log.link(1000, "b", "down", "degraded")
    log.link(1100, "a", "down", "degraded")  # a second link back: no second clock
    log.sent(1040, "i1")  # the attempt's own time counts, not the entry's
    out = log.figures(2000)
    (event,) = out.failovers
    assert (event.side, event.cause, event.ms) == ("evm", "return", 40)
    assert out.failover_ms("evm").p95 == 40


def test_switch_clock_when_a_link_goes_down_with_another_up_and_work_waiting():
    log = Log()
    log.link(0, "a", "unknown", "up")
    log.link(0, "b", "unknown", "up")
    log.enqueue(10, "i1")
    log.link(100, "a", "up", "down")
    log.add(2600, "items.sent", {"items": [{"item": "i1", "variant": 0, "to": "sent",
        "attempts": [{"relay": "b", "outcome": "transient", "at_ms": T0 + 2500}]}]})  # fmt: skip
    log.sent(2700, "i1")
    out = log.figures(3000, failover_ms=2000)
    (event,) = out.failovers
    assert (event.cause, event.ms) == ("switch", 2600)  # the transient answer did not stop it
    (row,) = [f for f in out.figures if f.name == "failover p95"]
    assert (row.subject, row.status) == ("evm", "FAIL")


@pytest.mark.parametrize(
    ("case", "events", "count"),
    [
        ("no work waiting: no clock", [("link", "a", "up", "down")], 0),
        (
            "the last link going is no switch",
            [("enqueue",), ("link", "b", "up", "down"), ("link", "a", "up", "down")],
            1,
        ),
    ],
)
def test_when_no_clock_starts_or_it_stays_unresolved(case, events, count):
    log = Log()
    log.link(0, "a", "unknown", "up")
    log.link(0, "b", "unknown", "up")
    at = 10
    for event in events:
        at += 10
        if event[0] == "enqueue":
            log.enqueue(at, "i1")
        else:
            log.link(at, *event[1:])
    out = log.figures(1000)
    assert len(out.failovers) == count, case
    assert all(f.ms is None for f in out.failovers), "nothing was sent: unresolved"


def test_bybit_sends_are_the_venue_taking_the_order():
    log = Log()
    log.link(0, "bybit", "unknown", "down", side="bybit")
    log.enqueue(5, "o1", kind="bybit_order")
    log.link(300, "bybit", "down", "up", side="bybit")
    log.move(310, "o1", "queued", "sending")
    log.move(420, "o1", "sending", "sent")
    out = log.figures(1000)
    (event,) = out.failovers
    assert (event.side, event.ms) == ("bybit", 120)


# -- persist and queued age ----------------------------------------------------------------


def test_persist_is_the_entry_time_minus_the_request_time():
    log = Log()
    for n, took in enumerate([3, 5, 9, 40, 70]):
        log.enqueue(100 + took, f"i{n}", received=100)
    log.enqueue(300, "old")  # an older writer's entry: no received_ms, not counted
    out = log.figures(1000, persist_ms=50)
    assert out.persist_ms == Spread(5, 25.4, 9, 70, 70)
    (row,) = [f for f in out.figures if f.name == "persist p95"]
    assert (row.value, row.status) == (70, "FAIL")


def test_queued_age_and_the_share_within_the_strategys_bound():
    log = Log()
    bounds = {"bound_s": 1.0, "strategy_bounds_s": (("slow", 10.0),)}
    log.enqueue(0, "fast", strategy="mm")
    log.move(500, "fast", "queued", "sent")  # executed in 0.5 s: within 1 s
    log.enqueue(0, "late", strategy="mm")
    log.move(1500, "late", "queued", "sent")  # executed, but after 1.5 s
    log.enqueue(0, "gone", strategy="mm")
    log.move(800, "gone", "queued", "expired")  # expired within the bound: a success
    log.enqueue(0, "mine", strategy="mm")
    log.move(100, "mine", "queued", "cancelled")  # withdrawn by its owner: left out
    log.enqueue(2500, "young", strategy="mm")  # waiting 0.5 s at the end: not decided yet
    log.enqueue(0, "stuck", strategy="mm")  # waiting 3 s at the end: counts against
    log.enqueue(0, "patient", strategy="slow")
    out = log.figures(3000, **bounds)
    slow, mm = sorted(out.queued, key=lambda q: q.strategy != "slow")
    assert (mm.decided, mm.within) == (4, 2) and mm.within_pct == 50.0
    assert mm.fates == {"executed": 2, "expired": 1, "withdrawn": 1, "failed": 0, "waiting": 2}
    assert mm.age_s.max == 3.0 and mm.age_s.count == 6
    assert (slow.bound_s, slow.decided, slow.within_pct) == (10.0, 0, None)
    statuses = {f.subject: f.status for f in out.figures if f.name == "within bound"}
    assert statuses == {"evm_tx/mm": "FAIL", "evm_tx/slow": "NO DATA"}


def test_nearest_rank_percentiles():
    assert rank([1, 2, 3, 4], 0.5) == 2
    assert rank([1, 2, 3, 4], 0.95) == 4
    assert rank([7], 0.95) == 7
    assert Spread.of([]) == Spread(0, None, None, None, None)


# -- the outputs ---------------------------------------------------------------------------


def test_json_text_and_html_carry_every_figure_and_escape_names():
    log = Log()
    log.link(0, "<b>evil</b>", "unknown", "up")
    log.enqueue(10, "i1", received=5)
    log.move(20, "i1", "queued", "sent")
    out = log.figures(100)
    data = as_json(out)
    assert data["schema"] == "airlock-slo/1" and data["passed"] is True
    assert {f["name"] for f in data["figures"]} == {"availability", "persist p95", "within bound"}
    assert data["persist_ms"]["p50"] == 5
    text = render_text(out)
    assert "availability" in text and "every figure met its target" in text
    page = document(out, log.timeline, title="t", audit=AuditVerdict(True, 3))
    assert "<b>evil</b>" not in page and "&lt;b&gt;evil&lt;/b&gt;" in page
    assert 'id="slo-table"' in page and page.count('data-plot="') == 2
    assert "http" not in page.replace("http://www.w3.org/2000/svg", ""), "no external asset"


# -- the window options --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("since", "start", "end", "want"),
    [
        (None, None, None, (T0 - 86_400_000, T0)),
        ("90m", None, None, (T0 - 5_400_000, T0)),
        ("1.5h", None, "2000000", (2_000_000 - 5_400_000, 2_000_000)),
        (None, "1970-01-01T00:10:00Z", "1970-01-01T00:20:00", (600_000, 1_200_000)),
    ],
)
def test_window_options(since, start, end, want):
    assert window_of(since, start, end, now=T0) == want


@pytest.mark.parametrize(
    ("since", "start", "end", "says"),
    [
        ("24", None, None, "--since must be a duration"),
        ("0h", None, None, "--since must be a duration"),
        ("1h", "5", None, "not both"),
        (None, "yesterday", None, "--from must be Unix milliseconds or ISO 8601"),
        (None, "2000", "1000", "the window is empty"),
    ],
)
def test_bad_window_options_are_refused_clearly(since, start, end, says):
    with pytest.raises(InvalidInput, match=says):
        window_of(since, start, end, now=T0)


def test_duration_and_moment_units():
    assert duration_s("7d") == 7 * 86400
    assert moment("--to", "1970-01-01T00:00:01+01:00") == -3_599_000


def test_a_pruned_timeline_gives_the_same_figures_for_a_later_window():
    """The live gauges prune what their window no longer needs, then read on: the figures
    must be those of the whole log."""

    def early(log: Log) -> None:
        log.link(0, "a", "unknown", "up")
        log.link(0, "b", "unknown", "up")
        log.enqueue(10, "done", received=5)
        log.move(20, "done", "queued", "sent")
        log.enqueue(30, "stuck")  # still waiting when the window starts
        log.link(500, "a", "up", "down")  # a switch clock starts: work waits, b is up

    def late(log: Log) -> None:
        log.link(1500, "a", "down", "up")
        log.link(2000, "b", "up", "down")
        log.sent(2300, "stuck")  # stops the clock of 500
        log.enqueue(2400, "next")
        log.link(2500, "a", "up", "down")
        log.link(2600, "b", "down", "up")  # a return clock
        log.sent(2650, "next")

    whole, pruned = Log(), Log()
    for log in (whole, pruned):
        early(log)
    window = Window(T0 + 1000, T0 + 3000)
    cut = prune_point(pruned.timeline, window.from_ms)
    assert cut == T0 + 500  # the running clock's record stays whole
    pruned.timeline.prune(cut)
    assert "done" not in pruned.timeline.items and "stuck" in pruned.timeline.items
    for log in (whole, pruned):
        late(log)
    got = report(pruned.timeline, window, Targets())
    assert got == report(whole.timeline, window, Targets())
    assert [(f.cause, f.ms) for f in got.failovers] == [("return", 50)]  # 500's is before
