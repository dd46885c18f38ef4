"""Relay health: the state machine as tables, the monitor with scripted fake relays.

The fake targets stand in for the relay client (tested on its own); here only the
monitor's timing and bookkeeping matter. Nothing sleeps to wait for something: tests
await events or poll a condition under a bound.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from airlock.config import HealthConfig
from airlock.errors import ConfigError
from airlock.relays.health import (
    Change,
    Event,
    Health,
    LinkState,
    Monitor,
    Tally,
    advance,
    guard_timeout,
)

UP, DEGRADED, DOWN, DISABLED = LinkState.UP, LinkState.DEGRADED, LinkState.DOWN, LinkState.DISABLED
FAST, SLOW, FAIL, WRONG = Event.FAST, Event.SLOW, Event.FAIL, Event.WRONG_CHAIN
CHAIN = 11155111
BOUND = 10.0  # seconds any awaited condition gets before the test fails
# (far below FAST_PROBES.probe_seconds, 60 s: a wait that ends within BOUND never sat out
# a long probe interval)

# --------------------------------------------------------------------------------------
# The pure transition function: every state x event, at and around the thresholds.
# (state, fast_streak, failures), event -> (state, fast_streak, failures); rise=2, fall=3.
# --------------------------------------------------------------------------------------

TABLE = [
    # UP: one failure or one slow answer demotes; a fast answer keeps it.
    ((UP, 2, 0), FAST, (UP, 2, 0)),
    ((UP, 2, 0), SLOW, (DEGRADED, 0, 0)),
    ((UP, 2, 0), FAIL, (DEGRADED, 0, 1)),
    ((UP, 2, 0), WRONG, (DISABLED, 0, 0)),
    # DEGRADED: rise fast answers promote, fall failures demote, a slow answer resets.
    ((DEGRADED, 0, 0), FAST, (DEGRADED, 1, 0)),
    ((DEGRADED, 1, 0), FAST, (UP, 2, 0)),
    ((DEGRADED, 1, 0), SLOW, (DEGRADED, 0, 0)),
    ((DEGRADED, 0, 0), FAIL, (DEGRADED, 0, 1)),
    ((DEGRADED, 0, 1), FAIL, (DEGRADED, 0, 2)),
    ((DEGRADED, 0, 2), FAIL, (DOWN, 0, 3)),
    ((DEGRADED, 0, 2), FAST, (DEGRADED, 1, 0)),
    ((DEGRADED, 1, 0), FAIL, (DEGRADED, 0, 1)),
    ((DEGRADED, 1, 0), WRONG, (DISABLED, 0, 0)),
    # DOWN: any answer is "came back" (usable at once); failures keep counting.
    ((DOWN, 0, 0), FAST, (DEGRADED, 1, 0)),
    ((DOWN, 0, 7), FAST, (DEGRADED, 1, 0)),
    ((DOWN, 0, 7), SLOW, (DEGRADED, 0, 0)),
    ((DOWN, 0, 0), FAIL, (DOWN, 0, 1)),
    ((DOWN, 0, 7), FAIL, (DOWN, 0, 8)),
    ((DOWN, 0, 7), WRONG, (DISABLED, 0, 0)),
    # DISABLED: final whatever happens.
    ((DISABLED, 0, 0), FAST, (DISABLED, 0, 0)),
    ((DISABLED, 0, 0), SLOW, (DISABLED, 0, 0)),
    ((DISABLED, 0, 0), FAIL, (DISABLED, 0, 0)),
    ((DISABLED, 0, 0), WRONG, (DISABLED, 0, 0)),
]


@pytest.mark.parametrize(("before", "event", "after"), TABLE)
def test_transition_table(
    before: tuple[LinkState, int, int], event: Event, after: tuple[LinkState, int, int]
) -> None:
    assert advance(Tally(*before), event, rise=2, fall=3) == Tally(*after)


def test_table_covers_every_state_and_event() -> None:
    covered = {(before[0], event) for before, event, _ in TABLE}
    assert covered == {(state, event) for state in LinkState for event in Event}


@pytest.mark.parametrize(
    ("before", "event", "after"),
    [
        # rise=1 / fall=1 still pass through DEGRADED: one observation of probation.
        ((DOWN, 0, 0), FAST, (DEGRADED, 1, 0)),
        ((DEGRADED, 1, 0), FAST, (UP, 1, 0)),
        ((DEGRADED, 0, 0), FAST, (UP, 1, 0)),
        ((UP, 1, 0), FAIL, (DEGRADED, 0, 1)),
        ((DEGRADED, 0, 0), FAIL, (DOWN, 0, 1)),
    ],
)
def test_transition_with_rise_and_fall_of_one(
    before: tuple[LinkState, int, int], event: Event, after: tuple[LinkState, int, int]
) -> None:
    assert advance(Tally(*before), event, rise=1, fall=1) == Tally(*after)


def test_rise_and_fall_counts_from_the_edges() -> None:
    """rise=4, fall=5: UP exactly at the 4th fast answer, DOWN exactly at the 5th failure."""
    tally = Tally(DOWN)
    states = []
    for _ in range(4):
        tally = advance(tally, FAST, rise=4, fall=5)
        states.append(tally.state)
    assert states == [DEGRADED, DEGRADED, DEGRADED, UP]
    states = []
    for _ in range(5):
        tally = advance(tally, FAIL, rise=4, fall=5)
        states.append(tally.state)
    assert states == [DEGRADED, DEGRADED, DEGRADED, DEGRADED, DOWN]


# --------------------------------------------------------------------------------------
# Health: one relay, time passed in.
# --------------------------------------------------------------------------------------

CONFIG = HealthConfig(rise=2, fall=3, slow_ms=1000)


def fresh(config: HealthConfig = CONFIG) -> Health:
    return Health("r1", CHAIN, config)


def up(health: Health) -> Health:
    assert health.probe_ok(10, CHAIN, 1) is not None
    assert health.probe_ok(10, CHAIN, 2) is not None
    assert health.state is UP
    return health


def test_health_starts_down_and_failures_from_down_are_not_changes() -> None:
    health = fresh()
    assert (health.state, health.usable, health.last_ok_ms) == (DOWN, False, None)
    assert health.probe_failed("refused", 5) is None
    assert health.send_failed("reset", 6) is None
    assert health.consecutive_failures == 2
    assert (health.last_error, health.last_error_ms) == ("reset", 6)


def test_first_success_returns_the_relay_usable_at_once() -> None:
    health = fresh()
    health.probe_failed("refused", 1)
    change = health.probe_ok(40, CHAIN, 7, block_number=123)
    assert change == Change("r1", DOWN, DEGRADED, "answering again: probe ok in 40 ms", 7)
    assert change.returned and not change.alert
    assert health.usable
    assert (health.latency_ms, health.last_ok_ms, health.head) == (40, 7, 123)
    assert health.consecutive_failures == 0


def test_rise_fast_successes_make_it_up() -> None:
    health = fresh()
    health.probe_ok(10, CHAIN, 1)
    change = health.probe_ok(20, CHAIN, 2)
    assert change is not None
    assert (change.old, change.new, change.returned) == (DEGRADED, UP, False)
    assert change.reason == "2 consecutive fast successes; last: probe ok in 20 ms"
    assert health.probe_ok(20, CHAIN, 3) is None


def test_slow_success_demotes_up_and_keeps_degraded() -> None:
    health = up(fresh())
    change = health.probe_ok(1001, CHAIN, 3)
    assert change is not None
    assert (change.old, change.new) == (UP, DEGRADED)
    assert change.reason == "slow probe: 1001 ms > 1000 ms"
    assert health.probe_ok(1000, CHAIN, 4) is None  # exactly slow_ms is still fast
    assert health.probe_ok(5000, CHAIN, 5) is None  # slow again: streak reset, stays
    assert health.probe_ok(10, CHAIN, 6) is None
    assert health.state is DEGRADED
    assert health.probe_ok(10, CHAIN, 7) is not None
    assert health.state is UP


def test_slow_first_success_still_returns() -> None:
    change = fresh().probe_ok(9000, CHAIN, 1)
    assert change is not None and change.returned and change.new is DEGRADED


def test_fall_failures_from_up_make_it_down() -> None:
    health = up(fresh())
    first = health.probe_failed("timeout", 3)
    assert first is not None
    assert (first.old, first.new, first.reason) == (UP, DEGRADED, "probe failed: timeout")
    assert health.usable  # one failure is not an outage
    assert health.probe_failed("timeout", 4) is None
    down = health.probe_failed("refused", 5)
    assert down is not None
    assert (down.old, down.new, down.alert) == (DEGRADED, DOWN, True)
    assert down.reason == "3 consecutive failures; last: probe failed: refused"
    assert not health.usable


def test_send_failed_counts_like_a_failed_probe() -> None:
    health = up(fresh())
    change = health.send_failed("connection reset", 3)
    assert change is not None
    assert (change.new, change.reason) == (DEGRADED, "send failed: connection reset")
    health.send_failed("connection reset", 4)
    assert health.send_failed("connection reset", 5) is not None
    assert health.state is DOWN


def test_send_ok_counts_like_a_fast_probe() -> None:
    health = fresh()
    health.probe_failed("refused", 1)
    change = health.send_ok(8)
    assert change is not None and change.returned
    assert change.reason == "answering again: send ok"
    assert health.latency_ms is None  # a send measures no probe latency
    assert health.last_ok_ms == 8
    assert health.send_ok(9) is not None
    assert health.state is UP


def test_chain_id_mismatch_disables_for_good() -> None:
    health = up(fresh())
    health.probe_ok(10, CHAIN, 3, block_number=500)
    change = health.probe_ok(10, 1, 4, block_number=20_000_000)
    assert change is not None
    assert (change.old, change.new, change.alert) == (UP, DISABLED, True)
    assert "1" in change.reason and str(CHAIN) in change.reason
    assert change.reason == f"chain id mismatch: relay reports 1, configured {CHAIN}"
    assert health.head == 500  # another chain's head is never recorded
    assert health.probe_ok(10, CHAIN, 5) is None
    assert health.probe_failed("x", 6) is None
    assert health.send_ok(7) is None
    assert health.send_failed("x", 8) is None
    assert (health.state, health.usable, health.last_error) == (DISABLED, False, change.reason)


def test_chain_id_mismatch_disables_from_down() -> None:
    change = fresh().probe_ok(10, 56, 1)
    assert change is not None and change.new is DISABLED and not change.returned


def test_last_error_survives_recovery() -> None:
    health = fresh()
    health.probe_failed("dns failure", 3)
    health.probe_ok(10, CHAIN, 4)
    assert (health.last_error, health.last_error_ms, health.last_ok_ms) == ("dns failure", 3, 4)


def test_snapshot_is_json_ready() -> None:
    health = fresh()
    health.probe_failed("refused", 1)
    health.probe_ok(12, CHAIN, 2, block_number=99)
    snap = health.snapshot()
    assert snap.usable
    assert json.loads(json.dumps(snap.as_json())) == {
        "relay": "r1",
        "chain_id": CHAIN,
        "state": "degraded",
        "usable": True,
        "latency_ms": 12,
        "last_ok_ms": 2,
        "last_error": "refused",
        "last_error_ms": 1,
        "consecutive_failures": 0,
        "head": 99,
    }


@pytest.mark.parametrize(
    "config", [HealthConfig(rise=0), HealthConfig(fall=0), HealthConfig(slow_ms=-1)]
)
def test_health_refuses_nonsense_config(config: HealthConfig) -> None:
    with pytest.raises(ConfigError):
        Health("r1", CHAIN, config)


# --------------------------------------------------------------------------------------
# Monitor: scripted fake relays.
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    chain_id: int
    block_number: int


class FakeRelay:
    """A probe target whose behaviour the test sets with ``script`` between probes."""

    def __init__(self, name: str, chain_id: int = CHAIN) -> None:
        self.name = name
        self.chain_id = chain_id
        self.calls = 0
        self.probed = asyncio.Event()  # set at every probe; the test clears it
        self.entered = asyncio.Event()  # set when a hanging probe is in flight
        self.release = asyncio.Event()  # lets a "wait" probe finish
        self.cancelled = False
        self.script: Callable[[], Any] = self.fail

    async def probe(self) -> Any:
        self.calls += 1
        self.probed.set()
        outcome = self.script()
        if asyncio.iscoroutine(outcome):
            return await outcome
        return outcome

    def ok(self) -> Answer:
        return Answer(self.chain_id, 1000 + self.calls)

    def fail(self) -> Any:
        raise ConnectionRefusedError("connection refused")

    async def hang(self) -> Any:
        self.entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise

    async def wait(self) -> Answer:
        self.entered.set()
        await self.release.wait()
        return self.ok()


FAST_PROBES = HealthConfig(probe_seconds=60, probe_down_seconds=0.02, rise=2, fall=3)


async def until(condition: Callable[[], bool], bound: float = BOUND) -> None:
    """Poll ``condition`` once per loop iteration, failing the test after ``bound`` s."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), bound)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def other_tasks() -> set[asyncio.Task[Any]]:
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}


