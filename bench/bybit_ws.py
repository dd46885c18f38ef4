"""Bybit fill latency: the private stream against REST polling at the default interval.

Issue 17's first "Done when": a fill on the simulator is stored and on the event stream
within 50 ms p50, with the periodic reconcile disabled, measured against the same fill
learned by REST polling at the default interval, in the same run. Two arms, each on a
fresh ``BybitSim`` (the same build, on a thread of this process, as in the tests) and a
fresh store (encrypted, durable, the SoftHSM token of ``benchkit``), with the real
``VenueBroadcaster`` from ``build_venue`` serving (``venue.run(stop)``; HMAC secret in the
HSM) and the real local API (``serve_api``) on a Unix socket in the same event loop, as
``airlock broadcaster run`` has them:

1. **stream** — ``[bybit]`` defaults with the private stream on and ``reconcile_seconds``
   86 400 (the most the setting allows): the only REST reconciles are the passes at the
   stream's (re)connect, which are over before the first fill (counted and printed);
2. **rest** — ``[bybit]`` defaults with the stream off (``StreamConfig(enabled=False)``):
   fills are learned by the periodic reconcile, ``reconcile_seconds`` at its default
   (``--rest-interval`` changes it, for quick checks only). Slow by design, so it has
   fewer fills, spread over ``--rest-span`` intervals.

Each arm queues N GTC limit buys one price step apart (not timed), waits until the
broadcaster has placed them all and its start-up reconciles are done, then fills them one
at a time: ``set_mark_price`` just below the next order's price, after a random gap (the
seed is printed) so fills do not line up with any poll tick. A fill's latency runs from
the moment ``set_mark_price`` returned (``time.time_ns``; the execution's own ``execTime``
is on the same wall clock and earlier, checked) to:

- **stored**: ``store.venue.record_fills`` returned with it among the new fills (the
  commit is durable by then; every fill is checked in ``store.venue.fills()`` once after
  the arm);
- **event**: a bot in another process (this file with ``--follow``) following
  ``GET /v1/events`` over the Unix socket read the ``item.fill`` event (its own
  ``time.time_ns``, the same clock).

The seams are stamped by wrapping the callables the broadcaster looks up at call time (as
``benchkit.Stopwatch`` does); every call still goes through. For the stream arm the time
is split: the push (set_mark_price returned -> the execution frame read by the stream),
the hand-off (frame -> ``apply_fill_rows``: JSON, the stream's dispatch), the store
(``apply_fill_rows`` -> the commit) and the event stream (commit -> the bot read it).

Exits 1 when the stream arm's p50 is not under 50 ms, or a fill is missing, stored twice,
or stored by the other arm's path; the figures are printed first.

Usage: python bench/bybit_ws.py [--fills 40] [--rest-fills 12] [--rest-span 2.5]
       [--rest-interval S] [--seed 17] [--json] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import math
import os
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from airlock.api.client import Airlock
from airlock.api.serve import serve_api
from airlock.broadcaster.setup import build_venue
from airlock.broadcaster.venue import VenueBroadcaster, VenueResult
from airlock.config import AirlockConfig, ApiConfig, BybitConfig, StreamConfig, load_config
from airlock.hsm.keyring import KeyRing
from airlock.queue.bybit import IntentKey, enqueue_order
from airlock.queue.kek import HsmKek
from airlock.queue.policy import OrderRequest, PolicyConfig, decide_order
from airlock.queue.states import State
from airlock.queue.store import Store
from airlock.queue.venue import Fill
from airlock.sim.bybit import EXECUTIONS, BybitSim
from benchkit import open_bench_token

API_KEY = "airlock-bench-key"
SYMBOL = "BTCUSDT"
SECRET_LABEL = "bench-bybit-hmac"
INTENT_LABEL = "bench-intents"
TARGET_P50_MS = 50.0
NO_PERIODIC_S = 86_400.0  # the most reconcile_seconds allows: the periodic pass is off
DEFAULT_INTERVAL_S = next(
    f.default for f in dataclasses.fields(BybitConfig) if f.name == "reconcile_seconds"
)
TOP_PRICE, PRICE_STEP = 60_000, 10  # order i rests at TOP - i * STEP; the mark fills one
STREAM_GAP_S = (0.1, 0.4)  # between two fills of the stream arm, uniform
SETTLE_S = 0.5  # after the start-up reconciles, before the first fill
STREAM_BOUND_S = 30.0  # for the last fill to arrive, stream arm
READY_BOUND_S = 60.0  # placing the orders, the stream up, the bot connected
POLL_S = 0.005


# --------------------------------------------------------------------------- the set-up


@dataclass(frozen=True)
class Keys:
    """The HSM session and what every arm shares: the HMAC secret, the intent key."""

    ring: KeyRing
    secret: bytes
    intent: IntentKey
    kek: HsmKek
    config: AirlockConfig  # the library's, for the local API
    sockets: Path  # a short directory for the API's socket (108 bytes at most)


@dataclass(frozen=True)
class Arm:
    """One way of learning fills: the stream on or off, its reconcile interval, and the
    schedule (the same shape in both arms, so only the path differs)."""

    name: str
    stream: bool
    reconcile_s: float
    gaps: list[float]  # seconds before each fill

    @property
    def fills(self) -> int:
        return len(self.gaps)


def make_keys(ring: KeyRing, home: Path, sockets: Path) -> Keys:
    secret = os.urandom(32)
    ring.import_hmac_secret(SECRET_LABEL, secret)
    ring.generate("p256", INTENT_LABEL)
    intent = IntentKey(
        ring.ecdsa_key(INTENT_LABEL, curve="p256"), INTENT_LABEL, ring.public_key_pem(INTENT_LABEL)
    )
    config = load_config(env={"AIRLOCK_HOME": str(home)})
    return Keys(ring, secret, intent, HsmKek(ring), config, sockets)


def arm_settings(arm: Arm, url: str) -> BybitConfig:
    """The defaults of ``[bybit]`` pointed at the simulator; the stream on or off, and the
    periodic reconcile as the arm has it."""
    return BybitConfig(
        base_url=url,
        api_key=API_KEY,
        secret_label=SECRET_LABEL,
        intent_key_label=INTENT_LABEL,
        reconcile_seconds=arm.reconcile_s,
        stream=StreamConfig(enabled=arm.stream),
    )


def price(i: int) -> int:
    return TOP_PRICE - i * PRICE_STEP


def queue_orders(store: Store, intent: IntentKey, tag: str, n: int) -> list[str]:
    """N GTC limit buys one step apart, queued as during an outage; their orderLinkIds,
    highest price first (the order in which the falling mark fills them)."""
    links = []
    for i in range(n):
        request = OrderRequest(
            category="linear", symbol=SYMBOL, side="Buy", order_type="Limit", qty="0.01",
            price=str(price(i)), tif="GTC", ttl_s=3600, idempotency_key=f"bench:{tag}:{i}",
        )  # fmt: skip
        decision = decide_order(request, venue_reachable=False, config=PolicyConfig())
        queued = enqueue_order(store, request, decision, intent, account="bybit")
        pair = store.venue.of_item(queued.item.id)
        assert pair is not None
        links.append(pair[1].link_id)
    return links


# --------------------------------------------------------------------------- the stamps


@dataclass
class Marks:
    """When each fill passed each seam (``time.time_ns``), keyed by orderLinkId."""

    called: dict[str, int] = field(default_factory=dict)  # set_mark_price called
    fired: dict[str, int] = field(default_factory=dict)  # ... and returned: the fill
    frames: list[tuple[int, str]] = field(default_factory=list)  # stream frames read
    handed: list[tuple[int, list[dict[str, Any]]]] = field(default_factory=list)
    stored: dict[str, tuple[int, str]] = field(default_factory=dict)  # ns, "stream"/"rest"
    twice: list[str] = field(default_factory=list)  # stored as new more than once
    reconciles: list[tuple[int, int]] = field(default_factory=list)
    reconciling: bool = False


def instrument(venue: VenueBroadcaster, store: Store, marks: Marks) -> None:
    """Stamp the seams by wrapping what the broadcaster looks up at call time: the store's
    ``record_fills`` (which path stored each fill, and when its commit returned), the
    stream's ``apply_fill_rows`` hand-off and frame reader, and ``reconcile``. The work is
    untouched; parsing what was stamped waits until the arm is over."""
    record, apply, reconcile = store.venue.record_fills, venue.apply_fill_rows, venue.reconcile
    path = ["rest"]

    def record_fills(found: list[Fill]) -> list[Fill]:
        new = record(found)
        now = time.time_ns()
        for fill in new:
            if fill.link_id in marks.stored:
                marks.twice.append(fill.link_id)
            marks.stored.setdefault(fill.link_id, (now, path[0]))
        return new

    def apply_fill_rows(rows: Any) -> int:
        marks.handed.append((time.time_ns(), list(rows)))
        path[0] = "stream"
        try:
            return apply(rows)
        finally:
            path[0] = "rest"

    async def timed_reconcile() -> VenueResult:
        start, marks.reconciling = time.time_ns(), True
        try:
            return await reconcile()
        finally:
            marks.reconciles.append((start, time.time_ns()))
            marks.reconciling = False

    store.venue.record_fills = record_fills  # type: ignore[method-assign]
    venue.apply_fill_rows = apply_fill_rows  # type: ignore[method-assign]
    venue.reconcile = timed_reconcile  # type: ignore[method-assign]
    if venue.stream is not None:
        protocol = venue.stream.protocol
        on_message = protocol.on_message

        async def read_frame(text: str) -> None:
            marks.frames.append((time.time_ns(), text))
            await on_message(text)

        protocol.on_message = read_frame  # type: ignore[method-assign]


# --------------------------------------------------------------------------- the bot


class Follower:
    """A bot in its own process following ``GET /v1/events`` over the Unix socket (this
    file with ``--follow``); it prints each ``item.fill`` as it reads it, stamped with its
    own ``time.time_ns`` (the event names the execId, not the orderLinkId). Another
    process, so its reading shares no event loop or GIL with the service it measures."""

    def __init__(self, socket: Path, after: int) -> None:
        argv = [sys.executable, __file__, "--follow", str(socket), "--after", str(after)]
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, bufsize=1
        )
        self.seen: dict[str, int] = {}  # execId -> when the bot read its item.fill
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            parts = line.split()
            if parts[:1] == ["ready"]:
                self.ready.set()
            elif parts[:1] == ["fill"]:
                self.seen.setdefault(parts[1], int(parts[2]))

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self._reader.join(10)


async def follow(socket: str, after: int) -> None:
    """The bot: one event stream, read line by line as any SSE client would."""
    connector = aiohttp.UnixConnector(path=socket)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with (
        aiohttp.ClientSession(base_url="http://airlock", connector=connector,
                              timeout=timeout) as session,
        session.get("/v1/events", params={"after": str(after)}) as response,
    ):  # fmt: skip
        print("ready", response.status, flush=True)
        kind, data = "", ""
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = line.removeprefix("data: ")
            elif not line and kind:
                now = time.time_ns()
                if kind == "item.fill":
                    fill = json.loads(data)["fill"]
                    print("fill", fill["exec_id"], now, flush=True)
                kind, data = "", ""


# --------------------------------------------------------------------------- one arm


async def until(
    check: Callable[[], bool], bound_s: float, what: str, task: asyncio.Task[None]
) -> None:
    """Poll ``check`` until true; the venue side ending or the bound passing is an error."""
    deadline = time.monotonic() + bound_s
    while not check():
        if task.done():
            task.result()
            raise RuntimeError(f"the venue side ended while waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {bound_s:.0f} s")
        await asyncio.sleep(POLL_S)


def fill_now(sim: BybitSim, mark: str) -> tuple[int, int]:
    """Move the mark (the venue fills and pushes inside); stamps before and after."""
    called = time.time_ns()
    sim.set_mark_price(SYMBOL, mark)
    return called, time.time_ns()


async def fire(sim: BybitSim, arm: Arm, links: list[str], marks: Marks) -> None:
    """One fill per gap: the mark half a step below the next order's price, from a worker
    thread (as a test driving the venue would), so this loop keeps serving meanwhile."""
    for i, (link, gap) in enumerate(zip(links, arm.gaps, strict=True)):
        await asyncio.sleep(gap)
        mark = str(price(i) - PRICE_STEP // 2)
        marks.called[link], marks.fired[link] = await asyncio.to_thread(fill_now, sim, mark)


def quiet(venue: VenueBroadcaster, store: Store, marks: Marks, n: int) -> Callable[[], bool]:
    """Every order placed, the stream (if any) up, no reconcile running or about to."""

    def check() -> bool:
        placed = len(store.venue.in_states([State.SENT])) == n
        streaming = venue.stream is None or venue.stream.is_connected
        return placed and streaming and not venue.reconnected.is_set() and not marks.reconciling

    return check


async def serve(keys: Keys, store: Store, venue: VenueBroadcaster, sim: BybitSim, arm: Arm,
                links: list[str], marks: Marks) -> dict[str, int]:  # fmt: skip
    """The service's Bybit side and local API in one loop, a bot following the events,
    the fills fired; returns when each is stored and on the bot's stream."""
    al = Airlock.over(keys.config, keys.ring, store)
    api = ApiConfig(socket=keys.sockets / f"{arm.name}.sock")
    async with serve_api(al, api, keys.sockets) as server, venue.client:
        stop = asyncio.Event()
        task = asyncio.create_task(venue.run(stop), name=f"bench-{arm.name}")
        follower = Follower(server.socket, store.events.last_id())
        try:
            ready = quiet(venue, store, marks, arm.fills)
            await until(ready, READY_BOUND_S, "orders placed, start-up reconciles over", task)
            await asyncio.sleep(SETTLE_S)
            await until(ready, READY_BOUND_S, "settled", task)
            await asyncio.to_thread(follower.ready.wait, READY_BOUND_S)
            await fire(sim, arm, links, marks)
            bound = STREAM_BOUND_S if arm.stream else 2 * arm.reconcile_s + STREAM_BOUND_S

            def arrived() -> bool:
                return all(k in marks.stored for k in links) and len(follower.seen) >= len(links)

            await until(arrived, bound, "every fill stored and on the event stream", task)
        finally:
            follower.close()
            stop.set()
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 30)
    return dict(follower.seen)


