"""Bybit drain: queued orders against the venue's per-account limit, and airlock's overhead.

Every figure comes from one run, so the ratios hold on a noisy machine even when the
absolute rates do not. Each round queues N GTC limit buys as during an outage
(``decide_order(venue_reachable=False)``, ``enqueue_order``: intent signed by the HSM
P-256 key, durable encrypted store; not timed), then:

1. **limit** — a fresh ``BybitSim`` with the create limit at ``--limit`` per rolling
   second (the per-IP limit lifted so its 403 ban never triggers; reads at the simulator's
   defaults). The real ``VenueBroadcaster`` from ``build_venue`` (HMAC secret in SoftHSM,
   every request signed by the HSM at send time, pacing by the client's rate-limit
   gate) drains the store with ``run_once()``. The rate is taken as the venue saw it:
   (N - 1) intervals between the first and the last successful create (``SimRequest.time_ms``),
   as a fraction of the limit (target >= 0.95), with zero 10006 answers. For reference the
   shortest span a rolling one-second window allows, (ceil(N / L) - 1) s, gives the
   pacing efficiency. ``run_once()`` reconciles only after a dispatch pass empties the
   queue, so no reconcile pass runs inside the create span (counted and printed);
2. **lifted** — the same N orders in a fresh store, a fresh simulator with every limit
   lifted; airlock's drain is timed from ``run_once()`` until its first dispatch pass
   returns with every item sent (connect included, the closing reconcile not). The
   baseline, in the same round and on its own fresh simulator: a bare aiohttp loop of N
   sequential POST /v5/order/create over one keep-alive session, bodies and HMAC
   signatures computed in software with the same secret before timing (recv_window
   60 s so none lapses), each answer read and its retCode checked. Printed: airlock /
   bare and the per-order overhead (1/airlock - 1/bare) in microseconds, with a split of
   airlock's drain time (store calls, intent verification, HSM request signing, the
   rest of the HTTP exchange) and N bare ``keyring.hmac_sha256`` calls timed alone.

The simulator runs on a thread of this process (as in the tests), so its CPU time is
shared with whichever side is being timed; both sides pay it alike.

Exits non-zero when an order was placed twice, an order was lost, or a 10006 (or the
per-IP 403) appeared; the figures are printed first.

Usage: python bench/bybit_drain.py [--orders 1000] [--limit 10] [--rounds 1] [--dir DIR]
       [--skip-limit] [--skip-lifted]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import itertools
import json
import logging
import math
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

import airlock.broadcaster.venue as venue_module
from airlock.broadcaster.setup import build_venue
from airlock.broadcaster.venue import VenueBroadcaster, VenueResult
from airlock.config import BybitConfig
from airlock.hsm.keyring import KeyRing
from airlock.queue.bybit import IntentKey, enqueue_order
from airlock.queue.kek import HsmKek
from airlock.queue.policy import OrderRequest, PolicyConfig, decide_order
from airlock.queue.states import State
from airlock.queue.store import Store
from airlock.signer.bybit import (
    auth_headers,
    create_order_body,
    make_order_intent,
    signing_payload,
)
from airlock.sim.bybit import CREATE, DEFAULT_RATE_LIMITS, IP_KEY, BybitSim, SimRequest
from benchkit import Stopwatch, open_bench_token

API_KEY = "airlock-bench-key"
SYMBOL = "BTCUSDT"
SECRET_LABEL = "bench-bybit-hmac"
INTENT_LABEL = "bench-intents"
RATE_LIMITED = 10006
LIFTED = 10**9  # every limit, when lifted (the per-IP one too)
BARE_RECV_WINDOW_MS = 60_000  # the longest airlock allows: no pre-signed request lapses
TARGET_LIMIT_RATIO = 0.95
DRAIN_SLACK_S = 120.0  # on top of N / L: the bound on one drain


# --------------------------------------------------------------------------- plumbing


def order_request(key: str) -> OrderRequest:
    return OrderRequest(
        category="linear",
        symbol=SYMBOL,
        side="Buy",
        order_type="Limit",
        qty="0.01",
        price="60000",
        tif="GTC",
        ttl_s=3600,
        idempotency_key=key,
    )


def queue_orders(store: Store, intent_key: IntentKey, tag: str, n: int) -> tuple[set[str], float]:
    """N GTC limit buys queued as during an outage; their orderLinkIds and the seconds."""
    links = set()
    start = time.perf_counter()
    for i in range(n):
        request = order_request(f"bench:{tag}:{i}")
        decision = decide_order(request, venue_reachable=False, config=PolicyConfig())
        queued = enqueue_order(store, request, decision, intent_key, account="bybit")
        pair = store.venue.of_item(queued.item.id)
        assert pair is not None
        links.add(pair[1].link_id)
    assert len(links) == n, "orderLinkIds collide"
    return links, time.perf_counter() - start


def venue_settings(url: str) -> BybitConfig:
    """The defaults of ``[bybit]``, pointed at the simulator."""
    return BybitConfig(
        base_url=url,
        api_key=API_KEY,
        secret_label=SECRET_LABEL,
        intent_key_label=INTENT_LABEL,
    )


def link_of(request: SimRequest) -> str:
    try:
        return str(json.loads(request.body).get("orderLinkId", ""))
    except ValueError:
        return ""


def audit_venue(
    sim: BybitSim, expected: set[str], store: Store | None = None
) -> tuple[dict[str, Any], list[str], list[int]]:
    """What the venue saw: counts, problems (placed twice, lost, 10006, 403), and the
    venue's times of the successful creates (sorted)."""
    requests = sim.requests()
    creates = [r for r in requests if r.path == CREATE]
    placed = [r for r in creates if r.ret_code == 0]
    sent_per_link = Counter(link_of(r) for r in creates)
    placed_per_link = Counter(link_of(r) for r in placed)
    venue_links = Counter(o.get("orderLinkId") for o in sim.orders())
    twice = sorted(k for k, c in placed_per_link.items() if c > 1)
    twice += sorted(k for k, c in venue_links.items() if c > 1 and k not in twice)
    lost = sorted(expected - set(placed_per_link))
    unknown = sorted(set(placed_per_link) - expected)
    rate_limited = sum(1 for r in requests if r.ret_code == RATE_LIMITED)
    banned = sum(1 for r in requests if r.status == 403)
    other = Counter(r.ret_code for r in creates if r.ret_code != 0)
    facts: dict[str, Any] = {
        "requests": len(requests),
        "creates_sent": len(creates),
        "orders_placed": len(placed),
        "distinct_placed": len(placed_per_link),
        "orders_on_venue": sum(venue_links.values()),
        "links_sent_more_than_once": sum(1 for c in sent_per_link.values() if c > 1),
        "answers_10006": rate_limited,
        "answers_403": banned,
        "other_create_codes": dict(other),
        "requests_by_path": dict(Counter(r.path for r in requests)),
    }
    if store is not None:
        facts["store_states"] = dict(
            Counter(str(i.state) for i, _ in store.venue.in_states(list(State)))
        )
    problems = []
    if twice:
        problems.append(f"{len(twice)} orderLinkIds placed more than once, e.g. {twice[:3]}")
    if lost:
        problems.append(f"{len(lost)} queued orders never placed, e.g. {lost[:3]}")
    if unknown:
        problems.append(f"{len(unknown)} placed orders were never queued, e.g. {unknown[:3]}")
    if rate_limited:
        problems.append(f"{rate_limited} answers with retCode 10006")
    if banned:
        problems.append(f"{banned} answers with HTTP 403 (per-IP ban)")
    if store is not None:
        unsent = [
            i.id for i, _ in store.venue.in_states([State.QUEUED, State.SENDING, State.QUARANTINED])
        ]
        if unsent:
            problems.append(f"{len(unsent)} items left queued, sending or quarantined")
    return facts, problems, sorted(r.time_ms for r in placed)


