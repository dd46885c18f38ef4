"""The failover rules in the running service: an outage of every primary relay sends
cancels and risk-reducing items over the backup, holds the rest, and says so in the audit
log; the queue escalations reach a signed webhook; metrics scrape and parse."""

from __future__ import annotations

import asyncio
import hmac
import json
import os
from hashlib import sha256

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from tests.kits import bybit as kit
from tests.kits.broadcast import FAST, make_senders, relay
from tests.kits.labels import unique_label
from tests.kits.waiting import wait_until_async

from airlock.audit import entries as audit_entries
from airlock.broadcaster.alerts import AlertSink
from airlock.broadcaster.metrics import Metrics
from airlock.broadcaster.runner import Service
from airlock.broadcaster.service import Broadcaster
from airlock.config import FailoverConfig, ServiceConfig
from airlock.encoding.canonical import parse_canonical
from airlock.queue.evm import enqueue_transaction
from airlock.queue.items import Priority
from airlock.queue.states import State
from airlock.queue.store import Store
from airlock.relays.jsonrpc import EvmRelay, started
from airlock.sim.anvil import free_port
from airlock.sim.faultproxy import FaultProxy

pytestmark = pytest.mark.anvil


def decisions(store: Store) -> list[dict]:
    out = []
    for raw in store.audit.entries():
        entry = parse_canonical(raw)
        if entry["type"] == audit_entries.FAILOVER_DECISION:
            out.append(entry["data"])
    return out


async def test_outage_routes_priority_items_over_the_backup_and_holds_the_rest(
    store, keyring, anvil
):
    senders = make_senders(keyring, anvil, 2)
    fields = {
        "chain_id": anvil.chain_id, "to": "0x000000000000000000000000000000000000dEaD",
        "value": 1, "gas": 21000, "max_fee_per_gas": 10**10, "max_priority_fee_per_gas": 10**9,
    }  # fmt: skip
    urgent = enqueue_transaction(store, senders[0].key, fields, priority=Priority.RISK_REDUCING)
    normal = enqueue_transaction(store, senders[1].key, fields)
    failover = FailoverConfig(heartbeat_gap_ms=300, missed_acks=2, backup_window_s=30)
    with FaultProxy(anvil.url).start() as primary, FaultProxy(anvil.url).start() as backup:
        primary.set_mode("down")
        relays = [
            EvmRelay(relay("main", primary.url)),
            EvmRelay(relay("spare", backup.url, role="backup")),
        ]
        async with started(relays):
            evm = Broadcaster(store, relays, FAST)
            metrics = Metrics(store)
            service = Service(store, evm, None, failover=failover, metrics=metrics)
            stop = asyncio.Event()
            task = asyncio.create_task(service.run(stop))
            try:
                await wait_until_async(
                    lambda: store.items.get(urgent.item.id).state is State.CONFIRMED, 60, "urgent"
                )
                assert store.items.get(normal.item.id).state is State.QUEUED  # held in the outage
                during = enqueue_transaction(store, senders[1].key, dict(fields, value=2))

                def persisted() -> float:
                    return samples(metrics, "airlock_outage_to_persist_seconds_count")

                await wait_until_async(lambda: persisted() == 1, 30, "outage-to-persist")
                assert samples(metrics, "airlock_failover_seconds_count") == 1
                primary.set_mode("pass")
                await wait_until_async(
                    lambda: all(
                        store.items.get(q.item.id).state is State.CONFIRMED
                        for q in (normal, during)
                    ),
                    60,
                    "normal",
                )
            finally:
                stop.set()
                await asyncio.wait_for(task, 20)
    relays_used = {a.relay for _, a in store.sends.attempts(urgent.item.id)}
    assert relays_used == {"spare"}
    assert {a.relay for _, a in store.sends.attempts(normal.item.id)} == {"main"}
    rules = [d["rule"] for d in decisions(store)]
    assert "backup-priority-window" in rules and "outage-hold" in rules
    modes = [d["rule"] for d in decisions(store) if d["decision"] == "mode"]
    assert modes[0] in ("heartbeat-gap", "missed-acks", "primaries-down")
    assert modes[-1] == "primary-up"


def samples(metrics: Metrics, name: str) -> float:
    """The value of one unlabelled sample in the metrics text."""
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"no sample {name}")


class Receiver:
    """A loopback webhook that records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.port = free_port()

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        return web.Response(text="ok")


async def test_escalations_reach_a_signed_webhook_and_metrics_parse(store, keyring, tmp_path):
    keys = kit.make_keys(keyring)
    kit.queue_orders(store, keys, 3)  # the venue is down: they wait
    secret = os.urandom(32)
    label = unique_label("webhook")
    keyring.import_hmac_secret(label, secret)
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", receiver.port).start()
    metrics_port = free_port()
    settings = ServiceConfig(
        metrics_port=metrics_port,
        webhook_url=f"http://127.0.0.1:{receiver.port}/hook",
        webhook_secret_label=label,
    )
    failover = FailoverConfig(escalate_queue_items=2, escalate_oldest_s=0.1)
    metrics = Metrics(store)
    sink = AlertSink(store, settings, lambda body: keyring.hmac_sha256(label, body), metrics)
    venue = kit.venue(keyring, store, keys, f"http://127.0.0.1:{free_port()}")
    service = Service(
        store, None, venue, failover=failover, settings=settings, sink=sink, metrics=metrics
    )
    stop = asyncio.Event()
    try:
        async with venue.client:
            task = asyncio.create_task(service.run(stop))
            try:

                def keys_seen() -> set[str]:
                    return {json.loads(body)["key"] for _, body in receiver.requests}

                await wait_until_async(
                    lambda: {"escalate.queue-depth", "escalate.queue-age"} <= keys_seen(),
                    60,
                    "both escalations",
                )
                async with aiohttp.ClientSession() as http:
                    url = f"http://127.0.0.1:{metrics_port}"
                    async with http.get(f"{url}/metrics") as answer:
                        text = await answer.text()
                    async with http.get(f"{url}/healthz") as answer:
                        health = answer.status
            finally:
                stop.set()
                await asyncio.wait_for(task, 20)
    finally:
        await runner.cleanup()
    for headers, body in receiver.requests:
        mac = hmac.new(secret, body, sha256).hexdigest()
        assert headers["X-Airlock-Signature"] == f"sha256={mac}"
    families = {f.name: f for f in text_string_to_metric_families(text)}
    queued = [
        s.value
        for s in families["airlock_queue_items"].samples
        if s.labels == {"state": "queued", "kind": "bybit_order"}
    ]
    assert queued == [3.0]
    assert "airlock_alerts" in families and health == 200
    bybit_up = [s.value for s in families["airlock_link_up"].samples if s.labels["link"] == "bybit"]
    assert bybit_up == [0.0]  # the venue was down all along
    escalations = [d for d in decisions(store) if d["decision"] == "escalation"]
    assert {d["rule"] for d in escalations} == {"queue-depth", "queue-age"}
    assert {a.key for a in store.alerts.open()} >= {"escalate.queue-depth"}