async def test_returned_fires_within_one_probe_of_the_relay_answering() -> None:
    relay = FakeRelay("r1")
    changes: list[Change] = []
    monitor = Monitor([relay], FAST_PROBES, on_change=changes.append)
    task = asyncio.create_task(monitor.run())
    await until(lambda: relay.calls >= 3)  # down and being probed at the short interval
    assert not monitor.returned.is_set() and not monitor.usable("r1")
    loop = asyncio.get_running_loop()
    relay.script = relay.ok
    calls_before, started = relay.calls, loop.time()
    await asyncio.wait_for(monitor.returned.wait(), BOUND)
    elapsed = loop.time() - started
    assert relay.calls == calls_before + 1  # the very next probe, not a later one
    # One short interval plus scheduling (milliseconds), far from probe_seconds: a bound
    # that holds on any machine, and still fails a monitor that waited the long interval.
    assert elapsed < FAST_PROBES.probe_seconds / 10
    assert monitor.usable("r1") and monitor.snapshots()["r1"].state is DEGRADED
    assert changes[-1].returned and monitor.changed.is_set()
    await stop(task)


async def test_returned_fires_again_after_a_second_outage() -> None:
    relay = FakeRelay("r1")
    relay.script = relay.ok
    monitor = Monitor([relay], FAST_PROBES)
    task = asyncio.create_task(monitor.run())
    await asyncio.wait_for(monitor.returned.wait(), BOUND)
    monitor.returned.clear()  # what the dispatcher does
    await until(lambda: monitor.snapshots()["r1"].state is UP)
    relay.script = relay.fail
    for _ in range(3):  # UP: the failing send kicks a probe at once instead of after 60 s
        monitor.report_send("r1", ok=False, reason="reset")
    await until(lambda: monitor.snapshots()["r1"].state is DOWN)
    assert not monitor.returned.is_set()
    relay.script = relay.ok
    await asyncio.wait_for(monitor.returned.wait(), BOUND)
    await stop(task)