def run_arm(keys: Keys, home: Path, arm: Arm) -> tuple[dict[str, Any], list[str]]:
    """One arm on its own store and simulator: the figures and the problems found."""
    marks = Marks()
    with Store.open(home / f"{arm.name}.db", keys.kek) as store:
        links = queue_orders(store, keys.intent, arm.name, arm.fills)
        with BybitSim(API_KEY, secret=keys.secret) as sim:
            venue = build_venue(arm_settings(arm, sim.url), keys.ring, store)
            instrument(venue, store, marks)
            started = time.perf_counter()
            events = asyncio.run(serve(keys, store, venue, sim, arm, links, marks))
            wall_s = time.perf_counter() - started
            executions = sim.executions()
            polls = [r.time_ms for r in sim.requests() if r.path == EXECUTIONS]
        stored = Counter(f.link_id for f in store.venue.fills())
        alerts = list(venue.alerts)
    figures = arm_figures(arm, links, marks, events, executions, polls)
    figures |= {"wall_s": round(wall_s, 1), "alerts": len(alerts)}
    return figures, arm_problems(arm, links, marks, stored, alerts)


def arm_problems(arm: Arm, links: list[str], marks: Marks, stored: Counter[str],
                 alerts: list[str]) -> list[str]:  # fmt: skip
    """What would make the figures meaningless: a fill missing or stored twice, a fill
    the other arm's path stored (the stream arm's must all come from the stream), alerts."""
    wanted = "stream" if arm.stream else "rest"
    problems = [f"{link}: in the store {stored[link]} times" for link in links if stored[link] != 1]
    problems += [f"{link}: recorded as new twice" for link in marks.twice]
    problems += [
        f"{link}: stored by {how}, not {wanted}"
        for link, (_, how) in marks.stored.items()
        if how != wanted
    ]
    problems += [f"alert: {a}" for a in alerts]
    return [f"{arm.name}: {p}" for p in problems]


