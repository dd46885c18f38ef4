"""The service's local HTTP API over a real socket: the aiohttp server in this test's event
loop over a real Airlock (SoftHSM token, queue file), an aiohttp client on the Unix socket.

Every JSON answer is validated against docs/openapi.yaml (the schema documented for its
path, method, status and content type) and every event's data against its Event schema, so
the spec cannot drift from what the server says. Permissions are tested with a child
process dropped to ``nobody``; ``airlock broadcaster run`` is run once as a process.
"""

from __future__ import annotations

import asyncio
import grp
import json
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from tests.kits.api import DOWN, make_config, order_args, snapshot, tx_args
from tests.kits.cli import broadcaster

from airlock.api.client import Airlock
from airlock.api.http import make_app
from airlock.api.orders import Reachability
from airlock.api.serve import ApiUnavailable, serve_api
from airlock.config import AirlockConfig, ApiConfig
from airlock.errors import ConfigError
from airlock.hsm.keyring import HsmEcdsaKey, KeyRing
from airlock.queue.kek import HsmKek
from airlock.queue.states import State
from airlock.queue.store import Store

SPEC_PATH = Path(__file__).resolve().parents[1] / "docs" / "openapi.yaml"
SPEC: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
SPEC_URI = "urn:airlock:openapi"
REGISTRY: Registry = Registry().with_resource(
    SPEC_URI, Resource.from_contents(SPEC, default_specification=DRAFT202012)
)
PROBLEM = "application/problem+json"
JSON = "application/json"
UP = Reachability(True, None, "venue up (test)")
MAX_BODY = 16 * 1024
MAX_BATCH = 20
STREAM_TIMEOUT_S = 10.0
NOBODY_PYTHON = "/usr/bin/python3"  # the venv's interpreter lives under /root (mode 0700)


# ------------------------------------------------------------------------- the spec


def _pointer(*parts: str) -> str:
    escaped = (p.replace("~", "~0").replace("/", "~1") for p in parts)
    return "/" + "/".join(escaped)


def _validator(pointer: str) -> Draft202012Validator:
    ref = f"{SPEC_URI}#{quote(pointer, safe='/~')}"
    return Draft202012Validator({"$ref": ref}, registry=REGISTRY)