async def test_kick_probes_at_once_despite_a_long_interval() -> None:
    relay = FakeRelay("r1")
    relay.script = relay.ok
    monitor = Monitor([relay], FAST_PROBES)
    task = asyncio.create_task(monitor.run())
    await until(lambda: monitor.snapshots()["r1"].state is UP)  # next probe in 60 s
    await until(lambda: relay.calls == 2)
    relay.probed.clear()
    monitor.kick("r1")
    await asyncio.wait_for(relay.probed.wait(), BOUND)
    assert relay.calls == 3
    await stop(task)


async def test_report_send_feeds_health_and_kicks_on_failure() -> None:
    relay = FakeRelay("r1")
    relay.script = relay.ok
    changes: list[Change] = []
    monitor = Monitor([relay], FAST_PROBES, on_change=changes.append)
    task = asyncio.create_task(monitor.run())
    await until(lambda: monitor.snapshots()["r1"].state is UP)
    relay.probed.clear()
    monitor.report_send("r1", ok=False, reason="connection reset")
    assert changes[-1].new is DEGRADED and changes[-1].reason == "send failed: connection reset"
    await asyncio.wait_for(relay.probed.wait(), BOUND)  # the kick
    await until(lambda: monitor.snapshots()["r1"].state is UP)  # ok sends and probes
    monitor.report_send("r1", ok=True)
    assert monitor.snapshots()["r1"].consecutive_failures == 0
    await stop(task)


