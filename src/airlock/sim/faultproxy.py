"""A fault-injecting reverse HTTP proxy to put in front of a real JSON-RPC node.

The broadcaster's whole job is to behave well when relays misbehave: links that drop,
relays that hang, answers that are garbage, and the worst case, a send that the relay
accepted but whose answer never arrived. Mocks cannot show that the bytes on the wire are
handled; this proxy sits between a real client and a real node (anvil) and breaks the
link on demand, while recording exactly what was sent so tests can check what reached
the relay.

It runs its own event loop in a daemon thread so blocking tests and asyncio code in the
main thread can both drive it. Modes switch from any thread and apply to the next request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import FrameType
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from eth_utils.crypto import keccak

from airlock.encoding.jsonlimit import loads_limited
from airlock.sim.loopthread import HOST, LoopThread, reset_connection
from airlock.sim.wsproxy import is_upgrade, relay

MODE_TIMEOUT = 5.0
UPSTREAM_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=5)
CONTROL_PREFIX = "/__faultproxy/"
MODE_PATH = CONTROL_PREFIX + "mode"
REQUESTS_PATH = CONTROL_PREFIX + "requests"
HEADERS_OF_INTEREST = ("X-Flashbots-Signature",)
DEFAULT_HUGE_SIZE = 16 * 1024 * 1024
DEEP_NESTING = 100_000
# Hop-by-hop and length headers belong to one connection; aiohttp sets its own.
# Accept-Encoding is dropped so the upstream never compresses what we pass through raw.
_NOT_FORWARDED = frozenset(
    {
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
        "accept-encoding",
    }
)


class Mode(StrEnum):
    """What the proxy does to the next request."""

    PASS = "pass"
    DOWN = "down"
    HANG = "hang"
    SLOW = "slow"
    ERROR = "error"
    GARBAGE = "garbage"
    LOSE_RESPONSE = "lose_response"
    FLAKY = "flaky"
    LIE = "lie"


class Garbage(StrEnum):
    """The bad 200 bodies ``garbage`` mode can answer with."""

    HTML = "html"
    TRUNCATED = "truncated"
    WRONG_ID = "wrong_id"
    NOT_JSONRPC = "not_jsonrpc"
    HUGE = "huge"
    DEEP = "deep"
    EMPTY = "empty"


# Allowed parameters per mode and their defaults; ``None`` means required.
_PARAMS: dict[Mode, dict[str, Any]] = {
    Mode.PASS: {},
    Mode.DOWN: {},
    Mode.HANG: {},
    Mode.SLOW: {"delay_ms": 1000},
    Mode.ERROR: {"status": 502},
    Mode.GARBAGE: {"kind": None, "size": DEFAULT_HUGE_SIZE},
    Mode.LOSE_RESPONSE: {},
    Mode.FLAKY: {"p": 0.5, "faults": None},
    Mode.LIE: {},
}


@dataclass(frozen=True)
class Fault:
    """A validated mode with its parameters, defaults filled in."""

    mode: Mode
    params: Mapping[str, Any] = field(default_factory=dict)


PASS = Fault(Mode.PASS)


def make_fault(mode: Mode | str, **params: Any) -> Fault:
    """Validate once, at the caller, so a typo raises where it was made, not in the loop."""
    mode = Mode(mode)
    allowed = _PARAMS[mode]
    unknown = set(params) - set(allowed)
    if unknown:
        raise ValueError(f"{mode}: unknown parameters {sorted(unknown)}")
    merged = {**allowed, **params}
    missing = [name for name, value in merged.items() if value is None]
    if missing:
        raise ValueError(f"{mode}: missing parameters {missing}")
    _check_params(mode, merged)
    return Fault(mode, merged)


def _check_params(mode: Mode, params: dict[str, Any]) -> None:
    """Range and type checks, normalising ``kind`` and ``faults`` in place."""
    if mode is Mode.SLOW and not params["delay_ms"] >= 0:
        raise ValueError("slow: delay_ms must be >= 0")
    if mode is Mode.ERROR and not 200 <= int(params["status"]) <= 599:
        raise ValueError("error: status must be an HTTP status from 200 to 599")
    if mode is Mode.GARBAGE:
        params["kind"] = Garbage(params["kind"])
        if int(params["size"]) < 2:
            raise ValueError("garbage: size must be >= 2 (a JSON string needs its quotes)")
    if mode is Mode.FLAKY:
        if not 0.0 <= float(params["p"]) <= 1.0:
            raise ValueError("flaky: p must be within [0, 1]")
        params["faults"] = tuple(_flaky_choice(item) for item in params["faults"])
        if not params["faults"]:
            raise ValueError("flaky: faults must not be empty")


def _flaky_choice(item: Any) -> Fault:
    """One ``(mode, params)`` pair (or a bare mode name); no nesting, no per-request down."""
    mode, params = (item, {}) if isinstance(item, str) else item
    fault = make_fault(mode, **dict(params))
    if fault.mode in (Mode.FLAKY, Mode.DOWN):
        raise ValueError(f"flaky: {fault.mode} cannot be a per-request fault")
    return fault


@dataclass(frozen=True)
class Recorded:
    """One request as it reached the proxy: what a relay would have seen."""

    time: float
    mode: Mode
    path: str
    headers: dict[str, str]
    body: bytes
    methods: tuple[str, ...]
    batch: bool
    raw_transactions: tuple[str, ...]


def parse_jsonrpc(body: bytes) -> tuple[list[dict[str, Any]], bool]:
    """The request objects in ``body`` and whether it was a batch; garbage gives none.

    Depth-limited: test processes import eth_account, after which a deeply nested body
    would crash plain ``json.loads`` (see :mod:`airlock.encoding.jsonlimit`).
    """
    try:
        payload = loads_limited(body)
    except ValueError:
        return [], False
    if isinstance(payload, list):
        return [call for call in payload if isinstance(call, dict)], True
    return ([payload] if isinstance(payload, dict) else []), False


def raw_transaction(call: Mapping[str, Any]) -> str | None:
    """The signed tx hex a send call carries, for public and private (Flashbots) sends."""
    params = call.get("params")
    first = params[0] if isinstance(params, list) and params else None
    if call.get("method") == "eth_sendRawTransaction" and isinstance(first, str):
        return first
    if call.get("method") == "eth_sendPrivateTransaction" and isinstance(first, dict):
        tx = first.get("tx")
        return tx if isinstance(tx, str) else None
    return None


def tx_hash(raw: str) -> str | None:
    """The transaction hash is keccak256 of the signed bytes; None if ``raw`` is not hex."""
    try:
        data = bytes.fromhex(raw.removeprefix("0x"))
    except ValueError:
        return None
    return "0x" + keccak(data).hex()


def record(mode: Mode, path: str, headers: Mapping[str, str], body: bytes) -> Recorded:
    """Build the record once, so readers never re-parse bodies under the lock."""
    calls, batch = parse_jsonrpc(body)
    methods = tuple(m for m in (call.get("method") for call in calls) if isinstance(m, str))
    raws = tuple(raw for raw in map(raw_transaction, calls) if raw is not None)
    kept = {name: headers[name] for name in HEADERS_OF_INTEREST if name in headers}
    return Recorded(time.monotonic(), mode, path, kept, body, methods, batch, raws)


def _request_ids(body: bytes) -> tuple[list[Any], bool]:
    """The request's ids (``[1]`` if it had none we could read) and whether it was a batch."""
    calls, batch = parse_jsonrpc(body)
    return [call.get("id") for call in calls] or [1], batch