# --------------------------------------------------------------------------- the figures


def summary(values: list[float]) -> dict[str, Any]:
    """p50 (the median), p95 (nearest rank), min, max, in ms; the sample size."""
    if not values:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "min_ms": None, "max_ms": None}
    ordered = sorted(values)
    rank = max(1, math.ceil(0.95 * len(ordered)))
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[rank - 1], 2),
        "min_ms": round(ordered[0], 2),
        "max_ms": round(ordered[-1], 2),
    }


def since(later: dict[str, int], earlier: dict[str, int]) -> list[float]:
    """Per fill, ``later - earlier`` in ms, where both were stamped."""
    return [(later[k] - earlier[k]) / 1e6 for k in earlier if k in later]


def exec_frames(marks: Marks) -> dict[str, int]:
    """When the stream read the frame carrying each link's execution."""
    read: dict[str, int] = {}
    for ns, text in marks.frames:
        frame = json.loads(text)
        if frame.get("topic") in ("execution", "execution.fast"):
            for row in frame.get("data") or []:
                read.setdefault(str(row.get("orderLinkId")), ns)
    return read


def hand_offs(marks: Marks) -> dict[str, int]:
    """When ``apply_fill_rows`` was handed each link's execution."""
    handed: dict[str, int] = {}
    for ns, rows in marks.handed:
        for row in rows:
            handed.setdefault(str(row.get("orderLinkId")), ns)
    return handed


