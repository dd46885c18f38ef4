"""The SLO figures: pure functions of a :class:`~airlock.slo.records.Timeline` and a window.

Definitions (docs/observability.md says the same for operators):

* **availability** of a link: the share of the time it was watched in the window during
  which its recorded state was ``up`` or ``degraded``. A link is watched from its first
  entry after a broadcaster started (``from`` "unknown"); time before that is not counted
  either way. An **outage** is a maximal stretch of watched time in ``down`` or
  ``disabled``; one still going at the window's end is ``ongoing``.
* **time to failover**, per side (EVM, Bybit): from the moment the record shows a path
  again for waiting work to the first send a relay (or the venue) accepted after it. Two
  causes start the clock: a link goes down while another link of the side is up and items
  wait (``switch``), or the first link of a side comes back while items wait (``return``:
  the drill's "link return -> first send"). A clock no accepted send stops before the
  side loses every link again, or before the window ends, is ``unresolved``.
* **time to persist**, per item: from the request reaching the store (``received_ms``)
  to its ``item.enqueued`` entry, written in the same transaction (signing included,
  the commit's fsync not). Every item counts: airlock persists before any send, outage
  or not.
* **queued age**, per kind and strategy: from an item's creation to its fate
  (executed: a relay or the venue took it; expired; withdrawn; failed), or to the
  window's end for items still waiting. **Within bound**: the share of decided items
  executed or expired within the strategy's bound; withdrawn items (cancelled by their
  owner) and items still waiting inside the bound are left out.

Percentiles are nearest-rank: the value below which ``q`` of the sample lies, taken
from the sample itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from airlock.config.slo import SloConfig
from airlock.slo.records import AVAILABLE, ItemLife, LinkChange, Mark, Side, Timeline

Status = Literal["PASS", "FAIL", "NO DATA"]
Cause = Literal["switch", "return"]


@dataclass(frozen=True)
class Window:
    from_ms: int
    to_ms: int

    def clip(self, start: int, end: int) -> tuple[int, int]:
        return max(start, self.from_ms), min(end, self.to_ms)


@dataclass(frozen=True)
class Targets:
    """The playbook's targets (``[slo]`` in airlock.toml)."""

    availability_pct: float = 99.95
    failover_ms: float = 2000.0
    persist_ms: float = 50.0
    within_bound_pct: float = 95.0
    bound_s: float = 300.0
    strategy_bounds_s: tuple[tuple[str, float], ...] = ()

    def bound_for(self, strategy: str) -> float:
        return dict(self.strategy_bounds_s).get(strategy, self.bound_s)

    @classmethod
    def of(cls, config: SloConfig) -> Targets:
        return cls(
            availability_pct=config.availability_pct,
            failover_ms=config.failover_seconds * 1000,
            persist_ms=config.persist_ms,
            within_bound_pct=config.within_bound_pct,
            bound_s=config.bound_seconds,
            strategy_bounds_s=config.strategy_bounds,
        )


@dataclass(frozen=True)
class Outage:
    start_ms: int
    end_ms: int
    ongoing: bool

    @property
    def ms(self) -> int:
        return self.end_ms - self.start_ms


@dataclass(frozen=True)
class LinkFigures:
    link: str
    side: Side
    watched_ms: int
    available_ms: int
    outages: tuple[Outage, ...]
    segments: tuple[tuple[int, int, str], ...]  # (start, end, state) inside the window

    @property
    def availability_pct(self) -> float | None:
        return None if self.watched_ms == 0 else 100.0 * self.available_ms / self.watched_ms


@dataclass(frozen=True)
class Failover:
    side: Side
    cause: Cause
    start_ms: int
    sent_ms: int | None  # None: unresolved

    @property
    def ms(self) -> int | None:
        return None if self.sent_ms is None else self.sent_ms - self.start_ms


@dataclass(frozen=True)
class Spread:
    """A sample's size, mean and nearest-rank percentiles (None when empty)."""

    count: int
    mean: float | None
    p50: float | None
    p95: float | None
    max: float | None

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        ordered = sorted(values)
        if not ordered:
            return cls(0, None, None, None, None)
        mean = sum(ordered) / len(ordered)
        return cls(len(ordered), mean, rank(ordered, 0.5), rank(ordered, 0.95), ordered[-1])