def garbage_body(kind: Garbage, request_body: bytes, size: int) -> tuple[bytes, str]:
    """A 200 body that a careful client must refuse, and its content type."""
    if kind is Garbage.HTML:
        page = "<html><head><title>502 Bad Gateway</title></head><body>"
        return (page + "<h1>502 Bad Gateway</h1></body></html>").encode(), "text/html"
    if kind is Garbage.TRUNCATED:
        first_id = _request_ids(request_body)[0][0]
        full = json.dumps({"jsonrpc": "2.0", "id": first_id, "result": "0x" + "ab" * 32})
        return full[: len(full) // 2].encode(), "application/json"
    if kind is Garbage.WRONG_ID:
        return _wrong_id_body(request_body), "application/json"
    if kind is Garbage.NOT_JSONRPC:
        return b'{"hello": 1}', "application/json"
    if kind is Garbage.HUGE:
        return b'"' + b"a" * (size - 2) + b'"', "application/json"
    if kind is Garbage.DEEP:  # valid JSON; SIGSEGV for json.loads once eth_account is imported
        return b"[" * DEEP_NESTING + b"]" * DEEP_NESTING, "application/json"
    return b"", "application/json"


def _wrong_id_body(request_body: bytes) -> bytes:
    """Well-formed replies whose ids are all absent from the request (batch stays a batch)."""
    ids, batch = _request_ids(request_body)
    ints = [i for i in ids if isinstance(i, int) and not isinstance(i, bool)]
    base = max(ints, default=0) + 1
    replies = [{"jsonrpc": "2.0", "id": base + n, "result": "0x1"} for n in range(len(ids))]
    return json.dumps(replies if batch else replies[0]).encode()


_Action = Callable[
    ["FaultProxy", web.BaseRequest, bytes, Mapping[str, Any]], Awaitable[web.StreamResponse]
]


@dataclass(frozen=True)
class Upstream:
    """What the upstream answered, reduced to what the client is given back."""

    status: int
    body: bytes
    content_type: str

    def response(self) -> web.Response:
        return web.Response(status=self.status, body=self.body, content_type=self.content_type)


class FaultProxy(LoopThread):
    """A reverse proxy on 127.0.0.1 to one upstream URL, with switchable faults.

    Every mode change blocks (bounded) until it is in force, so the next request the
    caller makes sees it: ``down`` has closed the port when ``set_mode`` returns.
    Any ``set_mode`` call releases requests held by ``hang`` (their connections are reset).
    """

    def __init__(
        self, upstream: str, port: int = 0, seed: int = 0, control_port: int | None = None
    ) -> None:
        if not upstream.startswith(("http://", "https://")):
            raise ValueError(f"upstream must be an http(s) URL, got {upstream!r}")
        self.upstream = upstream.rstrip("/")
        self._control_port = control_port
        self._rng = random.Random(seed)
        self._fault = PASS
        self._records: list[Recorded] = []
        self._stats: Counter[str] = Counter()
        self._lock = threading.Lock()
        super().__init__(port)
        self.thread_name = f"faultproxy-{self.upstream}"
        self._listener: asyncio.Server | None = None
        self._control_listener: asyncio.Server | None = None
        self._server: web.Server | None = None
        self._session: aiohttp.ClientSession | None = None
        self._release: asyncio.Event | None = None
        self._mode_lock: asyncio.Lock | None = None

    # -- lifecycle -------------------------------------------------------------------

    @property
    def control_url(self) -> str | None:
        """The separate control listener, which stays up while the proxy port is down."""
        return None if self._control_port is None else f"http://{HOST}:{self._control_port}"

    @property
    def mode(self) -> Mode:
        return self._fault.mode

    async def _astart(self) -> None:
        self._release = asyncio.Event()
        self._mode_lock = asyncio.Lock()
        self._session = aiohttp.ClientSession(timeout=UPSTREAM_TIMEOUT)
        self._server = web.Server(self._handle, handler_cancellation=True, access_log=None)
        self._listener = await self._listen(self._server, self._port)
        self._port = self._listener.sockets[0].getsockname()[1]
        if self._control_port is not None:
            control = web.Server(self._control, access_log=None)
            self._control_listener = await self._listen(control, self._control_port)
            self._control_port = self._control_listener.sockets[0].getsockname()[1]
        if self._fault.mode is Mode.DOWN:
            self._go_down(spare=None)

    async def _astop(self) -> None:
        """Close everything, then cancel whatever still runs so no task outlives the loop."""
        self._release_hung()
        for listener in (self._listener, self._control_listener):
            if listener is not None:
                listener.close()
        self._listener = self._control_listener = None
        self._close_connections(spare=None)
        await self._cancel_the_rest()
        if self._session is not None:
            await self._session.close()
        await asyncio.sleep(0)  # let transports run their connection_lost callbacks

    # -- modes -----------------------------------------------------------------------

    def set_mode(self, mode: Mode | str, **params: Any) -> None:
        """Switch the fault for the next request/connection; returns once it is in force."""
        fault = make_fault(mode, **params)
        loop = self._loop
        if loop is None or not self.running:
            self._fault = fault
            return
        if threading.get_ident() == (self._thread.ident if self._thread else None):
            raise RuntimeError("set_mode() blocks; it cannot be called from the proxy's loop")
        asyncio.run_coroutine_threadsafe(self._apply(fault), loop).result(MODE_TIMEOUT)

    async def _apply(self, fault: Fault, spare: RequestHandler | None = None) -> None:
        """Make ``fault`` current; open or close the port to match; release hung requests."""
        assert self._mode_lock is not None
        async with self._mode_lock:
            self._fault = fault
            self._release_hung()
            if fault.mode is Mode.DOWN:
                self._go_down(spare)
            elif self._listener is None:
                assert self._server is not None
                self._listener = await self._listen(self._server, self._port)

    def _go_down(self, spare: RequestHandler | None) -> None:
        """Stop listening (connects are refused) and close every open client connection."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._close_connections(spare)

    def _close_connections(self, spare: RequestHandler | None) -> None:
        if self._server is None:
            return
        for connection in self._server.connections:
            if connection is not spare:
                connection.force_close()

    def _release_hung(self) -> None:
        if self._release is not None:
            self._release.set()
            self._release = asyncio.Event()

    def _pick(self) -> Fault:
        """The fault for this request: flaky draws from the seeded RNG, others are as set."""
        fault = self._fault
        if fault.mode is not Mode.FLAKY:
            return fault
        if self._rng.random() < float(fault.params["p"]):
            choices: Sequence[Fault] = fault.params["faults"]
            return self._rng.choice(choices)
        return PASS

    # -- request handling --------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            return await self._control(request)
        body = await request.read()
        fault = self._pick()
        if fault.mode is Mode.DOWN:  # a connection that raced the port closing
            self._count(Mode.DOWN)
            return await reset_connection(request)
        if is_upgrade(request):  # a venue's stream: relayed until the link is cut
            assert self._session is not None
            return await relay(request, self.upstream, self._session)
        self._keep(record(fault.mode, request.path, request.headers, body))
        return await self._actions[fault.mode](self, request, body, fault.params)

    def _keep(self, item: Recorded) -> None:
        with self._lock:
            self._records.append(item)
            self._stats[item.mode.value] += 1

    def _count(self, mode: Mode) -> None:
        with self._lock:
            self._stats[mode.value] += 1

    async def _forward(self, request: web.BaseRequest, body: bytes) -> Upstream:
        """Send the request upstream as it came; an unreachable upstream is a 502, as usual."""
        assert self._session is not None
        target = self.upstream + (request.path_qs if request.path_qs != "/" else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        try:
            async with self._session.request(
                request.method, target, data=body, headers=headers
            ) as reply:
                content = await reply.read()
                return Upstream(reply.status, content, reply.content_type)
        except (aiohttp.ClientError, TimeoutError) as exc:
            text = f"faultproxy: upstream unreachable: {exc!r}"
            return Upstream(502, text.encode(), "text/plain")

    async def _do_pass(
        self, request: web.BaseRequest, body: bytes, params: Mapping[str, Any]
    ) -> web.StreamResponse:
        return (await self._forward(request, body)).response()

    async def _do_hang(
        self, request: web.BaseRequest, body: bytes, params: Mapping[str, Any]
    ) -> web.StreamResponse:
        """Hold the request until a mode change; a client that gives up cancels this."""
        assert self._release is not None
        await self._release.wait()
        return await reset_connection(request)

    async def _do_slow(
        self, request: web.BaseRequest, body: bytes, params: Mapping[str, Any]
    ) -> web.StreamResponse:
        """Forward at once but answer late: the upstream acts before the client knows."""
        upstream = await self._forward(request, body)
        await asyncio.sleep(float(params["delay_ms"]) / 1000)
        return upstream.response()

    async def _do_error(
        self, request: web.BaseRequest, body: bytes, params: Mapping[str, Any]
    ) -> web.StreamResponse:
        status = int(params["status"])
        return web.Response(status=status, text=f"faultproxy: injected HTTP {status}\n")

    async def _do_garbage(
        self, request: web.BaseRequest, body: bytes, params: Mapping[str, Any]
    ) -> web.StreamResponse:
        content, content_type = garbage_body(params["kind"], body, int(params["size"]))
        return web.Response(status=200, body=content, content_type=content_type)

    async def _do_lose_response(
        self, request: web.BaseRequest, body: bytes, params: Mapping[str, Any]
    ) -> web.StreamResponse:
        """The upstream processes the request; the client never learns the outcome."""
        await self._forward(request, body)
        return await reset_connection(request)

    async def _do_lie(
        self, request: web.BaseRequest, body: bytes, params: Mapping[str, Any]
    ) -> web.StreamResponse:
        """A lying relay: every ``eth_sendRawTransaction`` is answered at once with a
        well-formed hash that is not the transaction's, and never forwarded; every other
        call of the request (batches included) goes to the upstream as usual."""
        calls, batch = parse_jsonrpc(body)
        sends = [c for c in calls if c.get("method") == "eth_sendRawTransaction"]
        if not sends:
            return (await self._forward(request, body)).response()
        lies = {id(c): self._lie_for(c) for c in sends}
        rest = [c for c in calls if id(c) not in lies]
        answered: dict[int, Any] = {}
        if rest:
            upstream = await self._forward(request, json.dumps(rest).encode())
            try:
                replies = loads_limited(upstream.body) if upstream.status == 200 else None
            except ValueError:
                replies = None
            if not isinstance(replies, list):
                return upstream.response()  # the upstream failed: pass its failure on
            by_id = {json.dumps(r.get("id")): r for r in replies if isinstance(r, dict)}
            for call in rest:
                reply = by_id.get(json.dumps(call.get("id")))
                if reply is not None:
                    answered[id(call)] = reply
        out = [lies.get(id(c)) or answered.get(id(c)) for c in calls]
        kept = [reply for reply in out if reply is not None]
        payload: Any = kept if batch else kept[0]
        return web.json_response(payload)

    def _lie_for(self, call: Mapping[str, Any]) -> dict[str, Any]:
        """A random 32-byte hash, never the hash of the bytes the call carries."""
        raw = raw_transaction(call)
        true_hash = tx_hash(raw) if raw is not None else None
        with self._lock:
            fake = "0x" + self._rng.randbytes(32).hex()
            while fake == true_hash:
                fake = "0x" + self._rng.randbytes(32).hex()
        return {"jsonrpc": "2.0", "id": call.get("id"), "result": fake}

    _actions: Mapping[Mode, _Action] = {
        Mode.PASS: _do_pass,
        Mode.HANG: _do_hang,
        Mode.SLOW: _do_slow,
        Mode.ERROR: _do_error,
        Mode.GARBAGE: _do_garbage,
        Mode.LOSE_RESPONSE: _do_lose_response,
        Mode.LIE: _do_lie,
    }

    # -- control surface ---------------------------------------------------------------

    async def _control(self, request: web.BaseRequest) -> web.StreamResponse:
        """Mode changes and the recording, for a test driving the proxy from another process."""
        if request.method == "POST" and request.path == MODE_PATH:
            return await self._control_mode(request)
        if request.method == "GET" and request.path == REQUESTS_PATH:
            return web.json_response(self.summary())
        return web.json_response({"error": f"no control path {request.path}"}, status=404)

    async def _control_mode(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            data = json.loads(await request.read())
            if not isinstance(data, dict) or "mode" not in data:
                raise ValueError('expected a JSON object with "mode"')
            fault = make_fault(data.pop("mode"), **data)
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        await self._apply(fault, spare=request.protocol)
        response = web.json_response({"mode": fault.mode})
        response.force_close()  # the port may be down now; do not keep this connection
        return response

    # -- recording -----------------------------------------------------------------------

    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._records)

    def methods(self) -> list[str]:
        """Every JSON-RPC method seen, batches flattened, in arrival order."""
        return [method for item in self.requests() for method in item.methods]

    def sent_raw_transactions(self) -> list[str]:
        return [raw for item in self.requests() for raw in item.raw_transactions]

    def sent_tx_hashes(self) -> set[str]:
        hashes = (tx_hash(raw) for raw in self.sent_raw_transactions())
        return {value for value in hashes if value is not None}

    def stats(self) -> dict[str, int]:
        """Requests per mode applied, over the proxy's life (``clear()`` keeps these)."""
        with self._lock:
            return dict(self._stats)

    def clear(self) -> None:
        """Forget recorded requests (not the stats), e.g. between phases of a test."""
        with self._lock:
            self._records.clear()

    def summary(self) -> dict[str, Any]:
        return {
            "mode": self._fault.mode,
            "methods": self.methods(),
            "tx_hashes": sorted(self.sent_tx_hashes()),
            "stats": self.stats(),
        }


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m airlock.sim.faultproxy", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--upstream", required=True, help="the node URL to forward to")
    parser.add_argument("--port", type=int, default=0, help="proxy port (default: a free one)")
    parser.add_argument("--seed", type=int, default=0, help="seed for flaky mode")
    parser.add_argument(
        "--control-port", type=int, help="separate control listener (0: a free port)"
    )
    return parser.parse_args(argv)


def _stop_on_signal() -> threading.Event:
    """Installed before the URL is printed, so a prompt SIGTERM still shuts down cleanly."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def main(argv: Sequence[str] | None = None) -> int:
    """Foreground proxy: print the URL (and the control URL if any), serve until signalled."""
    args = _parse_args(argv)
    stop = _stop_on_signal()
    proxy = FaultProxy(args.upstream, args.port, args.seed, control_port=args.control_port)
    with proxy:
        print(proxy.url, flush=True)
        if proxy.control_url is not None:
            print(proxy.control_url, flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
