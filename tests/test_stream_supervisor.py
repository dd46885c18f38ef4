"""The stream supervisor: timing on a fake clock, and one real loopback WebSocket.

The timing cases run over an in-memory connector (:class:`FakeNet`): every wait the
supervisor makes is the injected ``sleep`` (backoff) or a receive timeout, which the fake
connection turns into a jump of the fake clock, so nothing waits and every delay, ping and
stale verdict is exact. The last tests run the default aiohttp connector against an aiohttp
server on 127.0.0.1 port 0. Waits are bounded polls (tests/kits/waiting.py); nothing
asserts on wall-clock durations.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from tests.kits.waiting import wait_until_async

from airlock.relays import errors
from airlock.relays.backoff import Backoff, BackoffPolicy, FixedDelay, FullJitter
from airlock.relays.stream_supervisor import (
    StreamAuthError,
    StreamError,
    StreamSettings,
    StreamStartError,
    StreamSupervisor,
    StreamTransportError,
)
from airlock.relays.ws import WsConnection, aiohttp_connector

URL = "wss://stream.example/v5/private?api_key=sekret"
SHOWN = "wss://stream.example/v5/private?***"
WAIT_S = 5.0


# ----------------------------------------------------------------------------- the fakes


class FakeTime:
    """A monotonic clock in seconds and a ``sleep`` that moves it instead of waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # a real sleep yields; so does this one


@dataclass
class Script:
    """How one fake connection behaves.

    ``auth``: ``ok`` (ack at once), ``refuse``, ``silent`` (never answers) or ``manual``
    (the test pushes the ack). ``pongs``: how many pings are answered (None: all).
    ``timed``: an empty inbox times out on the fake clock; otherwise a receive waits for
    the test to push a frame (the connection idles without moving time).
    """

    auth: str = "ok"
    pongs: int | None = None
    timed: bool = False
    refuse_connect: bool = False


class FakeWs:
    """An in-memory :class:`WsConnection` with a scripted far end."""

    def __init__(self, time: FakeTime, script: Script, log: list[str], n: int) -> None:
        self.time, self.script, self.log, self.n = time, script, log, n
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.sent: list[str] = []
        self.closed = False
        self.released = False  # close() was called: the supervisor let it go
        self.pongs = 0

    def push(self, text: str | None) -> None:
        """A frame from the far end (None: it closes the connection)."""
        self.inbox.put_nowait(text)

    async def send_text(self, text: str) -> None:
        if self.closed:
            raise StreamTransportError("send on a closed connection")
        self.sent.append(text)
        if text == "auth" and self.script.auth in ("ok", "refuse"):
            self.push("auth-ok" if self.script.auth == "ok" else "auth-refused")
        elif text == "ping" and (self.script.pongs is None or self.pongs < self.script.pongs):
            self.pongs += 1
            self.push("pong")

    async def receive_text(self, timeout_s: float) -> str | None:
        if self.closed:
            return None
        if self.inbox.empty() and self.script.timed:
            self.time.now += timeout_s
            await asyncio.sleep(0)
            raise TimeoutError
        text = await self.inbox.get()
        if text is None:
            self.closed = True
        return text

    async def close(self) -> None:
        if not self.released:
            self.log.append(f"close #{self.n}")
        self.closed = self.released = True


class FakeNet:
    """The connector: one scripted connection per attempt (then idle ones)."""

    def __init__(self, time: FakeTime, log: list[str], scripts: list[Script]) -> None:
        self.time, self.log, self.scripts = time, log, list(scripts)
        self.attempts: list[float] = []  # the fake clock at each attempt
        self.conns: list[FakeWs] = []

    async def __call__(self, url: str, timeout_s: float) -> WsConnection:
        assert url == URL
        self.attempts.append(self.time.now)
        script = self.scripts.pop(0) if self.scripts else Script()
        self.log.append(f"connect #{len(self.attempts)}")
        if script.refuse_connect:
            raise StreamTransportError("connection refused: [Errno 111] Connect call failed")
        ws = FakeWs(self.time, script, self.log, len(self.attempts))
        self.conns.append(ws)
        return ws


