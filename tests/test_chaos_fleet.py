"""The fleet in ``make test``: three broadcaster processes on one PostgreSQL queue, each
behind its own fault proxies, drain 200 transfers from 5 senders and 50 Bybit orders while
their links flap and one of them is SIGKILLed twice; every invariant of the chaos suite
holds. Then the fleet's plan and its section of docs/reliability.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from airlock.sim.chaos.fleet import fleet_figures, make_fleet_plan, run_fleet_seeds
from airlock.sim.chaos.report import (
    FLEET_BEGIN,
    FLEET_END,
    GENERATED_MARK,
    Outcome,
    summarise,
    write_fleet_report,
    write_report,
)

pytestmark = [pytest.mark.anvil, pytest.mark.slow]
SEED = 1  # cuts a whole path (a handover to measure), one relay and a venue link


def test_a_fleet_plan_is_a_function_of_its_seed_and_every_cut_ends():
    plan = make_fleet_plan(SEED)
    assert plan == make_fleet_plan(SEED) and plan != make_fleet_plan(SEED + 1)
    kills = [e for e in plan.events if e.kind == "kill9"]
    assert len(kills) == 2 and {e.params["broadcaster"] for e in kills} == {plan.victim}
    cuts = [e for e in plan.events if e.kind == "flap"]
    assert sum(e.params["down"] for e in cuts) == sum(not e.params["down"] for e in cuts)
    assert all(e.at < plan.duration for e in plan.events)
    assert (plan.senders, plan.per_sender, plan.orders) == (5, 40, 50)
    assert plan.faults["path down"] >= 1


def test_three_broadcasters_on_one_queue_keep_every_invariant(keyring, token_home, pg_cluster):
    lines: list[str] = []
    summary = run_fleet_seeds(
        [SEED], 3, lines.append, token=(token_home, keyring), cluster=pg_cluster
    )
    report = "\n".join(lines)
    assert summary["failed"] == 0, report + str(summary["outcomes"][0]["failures"])
    (outcome,) = summary["outcomes"]
    assert outcome["audit_ok"] is True
    assert outcome["states"] == {"evm confirmed": 200, "bybit sent": 50}, outcome["states"]
    assert summary["duplicates"] == summary["losses"] == summary["phantoms"] == 0
    assert summary["kills_survived"] == 2
    for figure in ("handover", "takeover"):  # measured when the cut member held work
        spread = summary["fleet"][figure]
        assert spread["samples"] == 0 or spread["max_ms"] < 30_000, spread  # never stuck


def test_the_fleet_section_sits_above_the_single_runs_figures(tmp_path: Path):
    single = summarise([1], [Outcome(1, audit_ok=True)], 1.0)
    fleet = summarise([1], [Outcome(1, audit_ok=True, handovers_ms=[700, 900])], 2.0)
    fleet["fleet"] = fleet_figures(3, [Outcome(1, handovers_ms=[700, 900])])
    path = tmp_path / "reliability.md"
    write_report(path, single)
    write_fleet_report(path, fleet)
    text = path.read_text()
    assert text.index(FLEET_BEGIN) < text.index(FLEET_END) < text.index(GENERATED_MARK)
    assert "p50 800 ms, max 900 ms (2 samples)" in text
    write_report(path, single)  # the single run's figures again: the fleet's stay
    write_fleet_report(path, fleet)  # and the fleet's again: replaced, not added
    text = path.read_text()
    assert text.count(FLEET_BEGIN) == 1 and "| scenarios run | 1 |" in text
