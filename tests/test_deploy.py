"""deploy/: the Grafana dashboard, the Prometheus rules and scrape config, the systemd unit.

What "/metrics really exports" comes from a real scrape: the service's own ``Metrics`` over
a real SQLite queue (its data keys wrapped by the SoftHSM KEK of tests/conftest.py), served
on a loopback port, fed one observation of each kind and fetched over HTTP, then parsed by
prometheus_client's own parser. Every PromQL expression of the dashboard (panel targets and
``label_values()`` variable queries) and of the alert rules is reduced by the small PromQL
reader below to the metric names and label names it uses, and each must be in that scrape
(``job`` and ``instance`` are the target labels Prometheus adds, ``up`` its own per-target
series). The reader is pure and table-tested here, negative cases included.

Nothing here needs Grafana, Prometheus or promtool; ``systemd-analyze verify`` is used
when the machine has it.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from airlock.audit.entries import ITEM_ENQUEUED, ITEMS_SENT, RELAY_HEALTH
from airlock.broadcaster.metrics import Metrics
from airlock.broadcaster.runner import STOP_S
from airlock.broadcaster.slo_gauges import SloCollector
from airlock.cli.main import cli
from airlock.config import FailoverConfig, HealthConfig, ServiceConfig, SloConfig
from airlock.queue.kek import HsmKek
from airlock.queue.store import Store

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "airlock.json"
RULES = DEPLOY / "prometheus" / "airlock.rules.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
UNIT = DEPLOY / "systemd" / "airlock.service"
RUNBOOK = ROOT / "docs" / "runbook.md"
BOUND = 5.0  # seconds for the scrape

# The SLO gauges the SLO work adds to Metrics; until it registers them, the dashboard's SLO
# row and the SLO rule are set aside (and test_slo_gauges_are_exported is skipped).
SLO_FAMILIES = frozenset({"airlock_slo_value", "airlock_slo_target", "airlock_slo_met"})
SLO_NAMES = ("availability", "failover_p95", "persist_p95", "within_bound")

# ---------------------------------------------------------------------------------------
# A small PromQL reader: enough for the expressions in deploy/, strict about the rest.


class PromQLError(ValueError):
    """An expression the reader cannot take apart (so it cannot vouch for it)."""


class Tok(NamedTuple):
    kind: str  # ident, string, number, duration, range, op, punct
    text: str
    pos: int


_UNIT = r"(?:ms|[smhdwy])"
_DURATION = rf"(?:\d+{_UNIT})+"
_GRAFANA_VAR = r"\$(?:\w+|\{\w+\})"
_TOKEN = re.compile(
    rf"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`[^`]*`)
  | (?P<bad_string>["'`])
  | (?P<range>\[[^\[\]]*\])
  | (?P<duration>{_DURATION}(?![\w.]))
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=@])
  | (?P<punct>[(){{}},])
    """,
    re.VERBOSE,
)
# inside [...]: a duration or a Grafana interval variable, optionally a subquery step
_RANGE_PART = rf"(?:{_DURATION}|{_GRAFANA_VAR})"
_RANGE = re.compile(rf"\[\s*{_RANGE_PART}\s*(?::\s*{_RANGE_PART}?\s*)?\]")
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "topk", "bottomk"}
    | {"quantile"}
)
# PromQL's functions that take no label names as arguments (label_replace, label_join,
# count_values and sort_by_label do: refused, since the check below could not see them)
FUNCTIONS = frozenset(
    {"abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max"}
    | {"clamp_min", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "delta"}
    | {"deriv", "exp", "floor", "histogram_avg", "histogram_count", "histogram_fraction"}
    | {"histogram_quantile", "histogram_sum", "hour", "idelta", "increase", "irate", "ln"}
    | {"log2", "log10", "minute", "month", "predict_linear", "rate", "resets", "round"}
    | {"scalar", "sgn", "sort", "sort_desc", "sqrt", "time", "timestamp", "vector", "year"}
    | {"avg_over_time", "min_over_time", "max_over_time", "sum_over_time"}
    | {"count_over_time", "quantile_over_time", "stddev_over_time", "stdvar_over_time"}
    | {"last_over_time", "present_over_time"}
)
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
WORDS = frozenset({"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"})
MATCH_OPS = frozenset({"=", "!=", "=~", "!~"})


