"""Observability: the metrics endpoint and alert delivery, over real loopback HTTP.

The metrics server is scraped with aiohttp and parsed with prometheus_client's own
parser; the webhook is a tiny aiohttp receiver that records what it got; the HMAC key
is a real SoftHSM secret. Nothing sleeps to wait for something: every wait is an await
or a poll under a bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import io
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from tests.kits.labels import unique_label

from airlock.broadcaster.alerts import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AlertSink,
    JsonFormatter,
    configure_logging,
    verify_signature,
)
from airlock.broadcaster.metrics import Metrics, check_loopback, service_checks
from airlock.config import ServiceConfig
from airlock.errors import ConfigError
from airlock.hsm.keyring import KeyRing
from airlock.queue.store import Store
from airlock.sim.anvil import free_port

BOUND = 5.0  # seconds any polled condition gets before the test fails


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape: (sample name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


async def get(url: str) -> tuple[int, str]:
    timeout = aiohttp.ClientTimeout(total=BOUND)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
        return resp.status, await resp.text()


@dataclass
class FakeQueue:
    """counts_by_kind with fixed rows, for exact queue gauges."""

    rows: list[tuple[str, str, int, int | None]]
    now: int = 1_000_000
    broken: bool = False

    @property
    def items(self) -> FakeQueue:
        """The store's ``items`` part, which is where the collector reads the counts."""
        return self

    def counts_by_kind(self) -> list[tuple[str, str, int, int | None]]:
        if self.broken:
            raise OSError("disk gone")
        return self.rows

    def now_ms(self) -> int:
        return self.now


# -- metrics ----------------------------------------------------------------------------


async def test_scrape_has_every_family_with_the_observed_values() -> None:
    queue = FakeQueue(
        rows=[
            ("evm_tx", "queued", 4, 990_000),  # 10 s old
            ("evm_tx", "sent", 2, 940_000),  # 60 s old: the oldest live one
            ("bybit_order", "confirmed", 7, 100_000),  # final: not counted as live
            ("bybit_order", "needs_operator", 1, 970_000),
        ]
    )
    metrics = Metrics(queue)
    metrics.observe_send("infura", "accepted")
    metrics.observe_send("infura", "accepted")
    metrics.observe_send("alchemy", "transport_error")
    metrics.observe_bump(3)
    metrics.observe_reconcile("evm", "confirmed", 5)
    metrics.observe_reconcile("bybit", "filled")
    metrics.set_link("link-a", True, 0.042)
    metrics.set_link("link-b", False, None)
    metrics.observe_persist(0.004)
    metrics.observe_persist(0.2)
    metrics.observe_failover(1.5)
    with metrics.time_sign("ecdsa"):
        pass
    with pytest.raises(ValueError), metrics.time_sign("rsa"):
        raise ValueError("a failed signature is timed too")
    metrics.observe_alert("relay-down:infura", True)
    metrics.observe_alert("relay-down:infura", False)
    metrics.observe_alert_failure("webhook")

    async with metrics.serve("127.0.0.1", free_port()) as server:
        status, text = await get(f"{server.url}/metrics")
    assert status == 200
    fams, got = families(text), samples(text)

    expected_families = {
        "airlock_queue_items": "gauge",
        "airlock_queue_oldest_item_seconds": "gauge",
        "airlock_outage_to_persist_seconds": "histogram",
        "airlock_failover_seconds": "histogram",
        "airlock_link_up": "gauge",
        "airlock_link_latency_seconds": "gauge",
        "airlock_sends": "counter",
        "airlock_bumps": "counter",
        "airlock_reconcile": "counter",
        "airlock_hsm_sign_seconds": "histogram",
        "airlock_alerts": "counter",
        "airlock_alert_failures": "counter",
    }
    for name, kind in expected_families.items():
        assert fams[name].type == kind, name
        assert fams[name].documentation, f"{name} has no help text"

    def at(name: str, **labels: str) -> float:
        return got[(name, tuple(sorted(labels.items())))]

    assert at("airlock_queue_items", kind="evm_tx", state="queued") == 4
    assert at("airlock_queue_items", kind="evm_tx", state="sent") == 2
    assert at("airlock_queue_items", kind="bybit_order", state="confirmed") == 7
    assert at("airlock_queue_items", kind="bybit_cancel", state="queued") == 0  # never vanishes
    assert at("airlock_queue_oldest_item_seconds") == 60.0
    assert at("airlock_sends_total", relay="infura", outcome="accepted") == 2
    assert at("airlock_sends_total", relay="alchemy", outcome="transport_error") == 1
    assert at("airlock_bumps_total") == 3
    assert at("airlock_reconcile_total", side="evm", result="confirmed") == 5
    assert at("airlock_reconcile_total", side="bybit", result="filled") == 1
    assert at("airlock_link_up", link="link-a") == 1
    assert at("airlock_link_up", link="link-b") == 0
    assert at("airlock_link_latency_seconds", link="link-a") == pytest.approx(0.042)
    assert ("airlock_link_latency_seconds", (("link", "link-b"),)) not in got
    assert at("airlock_outage_to_persist_seconds_count") == 2
    assert at("airlock_outage_to_persist_seconds_sum") == pytest.approx(0.204)
    assert at("airlock_outage_to_persist_seconds_bucket", le="0.005") == 1
    assert at("airlock_failover_seconds_count") == 1
    assert at("airlock_failover_seconds_bucket", le="1.0") == 0
    assert at("airlock_failover_seconds_bucket", le="2.0") == 1
    assert at("airlock_hsm_sign_seconds_count", op="ecdsa") == 1
    assert at("airlock_hsm_sign_seconds_count", op="rsa") == 1
    assert at("airlock_alerts_total", key="relay-down:infura", delivered="true") == 1
    assert at("airlock_alerts_total", key="relay-down:infura", delivered="false") == 1
    assert at("airlock_alert_failures_total", channel="webhook") == 1