def _resolve(pointer: str) -> tuple[str, Any]:
    """The object at ``pointer`` in the spec, following a ``$ref`` it is (responses)."""
    node: Any = SPEC
    for part in pointer.lstrip("/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    if isinstance(node, dict) and "$ref" in node:
        return _resolve(node["$ref"].removeprefix("#"))
    return pointer, node


def _template(path: str) -> str | None:
    """The spec's path template that ``path`` matches (``/v1/items/{item_id}``)."""
    for template in SPEC["paths"]:
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            return template
    return None


def check_answer(
    method: str, path: str, status: int, content_type: str, body: Any, request: Any = None
) -> None:
    """``body`` must be what the spec documents for this path, method, status and type."""
    template = _template(path)
    operation = None if template is None else SPEC["paths"][template].get(method.lower())
    if operation is None:  # no such path, or not this method: a problem, nothing else
        assert content_type == PROBLEM, (method, path, status, content_type)
        errors = list(_validator("/components/schemas/Problem").iter_errors(body))
        assert not errors, (body, errors)
        return
    assert template is not None
    documented = operation["responses"]
    assert str(status) in documented, f"{status} is not documented for {method} {template}"
    where, response = _resolve(
        _pointer("paths", template, method.lower(), "responses", str(status))
    )
    assert content_type in response["content"], (method, template, status, content_type)
    schema = where + _pointer("content", content_type, "schema")
    errors = list(_validator(schema).iter_errors(body))
    assert not errors, (method, template, status, body, [e.message for e in errors])
    if request is not None and 200 <= status < 300:
        request_schema = _pointer("paths", template, method.lower(), "requestBody") + _pointer(
            "content", JSON, "schema"
        )
        errors = list(_validator(request_schema).iter_errors(request))
        assert not errors, ("the request", request, [e.message for e in errors])


def check_event(data: dict[str, Any]) -> None:
    errors = list(_validator("/components/schemas/Event").iter_errors(data))
    assert not errors, (data, [e.message for e in errors])


# ------------------------------------------------------------------------- the client


@dataclass
class Answer:
    status: int
    body: Any
    headers: Any

    @property
    def problem_type(self) -> str:
        return str(self.body["type"]).removeprefix("urn:airlock:problem:")


class Client:
    """An aiohttp session on the API; every answer is checked against the spec."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        params: Any = None,
    ) -> Answer:
        async with self.session.request(
            method, path, json=body, data=data, headers=headers, params=params
        ) as response:
            raw = await response.read()
            content_type = response.content_type
            parsed = json.loads(raw)
            check_answer(method, path, response.status, content_type, parsed, body)
            return Answer(response.status, parsed, response.headers)

    async def get(self, path: str, **kw: Any) -> Answer:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Answer:
        return await self.call("POST", path, body=body, **kw)


def unix_session(path: Path) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        base_url="http://airlock", connector=aiohttp.UnixConnector(path=str(path))
    )


@dataclass
class Venue:
    """What the service's link supervisor says about Bybit; tests flip it."""

    reach: Reachability = DOWN


@dataclass
class Served:
    al: Airlock
    client: Client
    socket: Path


@pytest.fixture
def config(tmp_path: Path, dead_url: str) -> AirlockConfig:
    return make_config(tmp_path, dead_url)


@pytest.fixture
def venue() -> Venue:
    return Venue()


@pytest.fixture
def al(config: AirlockConfig, keyring: KeyRing, store: Store, venue: Venue) -> Airlock:
    return Airlock(config, keyring, store, venue_view=lambda: venue.reach)


def api_config(tmp_path: Path, **changes: Any) -> ApiConfig:
    fields = {"socket": tmp_path / "api.sock", "max_body_bytes": MAX_BODY, "max_batch": MAX_BATCH}
    return ApiConfig(**(fields | changes))


@pytest.fixture
async def api(al: Airlock, tmp_path: Path) -> AsyncIterator[Served]:
    config = api_config(tmp_path)
    async with serve_api(al, config, tmp_path) as server, unix_session(server.socket) as session:
        yield Served(al, Client(session), server.socket)


def tx_body(signing_key: HsmEcdsaKey, /, **changes: Any) -> dict[str, Any]:
    """A transaction as JSON: big integers as decimal strings, as a bot in any language."""
    body = tx_args(signing_key, **changes)
    for name in ("max_fee", "priority_fee"):
        if isinstance(body.get(name), int):
            body[name] = str(body[name])
    return body


def order_body(key: str, **changes: Any) -> dict[str, Any]:
    return order_args(key, **changes)


def state(al: Airlock) -> tuple[Any, ...]:
    """What a refused request must leave as it was: items, events, nonces, audit size."""
    return (*snapshot(al), al.store.audit.size(), [e.id for e in al.events()])


# -------------------------------------------------------------------- queueing: one


async def test_a_transaction_is_201_then_200_for_the_same_body_then_409(api, eth_key):
    body = tx_body(eth_key, ladder=3, with_cancel=True, ttl=3600, idempotency_key="pay-1")
    created = await api.client.post("/v1/transactions", body)
    assert created.status == 201 and created.body["replayed"] is False
    item = api.al.item(created.body["id"])
    assert created.body["nonce"] == item.nonce == 0 and created.body["state"] == "queued"
    assert [v["hash"] for v in created.body["variants"]] == list(item.hashes)
    before = state(api.al)
    again = await api.client.post("/v1/transactions", body)
    assert again.status == 200 and again.body["replayed"] is True
    assert (
        again.body["id"] == created.body["id"]
        and again.body["variants"] == created.body["variants"]
    )
    other = await api.client.post("/v1/transactions", body | {"value": 1001})
    assert other.status == 409 and other.problem_type == "idempotency-conflict"
    assert created.body["id"] in other.body["detail"]
    assert state(api.al) == before


async def test_a_web3_dict_under_tx_and_big_integers_as_strings(api, eth_key):
    sender = api.al.address(eth_key.label)
    tx = {
        "from": sender,
        "chainId": 1,
        "to": "0x" + "ab" * 20,
        "value": str(2**70),
        "gas": 21000,
        "maxFeePerGas": "40000000000",
        "maxPriorityFeePerGas": "2000000000",
        "type": "0x2",
    }
    body = {"tx": tx, "key": eth_key.label, "nonce": str(2**53 + 5), "idempotency_key": "w3"}
    created = await api.client.post("/v1/transactions", body)
    assert created.status == 201
    assert created.body["nonce"] == str(2**53 + 5) and created.body["account"] == sender
    assert api.al.inspect(created.body["id"])["payload"]["intent"]["value"] == str(2**70)


async def test_an_order_is_201_then_200_for_the_same_body_then_409(api):
    body = order_body("o-1")
    created = await api.client.post("/v1/orders", body)
    assert created.status == 201 and created.body["rule"] == "gtc-ttl"
    assert created.body["venue_reachable"] is False and created.body["kind"] == "bybit_order"
    assert created.body["intent"]["orderLinkId"] == created.body["order_link_id"]
    before = state(api.al)
    again = await api.client.post("/v1/orders", body)
    assert (again.status, again.body["id"], again.body["replayed"]) == (
        200,
        created.body["id"],
        True,
    )
    other = await api.client.post("/v1/orders", body | {"qty": "0.02"})
    assert other.status == 409 and other.problem_type == "idempotency-conflict"
    assert state(api.al) == before


async def test_an_ioc_while_the_venue_is_down_is_422_naming_the_rule(api, venue):
    before = state(api.al)
    refused = await api.client.post("/v1/orders", order_body("ioc-1", tif="IOC"))
    assert refused.status == 422 and refused.problem_type == "order-refused"
    assert refused.body["rule"] == "ioc-fok-never-queued" and "index" not in refused.body
    assert state(api.al)[:2] == before[:2]  # nothing queued (the refusal itself is audited)
    venue.reach = UP
    sent = await api.client.post("/v1/orders", order_body("ioc-1", tif="IOC"))
    assert sent.status == 201 and sent.body["rule"] == "venue-up"
    assert sent.body["venue_reachable"] is True


BAD_TRANSACTIONS = [
    ({"to": "0x1234"}, "to"),
    ({"gas": 100}, "gas"),
    ({"max_fee": "thirty"}, "max_fee"),
    ({"value": -1}, "value"),
    ({"ladder": "3"}, "ladder"),
    ({"with_cancel": "no"}, "with_cancel"),
    ({"priority": "urgent"}, "priority"),
    ({"colour": "red"}, "colour"),
    ({"key": "no-such-key-here"}, "key"),
    ({"tx": {"blobVersionedHashes": []}}, "blobVersionedHashes"),
]


@pytest.mark.parametrize(("changes", "field"), BAD_TRANSACTIONS)
async def test_bad_transaction_input_is_400_naming_the_field(api, eth_key, changes, field):
    before = state(api.al)
    answer = await api.client.post("/v1/transactions", tx_body(eth_key, **changes))
    assert answer.status == 400 and answer.problem_type == "invalid-input"
    assert answer.body["field"] == field, answer.body
    assert state(api.al) == before


BAD_ORDERS = [
    ({"side": "Sideways"}, "side", "invalid-order"),
    ({"qty": 0.01}, "qty", "invalid-order"),
    ({"price": None}, "price", "invalid-order"),  # a Limit order without a price
    ({"ttl": 0}, "ttl", "invalid-order"),
    ({"symbol": None}, "symbol", None),
    ({"venue": "sideways"}, "venue", None),
    ({"reduce_only": 1}, "reduce_only", None),
    ({"colour": "red"}, "colour", None),
]


@pytest.mark.parametrize(("changes", "field", "rule"), BAD_ORDERS)
async def test_bad_order_input_is_400_naming_the_field(api, changes, field, rule):
    before = state(api.al)
    answer = await api.client.post("/v1/orders", order_body("bad", **changes))
    assert answer.status == 400 and answer.problem_type == "invalid-input"
    assert (answer.body["field"], answer.body.get("rule")) == (field, rule), answer.body
    assert state(api.al)[:2] == before[:2]


# ------------------------------------------------------------------ queueing: batches


async def test_a_transaction_batch_is_queued_in_order_and_replayed_as_200(api, eth_key):
    batch = {"transactions": [tx_body(eth_key, idempotency_key=f"b-{i}") for i in range(3)]}
    created = await api.client.post("/v1/transactions:batch", batch)
    assert created.status == 201
    assert [q["nonce"] for q in created.body["items"]] == [0, 1, 2]
    assert [i.id for i in api.al.items()] == [q["id"] for q in created.body["items"]]
    again = await api.client.post("/v1/transactions:batch", batch)
    assert again.status == 200 and all(q["replayed"] for q in again.body["items"])
    grown = await api.client.post(
        "/v1/transactions:batch",
        {"transactions": [*batch["transactions"], tx_body(eth_key, idempotency_key="b-3")]},
    )
    assert grown.status == 201 and [q["replayed"] for q in grown.body["items"]] == [
        True,
        True,
        True,
        False,
    ]


async def test_an_order_batch_takes_one_venue_for_all(api):
    body = {"orders": [order_body(f"ob-{i}") for i in range(3)], "venue": "up"}
    created = await api.client.post("/v1/orders:batch", body)
    assert created.status == 201 and len(created.body["items"]) == 3
    assert {q["rule"] for q in created.body["items"]} == {"venue-up"}
    assert len(api.al.items(kind="bybit_order")) == 3


async def test_a_bad_element_refuses_the_whole_batch_with_its_index(api, eth_key):
    await api.client.post("/v1/transactions", tx_body(eth_key, idempotency_key="first"))
    before = state(api.al)
    elements = [tx_body(eth_key, idempotency_key=f"k-{i}") for i in range(4)]
    elements[2]["gas"] = 5
    bad = await api.client.post("/v1/transactions:batch", {"transactions": elements})
    assert bad.status == 400 and (bad.body["index"], bad.body["field"]) == (2, "gas")
    elements[2] = tx_body(eth_key, idempotency_key="first", value=9)  # a known key, other body
    conflict = await api.client.post("/v1/transactions:batch", {"transactions": elements})
    assert conflict.status == 409 and conflict.body["index"] == 2
    elements[2] = "not an object"
    shape = await api.client.post("/v1/transactions:batch", {"transactions": elements})
    assert shape.status == 400 and shape.body["index"] == 2
    assert state(api.al) == before


async def test_a_refused_or_bad_order_refuses_the_whole_batch(api):
    before = state(api.al)
    orders = [order_body(f"r-{i}") for i in range(5)]
    orders[3]["tif"] = "FOK"
    refused = await api.client.post("/v1/orders:batch", {"orders": orders})
    assert refused.status == 422 and refused.problem_type == "order-refused"
    assert (refused.body["index"], refused.body["rule"]) == (3, "ioc-fok-never-queued")
    orders[3] = order_body("r-3", side="Up")
    bad = await api.client.post("/v1/orders:batch", {"orders": orders})
    assert bad.status == 400 and (bad.body["index"], bad.body["field"]) == (3, "side")
    orders[3] = order_body("r-3") | {"venue": "up"}
    per_element = await api.client.post("/v1/orders:batch", {"orders": orders})
    assert (per_element.status, per_element.body["field"], per_element.body["index"]) == (
        400,
        "venue",
        3,
    )
    assert state(api.al)[:2] == before[:2]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/transactions:batch", {"transactions": []}, "transactions"),
        ("/v1/transactions:batch", {"transactions": {"a": 1}}, "transactions"),
        ("/v1/transactions:batch", {"transactions": [{}], "extra": 1}, "extra"),
        ("/v1/transactions:batch", {"transactions": [{}] * (MAX_BATCH + 1)}, "transactions"),
        ("/v1/orders:batch", {"orders": "all of them"}, "orders"),
        ("/v1/orders:batch", {"orders": [{}], "venue": "sideways"}, "venue"),
    ],
)
async def test_a_malformed_batch_is_400_naming_the_field(api, path, body, field):
    before = state(api.al)
    answer = await api.client.post(path, body)
    assert answer.status == 400 and answer.body["field"] == field, answer.body
    assert state(api.al) == before