def tokenize(expr: str) -> list[Tok]:
    """The tokens of ``expr``, without spaces and comments. Grafana variables may appear
    inside strings and ranges (``[$__rate_interval]``), nowhere else."""
    out: list[Tok] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise PromQLError(f"unexpected {expr[pos]!r} at {pos} in {expr!r}")
        kind = m.lastgroup
        assert kind is not None
        text = m.group()
        if kind == "bad_string":
            raise PromQLError(f"unterminated string at {pos} in {expr!r}")
        if kind == "range" and not _RANGE.fullmatch(text):
            raise PromQLError(f"bad range {text} at {pos} in {expr!r}")
        if kind not in ("space", "comment"):
            out.append(Tok(kind, text, pos))
        pos = m.end()
    return out


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str


@dataclass(frozen=True)
class Selector:
    metric: str | None  # None: a bare {...} selector
    matchers: tuple[Matcher, ...] = ()


@dataclass
class Refs:
    """What an expression refers to: its selectors, and the labels of its by/without/on/
    ignoring/group_left/group_right clauses (``label_values``' label goes there too)."""

    selectors: list[Selector] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)
    without: bool = False  # some grouping drops its labels instead of keeping them

    @property
    def metrics(self) -> set[str]:
        return {s.metric for s in self.selectors if s.metric is not None}

    @property
    def labels(self) -> set[str]:
        return {m.label for s in self.selectors for m in s.matchers} | self.grouping


def unquote(text: str) -> str:
    """A PromQL string literal's value (Go escapes are Python's, for what deploy/ uses)."""
    if text.startswith("`"):
        return text[1:-1]
    value = ast.literal_eval(text)
    assert isinstance(value, str)
    return value


def _is(tok: Tok | None, *texts: str) -> bool:
    return tok is not None and tok.kind in ("punct", "op") and tok.text in texts


def _at(toks: list[Tok], i: int) -> Tok | None:
    return toks[i] if i < len(toks) else None


def _label_list(toks: list[Tok], i: int) -> tuple[set[str], int]:
    """``( label, ... )`` from ``toks[i]``; the labels and the index after ``)``."""
    if not _is(_at(toks, i), "("):
        raise PromQLError(f"expected ( after {toks[i - 1].text!r}")
    labels: set[str] = set()
    i += 1
    while not _is(_at(toks, i), ")"):
        tok = _at(toks, i)
        if tok is None or tok.kind != "ident" or not _LABEL.fullmatch(tok.text):
            raise PromQLError(f"expected a label name in a grouping, got {tok}")
        labels.add(tok.text)
        i += 1
        if _is(_at(toks, i), ","):
            i += 1
        elif not _is(_at(toks, i), ")"):
            raise PromQLError(f"expected , or ) in a grouping, got {_at(toks, i)}")
    return labels, i + 1


def _matchers(toks: list[Tok], i: int) -> tuple[tuple[Matcher, ...], int]:
    """``{ label op "value", ... }`` from ``toks[i]`` (the ``{``)."""
    found: list[Matcher] = []
    i += 1
    while not _is(_at(toks, i), "}"):
        label, op, value = _at(toks, i), _at(toks, i + 1), _at(toks, i + 2)
        if label is None or label.kind != "ident" or not _LABEL.fullmatch(label.text):
            raise PromQLError(f"expected a label name in a selector, got {label}")
        if op is None or op.kind != "op" or op.text not in MATCH_OPS:
            raise PromQLError(f"expected one of = != =~ !~ after {label.text}, got {op}")
        if value is None or value.kind != "string":
            raise PromQLError(f"expected a string after {label.text}{op.text}, got {value}")
        found.append(Matcher(label.text, op.text, unquote(value.text)))
        i += 3
        if _is(_at(toks, i), ","):
            i += 1
        elif not _is(_at(toks, i), "}"):
            raise PromQLError(f"expected , or }} in a selector, got {_at(toks, i)}")
    return tuple(found), i + 1


