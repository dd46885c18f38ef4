"""The one HTTP layer under the relay clients: its test seam, its size limit, its timeouts
and the error tree the clients raise from."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airlock.config import RelayConfig
from airlock.errors import AirlockError
from airlock.relays import errors, rpc
from airlock.relays.bybit import BybitClient
from airlock.relays.errors import (
    BodyTooLarge,
    BybitApiError,
    BybitAuthError,
    BybitError,
    BybitTransportError,
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    ReadTimeout,
    RejectedError,
    RelayError,
    RelayRpcError,
    RelayTransportError,
    RpcError,
    TransportError,
)
from airlock.relays.http import BoundedBody, Request, Response, Timeouts
from airlock.relays.jsonrpc import EvmRelay


class FakeTransport:
    """The seam: answers every request with ``answer(request)``, records what was sent."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.sent: list[Request] = []
        self.opened = 0
        self.closed = 0

    async def start(self) -> None:
        self.opened += 1

    async def close(self) -> None:
        self.closed += 1

    async def send(self, request: Request) -> Response:
        self.sent.append(request)
        return self.answer(request)


class BlockingFake:
    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def send(self, request: Request) -> Response:
        return self.answer(request)


def echo_result(result: Any) -> Any:
    def answer(request: Request) -> Response:
        assert request.body is not None
        call = json.loads(request.body)
        return Response(
            200, json.dumps({"jsonrpc": "2.0", "id": call["id"], "result": result}).encode()
        )

    return answer


def sign(payload: bytes) -> str:
    return "sig"


def raising(exc: Exception) -> Any:
    def answer(request: Request) -> Response:
        raise exc

    return answer


def relay_config() -> RelayConfig:
    return RelayConfig(name="fake", kind="evm-rpc", url="http://relay.invalid/", chain_id=1)


async def test_a_relay_speaks_through_the_transport_it_is_given():
    fake = FakeTransport(echo_result("0x2a"))
    async with EvmRelay(relay_config(), transport=fake) as relay:
        assert await relay.block_number() == 42
    assert (fake.opened, fake.closed) == (1, 1)
    (request,) = fake.sent
    assert request.method == "POST" and request.url == "http://relay.invalid/"
    assert request.max_bytes == 8 << 20


async def test_the_client_enforces_its_limit_whatever_the_transport_returns():
    fake = FakeTransport(lambda request: Response(200, b" " * 2048))
    async with EvmRelay(relay_config(), transport=fake, max_response_bytes=1024) as relay:
        with pytest.raises(RelayTransportError, match="over the 1024-byte limit"):
            await relay.call("eth_chainId", [])


async def test_layer_failures_are_worded_by_each_client():
    def refuse(request: Request) -> Response:
        raise ConnectError("Cannot connect to host", "[Errno 111] refused")

    async with EvmRelay(relay_config(), transport=FakeTransport(refuse)) as relay:
        with pytest.raises(RelayTransportError, match=r"request to .* failed: Cannot connect"):
            await relay.call("eth_chainId", [])
    fake = FakeTransport(refuse)
    async with BybitClient("https://bybit.invalid", "key", sign, "hmac", transport=fake) as client:
        with pytest.raises(BybitTransportError, match=r"cannot connect: \[Errno 111\]"):
            await client.sync_time(retry=False)


async def test_a_bybit_client_signs_the_exact_url_through_the_seam():
    answer = {"retCode": 0, "retMsg": "OK", "result": {"timeSecond": "1700000000"}}
    fake = FakeTransport(lambda request: Response(200, json.dumps(answer).encode()))
    async with BybitClient("https://bybit.invalid", "key", sign, "hmac", transport=fake) as client:
        await client.sync_time(retry=False)
    (request,) = fake.sent
    assert request.exact_url and request.url == "https://bybit.invalid/v5/market/time"
    assert request.max_bytes == 4 << 20


def ask_node(answer: Any) -> Any:
    return rpc.call("http://node.invalid/", "eth_chainId", [], transport=BlockingFake(answer))


def test_the_blocking_helper_takes_the_same_seam():
    assert ask_node(echo_result("0x1")) == "0x1"
    with pytest.raises(RpcError, match="larger than"):
        ask_node(lambda request: Response(200, b" " * (rpc.MAX_RESPONSE_BYTES + 1)))
    with pytest.raises(RpcError, match="cannot reach the node for eth_chainId: reset"):
        ask_node(raising(ConnectionLost("reset")))
    with pytest.raises(RpcError, match="HTTP 503"):
        ask_node(lambda request: Response(503))


def test_a_bounded_body_refuses_an_announced_or_a_streamed_excess():
    with pytest.raises(BodyTooLarge, match="answer of 11 bytes is over the 10-byte limit"):
        BoundedBody(10, announced=11)
    body = BoundedBody(10)
    body.add(b"x" * 10)
    assert body.value() == b"x" * 10
    with pytest.raises(BodyTooLarge, match="stopped reading"):
        body.add(b"x")


def test_timeouts_default_the_connect_to_the_total_and_refuse_nonsense():
    assert Timeouts(5.0).connect == 5.0
    assert Timeouts(5.0, 1.0).connect == 1.0
    for bad in ((0,), (-1.0,), (5.0, 0.0)):
        with pytest.raises(ValueError, match="must be positive"):
            Timeouts(*bad)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ConnectError, TransportError),
        (ConnectTimeout, ConnectError),
        (ReadTimeout, TransportError),
        (ConnectionLost, TransportError),
        (BodyTooLarge, TransportError),
        (RelayTransportError, TransportError),
        (BybitTransportError, TransportError),
        (BybitTransportError, BybitError),
        (RelayRpcError, RejectedError),
        (BybitApiError, RejectedError),
        (BybitAuthError, RejectedError),
        (BybitAuthError, BybitError),
        (RpcError, RelayError),
        (TransportError, RelayError),
        (RejectedError, RelayError),
        (RelayError, AirlockError),
    ],
)
def test_every_relay_error_sits_in_one_tree(error: type, kind: type):
    assert issubclass(error, kind)
    assert error.__name__ in (errors.__doc__ or "")
