"""``kill -9`` of the broadcaster process at random moments during a drain, restarted each
time: every transaction is still mined exactly once, under its one nonce."""

from __future__ import annotations

import random
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest
from tests.kits.broadcast import assert_mined_exactly_once, make_senders, queue_transfers
from tests.kits.cli import broadcaster, wait_running

from airlock.sim.anvil import start_anvil
from airlock.sim.faultproxy import FaultProxy

pytestmark = [pytest.mark.anvil, pytest.mark.slow]
KILLS = 20
SEED = 20261121


def write_config(path: Path, queue: Path, kek_label: str, proxy_url: str) -> None:
    path.write_text(
        f"""
[queue]
path = "{queue}"
kek_label = "{kek_label}"

[service]
metrics_port = 0  # tests run side by side: no fixed port

[[relays]]
name = "rpc-a"
kind = "evm-rpc"
url = "{proxy_url}"
chain_id = 31337
batch_size = 1

[broadcaster]
confirmations = 1
reconcile_seconds = 0.2

[broadcaster.health]
probe_seconds = 0.2
probe_down_seconds = 0.05
"""
    )


def test_kill_9_during_the_drain_loses_nothing_and_sends_nothing_twice(
    store, kek, keyring, token_home, tmp_path: Path
):
    rng = random.Random(SEED)
    with start_anvil() as anvil, FaultProxy(anvil.url).start() as proxy:
        proxy.set_mode("slow", delay_ms=150)  # a slow link keeps the drain going for a while
        senders = make_senders(keyring, anvil, 10)
        queued = queue_transfers(store, senders, 20, anvil)
        ids = [q.item.id for q in queued]
        config = tmp_path / "airlock.toml"
        write_config(config, store.path, kek.label, proxy.url)
        progress = []
        for _ in range(KILLS):
            process = broadcaster(token_home, config)
            wait_running(store, process)
            time.sleep(rng.uniform(0.0, 3.0))  # the kill moment, not a wait for anything
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            conn = sqlite3.connect(store.path)
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            conn.close()
            progress.append(Counter(str(store.items.get(i).state) for i in ids))
        assert progress[0]["confirmed"] < len(ids), "the first kill came after the drain"
        proxy.set_mode("pass")
        final = broadcaster(token_home, config, "--once", "--json")
        _, err = final.communicate(timeout=120)
        assert final.returncode == 0, err.decode()
        assert_mined_exactly_once(store, anvil, queued)
        # Some kills hit the drain itself: items on their way or settled, others not yet.
        in_flight_kills = sum(1 for p in progress if 0 < p["confirmed"] < len(ids))
        assert in_flight_kills >= 3, progress