async def test_queue_gauges_from_a_real_store_and_a_broken_one(store: Store) -> None:
    metrics = Metrics(store)
    got = samples(metrics.render().decode())
    assert got[("airlock_queue_items", (("kind", "evm_tx"), ("state", "queued")))] == 0
    assert got[("airlock_queue_oldest_item_seconds", ())] == 0

    broken = Metrics(FakeQueue(rows=[], broken=True))
    broken.observe_bump()
    got = samples(broken.render().decode())  # the scrape still works, minus the queue
    assert got[("airlock_bumps_total", ())] == 1
    assert not any(name == "airlock_queue_items" for name, _ in got)


async def test_wrong_labels_are_refused() -> None:
    metrics = Metrics()
    with pytest.raises(ValueError, match="side"):
        metrics.observe_reconcile("solana", "ok")
    with pytest.raises(ValueError, match="op"):
        metrics.time_sign("dsa").__enter__()


async def test_healthz_is_200_when_every_check_passes_and_503_otherwise(store: Store) -> None:
    now = [100.0]
    metrics = Metrics(store, clock=lambda: now[0])
    state: dict[str, Any] = {"checks": service_checks(store, metrics, max_loop_gap_s=30)}

    def checks() -> Any:
        return state["checks"]()

    async with metrics.serve("127.0.0.1", 0, checks=checks) as server:
        status, text = await get(f"{server.url}/healthz")
        assert status == 200
        body = json.loads(text)
        assert body["status"] == "ok"
        assert body["checks"]["store"]["ok"] and body["checks"]["loop"]["ok"]

        now[0] += 31  # the loop has not beaten for 31 s
        status, text = await get(f"{server.url}/healthz")
        assert status == 503
        body = json.loads(text)
        assert body["status"] == "degraded"
        assert body["checks"]["loop"]["ok"] is False
        assert body["checks"]["store"]["ok"] is True

        metrics.beat()
        assert (await get(f"{server.url}/healthz"))[0] == 200

        state["checks"] = service_checks(FakeQueue(rows=[], broken=True), metrics)
        status, text = await get(f"{server.url}/healthz")
        assert status == 503
        assert json.loads(text)["checks"]["store"] == {"ok": False, "detail": "unreadable: OSError"}

        def raising() -> Any:
            raise RuntimeError("boom")

        state["checks"] = raising
        assert (await get(f"{server.url}/healthz"))[0] == 503


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com", ""])
async def test_non_loopback_host_is_refused_before_listening(host: str) -> None:
    with pytest.raises(ConfigError, match="loopback"):
        async with Metrics().serve(host, free_port()):
            pass


def test_loopback_hosts_are_accepted() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        check_loopback(host)


# -- alerts -----------------------------------------------------------------------------


@dataclass
class Receiver:
    url: str
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    status: int = 200