def arm_figures(arm: Arm, links: list[str], marks: Marks, events: dict[str, int],
                executions: list[dict[str, Any]], polls: list[int]) -> dict[str, Any]:  # fmt: skip
    """The stamps turned into latencies from each fill, and the checks that the stream
    arm really ran without the periodic reconcile (no pass, no execution list read)."""
    stored = {k: ns for k, (ns, _) in marks.stored.items()}
    exec_ms = {str(e["orderLinkId"]): int(e["execTime"]) for e in executions}
    link_of = {str(e["execId"]): str(e["orderLinkId"]) for e in executions}
    events = {link_of.get(exec_id, exec_id): ns for exec_id, ns in events.items()}
    first_fire = min(marks.fired.values(), default=0)
    figures: dict[str, Any] = {
        "fills": arm.fills,
        "stream": arm.stream,
        "reconcile_s": arm.reconcile_s,
        "stored": summary(since(stored, marks.fired)),
        "event": summary(since(events, marks.fired)),
        "set_mark_price_call": summary(since(marks.fired, marks.called)),
        "exec_time_before_return_ms": summary(
            [(marks.fired[k] / 1e6 - exec_ms[k]) for k in links if k in exec_ms]
        ),
        "reconciles_during_fills": sum(1 for s, _ in marks.reconciles if s >= first_fire),
        "execution_list_reads_during_fills": sum(1 for t in polls if t * 10**6 >= first_fire),
        "reconcile_starts_s": reconcile_starts(marks),
    }
    if arm.stream:
        figures["split"] = split(marks, stored, events)
    return figures