@contextmanager
def simulator(secret: bytes, limits: dict[str, int]) -> Iterator[BybitSim]:
    with BybitSim(API_KEY, secret=secret, rate_limits=limits) as sim:
        yield sim


async def drain(
    venue: VenueBroadcaster, timeout_s: float, watch: Stopwatch | None = None
) -> dict[str, Any]:
    """``run_once()`` under a bound; the time its first dispatch pass returned, and the
    reconcile passes (with their times) seen. ``watch`` stops after the first pass."""
    passes: list[tuple[float, float, int]] = []  # dispatch: start, end, sent
    reconciles: list[tuple[float, float]] = []
    dispatch, reconcile = venue.dispatch, venue.reconcile

    async def timed_dispatch() -> VenueResult:
        t0 = time.perf_counter()
        result = await dispatch()
        passes.append((t0, time.perf_counter(), result.sent))
        if watch is not None:
            watch.restore()  # the split covers run_once() until its first pass is done
        return result

    async def timed_reconcile() -> VenueResult:
        t0 = time.perf_counter()
        result = await reconcile()
        reconciles.append((t0, time.perf_counter()))
        return result

    venue.dispatch = timed_dispatch  # type: ignore[method-assign]
    venue.reconcile = timed_reconcile  # type: ignore[method-assign]
    async with venue.client:
        start_wall_ms = time.time_ns() // 1_000_000
        start = time.perf_counter()
        try:
            result = await asyncio.wait_for(venue.run_once(), timeout_s)
        finally:
            if watch is not None:
                watch.restore()
        end = time.perf_counter()
    if not passes:
        raise RuntimeError("run_once() never dispatched (could not connect?)")
    return {
        "result": result,
        "start": start,
        "start_wall_ms": start_wall_ms,
        "first_dispatch_start": passes[0][0],
        "first_dispatch_end": passes[0][1],
        "first_dispatch_sent": passes[0][2],
        "passes": passes,
        "reconciles": reconciles,
        "end": end,
    }


