"""The Bybit side in real time, end to end: a real VenueBroadcaster with its private stream
against the simulator's WebSocket endpoints on loopback (issue 17).

Periodic reconcile is set to a day, so whatever reaches the store between connects came
through the stream; the REST pass that follows each (re)connect is the only other reader.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest
from tests.kits import bybit as kit
from tests.kits.waiting import wait_until_async

from airlock.audit import entries as audit_entries
from airlock.broadcaster.venue import VenueBroadcaster
from airlock.config import StreamConfig
from airlock.encoding.canonical import parse_canonical as parse
from airlock.queue.account import RESUME_NOTE
from airlock.queue.store import Store
from airlock.relays.errors import StreamStartError
from airlock.sim.bybit import BybitSim
from airlock.sim.faultproxy import FaultProxy

pytestmark = pytest.mark.slow

FAST = StreamConfig(
    ping_seconds=0.2, stale_seconds=0.6, auth_timeout_seconds=5.0,
    backoff_base_seconds=0.02, backoff_cap_seconds=0.2,
)  # fmt: skip
BOUND_S = 30


@pytest.fixture(scope="module")
def keys(keyring) -> kit.BybitKeys:
    return kit.make_keys(keyring)


def venue_for(keyring, store: Store, keys, sim: BybitSim, **changes: Any) -> VenueBroadcaster:
    stream = replace(FAST, **changes.pop("stream", {}))
    return kit.venue(keyring, store, keys, sim.url, reconcile_seconds=86_400, stream=stream,
                     **changes)  # fmt: skip


@asynccontextmanager
async def serving(venue: VenueBroadcaster) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    async with venue.client:
        task = asyncio.create_task(venue.run(stop))
        try:
            yield task
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 15)


async def until(check: Callable[[], bool], what: str, task: asyncio.Task[None]) -> None:
    def done() -> bool:
        if task.done():
            task.result()  # raise what ended it
            raise AssertionError(f"the venue side ended while waiting for {what}")
        return check()

    await wait_until_async(done, BOUND_S, what)


def states(store: Store, queued) -> Counter[str]:
    return Counter(str(store.items.get(q.item.id).state) for q in queued)


def log_of(sim: BybitSim, kind: str, stream: str = "private") -> list[Any]:
    return [e for e in sim.stream_log() if e.kind == kind and e.stream == stream]


def count_resume_looks(venue: VenueBroadcaster) -> list[int]:
    """Each time the running stream reads the resume note (every RESUME_POLL_S), a mark."""
    looks: list[int] = []
    assert venue.stream is not None
    read = venue.stream._resume_note

    def counted() -> int:
        looks.append(1)
        return read()

    venue.stream._resume_note = counted  # type: ignore[method-assign]
    return looks


def audit_types(store: Store) -> list[tuple[str, dict[str, Any]]]:
    return [(e["type"], e["data"]) for e in map(parse, store.audit.entries())]


def rest_reads(sim: BybitSim, path: str) -> int:
    return sum(1 for r in sim.requests() if r.path == path)


def test_a_fill_is_stored_from_the_stream_without_any_poll(keyring, store: Store, keys):
    queued = kit.queue_orders(store, keys, 3, reachable=True)
    with kit.sim_for(keys) as sim:
        venue = venue_for(keyring, store, keys, sim)

        async def scenario() -> None:
            async with serving(venue) as task:
                await until(lambda: states(store, queued) == {"sent": 3}, "orders placed", task)
                await until(lambda: venue.stream is not None and venue.stream.is_connected,
                            "the stream up", task)  # fmt: skip
                polls = rest_reads(sim, "/v5/execution/list")
                sim.set_mark_price(kit.SYMBOL, "59000")  # every resting buy fills
                await until(lambda: len(store.venue.fills()) == 3, "fills stored", task)
                await until(lambda: states(store, queued) == {"confirmed": 3}, "filled", task)
                assert rest_reads(sim, "/v5/execution/list") == polls, "no poll read them"

        asyncio.run(scenario())
        positions = {p["symbol"]: p for p in sim.positions()}
        wallet = sim.wallet()
    (position,) = store.account.positions()
    assert (position.size, position.side) == (positions[kit.SYMBOL]["size"], "Buy")
    balances = {b.coin: b.wallet_balance for b in store.account.balances()}
    coins = {c["coin"]: c["walletBalance"] for c in wallet["coin"]}
    assert balances["USDT"] == coins["USDT"]


def test_fills_lost_in_a_gap_come_back_once_and_duplicates_count_once(keyring, store: Store, keys):
    queued = kit.queue_orders(store, keys, 4, reachable=True)
    with kit.sim_for(keys) as sim:
        venue = venue_for(keyring, store, keys, sim)

        async def scenario() -> None:
            async with serving(venue) as task:
                await until(lambda: states(store, queued) == {"sent": 4}, "orders placed", task)
                await until(lambda: venue.stream.is_connected, "the stream up", task)
                connects = len(log_of(sim, "connect"))
                sim.duplicate_executions(count=10)
                sim.lose_stream_messages(count=1000)  # the gap: nothing pushed reaches us
                sim.set_mark_price(kit.SYMBOL, "59000")
                await until(lambda: len(sim.executions()) == 4, "fills at the venue", task)
                assert store.venue.fills() == [], "the lost messages were lost"
                sim.drop_streams()  # the stream comes back: the REST pass covers the gap
                await until(lambda: len(log_of(sim, "connect")) > connects, "reconnect", task)
                await until(lambda: len(store.venue.fills()) == 4, "the gap recovered", task)
                await until(lambda: states(store, queued) == {"confirmed": 4}, "filled", task)

        asyncio.run(scenario())
        venue_ids = sorted(e["execId"] for e in sim.executions())
    assert sorted(f.exec_id for f in store.venue.fills()) == venue_ids  # each exactly once


def test_duplicated_executions_on_the_stream_are_stored_once(keyring, store: Store, keys):
    queued = kit.queue_orders(store, keys, 2, reachable=True)
    with kit.sim_for(keys) as sim:
        venue = venue_for(keyring, store, keys, sim)

        async def scenario() -> None:
            async with serving(venue) as task:
                await until(lambda: states(store, queued) == {"sent": 2}, "orders placed", task)
                await until(lambda: venue.stream.is_connected, "the stream up", task)
                sim.duplicate_executions(count=10)
                sim.set_mark_price(kit.SYMBOL, "59000")
                await until(lambda: len(log_of(sim, "duplicate")) >= 1, "a duplicate sent", task)
                await until(lambda: len(store.venue.fills()) == 2, "fills stored", task)

        asyncio.run(scenario())
    fill_events = [e for e in store.events.after(0, 10_000) if e.type == "item.fill"]
    assert len(store.venue.fills()) == 2 and len(fill_events) == 2


def test_a_refused_stream_key_at_start_fails_loud_within_the_bound(keyring, store: Store, keys):
    with kit.sim_for(keys) as sim:
        sim.refuse_stream_auth(count=100)
        venue = venue_for(keyring, store, keys, sim, stream={"auth_timeout_seconds": 3.0})

        async def start() -> None:
            async with venue.client:
                await venue.run(asyncio.Event())

        with pytest.raises(StreamStartError) as caught:  # a retry loop would time out
            asyncio.run(asyncio.wait_for(start(), BOUND_S))
        auths = log_of(sim, "auth")
    assert caught.value.refused and "retrying will not help" in str(caught.value)
    assert len(auths) == 1 and auths[0].ok is False


def test_a_key_revoked_mid_run_stops_the_account_with_one_alert(keyring, store: Store, keys):
    with kit.sim_for(keys) as sim:
        venue = venue_for(keyring, store, keys, sim)

        async def scenario() -> None:
            async with serving(venue) as task:
                await until(lambda: venue.stream.is_connected, "the stream up", task)
                sim.revoke_key()
                await until(lambda: venue.stream.supervisor.stopped is not None, "stopped", task)
                auths = len(log_of(sim, "auth"))
                # The service's own clock: its resume watcher looks every RESUME_POLL_S.
                # Three looks later (many backoff periods of at most 0.2 s): no attempt.
                looks = count_resume_looks(venue)
                await until(lambda: len(looks) >= 3, "three looks for a resume", task)
                assert len(log_of(sim, "auth")) == auths, "a refused key is not retried"

        asyncio.run(scenario())
    alerts = [d for t, d in audit_types(store) if t == audit_entries.ALERT]
    assert [a["key"] for a in alerts] == ["bybit-account-stopped"], alerts  # one, whoever saw it


def test_a_silent_stream_is_noticed_and_replaced(keyring, store: Store, keys):
    queued = kit.queue_orders(store, keys, 1, reachable=True)
    with kit.sim_for(keys) as sim:
        venue = venue_for(keyring, store, keys, sim)

        async def scenario() -> None:
            async with serving(venue) as task:
                await until(lambda: states(store, queued) == {"sent": 1}, "order placed", task)
                await until(lambda: venue.stream.is_connected, "the stream up", task)
                connects = len(log_of(sim, "connect"))
                sim.silence_streams()  # TCP stays up; no pong, no message
                await until(lambda: len(log_of(sim, "connect")) > connects, "replaced", task)
                await until(lambda: venue.stream.is_connected, "the new stream up", task)
                sim.set_mark_price(kit.SYMBOL, "59000")
                await until(lambda: len(store.venue.fills()) == 1, "the fill stored", task)

        asyncio.run(scenario())


def test_orders_go_over_the_trade_stream_once_even_when_an_answer_is_lost(
    keyring, store: Store, keys
):
    with kit.sim_for(keys) as sim:
        venue = venue_for(keyring, store, keys, sim, send_over="ws")

        async def scenario() -> None:
            async with serving(venue) as task:
                assert venue.trade is not None
                await until(lambda: venue.trade.sender.usable, "the trade stream up", task)
                queued = kit.queue_orders(store, keys, 3, reachable=True)
                await until(lambda: states(store, queued) == {"sent": 3}, "orders placed", task)
                sim.lose_trade_replies(count=1)
                late = kit.queue_orders(store, keys, 1, prefix="late", reachable=True)
                await until(lambda: states(store, late) == {"sent": 1}, "late order sent", task)

        asyncio.run(scenario())
        ops = [e for e in sim.stream_log() if e.stream == "trade" and e.kind == "op"]
        placed = Counter(o["orderLinkId"] for o in sim.orders())
        rest_creates = kit.creates(sim)
    assert len(ops) == 4 and rest_creates == [], "every create went over the trade stream"
    assert sorted(placed.values()) == [1, 1, 1, 1], "the lost answer was looked up, not resent"


def test_with_the_trade_stream_down_orders_go_over_rest(keyring, store: Store, keys):
    queued = kit.queue_orders(store, keys, 2, reachable=True)
    with kit.sim_for(keys) as sim:
        venue = venue_for(keyring, store, keys, sim, send_over="ws")
        assert venue.trade is not None and not venue.trade.sender.usable

        async def once() -> None:
            async with venue.client:  # --once: no streams at all
                await venue.run_once()

        asyncio.run(once())
        assert len(kit.creates(sim)) == 2
    assert states(store, queued) == {"sent": 2}


def test_dcp_cancels_during_a_cut_are_recognised_and_said(keyring, store: Store, keys):
    queued = kit.queue_orders(store, keys, 2, reachable=True)
    with kit.sim_for(keys, dcp_allowed=True) as sim, FaultProxy(sim.url).start() as link:
        venue = kit.venue(keyring, store, keys, link.url, reconcile_seconds=86_400,
                          stream=FAST, dcp_window_s=3)  # fmt: skip

        async def scenario() -> None:
            async with serving(venue) as task:
                await until(lambda: states(store, queued) == {"sent": 2}, "orders placed", task)
                await until(lambda: _armed(sim), "DCP armed", task)
                link.set_mode("down")  # REST and the stream cut: past the window, the
                await until(lambda: _all_dcp_cancelled(sim), "the venue's DCP", task)
                link.set_mode("pass")
                await until(lambda: states(store, queued) == {"confirmed": 2}, "seen", task)

        asyncio.run(scenario())
    for q in queued:
        reason = store.items.history(q.item.id)[-1].reason
        assert "Disconnect Cancel Protection" in reason and "CancelByDCP" in reason
    said = [d["message"] for t, d in audit_types(store) if t == audit_entries.ALERT]
    assert sum("Disconnect Cancel Protection" in m for m in said) == 2


def test_dcp_refused_for_the_account_is_one_alert_and_nothing_else(keyring, store: Store, keys):
    queued = kit.queue_orders(store, keys, 1, reachable=True)
    with kit.sim_for(keys) as sim:  # an account the venue does not allow DCP for
        venue = venue_for(keyring, store, keys, sim, dcp_window_s=5)

        async def scenario() -> None:
            async with serving(venue) as task:
                await until(lambda: states(store, queued) == {"sent": 1}, "order placed", task)
                await until(lambda: any(a["key"] == "bybit-dcp" for a in _alerts(store)),
                            "the DCP alert", task)  # fmt: skip

        asyncio.run(scenario())
    assert venue.client.auth_stopped is None, "a DCP refusal does not stop the account"


def _alerts(store: Store) -> list[dict[str, Any]]:
    return [d for t, d in audit_types(store) if t == audit_entries.ALERT]


def _armed(sim: BybitSim) -> bool:
    infos = sim.dcp_info().get("dcpInfos", [])
    return any(i.get("product") == "DERIVATIVES" and str(i.get("timeWindow")) == "3" for i in infos)


def _all_dcp_cancelled(sim: BybitSim) -> bool:
    sim.check_timers()
    orders = sim.orders()
    return bool(orders) and all(o.get("cancelType") == "CancelByDCP" for o in orders)


def test_a_stream_url_that_is_no_websocket_fails_loud_at_start(keyring, store: Store, keys):
    with kit.sim_for(keys) as sim:
        wrong = sim.ws_url + "/v5/nothing-here"
        venue = venue_for(keyring, store, keys, sim, stream={"url": wrong})

        async def start() -> None:
            async with venue.client:
                await venue.run(asyncio.Event())

        with pytest.raises(StreamStartError, match="not a WebSocket"):
            asyncio.run(start())


def test_airlock_bybit_resume_brings_a_stopped_account_back(keyring, store: Store, keys):
    with kit.sim_for(keys) as sim:
        venue = venue_for(keyring, store, keys, sim)

        async def scenario() -> None:
            async with serving(venue) as task:
                await until(lambda: venue.stream.is_connected, "the stream up", task)
                sim.refuse_stream_auth(count=1)  # the next auth only: the key is then "fixed"
                sim.drop_streams()
                await until(lambda: venue.client.auth_stopped is not None, "stopped", task)
                store.notes.set_many({RESUME_NOTE: str(store.now_ms())})  # airlock bybit resume
                await until(lambda: venue.client.auth_stopped is None, "REST resumed", task)
                await until(lambda: venue.stream.is_connected, "the stream back", task)

        asyncio.run(scenario())
