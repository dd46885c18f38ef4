"""The async relay client against real loopback servers (scripted, misbehaving, behind a
proxy, on another source address) and a real anvil; the body parser's depth limit."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from airlock.config import LinkConfig, RelayConfig
from airlock.encoding.jsonlimit import loads_limited, nesting_depth
from airlock.errors import ConfigError
from airlock.relays.jsonrpc import (
    FLASHBOTS_HEADER,
    POOL_SIZE,
    EvmRelay,
    FlashbotsAuth,
    Probe,
    RawTx,
    Receipt,
    RelayRpcError,
    RelayTransportError,
    Reply,
)
from airlock.relays.outcomes import Outcome
from airlock.signer.eip191 import make_flashbots_signer
from airlock.sim.anvil import Anvil, free_port

DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
DEAD = "0x000000000000000000000000000000000000dEaD"
ANVIL_PER_MODULE = True  # one node for the module (the conftest fixture)
WAIT_S = 30.0  # bound of every poll in this file (it only matters when one fails)

# --------------------------------------------------------------------------- the fake relay


class Fault(Exception):
    """Raised by a scripted method: the server answers with this JSON-RPC error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Seen:
    """One request as the server received it."""

    body: bytes
    headers: dict[str, str]
    peer: str | None

    @property
    def payload(self) -> Any:
        return json.loads(self.body)


Handler = Callable[[web.BaseRequest, Any], Awaitable[web.StreamResponse]]


@dataclass
class FakeRelay:
    """A JSON-RPC server on a free loopback port whose answers the test scripts.

    ``methods`` answer calls (return a result or raise :class:`Fault`); ``reorder`` reverses
    batch replies; ``respond``, when set, replaces the whole answer (garbage, hangs).
    """

    url: str = ""
    methods: dict[str, Callable[[list[Any]], Any]] = field(default_factory=dict)
    reorder: bool = False
    respond: Handler | None = None
    seen: list[Seen] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(Seen(body, dict(request.headers), request.remote))
        payload = json.loads(body)
        if self.respond is not None:
            return await self.respond(request, payload)
        if isinstance(payload, list):
            replies = [self.answer(call) for call in payload]
            return web.json_response(replies[::-1] if self.reorder else replies)
        return web.json_response(self.answer(payload))

    def answer(self, call: dict[str, Any]) -> dict[str, Any]:
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": call["id"]}
        try:
            reply["result"] = self.methods[call["method"]](call["params"])
        except Fault as fault:
            reply["error"] = {"code": fault.code, "message": fault.message}
        except KeyError:
            reply["error"] = {"code": -32601, "message": f"no method {call['method']}"}
        return reply


async def serve(handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]) -> Any:
    """Start a low-level aiohttp server on a free 127.0.0.1 port; (runner, url)."""
    runner = web.ServerRunner(web.Server(handler), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}/"


@pytest.fixture
async def fake() -> AsyncIterator[FakeRelay]:
    relay = FakeRelay()
    runner, relay.url = await serve(relay.handle)
    yield relay
    relay.release.set()  # let any hanging handler finish before the server goes
    await runner.cleanup()


@dataclass
class ForwardProxy:
    url: str = ""
    forwarded: list[str] = field(default_factory=list)


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    """A tiny HTTP forward proxy: it takes absolute-URI requests and forwards them."""
    state = ForwardProxy()
    timeout = aiohttp.ClientTimeout(total=WAIT_S)
    async with aiohttp.ClientSession(timeout=timeout) as upstream:

        async def forward(request: web.BaseRequest) -> web.StreamResponse:
            state.forwarded.append(str(request.url))
            keep = ("Content-Type", FLASHBOTS_HEADER)
            headers = {k: request.headers[k] for k in keep if k in request.headers}
            async with upstream.post(
                request.url, data=await request.read(), headers=headers
            ) as response:
                body = await response.read()
                return web.Response(status=response.status, body=body)

        runner, state.url = await serve(forward)
        yield state
        await runner.cleanup()


def config(url: str, **overrides: Any) -> RelayConfig:
    settings_: dict[str, Any] = {"name": "test-relay", "kind": "evm-rpc", "chain_id": 31337}
    settings_.update(overrides)
    return RelayConfig(url=url, **settings_)


def body_of(data: bytes, status: int = 200) -> Handler:
    async def respond(request: web.BaseRequest, payload: Any) -> web.StreamResponse:
        return web.Response(body=data, status=status, content_type="application/json")

    return respond