# --------------------------------------------------------------------------- part 1


def limit_round(
    store: Store, ring: KeyRing, secret: bytes, links: set[str], n: int, limit: int
) -> tuple[dict[str, Any], list[str]]:
    limits = {CREATE: limit, IP_KEY: LIFTED}
    with simulator(secret, limits) as sim:
        venue = build_venue(venue_settings(sim.url), ring, store)
        timeout = n / limit + DRAIN_SLACK_S
        run = asyncio.run(drain(venue, timeout))
        facts, problems, times = audit_venue(sim, links, store)
    if len(times) < 2:
        problems.append("fewer than two orders placed: no rate")
        return {"venue": facts}, problems
    span_ms = times[-1] - times[0]
    rate = (len(times) - 1) / (span_ms / 1000) if span_ms else math.inf
    ideal_span_ms = (math.ceil(len(times) / limit) - 1) * 1000
    first_s = (times[0] - run["start_wall_ms"]) / 1000
    last_create_s = (times[-1] - run["start_wall_ms"]) / 1000
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # one-second cycles: request k and request k + L, L apart in the order sent
    cycles = [times[i + limit] - times[i] for i in range(len(times) - limit)]
    in_span = [r for r in run["reconciles"] if r[0] < run["first_dispatch_end"]]
    result: VenueResult = run["result"]
    figures = {
        "orders": n,
        "limit_per_s": limit,
        "orders_per_s": round(rate, 3),
        "ratio_to_limit": round(rate / limit, 4),
        "create_span_s": round(span_ms / 1000, 3),
        "shortest_span_allowed_s": ideal_span_ms / 1000,
        "pacing_efficiency": round(ideal_span_ms / span_ms, 4) if span_ms else None,
        "cycle_ms_median": statistics.median(cycles) if cycles else None,
        "cycle_ms_max": max(cycles) if cycles else None,
        "largest_gap_ms": max(gaps),
        "first_create_after_s": round(first_s, 3),
        "last_create_after_s": round(last_create_s, 3),
        "dispatch_pass_s": round(run["first_dispatch_end"] - run["first_dispatch_start"], 3),
        "run_once_wall_s": round(run["end"] - run["start"], 3),
        "dispatch_passes": len(run["passes"]),
        "reconcile_passes": len(run["reconciles"]),
        "reconcile_passes_inside_create_span": len(in_span),
        "run_once_sent": result.sent,
        "alerts": len(venue.alerts),
        "venue": facts,
    }
    if venue.alerts:
        problems.append(f"{len(venue.alerts)} alerts, first: {venue.alerts[0]}")
    return figures, problems