async def test_a_hanging_probe_is_bounded_by_the_guard_and_counts_as_failure() -> None:
    relay = FakeRelay("r1")
    relay.script = relay.hang
    monitor = Monitor([relay], FAST_PROBES, guard_s=0.05)
    snaps = await asyncio.wait_for(monitor.probe_all(), BOUND)
    assert relay.cancelled
    assert snaps["r1"].state is DOWN and snaps["r1"].consecutive_failures == 1
    assert snaps["r1"].last_error == "probe hung for more than 0.05 s"


async def test_a_hanging_probe_does_not_stall_the_watch_loop() -> None:
    relay = FakeRelay("r1")
    relay.script = relay.hang
    monitor = Monitor([relay], FAST_PROBES, guard_s=0.02)
    task = asyncio.create_task(monitor.run())
    await until(lambda: monitor.snapshots()["r1"].consecutive_failures >= 2)
    relay.script = relay.ok
    await asyncio.wait_for(monitor.returned.wait(), BOUND)
    await stop(task)


def test_guard_timeout_is_five_intervals_of_at_least_a_second() -> None:
    assert guard_timeout(0.02) == 5.0
    assert guard_timeout(1.0) == 5.0
    assert guard_timeout(60.0) == 300.0


async def test_the_targets_own_timeout_keeps_its_message() -> None:
    relay = FakeRelay("r1")
    monitor = Monitor([relay], FAST_PROBES)

    def own_timeout() -> Any:
        raise TimeoutError("read timed out after 5 s")

    relay.script = own_timeout
    assert (await monitor.probe_all())["r1"].last_error == "read timed out after 5 s"


