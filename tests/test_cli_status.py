"""`airlock status` as an operator runs it: real subprocesses, a real SoftHSM token.

The queue each test reads is filled in-process (an EVM transaction signed by the shared
session token, an alert, service notes) and then read by the CLI on the same token, with
a config of its own pointing at that queue and its KEK. The PIN reaches the CLI through
AIRLOCK_PIN_FILE only (tests.test_cli_broadcast.airlock).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.kits.cli import airlock, run

from airlock.cli.status_cmds import STALE_HEARTBEAT_S
from airlock.hsm.keyring import HsmEcdsaKey
from airlock.queue.evm import enqueue_transaction
from airlock.queue.kek import HsmKek
from airlock.queue.store import Store
from airlock.sim.anvil import start_anvil
from airlock.sim.bybit import SERVER_TIME, BybitSim

pytestmark = pytest.mark.slow

CHAIN_ID = 31337
FIELDS = {
    "chain_id": CHAIN_ID,
    "to": "0x" + "22" * 20,
    "value": 1000,
    "gas": 21000,
    "max_fee_per_gas": 3 * 10**9,
    "max_priority_fee_per_gas": 10**9,
}
# Ages are written against the wall clock and read back by a CLI subprocess some seconds
# later (more on a slow or loaded machine): every check on an age allows for that, and
# each age sits far from the edge of what it must show.
QUEUED_AGO_MS = 65_000  # shown as "1 min" from 60 s to 119 s: 54 s of slack
HEARTBEAT_AGO_MS = 3_000  # "running" while at most STALE_HEARTBEAT_S (15 s) old: 12 s of slack
RECONCILE_AGO_MS = 200_000  # shown as "3 min" from 180 s to 239 s: 39 s of slack
SECTIONS = {"links", "queue", "nonces", "broadcaster", "alerts"}


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def empty_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("cli-status-home")
    done = run(home, "init")
    assert done.returncode == 0, done.stderr
    return home


class Recorder(ThreadingHTTPServer):
    """Records every request and answers 503: any probe that reaches it is seen."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        super().__init__(("127.0.0.1", 0), _RecordingHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _RecordingHandler(BaseHTTPRequestHandler):
    server: Recorder

    def _answer(self) -> None:
        self.server.paths.append(self.path)
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def write_config(
    tmp_path: Path, kek: HsmKek, relays: dict[str, str], bybit_url: str | None = None
) -> Path:
    text = f'[queue]\npath = "{tmp_path / "queue.db"}"\nkek_label = "{kek.label}"\n'
    for name, url in relays.items():
        text += (
            f'\n[[relays]]\nname = "{name}"\nkind = "evm-rpc"\nurl = "{url}"\n'
            f"chain_id = {CHAIN_ID}\n"
        )
    if bybit_url is not None:
        text += (
            f'\n[bybit]\nbase_url = "{bybit_url}"\napi_key = "status-test-key"\n'
            'secret_label = "status-test-secret"\n'
        )
    path = tmp_path / "airlock.toml"
    path.write_text(text)
    return path


def status(home: Path, config: Path, *extra: str) -> Any:
    done = airlock(home, "--config", str(config), "status", *extra)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def status_json(home: Path, config: Path, *extra: str) -> dict[str, Any]:
    done = status(home, config, "--json", *extra)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert set(data) >= SECTIONS
    return data


def queue_one(tmp_path: Path, kek: HsmKek, key: HsmEcdsaKey) -> Any:
    """One EVM transfer, queued as if QUEUED_AGO_MS ago."""
    past = wall_ms() - QUEUED_AGO_MS
    with Store.open(tmp_path / "queue.db", kek, clock_ms=lambda: past) as store:
        return enqueue_transaction(store, key, FIELDS)


# --------------------------------------------------------------------------- tests


def test_empty_home_no_links_no_queue(empty_home):
    config = empty_home / "airlock.toml"
    assert not config.exists()
    done = airlock(empty_home, "status")
    assert done.returncode == 0, done.stderr
    assert "LINKS  none configured" in done.stdout
    assert "QUEUE  no queue yet" in done.stdout
    assert "NONCES  no senders yet" in done.stdout
    assert "heartbeat       never" in done.stdout
    assert "ALERTS  none open" in done.stdout
    assert done.stderr == ""
    data = json.loads(airlock(empty_home, "status", "--json").stdout)
    assert data["links"] == {
        "probed": True,
        "relays": [],
        "bybit": None,
        "down": [],
        "any_up": False,
    }
    assert data["queue"]["live"] == data["queue"]["total"] == 0
    assert data["queue"]["oldest_live"] is None
    assert (data["nonces"], data["alerts"]) == ([], [])
    assert data["broadcaster"]["heartbeat_ms"] is None
    assert not (empty_home / "queue.db").exists()  # status reads; it never creates the queue


