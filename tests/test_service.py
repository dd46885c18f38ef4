"""The broadcaster as a service, driven as a subprocess: start, drain, SIGTERM mid-drain,
restart, finish; a second instance on the same database is refused."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from tests.kits import bybit as kit
from tests.kits.cli import broadcaster
from tests.kits.waiting import wait_until

from airlock.queue.states import State
from airlock.sim.bybit import CREATE

pytestmark = pytest.mark.slow

ORDERS = 40


@pytest.fixture(scope="module")
def keys(keyring) -> kit.BybitKeys:
    return kit.make_keys(keyring)


def stopped(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> tuple[int, str]:
    process.send_signal(sig)
    _, err = process.communicate(timeout=30)
    return process.returncode, err.decode()


def test_sigterm_mid_drain_then_restart_finishes_everything_once(
    store, kek, keyring, keys, token_home, tmp_path: Path
):
    queued = kit.queue_orders(store, keys, ORDERS)
    ids = [q.item.id for q in queued]
    expected = [store.venue.of_item(i)[1].link_id for i in ids]
    with kit.sim_for(keys, rate_limits={CREATE: 10}) as sim:  # 4 s of draining
        config = tmp_path / "airlock.toml"
        kit.write_config(config, store.path, kek.label, keys, sim.url)
        first = broadcaster(token_home, config)
        wait_until(lambda: len(sim.orders()) >= 5, 30, "the drain to start")
        code, err = stopped(first)
        assert code == 0, err
        placed_at_stop = len(sim.orders())
        assert placed_at_stop < ORDERS, "the stop came after the drain"
        conn = sqlite3.connect(store.path)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
        # Stopped cleanly: nothing is left half-sent.
        assert all(store.items.get(i).state in (State.QUEUED, State.SENT) for i in ids)
        assert store.notes.get("broadcaster.heartbeat_ms") is not None
        second = broadcaster(token_home, config)
        wait_until(
            lambda: all(store.items.get(i).state is State.SENT for i in ids), 180, "the drain"
        )
        code, err = stopped(second, signal.SIGINT)
        assert code == 0, err
        orders = sim.orders()
    assert Counter(o["orderLinkId"] for o in orders) == Counter(expected)


def test_a_second_broadcaster_on_the_same_database_is_refused(
    store, kek, keys, token_home, tmp_path: Path
):
    with kit.sim_for(keys) as sim:
        config = tmp_path / "airlock.toml"
        kit.write_config(config, store.path, kek.label, keys, sim.url)
        first = broadcaster(token_home, config)
        wait_until(lambda: store.notes.get("broadcaster.pid") is not None, 30, "the first to start")
        second = broadcaster(token_home, config, "--once", "--json")
        out, err = second.communicate(timeout=30)
        assert second.returncode == 1, err
        message = err.decode()
        assert "another broadcaster" in message and str(first.pid) in message
        assert out == b""
        code, _ = stopped(first, signal.SIGKILL)
        assert code == -signal.SIGKILL
        # The kernel dropped the dead process's lock: no stale lock blocks a restart.
        third = broadcaster(token_home, config, "--once", "--json")
        out, err = third.communicate(timeout=60)
        assert third.returncode == 0, err.decode()
        assert json.loads(out)["alerts"] == []
