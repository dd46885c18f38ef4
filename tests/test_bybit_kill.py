"""``kill -9`` of the broadcaster process at random moments while it drains Bybit orders,
restarted each time: every order is placed exactly once, under its one orderLinkId."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest
from tests.kits import bybit as kit
from tests.kits.cli import broadcaster, wait_running

from airlock.sim.bybit import CREATE

pytestmark = pytest.mark.slow

KILLS = 8
ORDERS = 80
SEED = 20261122


@pytest.fixture(scope="module")
def keys(keyring) -> kit.BybitKeys:
    return kit.make_keys(keyring)


def test_kill_9_during_a_bybit_drain_places_each_order_once(
    store, kek, keyring, keys, token_home, tmp_path: Path
):
    rng = random.Random(SEED)
    queued = kit.queue_orders(store, keys, ORDERS)
    ids = [q.item.id for q in queued]
    expected = [store.venue.of_item(i)[1].link_id for i in ids]
    # 10 creates per second: the drain lasts ~8 s, long enough for kills to land inside it.
    with kit.sim_for(keys, rate_limits={CREATE: 10}) as sim:
        sim.inject("lose_response_after_accept", count=6, path=CREATE)
        config = tmp_path / "airlock.toml"
        kit.write_config(config, store.path, kek.label, keys, sim.url)
        placed_at_kill = []
        for _ in range(KILLS):
            process = broadcaster(token_home, config)
            wait_running(store, process)
            time.sleep(rng.uniform(0.3, 2.0))  # the kill moment, not a wait for anything
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            conn = sqlite3.connect(store.path)
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            conn.close()
            placed_at_kill.append(len(sim.orders()))
        assert placed_at_kill[0] < ORDERS, "the first kill came after the drain"
        final = broadcaster(token_home, config, "--once", "--json")
        out, err = final.communicate(timeout=120)
        assert final.returncode == 0, err.decode()
        orders = sim.orders()
        creates = [json.loads(r.body)["orderLinkId"] for r in sim.requests() if r.path == CREATE]
    states = Counter((str(store.items.get(i).state), store.items.get(i).state_reason) for i in ids)
    assert Counter(o["orderLinkId"] for o in orders) == Counter(expected), (states, out, err)
    assert set(creates) == set(expected), "never under another orderLinkId"
    assert all(str(store.items.get(i).state) == "sent" for i in ids)
    killed_mid_drain = sum(1 for n in placed_at_kill if 0 < n < ORDERS)
    assert killed_mid_drain >= 3, placed_at_kill
    summary = json.loads(out)
    assert summary["queue"] == {"sent": ORDERS} and summary["alerts"] == []