# --------------------------------------------------------------------------- part 2


def presigned(secret: bytes, tag: str, n: int) -> list[tuple[bytes, dict[str, str]]]:
    """N create requests, bodies and HMAC headers computed in software, before timing."""
    out = []
    for i in range(n):
        intent = make_order_intent(
            category="linear",
            symbol=SYMBOL,
            side="Buy",
            order_type="Limit",
            qty="0.01",
            price="60000",
            time_in_force="GTC",
            order_link_id=f"bare-{tag}-{i}",
        )
        body = create_order_body(intent)
        stamp = time.time_ns() // 1_000_000
        payload = signing_payload(stamp, API_KEY, BARE_RECV_WINDOW_MS, body=body)
        signature = hmac.new(secret, payload, hashlib.sha256).hexdigest()
        headers = auth_headers(API_KEY, stamp, BARE_RECV_WINDOW_MS, signature, "hmac")
        headers["Content-Type"] = "application/json"
        headers["Accept"] = "application/json"
        out.append((body, headers))
    return out


async def bare_loop(url: str, requests: list[tuple[bytes, dict[str, str]]]) -> tuple[float, int]:
    """Sequential POSTs over one keep-alive session; seconds, answers with retCode 0."""
    ok = 0
    timeout = aiohttp.ClientTimeout(total=10.0)
    async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
        start = time.perf_counter()
        for body, headers in requests:
            async with session.post(url + CREATE, data=body, headers=headers) as response:
                answer = json.loads(await response.read())
            ok += answer.get("retCode") == 0
        seconds = time.perf_counter() - start
    return seconds, ok


