"""JSON-RPC from outside airlock: plain urllib requests to a node, a proxy or a link, so a
test sees what arrives on the wire without airlock's own client in between."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def call(method: str, params: list[Any] | None = None, request_id: int = 1) -> dict[str, Any]:
    """One JSON-RPC 2.0 request object."""
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or []}


def post(url: str, payload: Any, timeout: float = 10.0, **headers: str) -> tuple[int, bytes]:
    """POST JSON (or raw bytes) and return status and body, HTTP errors included. The
    default timeout only bounds a failing test; a test of timing-out passes its own."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