async def test_probe_all_returns_every_target_probed_concurrently() -> None:
    good, late, dead, foreign = (FakeRelay(n) for n in ("good", "late", "dead", "foreign"))
    good.script = good.wait
    late.script = late.wait
    foreign.script = lambda: Answer(1, 5)  # configured for CHAIN, answers for mainnet
    monitor = Monitor([good, late, dead, foreign], FAST_PROBES)
    probing = asyncio.create_task(monitor.probe_all())
    # Both "wait" relays are in flight at once: a sequential probe_all would stall here.
    await asyncio.wait_for(asyncio.gather(good.entered.wait(), late.entered.wait()), BOUND)
    good.release.set()
    late.release.set()
    snaps = await asyncio.wait_for(probing, BOUND)
    assert list(snaps) == ["good", "late", "dead", "foreign"]
    states = {name: snap.state for name, snap in snaps.items()}
    assert states == {"good": DEGRADED, "late": DEGRADED, "dead": DOWN, "foreign": DISABLED}
    assert snaps["dead"].last_error == "connection refused"


async def test_probe_all_disables_a_relay_on_the_wrong_chain() -> None:
    relay = FakeRelay("r1")
    relay.script = lambda: Answer(1, 20_000_000)
    alerts: list[Change] = []
    monitor = Monitor([relay], FAST_PROBES, on_change=alerts.append)
    snaps = await monitor.probe_all()
    assert snaps["r1"].state is DISABLED and alerts[-1].alert
    assert monitor.head("r1") is None and monitor.best_head() is None
    calls = relay.calls
    await monitor.probe_all()
    assert relay.calls == calls  # disabled relays are not probed any more


async def test_slow_probe_is_measured_with_the_injected_clock() -> None:
    now = [0]
    relay = FakeRelay("r1")

    def slow() -> Answer:
        now[0] += 2500
        return relay.ok()

    relay.script = slow
    monitor = Monitor([relay], HealthConfig(slow_ms=2000), clock_ms=lambda: now[0])
    snap = (await monitor.probe_all())["r1"]
    assert (snap.state, snap.latency_ms, snap.last_ok_ms) == (DEGRADED, 2500, 2500)
    await monitor.probe_all()
    assert monitor.snapshots()["r1"].state is DEGRADED  # slow never rises to UP


async def test_run_cancels_cleanly_with_probes_in_flight() -> None:
    hanging, fine = FakeRelay("hanging"), FakeRelay("fine")
    hanging.script = hanging.hang
    fine.script = fine.ok
    monitor = Monitor([hanging, fine], FAST_PROBES)  # guard is 5 s: still hanging at cancel
    task = asyncio.create_task(monitor.run())
    await asyncio.wait_for(hanging.entered.wait(), BOUND)
    await until(lambda: monitor.usable("fine"))
    await stop(task)
    assert hanging.cancelled
    assert other_tasks() == set()
    # A cancelled monitor can run again.
    again = asyncio.create_task(monitor.run())
    await until(lambda: hanging.calls >= 2)
    await stop(again)
    assert other_tasks() == set()


async def test_run_twice_at_once_is_refused() -> None:
    relay = FakeRelay("r1")
    monitor = Monitor([relay], FAST_PROBES)
    task = asyncio.create_task(monitor.run())
    await until(lambda: relay.calls >= 1)
    with pytest.raises(RuntimeError, match="already running"):
        await monitor.run()
    await stop(task)