def test_relay_down_queued_tx_and_its_sender(token_home, kek, eth_key, dead_url, tmp_path):
    queued = queue_one(tmp_path, kek, eth_key)
    config = write_config(tmp_path, kek, {"cut": dead_url})

    text = status(token_home, config)
    assert text.returncode == 0, text.stderr  # links down is information, not an error
    out = text.stdout
    assert "LINKS  0 of 1 up  -- NO LINK IS UP" in out
    [row] = [line for line in out.splitlines() if line.strip().startswith("cut ")]
    assert "DOWN" in row and dead_url in row
    assert "error:" in out and "connect" in out.lower()
    assert "QUEUE  1 live, 1 in all" in out
    assert f"oldest live: {queued.item.id}  evm_tx queued, waiting 1 min" in out  # 65 s+
    [nonce_row] = [line for line in out.splitlines() if line.startswith(f"  {CHAIN_ID}  ")]
    assert nonce_row.split()[:5] == [str(CHAIN_ID), queued.item.account, "1", "1", "0"]
    assert "warning: links down: cut; no link is up, 1 live item(s) wait" in text.stderr

    data = status_json(token_home, config)
    [relay] = data["links"]["relays"]
    assert relay["name"] == "cut" and relay["state"] == "down" and relay["usable"] is False
    assert relay["last_error"] and relay["head"] is None
    assert data["links"]["down"] == ["cut"] and data["links"]["any_up"] is False
    queue = data["queue"]
    assert queue["by_kind"] == {"evm_tx": {"queued": 1}} and queue["live"] == 1
    oldest = queue["oldest_live"]
    assert oldest["id"] == queued.item.id and oldest["state"] == "queued"
    assert QUEUED_AGO_MS // 1000 <= oldest["age_s"] < 120  # as old as queued, still "1 min"
    [nonce] = data["nonces"]
    assert (nonce["chain_id"], nonce["sender"]) == (CHAIN_ID, queued.item.account)
    assert (nonce["next_nonce"], nonce["live"], nonce["lowest_live"]) == (1, 1, 0)
    assert nonce["synced_ms"] is None and nonce["gaps"] == []


def broadcaster_notes(tmp_path: Path, kek: HsmKek, heartbeat_ago_ms: int) -> None:
    """The service's notes, as if written ``heartbeat_ago_ms`` ago; written just before
    each CLI run, so an age read back grows only by that one run's start-up."""
    now = wall_ms()
    with Store.open(tmp_path / "queue.db", kek) as store:
        store.notes.set("broadcaster.heartbeat_ms", str(now - heartbeat_ago_ms))
        store.notes.set("broadcaster.last_reconcile_ms", str(now - RECONCILE_AGO_MS))
        store.notes.set("broadcaster.pid", "4242")


def test_open_alerts_and_broadcaster_notes(token_home, kek, tmp_path):
    with Store.open(tmp_path / "queue.db", kek) as store:
        store.alerts.note("relay.down.cut", "relay cut is down: refused", severity="critical")
        store.alerts.note("relay.down.cut", "relay cut is down: refused", severity="critical")
        store.alerts.note("bybit.auth", "bybit refused the key")
        store.alerts.resolve("bybit.auth")  # resolved alerts are not shown
    config = write_config(tmp_path, kek, {})

    broadcaster_notes(tmp_path, kek, HEARTBEAT_AGO_MS)
    text = status(token_home, config)
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert "ALERTS  1 open" in out
    [alert] = [line for line in out.splitlines() if "relay.down.cut" in line]
    assert alert.split()[:3] == ["CRITICAL", "relay.down.cut", "x2"]
    assert "    relay cut is down: refused" in out
    assert "bybit.auth" not in out
    assert "BROADCASTER  running" in out
    # The seconds are the CLI's own wall-clock reading: at least the age written, at most
    # the age at which it would say NOT RUNNING instead of "running".
    [heartbeat] = re.findall(r"^  heartbeat       (\d+) s ago  \(pid 4242\)$", out, re.M)
    assert HEARTBEAT_AGO_MS // 1000 <= int(heartbeat) <= STALE_HEARTBEAT_S
    assert "last reconcile  3 min ago" in out

    broadcaster_notes(tmp_path, kek, HEARTBEAT_AGO_MS)
    data = status_json(token_home, config)
    [record] = data["alerts"]
    assert (record["key"], record["severity"], record["count"]) == (
        "relay.down.cut",
        "critical",
        2,
    )
    assert record["message"] == "relay cut is down: refused" and record["last_age_s"] >= 0
    broadcaster = data["broadcaster"]
    assert broadcaster["pid"] == 4242 and broadcaster["stale"] is False
    assert HEARTBEAT_AGO_MS // 1000 <= broadcaster["heartbeat_age_s"] <= STALE_HEARTBEAT_S
    assert RECONCILE_AGO_MS // 1000 <= broadcaster["last_reconcile_age_s"] < 240  # "3 min"

    broadcaster_notes(tmp_path, kek, 600_000)  # "10 min" up to 659 s: 59 s of slack
    stale = status(token_home, config)
    assert "BROADCASTER  -- NOT RUNNING? last heartbeat 10 min ago" in stale.stdout