@dataclass(frozen=True)
class QueuedAge:
    kind: str
    strategy: str
    bound_s: float
    age_s: Spread
    fates: dict[str, int]  # executed, expired, withdrawn, failed, waiting
    within: int
    decided: int

    @property
    def within_pct(self) -> float | None:
        return None if self.decided == 0 else 100.0 * self.within / self.decided


@dataclass(frozen=True)
class Figure:
    """One line of the SLO table: what, of what, its target, its value, the verdict."""

    name: str
    subject: str
    target: str
    value: float | None
    unit: str
    status: Status


@dataclass(frozen=True)
class Report:
    window: Window
    targets: Targets
    links: tuple[LinkFigures, ...]
    failovers: tuple[Failover, ...]
    persist_ms: Spread
    queued: tuple[QueuedAge, ...]
    figures: tuple[Figure, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return all(f.status != "FAIL" for f in self.figures)

    def failover_ms(self, side: Side | None = None) -> Spread:
        return Spread.of(
            f.ms for f in self.failovers if f.ms is not None and side in (None, f.side)
        )


def rank(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty sample."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# -- links ------------------------------------------------------------------------------


def link_figures(changes: Sequence[LinkChange], window: Window) -> list[LinkFigures]:
    by_link: dict[str, list[LinkChange]] = {}
    for change in changes:
        by_link.setdefault(change.link, []).append(change)
    return [_one_link(link, rows, window) for link, rows in sorted(by_link.items())]


def _one_link(link: str, rows: list[LinkChange], window: Window) -> LinkFigures:
    segments: list[tuple[int, int, str]] = []
    for change, nxt in zip(rows, [*rows[1:], None], strict=True):
        end = window.to_ms if nxt is None else nxt.at_ms  # held until the next record
        start, stop = window.clip(change.at_ms, end)
        if stop > start:
            segments.append((start, stop, change.new))
    watched = sum(b - a for a, b, _ in segments)
    available = sum(b - a for a, b, s in segments if s in AVAILABLE)
    return LinkFigures(
        link, rows[0].side, watched, available, _outages(segments, window), tuple(segments)
    )


def _outages(segments: list[tuple[int, int, str]], window: Window) -> tuple[Outage, ...]:
    """Runs of unavailable segments, merged when they touch (a restart inside an outage)."""
    runs: list[list[int]] = []
    for start, end, state in segments:
        if state in AVAILABLE:
            continue
        if runs and runs[-1][1] == start:
            runs[-1][1] = end
        else:
            runs.append([start, end])
    return tuple(Outage(a, b, b >= window.to_ms) for a, b in runs)


# -- failover ---------------------------------------------------------------------------


def failovers(timeline: Timeline, window: Window) -> list[Failover]:
    """Every clock started and stopped by the rules above, in time order."""
    events: list[tuple[int, int, LinkChange | Mark]] = [(c.at_ms, 0, c) for c in timeline.links]
    events += [(m.at_ms, 1, m) for m in timeline.marks if m.what in ("accepted", "waiting")]
    events.sort(key=lambda e: (e[0], e[1]))
    up: dict[Side, set[str]] = {}
    waiting: dict[Side, int] = {}
    open_: dict[Side, tuple[Cause, int]] = {}
    done: list[Failover] = []
    for at, _, event in events:
        if isinstance(event, LinkChange):
            _link_event(event, up, waiting, open_, done)
        elif event.what == "waiting":
            waiting[event.side] = event.value
        elif event.side in open_:
            cause, start = open_.pop(event.side)
            done.append(Failover(event.side, cause, start, at))
    done += [Failover(side, cause, start, None) for side, (cause, start) in open_.items()]
    return sorted(
        (f for f in done if window.from_ms <= f.start_ms <= window.to_ms),
        key=lambda f: f.start_ms,
    )


def _link_event(
    change: LinkChange,
    up: dict[Side, set[str]],
    waiting: dict[Side, int],
    open_: dict[Side, tuple[Cause, int]],
    done: list[Failover],
) -> None:
    links = up.setdefault(change.side, set())
    was_up = change.link in links
    now_up = change.new in AVAILABLE
    (links.add if now_up else links.discard)(change.link)
    side, work = change.side, waiting.get(change.side, 0) > 0
    if not links and side in open_:  # every link gone: this clock cannot stop in time
        cause, start = open_.pop(side)
        done.append(Failover(side, cause, start, None))
    if side in open_ or not work:
        return
    if was_up and not now_up and links:
        open_[side] = ("switch", change.at_ms)
    elif now_up and not was_up and links == {change.link}:
        open_[side] = ("return", change.at_ms)


def prune_point(timeline: Timeline, before_ms: int) -> int:
    """Where :meth:`Timeline.prune` may cut for windows starting at ``before_ms``: there,
    or at the start of a failover clock still running (its record must stay whole)."""
    running = [
        f.start_ms
        for f in failovers(timeline, Window(-(2**62), 2**62))
        if f.sent_ms is None and f.start_ms < before_ms
    ]
    return min([before_ms, *running])


# -- items ------------------------------------------------------------------------------


def persist_ms(items: Iterable[ItemLife], window: Window) -> Spread:
    return Spread.of(
        float(i.persisted_ms - i.received_ms)
        for i in items
        if i.received_ms is not None and window.from_ms <= i.persisted_ms <= window.to_ms
    )


def queued_ages(items: Iterable[ItemLife], window: Window, targets: Targets) -> list[QueuedAge]:
    groups: dict[tuple[str, str], list[ItemLife]] = {}
    for life in items:
        if window.from_ms <= life.created_ms <= window.to_ms:
            groups.setdefault((life.kind, life.strategy), []).append(life)
    return [
        _ages(kind, strategy, rows, window, targets.bound_for(strategy))
        for (kind, strategy), rows in sorted(groups.items())
    ]


def _ages(
    kind: str, strategy: str, rows: list[ItemLife], window: Window, bound_s: float
) -> QueuedAge:
    fates = {"executed": 0, "expired": 0, "withdrawn": 0, "failed": 0, "waiting": 0}
    ages, within, decided = [], 0, 0
    bound_ms = bound_s * 1000
    for life in rows:
        left = life.left_ms if life.left_ms is not None and life.left_ms <= window.to_ms else None
        fate = life.fate if left is not None else None
        age = (left if left is not None else window.to_ms) - life.created_ms
        ages.append(age / 1000)
        fates[fate or "waiting"] += 1
        if fate == "withdrawn" or (fate is None and age <= bound_ms):
            continue
        decided += 1
        within += fate in ("executed", "expired") and age <= bound_ms
    return QueuedAge(kind, strategy, bound_s, Spread.of(ages), fates, within, decided)


# -- the table --------------------------------------------------------------------------


def report(timeline: Timeline, window: Window, targets: Targets) -> Report:
    """Every figure of the window, each against its target."""
    links = tuple(link_figures(timeline.links, window))
    moves = tuple(failovers(timeline, window))
    persist = persist_ms(timeline.items.values(), window)
    queued = tuple(queued_ages(timeline.items.values(), window, targets))
    bare = Report(window, targets, links, moves, persist, queued)
    figures = [*_link_rows(links, targets), *_failover_rows(bare, targets)]
    figures.append(_at_most("persist p95", "every item", persist.p95, targets.persist_ms, "ms"))
    figures += [_queued_row(q, targets) for q in queued]
    return Report(window, targets, links, moves, persist, queued, tuple(figures))


def _link_rows(links: Sequence[LinkFigures], targets: Targets) -> list[Figure]:
    rows = []
    for link in links:
        value = link.availability_pct
        status: Status = "NO DATA" if value is None else _verdict(value >= targets.availability_pct)
        rows.append(
            Figure("availability", link.link, f">= {targets.availability_pct:g} %", value, "%",
                   status)
        )  # fmt: skip
    return rows


def _failover_rows(bare: Report, targets: Targets) -> list[Figure]:
    rows = []
    for side in sorted({f.side for f in bare.failovers} | {"evm", "bybit"}):
        spread = bare.failover_ms(side)
        if spread.count == 0 and not any(f.side == side for f in bare.failovers):
            continue
        rows.append(_at_most("failover p95", side, spread.p95, targets.failover_ms, "ms"))
    return rows


def _queued_row(q: QueuedAge, targets: Targets) -> Figure:
    value = q.within_pct
    status: Status = "NO DATA" if value is None else _verdict(value >= targets.within_bound_pct)
    target = f">= {targets.within_bound_pct:g} % within {q.bound_s:g} s"
    return Figure("within bound", f"{q.kind}/{q.strategy}", target, value, "%", status)


def _at_most(name: str, subject: str, value: float | None, target: float, unit: str) -> Figure:
    status: Status = "NO DATA" if value is None else _verdict(value <= target)
    return Figure(name, subject, f"<= {target:g} {unit}", value, unit, status)


def _verdict(ok: bool) -> Status:
    return "PASS" if ok else "FAIL"