def echo_hash(params: list[Any]) -> str:
    """What a healthy node answers to eth_sendRawTransaction: the tx's hash."""
    return "0x" + keccak(bytes.fromhex(params[0][2:])).hex()


def fake_tx(i: int) -> RawTx:
    return RawTx.of(bytes([0x02]) + i.to_bytes(8, "big") + b"\xaa" * 40)


# --------------------------------------------------------------------------- body parsing


def nested(depth: int) -> bytes:
    """``depth`` levels, alternating arrays and objects, with a value at the bottom."""
    text = "1"
    for level in range(depth):
        text = f"[{text}]" if level % 2 else f'{{"k":{text}}}'
    return text.encode()


def test_legit_depth_10_parses():
    assert nesting_depth(nested(10), 64) == 10
    value = loads_limited(nested(10))
    for level in reversed(range(10)):
        value = value[0] if level % 2 else value["k"]
    assert value == 1


def test_depth_at_the_limit_parses_and_one_more_is_refused():
    assert loads_limited(nested(64)) is not None
    with pytest.raises(ValueError, match="nested deeper than 64"):
        loads_limited(nested(65))
    assert loads_limited(nested(5), max_depth=5) is not None
    with pytest.raises(ValueError, match="nested deeper than 4"):
        loads_limited(nested(5), max_depth=4)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        b"[{" * 50_000 + b"}]" * 50_000,
    ],
    ids=["arrays", "objects", "mixed"],
)
def test_100000_deep_is_refused_without_parsing(body):
    started = time.monotonic()
    with pytest.raises(ValueError, match="nested deeper than 64"):
        loads_limited(body)
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[" * 100_000, "nested deeper"),  # a long run of openings is refused first
        (b"]" * 100_000 + b"[" * 100_000, "nested deeper"),
        (b"[{" * 30 + b"]}" * 30, "brackets do not balance"),
        (b"[[1]", "brackets do not balance"),
    ],
)
def test_unbalanced_brackets_are_refused_before_the_parser_recurses(body, message):
    with pytest.raises(ValueError, match=message):
        loads_limited(body)


def test_brackets_and_escaped_quotes_inside_strings_do_not_count():
    body = json.dumps({"a": "[[[[{{{{", "b": '\\"]]]]"', "c": ["\\", '"', "}{"]}).encode()
    assert b'\\"' in body and b"\\\\" in body
    assert nesting_depth(body, 64) == 2
    assert loads_limited(body, max_depth=2) == json.loads(body)
    deep_in_a_string = json.dumps(["[" * 100_000 + '"' + "{" * 1000]).encode()
    assert loads_limited(deep_in_a_string, max_depth=1)[0].startswith("[[[")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b"<html><body>502 Bad Gateway</body></html>", "not JSON"),
        (b'{"jsonrpc":"2.0","id":1,"res', "not JSON"),
        (b'{"a":"unterminated}', "not JSON"),
        (b"[NaN]", "not JSON"),
        (b"", "not JSON"),
    ],
)
def test_bodies_that_are_not_json(body, message):
    with pytest.raises(ValueError, match=message):
        loads_limited(body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet=st.sampled_from('ab"\\[]{}\n é')),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(alphabet=st.sampled_from('k"\\[]{}'), max_size=4), children)
    ),
    max_leaves=20,
)


