"""A Flashbots-style private relay simulator to put in front of a real anvil node.

Private transactions must reach a relay that checks who sent them and never go anywhere
else. A plain JSON-RPC node cannot show either: it takes no ``eth_sendPrivateTransaction``
and ignores ``X-Flashbots-Signature``. This simulator speaks the relay's dialect in front
of anvil, so the broadcaster's private path (HSM-signed auth header, one call per request,
the private send method) runs against real bytes on a real socket, and a test can read
back which key signed each request and which transactions arrived as private sends.

What it does (see ``design/facts-evm-broadcast.md``, "Private relays"):

* auth: ``X-Flashbots-Signature: <address>:0x<65-byte signature>``, an EIP-191
  personal_sign of the ASCII text ``0x`` + lowercase hex keccak256(body), must recover to
  the address given. A missing header is refused only with ``require_auth`` (Protect-style
  endpoints take unsigned requests); a header that is present is always checked, since a
  wrong signature is a client bug either way. Refusals are HTTP 403 with a JSON-RPC error
  ``-32600 invalid flashbots signature`` (real relays word this differently from one
  endpoint to the next; the status code is what clients can rely on);
* no batches: Flashbots-style relays take one call per request, so an array is answered
  with ``-32600 batch requests are not supported``;
* ``eth_sendPrivateTransaction [{"tx", "maxBlockNumber"?, "preferences"?}]`` becomes
  ``eth_sendRawTransaction`` upstream, whose answer (hash or error) is returned unchanged.
  anvil has no private mempool, so "private" here means "reached only this relay"; the
  block limit and preferences are accepted and ignored;
* ``eth_cancelPrivateTransaction [{"txHash"}]`` answers ``true`` and is recorded, but
  anvil cannot drop a transaction it was handed (and with automine it is already mined),
  so the cancel has no effect on the chain;
* any other method goes to anvil unchanged: Protect-style relays answer reads too.

Like :mod:`airlock.sim.faultproxy` it runs its own event loop in a daemon thread, so a
blocking test and asyncio code in the main thread can both use it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

import aiohttp
from aiohttp import web
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_keys.exceptions import BadSignature
from eth_utils.crypto import keccak
from eth_utils.exceptions import ValidationError

from airlock.encoding.jsonlimit import loads_limited
from airlock.sim.loopthread import LoopThread

UPSTREAM_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=5)
SIGNATURE_HEADER = "X-Flashbots-Signature"
SEND_PRIVATE = "eth_sendPrivateTransaction"
CANCEL_PRIVATE = "eth_cancelPrivateTransaction"
SEND_RAW = "eth_sendRawTransaction"

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
BAD_SIGNATURE_MESSAGE = "invalid flashbots signature"
BATCH_MESSAGE = "batch requests are not supported"

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_SIGNATURE = re.compile(r"0x[0-9a-fA-F]{130}")
_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_HEX = re.compile(r"0x(?:[0-9a-fA-F]{2})+")


@dataclass(frozen=True)
class RelayRequest:
    """One request as the relay judged it: what a test asks "who sent what, and was it
    let in" about. ``signer`` is the checksum address a valid signature recovered to
    (None without one); ``method`` is None when the body was not a single call."""

    time: float
    method: str | None
    signer: str | None
    status: int
    body: bytes


class _Refused(Exception):
    """A request the relay answers itself with a JSON-RPC error (no upstream call)."""

    def __init__(self, status: int, code: int, message: str, data: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.data = data


def recover_signer(header: str, body: bytes) -> str:
    """The checksum address that signed ``body``, checked against the address the header
    claims; raises :class:`ValueError` saying what is wrong otherwise.

    The signed text is ``0x`` + hex keccak256(body), EIP-191 prefixed: the relay recomputes
    it from the bytes it received, so a client that signs anything else (the body itself,
    the hash without ``0x``, a re-serialised body) is refused, as a real relay would.
    """
    claimed, colon, signature = header.strip().partition(":")
    if not colon or not _ADDRESS.fullmatch(claimed) or not _SIGNATURE.fullmatch(signature):
        raise ValueError(f"{SIGNATURE_HEADER} must be <0x address>:<0x 65-byte signature>")
    message = encode_defunct(text="0x" + keccak(body).hex())
    try:
        recovered: str = Account.recover_message(message, signature=signature)
    except (BadSignature, ValidationError, ValueError) as exc:
        raise ValueError(f"the signature does not recover: {exc}") from None
    if recovered.lower() != claimed.lower():
        raise ValueError(f"the signature is by {recovered}, not by {claimed}")
    return recovered


def tx_hash(raw: str) -> str:
    """keccak256 of the signed bytes: the hash the chain will know the transaction by."""
    return "0x" + keccak(bytes.fromhex(raw[2:])).hex()


class PrivateRelay(LoopThread):
    """A private relay on 127.0.0.1 in front of one upstream node (see the module doc).

    Use as a context manager, or :meth:`start` / :meth:`stop`. Everything it records is
    readable from any thread while it runs and after it stopped.
    """

    def __init__(self, upstream: str, *, require_auth: bool = True, port: int = 0) -> None:
        if not upstream.startswith(("http://", "https://")):
            raise ValueError(f"upstream must be an http(s) URL, got {upstream!r}")
        self.upstream = upstream.rstrip("/")
        self.require_auth = require_auth
        self._requests: list[RelayRequest] = []
        self._private: list[str] = []
        self._cancelled: list[str] = []
        self._lock = threading.Lock()
        super().__init__(port)
        self.thread_name = f"privaterelay-{self.upstream}"
        self._listener: asyncio.Server | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def _astart(self) -> None:
        self._session = aiohttp.ClientSession(timeout=UPSTREAM_TIMEOUT, trust_env=False)
        self._listener = await self._open_listener(self._handle)

    async def _astop(self) -> None:
        """Close everything, then cancel whatever still runs so no task outlives the loop."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        await self._cancel_the_rest()
        if self._session is not None:
            await self._session.close()
        await asyncio.sleep(0)  # let transports run their connection_lost callbacks

    # -- request handling --------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(status=405, text="privaterelay: JSON-RPC over POST only\n")
        body = await request.read()
        signer: str | None = None
        method, request_id = _peek(body)
        try:
            signer = self._authenticate(request.headers.get(SIGNATURE_HEADER), body)
            call = _single_call(body)
            response = await self._dispatch(call, body)
        except _Refused as refused:
            response = _error_response(refused, request_id)
        self._keep(RelayRequest(time.monotonic(), method, signer, response.status, body))
        return response

    def _authenticate(self, header: str | None, body: bytes) -> str | None:
        """The signer's address, None for an unsigned request the relay may take."""
        if header is None:
            if self.require_auth:
                raise _Refused(
                    403, INVALID_REQUEST, BAD_SIGNATURE_MESSAGE, f"no {SIGNATURE_HEADER} header"
                )
            return None
        try:
            return recover_signer(header, body)
        except ValueError as exc:
            raise _Refused(403, INVALID_REQUEST, BAD_SIGNATURE_MESSAGE, str(exc)) from None

    async def _dispatch(self, call: dict[str, Any], body: bytes) -> web.Response:
        method = call["method"]
        if method == SEND_PRIVATE:
            raw = _private_tx(call.get("params"))
            with self._lock:
                self._private.append(tx_hash(raw))
            forwarded = {
                "jsonrpc": "2.0",
                "id": call.get("id"),
                "method": SEND_RAW,
                "params": [raw],
            }
            return await self._forward(json.dumps(forwarded).encode())
        if method == CANCEL_PRIVATE:
            cancelled = _cancel_hash(call.get("params"))
            with self._lock:
                self._cancelled.append(cancelled)
            return web.json_response({"jsonrpc": "2.0", "id": call.get("id"), "result": True})
        return await self._forward(body)

    async def _forward(self, body: bytes) -> web.Response:
        """POST ``body`` upstream; its answer as it came, or a 502 if it cannot be reached."""
        assert self._session is not None
        headers = {"Content-Type": "application/json"}
        try:
            async with self._session.post(self.upstream, data=body, headers=headers) as reply:
                content = await reply.read()
                return web.Response(
                    status=reply.status, body=content, content_type=reply.content_type
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            return web.Response(status=502, text=f"privaterelay: upstream unreachable: {exc!r}")

    def _keep(self, item: RelayRequest) -> None:
        with self._lock:
            self._requests.append(item)

    # -- recording -----------------------------------------------------------------------

    def requests(self) -> list[RelayRequest]:
        """Every request, refused ones included, in arrival order."""
        with self._lock:
            return list(self._requests)

    def signers(self) -> list[str]:
        """The address behind each validly signed request, in arrival order."""
        return [r.signer for r in self.requests() if r.signer is not None]

    def methods(self) -> list[str]:
        """The method of each request that was a single call, refused ones included."""
        return [r.method for r in self.requests() if r.method is not None]

    def private_hashes(self) -> set[str]:
        """Hashes of the transactions that arrived as well-formed, authenticated
        ``eth_sendPrivateTransaction`` calls, whatever the upstream then answered."""
        with self._lock:
            return set(self._private)

    def cancelled_hashes(self) -> set[str]:
        """Hashes named by ``eth_cancelPrivateTransaction`` (answered true, not dropped)."""
        with self._lock:
            return set(self._cancelled)

    def clear(self) -> None:
        """Forget everything recorded, e.g. between the phases of a test."""
        with self._lock:
            self._requests.clear()
            self._private.clear()
            self._cancelled.clear()


# --------------------------------------------------------------------------- pure parts


def _single_call(body: bytes) -> dict[str, Any]:
    """The one JSON-RPC call in ``body``; a batch or anything malformed is refused."""
    try:
        payload = loads_limited(body)  # depth-limited: eth_account is loaded in this process
    except ValueError as exc:
        raise _Refused(400, PARSE_ERROR, "parse error", str(exc)) from None
    if isinstance(payload, list):
        raise _Refused(400, INVALID_REQUEST, BATCH_MESSAGE)
    if not isinstance(payload, dict) or not isinstance(payload.get("method"), str):
        raise _Refused(400, INVALID_REQUEST, "invalid request", "expected one call with a method")
    return payload


def _private_tx(params: Any) -> str:
    """The signed transaction of ``[{"tx": "0x..", ...}]``."""
    first = _only_object(params, SEND_PRIVATE)
    raw = first.get("tx")
    if not isinstance(raw, str) or not _HEX.fullmatch(raw):
        raise _Refused(200, INVALID_PARAMS, f"{SEND_PRIVATE}: tx must be 0x-prefixed hex bytes")
    return raw


def _cancel_hash(params: Any) -> str:
    """The lowercase hash of ``[{"txHash": "0x.."}]``."""
    first = _only_object(params, CANCEL_PRIVATE)
    value = first.get("txHash")
    if not isinstance(value, str) or not _HASH.fullmatch(value):
        raise _Refused(200, INVALID_PARAMS, f"{CANCEL_PRIVATE}: txHash must be a 32-byte hash")
    return value.lower()


def _only_object(params: Any, method: str) -> dict[str, Any]:
    if not isinstance(params, list) or len(params) != 1 or not isinstance(params[0], dict):
        raise _Refused(200, INVALID_PARAMS, f"{method}: params must be [{{...}}]")
    return params[0]


def _peek(body: bytes) -> tuple[str | None, Any]:
    """The method and id of a single call, read before (and whatever) the relay decides:
    the record names what a refused request asked for, and a refusal answers its id."""
    try:
        payload = loads_limited(body)
    except ValueError:
        return None, None
    if not isinstance(payload, dict):
        return None, None
    method, request_id = payload.get("method"), payload.get("id")
    return (
        method if isinstance(method, str) else None,
        request_id if isinstance(request_id, int | str) else None,
    )


def _error_response(refused: _Refused, request_id: Any) -> web.Response:
    error: dict[str, Any] = {"code": refused.code, "message": refused.message}
    if refused.data is not None:
        error["data"] = refused.data
    payload = {"jsonrpc": "2.0", "id": request_id, "error": error}
    return web.json_response(payload, status=refused.status)


# ------------------------------------------------------------------------------ command


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m airlock.sim.privaterelay", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--upstream", required=True, help="the node URL to forward to")
    parser.add_argument("--port", type=int, default=0, help="relay port (default: a free one)")
    parser.add_argument(
        "--no-auth",
        action="store_true",
        help=f"take requests without {SIGNATURE_HEADER} (a present header is still checked)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Foreground relay: print the URL on one line, serve until SIGTERM or SIGINT."""
    args = _parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Installed before the URL is printed, so a prompt SIGTERM still shuts down cleanly.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with PrivateRelay(args.upstream, require_auth=not args.no_auth, port=args.port) as relay:
        print(relay.url, flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