def lifted_round(
    home: Path,
    kek: HsmKek,
    ring: KeyRing,
    intent_key: IntentKey,
    secret: bytes,
    n: int,
    tag: str,
) -> tuple[dict[str, Any], list[str]]:
    limits = {path: LIFTED for path in DEFAULT_RATE_LIMITS}
    problems: list[str] = []

    # bare baseline: its own fresh simulator
    requests = presigned(secret, tag, n)
    with simulator(secret, limits) as sim:
        bare_s, bare_ok = asyncio.run(asyncio.wait_for(bare_loop(sim.url, requests), 600))
        bare_facts, bare_problems, _ = audit_venue(sim, {f"bare-{tag}-{i}" for i in range(n)})
    problems += [f"bare loop: {p}" for p in bare_problems]
    if bare_ok != n:
        problems.append(f"bare loop: {n - bare_ok} answers without retCode 0")

    # airlock: a fresh store and a fresh simulator
    with Store.open(home / f"lifted-{tag}.db", kek) as store:
        links, _ = queue_orders(store, intent_key, f"lifted-{tag}", n)
        with simulator(secret, limits) as sim:
            venue = build_venue(venue_settings(sim.url), ring, store)
            watch = Stopwatch()
            for part, name, label in (
                (store.venue, "due", "store.venue.due (read)"),
                (store.items, "payload", "store.items.payload (read, decrypt)"),
                (store.venue, "begin", "store.venue.begin (durable write)"),
                (store.venue, "record", "store.venue.record (durable write)"),
                (store.items, "expire_due", "store.items.expire_due (write)"),
            ):
                watch.wrap(part, name, label)
            watch.wrap(venue_module, "_intent_problem", "intent check (P-256 verify)")
            watch.wrap(venue.client, "_sign", "HSM request signing (HMAC)")
            watch.wrap(venue.client, "create_order", "client.create_order (all of it)")
            watch.wrap(venue.supervisor, "connect", "connect (time sync, auth probe)")
            run = asyncio.run(drain(venue, 600.0, watch))
            facts, venue_problems, _ = audit_venue(sim, links, store)
        problems += [f"airlock: {p}" for p in venue_problems]
    airlock_s = run["first_dispatch_end"] - run["start"]
    if run["first_dispatch_sent"] != n:
        problems.append(f"airlock: first dispatch pass sent {run['first_dispatch_sent']} of {n}")
    bare_rate, airlock_rate = n / bare_s, n / airlock_s
    parts = breakdown(watch, airlock_s, n)
    figures = {
        "orders": n,
        "bare_orders_per_s": round(bare_rate, 1),
        "airlock_orders_per_s": round(airlock_rate, 1),
        "ratio_airlock_to_bare": round(airlock_rate / bare_rate, 4),
        "overhead_us_per_order": round((1 / airlock_rate - 1 / bare_rate) * 1e6, 1),
        "bare_us_per_order": round(1e6 / bare_rate, 1),
        "airlock_us_per_order": round(1e6 / airlock_rate, 1),
        "run_once_wall_s": round(run["end"] - run["start"], 3),
        "breakdown": parts,
        "venue": facts,
        "bare_venue": bare_facts,
    }
    return figures, problems


def breakdown(watch: Stopwatch, total_s: float, n: int) -> list[dict[str, Any]]:
    """Microseconds per order in each part of airlock's drain (until everything is sent)."""
    seconds, calls = dict(watch.seconds), dict(watch.calls)
    whole = "client.create_order (all of it)"
    create, signing = seconds.pop(whole, 0.0), seconds.get("HSM request signing (HMAC)", 0.0)
    exchange = "HTTP exchange and client (create_order minus signing)"
    seconds[exchange], calls[exchange] = create - signing, calls.pop(whole, 0)
    rows = []
    for label, s in sorted(seconds.items(), key=lambda kv: -kv[1]):
        rows.append(
            {
                "part": label,
                "calls": calls.get(label),
                "us_per_order": round(s / n * 1e6, 1),
                "share": round(s / total_s, 3),
            }
        )
    rest = total_s - sum(seconds.values())
    rows.append(
        {
            "part": "rest (broadcaster Python, event loop)",
            "calls": None,
            "us_per_order": round(rest / n * 1e6, 1),
            "share": round(rest / total_s, 3),
        }
    )
    return rows


def hsm_hmac_alone(ring: KeyRing, secret: bytes, n: int) -> dict[str, float]:
    """N HSM HMACs of a create's signing payload, back to back, and the same in software."""
    intent = make_order_intent(
        category="linear",
        symbol=SYMBOL,
        side="Buy",
        order_type="Limit",
        qty="0.01",
        price="60000",
        order_link_id="al-" + "a" * 32,
    )
    payload = signing_payload(
        time.time_ns() // 1_000_000, API_KEY, 5000, body=create_order_body(intent)
    )
    for _ in range(20):
        ring.hmac_sha256(SECRET_LABEL, payload)
    start = time.perf_counter()
    for _ in range(n):
        ring.hmac_sha256(SECRET_LABEL, payload)
    hsm_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(n):
        hmac.new(secret, payload, hashlib.sha256).hexdigest()
    soft_s = time.perf_counter() - start
    return {
        "hsm_hmac_us": round(hsm_s / n * 1e6, 1),
        "software_hmac_us": round(soft_s / n * 1e6, 2),
    }


