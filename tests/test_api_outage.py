"""Issue 15's outage, end to end over the local API.

A bot process (tests/api_bot.py: HTTP over the Unix socket, nothing else) queues 500
Bybit orders and 200 EVM transfers from 4 HSM senders while every link is down (both
relays and the venue behind fault proxies in ``down`` mode), and follows the event
stream. The service (``airlock broadcaster run``) is killed with SIGKILL twice: while the
bot is queueing, and after the links returned, while it drains; it is restarted each
time. Then: every transfer is mined exactly once, every order placed exactly once, and
the bot's event stream, resumed with ``Last-Event-ID`` across both kills, is the queue's
own event record exactly: same ids, no duplicate, no gap, and per item the states of its
history in order.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from tests.kits import bybit as kit
from tests.kits.broadcast import RECIPIENT, fee_fields, make_senders
from tests.kits.cli import user_env
from tests.kits.waiting import wait_until

from airlock.config import embedded_paths
from airlock.queue.items import Kind
from airlock.queue.states import State
from airlock.queue.store import Store
from airlock.sim.anvil import Anvil, start_anvil
from airlock.sim.bybit import CREATE
from airlock.sim.faultproxy import FaultProxy

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

BOT = Path(__file__).with_name("api_bot.py")
SENDERS = 4
ROUNDS = 4
ORDER_BATCH, ORDER_SINGLE = 100, 25  # per round: one batch of 100 orders, 25 single POSTs
TX_BATCH, TX_SINGLE = 40, 10  # per round: one batch of 40 transfers, 10 single POSTs
ORDERS = ROUNDS * (ORDER_BATCH + ORDER_SINGLE)
TRANSFERS = ROUNDS * (TX_BATCH + TX_SINGLE)
RELAY_DELAY_MS = 50
GOAL = {Kind.BYBIT_ORDER: State.SENT, Kind.EVM_TX: State.CONFIRMED}


@pytest.fixture(scope="module")
def keys(keyring) -> kit.BybitKeys:
    return kit.make_keys(keyring)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A Unix socket path must fit in 108 bytes: pytest's tmp_path may not."""
    path = Path(tempfile.mkdtemp(prefix="al-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def write_config(
    path: Path,
    store: Store,
    kek_label: str,
    relays: list[str],
    keys: kit.BybitKeys,
    venue_url: str,
    api: Path,
) -> None:
    text = f'[queue]\npath = "{store.path}"\nkek_label = "{kek_label}"\n'
    text += "\n[service]\nmetrics_port = 0\n"  # tests run side by side: no fixed port
    for n, url in enumerate(relays):
        text += (
            f'\n[[relays]]\nname = "rpc-{n}"\nkind = "evm-rpc"\nurl = "{url}"\n'
            "chain_id = 31337\nbatch_size = 5\n"  # waves of 40: the drain takes a few passes
            "timeout_seconds = 2.0\nconnect_timeout_seconds = 0.5\n"
        )
    text += f"""
[broadcaster]
confirmations = 1
reconcile_seconds = 0.2

[broadcaster.health]
probe_seconds = 0.2
probe_down_seconds = 0.05

[bybit]
base_url = "{venue_url}"
api_key = "{kit.API_KEY}"
secret_label = "{keys.secret_label}"
intent_key_label = "{keys.intent.label}"
recv_window_ms = 5000
probe_seconds = 0.1
reconcile_seconds = 0.3
retry_base_seconds = 0.02
retry_cap_seconds = 0.2

[api]
socket = "{api}"
"""
    path.write_text(text)


def start_service(home: Path, config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``airlock broadcaster run``; its log to a file (a pipe nobody reads would fill)."""
    env = user_env(home, AIRLOCK_PIN_FILE=str(embedded_paths(home)["user_pin"]))
    argv = ["-m", "airlock.cli", "--config", str(config), "broadcaster", "run", "-q"]
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, *argv], env=env, stdout=sink, stderr=sink, stdin=subprocess.DEVNULL
        )


def answers(path: Path) -> bool:
    """Something accepts connections on the Unix socket (a killed service's does not)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            return False
    return True


def wait_serving(process: subprocess.Popen[bytes], api: Path, log: Path) -> None:
    wait_until(lambda: process.poll() is not None or answers(api), 60, "the service to serve")
    assert process.poll() is None, log.read_text()


def kill_9(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=10) == -signal.SIGKILL


def lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    text = path.read_text()
    return [json.loads(line) for line in text.splitlines() if line.endswith("}")]


def confirmed(store: Store) -> int:
    return store.items.count(State.CONFIRMED)


def assert_each_mined_once(store: Store, anvil: Anvil, ids: list[str]) -> None:
    """Confirmed under one of its own variants, at its nonce; per sender the nonces run
    0..n-1 and the chain's count is n; no hash mined for two items."""
    mined: set[str] = set()
    nonces: dict[str, list[int]] = {}
    for item_id in ids:
        item = store.items.get(item_id)
        assert item.state is State.CONFIRMED, (item.id, item.state, item.state_reason)
        assert item.mined_hash in {v.tx_hash for v in store.items.variants(item_id)}
        assert item.mined_hash not in mined
        mined.add(item.mined_hash)
        receipt = anvil.rpc("eth_getTransactionReceipt", [item.mined_hash])
        assert receipt is not None and int(receipt["status"], 16) == 1
        tx = anvil.rpc("eth_getTransactionByHash", [item.mined_hash])
        assert int(tx["nonce"], 16) == item.nonce
        nonces.setdefault(item.account, []).append(item.nonce)
    assert len(nonces) == SENDERS
    for sender, taken in nonces.items():
        assert sorted(taken) == list(range(len(taken))), sender
        chain = int(anvil.rpc("eth_getTransactionCount", [sender, "latest"]), 16)
        assert chain == len(taken), (sender, chain, len(taken))


def diagnosis(store: Store, bot_err: bytes, log: Path) -> str:
    """What a failed run needs to be understood: the bot's last words, the queue's states,
    the newest event recorded and the tail of the service's log."""
    states = Counter((str(i.kind), str(i.state)) for i in store.items.select())
    newest = store.events.after(0, 10**6)
    return (
        f"bot: {bot_err.decode()[-2000:]}\nqueue: {dict(states)}\n"
        f"events recorded: {len(newest)} (last id {newest[-1].id if newest else 0})\n"
        f"service log tail:\n{log.read_text()[-6000:]}"
    )


def test_a_bot_queues_through_an_outage_and_two_kills_and_sees_every_event_once(
    store, kek, keyring, keys, token_home, tmp_path: Path, short_dir: Path
):
    api = short_dir / "api.sock"
    out, log = tmp_path / "bot", tmp_path / "service.log"
    with ExitStack() as stack:
        anvil = stack.enter_context(start_anvil())
        relays = [stack.enter_context(FaultProxy(anvil.url).start()) for _ in range(2)]
        # The venue takes 100 creates a second: the drain lasts long enough to kill inside.
        sim = stack.enter_context(kit.sim_for(keys, rate_limits={CREATE: 100, "ip": 100_000}))
        venue = stack.enter_context(FaultProxy(sim.url).start())
        links = [*relays, venue]
        for link in links:
            link.set_mode("down")
        senders = make_senders(keyring, anvil, SENDERS)
        fees = fee_fields(anvil)
        plan = {
            "run": "outage",
            "senders": [s.key.label for s in senders],
            "chain_id": anvil.chain_id,
            "to": RECIPIENT,
            "max_fee": fees["max_fee_per_gas"],
            "priority_fee": fees["max_priority_fee_per_gas"],
            "rounds": ROUNDS,
            "order_batch": ORDER_BATCH,
            "order_single": ORDER_SINGLE,
            "tx_batch": TX_BATCH,
            "tx_single": TX_SINGLE,
        }
        (tmp_path / "plan.json").write_text(json.dumps(plan))
        config = tmp_path / "airlock.toml"
        write_config(config, store, kek.label, [r.url for r in relays], keys, venue.url, api)

        service = start_service(token_home, config, log)
        stack.callback(lambda: service.poll() is None and kill_9(service))
        wait_serving(service, api, log)
        args = ["--socket", str(api), "--out", str(out), "--plan", str(tmp_path / "plan.json")]
        bot = subprocess.Popen(
            [sys.executable, str(BOT), *args, "--deadline", "150"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        stack.callback(lambda: bot.poll() is None and bot.kill())

        # Kill 1: in the middle of the queueing, every link down.
        wait_until(
            lambda: len(lines(out / "queued.jsonl")) >= 3 or bot.poll() is not None,
            60,
            "the bot to queue a few requests",
        )
        kill_9(service)
        assert bot.poll() is None, bot.communicate()
        queued_at_kill_1 = len(store.items.select())
        assert not (out / "queued.done").exists(), "kill 1 came after the queueing"
        service = start_service(token_home, config, log)
        wait_serving(service, api, log)
        wait_until(
            lambda: (out / "queued.done").exists() or bot.poll() is not None,
            60,
            "the bot to queue everything",
        )
        assert bot.poll() is None, bot.communicate()
        # Nothing crossed a link that was down.
        assert sim.orders() == [] and sim.requests() == []
        for sender in senders:
            assert int(anvil.rpc("eth_getTransactionCount", [sender.address, "latest"]), 16) == 0
        assert all(str(i.state) == "queued" for i in store.items.select())

        # The links return; kill 2 while the service drains.
        venue.set_mode("pass")
        for relay in relays:  # a slow link: the EVM drain lasts a few seconds
            relay.set_mode("slow", delay_ms=RELAY_DELAY_MS)
        wait_until(
            lambda: (
                bot.poll() is not None
                or (len(sim.orders()) >= ORDERS // 5 and confirmed(store) >= TRANSFERS // 5)
            ),
            60,
            "both drains to start",
        )
        kill_9(service)
        items = store.items.select()
        at_kill_2 = Counter((str(i.kind), str(i.state)) for i in items)
        settled_at_kill_2 = sum(1 for i in items if i.state is GOAL[i.kind])
        placed_at_kill_2 = len(sim.orders())
        assert settled_at_kill_2 < ORDERS + TRANSFERS, "kill 2 came after the drain"
        service = start_service(token_home, config, log)
        wait_serving(service, api, log)

        bot_out, bot_err = bot.communicate(timeout=180)
        assert bot.returncode == 0, diagnosis(store, bot_err, log)
        wait_until(
            lambda: all(i.state is GOAL[i.kind] for i in store.items.select()),
            60,
            "the queue to settle",
        )
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=30) == 0, log.read_text()[-4000:]
        orders_at_venue = sim.orders()
        creates = kit.creates(sim)

        # What the bot queued: 700 items, one per idempotency key, whatever the retries.
        acknowledged = lines(out / "queued.jsonl")
        by_key: dict[str, str] = {}
        for request in acknowledged:
            for key, item_id in zip(request["keys"], request["items"], strict=True):
                assert by_key.setdefault(key, item_id) == item_id, key
        ids = [i.id for i in store.items.select()]
        assert sorted(by_key.values()) == sorted(ids)
        kinds = Counter(str(store.items.get(i).kind) for i in ids)
        assert kinds == {"bybit_order": ORDERS, "evm_tx": TRANSFERS}
        # Every order was queued under the outage policy: the service saw the venue down.
        order_requests = [r for r in acknowledged if r["path"].startswith("/v1/orders")]
        assert all(v is False for r in order_requests for v in r["venue_reachable"])
        rules = Counter(rule for r in order_requests for rule in r["rules"])
        assert rules == {"gtc-ttl": ORDERS}
        retried = [r for r in acknowledged if r["attempts"] > 1]
        assert retried, "the bot never had to retry: kill 1 missed the queueing"

        # Mined exactly once; placed exactly once.
        tx_ids = [i for i in ids if store.items.get(i).kind is Kind.EVM_TX]
        order_ids = [i for i in ids if store.items.get(i).kind is Kind.BYBIT_ORDER]
        assert_each_mined_once(store, anvil, tx_ids)
        links_wanted = Counter(store.venue.of_item(i)[1].link_id for i in order_ids)
        assert Counter(o["orderLinkId"] for o in orders_at_venue) == links_wanted
        assert set(creates) == set(links_wanted), "an order went out under another orderLinkId"
        assert all(store.items.get(i).state is State.SENT for i in order_ids)

    # The bot's event stream is the queue's own record, exactly.
    received = lines(out / "events.jsonl")
    recorded = store.events.after(0, 10**6)
    got = [(e["id"], e["type"], e["item"], e["state"], e["from_state"]) for e in received]
    want = [(e.id, e.type, e.item_id, e.to_state, e.from_state) for e in recorded]
    ids_seen = [e["id"] for e in received]
    assert len(set(ids_seen)) == len(ids_seen), "an event was delivered twice"
    assert ids_seen == list(range(1, len(ids_seen) + 1)), "the ids have a gap"
    missing = sorted({w[0] for w in want} - set(ids_seen))
    assert not missing, f"{len(missing)} events never reached the bot, e.g. {missing[:10]}"
    assert got == want
    assert all(e["event"] == e["type"] for e in received)
    per_item: dict[str, list[tuple[str | None, str | None, str | None]]] = {}
    for e in received:
        per_item.setdefault(e["item"], []).append((e["from_state"], e["state"], e["reason"]))
    assert set(per_item) == set(ids)
    for item_id in ids:
        history = [
            (None if t.from_state is None else str(t.from_state), str(t.to_state), t.reason)
            for t in store.items.history(item_id)
        ]
        seen = per_item[item_id]
        assert [s[:2] for s in seen] == [h[:2] for h in history], item_id
        assert [s[2] for s in seen[1:]] == [h[2] for h in history[1:]], item_id
    # Resumed across both kills, each time from the last event the bot had.
    resumes = lines(out / "streams.jsonl")
    assert len(resumes) >= 3 and resumes[0]["resumed_after"] == 0
    assert sum(1 for r in resumes[1:] if r["resumed_after"] > 0) >= 2, resumes
    summary = {
        "items_at_kill_1": queued_at_kill_1,
        "at_kill_2": {f"{k} {s}": n for (k, s), n in at_kill_2.items()},
        "placed_at_kill_2": placed_at_kill_2,
        "order_rules": dict(rules),
        "retried_requests": len(retried),
        "replayed": sum(sum(r["replayed"]) for r in acknowledged),
        "events": len(received),
        "stream_connections": len(resumes),
        "bot": bot_out.decode().strip(),
    }
    print(json.dumps(summary))