@contextlib.asynccontextmanager
async def webhook_receiver() -> AsyncIterator[Receiver]:
    port = free_port()
    receiver = Receiver(url=f"http://127.0.0.1:{port}/hooks/airlock")

    async def handle(request: web.Request) -> web.Response:
        receiver.requests.append((dict(request.headers), await request.read()))
        return web.Response(status=receiver.status)

    app = web.Application()
    app.router.add_post("/hooks/airlock", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield receiver
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module")
def webhook_secret(keyring: KeyRing) -> tuple[str, bytes]:
    label, secret = unique_label("webhook"), os.urandom(32)
    keyring.import_hmac_secret(label, secret)
    return label, secret


def signer(keyring: KeyRing, label: str) -> Callable[[bytes], bytes]:
    return lambda data: keyring.hmac_sha256(label, data)


async def test_alert_is_signed_deduplicated_and_sent_again_after_resolve(
    store: Store, keyring: KeyRing, webhook_secret: tuple[str, bytes]
) -> None:
    label, secret = webhook_secret
    metrics = Metrics(store)
    async with webhook_receiver() as receiver:
        config = ServiceConfig(
            webhook_url=receiver.url, webhook_secret_label=label, alert_dedup_seconds=300
        )
        sink = AlertSink(store, config, signer(keyring, label), metrics)

        assert await sink.raise_("relay-down:a", "relay a down", details={"relay": "a"})
        assert len(receiver.requests) == 1
        headers, body = receiver.requests[0]
        expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        assert headers[SIGNATURE_HEADER] == expected
        assert verify_signature(secret, body, headers[SIGNATURE_HEADER])
        assert not verify_signature(secret, body + b" ", headers[SIGNATURE_HEADER])
        payload = json.loads(body)
        assert body == json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        assert payload["timestamp_ms"] == int(headers[TIMESTAMP_HEADER])
        assert {k: payload[k] for k in ("key", "message", "severity", "count", "source")} == {
            "key": "relay-down:a",
            "message": "relay a down",
            "severity": "warning",
            "count": 1,
            "source": "airlock",
        }
        assert payload["details"] == {"relay": "a"}
        assert payload["first_ms"] == payload["last_ms"]

        # the same key within the window: counted, not delivered
        assert not await sink.raise_("relay-down:a", "relay a still down")
        assert len(receiver.requests) == 1
        (record,) = store.alerts.open()
        assert (record.key, record.count) == ("relay-down:a", 2)

        # resolved, then raised again: delivered at once
        assert sink.resolve("relay-down:a")
        assert store.alerts.open() == []
        assert await sink.raise_("relay-down:a", "relay a down again", severity="critical")
        assert len(receiver.requests) == 2
        again = json.loads(receiver.requests[1][1])
        assert (again["severity"], again["message"]) == ("critical", "relay a down again")

    got = samples(metrics.render().decode())
    assert got[("airlock_alerts_total", (("delivered", "true"), ("key", "relay-down:a")))] == 2
    assert got[("airlock_alerts_total", (("delivered", "false"), ("key", "relay-down:a")))] == 1
    assert not any(name == "airlock_alert_failures_total" for name, _ in got)


async def test_a_zero_window_delivers_every_time(
    store: Store, keyring: KeyRing, webhook_secret: tuple[str, bytes]
) -> None:
    label, _ = webhook_secret
    async with webhook_receiver() as receiver:
        config = ServiceConfig(
            webhook_url=receiver.url, webhook_secret_label=label, alert_dedup_seconds=0
        )
        sink = AlertSink(store, config, signer(keyring, label))
        for _ in range(3):
            assert await sink.raise_("queue-old", "oldest item waits too long")
        assert [json.loads(b)["count"] for _, b in receiver.requests] == [1, 2, 3]


async def test_a_webhook_that_is_down_or_failing_does_not_raise(
    store: Store, keyring: KeyRing, webhook_secret: tuple[str, bytes], caplog: Any
) -> None:
    label, _ = webhook_secret
    metrics = Metrics()
    port = free_port()  # nothing listens there
    secret_url = f"http://user:hunter2@127.0.0.1:{port}/hook?token=s3cr3t"
    config = ServiceConfig(
        webhook_url=secret_url, webhook_secret_label=label, webhook_timeout_seconds=2
    )
    sink = AlertSink(store, config, signer(keyring, label), metrics)
    with caplog.at_level(logging.INFO, logger="airlock.broadcaster.alerts"):
        assert await sink.raise_("down", "nobody listens")
    assert "hunter2" not in caplog.text and "s3cr3t" not in caplog.text
    assert "unreachable" in caplog.text
    assert sink.webhook_shown == f"http://***@127.0.0.1:{port}/hook?***"

    async with webhook_receiver() as receiver:
        receiver.status = 500
        sink = AlertSink(
            store, replace(config, webhook_url=receiver.url), signer(keyring, label), metrics
        )
        assert await sink.raise_("five-hundred", "the receiver fails")
        assert len(receiver.requests) == 1  # no retry on an HTTP error

    got = samples(metrics.render().decode())
    assert got[("airlock_alert_failures_total", (("channel", "webhook"),))] == 2


def test_a_webhook_without_a_signer_is_refused(store: Store) -> None:
    config = ServiceConfig(webhook_url="http://127.0.0.1:1/x", webhook_secret_label="w")
    with pytest.raises(ConfigError, match="signed"):
        AlertSink(store, config, None)


async def test_the_alert_command_gets_the_json_on_stdin_without_the_pin(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRLOCK_PIN", "1234")
    out = tmp_path / "alert.json"
    script = (
        "import os, sys, json; data = json.loads(sys.stdin.read());"
        " data['pin'] = os.environ.get('AIRLOCK_PIN');"
        f" open({str(out)!r}, 'w').write(json.dumps(data))"
    )
    config = ServiceConfig(alert_command=(sys.executable, "-c", script))
    sink = AlertSink(store, config)
    assert await sink.raise_("cmd", "to the pager", details={"n": 1})
    got = json.loads(out.read_text())
    assert (got["key"], got["message"], got["details"], got["pin"]) == (
        "cmd",
        "to the pager",
        {"n": 1},
        None,
    )


def _gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status  # a zombie is dead, only not yet reaped


async def test_a_hanging_command_is_killed_at_its_timeout_with_its_children(
    store: Store, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    script = (
        "import os, subprocess, sys, time;"
        " c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        f" open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{c.pid}}');"
        " time.sleep(60)"
    )
    metrics = Metrics()
    config = ServiceConfig(
        alert_command=(sys.executable, "-c", script), alert_command_timeout_seconds=1.0
    )
    sink = AlertSink(store, config, None, metrics)
    start = time.monotonic()
    assert await sink.raise_("hang", "the pager hangs")
    assert time.monotonic() - start < 1.0 + BOUND
    parent, child = (int(p) for p in pids.read_text().split())
    deadline = time.monotonic() + BOUND
    while not (_gone(parent) and _gone(child)):
        assert time.monotonic() < deadline, "the command or its child survived the timeout"
        await asyncio.sleep(0.01)
    got = samples(metrics.render().decode())
    assert got[("airlock_alert_failures_total", (("channel", "command"),))] == 1


async def test_a_command_that_fails_or_is_missing_does_not_raise(
    store: Store, tmp_path: Path
) -> None:
    metrics = Metrics()
    for argv in (
        (sys.executable, "-c", "import sys; sys.exit(3)"),
        (str(tmp_path / "no-such-command"),),
    ):
        sink = AlertSink(
            store, ServiceConfig(alert_command=argv, alert_dedup_seconds=0), None, metrics
        )
        assert await sink.raise_("cmd-fails", "x")
    got = samples(metrics.render().decode())
    assert got[("airlock_alert_failures_total", (("channel", "command"),))] == 2


# -- logs -------------------------------------------------------------------------------


def test_json_formatter_writes_one_parseable_object_per_line() -> None:
    formatter = JsonFormatter()
    record = logging.LogRecord("airlock.test", logging.WARNING, __file__, 1, "a %s", ("b",), None)
    record.relay = "infura"
    record.webhook_url = "https://user:pw@hooks.example/abcdefghijklmnopqrstuvwxyz"
    record.secret_label = "never-shown"
    line = formatter.format(record)
    assert "\n" not in line
    got = json.loads(line)
    assert got["message"] == "a b"
    assert (got["level"], got["logger"], got["relay"]) == ("WARNING", "airlock.test", "infura")
    assert got["time"].endswith("Z") and "T" in got["time"]
    assert got["webhook_url"] == "https://***@hooks.example/***"
    assert got["secret_label"] == "***"

    try:
        raise RuntimeError("bad")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    got = json.loads(formatter.format(record))
    assert "RuntimeError: bad" in got["exc"]


def test_configure_logging_json_goes_to_stderr_and_replaces_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger()
    level = root.level
    try:
        configure_logging("text", verbose=False)
        handler = configure_logging("json", verbose=True)
        ours = [h for h in root.handlers if getattr(h, "_airlock", False)]
        assert ours == [handler]
        logging.getLogger("airlock.x").info("hello", extra={"item": "01J"})
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert lines[-1]["message"] == "hello" and lines[-1]["item"] == "01J"
        with pytest.raises(ConfigError):
            configure_logging("xml", verbose=False)
    finally:
        for h in [h for h in root.handlers if getattr(h, "_airlock", False)]:
            root.removeHandler(h)
        root.setLevel(level)