# ------------------------------------------------------------------------- bodies


async def test_a_body_over_the_limit_is_413_by_its_content_length(api, eth_key):
    before = state(api.al)
    body = tx_body(eth_key, data="0x" + "00" * MAX_BODY)
    answer = await api.client.post("/v1/transactions", body)
    assert answer.status == 413 and answer.problem_type == "too-large"
    assert str(MAX_BODY) in answer.body["detail"]
    assert state(api.al) == before
    assert (await api.client.get("/v1/health")).status == 200  # the service is fine


async def test_a_chunked_body_over_the_limit_is_413_without_a_length(api):
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"key": "hot-1", "data": "0x'
        for _ in range(MAX_BODY // 1024 + 2):
            yield b"00" * 512
        yield b'"}'

    before = state(api.al)
    answer = await api.client.post("/v1/orders:batch", data=chunks())
    assert answer.status == 413 and answer.problem_type == "too-large"
    assert state(api.al) == before


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b'{"a": ' * 20 + b"1" + b"}" * 20, "nested deeper"),
        (b"[" * 10_000, "nested deeper"),
        (b"key=hot-1&chain_id=1", "not JSON"),
        (b'{"key": "hot-1", "strategy": "\xff\xfe"}', "not UTF-8"),
        (b"[]", "not an array"),
        (b'"a string"', "not a string"),
        (b"", "not JSON"),
    ],
)
async def test_a_body_that_is_no_readable_json_object_is_400(api, raw, says):
    before = state(api.al)
    for path in ("/v1/transactions", "/v1/orders:batch"):
        answer = await api.client.post(path, data=raw, headers={"Content-Type": JSON})
        assert answer.status == 400 and answer.problem_type == "invalid-json"
        assert says.removeprefix("not an ").removeprefix("not a ") in answer.body["detail"]
    assert state(api.al) == before