def references(expr: str) -> Refs:
    """The metric names, matchers and grouping labels ``expr`` uses."""
    toks = tokenize(expr)
    depth = 0
    for tok in toks:
        depth += _is(tok, "(") - _is(tok, ")")
        if depth < 0:
            raise PromQLError(f"unbalanced ) at {tok.pos} in {expr!r}")
    if depth:
        raise PromQLError(f"unbalanced ( in {expr!r}")
    refs = Refs()
    i = 0
    while i < len(toks):
        tok, nxt = toks[i], _at(toks, i + 1)
        if tok.kind == "ident":
            word = tok.text.lower()
            if word in GROUPING:
                labels, i = _label_list(toks, i + 1)
                refs.grouping |= labels
                refs.without = refs.without or word == "without"
                continue
            if word in WORDS:
                i += 1
                continue
            aggregation_by = (
                word in AGGREGATIONS
                and nxt is not None
                and nxt.kind == "ident"
                and nxt.text.lower() in ("by", "without")
            )
            if _is(nxt, "(") or aggregation_by:
                if word not in FUNCTIONS | AGGREGATIONS:
                    raise PromQLError(f"unknown or unsupported function {tok.text}()")
                i += 1
                continue
            matchers: tuple[Matcher, ...] = ()
            i += 1
            if _is(nxt, "{"):
                matchers, i = _matchers(toks, i)
            refs.selectors.append(Selector(tok.text, matchers))
            continue
        if _is(tok, "{"):
            matchers, i = _matchers(toks, i)
            refs.selectors.append(Selector(None, matchers))
            continue
        if _is(tok, "}"):
            raise PromQLError(f"unbalanced }} at {tok.pos} in {expr!r}")
        i += 1
    return refs


def label_values_refs(query: str) -> Refs:
    """Grafana's variable query ``label_values([selector, ]label)`` as references."""
    m = re.fullmatch(r"\s*label_values\((.*)\)\s*", query, re.DOTALL)
    if m is None:
        raise PromQLError(f"not a label_values() query: {query!r}")
    inner = m.group(1)
    selector, comma, label = inner.rpartition(",")
    label = label.strip()
    if not _LABEL.fullmatch(label):
        raise PromQLError(f"bad label {label!r} in {query!r}")
    refs = references(selector) if comma else Refs()
    refs.grouping.add(label)
    return refs


# ---------------------------------------------------------------------------------------
# What a scrape exports, and the check of references against it.

TARGET_LABELS = frozenset({"job", "instance"})  # Prometheus adds these to every target
SYNTHETIC = frozenset({"up"})  # ... and makes this series per target itself
CLOSED_LABELS = frozenset({"state", "kind", "delivered"})  # the scrape lists every value


@dataclass(frozen=True)
class Exports:
    series: Mapping[str, frozenset[str]]  # sample name -> its label names
    values: Mapping[tuple[str, str], frozenset[str]]  # (sample name, label) -> values
    empty: frozenset[str] = frozenset()  # families with HELP/TYPE but no sample
    target_labels: frozenset[str] = TARGET_LABELS
    synthetic: frozenset[str] = SYNTHETIC

    def labels_of(self, metric: str) -> frozenset[str] | None:
        if metric in self.synthetic:
            return self.target_labels
        found = self.series.get(metric)
        return None if found is None else found | self.target_labels


def exports_of(text: str) -> Exports:
    """Every sample name with its labels and values, as the exposition has them
    (``_total``, ``_bucket``, ``_sum``, ``_count``, ``_created``)."""
    series: dict[str, set[str]] = {}
    values: dict[tuple[str, str], set[str]] = {}
    empty = set()
    for family in text_string_to_metric_families(text):
        if not family.samples:
            empty.add(family.name)
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
            for label, value in sample.labels.items():
                values.setdefault((sample.name, label), set()).add(value)
    return Exports(
        {k: frozenset(v) for k, v in series.items()},
        {k: frozenset(v) for k, v in values.items()},
        frozenset(empty),
    )


def _literal_values(m: Matcher) -> set[str] | None:
    """The label values a matcher names, when it names them literally."""
    if "$" in m.value:
        return None  # a Grafana variable
    if m.op in ("=", "!="):
        return {m.value}
    if re.fullmatch(r"[\w-]+(?:\|[\w-]+)*", m.value):
        return set(m.value.split("|"))
    return None


def problems(refs: Refs, exports: Exports, legend: set[str] | None = None) -> list[str]:
    """What in ``refs`` the scrape does not export: metrics, labels per selector, grouping
    labels (each must be a label of some metric of the expression), literal values of the
    labels whose every value the scrape lists, and ``legend`` labels ({{name}})."""
    out: list[str] = []
    seen: set[str] = set()
    for sel in refs.selectors:
        if sel.metric is None:
            out.append("a selector without a metric name cannot be checked")
            continue
        labels = exports.labels_of(sel.metric)
        if labels is None:
            out.append(f"unknown metric {sel.metric}")
            continue
        seen |= labels
        for m in sel.matchers:
            if m.label not in labels:
                out.append(f"{sel.metric} has no label {m.label}")
                continue
            named = _literal_values(m) if m.label in CLOSED_LABELS else None
            known = exports.values.get((sel.metric, m.label), frozenset())
            for value in sorted((named or set()) - known):
                out.append(f"{sel.metric} has no {m.label}={value!r}")
    for label in sorted(refs.grouping - seen):
        out.append(f"no metric of the expression has label {label}")
    kept = refs.grouping if refs.grouping and not refs.without else seen
    for label in sorted((legend or set()) - kept - {"__name__"}):
        out.append(f"the legend uses {{{{{label}}}}}, which the result does not carry")
    return out


