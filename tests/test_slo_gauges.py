"""The live SLO gauges (airlock.broadcaster.slo_gauges) over a real store's audit log, on
both engines (a PostgreSQL queue's log is the record of every broadcaster sharing it)."""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from tests.kits.backends import BOTH

from airlock.audit import entries as audit_entries
from airlock.broadcaster.slo_gauges import SloCollector
from airlock.config import SloConfig
from airlock.slo.read import seq_at

BACKENDS = BOTH


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def health(store, relay: str, old: str, new: str) -> None:
    store.audit.record(audit_entries.RELAY_HEALTH, {"relay": relay, "from": old, "to": new})


def test_gauges_follow_the_log_at_most_every_live_interval(store):
    now = [store.now_ms()]
    config = SloConfig(live_seconds=30, live_window_seconds=3600, availability_pct=99.0)
    registry = CollectorRegistry()
    registry.register(SloCollector(store, config, clock_ms=lambda: now[0]))
    health(store, "rpc-a", "unknown", "up")
    now[0] = store.now_ms() + 10_000  # 10 s watched, all of it up
    first = samples(registry)
    key = (("slo", "availability"), ("subject", "rpc-a"))
    assert first[("airlock_slo_value", key)] == 100.0
    assert first[("airlock_slo_met", key)] == 1.0
    assert first[("airlock_slo_target", (("slo", "availability"),))] == 99.0
    assert first[("airlock_slo_target", (("slo", "failover_p95"),))] == 2000.0

    health(store, "rpc-a", "up", "down")
    down_at = store.now_ms()
    now[0] += 1_000  # within live_seconds: the same figures, the log is not read again
    assert samples(registry)[("airlock_slo_value", key)] == 100.0
    now[0] = down_at + 40_000  # 40 s later, still down
    later = samples(registry)
    assert later[("airlock_slo_value", key)] < 50.0
    assert later[("airlock_slo_met", key)] == 0.0


def test_seq_at_finds_the_first_entry_of_a_time_by_bisection(store):
    for n in range(7):
        health(store, f"r{n}", "unknown", "up")
    times = [json.loads(raw)["time_ms"] for raw in store.audit.entries()]
    for t in sorted(set(times)):
        assert seq_at(store, t) == next(i for i, x in enumerate(times) if x >= t)
    assert seq_at(store, 0) == 0
    assert seq_at(store, times[-1] + 1) == store.audit.size()