# ------------------------------------------------------------------ reading, cancelling


@pytest.fixture
def mixed(al: Airlock, eth_key: HsmEcdsaKey) -> list[str]:
    """Five items: tx, order, tx (sent), order (cancelled), tx; their ids in order."""
    ids = [
        al.queue_transaction(**tx_args(eth_key)).id,
        al.queue_order(**order_args("m-a"), venue="down").id,
        al.queue_transaction(**tx_args(eth_key)).id,
        al.queue_order(**order_args("m-b"), venue="down").id,
        al.queue_transaction(**tx_args(eth_key)).id,
    ]
    al.store.items.transition(ids[2], State.SENDING, "test")
    al.store.items.transition(ids[2], State.SENT, "test")
    al.cancel(ids[3])
    return ids


async def test_items_are_listed_by_state_kind_after_and_limit(api, mixed):
    async def ids(**params: Any) -> list[str]:
        answer = await api.client.get("/v1/items", params=params)
        assert answer.status == 200
        return [i["id"] for i in answer.body["items"]]

    assert await ids() == mixed
    assert await ids(state="queued") == [mixed[0], mixed[1], mixed[4]]
    assert await ids(state="sent,cancelled") == [mixed[2], mixed[3]]
    assert await ids(kind="evm_tx") == [mixed[0], mixed[2], mixed[4]]
    assert await ids(state="queued", kind="bybit_order") == [mixed[1]]
    assert await ids(limit="2") == mixed[:2]
    assert await ids(after=mixed[1], limit="2") == mixed[2:4]
    assert await ids(after=mixed[4]) == []
    repeated = await api.client.get("/v1/items", params=[("state", "sent"), ("state", "queued")])
    assert [i["id"] for i in repeated.body["items"]] == [mixed[0], mixed[1], mixed[2], mixed[4]]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"state": "pending"}, "state"),
        ({"kind": "evm"}, "kind"),
        ({"limit": "0"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "10001"}, "limit"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_listing_parameters_are_400_naming_the_field(api, params, field):
    answer = await api.client.get("/v1/items", params=params)
    assert answer.status == 400 and answer.body["field"] == field


async def test_one_item_and_an_unknown_one(api, mixed):
    found = await api.client.get(f"/v1/items/{mixed[2]}")
    assert found.status == 200 and found.body["state"] == "sent"
    assert found.body == json.loads(json.dumps(api.al.item(mixed[2]).as_json()))
    assert "replayed" not in found.body  # the item, not the answer to queueing it
    missing = await api.client.get("/v1/items/01HZZZZZZZZZZZZZZZZZZZZZZZ")
    assert missing.status == 404 and missing.problem_type == "not-found"


async def test_cancel_local_presigned_queued_and_refused(api, eth_key):
    al = api.al
    order = al.queue_order(**order_args("c-1"), venue="down")
    local = await api.client.post(f"/v1/items/{order.id}/cancel")
    assert local.status == 200 and local.body["action"] == "local"
    assert local.body["item"]["state"] == "cancelled" == al.item(order.id).state
    lone = al.queue_transaction(**tx_args(eth_key))
    assert (await api.client.post(f"/v1/items/{lone.id}/cancel")).body["action"] == "local"
    again = await api.client.post(f"/v1/items/{lone.id}/cancel")
    assert again.status == 409 and again.problem_type == "wrong-state"

    first = al.queue_transaction(**tx_args(eth_key, with_cancel=True))
    al.queue_transaction(**tx_args(eth_key))
    presigned = await api.client.post(f"/v1/items/{first.id}/cancel")
    assert presigned.body["action"] == "presigned" and presigned.body["item"]["cancel_requested"]

    sent = al.queue_order(**order_args("c-2"), venue="down")
    al.store.items.transition(sent.id, State.SENDING, "test: on the wire")
    al.store.items.transition(sent.id, State.SENT, "test: the venue took it")
    queued = await api.client.post(f"/v1/items/{sent.id}/cancel")
    assert (
        queued.body["action"] == "queued" and queued.body["cancel_item"]["kind"] == "bybit_cancel"
    )
    cancel_id = queued.body["cancel_item"]["id"]
    itself = await api.client.post(f"/v1/items/{cancel_id}/cancel")
    assert itself.status == 400 and itself.problem_type == "invalid-input"
    missing = await api.client.post("/v1/items/01HZZZZZZZZZZZZZZZZZZZZZZZ/cancel")
    assert missing.status == 404


async def test_unknown_paths_and_methods_are_problems(api):
    nowhere = await api.client.get("/v1/nowhere")
    assert nowhere.status == 404 and nowhere.problem_type == "no-such-path"
    assert (await api.client.get("/")).status == 404
    wrong = await api.client.get("/v1/transactions")
    assert wrong.status == 405 and wrong.problem_type == "method-not-allowed"
    assert wrong.headers["Allow"] == "POST"
    deleted = await api.client.call("DELETE", "/v1/items/01HZZZZZZZZZZZZZZZZZZZZZZZ")
    assert deleted.status == 405 and "GET" in deleted.headers["Allow"]
    head = await api.client.session.head("/v1/events")
    assert head.status == 405  # a HEAD of the stream would never end
    head.release()


async def test_health_answers_with_the_newest_event_id(api, eth_key):
    assert (await api.client.get("/v1/health")).body == {"status": "ok", "last_event_id": 0}
    api.al.queue_transaction(**tx_args(eth_key))
    health = await api.client.get("/v1/health")
    assert health.body["last_event_id"] == api.al.store.events.last_id() == 1


def test_every_route_is_in_the_spec_and_every_spec_path_is_served(al):
    app = make_app(al)
    served = {(r.resource.canonical, r.method.lower()) for r in app.router.routes()}
    documented = {
        (path, method)
        for path, item in SPEC["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete", "head", "options"}
    }
    assert served == documented
    assert SPEC["openapi"].startswith("3.1")
    for schema in SPEC["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)  # raises on a schema that is no schema
    media = SPEC["paths"]["/v1/events"]["get"]["responses"]["200"]["content"]
    assert media["text/event-stream"]["x-event-data"] == {"$ref": "#/components/schemas/Event"}
    for name in ("Item", "Queued", "Cancelled", "Event", "Variant", "Fill", "Problem", "Health"):
        assert name in SPEC["components"]["schemas"]
    for name in ("TransactionRequest", "OrderRequest", "TransactionBatch", "OrderBatch"):
        assert name in SPEC["components"]["schemas"]


# ----------------------------------------------------------------------- the events


@dataclass(frozen=True)
class Sse:
    id: int
    event: str
    data: dict[str, Any]


async def read_events(response: aiohttp.ClientResponse, count: int) -> list[Sse]:
    """``count`` events from an open stream, each checked against the spec's Event."""
    events: list[Sse] = []
    fields: dict[str, str] = {}
    async with asyncio.timeout(STREAM_TIMEOUT_S):
        while len(events) < count:
            raw = await response.content.readline()
            assert raw, "the stream ended"
            line = raw.decode().rstrip("\n")
            if line.startswith(":"):
                continue
            if line:
                name, _, value = line.partition(": ")
                fields[name] = value
                continue
            data = json.loads(fields["data"])
            check_event(data)
            event = Sse(int(fields["id"]), fields["event"], data)
            assert (event.id, event.event) == (data["id"], data["type"])
            events.append(event)
            fields = {}
    return events


async def test_events_stream_in_order_and_resume_after_last_event_id(api, eth_key):
    al = api.al
    first = al.queue_transaction(**tx_args(eth_key)).id
    al.queue_order(**order_args("e-1"), venue="down")
    al.store.items.transition(first, State.SENDING, "wave 1")
    al.store.items.transition(first, State.SENT, "relay took it")
    seen: list[Sse] = []
    async with api.client.session.get("/v1/events") as stream:
        assert stream.status == 200 and stream.content_type == "text/event-stream"
        seen += await read_events(stream, 2)
    # Disconnected: more happens meanwhile.
    second = al.queue_transaction(**tx_args(eth_key)).id
    al.cancel(second)
    headers = {"Last-Event-ID": str(seen[-1].id)}
    async with api.client.session.get("/v1/events", headers=headers) as stream:
        seen += await read_events(stream, al.store.events.last_id() - seen[-1].id)
        al.store.items.transition(first, State.CONFIRMED, "mined")  # while connected: live
        seen += await read_events(stream, 1)
    stored = al.events()
    assert [e.id for e in seen] == [e.id for e in stored]  # each once, none missing
    assert [e.data for e in seen] == [e.as_json() for e in stored]
    assert [(e.event, e.data["item"]) for e in seen][:3] == [
        ("item.created", first),
        ("item.created", seen[1].data["item"]),
        ("item.state", first),
    ]
    assert (seen[-1].data["from_state"], seen[-1].data["state"]) == ("sent", "confirmed")


async def test_events_after_a_point_and_of_one_item(api, eth_key):
    al = api.al
    ids = [al.queue_transaction(**tx_args(eth_key)).id for _ in range(3)]
    al.store.items.transition(ids[0], State.SENDING, "test")
    async with api.client.session.get("/v1/events", params={"after": "2"}) as stream:
        assert [e.id for e in await read_events(stream, 2)] == [3, 4]
    headers = {"Last-Event-ID": "3"}  # wins over ?after=
    async with api.client.session.get("/v1/events?after=0", headers=headers) as stream:
        assert [e.id for e in await read_events(stream, 1)] == [4]
    async with api.client.session.get("/v1/events", params={"item": ids[0]}) as stream:
        assert [e.data["item"] for e in await read_events(stream, 2)] == [ids[0]] * 2


async def test_a_fill_event_carries_the_fill(api):
    from airlock.queue.venue import Fill

    order = api.al.queue_order(**order_args("f-1"), venue="down")
    fill = Fill(
        "exec-1", order.order_link_id, "bybit-1", "BTCUSDT", "Buy", "0.01", "60000", 1, order.id
    )
    api.al.store.venue.record_fills([fill])
    async with api.client.session.get("/v1/events", params={"after": "1"}) as stream:
        (event,) = await read_events(stream, 1)
    assert event.event == "item.fill" and event.data["fill"]["exec_id"] == "exec-1"


async def test_an_open_stream_ends_as_a_complete_response_when_the_server_stops(
    al, tmp_path, eth_key
):
    """The runner asks every stream to end before it waits for them: each ends as a
    whole chunked response, instead of being cut off after the shutdown timeout."""
    al.queue_transaction(**tx_args(eth_key))
    async with unix_session(tmp_path / "api.sock") as session:
        async with serve_api(al, api_config(tmp_path), tmp_path):
            stream = await session.get("/v1/events")
            assert [e.id for e in await read_events(stream, 1)] == [1]
        async with asyncio.timeout(STREAM_TIMEOUT_S):
            assert await stream.content.read() == b""  # a cut-off one raises here
        stream.release()


@pytest.mark.parametrize(
    ("headers", "params", "field"),
    [
        ({"Last-Event-ID": "abc"}, {}, "Last-Event-ID"),
        ({"Last-Event-ID": "-1"}, {}, "Last-Event-ID"),
        ({"Last-Event-ID": "9" * 30}, {}, "Last-Event-ID"),
        ({}, {"after": "x"}, "after"),
        ({}, {"after": "9" * 30}, "after"),
        ({}, {"colour": "red"}, "colour"),
    ],
)
async def test_a_bad_resume_point_is_400(api, headers, params, field):
    answer = await api.client.get("/v1/events", headers=headers, params=params)
    assert answer.status == 400 and answer.body["field"] == field


async def test_a_non_ascii_digit_in_last_event_id_is_400_not_500(api):
    async with api.client.session.get("/v1/events", headers={"Last-Event-ID": "\u00b2"}) as r:
        body = await r.json(content_type=None)
        check_answer("GET", "/v1/events", r.status, r.content_type, body)
    assert r.status == 400 and body["field"] == "Last-Event-ID"


# ---------------------------------------------------------------- the socket's access


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user may traverse: only the socket's own mode keeps others out
    (pytest's tmp_path is 0700, which would keep them out by itself)."""
    path = Path(tempfile.mkdtemp(prefix="al-api-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


CONNECT_AS = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("PermissionError")
else:
    s.sendall(b"GET /v1/health HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
    print(s.recv(100).split(b"\\r\\n")[0].decode())
"""


def connect_as_nobody(path: Path) -> str:
    done = subprocess.run(
        [NOBODY_PYTHON, "-I", "-c", CONNECT_AS, str(path)],
        user="nobody",
        group="nogroup",
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=20,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
async def test_the_socket_is_0600_and_another_user_cannot_connect(al, shared_dir):
    path = shared_dir / "api.sock"
    async with serve_api(al, ApiConfig(socket=path), shared_dir) as server:
        info = os.lstat(server.socket)
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
        assert info.st_uid == os.geteuid()
        assert list(shared_dir.glob(".api-*")) == []  # the staging directory is gone
        answer = await asyncio.to_thread(connect_as_nobody, path)
        assert answer == "PermissionError"
    assert not path.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
async def test_socket_group_shares_it_with_that_group_only(al, shared_dir):
    path = shared_dir / "api.sock"
    async with serve_api(al, ApiConfig(socket=path, socket_group="nogroup"), shared_dir):
        info = os.lstat(path)
        assert stat.S_IMODE(info.st_mode) == 0o660
        assert info.st_gid == grp.getgrnam("nogroup").gr_gid
        answer = await asyncio.to_thread(connect_as_nobody, path)
        assert answer == "HTTP/1.1 200 OK"  # nobody, in group nogroup, is let in


async def test_an_unknown_socket_group_is_a_config_error(al, tmp_path):
    with pytest.raises(ConfigError, match="no-such-group-here"):
        async with serve_api(al, api_config(tmp_path, socket_group="no-such-group-here"), tmp_path):
            pass
    assert not (tmp_path / "api.sock").exists()


async def test_a_stale_socket_of_a_killed_server_is_replaced(al, tmp_path):
    path = tmp_path / "api.sock"
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(str(path))  # a killed service leaves its socket file behind, nobody listening
    left.close()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    async with serve_api(al, api_config(tmp_path), tmp_path), unix_session(path) as session:
        assert (await Client(session).get("/v1/health")).status == 200


async def test_a_live_socket_is_refused_and_left_serving(al, tmp_path):
    path = tmp_path / "api.sock"
    async with serve_api(al, api_config(tmp_path), tmp_path):
        inode = os.lstat(path).st_ino
        with pytest.raises(ApiUnavailable, match="already serves"):
            async with serve_api(al, api_config(tmp_path), tmp_path):
                pass
        assert os.lstat(path).st_ino == inode
        async with unix_session(path) as session:
            assert (await Client(session).get("/v1/health")).status == 200


async def test_a_file_that_is_no_socket_is_never_replaced(al, tmp_path):
    path = tmp_path / "api.sock"
    path.write_text("precious")
    with pytest.raises(ApiUnavailable, match="not a socket"):
        async with serve_api(al, api_config(tmp_path), tmp_path):
            pass
    assert path.read_text() == "precious"


# ------------------------------------------------------------------------------ TCP


def token_file(tmp_path: Path, token: str, mode: int = 0o600) -> Path:
    path = tmp_path / "api.token"
    path.write_text(token + "\n")
    path.chmod(mode)
    return path


async def test_tcp_needs_the_bearer_token(al, tmp_path):
    token = secrets.token_hex(32)
    config = api_config(tmp_path, listen=("127.0.0.1", 0), token_file=token_file(tmp_path, token))
    async with serve_api(al, config, tmp_path) as server:
        assert server.tcp_url is not None and server.tcp is not None and server.tcp[1] > 0
        async with aiohttp.ClientSession(base_url=server.tcp_url) as session:
            client = Client(session)
            for headers in (
                {},
                {"Authorization": f"Bearer {token[:-1]}x"},
                {"Authorization": token},
            ):
                refused = await client.get("/v1/health", headers=headers)
                assert refused.status == 401 and refused.problem_type == "unauthorized"
                assert refused.headers["WWW-Authenticate"] == 'Bearer realm="airlock"'
            unknown = await client.get("/v1/nowhere")
            assert unknown.status == 401  # nothing about the paths before the token
            for scheme in ("Bearer", "bearer"):
                ok = await client.get("/v1/health", headers={"Authorization": f"{scheme} {token}"})
                assert ok.status == 200 and ok.body["status"] == "ok"
        async with unix_session(server.socket) as session:  # the socket needs no token
            assert (await Client(session).get("/v1/health")).status == 200


async def test_a_token_that_is_not_utf_8_is_401_not_500(al, tmp_path):
    token = secrets.token_hex(32)
    config = api_config(tmp_path, listen=("127.0.0.1", 0), token_file=token_file(tmp_path, token))
    async with serve_api(al, config, tmp_path) as server:
        assert server.tcp is not None
        reader, writer = await asyncio.open_connection(*server.tcp)
        writer.write(
            b"GET /v1/health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n"
            b"Connection: close\r\n\r\n"
        )
        async with asyncio.timeout(STREAM_TIMEOUT_S):
            answer = await reader.read()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]


async def test_a_token_file_others_can_read_is_refused(al, tmp_path):
    path = token_file(tmp_path, secrets.token_hex(32), mode=0o644)
    config = api_config(tmp_path, listen=("127.0.0.1", 0), token_file=path)
    with pytest.raises(ConfigError, match="readable by others"):
        async with serve_api(al, config, tmp_path):
            pass
    assert not (tmp_path / "api.sock").exists()


@pytest.mark.parametrize("token", ["short-token", "a" * 20 + " " + "b" * 20, ""])
async def test_a_short_or_spaced_token_is_refused(al, tmp_path, token):
    config = api_config(tmp_path, listen=("127.0.0.1", 0), token_file=token_file(tmp_path, token))
    with pytest.raises(ConfigError, match="at least 32"):
        async with serve_api(al, config, tmp_path):
            pass


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ('listen = "0.0.0.0:8750"\ntoken_file = "/x"', "must be a loopback host:port"),
        ('listen = "127.0.0.1:0"\ntoken_file = "/x"', "port must be 1..65535"),
        ('listen = "127.0.0.1:8750"', "listen needs token_file"),
        ('socket_group = "a b"', r"\[api\] socket_group must be a group name"),
        ("max_body_bytes = 10", r"\[api\] max_body_bytes"),
        ("max_batch = 0", r"\[api\] max_batch"),
        ('socket = ""', r"\[api\] socket must be a file path"),
        ("port = 1", "port"),
    ],
)
def test_bad_api_settings_are_config_errors_naming_the_key(tmp_path, dead_url, table, says):
    with pytest.raises(ConfigError, match=says):
        make_config(tmp_path, dead_url, bybit=False, extra=f"[api]\n{table}\n")


def test_api_settings_are_read(tmp_path, dead_url):
    table = (
        '[api]\nsocket = "/run/airlock/api.sock"\nsocket_group = "traders"\n'
        'listen = "[::1]:8750"\ntoken_file = "~/api.token"\nmax_body_bytes = 2048\n'
        "max_batch = 10\nenabled = false\n"
    )
    api = make_config(tmp_path, dead_url, bybit=False, extra=table).api
    assert (api.socket, api.socket_group, api.listen) == (
        Path("/run/airlock/api.sock"),
        "traders",
        ("::1", 8750),
    )
    assert api.token_file == Path.home() / "api.token" and not api.enabled
    assert (api.max_body_bytes, api.max_batch) == (2048, 10)
    assert ApiConfig().socket_path(tmp_path) == tmp_path / "api.sock"


# ------------------------------------------------------------- the service as a process


def wait_for(check: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.02)  # a poll interval, bounded by the deadline
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
async def test_broadcaster_run_serves_the_socket_and_removes_it_on_sigterm(
    token_home: Path, kek: HsmKek, eth_key: HsmEcdsaKey, tmp_path: Path, dead_url: str
):
    path = tmp_path / "svc.sock"
    queue = tmp_path / "svc.db"
    config = tmp_path / "service.toml"
    config.write_text(
        f'[queue]\npath = "{queue}"\nkek_label = "{kek.label}"\n\n'
        f'[[relays]]\nname = "dead"\nkind = "evm-rpc"\nurl = "{dead_url}"\nchain_id = 1\n\n'
        f'[service]\nmetrics_port = 0\n\n[api]\nsocket = "{path}"\n'
    )
    process = broadcaster(token_home, config)
    try:
        await asyncio.to_thread(
            wait_for, lambda: process.poll() is not None or path.exists(), 60, "the socket"
        )
        assert process.poll() is None, process.communicate()[1].decode()
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
        async with unix_session(path) as session:
            client = Client(session)
            queued = await client.post("/v1/transactions", tx_body(eth_key, idempotency_key="svc"))
            assert queued.status == 201 and queued.body["state"] == "queued"
            found = await client.get(f"/v1/items/{queued.body['id']}")
            assert found.body["id"] == queued.body["id"]
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(process.communicate, timeout=30)
        assert process.returncode == 0, err.decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert not path.exists()
    with Store.open(queue, kek) as store:
        assert store.items.get(queued.body["id"]).idempotency_key == "svc"