def legend_labels(legend: str) -> set[str]:
    return set(re.findall(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", legend or ""))


# ---------------------------------------------------------------------------------------
# The reader, table-tested.

TOKENS = [
    (
        'rate(airlock_sends_total{relay="a,}b", outcome=~"ok|x"}[5m])',
        [
            ("ident", "rate"),
            ("punct", "("),
            ("ident", "airlock_sends_total"),
            ("punct", "{"),
            ("ident", "relay"),
            ("op", "="),
            ("string", '"a,}b"'),
            ("punct", ","),
            ("ident", "outcome"),
            ("op", "=~"),
            ("string", '"ok|x"'),
            ("punct", "}"),
            ("range", "[5m]"),
            ("punct", ")"),
        ],
    ),
    (
        "sum by (le) (x_bucket[$__rate_interval]) > bool 0.95",
        [
            ("ident", "sum"),
            ("ident", "by"),
            ("punct", "("),
            ("ident", "le"),
            ("punct", ")"),
            ("punct", "("),
            ("ident", "x_bucket"),
            ("range", "[$__rate_interval]"),
            ("punct", ")"),
            ("op", ">"),
            ("ident", "bool"),
            ("number", "0.95"),
        ],
    ),
    (
        "x offset 1h30m # a comment\n / 1e3 != -.5",
        [
            ("ident", "x"),
            ("ident", "offset"),
            ("duration", "1h30m"),
            ("op", "/"),
            ("number", "1e3"),
            ("op", "!="),
            ("op", "-"),
            ("number", ".5"),
        ],
    ),
    (
        "a{k!~'v\\'s'} unless on (job) b[5m:1m]",
        [
            ("ident", "a"),
            ("punct", "{"),
            ("ident", "k"),
            ("op", "!~"),
            ("string", "'v\\'s'"),
            ("punct", "}"),
            ("ident", "unless"),
            ("ident", "on"),
            ("punct", "("),
            ("ident", "job"),
            ("punct", ")"),
            ("ident", "b"),
            ("range", "[5m:1m]"),
        ],
    ),
    ("ns:rule_x{a=`raw\\`}", [("ident", "ns:rule_x"), ("punct", "{"), ("ident", "a")]),
]


@pytest.mark.parametrize(("expr", "expected"), TOKENS, ids=[t[0][:30] for t in TOKENS])
def test_tokenizer(expr: str, expected: list[tuple[str, str]]) -> None:
    got = [(t.kind, t.text) for t in tokenize(expr)]
    assert got[: len(expected)] == expected
    if expr.startswith("ns:"):
        assert got[3] == ("op", "=") and got[4] == ("string", "`raw\\`")


@pytest.mark.parametrize(
    ("expr", "why"),
    [
        ('x{a="open}', "unterminated string"),
        ("rate(x[5q])", "bad range"),
        ("rate(x[5m)", "unexpected"),
        ("x > $threshold", "unexpected '\\$'"),
        ('label_replace(x, "d", "$1", "s", "(.*)")', "unsupported function"),
        ("nosuchfn(x)", "unsupported function"),
        ("sum(x", "unbalanced"),
        ("x{a=b}", "expected a string"),
        ('x{a=="b"}', "expected one of"),
        ("sum by (le x) (y)", "expected , or \\)"),
    ],
)
def test_reader_refuses_what_it_cannot_vouch_for(expr: str, why: str) -> None:
    with pytest.raises(PromQLError, match=why):
        references(expr)


REFS = [
    (
        'sum by (relay, outcome) (rate(airlock_sends_total{relay="r", job=~"$job"}[5m]))',
        {"airlock_sends_total"},
        {"relay", "outcome", "job"},
        {"relay", "outcome"},
    ),
    ("sum(rate(x_bucket[5m])) by (le)", {"x_bucket"}, {"le"}, {"le"}),
    (
        "a / on (instance) group_left (link) b",
        {"a", "b"},
        {"instance", "link"},
        {"instance", "link"},
    ),
    (
        "histogram_quantile(0.95, sum without (op) (rate(h_bucket{op='ecdsa'}[1m])))",
        {"h_bucket"},
        {"op"},
        {"op"},
    ),
    (
        'up == 1 unless on (job) q{job="airlock"} or c offset 10m and Sum(d) > Inf',
        {"up", "q", "c", "d"},
        {"job"},
        {"job"},
    ),
]


@pytest.mark.parametrize(("expr", "metrics", "labels", "grouping"), REFS)
def test_references(expr: str, metrics: set[str], labels: set[str], grouping: set[str]) -> None:
    refs = references(expr)
    assert refs.metrics == metrics
    assert refs.labels == labels
    assert refs.grouping == grouping


def test_label_values_queries() -> None:
    refs = label_values_refs('label_values(airlock_link_up{job=~"$job"}, link)')
    assert refs.metrics == {"airlock_link_up"} and refs.labels == {"job", "link"}
    bare = label_values_refs("label_values(instance)")
    assert bare.metrics == set() and bare.grouping == {"instance"}
    with pytest.raises(PromQLError):
        label_values_refs("query_result(up)")


TOY = Exports(
    series={
        "airlock_link_up": frozenset({"link"}),
        "airlock_queue_items": frozenset({"state", "kind"}),
    },
    values={("airlock_queue_items", "state"): frozenset({"queued", "sent"})},
)


@pytest.mark.parametrize(
    ("expr", "legend", "found"),
    [
        ("max by (link) (airlock_link_up)", "{{link}}", []),
        ('up{job="airlock"} == 0', "{{instance}}", []),
        ('sum(airlock_queue_items{state=~"queued|sent"})', "", []),
        ("airlock_link_upp", "", ["unknown metric airlock_link_upp"]),
        ('airlock_link_up{relay="x"}', "", ["airlock_link_up has no label relay"]),
        ("sum by (relay) (airlock_link_up)", "", ["no metric of the expression has label relay"]),
        (
            'airlock_queue_items{state=~"queued|queue"}',
            "",
            ["airlock_queue_items has no state='queue'"],
        ),
        ("max by (link) (airlock_link_up)", "{{kind}}", ["the legend uses {{kind}}"]),
        ('{__name__="airlock_link_up"}', "", ["a selector without a metric name"]),
    ],
)
def test_problems_finds_unknown_metrics_labels_and_values(
    expr: str, legend: str, found: list[str]
) -> None:
    got = problems(references(expr), TOY, legend_labels(legend))
    assert len(got) == len(found), got
    for text, wanted in zip(got, found, strict=True):
        assert text.startswith(wanted), got


# ---------------------------------------------------------------------------------------
# The real scrape.


def observe_everything(metrics: Metrics) -> None:
    """One observation of each kind, so every family has samples (and its labels show)."""
    metrics.observe_send("infura", "accepted")
    metrics.observe_send("bybit", "accepted")
    metrics.observe_bump()
    metrics.observe_reconcile("evm", "settled")
    metrics.observe_reconcile("bybit", "fills")
    metrics.set_link("infura", True, 0.05)
    metrics.set_link("backup", False)
    metrics.observe_persist(0.012)
    metrics.observe_failover(1.5)
    metrics.observe_alert("outage", True)
    metrics.observe_alert("outage", False)
    metrics.observe_alert_failure("webhook")
    with metrics.time_sign("ecdsa"):
        pass


def record_slo_history(store: Store) -> None:
    """A link back while an item waits, then its send: every SLO figure has a value."""
    now = store.now_ms()
    record = store.audit.record
    record(RELAY_HEALTH, {"relay": "infura", "from": "unknown", "to": "down"})
    item = "01JAAAAAAAAAAAAAAAAAAAAAAA"
    enqueued = {"kind": "evm_tx", "strategy": "default", "created_ms": now, "received_ms": now - 5}
    record(ITEM_ENQUEUED, enqueued, item)
    record(RELAY_HEALTH, {"relay": "infura", "from": "down", "to": "up"})
    attempt = {"relay": "infura", "outcome": "accepted", "at_ms": store.now_ms()}
    row = {"item": item, "variant": 0, "attempts": [attempt], "from": "sending", "to": "sent"}
    record(ITEMS_SENT, {"items": [row]})


async def scrape(metrics: Metrics) -> str:
    async with metrics.serve("127.0.0.1", 0) as server:
        timeout = aiohttp.ClientTimeout(total=BOUND)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(f"{server.url}/metrics") as resp,
        ):
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            return await resp.text()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, kek: HsmKek) -> Exports:
    """The scrape of a real service's /metrics over a real SQLite queue."""
    path = tmp_path_factory.mktemp("deploy") / "queue.db"
    with Store.open(path, kek) as store:
        metrics = Metrics(store)
        metrics.registry.register(SloCollector(store, SloConfig()))  # as the service does
        observe_everything(metrics)
        record_slo_history(store)
        text = asyncio.run(scrape(metrics))
    return exports_of(text)


