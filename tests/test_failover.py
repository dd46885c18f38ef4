"""The failover playbook's pure rules, as tables (src/airlock/broadcaster/failover.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airlock.broadcaster import failover
from airlock.broadcaster.failover import (
    RULES,
    LinkView,
    Mode,
    ModeState,
    critical_order,
    escalations,
    judge_mode,
    route,
)
from airlock.config import FailoverConfig
from airlock.errors import InvalidInput
from airlock.queue.items import Priority
from airlock.queue.policy import capped_limit_price

CONFIG = FailoverConfig()  # the playbook: 3 s gap, 2 missed acks, 30 s window, 200 ms, 10 bps
NOW = 1_000_000
GAP = CONFIG.heartbeat_gap_ms
MISSED = CONFIG.missed_acks
WINDOW_MS = 30_000

# Every rule a table below expects, gathered as the tables are defined: RULES must cover it.
SEEN_RULES: set[str] = set()


def seen(rows: list[tuple[Any, ...]], rule_at: int = -1) -> list[tuple[Any, ...]]:
    for row in rows:
        rules = row[rule_at]
        SEEN_RULES.update([rules] if isinstance(rules, str) else rules)
    return rows


def P(name: str, ack: int | None, missed: int = 0, latency: float | None = None) -> LinkView:
    return LinkView(name, "primary", ack, missed, latency)


def B(name: str, ack: int | None, missed: int = 0, latency: float | None = None) -> LinkView:
    return LinkView(name, "backup", ack, missed, latency)


def outage(since_ms: int = NOW) -> ModeState:
    return ModeState(Mode.OUTAGE, since_ms, "heartbeat-gap", {})


def normal(since_ms: int = NOW) -> ModeState:
    return ModeState(Mode.NORMAL, since_ms, "primary-up", {})


# ----------------------------------------------------------------------------- judge_mode

MODE_TABLE = seen(
    [
        # every primary fresh
        ([P("a", NOW - 100), P("b", NOW - GAP, 1)], Mode.NORMAL, "primary-up"),
        # one fresh primary among stale ones keeps NORMAL
        ([P("a", NOW - 5_000), P("b", None), P("c", NOW - 10)], Mode.NORMAL, "primary-up"),
        (
            [P("a", NOW - 5_000), P("b", NOW, MISSED), P("c", NOW, MISSED - 1)],
            Mode.NORMAL,
            "primary-up",
        ),
        # all stale by the heartbeat gap
        ([P("a", NOW - GAP - 1), P("b", NOW - 9_000, 1)], Mode.OUTAGE, "heartbeat-gap"),
        # all down by missed acks, though they acked recently
        ([P("a", NOW - 100, MISSED), P("b", NOW, MISSED + 3)], Mode.OUTAGE, "missed-acks"),
        # the edges: a gap of exactly the threshold is still in time ...
        ([P("a", NOW - GAP)], Mode.NORMAL, "primary-up"),
        ([P("a", NOW - GAP - 1)], Mode.OUTAGE, "heartbeat-gap"),
        # ... while exactly the threshold of missed acks is down
        ([P("a", NOW, MISSED)], Mode.OUTAGE, "missed-acks"),
        ([P("a", NOW, MISSED - 1)], Mode.NORMAL, "primary-up"),
        # never acked counts as an infinite gap
        ([P("a", None)], Mode.OUTAGE, "heartbeat-gap"),
        ([P("a", None), P("b", None)], Mode.OUTAGE, "heartbeat-gap"),
        # both conditions on every primary: the gap names it (first in the playbook)
        ([P("a", None, MISSED), P("b", NOW - GAP - 1, 9)], Mode.OUTAGE, "heartbeat-gap"),
        # down for different reasons
        ([P("a", NOW - GAP - 1), P("b", NOW, MISSED)], Mode.OUTAGE, "primaries-down"),
        # an ack stamped after now is fresh (a negative gap)
        ([P("a", NOW + 50)], Mode.NORMAL, "primary-up"),
        # backups never decide the mode, either way
        ([P("a", None), B("b", NOW)], Mode.OUTAGE, "heartbeat-gap"),
        ([P("a", NOW), B("b", None, 9)], Mode.NORMAL, "primary-up"),
        ([B("b", NOW - 100_000, 9), P("a", NOW, MISSED)], Mode.OUTAGE, "missed-acks"),
        # no primaries: nothing to fail over from
        ([], Mode.NORMAL, "no-primaries"),
        ([B("b", None, 9)], Mode.NORMAL, "no-primaries"),
        ([B("b", NOW), B("c", None)], Mode.NORMAL, "no-primaries"),
    ]
)


@pytest.mark.parametrize(("links", "mode", "rule"), MODE_TABLE)
def test_judge_mode(links: list[LinkView], mode: Mode, rule: str) -> None:
    state = judge_mode(links, NOW, CONFIG, None)
    assert (state.mode, state.rule) == (mode, rule)
    assert state.since_ms == NOW  # no previous: the mode begins now


def test_judge_mode_inputs_name_each_primary_gap_and_missed_acks() -> None:
    state = judge_mode([P("a", NOW - 3_500, 1), B("b", NOW), P("c", None, 2)], NOW, CONFIG)
    assert state.inputs["primaries"] == [
        {"link": "a", "gap_ms": 3_500, "missed_acks": 1, "down_by": ["heartbeat-gap"]},
        {
            "link": "c",
            "gap_ms": None,
            "missed_acks": 2,
            "down_by": ["heartbeat-gap", "missed-acks"],
        },
    ]
    assert state.inputs["backups"] == ["b"]
    assert state.inputs["heartbeat_gap_ms"] == GAP and state.inputs["missed_acks"] == MISSED
    assert state.inputs["previous_mode"] is None


def test_since_ms_is_kept_while_the_mode_holds_and_reset_when_it_changes() -> None:
    up, silent, missing = [P("a", NOW)], [P("a", None)], [P("a", NOW + 20_000, MISSED)]
    s1 = judge_mode(up, NOW, CONFIG, None)
    s2 = judge_mode(up, NOW + 1_000, CONFIG, s1)
    assert (s2.mode, s2.since_ms) == (Mode.NORMAL, NOW)
    s3 = judge_mode(silent, NOW + 2_000, CONFIG, s2)
    assert (s3.mode, s3.since_ms) == (Mode.OUTAGE, NOW + 2_000)
    # still OUTAGE, for another reason now: the rule follows, the start does not
    s4 = judge_mode(missing, NOW + 20_000, CONFIG, s3)
    assert (s4.mode, s4.rule, s4.since_ms) == (Mode.OUTAGE, "missed-acks", NOW + 2_000)
    assert s4.inputs["previous_mode"] == "outage"
    s5 = judge_mode([P("a", NOW + 25_000)], NOW + 25_000, CONFIG, s4)
    assert (s5.mode, s5.since_ms) == (Mode.NORMAL, NOW + 25_000)


def test_link_view_refuses_an_unknown_role_or_negative_missed_acks() -> None:
    with pytest.raises(InvalidInput, match="role"):
        LinkView("a", "spare", NOW, 0)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="missed_acks"):
        LinkView("a", "primary", NOW, -1)


# ----------------------------------------------------------------------------- route

ELIGIBLE = {Priority.CANCEL: True, Priority.RISK_REDUCING: True, Priority.NORMAL: False, 11: False}
ELAPSED_INSIDE = {0: True, WINDOW_MS - 1: True, WINDOW_MS: True, WINDOW_MS + 1: False}
OUTAGE_ROUTES = {
    # (eligible, inside the window, backup usable) -> (links, rule)
    (True, True, True): ("backup", "backup-priority-window"),
    (True, True, False): ("none", "no-backup"),
    (True, False, True): ("none", "backup-window-over"),
    (True, False, False): ("none", "backup-window-over"),
    (False, True, True): ("none", "outage-hold"),
    (False, True, False): ("none", "outage-hold"),
    (False, False, True): ("none", "outage-hold"),
    (False, False, False): ("none", "outage-hold"),
}
ROUTE_TABLE = seen(
    [
        (prio, mode, elapsed, usable, *expected)
        for prio, eligible in ELIGIBLE.items()
        for mode in (Mode.NORMAL, Mode.OUTAGE)
        for elapsed, inside in ELAPSED_INSIDE.items()
        for usable in (True, False)
        for expected in [
            ("primary", "normal")
            if mode is Mode.NORMAL
            else OUTAGE_ROUTES[(eligible, inside, usable)]
        ]
    ]
)


@pytest.mark.parametrize(("priority", "mode", "elapsed", "usable", "links", "rule"), ROUTE_TABLE)
def test_route(
    priority: int, mode: Mode, elapsed: int, usable: bool, links: str, rule: str
) -> None:
    state = ModeState(mode, NOW, "test", {})
    got = route(priority, state, NOW + elapsed, CONFIG, usable)
    assert (got.links, got.rule) == (links, rule)
    assert got.inputs["priority"] == int(priority)
    if mode is Mode.OUTAGE:
        assert got.inputs["elapsed_ms"] == elapsed and got.inputs["backup_window_ms"] == WINDOW_MS


def test_route_window_in_fractional_seconds_includes_its_last_millisecond() -> None:
    # 2.01 * 1000 is 2009.999... in binary floating point; the window still ends at 2010 ms
    config = replace(CONFIG, backup_window_s=2.01)
    assert route(Priority.CANCEL, outage(), NOW + 2_010, config, True).links == "backup"
    assert route(Priority.CANCEL, outage(), NOW + 2_011, config, True).rule == "backup-window-over"


def test_route_with_a_zero_window_allows_backups_only_at_the_outage_start() -> None:
    config = replace(CONFIG, backup_window_s=0)
    assert route(Priority.CANCEL, outage(), NOW, config, True).links == "backup"
    assert route(Priority.CANCEL, outage(), NOW + 1, config, True).links == "none"


# ----------------------------------------------------------------------------- critical_order

CRITICAL_TABLE = seen(
    [
        # (order_type, mode, latency, ref, side, action, rule, limit_price)
        ("Market", Mode.NORMAL, 900.0, "100", "Buy", "send", "normal", None),
        ("Market", Mode.NORMAL, None, None, "Sell", "send", "normal", None),
        ("Market", Mode.OUTAGE, 150.0, "100", "Buy", "send", "latency-ok", None),
        ("Market", Mode.OUTAGE, 200.0, None, "Sell", "send", "latency-ok", None),  # at: still ok
        ("Market", Mode.OUTAGE, 0.0, None, "Buy", "send", "latency-ok", None),
        ("Limit", Mode.OUTAGE, 150.0, None, "Buy", "send", "latency-ok", None),
        # above the threshold: capped at 10 bps, rounded back towards the reference
        ("Market", Mode.OUTAGE, 200.5, "100.00", "Buy", "limit", "slow-backup-limit", "100.1"),
        ("Market", Mode.OUTAGE, 200.5, "100.00", "Sell", "limit", "slow-backup-limit", "99.9"),
        ("Market", Mode.OUTAGE, 900.0, "30123.45", "Buy", "limit", "slow-backup-limit", "30153.57"),
        (
            "Market",
            Mode.OUTAGE,
            900.0,
            "30123.45",
            "Sell",
            "limit",
            "slow-backup-limit",
            "30093.33",
        ),
        # coarse precision: the cap rounds back onto the reference itself
        ("Market", Mode.OUTAGE, 900.0, "100", "Buy", "limit", "slow-backup-limit", "100"),
        ("Market", Mode.OUTAGE, 900.0, "100", "Sell", "limit", "slow-backup-limit", "100"),
        (
            "Market",
            Mode.OUTAGE,
            900.0,
            "0.012345",
            "Sell",
            "limit",
            "slow-backup-limit",
            "0.012333",
        ),
        # unmeasured latency counts as slow
        ("Market", Mode.OUTAGE, None, "2500.5", "Buy", "limit", "slow-backup-limit", "2503"),
        # no reference, or one that cannot be capped: refused
        ("Market", Mode.OUTAGE, 900.0, None, "Buy", "refuse", "slow-backup-refuse", None),
        ("Market", Mode.OUTAGE, None, None, "Sell", "refuse", "slow-backup-refuse", None),
        ("Market", Mode.OUTAGE, 900.0, "abc", "Buy", "refuse", "invalid-ref-price", None),
        ("Market", Mode.OUTAGE, 900.0, "0", "Sell", "refuse", "invalid-ref-price", None),
        # a Limit order already carries its cap
        ("Limit", Mode.OUTAGE, 900.0, None, "Buy", "send", "limit-has-cap", None),
        ("Limit", Mode.OUTAGE, None, "100", "Sell", "send", "limit-has-cap", None),
    ],
    rule_at=6,
)


@pytest.mark.parametrize(
    ("order_type", "mode", "latency", "ref", "side", "action", "rule", "price"), CRITICAL_TABLE
)
def test_critical_order(order_type, mode, latency, ref, side, action, rule, price) -> None:
    state = ModeState(mode, NOW, "test", {})
    got = critical_order(order_type, state, latency, ref, side, CONFIG)
    assert (got.action, got.rule, got.limit_price) == (action, rule, price)
    if action == "limit":
        assert price == capped_limit_price(side, ref, Decimal(CONFIG.critical_slippage_bps))
        ref_d, got_d, bps = Decimal(ref), Decimal(price), Decimal(CONFIG.critical_slippage_bps)
        if side == "Buy":  # never pays above the cap, never below the reference
            assert ref_d <= got_d <= ref_d * (1 + bps / 10_000)
        else:  # never receives below the cap, never above the reference
            assert ref_d * (1 - bps / 10_000) <= got_d <= ref_d


def test_critical_order_follows_the_configured_cap_and_threshold() -> None:
    config = replace(CONFIG, critical_slippage_bps=50, backup_latency_ms=1_000.0)
    got = critical_order("Market", outage(), 999.0, "200", "Buy", config)
    assert (got.action, got.rule) == ("send", "latency-ok")
    got = critical_order("Market", outage(), 1_000.5, "200.00", "Buy", config)
    assert (got.action, got.limit_price) == ("limit", "201")
    got = critical_order(
        "Market", outage(), 1_000.5, "200.00", "Sell", replace(config, critical_slippage_bps=0)
    )
    assert got.limit_price == "200"


def test_critical_order_refuses_unknown_order_types_and_sides() -> None:
    with pytest.raises(InvalidInput, match="order_type"):
        critical_order("Stop", outage(), 900.0, "100", "Buy", CONFIG)
    with pytest.raises(InvalidInput, match="side"):
        critical_order("Market", outage(), 900.0, "100", "buy", CONFIG)


def test_invalid_ref_price_records_why() -> None:
    got = critical_order("Market", outage(), 900.0, "1e3", "Buy", CONFIG)
    assert got.rule == "invalid-ref-price" and "ref_price" in got.inputs["error"]


# ----------------------------------------------------------------------------- escalations

LIMIT_ITEMS = CONFIG.escalate_queue_items  # 50
LIMIT_AGE = 120_000
ESCALATION_TABLE = seen(
    [
        (0, None, []),
        (LIMIT_ITEMS, LIMIT_AGE, []),  # at both thresholds: not yet
        (LIMIT_ITEMS + 1, LIMIT_AGE, ["queue-depth"]),
        (LIMIT_ITEMS, LIMIT_AGE + 1, ["queue-age"]),
        (LIMIT_ITEMS + 1, LIMIT_AGE + 1, ["queue-depth", "queue-age"]),  # depth first
        (10_000, None, ["queue-depth"]),
        (1, 86_400_000, ["queue-age"]),
    ]
)


@pytest.mark.parametrize(("live", "oldest", "rules"), ESCALATION_TABLE)
def test_escalations(live: int, oldest: int | None, rules: list[str]) -> None:
    got = escalations(live, oldest, CONFIG)
    assert [e.rule for e in got] == rules
    assert [e.key for e in got] == [f"escalate.{rule}" for rule in rules]


def test_escalation_messages_name_the_numbers_and_the_thresholds() -> None:
    depth, age = escalations(51, 121_500, CONFIG)
    assert "51" in depth.message and "50" in depth.message and "\n" not in depth.message
    assert "121.5 s" in age.message and "120 s" in age.message and "\n" not in age.message
    assert depth.inputs == {"live_items": 51, "threshold": 50}
    assert age.inputs == {"oldest_age_ms": 121_500, "threshold_ms": 120_000}
    # the key does not depend on the numbers, so one outage is one alert
    assert escalations(70, 500_000, CONFIG)[0].key == depth.key


def test_escalation_thresholds_follow_the_configuration() -> None:
    config = replace(CONFIG, escalate_queue_items=0, escalate_oldest_s=0.5)
    assert [e.rule for e in escalations(1, 501, config)] == ["queue-depth", "queue-age"]
    assert escalations(0, 500, config) == []


# ----------------------------------------------------------------------------- RULES, JSON


def test_rules_cover_every_rule_the_tables_reach_and_nothing_else() -> None:
    assert not SEEN_RULES - set(RULES), f"rules missing from RULES: {SEEN_RULES - set(RULES)}"
    assert set(RULES) <= SEEN_RULES, f"rules no table reaches: {set(RULES) - SEEN_RULES}"
    assert all(reason and "\n" not in reason for reason in RULES.values())


def every_result() -> list[Any]:
    results: list[Any] = []
    previous = None
    for links, _, _ in MODE_TABLE:
        previous = judge_mode(links, NOW, CONFIG, previous)
        results.append(previous)
    for prio, mode, elapsed, usable, _, _ in ROUTE_TABLE:
        results.append(route(prio, ModeState(mode, NOW, "t", {}), NOW + elapsed, CONFIG, usable))
    for order_type, mode, latency, ref, side, *_ in CRITICAL_TABLE:
        state = ModeState(mode, NOW, "t", {})
        results.append(critical_order(order_type, state, latency, ref, side, CONFIG))
    for live, oldest, _ in ESCALATION_TABLE:
        results.extend(escalations(live, oldest, CONFIG))
    return results


def test_as_json_is_json_and_names_rule_and_inputs() -> None:
    results = every_result()
    assert len(results) > 100
    for result in results:
        entry = result.as_json()
        assert entry["rule"] == result.rule and entry["rule"] in RULES
        assert isinstance(entry["inputs"], dict)
        text = json.dumps(entry, sort_keys=True, allow_nan=False)
        assert json.loads(text) == entry  # plain JSON: nothing lost in a round trip


# ----------------------------------------------------------------------------- properties

roles = st.sampled_from(["primary", "backup"])


@st.composite
def scenes(draw: st.DrawFn) -> tuple[list[LinkView], int, FailoverConfig, LinkView | None]:
    now = draw(st.integers(0, 10**12))
    config = replace(
        CONFIG,
        heartbeat_gap_ms=draw(st.integers(1, 10_000)),
        missed_acks=draw(st.integers(1, 6)),
    )
    links = draw(
        st.lists(
            st.builds(
                LinkView,
                name=st.text("abc", min_size=1, max_size=3),
                role=roles,
                last_ack_ms=st.none() | st.integers(now - 50_000, now + 10),
                missed_acks=st.integers(0, 10),
                latency_ms=st.none() | st.floats(0, 5_000),
            ),
            max_size=6,
        )
    )
    good = None
    if draw(st.booleans()):
        good = LinkView(
            "good",
            "primary",
            draw(st.integers(now - config.heartbeat_gap_ms, now)),
            draw(st.integers(0, config.missed_acks - 1)),
        )
        links.insert(draw(st.integers(0, len(links))), good)
    return links, now, config, good


@settings(max_examples=300, deadline=None)
@given(scene=scenes(), previous_mode=st.none() | st.sampled_from(list(Mode)))
def test_judge_mode_is_deterministic_and_normal_with_one_fresh_primary(
    scene, previous_mode
) -> None:
    links, now, config, good = scene
    previous = None if previous_mode is None else ModeState(previous_mode, now - 7, "t", {})
    first = judge_mode(links, now, config, previous)
    assert judge_mode(list(links), now, config, previous) == first
    assert json.loads(json.dumps(first.as_json())) == first.as_json()
    if good is not None:
        assert first.mode is Mode.NORMAL and first.rule == "primary-up"
    # and the converse: OUTAGE exactly when there are primaries and none of them is up
    primaries = [link for link in links if link.role == "primary"]
    up = [
        link
        for link in primaries
        if link.last_ack_ms is not None
        and now - link.last_ack_ms <= config.heartbeat_gap_ms
        and link.missed_acks < config.missed_acks
    ]
    assert (first.mode is Mode.OUTAGE) == (bool(primaries) and not up)
    assert first.since_ms == (
        previous.since_ms if previous and previous.mode is first.mode else now
    )


def test_module_is_pure() -> None:
    """No clock, no I/O: the module imports none of the modules that would give it one."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(failover))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    assert not imported & {"time", "datetime", "asyncio", "socket", "os", "random", "sqlite3"}
