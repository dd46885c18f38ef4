"""The fault proxy against real upstreams: an aiohttp JSON-RPC echo server, and anvil.

Every fault is checked from the client's side of a real socket, because what the
broadcaster must survive is what arrives on the wire, not what a mock says happened.
"""

from __future__ import annotations

import asyncio
import gc
import http.client
import json
import selectors
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from eth_account import Account
from tests.kits.jsonrpc import call, post
from tests.kits.waiting import wait_until

from airlock.sim.anvil import start_anvil
from airlock.sim.faultproxy import FaultProxy, Mode
from airlock.sim.loopthread import STOP_TIMEOUT

SENDER = Account.from_key("0x" + "11" * 32)
RECIPIENT = Account.from_key("0x" + "22" * 32).address


class EchoServer:
    """A JSON-RPC upstream on its own loop thread: answers each call with its method and
    params, and counts requests so a test can tell the upstream really processed one."""

    def __init__(self) -> None:
        self.count = 0
        self.headers: list[dict[str, str]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._listener: asyncio.Server | None = None

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        payload = json.loads(await request.read())
        self.count += 1
        self.headers.append(dict(request.headers))
        calls = payload if isinstance(payload, list) else [payload]
        replies = [
            {"jsonrpc": "2.0", "id": c["id"], "result": [c["method"], c["params"]]} for c in calls
        ]
        return web.json_response(replies if isinstance(payload, list) else replies[0])

    async def _listen(self) -> asyncio.Server:
        server = web.Server(self._handle, access_log=None)
        return await asyncio.get_running_loop().create_server(server, "127.0.0.1", 0)

    def start(self) -> EchoServer:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self._listener = future.result(5)
        return self

    @property
    def url(self) -> str:
        assert self._listener is not None
        return f"http://127.0.0.1:{self._listener.sockets[0].getsockname()[1]}"

    def stop(self) -> None:
        assert self._listener is not None
        self._loop.call_soon_threadsafe(self._listener.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoServer]:
    server = EchoServer().start()
    yield server
    server.stop()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[FaultProxy]:
    with FaultProxy(echo.url) as running:
        yield running


def signed_transfer(nonce: int = 0) -> Any:
    tx = {
        "type": 2,
        "chainId": 31337,
        "nonce": nonce,
        "to": RECIPIENT,
        "value": 1,
        "gas": 21000,
        "maxFeePerGas": 10 * 10**9,
        "maxPriorityFeePerGas": 10**9,
    }
    return SENDER.sign_transaction(tx)


def test_pass_forwards_body_status_and_headers(proxy: FaultProxy, echo: EchoServer) -> None:
    status, body = post(proxy.url, call("eth_blockNumber", [1]), **{"X-Flashbots-Signature": "s"})
    assert status == 200
    assert json.loads(body) == {"jsonrpc": "2.0", "id": 1, "result": ["eth_blockNumber", [1]]}
    assert echo.headers[-1]["X-Flashbots-Signature"] == "s"
    assert proxy.url == f"http://127.0.0.1:{proxy.port}"
    assert proxy.stats() == {"pass": 1}


def test_down_refuses_fast_then_comes_back_on_the_same_port(proxy: FaultProxy) -> None:
    port = proxy.port
    proxy.set_mode(Mode.DOWN)
    # Fast by kind, not by the clock: a refusal is ConnectionRefusedError (an RST answered
    # at once); a port that let the attempt hang would end in TimeoutError instead.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=10)
    with pytest.raises(urllib.error.URLError) as refused:
        post(proxy.url, call("eth_chainId"))
    assert isinstance(refused.value.reason, ConnectionRefusedError)
    proxy.set_mode("pass")
    assert proxy.port == port
    assert post(proxy.url, call("eth_chainId"))[0] == 200
    assert proxy.methods() == ["eth_chainId"]  # the refused attempts never reached it


def test_down_closes_connections_already_open(proxy: FaultProxy) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    connection.request("POST", "/", json.dumps(call("eth_chainId")))
    assert connection.getresponse().read()
    proxy.set_mode("down")
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        connection.request("POST", "/", json.dumps(call("eth_chainId")))
        connection.getresponse()
    connection.close()


def test_hang_times_out_the_client_until_a_mode_change_resets_it(proxy: FaultProxy) -> None:
    proxy.set_mode("hang")
    with pytest.raises(TimeoutError):
        post(proxy.url, call("eth_chainId"), timeout=0.3)
    with ThreadPoolExecutor(1) as pool:
        # Its own timeout far beyond the waits below: the reset, not a timeout, must end it.
        waiting = pool.submit(post, proxy.url, call("eth_gasPrice"), 60.0)
        wait_until(lambda: "eth_gasPrice" in proxy.methods(), 20, "the held request")
        proxy.set_mode("pass")
        with pytest.raises(ConnectionError):
            waiting.result(timeout=20)
    assert [r.mode for r in proxy.requests()] == ["hang", "hang"]


def _closed_by_peer(client: socket.socket) -> bool:
    try:
        return client.recv(1) == b""
    except ConnectionResetError:
        return True


def _stop_while_hung(echo: EchoServer) -> None:
    proxy = FaultProxy(echo.url).start()
    proxy.set_mode("hang")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as client:
        client.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        wait_until(lambda: len(proxy.requests()) == 1, 20, "the request recorded")
        started = time.monotonic()
        proxy.stop()
        # Bounded means the hung handler is cancelled at once, not waited for: waiting for
        # it would sit out the stop's own bound on leftover tasks (STOP_TIMEOUT / 2 = 2.5 s)
        # or fail; a prompt stop takes milliseconds.
        assert time.monotonic() - started < STOP_TIMEOUT / 2
        assert not proxy.running
        assert _closed_by_peer(client)


def test_stop_with_a_request_hung_is_bounded_and_leaves_nothing(echo: EchoServer) -> None:
    gc.collect()  # earlier tests' garbage must not be blamed on this one
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _stop_while_hung(echo)
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_slow_answers_after_the_delay(proxy: FaultProxy) -> None:
    proxy.set_mode("slow", delay_ms=200)
    started = time.monotonic()
    status, body = post(proxy.url, call("eth_chainId"))
    assert time.monotonic() - started >= 0.2
    assert (status, json.loads(body)["result"]) == (200, ["eth_chainId", []])


@pytest.mark.parametrize(("params", "status"), [({}, 502), ({"status": 429}, 429)])
def test_error_answers_the_status_without_forwarding(
    proxy: FaultProxy, echo: EchoServer, params: dict[str, int], status: int
) -> None:
    before = echo.count
    proxy.set_mode("error", **params)
    answered, body = post(proxy.url, call("eth_chainId"))
    assert answered == status
    assert b"faultproxy" in body
    assert echo.count == before


GARBAGE_CHECKS: dict[str, Callable[[bytes], bool]] = {
    "html": lambda body: body.startswith(b"<html>") and b"502" in body,
    "truncated": lambda body: body.startswith(b'{"jsonrpc": "2.0", "id": 7') and not _json(body),
    "wrong_id": lambda body: [r["id"] for r in json.loads(body)] == [8, 9],
    "not_jsonrpc": lambda body: json.loads(body) == {"hello": 1},
    "huge": lambda body: len(body) == 1 << 20 and json.loads(body) == "a" * ((1 << 20) - 2),
    # never json.loads this here: eth_account raised the recursion limit, so it would SIGSEGV
    "deep": lambda body: body == b"[" * 100_000 + b"]" * 100_000,
    "empty": lambda body: body == b"",
}


def _json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("kind", sorted(GARBAGE_CHECKS))
def test_garbage_kinds(proxy: FaultProxy, echo: EchoServer, kind: str) -> None:
    before = echo.count
    proxy.set_mode("garbage", kind=kind, size=1 << 20)
    payload = [call("eth_chainId", request_id=7), call("eth_gasPrice", request_id=2)]
    status, body = post(proxy.url, payload if kind == "wrong_id" else payload[0])
    assert status == 200
    assert GARBAGE_CHECKS[kind](body)
    assert echo.count == before


def test_garbage_huge_defaults_to_16_mib(proxy: FaultProxy) -> None:
    proxy.set_mode("garbage", kind="huge")
    assert len(post(proxy.url, call("eth_chainId"))[1]) == 16 * 1024 * 1024


def test_lose_response_reaches_the_upstream_but_not_the_client(
    proxy: FaultProxy, echo: EchoServer
) -> None:
    before = echo.count
    proxy.set_mode("lose_response")
    with pytest.raises(ConnectionError):
        post(proxy.url, call("eth_sendRawTransaction", ["0x00"]))
    wait_until(lambda: echo.count == before + 1, 20, "the upstream call")
    assert proxy.stats() == {"lose_response": 1}


def _flaky_modes(echo: EchoServer, seed: int) -> list[str]:
    faults = [("error", {"status": 503}), ("garbage", {"kind": "empty"})]
    with FaultProxy(echo.url, seed=seed) as proxy:
        proxy.set_mode("flaky", p=0.5, faults=faults)
        for n in range(24):
            post(proxy.url, call("eth_chainId", request_id=n))
        return [r.mode.value for r in proxy.requests()]


def test_flaky_is_reproducible_from_its_seed(echo: EchoServer) -> None:
    first = _flaky_modes(echo, seed=7)
    assert first == _flaky_modes(echo, seed=7)
    assert first != _flaky_modes(echo, seed=8)
    assert set(first) == {"pass", "error", "garbage"}


def test_recording_methods_raw_transactions_and_hashes(proxy: FaultProxy) -> None:
    public, private = signed_transfer(0), signed_transfer(1)
    public_hex = "0x" + bytes(public.raw_transaction).hex()
    private_hex = "0x" + bytes(private.raw_transaction).hex()
    post(proxy.url, call("eth_sendRawTransaction", [public_hex]))
    batch = [call("eth_chainId"), call("eth_sendPrivateTransaction", [{"tx": private_hex}], 2)]
    post(proxy.url, batch, **{"X-Flashbots-Signature": "0xab:0xcd"})
    post(proxy.url, b"<not json>")
    assert proxy.methods() == [
        "eth_sendRawTransaction",
        "eth_chainId",
        "eth_sendPrivateTransaction",
    ]
    assert proxy.sent_raw_transactions() == [public_hex, private_hex]
    assert proxy.sent_tx_hashes() == {"0x" + bytes(tx.hash).hex() for tx in (public, private)}
    first, second, third = proxy.requests()
    assert (first.batch, second.batch, third.methods, third.body) == (
        False,
        True,
        (),
        b"<not json>",
    )
    assert second.headers == {"X-Flashbots-Signature": "0xab:0xcd"}
    assert first.path == "/" and first.time <= second.time <= third.time
    proxy.clear()
    assert proxy.requests() == [] and proxy.stats() == {"pass": 3}


def test_a_deep_request_body_is_recorded_without_crashing_the_proxy(proxy: FaultProxy) -> None:
    proxy.set_mode("error")
    assert post(proxy.url, b"[" * 100_000 + b"]" * 100_000)[0] == 502
    assert proxy.requests()[0].methods == ()


@pytest.mark.parametrize(
    ("mode", "params"),
    [
        ("sideways", {}),
        ("slow", {"delay": 5}),
        ("garbage", {}),
        ("garbage", {"kind": "xml"}),
        ("error", {"status": 99}),
        ("flaky", {"p": 0.5, "faults": [("down", {})]}),
        ("flaky", {"p": 2, "faults": [("hang", {})]}),
    ],
)
def test_bad_modes_are_refused_where_they_are_set(
    proxy: FaultProxy, mode: str, params: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):
        proxy.set_mode(mode, **params)
    assert proxy.mode is Mode.PASS


async def test_asyncio_client_in_the_main_thread(proxy: FaultProxy) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.url, json=call("eth_chainId")) as reply:
            assert (await reply.json())["result"] == ["eth_chainId", []]
        proxy.set_mode("error", status=503)
        async with session.post(proxy.url, json=call("eth_chainId")) as reply:
            assert reply.status == 503