def depth_of(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_measured_depth_is_exact_for_any_json(value):
    body = json.dumps(value, ensure_ascii=False).encode()
    assert nesting_depth(body, 64) == depth_of(value)
    assert loads_limited(body) == value


def test_a_100_receipt_batch_reads_as_json_loads_reads_it():
    """A realistic batch passes the depth check unchanged. (Its cost, ~1.4x json.loads,
    is a benchmark's business, not a timed test's.)"""
    receipt = {
        "transactionHash": "0x" + "ab" * 32,
        "blockHash": "0x" + "cd" * 32,
        "blockNumber": "0x10",
        "status": "0x1",
        "logsBloom": "0x" + "00" * 256,
        "logs": [{"topics": ["0x" + "ef" * 32] * 3, "data": "0x" + "00" * 64}],
    }
    body = json.dumps([{"jsonrpc": "2.0", "id": i, "result": receipt} for i in range(100)])
    raw = body.encode()
    assert loads_limited(raw) == json.loads(raw)


# --------------------------------------------------------------------------- calls, batches


async def test_call_returns_the_result_and_sends_one_json_rpc_object(fake):
    fake.methods["eth_chainId"] = lambda params: "0x7a69"
    async with EvmRelay(config(fake.url)) as relay:
        assert await relay.call("eth_chainId", []) == "0x7a69"
    (seen,) = fake.seen
    request_id = seen.payload["id"]
    assert type(request_id) is int
    assert seen.payload == {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "eth_chainId",
        "params": [],
    }
    assert seen.headers["Content-Type"] == "application/json"
    assert FLASHBOTS_HEADER not in seen.headers


async def test_call_error_raises_rpc_error_with_code_and_message(fake):
    def fail(params: list[Any]) -> Any:
        raise Fault(-32000, "header not found")

    fake.methods["eth_blockNumber"] = fail
    async with EvmRelay(config(fake.url)) as relay:
        with pytest.raises(RelayRpcError, match="'test-relay': eth_blockNumber failed") as caught:
            await relay.call("eth_blockNumber", [])
    assert (caught.value.code, caught.value.message) == (-32000, "header not found")


async def test_batch_is_chunked_and_matched_by_id_when_the_server_reorders(fake):
    fake.methods["echo"] = lambda params: params[0]
    fake.reorder = True
    calls = [("echo", [i]) for i in range(7)]
    async with EvmRelay(config(fake.url, batch_size=3)) as relay:
        replies = await relay.batch(calls)
    assert replies == [Reply(result=i) for i in range(7)]
    sizes = sorted(len(s.payload) if isinstance(s.payload, list) else 1 for s in fake.seen)
    assert sizes == [1, 3, 3]  # a lone call goes as a plain object, not a batch of one
    ids = [c["id"] for s in fake.seen for c in (s.payload if isinstance(s.payload, list) else [])]
    assert len(ids) == len(set(ids)) == 6


async def test_batch_keeps_per_call_errors_as_replies(fake):
    def maybe(params: list[Any]) -> Any:
        if params[0] == 1:
            raise Fault(-32000, "transaction indexing is in progress")
        return params[0]

    fake.methods["echo"] = maybe
    async with EvmRelay(config(fake.url)) as relay:
        replies = await relay.batch([("echo", [0]), ("echo", [1]), ("echo", [2])])
    assert [r.ok for r in replies] == [True, False, True]
    assert replies[1] == Reply(
        error_code=-32000, error_message="transaction indexing is in progress"
    )


async def test_chunks_go_out_concurrently_and_never_more_than_the_pool(fake):
    in_flight = 0
    most = 0
    gate = asyncio.Event()

    async def hold(request: web.BaseRequest, payload: Any) -> web.StreamResponse:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        if in_flight >= POOL_SIZE:
            gate.set()
        await asyncio.wait_for(gate.wait(), WAIT_S)
        in_flight -= 1
        return web.json_response({"jsonrpc": "2.0", "id": payload["id"], "result": "0x1"})

    fake.respond = hold
    async with EvmRelay(config(fake.url, batch_size=1, timeout_seconds=WAIT_S)) as relay:
        replies = await relay.batch([("eth_blockNumber", [])] * (3 * POOL_SIZE))
    assert all(r.result == "0x1" for r in replies)
    assert most == POOL_SIZE


# --------------------------------------------------------------------------- garbage


def batch_answer(make: Callable[[list[int]], Any]) -> Handler:
    """Answer a batch with ``make(ids)``, JSON-encoded."""

    async def respond(request: web.BaseRequest, payload: Any) -> web.StreamResponse:
        return web.json_response(make([call["id"] for call in payload]))

    return respond


def ok(i: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": i, "result": "0x1"}


GARBAGE: dict[str, tuple[Handler, str]] = {
    "html": (body_of(b"<html><body>Bad gateway</body></html>"), "not JSON.*<html>"),
    "truncated": (body_of(b'[{"jsonrpc":"2.0","id":1,"result":"0x'), "not JSON"),
    "wrong ids": (batch_answer(lambda ids: [ok(i + 1000) for i in ids]), "no call in the batch"),
    "missing id": (
        batch_answer(lambda ids: [ok(ids[0]), {"jsonrpc": "2.0", "result": "0x1"}]),
        "no id",
    ),
    "null id with error": (
        batch_answer(
            lambda ids: [{"jsonrpc": "2.0", "id": None, "error": {"code": -1, "message": "x"}}]
        ),
        "id null, not one of ours",
    ),
    "boolean id": (batch_answer(lambda ids: [ok(True), ok(ids[1])]), "id true"),
    "string id": (batch_answer(lambda ids: [ok(str(i)) for i in ids]), 'id "'),
    "duplicate id": (batch_answer(lambda ids: [ok(ids[0]), ok(ids[0])]), "answered twice"),
    "missing reply": (batch_answer(lambda ids: [ok(ids[0])]), "1 of 2 calls got no reply"),
    "both": (
        batch_answer(
            lambda ids: (
                [ok(ids[0]), {"jsonrpc": "2.0", "id": ids[1], "result": "0x1", "error": None}]
            )
        ),
        "both result and error",
    ),
    "neither": (
        batch_answer(lambda ids: [ok(ids[0]), {"jsonrpc": "2.0", "id": ids[1]}]),
        "neither result and error",
    ),
    "non-object element": (batch_answer(lambda ids: [ok(ids[0]), "0x1"]), "not an object"),
    "bad error object": (
        batch_answer(
            lambda ids: [ok(ids[0]), {"jsonrpc": "2.0", "id": ids[1], "error": {"code": "x"}}]
        ),
        "malformed error object",
    ),
    "wrong version": (
        batch_answer(lambda ids: [ok(ids[0]), ok(ids[1]) | {"jsonrpc": "1.0"}]),
        "not '2.0'",
    ),
    "object for a batch": (
        batch_answer(lambda ids: {"jsonrpc": "2.0", "id": None, "error": {"code": -32600}}),
        "single object",
    ),
    "string for a batch": (batch_answer(lambda ids: "ok"), "a string, not an array"),
    "100000 deep": (body_of(b"[" * 100_000 + b"]" * 100_000), "nested deeper than 64"),
    "http 500": (body_of(b'{"error":"boom"}', status=500), "HTTP 500.*boom"),
    "redirect": (body_of(b"", status=307), "HTTP 307"),
}


@pytest.mark.parametrize("name", list(GARBAGE))
async def test_garbage_is_a_transport_error_naming_relay_and_reason(fake, name):
    fake.respond, message = GARBAGE[name]
    async with EvmRelay(config(fake.url)) as relay:
        with pytest.raises(RelayTransportError, match=f"relay 'test-relay': batch of 2.*{message}"):
            await relay.batch([("eth_blockNumber", []), ("eth_blockNumber", [])])


async def test_a_single_call_answered_with_another_id_is_a_transport_error(fake):
    async def other_id(request: web.BaseRequest, payload: Any) -> web.StreamResponse:
        return web.json_response(ok(payload["id"] + 1))

    fake.respond = other_id
    async with EvmRelay(config(fake.url)) as relay:
        with pytest.raises(RelayTransportError, match="eth_chainId: the reply has id"):
            await relay.call("eth_chainId", [])


async def test_a_body_over_the_limit_is_refused_by_its_length(fake):
    fake.respond = body_of(json.dumps(ok(1) | {"result": "0x" + "00" * 4096}).encode())
    async with EvmRelay(config(fake.url), max_response_bytes=1024) as relay:
        with pytest.raises(RelayTransportError, match="over the 1024-byte limit"):
            await relay.call("eth_chainId", [])


async def test_a_streamed_body_over_the_limit_stops_being_read(fake):
    sent = 0

    async def endless(request: web.BaseRequest, payload: Any) -> web.StreamResponse:
        nonlocal sent
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            while sent < 64 << 20:  # would be 64 MB; the client hangs up long before
                await response.write(b" " * 65536)
                sent += 65536
        except ConnectionError:  # the client hung up, as it should
            pass
        return response

    fake.respond = endless
    async with EvmRelay(config(fake.url), max_response_bytes=256 << 10) as relay:
        with pytest.raises(RelayTransportError, match="stopped reading"):
            await relay.call("eth_chainId", [])
    assert sent < 64 << 20


async def test_connection_refused_is_a_transport_error():
    url = f"http://127.0.0.1:{free_port()}/"
    async with EvmRelay(config(url)) as relay:
        with pytest.raises(RelayTransportError, match=r"'test-relay': eth_chainId: request to"):
            await relay.call("eth_chainId", [])


async def test_a_hanging_relay_times_out(fake):
    async def hang(request: web.BaseRequest, payload: Any) -> web.StreamResponse:
        await asyncio.wait_for(fake.release.wait(), WAIT_S)
        return web.json_response(ok(payload["id"]))

    fake.respond = hang
    started = time.monotonic()
    async with EvmRelay(config(fake.url, timeout_seconds=0.3)) as relay:
        with pytest.raises(RelayTransportError, match=r"no complete answer .* within 0\.3 s"):
            await relay.call("eth_chainId", [])
    assert time.monotonic() - started < WAIT_S / 2


async def test_an_unstarted_relay_refuses_calls(fake):
    relay = EvmRelay(config(fake.url))
    with pytest.raises(RuntimeError, match="not started"):
        await relay.call("eth_chainId", [])


# --------------------------------------------------------------------------- send_raw


async def test_send_raw_accepts_matching_hashes_in_one_batch(fake):
    fake.methods["eth_sendRawTransaction"] = echo_hash
    txs = [fake_tx(i) for i in range(5)]
    async with EvmRelay(config(fake.url)) as relay:
        results = await relay.send_raw(txs)
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 5
    (seen,) = fake.seen
    assert [c["params"] for c in seen.payload] == [["0x" + tx.raw.hex()] for tx in txs]


async def test_send_raw_classifies_error_messages_per_tx(fake):
    txs = [fake_tx(i) for i in range(4)]
    errors = {
        txs[0].tx_hash: "nonce too low: next nonce 5, tx nonce 3",
        txs[1].tx_hash: "already known",
        txs[2].tx_hash: "the relay invented a new wording",
    }

    def send(params: list[Any]) -> str:
        tx_hash = echo_hash(params)
        if tx_hash in errors:
            raise Fault(-32000, errors[tx_hash])
        return tx_hash

    fake.methods["eth_sendRawTransaction"] = send
    async with EvmRelay(config(fake.url)) as relay:
        results = await relay.send_raw(txs)
    assert [r.outcome for r in results] == [
        Outcome.NONCE_USED,
        Outcome.ALREADY_KNOWN,
        Outcome.TRANSIENT,
        Outcome.ACCEPTED,
    ]
    assert results[2].unknown and "(JSON-RPC code -32000)" in results[0].message


async def test_send_raw_a_different_hash_is_not_accepted(fake):
    fake.methods["eth_sendRawTransaction"] = lambda params: "0x" + "00" * 32
    async with EvmRelay(config(fake.url)) as relay:
        (result,) = await relay.send_raw([fake_tx(1)])
    assert result.outcome == Outcome.TRANSIENT and result.unknown


@pytest.mark.parametrize("name", ["html", "wrong ids", "100000 deep", "http 500"])
async def test_send_raw_garbage_makes_every_tx_transport(fake, name):
    fake.respond, _ = GARBAGE[name]
    async with EvmRelay(config(fake.url)) as relay:
        results = await relay.send_raw([fake_tx(i) for i in range(3)])
    assert [r.outcome for r in results] == [Outcome.TRANSPORT] * 3
    assert all("test-relay" in r.message for r in results)


async def test_send_raw_a_garbled_chunk_only_fails_its_own_txs(fake):
    txs = [fake_tx(i) for i in range(5)]
    poisoned = txs[3].tx_hash

    async def respond(request: web.BaseRequest, payload: Any) -> web.StreamResponse:
        calls = payload if isinstance(payload, list) else [payload]
        if any(echo_hash(call["params"]) == poisoned for call in calls):
            return web.Response(body=b"<html>oops</html>")
        replies = [fake.answer(call) for call in calls]
        return web.json_response(replies if isinstance(payload, list) else replies[0])

    fake.methods["eth_sendRawTransaction"] = echo_hash
    fake.respond = respond
    async with EvmRelay(config(fake.url, batch_size=2)) as relay:
        results = await relay.send_raw(txs)
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 2 + [Outcome.TRANSPORT] * 2 + [
        Outcome.ACCEPTED
    ]


async def test_send_raw_never_raises_when_the_relay_is_unreachable_or_unstarted(fake):
    url = f"http://127.0.0.1:{free_port()}/"
    async with EvmRelay(config(url)) as relay:
        results = await relay.send_raw([fake_tx(1), fake_tx(2)])
    assert [r.outcome for r in results] == [Outcome.TRANSPORT] * 2
    unstarted = EvmRelay(config(fake.url))
    (result,) = await unstarted.send_raw([fake_tx(1)])
    assert result.outcome == Outcome.TRANSPORT and "not started" in result.message


async def test_send_raw_of_nothing_sends_nothing(fake):
    async with EvmRelay(config(fake.url)) as relay:
        assert await relay.send_raw([]) == []
    assert fake.seen == []


def test_raw_tx_hash_must_be_lowercase_hex():
    tx = fake_tx(1)
    with pytest.raises(ValueError, match="lowercase"):
        RawTx(tx.raw, tx.tx_hash.upper().replace("0X", "0x"))
    with pytest.raises(ValueError, match="64 hex digits"):
        RawTx(tx.raw, tx.tx_hash[:-2])


# --------------------------------------------------------------------------- private relays


def recovered_signer(seen: Seen) -> str:
    """The address that signed a recorded request, as a Flashbots relay checks it."""
    address, signature = seen.headers[FLASHBOTS_HEADER].split(":")
    text = "0x" + keccak(seen.body).hex()
    recovered = Account.recover_message(encode_defunct(text=text), signature=signature)
    assert signature.startswith("0x") and len(signature) == 2 + 130
    assert recovered == address
    return recovered


@pytest.fixture
def flashbots_auth(eth_key) -> FlashbotsAuth:
    address, sign = make_flashbots_signer(eth_key)
    return FlashbotsAuth(address=address, sign=sign)


async def test_private_transactions_go_one_per_request_signed_by_the_hsm_key(fake, flashbots_auth):
    def send_private(params: list[Any]) -> str:
        (bundle,) = params
        assert set(bundle) == {"tx"}
        if bundle["tx"] == "0x" + fake_tx(2).raw.hex():
            raise Fault(-32603, "invalid nonce")
        return echo_hash([bundle["tx"]])

    fake.methods["eth_sendPrivateTransaction"] = send_private
    private = config(fake.url, kind="evm-private", method="eth_sendPrivateTransaction")
    txs = [fake_tx(i) for i in range(3)]
    async with EvmRelay(private, auth=flashbots_auth) as relay:
        assert relay.private
        results = await relay.send_raw(txs)
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.ACCEPTED, Outcome.NONCE_USED]
    assert len(fake.seen) == 3
    sent = sorted(s.payload["params"][0]["tx"] for s in fake.seen)
    assert sent == sorted("0x" + tx.raw.hex() for tx in txs)
    assert all(s.payload["method"] == "eth_sendPrivateTransaction" for s in fake.seen)
    assert {recovered_signer(s) for s in fake.seen} == {flashbots_auth.address}


async def test_every_request_of_an_authenticated_relay_is_signed(fake, flashbots_auth):
    fake.methods["eth_chainId"] = lambda params: "0x7a69"
    fake.methods["eth_blockNumber"] = lambda params: "0x10"
    async with EvmRelay(config(fake.url), auth=flashbots_auth) as relay:
        assert await relay.probe() == Probe(chain_id=31337, block_number=16)
        await relay.call("eth_chainId", [])
    assert [type(s.payload) for s in fake.seen] == [list, dict]
    assert {recovered_signer(s) for s in fake.seen} == {flashbots_auth.address}


async def test_a_private_transaction_relay_gets_no_batches_of_any_method(fake, flashbots_auth):
    fake.methods["eth_chainId"] = lambda params: "0x7a69"
    fake.methods["eth_blockNumber"] = lambda params: "0x10"
    private = config(fake.url, kind="evm-private", method="eth_sendPrivateTransaction")
    async with EvmRelay(private, auth=flashbots_auth) as relay:
        assert await relay.probe() == Probe(chain_id=31337, block_number=16)
    assert sorted(s.payload["method"] for s in fake.seen) == ["eth_blockNumber", "eth_chainId"]
    assert {recovered_signer(s) for s in fake.seen} == {flashbots_auth.address}


async def test_a_failing_signer_is_a_transport_error_and_never_sends(fake):
    async def broken(digest: bytes) -> bytes:
        raise OSError("token removed")

    auth = FlashbotsAuth(address="0x" + "11" * 20, sign=broken)
    private = config(fake.url, kind="evm-private", method="eth_sendPrivateTransaction")
    async with EvmRelay(private, auth=auth) as relay:
        (result,) = await relay.send_raw([fake_tx(1)])
        with pytest.raises(RelayTransportError, match="cannot sign the X-Flashbots-Signature"):
            await relay.call("eth_chainId", [])
    assert result.outcome == Outcome.TRANSPORT and "token removed" in result.message
    assert fake.seen == []


# --------------------------------------------------------------------------- links


async def test_a_link_with_a_source_address_binds_the_connection(fake):
    fake.methods["eth_chainId"] = lambda params: "0x7a69"
    link = LinkConfig(name="lo2", source_address="127.0.0.2")
    async with EvmRelay(config(fake.url, link="lo2"), link) as relay:
        await relay.call("eth_chainId", [])
    async with EvmRelay(config(fake.url)) as relay:
        await relay.call("eth_chainId", [])
    assert [s.peer for s in fake.seen] == ["127.0.0.2", "127.0.0.1"]


async def test_a_link_with_a_proxy_sends_through_it(fake, proxy):
    fake.methods["eth_chainId"] = lambda params: "0x7a69"
    link = LinkConfig(name="via-proxy", proxy=proxy.url)
    async with EvmRelay(config(fake.url, link="via-proxy"), link) as relay:
        assert await relay.call("eth_chainId", []) == "0x7a69"
    assert proxy.forwarded == [fake.url]
    assert len(fake.seen) == 1


async def test_the_environment_proxy_is_ignored(fake, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}"
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    fake.methods["eth_chainId"] = lambda params: "0x7a69"
    async with EvmRelay(config(fake.url)) as relay:
        assert await relay.call("eth_chainId", []) == "0x7a69"


def test_a_relay_must_get_its_configured_link():
    with pytest.raises(ConfigError, match="configured on link 'lo2' but was given link None"):
        EvmRelay(config("http://127.0.0.1:1/", link="lo2"))
    with pytest.raises(ConfigError, match="given link 'other'"):
        EvmRelay(config("http://127.0.0.1:1/", link="lo2"), LinkConfig(name="other"))
    with pytest.raises(ConfigError, match="http"):
        EvmRelay(config("ftp://127.0.0.1:1/"))


# --------------------------------------------------------------------------- typed reads


async def test_reads_refuse_results_of_the_wrong_shape(fake):
    asked = "0x" + "ab" * 32
    good = {"transactionHash": asked, "blockHash": "0x" + "cd" * 32, "status": "0x1"}
    async with EvmRelay(config(fake.url)) as relay:
        for bad in ["12", "0x", "0x1 ", "0xg", 12, None, "0x" + "f" * 65]:
            fake.methods["eth_blockNumber"] = lambda params, bad=bad: bad
            with pytest.raises(RelayTransportError, match="eth_blockNumber: the result is"):
                await relay.block_number()
        fake.methods["eth_getTransactionReceipt"] = lambda params: good | {"blockNumber": "0x5"}
        assert await relay.receipts([asked]) == {
            asked: Receipt(tx_hash=asked, block_number=5, block_hash="0x" + "cd" * 32, status=1)
        }
        other = good | {"blockNumber": "0x5", "transactionHash": "0x" + "ee" * 32}
        fake.methods["eth_getTransactionReceipt"] = lambda params: other
        with pytest.raises(RelayTransportError, match="got the receipt of 0xeeee"):
            await relay.receipts([asked])
        fake.methods["eth_getTransactionReceipt"] = lambda params: good
        with pytest.raises(RelayTransportError, match="blockNumber of"):
            await relay.receipts([asked])
        fake.methods["eth_getBlockByNumber"] = lambda params: {"number": "0x6", "hash": asked}
        with pytest.raises(RelayTransportError, match="asked for block 5, got block 6"):
            await relay.block_hash(5)


async def test_receipts_leave_out_hashes_whose_call_failed(fake):
    missing, failing = "0x" + "01" * 32, "0x" + "02" * 32

    def receipt(params: list[Any]) -> Any:
        if params[0] == failing:
            raise Fault(-32000, "transaction indexing is in progress")
        return None

    fake.methods["eth_getTransactionReceipt"] = receipt
    async with EvmRelay(config(fake.url)) as relay:
        assert await relay.receipts([missing, failing, missing]) == {missing: None}
        with pytest.raises(ValueError, match="not a 0x-prefixed tx hash"):
            await relay.receipts(["0x1234"])


# --------------------------------------------------------------------------- hygiene


def test_relays_import_neither_the_hsm_nor_the_queue():
    code = (
        "import sys, airlock.relays.jsonrpc, airlock.encoding.jsonlimit\n"
        "bad = [m for m in sys.modules if m.split('.')[0] == 'pkcs11'"
        " or m.startswith(('airlock.hsm', 'airlock.queue'))]\n"
        "print(bad)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert run.stdout.strip() == "[]"


# --------------------------------------------------------------------------- real anvil


def signed_transfers(anvil: Anvil, count: int, **overrides: Any) -> list[RawTx]:
    """``count`` type-2 transfers from the funded dev account, consecutive nonces."""
    account = Account.from_key(DEV_KEY)
    first = int(anvil.rpc("eth_getTransactionCount", [account.address, "pending"]), 16)
    txs = []
    for nonce in range(first, first + count):
        fields = {
            "type": 2,
            "chainId": 31337,
            "nonce": nonce,
            "to": DEAD,
            "value": 1,
            "gas": 21_000,
            "maxFeePerGas": 2 * 10**9,
            "maxPriorityFeePerGas": 10**9,
        }
        signed = account.sign_transaction(fields | overrides)
        txs.append(RawTx(bytes(signed.raw_transaction), "0x" + bytes(signed.hash).hex()))
    return txs


async def wait_for_receipts(relay: EvmRelay, hashes: list[str]) -> dict[str, Receipt | None]:
    deadline = time.monotonic() + WAIT_S
    while True:
        receipts = await relay.receipts(hashes)
        if all(receipts.get(h) is not None for h in hashes):
            return receipts
        assert time.monotonic() < deadline, f"no receipts within {WAIT_S} s: {receipts}"
        await asyncio.sleep(0.05)


@pytest.mark.anvil
async def test_anvil_probe(anvil):
    async with EvmRelay(config(anvil.url)) as relay:
        probe = await relay.probe()
        assert probe.chain_id == 31337 == relay.chain_id
        assert probe.block_number == await relay.block_number() >= 0


@pytest.mark.anvil
async def test_anvil_send_receipts_counts_known_and_resend(anvil):
    sender = Account.from_key(DEV_KEY).address
    txs = signed_transfers(anvil, 3)
    hashes = [tx.tx_hash for tx in txs]
    async with EvmRelay(config(anvil.url)) as relay:
        results = await relay.send_raw(txs)
        assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 3, results

        receipts = await wait_for_receipts(relay, hashes)
        for tx_hash in hashes:
            receipt = receipts[tx_hash]
            assert receipt is not None and receipt.tx_hash == tx_hash and receipt.status == 1
            assert await relay.block_hash(receipt.block_number) == receipt.block_hash
        unknown = "0x" + os.urandom(32).hex()
        assert (await relay.receipts([unknown])) == {unknown: None}

        counts = await relay.transaction_counts([sender], "latest")
        expected = int(anvil.rpc("eth_getTransactionCount", [sender, "latest"]), 16)
        assert counts == {sender: expected}
        assert expected >= 3

        assert await relay.known([*hashes, unknown]) == dict.fromkeys(hashes, True) | {
            unknown: False
        }

        again = await relay.send_raw(txs)  # mined already: anvil says "nonce too low"
        assert [r.outcome for r in again] == [Outcome.NONCE_USED] * 3, again
        assert all(not r.unknown for r in again)
    assert await asyncio.to_thread(anvil.rpc, "eth_chainId") == "0x7a69"


@pytest.mark.anvil
async def test_anvil_pooled_resend_and_rejections(anvil):
    anvil.rpc("evm_setAutomine", [False])
    try:
        (pooled,) = signed_transfers(anvil, 1)
        async with EvmRelay(config(anvil.url)) as relay:
            assert [r.outcome for r in await relay.send_raw([pooled])] == [Outcome.ACCEPTED]
            assert await relay.known([pooled.tx_hash]) == {pooled.tx_hash: True}
            assert await relay.receipts([pooled.tx_hash]) == {pooled.tx_hash: None}
            (again,) = await relay.send_raw([pooled])  # "transaction already imported"
            assert again.outcome == Outcome.ALREADY_KNOWN and not again.unknown
            (cheap,) = signed_transfers(anvil, 1, nonce=0xFFFF, maxFeePerGas=1)
            (wrong_chain,) = signed_transfers(anvil, 1, nonce=0xFFFF, chainId=1)
            results = await relay.send_raw([cheap, wrong_chain])
            assert [r.outcome for r in results] == [Outcome.UNDERPRICED, Outcome.INVALID]
    finally:
        anvil.rpc("evm_mine")
        anvil.rpc("evm_setAutomine", [True])
