"""A small blocking JSON-RPC client for one-off operator commands (``nonce sync``).

The broadcaster's relays are asynchronous; this is for the CLI, where one request at a
time is what the operator asked for. Every call has a timeout, responses are size
limited and checked for shape, and every failure is a :class:`RpcError` naming the URL.

It stays blocking on the standard library (:class:`~airlock.relays.http.UrllibTransport`)
rather than wrapping the asynchronous client: a CLI command then loads no aiohttp and
starts no event loop for one call, and it works from code that already runs a loop. What
it shares with the asynchronous clients is the HTTP layer's vocabulary: the
:class:`~airlock.relays.http.Timeouts`, the size-limited read, the
:class:`~airlock.relays.http.Request` / :class:`~airlock.relays.http.Response` seam
(``transport=`` in a test) and the error tree (:class:`RpcError` is a
:class:`~airlock.relays.errors.RelayError`).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from airlock.encoding.jsonlimit import loads_limited
from airlock.relays.errors import BodyTooLarge, HttpError, RpcError
from airlock.relays.http import (
    BlockingTransport,
    Request,
    Response,
    Timeouts,
    UrllibTransport,
    within_limit,
)

__all__ = ["MAX_RESPONSE_BYTES", "RpcError", "call", "quantity"]

MAX_RESPONSE_BYTES = 1 << 20
"""1 MiB: the helper asks for one chain id or one nonce at a time (answers of a few dozen
bytes), so anything near this size is not an answer to the question."""
_ids = itertools.count(1)


def call(
    url: str,
    method: str,
    params: list[Any],
    timeout: float | Timeouts = 10.0,
    *,
    transport: BlockingTransport | None = None,
) -> Any:
    """``method(params)`` at ``url``; returns ``result`` or raises :class:`RpcError`.

    ``timeout`` is seconds (or a :class:`Timeouts`) for the default transport; a
    ``transport`` given instead brings its own.
    """
    if not url.startswith(("http://", "https://")):
        raise RpcError(f"RPC URL must start with http:// or https://, got {url!r}")
    request_id = next(_ids)
    body = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
    request = Request(
        "POST",
        url,
        MAX_RESPONSE_BYTES,
        body=body.encode(),
        headers={"Content-Type": "application/json"},
        error_preview_bytes=0,  # the status says it all
    )
    if transport is None:
        timeouts = timeout if isinstance(timeout, Timeouts) else Timeouts(timeout)
        transport = UrllibTransport(timeouts)
    response = _send(transport, request, method)
    if not response.ok:
        raise RpcError(f"{url}: {method} failed with HTTP {response.status}")
    return _result(url, method, response.body, request_id)


def _send(transport: BlockingTransport, request: Request, method: str) -> Response:
    try:
        return within_limit(transport.send(request), request.max_bytes)
    except BodyTooLarge:
        raise RpcError(
            f"{request.url}: {method} response is larger than {request.max_bytes} bytes"
        ) from None
    except HttpError as exc:
        raise RpcError(f"{request.url}: cannot reach the node for {method}: {exc.detail}") from None


def _result(url: str, method: str, raw: bytes, request_id: int) -> Any:
    """The ``result`` of one JSON-RPC reply to ``request_id``, or :class:`RpcError`."""
    try:
        reply = loads_limited(raw)
    except ValueError as exc:
        raise RpcError(f"{url}: {method} answered with something that is not JSON: {exc}") from None
    if not isinstance(reply, dict) or reply.get("id") != request_id:
        raise RpcError(f"{url}: {method} answered with a malformed JSON-RPC response")
    if "error" in reply:
        error = reply["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise RpcError(f"{url}: {method} failed: {message}")
    if "result" not in reply:
        raise RpcError(f"{url}: {method} answered with neither result nor error")
    return reply["result"]


def quantity(value: Any, what: str) -> int:
    """Parse a JSON-RPC hex quantity (``0x1a``), refusing anything else."""
    if not isinstance(value, str) or not value.startswith("0x") or len(value) > 66:
        raise RpcError(f"{what}: expected a hex quantity, got {value!r}")
    try:
        return int(value, 16)
    except ValueError:
        raise RpcError(f"{what}: expected a hex quantity, got {value!r}") from None