@dataclass
class FakeProtocol:
    """A trivial stream protocol that writes down every call, in order."""

    log: list[str]
    url: str = URL
    key: str = "good"
    messages: list[str] = field(default_factory=list)
    flags: list[bool] = field(default_factory=list)
    drops: list[str] = field(default_factory=list)

    async def authenticate(self, ws: WsConnection, timeout_s: float) -> None:
        await ws.send_text("auth" if self.key == "good" else f"auth:{self.key}")
        while True:
            text = await ws.receive_text(timeout_s)
            if text is None:
                raise StreamError("closed before the auth ack")
            if text == "auth-ok":
                self.log.append("auth ack")
                return
            if text == "auth-refused":
                raise StreamAuthError("Params Error")

    async def subscribe(self, ws: WsConnection) -> None:
        await ws.send_text("subscribe")
        self.log.append("subscribed")

    def ping(self) -> str:
        return "ping"

    def is_heartbeat(self, text: str) -> bool:
        return text == "pong"

    async def on_message(self, text: str) -> None:
        self.messages.append(text)
        if text == "revoked":
            raise StreamAuthError("API key expired")

    async def on_connected(self, first: bool) -> None:
        self.flags.append(first)
        self.log.append(f"on_connected first={first}")

    async def on_disconnected(self, why: str) -> None:
        self.drops.append(why)
        self.log.append(f"on_disconnected {why}")


@dataclass
class Rig:
    time: FakeTime
    log: list[str]
    net: FakeNet
    protocol: FakeProtocol
    sup: StreamSupervisor
    alerts: list[str]


def rig(
    *scripts: Script,
    policy: Backoff | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    **settings: float,
) -> Rig:
    time, log, alerts = FakeTime(), [], []
    net = FakeNet(time, log, list(scripts))
    protocol = FakeProtocol(log)
    sup = StreamSupervisor(
        protocol,
        policy=policy or FixedDelay(1.0),
        settings=StreamSettings(**settings),
        connect=net,
        clock=time,
        sleep=sleep or time.sleep,
        on_alert=alerts.append,
    )
    return Rig(time, log, net, protocol, sup, alerts)


@contextlib.asynccontextmanager
async def running(sup: StreamSupervisor) -> AsyncIterator[asyncio.Task[None]]:
    """``sup.run`` in a task; stopped through its event (and awaited) on the way out."""
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT_S)


async def settle() -> None:
    """Let every ready task run many times over (yields, not a wait on the clock): enough
    for a loop that was going to connect again to have done so."""
    for _ in range(200):
        await asyncio.sleep(0)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (StreamError, errors.RelayError),
        (StreamTransportError, StreamError),
        (StreamTransportError, errors.TransportError),
        (StreamAuthError, StreamError),
        (StreamAuthError, errors.RejectedError),
        (StreamStartError, StreamError),
    ],
)
def test_the_stream_errors_sit_in_the_relays_tree(error: type, kind: type) -> None:
    assert issubclass(error, kind)
    assert error.__name__ in (errors.__doc__ or "")


# ----------------------------------------------------------------------------- start


async def test_start_connects_authenticates_then_subscribes_then_calls_on_connected() -> None:
    r = rig()
    await r.sup.start()
    assert r.log == ["connect #1", "auth ack", "subscribed", "on_connected first=True"]
    assert r.net.conns[0].sent == ["auth", "subscribe"]
    assert r.sup.is_connected and r.sup.connected.is_set()
    assert (r.sup.reconnects, r.sup.last_error, r.sup.stopped) == (0, None, None)
    await r.sup.close()
    assert r.net.conns[0].closed and not r.sup.is_connected


