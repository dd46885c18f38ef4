"""The blocking JSON-RPC client against a real loopback HTTP server that misbehaves."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from airlock.relays import rpc


class Replies:
    """What the server answers next: a function of the request's JSON-RPC id."""

    body = staticmethod(lambda request_id: b"")
    status = 200


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body = Replies.body(request["id"])
        self.send_response(Replies.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def answer(body, status: int = 200) -> None:
    Replies.body = staticmethod(body)
    Replies.status = status


def test_result_is_returned(url):
    answer(lambda i: json.dumps({"jsonrpc": "2.0", "id": i, "result": "0x7a69"}).encode())
    assert rpc.quantity(rpc.call(url, "eth_chainId", []), "eth_chainId") == 31337


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (lambda i: b"<html>bad gateway</html>", 200, "not JSON"),
        (lambda i: b"", 502, "HTTP 502"),
        (lambda i: json.dumps({"id": i + 1, "result": "0x1"}).encode(), 200, "malformed"),
        (lambda i: json.dumps([{"id": i, "result": "0x1"}]).encode(), 200, "malformed"),
        (lambda i: json.dumps({"id": i}).encode(), 200, "neither result nor error"),
        (
            lambda i: json.dumps({"id": i, "error": {"code": -32000, "message": "boom"}}).encode(),
            200,
            "failed: boom",
        ),
        (lambda i: b" " * (rpc.MAX_RESPONSE_BYTES + 10), 200, "larger than"),
        # eth_account raises the recursion limit: plain json.loads would crash the process.
        (lambda i: b"[" * 100_000 + b"]" * 100_000, 200, "nested deeper"),
    ],
)
def test_garbage_is_a_clear_error(url, body, status, message):
    answer(body, status)
    with pytest.raises(rpc.RpcError, match=message):
        rpc.call(url, "eth_chainId", [])


@pytest.mark.parametrize("value", ["7", 7, None, "0xzz", "0x" + "f" * 80])
def test_quantity_refuses_non_hex(value):
    with pytest.raises(rpc.RpcError, match="hex quantity"):
        rpc.quantity(value, "eth_getTransactionCount")