# --------------------------------------------------------------------------- report


def print_limit(figures: dict[str, Any], r: int) -> None:
    venue = figures["venue"]
    ok = figures["ratio_to_limit"] >= TARGET_LIMIT_RATIO and venue["answers_10006"] == 0
    print(
        f"  round {r}: {figures['orders_per_s']} orders/s over {figures['create_span_s']} s"
        f" (first to last create as the venue saw them), limit {figures['limit_per_s']}/s"
    )
    print(
        f"    ratio to limit {figures['ratio_to_limit']} (target >= {TARGET_LIMIT_RATIO})"
        f", 10006 answers {venue['answers_10006']} (target 0)  {'PASS' if ok else 'FAIL'}"
    )
    print(
        f"    orders placed {venue['orders_placed']} of {figures['orders']}"
        f" ({venue['distinct_placed']} distinct orderLinkIds, {venue['orders_on_venue']}"
        f" on the venue, {venue['links_sent_more_than_once']} sent more than once);"
        f" 403 answers {venue['answers_403']}"
    )
    print(
        f"    shortest span a rolling 1 s window allows {figures['shortest_span_allowed_s']} s:"
        f" pacing efficiency {figures['pacing_efficiency']}; one cycle (create k to k+L)"
        f" median {figures['cycle_ms_median']} ms, max {figures['cycle_ms_max']} ms;"
        f" largest gap {figures['largest_gap_ms']} ms"
    )
    print(
        f"    wall: first create {figures['first_create_after_s']} s after run_once() began,"
        f" last {figures['last_create_after_s']} s; dispatch pass {figures['dispatch_pass_s']} s;"
        f" run_once() {figures['run_once_wall_s']} s in all"
    )
    print(
        f"    run_once: {figures['dispatch_passes']} dispatch passes,"
        f" {figures['reconcile_passes']} reconcile passes"
        f" ({figures['reconcile_passes_inside_create_span']} inside the create span);"
        f" requests by path {venue['requests_by_path']}; store {venue.get('store_states')}"
    )