async def test_a_refused_key_at_start_fails_at_once_saying_retrying_will_not_help() -> None:
    r = rig(Script(auth="refuse"))
    with pytest.raises(StreamStartError) as caught:
        await r.sup.start()
    message = str(caught.value)
    assert message.startswith(f"stream {SHOWN}: did not start: ")
    assert "refused the API key or secret (Params Error)" in message
    assert "retrying will not help" in message
    assert "sekret" not in message
    assert caught.value.refused and isinstance(caught.value.__cause__, StreamAuthError)
    assert len(r.net.attempts) == 1 and r.time.slept == []  # one attempt, no loop
    assert r.time.now <= 10.0 and r.net.conns[0].closed
    assert "subscribed" not in r.log and not r.sup.is_connected


async def test_no_auth_ack_at_start_fails_exactly_at_the_bound() -> None:
    r = rig(Script(auth="silent", timed=True), auth_timeout_s=7.5)
    with pytest.raises(StreamStartError, match=r"not authenticated and subscribed within 7\.5 s"):
        await r.sup.start()
    assert r.time.now == 7.5  # the bound held on the injected clock: not a moment longer
    assert r.net.conns[0].sent == ["auth"] and r.net.conns[0].closed
    assert not r.sup.is_connected and r.time.slept == []


async def test_an_unreachable_venue_at_start_fails_naming_the_url_and_the_cause() -> None:
    r = rig(Script(refuse_connect=True))
    with pytest.raises(StreamStartError) as caught:
        await r.sup.start()
    assert str(caught.value) == (
        f"stream {SHOWN}: did not start: connection refused: [Errno 111] Connect call failed"
    )
    assert not caught.value.refused and len(r.net.attempts) == 1


async def test_run_before_start_and_start_twice_are_callers_bugs() -> None:
    r = rig()
    with pytest.raises(RuntimeError, match="start"):
        await r.sup.run(asyncio.Event())
    await r.sup.start()
    with pytest.raises(RuntimeError, match="already started"):
        await r.sup.start()
    await r.sup.close()