def pending_slo(exports: Exports) -> frozenset[str]:
    """The SLO families the scrape has no samples of (not registered yet, or not fed):
    set aside by the other checks, failed or skipped by test_slo_gauges_are_exported."""
    return frozenset(name for name in SLO_FAMILIES if name not in exports.series)


def test_the_scrape_has_every_family_with_samples(exported: Exports) -> None:
    empty = exported.empty - SLO_FAMILIES  # those: test_slo_gauges_are_exported
    assert not empty, (
        f"{sorted(empty)} registered but without samples: feed them in "
        "observe_everything so their labels can be checked"
    )
    for name in (
        "airlock_queue_items",
        "airlock_queue_oldest_item_seconds",
        "airlock_outage_to_persist_seconds_bucket",
        "airlock_failover_seconds_count",
        "airlock_link_up",
        "airlock_link_latency_seconds",
        "airlock_sends_total",
        "airlock_bumps_total",
        "airlock_reconcile_total",
        "airlock_hsm_sign_seconds_sum",
        "airlock_alerts_total",
        "airlock_alert_failures_total",
    ):
        assert name in exported.series, name
    assert exported.series["airlock_queue_items"] == {"state", "kind"}
    assert "le" in exported.series["airlock_failover_seconds_bucket"]
    assert {"queued", "needs_operator"} <= exported.values[("airlock_queue_items", "state")]