class OddError(Exception):
    """An exception type nobody anticipated."""


@pytest.mark.parametrize(
    ("raised", "recorded"),
    [
        (RuntimeError(), "RuntimeError"),
        (OddError(), "OddError"),
        (ValueError("bad hex"), "bad hex"),
        (KeyError("result"), "'result'"),
        (OSError("network is unreachable"), "network is unreachable"),
    ],
)
async def test_a_probe_exception_is_recorded_by_message_or_type(
    raised: Exception, recorded: str
) -> None:
    relay = FakeRelay("r1")

    def boom() -> Any:
        raise raised

    relay.script = boom
    snap = (await Monitor([relay], FAST_PROBES).probe_all())["r1"]
    assert (snap.state, snap.last_error, snap.consecutive_failures) == (DOWN, recorded, 1)


@pytest.mark.parametrize(
    "answer",
    ["not a probe result", Answer(True, 5), Answer(CHAIN, "0x10")],  # type: ignore[arg-type]
)
async def test_a_malformed_probe_answer_is_a_failure(answer: Any) -> None:
    relay = FakeRelay("r1")
    relay.script = lambda: answer
    snap = (await Monitor([relay], FAST_PROBES).probe_all())["r1"]
    assert snap.state is DOWN
    assert snap.last_error == f"probe returned a malformed result: {answer!r}"


async def test_exceptions_in_probes_never_kill_the_monitor() -> None:
    relay = FakeRelay("r1")
    errors: list[Exception] = [RuntimeError(), OddError("?"), KeyError("x"), OSError("down")]

    def next_error() -> Any:
        if errors:
            raise errors.pop(0)
        return "not a probe result"

    relay.script = next_error
    monitor = Monitor([relay], FAST_PROBES)
    task = asyncio.create_task(monitor.run())
    await until(lambda: monitor.snapshots()["r1"].consecutive_failures >= 6)
    assert not task.done()
    relay.script = relay.ok
    await asyncio.wait_for(monitor.returned.wait(), BOUND)
    await stop(task)


async def test_a_failing_on_change_callback_never_kills_the_monitor() -> None:
    relay = FakeRelay("r1")
    relay.script = relay.ok

    def broken(change: Change) -> None:
        raise RuntimeError("audit log is full")

    monitor = Monitor([relay], FAST_PROBES, on_change=broken)
    task = asyncio.create_task(monitor.run())
    await asyncio.wait_for(monitor.returned.wait(), BOUND)  # events are set regardless
    await until(lambda: monitor.snapshots()["r1"].state is UP)
    assert not task.done()
    await stop(task)


async def test_run_returns_when_every_relay_is_disabled() -> None:
    relay = FakeRelay("r1")
    relay.script = lambda: Answer(1, 5)
    monitor = Monitor([relay], FAST_PROBES)
    await asyncio.wait_for(monitor.run(), BOUND)
    assert monitor.snapshots()["r1"].state is DISABLED
    assert other_tasks() == set()


async def test_queries_over_several_relays() -> None:
    a, b, c = FakeRelay("a"), FakeRelay("b"), FakeRelay("c")
    a.script, b.script = a.ok, b.ok
    monitor = Monitor([a, b, c], FAST_PROBES)
    assert monitor.best_head() is None and monitor.usable_names() == []
    await monitor.probe_all()
    await monitor.probe_all()  # a and b now UP
    c.script = c.ok
    await monitor.probe_all()  # c DEGRADED, a and b still UP
    assert monitor.usable_names() == ["a", "b", "c"]
    b.script = b.fail
    await monitor.probe_all()  # b drops to DEGRADED: UP relays come first
    assert monitor.usable_names() == ["a", "c", "b"]
    assert monitor.head("a") == 1004 and monitor.head("b") == 1003
    assert monitor.best_head() == max(monitor.head(n) or 0 for n in "abc")
    with pytest.raises(KeyError, match="unknown relay"):
        monitor.usable("zz")
    with pytest.raises(KeyError, match="unknown relay"):
        monitor.kick("zz")


def test_monitor_refuses_duplicate_names_and_zero_intervals() -> None:
    with pytest.raises(ConfigError, match="unique"):
        Monitor([FakeRelay("a"), FakeRelay("a")], FAST_PROBES)
    with pytest.raises(ConfigError, match="> 0"):
        Monitor([FakeRelay("a")], HealthConfig(probe_down_seconds=0))