def print_lifted(figures: dict[str, Any], r: int) -> None:
    print(
        f"  round {r}: airlock {figures['airlock_orders_per_s']} orders/s"
        f" ({figures['airlock_us_per_order']} us/order), bare aiohttp"
        f" {figures['bare_orders_per_s']} orders/s ({figures['bare_us_per_order']} us/order)"
    )
    print(
        f"    ratio airlock/bare {figures['ratio_airlock_to_bare']};"
        f" airlock overhead {figures['overhead_us_per_order']} us per order;"
        f" run_once() with its closing reconcile {figures['run_once_wall_s']} s"
    )
    print(
        f"    airlock placed {figures['venue']['orders_placed']},"
        f" bare placed {figures['bare_venue']['orders_placed']};"
        f" store {figures['venue'].get('store_states')}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=DEFAULT_RATE_LIMITS[CREATE])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--skip-limit", action="store_true", help="part 2 only")
    parser.add_argument("--skip-lifted", action="store_true", help="part 1 only")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temp dir")
    args = parser.parse_args()
    if args.orders < 2 or args.limit < 1 or args.rounds < 1:
        parser.error("need --orders >= 2, --limit >= 1, --rounds >= 1")
    print("command: " + shlex.join(sys.orig_argv))  # as typed, interpreter included
    # Alerts are counted and reported; the library's own log lines would only interleave.
    logging.getLogger("airlock").setLevel(logging.ERROR)
    n, limit = args.orders, args.limit
    started = time.perf_counter()
    report: dict[str, Any] = {"orders": n, "limit": limit, "rounds": args.rounds}
    problems: list[str] = []
    limit_rounds: list[dict[str, Any]] = []
    lifted_rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="airlock-bench-", dir=args.dir) as tmp:
        home = Path(tmp)
        with open_bench_token(home) as ring:
            secret = os.urandom(32)
            ring.import_hmac_secret(SECRET_LABEL, secret)
            ring.generate("p256", INTENT_LABEL)
            intent_key = IntentKey(
                ring.ecdsa_key(INTENT_LABEL, curve="p256"),
                INTENT_LABEL,
                ring.public_key_pem(INTENT_LABEL),
            )
            kek = HsmKek(ring)
            print(
                f"bybit drain: {n} orders, {args.rounds} round(s), {os.cpu_count()} cpus,"
                f" create limit {limit}/s (part 1)"
            )
            for r in range(args.rounds):
                if not args.skip_limit:
                    with Store.open(home / f"limit-{r}.db", kek) as store:
                        links, queue_s = queue_orders(store, intent_key, f"limit-{r}", n)
                        figures, found = limit_round(store, ring, secret, links, n, limit)
                    figures["queue_s"] = round(queue_s, 2)
                    limit_rounds.append(figures)
                    problems += [f"part 1 round {r}: {p}" for p in found]
                    print(f"part 1, per-account limit (queued in {queue_s:.1f} s, not timed)")
                    print_limit(figures, r)
                if not args.skip_lifted:
                    figures, found = lifted_round(home, kek, ring, intent_key, secret, n, str(r))
                    lifted_rounds.append(figures)
                    problems += [f"part 2 round {r}: {p}" for p in found]
                    print("part 2, limits lifted")
                    print_lifted(figures, r)
            if not args.skip_lifted:
                report["hmac_alone"] = hsm_hmac_alone(ring, secret, n)

    if limit_rounds:
        ratios = [f["ratio_to_limit"] for f in limit_rounds]
        rate_limited = sum(f["venue"]["answers_10006"] for f in limit_rounds)
        ok = statistics.median(ratios) >= TARGET_LIMIT_RATIO and rate_limited == 0
        report["limit"] = {
            "ratio_to_limit": statistics.median(ratios),
            "per_round": ratios,
            "answers_10006": rate_limited,
            "pass": ok,
        }
        print(
            f"part 1 summary: orders/s / limit {statistics.median(ratios)} (median of"
            f" {ratios}), target >= {TARGET_LIMIT_RATIO}; 10006 answers {rate_limited},"
            f" target 0  {'PASS' if ok else 'FAIL'}"
        )
    if lifted_rounds:
        ratios = [f["ratio_airlock_to_bare"] for f in lifted_rounds]
        overheads = [f["overhead_us_per_order"] for f in lifted_rounds]
        report["lifted"] = {
            "ratio_airlock_to_bare": statistics.median(ratios),
            "overhead_us_per_order": statistics.median(overheads),
            "per_round": ratios,
        }
        print(
            f"part 2 summary: airlock/bare {statistics.median(ratios)} (median of {ratios});"
            f" airlock overhead {statistics.median(overheads)} us per order (median of"
            f" {overheads})"
        )
        last = lifted_rounds[-1]
        print(f"  where airlock's drain time goes (round {len(lifted_rounds) - 1}, per order):")
        for row in last["breakdown"]:
            calls = "" if row["calls"] is None else f"{row['calls']:6} calls"
            print(
                f"    {row['part']:56} {row['us_per_order']:9.1f} us {row['share']:6.1%}  {calls}"
            )
        alone = report["hmac_alone"]
        print(
            f"  {n} HSM HMACs alone (keyring.hmac_sha256, back to back):"
            f" {alone['hsm_hmac_us']} us each; software hmac {alone['software_hmac_us']} us"
        )
    report["limit_rounds"] = limit_rounds
    report["lifted_rounds"] = lifted_rounds
    report["problems"] = problems
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    print(f"total runtime {report['total_seconds']} s")
    if args.json:
        print(json.dumps(report, separators=(",", ":"), default=str))
    if problems:
        print("PROBLEMS (exit 1):")
        for p in problems:
            print(f"  {p}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