def test_no_probe_touches_no_network(token_home, kek, recorder, tmp_path):
    with BybitSim("status-test-key", secret=b"x" * 32) as sim:
        config = write_config(tmp_path, kek, {"watched": recorder.url}, bybit_url=sim.url)

        quiet = status(token_home, config, "--no-probe")
        assert quiet.returncode == 0, quiet.stderr
        as_json = status_json(token_home, config, "--no-probe")
        assert recorder.paths == [] and sim.requests() == []
        assert "LINKS  not probed (--no-probe)" in quiet.stdout
        assert quiet.stdout.count("NOT PROBED") == 2
        assert quiet.stderr == ""  # nothing known to be down
        links = as_json["links"]
        assert links["probed"] is False and links["down"] == []
        assert [r["state"] for r in links["relays"]] == ["not probed"]
        assert links["bybit"]["state"] == "not probed"

        probed = status_json(token_home, config)  # the control: a probe is seen by both
        assert recorder.paths and [r.path for r in sim.requests()] == [SERVER_TIME]
    assert probed["links"]["relays"][0]["state"] == "down"  # a 503 is not an answer
    assert probed["links"]["bybit"]["state"] == "up"
    assert probed["links"]["down"] == ["watched"] and probed["links"]["any_up"] is True


def test_bybit_reachable_with_clock_offset(token_home, kek, tmp_path):
    skew = 1_500
    with BybitSim("status-test-key", secret=b"x" * 32, clock_ms=lambda: wall_ms() + skew) as sim:
        config = write_config(tmp_path, kek, {}, bybit_url=sim.url)
        text = status(token_home, config)
        data = status_json(token_home, config)
    assert text.returncode == 0, text.stderr
    [row] = [line for line in text.stdout.splitlines() if line.strip().startswith("bybit ")]
    assert "UP" in row and "clock offset +1" in row
    assert "LINKS  1 of 1 up" in text.stdout
    bybit = data["links"]["bybit"]
    assert bybit["state"] == "up" and bybit["usable"] is True
    assert bybit["last_error"] is None and bybit["latency_ms"] is not None
    # The offset is taken against the midpoint of the probe's round trip, so it is off by
    # at most half of it (+ a few ms of rounding), however slow the machine is.
    assert abs(bybit["offset_ms"] - skew) <= bybit["latency_ms"] / 2 + 5, bybit


def test_bybit_unreachable_is_not_an_error(token_home, kek, dead_url, tmp_path):
    config = write_config(tmp_path, kek, {}, bybit_url=dead_url)
    done = status(token_home, config)
    assert done.returncode == 0, done.stderr
    assert "warning: links down: bybit" in done.stderr
    [row] = [line for line in done.stdout.splitlines() if line.strip().startswith("bybit ")]
    assert "DOWN" in row
    assert "error: bybit /v5/market/time" in done.stdout


@pytest.mark.anvil
def test_relay_up_with_its_head(token_home, kek, tmp_path):
    with start_anvil(chain_id=CHAIN_ID) as node:
        node.rpc("evm_mine", [])
        head = int(node.rpc("eth_blockNumber", []), 16)
        config = write_config(tmp_path, kek, {"anvil": node.url})
        text = status(token_home, config)
        data = status_json(token_home, config)
    assert text.returncode == 0, text.stderr
    assert "LINKS  1 of 1 up" in text.stdout and text.stderr == ""
    [row] = [line for line in text.stdout.splitlines() if line.strip().startswith("anvil ")]
    assert "UP" in row and f"head {head}" in row
    [relay] = data["links"]["relays"]
    assert relay["state"] == "up" and relay["usable"] is True
    assert relay["head"] == head and relay["latency_ms"] is not None
    assert relay["last_error"] is None and relay["chain_id"] == CHAIN_ID


def test_errors_exit_1_on_stderr(empty_home, tmp_path):
    missing = airlock(empty_home, "status", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 1 and missing.stdout == ""
    assert "error: config file" in missing.stderr and "does not exist" in missing.stderr

    wrong_pin = run(empty_home, "status", env={"AIRLOCK_PIN": "not-the-pin"})
    assert wrong_pin.returncode == 1 and wrong_pin.stdout == ""
    assert wrong_pin.stderr.startswith("error: ") and "Traceback" not in wrong_pin.stderr


def test_age_is_human_readable():
    from airlock.cli.status_cmds import age

    assert [age(s) for s in (None, 0, 42, 60, 185, 3600, 7500, 86400, 93600)] == [
        "never",
        "0 s",
        "42 s",
        "1 min",
        "3 min",
        "1 h",
        "2 h 5 min",
        "1 d",
        "1 d 2 h",
    ]
    assert age(-5) == "5 s in the future (clock?)"