@pytest.mark.parametrize(
    "settings",
    [{"auth_timeout_s": 0.0}, {"ping_s": -1.0}, {"stale_s": 20.0}, {"ping_s": 50.0}],
)
def test_settings_refuse_bounds_that_make_no_sense(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        StreamSettings(**settings)


# ----------------------------------------------------------------------------- reconnect


@pytest.mark.parametrize(
    "policy",
    [FullJitter(0.5, 8.0, seed=11), FixedDelay(0.25), BackoffPolicy(seed=3)],
    ids=["full-jitter", "fixed", "rest-policy"],
)
async def test_reconnect_asks_sleep_for_the_policys_delays_and_starts_over_after_auth(
    policy: Backoff,
) -> None:
    refused = Script(refuse_connect=True)
    r = rig(Script(), refused, refused, refused, policy=policy)
    await r.sup.start()
    async with running(r.sup):
        r.net.conns[0].push(None)  # the venue drops the first connection
        await wait_until_async(lambda: r.sup.reconnects == 1, WAIT_S, "the first reconnect")
        r.net.conns[1].push(None)  # and the one that came back
        await wait_until_async(lambda: r.sup.reconnects == 2, WAIT_S, "the second reconnect")
    delays = [policy.delay(n) for n in (0, 1, 2, 3, 0)]  # 0 again: that one authenticated
    assert r.time.slept == delays
    after = [sum(delays[:k]) for k in range(1, 6)]  # each attempt once its delay had passed
    assert r.net.attempts == pytest.approx([0.0, *after])
    assert r.sup.last_error == "closed by the far end"  # why the last connection ended
    assert r.protocol.flags == [True, False, False]


async def test_every_reconnect_authenticates_again_before_it_subscribes() -> None:
    r = rig(Script(), Script(auth="manual"), Script())
    await r.sup.start()
    async with running(r.sup):
        r.net.conns[0].push(None)
        await wait_until_async(lambda: len(r.net.conns) == 2, WAIT_S, "the second connection")
        second = r.net.conns[1]
        await wait_until_async(lambda: second.sent == ["auth"], WAIT_S, "the re-auth")
        await settle()
        assert second.sent == ["auth"] and not r.sup.is_connected  # no subscribe before the ack
        second.push("auth-ok")
        await wait_until_async(lambda: r.sup.is_connected, WAIT_S, "the resubscribe")
        assert second.sent == ["auth", "subscribe"]
        second.push(None)
        await wait_until_async(lambda: r.sup.reconnects == 2, WAIT_S, "the third connection")
    per_connection = ["auth ack", "subscribed"]
    assert r.log == [
        "connect #1",
        *per_connection,
        "on_connected first=True",
        "close #1",
        "on_disconnected closed by the far end",
        "connect #2",
        *per_connection,
        "on_connected first=False",
        "close #2",
        "on_disconnected closed by the far end",
        "connect #3",
        *per_connection,
        "on_connected first=False",
        "close #3",  # stopped: closed, and no on_disconnected for a deliberate stop
    ]
    assert [ws.sent[:2] for ws in r.net.conns] == [["auth", "subscribe"]] * 3
    assert r.protocol.flags == [True, False, False] and r.sup.reconnects == 2


async def test_a_reconnect_that_never_authenticates_is_abandoned_at_the_bound() -> None:
    r = rig(Script(), Script(auth="silent", timed=True), auth_timeout_s=4.0)
    await r.sup.start()
    async with running(r.sup):
        r.net.conns[0].push(None)
        await wait_until_async(lambda: r.sup.reconnects == 1, WAIT_S, "the reconnect")
    assert r.net.attempts == [0.0, 1.0, 1.0 + 4.0 + 1.0]  # given up at 4 s, then backoff
    assert r.net.conns[1].sent == ["auth"] and r.net.conns[1].released
    assert r.time.slept == [1.0, 1.0]


async def test_send_goes_over_the_current_connection_and_refuses_when_down() -> None:
    r = rig()
    with pytest.raises(StreamTransportError, match="not connected"):
        await r.sup.send("order.create")
    await r.sup.start()
    await r.sup.send("order.create")
    assert r.net.conns[0].sent[-1] == "order.create"
    await r.sup.close()


async def test_messages_reach_the_protocol_and_heartbeats_do_not() -> None:
    r = rig()
    await r.sup.start()
    async with running(r.sup):
        for text in ("order 1", "pong", "execution 1"):
            r.net.conns[0].push(text)
        await wait_until_async(lambda: len(r.protocol.messages) == 2, WAIT_S, "two messages")
    assert r.protocol.messages == ["order 1", "execution 1"]


async def test_a_silent_connection_is_pinged_judged_stale_and_replaced() -> None:
    r = rig(Script(pongs=0, timed=True), ping_s=20.0, stale_s=45.0)
    await r.sup.start()
    async with running(r.sup):
        await wait_until_async(lambda: r.sup.reconnects == 1, WAIT_S, "the replacement")
    silent = r.net.conns[0]
    assert silent.sent == ["auth", "subscribe", "ping", "ping"]  # at 20 s and at 40 s
    assert silent.closed and r.protocol.drops == ["stale: no frame for 45 s"]
    assert r.net.attempts == [0.0, 45.0 + 1.0]  # judged at 45 s, then the policy's 1 s
    assert r.protocol.flags == [True, False]


async def test_pongs_keep_a_quiet_connection_up_until_they_stop() -> None:
    r = rig(Script(pongs=3, timed=True), ping_s=20.0, stale_s=45.0)
    await r.sup.start()
    async with running(r.sup):
        await wait_until_async(lambda: r.sup.reconnects == 1, WAIT_S, "the replacement")
    quiet = r.net.conns[0]
    # pongs to the pings at 20, 40 and 60 s; none at 80 and 100 s; stale 45 s after 60 s
    assert quiet.sent == ["auth", "subscribe", *["ping"] * 5]
    assert r.net.attempts == [0.0, 105.0 + 1.0]


# ----------------------------------------------------------------------------- refused key


@pytest.mark.parametrize("where", ["at re-auth", "in a message"])
async def test_a_key_refused_while_running_stops_with_one_alert_until_resumed(
    where: str,
) -> None:
    scripts = [Script(), Script(auth="refuse")] if where == "at re-auth" else [Script()]
    r = rig(*scripts)
    await r.sup.start()
    async with running(r.sup):
        r.net.conns[0].push(None if where == "at re-auth" else "revoked")
        await wait_until_async(lambda: r.sup.stopped is not None, WAIT_S, "the stop")
        attempts, slept = len(r.net.attempts), list(r.time.slept)
        await settle()
        assert (len(r.net.attempts), r.time.slept) == (attempts, slept)  # no retry loop
        assert len(r.alerts) == 1 and r.alerts[0] == r.sup.stopped == r.sup.last_error
        assert "refused the API key or secret" in r.alerts[0] and SHOWN in r.alerts[0]
        assert not r.sup.is_connected

        r.sup.resume()  # the operator fixed the key
        await wait_until_async(lambda: r.sup.is_connected, WAIT_S, "the resumed connection")
        assert r.time.slept == slept  # the attempt after a resume is immediate
        assert len(r.net.attempts) == attempts + 1 and r.sup.stopped is None
    assert len(r.alerts) == 1 and r.protocol.flags[-1] is False


async def test_resume_when_not_stopped_changes_nothing() -> None:
    r = rig()
    await r.sup.start()
    r.sup.resume()
    async with running(r.sup):
        r.net.conns[0].push(None)
        await wait_until_async(lambda: r.sup.reconnects == 1, WAIT_S, "the reconnect")
    assert r.time.slept == [1.0]  # the policy's delay, not an immediate attempt


# ----------------------------------------------------------------------------- cleanup


def others() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


@pytest.mark.parametrize("where", ["serving", "re-auth", "backoff"])
async def test_cancelling_run_closes_the_connection_and_leaves_no_task(where: str) -> None:
    blocked = asyncio.Event()

    async def stuck_sleep(seconds: float) -> None:
        blocked.set()
        await asyncio.Event().wait()

    r = rig(Script(), Script(auth="manual"), sleep=stuck_sleep if where == "backoff" else None)
    await r.sup.start()
    task = asyncio.create_task(r.sup.run(asyncio.Event()))
    r.net.conns[0].push("served" if where == "serving" else None)
    ready = {
        "serving": lambda: r.protocol.messages == ["served"],
        "re-auth": lambda: len(r.net.conns) == 2 and r.net.conns[1].sent == ["auth"],
        "backoff": blocked.is_set,
    }[where]
    await wait_until_async(ready, WAIT_S, f"run to be {where}")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert all(ws.released for ws in r.net.conns)
    assert not r.sup.is_connected and others() == set()


async def test_stopping_run_returns_and_closes_the_connection() -> None:
    r = rig()
    await r.sup.start()
    async with running(r.sup) as task:
        await settle()
    assert task.done() and r.net.conns[0].released and not r.sup.is_connected
    assert others() == set()


# ----------------------------------------------------------------------------- loopback


class LoopbackServer:
    """A trivial WebSocket venue: ``auth`` (or ``auth:<key>``: refused) answered with an
    ack, ``subscribe`` with a greeting naming the connection, ``ping`` with ``pong``."""

    def __init__(self) -> None:
        self.sockets: list[web.WebSocketResponse] = []
        self.auths = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        async for msg in ws:
            await self.answer(ws, str(msg.data))
        return ws

    async def answer(self, ws: web.WebSocketResponse, text: str) -> None:
        if text.startswith("auth"):
            self.auths += 1
            await ws.send_str("auth-ok" if text == "auth" else "auth-refused")
        elif text == "subscribe":
            await ws.send_str(f"hello from connection {len(self.sockets)}")
        elif text == "ping":
            await ws.send_str("pong")
        elif text == "big":
            await ws.send_str("x" * 4096)


async def redirect_to_ws(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/ws")


@pytest.fixture
async def venue() -> AsyncIterator[LoopbackServer]:
    server = LoopbackServer()
    app = web.Application()
    app.router.add_get("/ws", server.handle)
    app.router.add_get("/old", redirect_to_ws)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.url = f"ws://{host}:{port}/ws"
    yield server
    await runner.cleanup()


def loopback(server_url: str, **kw: str) -> tuple[StreamSupervisor, FakeProtocol]:
    protocol = FakeProtocol([], url=server_url, **kw)
    sup = StreamSupervisor(protocol, policy=FixedDelay(0.0))  # the default aiohttp connector
    return sup, protocol


async def test_loopback_reconnects_and_reauthenticates_after_the_server_closes(
    venue: LoopbackServer,
) -> None:
    sup, protocol = loopback(venue.url)
    await sup.start()
    async with running(sup):
        await wait_until_async(lambda: protocol.messages != [], WAIT_S, "the first greeting")
        await venue.sockets[0].close()  # the venue drops the stream
        await wait_until_async(lambda: sup.reconnects == 1, WAIT_S, "the reconnect")
        await wait_until_async(lambda: len(protocol.messages) == 2, WAIT_S, "a greeting")
    assert protocol.messages == ["hello from connection 1", "hello from connection 2"]
    assert venue.auths == 2 and protocol.flags == [True, False]
    assert protocol.drops == ["closed by the far end"]
    assert not sup.is_connected
    await wait_until_async(lambda: others() == set(), WAIT_S, "every task to end")


async def test_loopback_refused_key_at_start(venue: LoopbackServer) -> None:
    sup, _ = loopback(venue.url, key="revoked")
    with pytest.raises(StreamStartError, match="retrying will not help") as caught:
        await sup.start()
    assert caught.value.refused and venue.auths == 1


async def test_loopback_nobody_listening_at_start_is_connection_refused() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sup, _ = loopback(f"ws://127.0.0.1:{port}/ws")
    with pytest.raises(StreamStartError, match="connection refused") as caught:
        await sup.start()
    assert not caught.value.refused and f"127.0.0.1:{port}" in str(caught.value)


async def test_aiohttp_connection_times_out_bounds_frames_and_ignores_env_proxies(
    venue: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # trusted, this would fail to connect
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    ws = await aiohttp_connector(max_message_bytes=1024)(venue.url, WAIT_S)
    try:
        with pytest.raises(TimeoutError):
            await ws.receive_text(0.05)  # nothing sent yet: a timeout, the socket still open
        await ws.send_text("ping")
        assert await ws.receive_text(WAIT_S) == "pong"
        await ws.send_text("big")
        with pytest.raises(StreamTransportError):
            await ws.receive_text(WAIT_S)  # 4 KiB over a 1 KiB bound
        assert ws.closed and await ws.receive_text(WAIT_S) is None
        with pytest.raises(StreamTransportError, match="closed"):
            await ws.send_text("ping")
    finally:
        await ws.close()


async def test_aiohttp_connector_refuses_a_non_websocket_a_redirect_and_trust_env(
    venue: LoopbackServer,
) -> None:
    with pytest.raises(StreamTransportError, match="not a WebSocket: HTTP 404"):
        await aiohttp_connector()(venue.url.replace("/ws", "/nothing"), WAIT_S)
    with pytest.raises(StreamTransportError, match="never follows a redirect"):
        await aiohttp_connector()(venue.url.replace("/ws", "/old"), WAIT_S)
    await wait_until_async(lambda: venue.sockets[0].closed, WAIT_S, "the redirect's socket")
    assert venue.auths == 0  # refused before anything was said on it
    connect = aiohttp_connector(lambda: aiohttp.ClientSession(trust_env=True))
    with pytest.raises(ValueError, match="trust_env"):
        await connect(venue.url, WAIT_S)