def _read_line(process: subprocess.Popen[bytes], timeout: float = 60.0) -> str:
    """One stdout line within ``timeout``; stdout is unbuffered so select sees every byte."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        assert selector.select(timeout), "no output from the faultproxy CLI in time"
    return process.stdout.readline().decode().strip()


def test_cli_runs_in_the_foreground_with_a_control_port(echo: EchoServer) -> None:
    args = ["--upstream", echo.url, "--control-port", "0", "--seed", "3"]
    process = subprocess.Popen(
        [sys.executable, "-m", "airlock.sim.faultproxy", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    try:
        url, control = _read_line(process), _read_line(process)
        assert post(url, call("eth_chainId"))[0] == 200
        assert post(control + "/__faultproxy/mode", {"mode": "down"})[0] == 200
        with pytest.raises(urllib.error.URLError):
            post(url, call("eth_chainId"))
        assert post(control + "/__faultproxy/mode", {"mode": "error"})[0] == 200
        assert post(url, call("eth_gasPrice"))[0] == 502
        assert post(control + "/__faultproxy/mode", {"mode": "nope"})[0] == 400
        with urllib.request.urlopen(control + "/__faultproxy/requests", timeout=10) as response:
            seen = json.loads(response.read())
        assert seen["methods"] == ["eth_chainId", "eth_gasPrice"]
        assert seen["stats"] == {"pass": 1, "error": 1}
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr.decode()
    assert b"Unclosed" not in stderr


def test_control_path_on_the_proxy_port_is_never_faulted(proxy: FaultProxy) -> None:
    proxy.set_mode("error")
    assert post(proxy.url + "/__faultproxy/mode", {"mode": "down"})[0] == 200
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    proxy.set_mode("pass")
    assert proxy.requests() == []


@pytest.mark.anvil
def test_anvil_through_the_proxy() -> None:
    """A real node: reads pass through, and a lost response still lands the transaction."""
    with start_anvil() as node, FaultProxy(node.url) as proxy:
        status, body = post(proxy.url, call("eth_chainId"))
        assert (status, json.loads(body)["result"]) == (200, "0x7a69")
        node.rpc("anvil_setBalance", [SENDER.address, hex(10**18)])
        signed = signed_transfer(0)
        proxy.set_mode("lose_response")
        raw = "0x" + bytes(signed.raw_transaction).hex()
        with pytest.raises(ConnectionError):
            post(proxy.url, call("eth_sendRawTransaction", [raw]))
        tx_hash = "0x" + bytes(signed.hash).hex()
        assert proxy.sent_tx_hashes() == {tx_hash}
        assert node.wait_for_receipt(tx_hash, timeout=30)["status"] == "0x1"


def test_lie_answers_sends_with_another_hash_and_forwards_the_rest(
    proxy: FaultProxy, echo: EchoServer
) -> None:
    signed = signed_transfer(0)
    raw = "0x" + bytes(signed.raw_transaction).hex()
    true_hash = "0x" + bytes(signed.hash).hex()
    proxy.set_mode("lie")
    before = echo.count
    status, body = post(proxy.url, call("eth_sendRawTransaction", [raw], request_id=7))
    reply = json.loads(body)
    assert status == 200 and reply["id"] == 7 and set(reply) == {"jsonrpc", "id", "result"}
    fake = reply["result"]
    assert len(fake) == 66 and int(fake, 16) >= 0 and fake != true_hash
    assert echo.count == before, "a lie is never forwarded"
    batch = [call("eth_chainId", request_id=1), call("eth_sendRawTransaction", [raw], 2)]
    status, body = post(proxy.url, batch)
    first, second = json.loads(body)
    assert first == {"jsonrpc": "2.0", "id": 1, "result": ["eth_chainId", []]}
    assert second["id"] == 2 and second["result"] not in (true_hash, fake)
    assert echo.count == before + 1 and echo.headers  # only the read went upstream
    status, body = post(proxy.url, call("eth_blockNumber"))
    assert json.loads(body)["result"] == ["eth_blockNumber", []]
    assert proxy.sent_tx_hashes() == {true_hash}  # recorded: it reached the relay
    assert proxy.stats() == {"lie": 3}


@pytest.mark.anvil
def test_lie_in_front_of_anvil_lands_nothing() -> None:
    with start_anvil() as node, FaultProxy(node.url, seed=3) as proxy:
        node.rpc("anvil_setBalance", [SENDER.address, hex(10**18)])
        signed = signed_transfer(0)
        proxy.set_mode("lie")
        raw = "0x" + bytes(signed.raw_transaction).hex()
        _, body = post(proxy.url, call("eth_sendRawTransaction", [raw]))
        assert json.loads(body)["result"] != "0x" + bytes(signed.hash).hex()
        assert node.rpc("eth_getTransactionCount", [SENDER.address, "latest"]) == "0x0"
        assert node.rpc("eth_getTransactionReceipt", ["0x" + bytes(signed.hash).hex()]) is None


def test_a_websocket_crosses_the_proxy_and_is_cut_with_the_link():
    """A venue's stream takes the same link as its REST calls: relayed both ways while the
    proxy passes, closed when the link goes down, refused while it is down."""
    from airlock.sim.bybit import BybitSim

    async def session(url: str) -> tuple[str, bool]:
        async with (
            aiohttp.ClientSession() as client,
            client.ws_connect(url + "/v5/private") as ws,
        ):
            await ws.send_str(json.dumps({"op": "ping", "req_id": "p1"}))
            pong = await ws.receive(timeout=5)
            proxy.set_mode("down")
            closed = await ws.receive(timeout=5)
        return pong.data, closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                          aiohttp.WSMsgType.ERROR)  # fmt: skip

    with BybitSim("k", secret=b"s" * 32) as sim, FaultProxy(sim.url) as proxy:
        pong, closed = asyncio.run(session(proxy.url.replace("http", "ws", 1)))
        assert json.loads(pong)["op"] == "pong" and json.loads(pong)["req_id"] == "p1"
        assert closed, "the stream went down with the link"

        async def refused() -> None:
            async with aiohttp.ClientSession() as client:
                await client.ws_connect(proxy.url.replace("http", "ws", 1) + "/v5/private")

        with pytest.raises(aiohttp.ClientError):
            asyncio.run(refused())
