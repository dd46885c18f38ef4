"""Queueing Bybit orders: policy, HSM-signed intents, idempotency, and the audit check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.kits.backends import BOTH
from tests.kits.labels import unique_label

from airlock.audit.export import export
from airlock.audit.log import AuditKey
from airlock.audit.order_check import OrderCheckError, check_enqueued_order, key_fingerprint
from airlock.audit.verify import verify_export
from airlock.queue.bybit import IntentKey, OrderRefused, enqueue_order
from airlock.queue.items import Kind, Priority
from airlock.queue.policy import OrderRequest, PolicyConfig, decide_order
from airlock.queue.states import State
from airlock.queue.store import Store
from airlock.signer.bybit import intent_dict, load_intent_public_key, make_order_intent, sign_intent

BACKENDS = BOTH


@pytest.fixture(scope="module")
def intent_key(keyring) -> IntentKey:
    label = unique_label("intents")
    keyring.generate("p256", label)
    return IntentKey(keyring.ecdsa_key(label, curve="p256"), label, keyring.public_key_pem(label))


def request(key: str = "ord-1", **changes) -> OrderRequest:
    fields = {
        "category": "linear",
        "symbol": "BTCUSDT",
        "side": "Buy",
        "order_type": "Limit",
        "qty": "0.010",
        "price": "65000.50",
        "tif": "GTC",
        "ttl_s": 600,
        "idempotency_key": key,
    }
    fields.update(changes)
    return OrderRequest(**fields)


def queue(store: Store, intent_key: IntentKey, req: OrderRequest, reachable: bool = False):
    decision = decide_order(req, venue_reachable=reachable, config=PolicyConfig())
    return enqueue_order(store, req, decision, intent_key, account="main")


def test_gtc_order_is_queued_with_its_signed_intent(store: Store, intent_key: IntentKey):
    queued = queue(store, intent_key, request())
    item = queued.item
    assert (item.kind, item.state, item.priority) == (Kind.BYBIT_ORDER, State.QUEUED, 50)
    assert item.expires_ms == item.created_ms + 600_000
    payload = store.items.payload(item.id)
    assert payload["policy"]["rule"] == "gtc-ttl"
    assert payload["intent"]["qty"] == "0.01" and payload["intent"]["price"] == "65000.5"
    # The stored intent carries a valid HSM signature (the check an auditor runs).
    assert check_enqueued_order(payload) == key_fingerprint(
        load_intent_public_key(intent_key.public_pem.encode())
    )


def test_a_retry_returns_the_same_order(store: Store, intent_key: IntentKey):
    first = queue(store, intent_key, request("same"))
    again = queue(store, intent_key, request("same"))
    assert again.existing and again.item.id == first.item.id
    assert store.items.payload(first.item.id)["intent"]["orderLinkId"].startswith("al-")


def test_ioc_during_an_outage_is_refused_and_the_refusal_audited(
    store: Store, intent_key: IntentKey
):
    size = store.audit.size()
    with pytest.raises(OrderRefused, match="ioc-fok-never-queued"):
        queue(store, intent_key, request("ioc", tif="IOC"))
    assert store.items.select() == []
    assert store.audit.size() == size + 1
    (entry,) = [json.loads(e) for e in store.audit.entries(size)]
    assert entry["type"] == "order.refused" and entry["data"]["decision"]["rule"] == (
        "ioc-fok-never-queued"
    )


def test_market_order_with_a_cap_becomes_a_risk_capped_limit(store: Store, intent_key):
    req = request(
        "mkt",
        order_type="Market",
        price=None,
        tif=None,
        ttl_s=None,
        ref_price="65000.00",
        slippage_bps=50,
        reduce_only=True,
    )
    item = queue(store, intent_key, req).item
    intent = store.items.payload(item.id)["intent"]
    assert intent["orderType"] == "Limit" and intent["price"] == "65325"
    assert item.priority == Priority.RISK_REDUCING


def test_audit_verify_checks_every_intent_signature(
    store: Store, keyring, intent_key: IntentKey, tmp_path: Path
):
    queue(store, intent_key, request("a"))
    queue(store, intent_key, request("b", side="Sell", price="70000"))
    key = AuditKey(keyring, unique_label("audit"))
    good = tmp_path / "good"
    export(store, key, good)
    report = verify_export(good, (good / "audit-key.pem").read_bytes())
    assert report.ok, report.problem
    assert len(report.intent_keys) == 1
    assert report.kinds["item.enqueued"] == 2


def test_a_forged_intent_signature_fails_verification(tmp_path: Path, intent_key, keyring):
    intent = make_order_intent(
        category="linear",
        symbol="ETHUSDT",
        side="Sell",
        order_type="Limit",
        qty="1",
        price="3000",
        time_in_force="GTC",
        order_link_id="al-test",
    )
    data = {
        "intent": intent_dict(intent),
        "intent_signature": sign_intent(intent_key.key, intent).hex(),
        "intent_key_pem": intent_key.public_pem,
    }
    assert len(check_enqueued_order(data)) == 16
    data["intent"] = dict(data["intent"], qty="100")  # a tampered quantity
    with pytest.raises(OrderCheckError, match="does not verify"):
        check_enqueued_order(data)


def test_a_retry_during_an_outage_returns_the_order_queued_while_the_venue_was_up(
    store: Store, intent_key: IntentKey
):
    ioc = request("ioc-retry", tif="IOC", ttl_s=None)
    first = queue(store, intent_key, ioc, reachable=True)
    before = store.audit.size()
    again = queue(store, intent_key, ioc, reachable=False)  # the policy alone would refuse
    assert again.existing and again.item.id == first.item.id
    assert store.audit.size() == before  # no order.refused entry for a retry
