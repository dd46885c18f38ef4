"""Bybit tests' parts: HSM keys, the simulator, fast settings, queued orders, and the
airlock.toml of a broadcaster that drains to the simulator."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tests.kits.labels import unique_label

from airlock.broadcaster.setup import build_venue
from airlock.broadcaster.venue import VenueBroadcaster
from airlock.config import BybitConfig
from airlock.hsm.keyring import KeyRing
from airlock.queue.bybit import IntentKey, enqueue_order
from airlock.queue.policy import OrderRequest, PolicyConfig, decide_order
from airlock.queue.store import Enqueued, Store
from airlock.sim.bybit import CREATE, BybitSim

API_KEY = "airlock-test-key"
SYMBOL = "BTCUSDT"


@dataclass(frozen=True)
class BybitKeys:
    """One HMAC secret and one intent key in the session's HSM."""

    secret: bytes
    secret_label: str
    intent: IntentKey


def make_keys(keyring: KeyRing) -> BybitKeys:
    secret = os.urandom(32)
    secret_label = unique_label("bybit-hmac")
    keyring.import_hmac_secret(secret_label, secret)
    intent_label = unique_label("intents")
    keyring.generate("p256", intent_label)
    intent = IntentKey(
        keyring.ecdsa_key(intent_label, curve="p256"),
        intent_label,
        keyring.public_key_pem(intent_label),
    )
    return BybitKeys(secret, secret_label, intent)


def sim_for(keys: BybitKeys, **options: Any) -> BybitSim:
    return BybitSim(API_KEY, secret=keys.secret, **options)


def settings(keys: BybitKeys, url: str, **changes: Any) -> BybitConfig:
    """Fast timings: probes every 50 ms, reconcile every 200 ms, backoff 10-100 ms."""
    base = BybitConfig(
        base_url=url,
        api_key=API_KEY,
        secret_label=keys.secret_label,
        intent_key_label=keys.intent.label,
        probe_seconds=0.05,
        reconcile_seconds=0.2,
        retry_base_seconds=0.01,
        retry_cap_seconds=0.1,
    )
    return replace(base, **changes)


def venue(
    keyring: KeyRing, store: Store, keys: BybitKeys, url: str, **changes: Any
) -> VenueBroadcaster:
    return build_venue(settings(keys, url, **changes), keyring, store)


def write_config(path: Path, queue: Path, kek_label: str, keys: BybitKeys, url: str) -> None:
    """An airlock.toml for ``airlock broadcaster run`` against the simulator at ``url``:
    probes every 100 ms, reconcile every 300 ms, backoff 20-200 ms."""
    path.write_text(
        f"""
[queue]
path = "{queue}"
kek_label = "{kek_label}"

[service]
metrics_port = 0  # tests run side by side: no fixed port

[bybit]
base_url = "{url}"
api_key = "{API_KEY}"
secret_label = "{keys.secret_label}"
intent_key_label = "{keys.intent.label}"
recv_window_ms = 2000
probe_seconds = 0.1
reconcile_seconds = 0.3
retry_base_seconds = 0.02
retry_cap_seconds = 0.2
"""
    )


def order_request(key: str, **changes: Any) -> OrderRequest:
    fields: dict[str, Any] = {
        "category": "linear",
        "symbol": SYMBOL,
        "side": "Buy",
        "order_type": "Limit",
        "qty": "0.01",
        "price": "60000",
        "tif": "GTC",
        "ttl_s": 3600,
        "idempotency_key": key,
    }
    fields.update(changes)
    return OrderRequest(**fields)


def queue_orders(
    store: Store,
    keys: BybitKeys,
    n: int,
    *,
    prefix: str = "ord",
    reachable: bool = False,
    change: Callable[[int], dict[str, Any]] | None = None,
) -> list[Enqueued]:
    """``n`` GTC limit buys queued as during an outage (``reachable=False``)."""
    queued = []
    for i in range(n):
        request = order_request(f"{prefix}-{i}", **(change(i) if change else {}))
        decision = decide_order(request, venue_reachable=reachable, config=PolicyConfig())
        queued.append(enqueue_order(store, request, decision, keys.intent, account="bybit"))
    return queued


def creates(sim: BybitSim) -> list[str]:
    """The orderLinkId of every create request the venue received, in order."""
    import json

    out = []
    for request in sim.requests():
        if request.path == CREATE and request.body:
            out.append(json.loads(request.body)["orderLinkId"])
    return out