# ---------------------------------------------------------------------------------------
# The dashboard.

PANEL_TYPES = frozenset(
    {"row", "stat", "timeseries", "table", "heatmap", "state-timeline", "bargauge", "gauge"}
    | {"text"}
)  # all built into Grafana: no plugin to install
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def all_panels(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in data["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row keeps its panels inside


@dataclass(frozen=True)
class Query:
    where: str
    refs: Refs
    legend: set[str]


def dashboard_queries(data: dict[str, Any]) -> list[Query]:
    found = []
    for panel in all_panels(data):
        for target in panel.get("targets", []):
            where = f"panel {panel['title']!r} target {target['refId']}"
            legend = legend_labels(target.get("legendFormat", ""))
            found.append(Query(where, references(target["expr"]), legend))
    for var in data["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            assert query == var["definition"], var["name"]
            found.append(Query(f"variable ${var['name']}", label_values_refs(query), set()))
    return found


def test_dashboard_is_a_plain_grafana_39_dashboard() -> None:
    data = dashboard()
    assert 36 <= data["schemaVersion"] <= 41
    assert data["uid"] == "airlock-broadcaster" and data["title"]
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert {r["id"] for r in data.get("__requires", [])} <= {"grafana", "prometheus"}
    ids = [p["id"] for p in all_panels(data)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in all_panels(data):
        assert panel["type"] in PANEL_TYPES, panel["title"]
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel.get("description"), f"{panel['title']}: say what it shows"
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"] == DATASOURCE, var["name"]


def test_dashboard_refers_only_to_what_metrics_exports(exported: Exports) -> None:
    pending = pending_slo(exported)
    queries = dashboard_queries(dashboard())
    assert len(queries) > 30
    found = []
    for query in queries:
        if query.refs.metrics & pending:
            continue  # the SLO row: test_slo_gauges_are_exported
        found += [f"{query.where}: {p}" for p in problems(query.refs, exported, query.legend)]
    assert not found, "\n".join(found)


def family_of(sample: str) -> str:
    return re.sub(r"_(total|bucket|sum|count|created)$", "", sample)


def test_dashboard_shows_every_exported_family(exported: Exports) -> None:
    used = {family_of(m) for q in dashboard_queries(dashboard()) for m in q.refs.metrics}
    missing = {family_of(s) for s in exported.series} - used
    assert not missing, f"no panel shows {sorted(missing)}"
    assert used >= SLO_FAMILIES, "the SLO row"


def test_dashboard_heatmaps_and_quantiles_read_histogram_buckets() -> None:
    histograms = {"airlock_failover_seconds", "airlock_outage_to_persist_seconds"}
    heatmapped, quantiled = set(), set()
    for panel in all_panels(dashboard()):
        for target in panel.get("targets", []):
            expr = target["expr"]
            buckets = {m for m in references(expr).metrics if m.endswith("_bucket")}
            if panel["type"] == "heatmap":
                assert target["format"] == "heatmap" and "by (le)" in expr, panel["title"]
                heatmapped |= {family_of(m) for m in buckets}
            if expr.startswith("histogram_quantile("):
                assert re.search(r"by \((le|[^)]*\ble\b[^)]*)\)", expr), panel["title"]
                assert "rate(" in expr, panel["title"]
                quantiled |= {family_of(m) for m in buckets}
    assert histograms <= heatmapped and histograms <= quantiled


def test_slo_gauges_are_exported(exported: Exports) -> None:
    registered = SLO_FAMILIES & (exported.empty | set(exported.series))
    if not registered:
        pytest.skip("Metrics does not register the airlock_slo_* gauges yet")
    for name in sorted(SLO_FAMILIES):
        assert name in exported.series, f"{name} has no samples: feed it in observe_everything"
    found = []
    for query in dashboard_queries(dashboard()):
        if query.refs.metrics & SLO_FAMILIES:
            found += [f"{query.where}: {p}" for p in problems(query.refs, exported, query.legend)]
    for rule in rules():
        refs = references(rule["expr"])
        if refs.metrics & SLO_FAMILIES:
            found += [f"{rule['alert']}: {p}" for p in problems(refs, exported)]
    assert not found, "\n".join(found)
    named = {
        m.value
        for q in dashboard_queries(dashboard())
        for s in q.refs.selectors
        for m in s.matchers
        if s.metric in SLO_FAMILIES and m.label == "slo"
    }
    assert named <= set(SLO_NAMES)
    seen = exported.values.get(("airlock_slo_target", "slo"), frozenset())
    assert named <= seen, f"the scrape has no target for {sorted(named - seen)}"


# ---------------------------------------------------------------------------------------
# The alert rules and the scrape config.

SEVERITIES = frozenset({"critical", "warning", "info"})
DURATION = re.compile(rf"{_DURATION}|0")


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def heading_slugs(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file."""
    slugs = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            slugs.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return slugs


def test_rules_file_is_well_formed() -> None:
    data = yaml.safe_load(RULES.read_text())
    groups = data["groups"]
    assert len({g["name"] for g in groups}) == len(groups)
    names = [r["alert"] for r in rules()]
    assert len(names) == len(set(names)) and len(names) >= 12
    for rule in rules():
        name = rule["alert"]
        assert re.fullmatch(r"Airlock[A-Z]\w+", name), name
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, name
        assert DURATION.fullmatch(str(rule["for"])), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert rule["annotations"]["summary"].strip(), name
        assert rule["annotations"]["description"].strip(), name
        doc, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert (ROOT / doc).is_file(), name
        assert not anchor or anchor in heading_slugs(ROOT / doc), f"{name}: #{anchor}"
        assert re.search(r"[<>=]=?|unless|absent", rule["expr"]), f"{name}: a condition"


def test_rules_refer_only_to_what_metrics_exports(exported: Exports) -> None:
    pending = pending_slo(exported)
    found = []
    for rule in rules():
        refs = references(rule["expr"])
        if refs.metrics & pending:
            continue
        assert refs.metrics, rule["alert"]
        found += [f"{rule['alert']}: {p}" for p in problems(refs, exported)]
        for text in rule["annotations"].values():
            for label in re.findall(r"\$labels\.(\w+)", text):
                kept = refs.grouping or {
                    lab for m in refs.metrics for lab in (exported.labels_of(m) or ())
                }
                if label not in kept:
                    found.append(f"{rule['alert']}: the annotations use $labels.{label}")
    assert not found, "\n".join(found)


def runbook_alert_keys() -> set[str]:
    """The keys of the runbook's table "Alerts and what to do"."""
    text = RUNBOOK.read_text()
    section = text.split("## Alerts and what to do", 1)[1].split("\n## ", 1)[0]
    keys = set(re.findall(r"^\| `([^`]+)` \|", section, re.MULTILINE))
    assert len(keys) >= 5, keys
    return keys


def test_rules_cover_every_alert_the_service_raises() -> None:
    covered: set[str] = set()
    for rule in rules():
        covered |= {k.strip() for k in rule["annotations"]["service_alert"].split(",")}
    missing = runbook_alert_keys() - covered
    assert not missing, f"no rule stands for the service's alerts {sorted(missing)}"


def threshold(name: str) -> float:
    (rule,) = [r for r in rules() if r["alert"] == name]
    m = re.search(r">\s*([\d.]+)\s*$", rule["expr"].strip())
    assert m is not None, name
    return float(m.group(1))


def test_rules_thresholds_are_the_service_defaults() -> None:
    failover = FailoverConfig()
    assert threshold("AirlockQueueBacklog") == failover.escalate_queue_items
    assert threshold("AirlockQueueOld") == failover.escalate_oldest_s
    assert threshold("AirlockLinkSlow") == HealthConfig().slow_ms / 1000


def test_prometheus_scrapes_the_service_where_it_listens() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    assert config["rule_files"] == [RULES.name]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "airlock"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    defaults = ServiceConfig()
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == [f"{defaults.metrics_host}:{defaults.metrics_port}"]
    extra = {k for sc in job["static_configs"] for k in sc.get("labels", {})}
    assert extra <= TARGET_LABELS, "a target label the checks here do not know"
    for rule in rules():  # every rule selects the job this file defines
        for sel in references(rule["expr"]).selectors:
            jobs = {m.value for m in sel.matchers if m.label == "job"}
            assert jobs == {"airlock"}, f"{rule['alert']}: {sel.metric}"


def test_grafana_provisioning_examples() -> None:
    sources = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text()
    )
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["url"].startswith("http")
    boards = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/airlock.yaml").read_text())
    (provider,) = boards["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")
    assert sources["apiVersion"] == boards["apiVersion"] == 1


# ---------------------------------------------------------------------------------------
# The systemd unit, and the logs.


def unit() -> dict[str, list[tuple[str, str]]]:
    """The unit's sections: [(key, value), ...] each (keys repeat: Environment)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, raw
        current.append((key.strip(), value.strip()))
    return sections


def service_value(key: str) -> str:
    (value,) = [v for k, v in unit()["Service"] if k == key]
    return value


def test_systemd_unit_runs_the_real_command_without_secrets() -> None:
    argv = service_value("ExecStart").split()
    assert Path(argv[0]).name == "airlock" and argv[0].startswith("/")
    assert argv[1:3] == ["broadcaster", "run"]
    command = cli.commands["broadcaster"].commands["run"]
    options = {opt for p in command.params for opt in p.opts}
    assert all(a.split("=")[0] in options for a in argv[3:] if a.startswith("-")), argv
    assert "--once" not in argv, "a service runs until stopped"
    secret = re.compile(r"pin|secret|token|password|passwd|key", re.IGNORECASE)
    assert not any(secret.search(a) for a in argv), argv
    env = dict(v.split("=", 1) for k, v in unit()["Service"] if k == "Environment")
    assert "AIRLOCK_PIN" not in env, "the PIN comes from a file, never the unit"
    assert env["AIRLOCK_PIN_FILE"].startswith("/")
    for name in env:
        assert not secret.search(name) or name.endswith("_FILE"), name
    assert float(service_value("TimeoutStopSec")) > STOP_S  # room for the service's stop
    assert service_value("KillSignal") == "SIGTERM"
    assert env["AIRLOCK_HOME"] in service_value("ReadWritePaths").split()
    assert service_value("User") != "root"


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    airlock = Path(sys.executable).with_name("airlock")  # this checkout's own entry point
    assert airlock.is_file()
    text = UNIT.read_text()
    installed = service_value("ExecStart").split()[0]
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(installed, str(airlock)))
    done = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    said = [line for line in (done.stdout + done.stderr).splitlines() if UNIT.name in line]
    assert done.returncode == 0 and not said, done.stdout + done.stderr


def test_runbook_points_at_the_unit_and_agrees_with_it() -> None:
    section = RUNBOOK.read_text().split("### systemd", 1)[1].split("\n### ", 1)[0]
    assert "deploy/systemd/airlock.service" in section
    assert "```ini" not in section, "one copy of the unit: deploy/systemd/airlock.service"
    settings = dict(unit()["Service"])
    env = dict(v.split("=", 1) for k, v in unit()["Service"] if k == "Environment")
    named = re.findall(r"`([A-Z][A-Za-z_]+)=([^`]+)`", section)
    assert len(named) >= 5, named
    for key, value in named:  # AIRLOCK_* are environment variables, the rest settings
        assert (env if "_" in key else settings).get(key) == value, key


def test_logs_never_go_to_a_file_so_there_is_no_logrotate_snippet() -> None:
    fields = {f.name for f in dataclasses.fields(ServiceConfig)}
    assert not {f for f in fields if re.search(r"log_(file|path|dir)", f)}, (
        "a log file setting: add deploy/logrotate/airlock and say so in deploy/README.md"
    )
    assert not (DEPLOY / "logrotate").exists()
    assert "logrotate" in (DEPLOY / "README.md").read_text()
