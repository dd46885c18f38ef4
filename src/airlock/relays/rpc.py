"""A small blocking JSON-RPC client for one-off operator commands (``nonce sync``).

The broadcaster's relays are asynchronous; this is for the CLI, where one request at a
time is what the operator asked for. Every call has a timeout, responses are size
limited and checked for shape, and every failure is a :class:`RpcError` naming the URL.
"""

from __future__ import annotations

import itertools
import json
import urllib.error
import urllib.request
from typing import Any

from airlock.errors import AirlockError
from airlock.relays.jsonbody import loads_limited

MAX_RESPONSE_BYTES = 1 << 20
_ids = itertools.count(1)


class RpcError(AirlockError):
    """The endpoint could not be reached, or answered with an error or garbage."""


def call(url: str, method: str, params: list[Any], timeout: float = 10.0) -> Any:
    """``method(params)`` at ``url``; returns ``result`` or raises :class:`RpcError`."""
    if not url.startswith(("http://", "https://")):
        raise RpcError(f"RPC URL must start with http:// or https://, got {url!r}")
    request_id = next(_ids)
    body = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise RpcError(f"{url}: {method} failed with HTTP {exc.code}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RpcError(f"{url}: cannot reach the node for {method}: {reason}") from None
    if len(raw) > MAX_RESPONSE_BYTES:
        raise RpcError(f"{url}: {method} response is larger than {MAX_RESPONSE_BYTES} bytes")
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