def reconcile_starts(marks: Marks) -> list[float]:
    """When each reconcile started, in s from the first fill (negative: before it)."""
    first = min(marks.fired.values(), default=0)
    return [round((s - first) / 1e9, 2) for s, _ in marks.reconciles]


def split(marks: Marks, stored: dict[str, int], events: dict[str, int]) -> dict[str, Any]:
    """Where a stream-arm fill's time goes, seam to seam (p50s do not add up exactly)."""
    read, handed = exec_frames(marks), hand_offs(marks)
    return {
        "push: set_mark_price returned -> execution frame read": summary(since(read, marks.fired)),
        "hand-off: frame read -> apply_fill_rows": summary(since(handed, read)),
        "store: apply_fill_rows -> commit returned": summary(since(stored, handed)),
        "event stream: commit -> the bot read item.fill": summary(since(events, stored)),
    }


# --------------------------------------------------------------------------- the report


def print_arm(figures: dict[str, Any]) -> None:
    def line(s: dict[str, Any]) -> str:
        return (
            f"p50 {s['p50_ms']} ms, p95 {s['p95_ms']} ms, min {s['min_ms']} ms,"
            f" max {s['max_ms']} ms (n={s['n']})"
        )

    kind = "stream on" if figures["stream"] else "stream off"
    print(f"  {kind}, reconcile_seconds {figures['reconcile_s']:g}: {figures['fills']} fills,"
          f" {figures['wall_s']} s")  # fmt: skip
    print(f"    fill -> stored:          {line(figures['stored'])}")
    print(f"    fill -> on the events:   {line(figures['event'])}")
    print(
        f"    set_mark_price call {figures['set_mark_price_call']['p50_ms']} ms p50; execTime"
        f" {figures['exec_time_before_return_ms']['p50_ms']} ms before it returned (p50);"
        f" reconciles during the fills {figures['reconciles_during_fills']},"
        f" /v5/execution/list reads {figures['execution_list_reads_during_fills']};"
        f" alerts {figures['alerts']}"
    )
    print(f"    reconcile starts (s from the first fill): {figures['reconcile_starts_s']}")
    for part, s in figures.get("split", {}).items():
        print(f"    {part:56} {line(s)}")


