"""Fuzz: what EVM relays answer. The body parser, the JSON-RPC reply checks (pure and over
a real loopback HTTP exchange), the blocking CLI helper, and the node-error classifier.

Contract: a result, or the module's own error (ValueError from loads_limited,
RelayTransportError / RelayRpcError from the relay client, RpcError from rpc.call); never
another exception, never RecursionError, never a hang.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from tests.kits.fuzz import fuzz, no_hang

from airlock.config import RelayConfig
from airlock.encoding.jsonlimit import loads_limited
from airlock.relays import rpc
from airlock.relays.classify import classify_error, classify_send_result, transport
from airlock.relays.jsonrpc import (
    EvmRelay,
    RelayRpcError,
    RelayTransportError,
    Reply,
    _batch_replies,
    _Garbage,
    _single_reply,
)
from airlock.relays.outcomes import Classified
from airlock.sim.loopthread import LoopThread

HASH = "0x" + "ab" * 32

# ----------------------------------------------------------------------------- strategies

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(10**4000), 10**4000),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["0x", "0x0", "0x1", "0x" + "f" * 64, "0x" + "f" * 65, HASH, "2.0", "1.0"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
ids = st.one_of(
    st.integers(-1, 5),
    st.sampled_from([None, True, False, 1.0, "1", [1], {"id": 1}, 10**30]),
)


@st.composite
def reply_objects(draw: st.DrawFn) -> Any:
    """A JSON-RPC reply right or wrong: ids, versions, result/error present or not."""
    reply: dict[str, Any] = {}
    if draw(st.integers(0, 5)):
        reply["jsonrpc"] = draw(st.sampled_from(["2.0", "2.0", "1.0", 2.0, None]))
    if draw(st.integers(0, 5)):
        reply["id"] = draw(ids)
    shape = draw(st.integers(0, 4))
    if shape in (0, 2):
        reply["result"] = draw(json_values | st.just(HASH))
    if shape in (1, 2):
        reply["error"] = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "code": st.integers() | json_scalars,
                    "message": st.text(max_size=40) | json_scalars,
                    "data": json_values,
                },
            )
            | json_scalars
        )
    if shape == 4:
        return draw(json_values)
    return reply


answers = st.one_of(
    reply_objects(),
    st.lists(reply_objects(), max_size=5),
    json_values,
)


def nested(depth: int, opening: str = "[", closing: str = "]") -> bytes:
    return (opening * depth + "1" + closing * depth).encode()


NASTY_BODIES = [
    b"",
    b"\xff\xfe",
    b"\xef\xbb\xbf{}",  # a UTF-8 byte order mark
    b"NaN",
    b"[Infinity]",
    b"[1e999]",
    b"[" + b"1" * 5000 + b"]",  # past the int <-> str digit limit
    b'"\\ud800"',  # a lone surrogate escape
    b'{"a": 1, "a": 2}',
    nested(64),
    nested(65),
    nested(200_000),  # C-recursion depth: refused unparsed, never parsed
    nested(100_000, '{"a":', "}"),
    b"[" * 200_000,
    b"]" * 10,
    b'"' * 7,
    b'["\\\\\\"]',
    b"\\" * 100,
]


def bodies() -> st.SearchStrategy[bytes]:
    """Response bodies: JSON answers, nasty samples, random bytes and their mixtures."""
    as_json = answers.map(lambda a: json.dumps(a).encode())
    return st.one_of(
        as_json,
        as_json,
        st.sampled_from(NASTY_BODIES),
        st.binary(max_size=200),
        st.lists(st.sampled_from(list(b'[]{}",:\\01 ntrue')), max_size=60).map(bytes),
        st.tuples(as_json, st.integers(0, 200), st.binary(max_size=3)).map(
            lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :]
        ),
    )


# ----------------------------------------------------------------------------- body parser


@fuzz(600)
@given(body=bodies(), depth=st.integers(1, 80))
def test_loads_limited_value_or_value_error(body, depth):
    with no_hang():
        try:
            loads_limited(body, max_depth=depth)
        except ValueError as exc:
            assert str(exc)


# ----------------------------------------------------------------------------- reply checks


@fuzz(600)
@given(answer=answers, request_id=st.integers(1, 3))
def test_single_reply_or_garbage(answer, request_id):
    with no_hang():
        try:
            reply = _single_reply(answer, request_id)
        except _Garbage as exc:
            assert str(exc)
            return
    assert isinstance(reply, Reply)


@fuzz(600)
@given(answer=answers, count=st.integers(1, 4))
def test_batch_replies_or_garbage(answer, count):
    wanted = list(range(1, count + 1))
    with no_hang():
        try:
            replies = _batch_replies(answer, wanted)
        except _Garbage as exc:
            assert str(exc)
            return
    assert len(replies) == count and all(isinstance(r, Reply) for r in replies)


# ----------------------------------------------------------------------------- over HTTP


class BodyServer(LoopThread):
    """A loopback HTTP server whose answer the test sets: ``answer(request_body)`` gives
    the status and the bytes sent back."""

    thread_name = "airlock-fuzz-relay"

    def __init__(self) -> None:
        super().__init__()
        self.answer: Callable[[bytes], tuple[int, bytes]] = lambda _: (200, b"{}")
        self._listener: asyncio.Server | None = None

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        status, body = self.answer(await request.read())
        return web.Response(status=status, body=body, content_type="application/json")

    async def _astart(self) -> None:
        self._listener = await self._open_listener(self._handle)

    async def _astop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        await self._cancel_the_rest()


@pytest.fixture(scope="module")
def server() -> Iterator[BodyServer]:
    with BodyServer() as running:
        yield running


def echo_ids(answer: Any, request: bytes) -> Any:
    """Put the request's real ids where the answer says ``"$id"`` (so that some fuzzed
    answers get past the id check and exercise the result checks behind it)."""
    try:
        sent = json.loads(request)
    except ValueError:
        return answer
    real = [c["id"] for c in sent] if isinstance(sent, list) else [sent["id"]]

    def swap(value: Any, index: int) -> Any:
        if value == "$id":
            return real[index % len(real)]
        if isinstance(value, dict):
            return {k: swap(v, index) for k, v in value.items()}
        return value

    if isinstance(answer, list):
        return [swap(v, i) for i, v in enumerate(answer)]
    return swap(answer, 0)


results = json_values | st.sampled_from(
    [
        HASH,
        "0x1",
        {"transactionHash": HASH, "blockNumber": "0x1", "blockHash": HASH, "status": "0x1"},
        {"transactionHash": HASH, "blockNumber": 1, "blockHash": HASH, "status": "0x1"},
        {"hash": HASH},
        {"number": "0x5", "hash": HASH},
        {"number": "0x6", "hash": HASH},
    ]
)
echoed_reply = st.fixed_dictionaries(
    {"jsonrpc": st.just("2.0"), "id": st.just("$id") | ids},
    optional={"result": results, "error": st.just({"code": -32000, "message": "x"}) | json_values},
)
http_answers = st.one_of(
    bodies().map(lambda b: (None, b)),
    st.lists(echoed_reply, max_size=4).map(lambda a: (a, b"")),
    echoed_reply.map(lambda a: (a, b"")),
)

READS: dict[str, Callable[[EvmRelay], Any]] = {
    "call": lambda relay: relay.call("eth_blockNumber", []),
    "block_number": lambda relay: relay.block_number(),
    "probe": lambda relay: relay.probe(),
    "receipts": lambda relay: relay.receipts([HASH]),
    "receipts of two": lambda relay: relay.receipts([HASH, "0x" + "cd" * 32]),
    "known": lambda relay: relay.known([HASH]),
    "transaction_counts": lambda relay: relay.transaction_counts(["0x" + "11" * 20]),
    "block_hash": lambda relay: relay.block_hash(5),
}


async def read_once(url: str, read: Callable[[EvmRelay], Any]) -> Any:
    config = RelayConfig(name="fuzz", kind="evm-rpc", url=url, chain_id=1, timeout_seconds=5.0)
    async with EvmRelay(config) as relay:
        return await read(relay)


@fuzz(150, deadline_ms=None)
@given(
    answer=http_answers,
    status=st.sampled_from([200, 200, 200, 204, 301, 404, 500, 503]),
    read=st.sampled_from(sorted(READS)),
)
def test_relay_reads_over_http_result_or_relay_error(server, answer, status, read):
    template, raw = answer
    server.answer = lambda request: (
        status,
        raw if template is None else json.dumps(echo_ids(template, request)).encode(),
    )
    with no_hang():
        try:
            asyncio.run(read_once(server.url, READS[read]))
        except (RelayTransportError, RelayRpcError) as exc:
            assert str(exc)


@fuzz(100, deadline_ms=None)
@given(answer=http_answers, status=st.sampled_from([200, 200, 200, 404, 500]))
def test_relay_send_raw_over_http_never_raises(server, answer, status):
    template, raw = answer
    server.answer = lambda request: (
        status,
        raw if template is None else json.dumps(echo_ids(template, request)).encode(),
    )

    async def send() -> list[Classified]:
        config = RelayConfig(name="fuzz", kind="evm-rpc", url=server.url, chain_id=1)
        async with EvmRelay(config) as relay:
            from airlock.relays.jsonrpc import RawTx

            return await relay.send_raw([RawTx.of(b"\x01"), RawTx.of(b"\x02")])

    with no_hang():
        outcomes = asyncio.run(send())
    assert len(outcomes) == 2 and all(isinstance(o, Classified) for o in outcomes)


@fuzz(150, deadline_ms=None)
@given(answer=http_answers, status=st.sampled_from([200, 200, 200, 500]))
def test_blocking_rpc_call_result_or_rpc_error(server, answer, status):
    template, raw = answer
    server.answer = lambda request: (
        status,
        raw if template is None else json.dumps(echo_ids(template, request)).encode(),
    )
    with no_hang():
        try:
            rpc.call(server.url, "eth_chainId", [], timeout=5.0)
        except rpc.RpcError as exc:
            assert str(exc)


@fuzz(300)
@given(value=json_values)
def test_rpc_quantity_int_or_rpc_error(value):
    try:
        assert isinstance(rpc.quantity(value, "x"), int)
    except rpc.RpcError as exc:
        assert str(exc)


# ----------------------------------------------------------------------------- classifier


@fuzz(500)
@given(
    message=st.text() | st.text(min_size=600, max_size=700) | json_values,
    code=st.none() | st.integers() | st.integers(-(10**4000), 10**4000),
)
def test_classify_error_always_classifies(message, code):
    with no_hang():
        classified = classify_error(message, code)
    assert isinstance(classified, Classified)
    assert classified.message


@fuzz(300)
@given(result=json_values | st.just(HASH) | st.just(HASH.upper()), expected=st.just(HASH))
def test_classify_send_result_always_classifies(result, expected):
    assert isinstance(classify_send_result(result, expected), Classified)


@fuzz(200)
@given(reason=st.text() | st.text(min_size=600, max_size=700))
def test_transport_always_classifies(reason):
    assert isinstance(transport(reason), Classified)