def make_arms(args: argparse.Namespace) -> tuple[Arm, Arm]:
    """The two arms' schedules: random gaps, from the seed."""
    rng = random.Random(args.seed)
    stream_gaps = [rng.uniform(*STREAM_GAP_S) for _ in range(args.fills)]
    mean = args.rest_span * args.rest_interval / args.rest_fills
    rest_gaps = [rng.uniform(0.5, 1.5) * mean for _ in range(args.rest_fills)]
    stream = Arm("stream", True, NO_PERIODIC_S, stream_gaps)
    rest = Arm("rest", False, args.rest_interval, rest_gaps)
    return stream, rest


def verdict(stream: dict[str, Any], rest: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """The figure against its target and its baseline: the stream arm's p50 from the fill
    to the bot reading it (stored before that, so both are under the target or neither)."""
    s, r = stream["event"]["p50_ms"], rest["event"]["p50_ms"]
    stored = stream["stored"]["p50_ms"]
    ratio = s / r if s is not None and r else None
    passed = s is not None and stored is not None and max(s, stored) < TARGET_P50_MS
    return {
        "target_p50_ms": TARGET_P50_MS,
        "stream_event_p50_ms": s,
        "rest_event_p50_ms": r,
        "ratio_p50_stream_to_rest": None if ratio is None else round(ratio, 6),
        "speed_up_p50": None if ratio is None else round(1 / ratio, 1),
        "pass": bool(passed and not problems),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fills", type=int, default=40, help="stream arm")
    parser.add_argument("--rest-fills", type=int, default=12)
    parser.add_argument("--rest-span", type=float, default=2.5, help="in reconcile intervals")
    parser.add_argument("--rest-interval", type=float, default=DEFAULT_INTERVAL_S)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temp dir")
    parser.add_argument("--follow", help=argparse.SUPPRESS)  # the bot: an API socket
    parser.add_argument("--after", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.follow:
        asyncio.run(follow(args.follow, args.after))
        return 0
    if args.fills < 1 or args.rest_fills < 1 or args.rest_span <= 0:
        parser.error("need --fills >= 1, --rest-fills >= 1, --rest-span > 0")
    print("command: " + shlex.join(sys.orig_argv))
    logging.getLogger("airlock").setLevel(logging.ERROR)  # alerts are counted instead
    return measure(args)


def measure(args: argparse.Namespace) -> int:
    """Both arms in one run on one HSM token, then the verdict; exit 1 on a FAIL."""
    stream_arm, rest_arm = make_arms(args)
    print(
        f"bybit fill latency: stream {stream_arm.fills} fills, REST {rest_arm.fills} fills"
        f" over {args.rest_span} x {args.rest_interval:g} s (default"
        f" {DEFAULT_INTERVAL_S:g} s), seed {args.seed}, {os.cpu_count()} cpus"
    )
    started = time.perf_counter()
    report: dict[str, Any] = {"seed": args.seed, "default_interval_s": DEFAULT_INTERVAL_S}
    problems: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="airlock-bench-", dir=args.dir) as tmp,
        tempfile.TemporaryDirectory(prefix="al-ws-", dir="/tmp") as sockets,
        open_bench_token(Path(tmp)) as ring,
    ):
        keys = make_keys(ring, Path(tmp), Path(sockets))
        for arm in (stream_arm, rest_arm):
            figures, found = run_arm(keys, Path(tmp), arm)
            report[arm.name], problems = figures, problems + found
            print_arm(figures)
    report |= verdict(report["stream"], report["rest"], problems)
    report["rest_at_default_interval"] = args.rest_interval == DEFAULT_INTERVAL_S
    report["problems"] = problems
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    print(
        f"stream p50 {report['stream_event_p50_ms']} ms against REST polling p50"
        f" {report['rest_event_p50_ms']} ms: ratio {report['ratio_p50_stream_to_rest']}"
        f" ({report['speed_up_p50']}x sooner); target p50 < {TARGET_P50_MS:g} ms"
        f"  {'PASS' if report['pass'] else 'FAIL'}; total {report['total_seconds']} s"
    )
    if args.json:
        print(json.dumps(report, separators=(",", ":"), default=str))
    for p in problems:
        print(f"PROBLEM: {p}")
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
