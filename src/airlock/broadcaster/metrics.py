"""The broadcaster's Prometheus metrics and its ``/metrics`` + ``/healthz`` endpoint,
with the live status page (``/`` and ``/status.json``) beside them.

Every metric lives in the :class:`Metrics` object's own ``CollectorRegistry`` (never the
process-global one), so two services or two tests in one process never share counters.
The queue gauges are read from the store at scrape time; everything else is pushed by
the service through the small ``observe_*`` / ``set_*`` methods.

The HTTP endpoint has no authentication, so it only ever listens on a loopback address;
anything else is refused before a socket is opened. Scrapes and health checks read the
store in a worker thread so a held store lock never stalls the event loop. The status
page, which a browser opens, also refuses a request whose ``Host`` is not a loopback
name (a DNS-rebinding page on another site could otherwise read it).

The metric list, with labels and meaning, is in docs/observability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ipaddress
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from airlock.broadcaster import statuspage
from airlock.errors import ConfigError
from airlock.queue.items import Kind
from airlock.queue.states import LIVE, State
from airlock.queue.store import Store

if TYPE_CHECKING:
    from airlock.relays.health import HealthSnapshot

log = logging.getLogger(__name__)

SIGN_OPS = ("ecdsa", "hmac", "rsa")
RECONCILE_SIDES = ("evm", "bybit")
ALERT_CHANNELS = ("webhook", "command", "store")
LOOPBACK_NAMES = ("localhost",)

PERSIST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FAILOVER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
SIGN_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

HEALTH_TIMEOUT_S = 5.0  # a check that takes longer counts as failed
STATUS_TIMEOUT_S = 5.0  # a status reading that takes longer gives the "unavailable" page

CheckValue = bool | tuple[bool, str]
Checks = Mapping[str, CheckValue]
ChecksFn = Callable[[], Checks | Awaitable[Checks]]
StatusData = Mapping[str, Any]
StatusFn = Callable[[], StatusData | Awaitable[StatusData]]


class _QueueCollector(Collector):
    """``airlock_queue_items`` and ``airlock_queue_oldest_item_seconds``, read at scrape.

    Every known kind x state is reported (zero when empty) so a series never vanishes
    when its last item leaves; a store that cannot be read gives no queue samples and a
    warning in the log, not a failed scrape (``/healthz`` reports the store separately).
    """

    def __init__(self, store: Store) -> None:
        self._store = store

    def describe(self) -> list[GaugeMetricFamily]:
        return [_items_family(), _oldest_family()]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        items, oldest = _items_family(), _oldest_family()
        try:
            rows = self._store.items.counts_by_kind()
            now_ms = self._store.now_ms()
        except Exception as exc:
            log.warning("metrics: the queue could not be read (%s)", type(exc).__name__)
            yield items
            yield oldest
            return
        counts: dict[tuple[str, str], int] = {
            (str(kind), str(state)): 0 for kind in Kind for state in State
        }
        oldest_ms: int | None = None
        for kind, state, count, created_ms in rows:
            counts[(kind, state)] = counts.get((kind, state), 0) + count
            if state in LIVE and created_ms is not None:
                oldest_ms = created_ms if oldest_ms is None else min(oldest_ms, created_ms)
        for (kind, state), count in sorted(counts.items()):
            items.add_metric([state, kind], count)
        age = 0.0 if oldest_ms is None else max(0.0, (now_ms - oldest_ms) / 1000)
        oldest.add_metric([], age)
        yield items
        yield oldest


def _items_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "airlock_queue_items",
        "Items in the queue by state and kind (evm_tx, bybit_order, bybit_cancel).",
        labels=["state", "kind"],
    )


def _oldest_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "airlock_queue_oldest_item_seconds",
        "Age of the oldest live item (queued, sending, sent or needs_operator); 0 when none.",
    )


class Metrics:
    """The broadcaster's metrics; one per service, each with its own registry.

    ``store`` (optional) feeds the queue gauges at scrape time. ``clock`` is the
    monotonic clock :meth:`beat` and :meth:`loop_age_s` use.
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._clock = clock
        self._last_beat = clock()  # a fresh service gets a grace period of one gap
        self._timings(self.registry)
        self._counts(self.registry)
        if store is not None:
            self.registry.register(_QueueCollector(store))

    def _timings(self, r: CollectorRegistry) -> None:
        """Durations and link readings: histograms and gauges."""
        self.persist = Histogram(
            "airlock_outage_to_persist_seconds",
            "Time from outage detection to the item being durably persisted in the queue.",
            buckets=PERSIST_BUCKETS,
            registry=r,
        )
        self.failover = Histogram(
            "airlock_failover_seconds",
            "Time from outage detection to the first send over a backup link or relay.",
            buckets=FAILOVER_BUCKETS,
            registry=r,
        )
        self.link_up = Gauge(
            "airlock_link_up",
            "1 when the link or relay is usable, 0 when not.",
            ["link"],
            registry=r,
        )
        self.link_latency = Gauge(
            "airlock_link_latency_seconds",
            "Latency of the last successful probe of the link or relay.",
            ["link"],
            registry=r,
        )
        self.hsm_sign = Histogram(
            "airlock_hsm_sign_seconds",
            "HSM signing latency by operation (ecdsa, hmac, rsa).",
            ["op"],
            buckets=SIGN_BUCKETS,
            registry=r,
        )

    def _counts(self, r: CollectorRegistry) -> None:
        """What happened, counted: sends, bumps, reconciles, alerts."""
        self.sends = Counter(
            "airlock_sends",
            "Sends by relay (or venue) and normalised outcome.",
            ["relay", "outcome"],
            registry=r,
        )
        self.bumps = Counter(
            "airlock_bumps",
            "Fee bumps: a higher pre-signed (or re-signed) variant sent.",
            registry=r,
        )
        self.reconcile = Counter(
            "airlock_reconcile",
            "Reconcile results by side (evm, bybit) and result.",
            ["side", "result"],
            registry=r,
        )
        self.alerts = Counter(
            "airlock_alerts",
            "Alerts raised, by key; delivered=false when suppressed by de-duplication.",
            ["key", "delivered"],
            registry=r,
        )
        self.alert_failures = Counter(
            "airlock_alert_failures",
            "Alert deliveries that failed, by channel (webhook, command, store).",
            ["channel"],
            registry=r,
        )

    # -- what the service calls ---------------------------------------------------------

    def observe_send(self, relay: str, outcome: str) -> None:
        self.sends.labels(relay=relay, outcome=str(outcome)).inc()

    def observe_bump(self, n: int = 1) -> None:
        if n > 0:
            self.bumps.inc(n)

    def observe_reconcile(self, side: str, result: str, n: int = 1) -> None:
        if side not in RECONCILE_SIDES:
            raise ValueError(f"reconcile side must be one of {RECONCILE_SIDES}, got {side!r}")
        if n > 0:
            self.reconcile.labels(side=side, result=str(result)).inc(n)

    def set_link(self, name: str, up: bool, latency_s: float | None = None) -> None:
        """A link's availability; ``latency_s`` None drops the latency series (unknown)."""
        self.link_up.labels(link=name).set(1 if up else 0)
        if latency_s is None:
            with contextlib.suppress(KeyError):
                self.link_latency.remove(name)
        else:
            self.link_latency.labels(link=name).set(latency_s)

    def set_links(self, snapshots: Mapping[str, HealthSnapshot]) -> None:
        """Every relay of ``Monitor.snapshots()`` at once."""
        for name, snap in snapshots.items():
            latency = None if snap.latency_ms is None else snap.latency_ms / 1000
            self.set_link(name, snap.usable, latency)

    def observe_persist(self, seconds: float) -> None:
        self.persist.observe(max(0.0, seconds))

    def observe_failover(self, seconds: float) -> None:
        self.failover.observe(max(0.0, seconds))

    def observe_alert(self, key: str, delivered: bool) -> None:
        self.alerts.labels(key=key, delivered="true" if delivered else "false").inc()

    def observe_alert_failure(self, channel: str) -> None:
        self.alert_failures.labels(channel=channel).inc()

    @contextlib.contextmanager
    def time_sign(self, op: str) -> Iterator[None]:
        """Time one HSM operation (``with metrics.time_sign("ecdsa"): ...``); failures too."""
        if op not in SIGN_OPS:
            raise ValueError(f"sign op must be one of {SIGN_OPS}, got {op!r}")
        start = time.perf_counter()
        try:
            yield
        finally:
            self.hsm_sign.labels(op=op).observe(time.perf_counter() - start)

    def beat(self) -> None:
        """The service loop ran (for the ``loop`` health check)."""
        self._last_beat = self._clock()

    def loop_age_s(self) -> float:
        return max(0.0, self._clock() - self._last_beat)

    def render(self) -> bytes:
        """The registry in the Prometheus text format (reads the store: blocking)."""
        return generate_latest(self.registry)

    # -- the endpoint -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def serve(
        self,
        host: str,
        port: int,
        *,
        checks: ChecksFn | None = None,
        status: StatusFn | None = None,
    ) -> AsyncIterator[MetricsServer]:
        """Serve ``/metrics`` and ``/healthz`` on ``host:port`` (loopback only) on the
        running event loop until the block ends. ``port`` 0 picks a free port; the
        yielded :class:`MetricsServer` says which. With ``status`` (a callable returning
        the data of :mod:`airlock.broadcaster.status`; a synchronous one runs in a
        worker thread, bounded like ``checks``), also the status page at ``/`` and the
        same data at ``/status.json``."""
        check_loopback(host)
        app = web.Application()
        app.router.add_get("/metrics", self._metrics_handler)
        app.router.add_get("/healthz", _health_handler(checks))
        if status is not None:
            app.router.add_get("/", _page_handler(status))
            app.router.add_get("/status.json", _status_json_handler(status))
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, reuse_address=True)
            await site.start()
            bound = _bound_port(runner, port)
            log.info("metrics on http://%s:%d/metrics", host, bound)
            yield MetricsServer(host=host, port=bound)
        finally:
            await runner.cleanup()

    async def _metrics_handler(self, request: web.Request) -> web.Response:
        body = await asyncio.to_thread(self.render)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@dataclass(frozen=True)
class MetricsServer:
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_loopback(host: str) -> None:
    """Refuse any host that is not a loopback address: the endpoint has no auth."""
    if not is_loopback(host):
        raise ConfigError(
            f"the metrics endpoint only listens on a loopback address (127.0.0.1, ::1 or "
            f"localhost), got {host!r}: it has no authentication; put a proxy in front "
            "to expose it"
        )


def _bound_port(runner: web.AppRunner, asked: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return asked


def _health_handler(
    checks: ChecksFn | None,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        body = await run_checks(checks)
        status = 200 if body["status"] == "ok" else 503
        return web.json_response(body, status=status, dumps=_dumps)

    return handler


async def _call(fn: Callable[[], Any]) -> Any:
    """``fn()``: awaited when it is a coroutine function, else run in a worker thread
    (and its result awaited if it is awaitable)."""
    if inspect.iscoroutinefunction(fn):
        return await fn()
    raw = await asyncio.to_thread(fn)
    if inspect.isawaitable(raw):
        raw = await raw
    return raw


async def run_checks(checks: ChecksFn | None) -> dict[str, Any]:
    """Run ``checks`` (sync ones in a thread) within a bound; the /healthz body."""
    if checks is None:
        return {"status": "ok", "checks": {}}
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_S):
            raw = await _call(checks)
    except TimeoutError:
        raw = {"checks": (False, f"the checks took longer than {HEALTH_TIMEOUT_S:g} s")}
    except Exception as exc:
        log.warning("health checks failed", exc_info=True)
        raw = {"checks": (False, f"the checks raised {type(exc).__name__}")}
    result: dict[str, dict[str, Any]] = {}
    for name, value in raw.items():
        ok, detail = value if isinstance(value, tuple) else (value, None)
        result[name] = {"ok": bool(ok), "detail": detail}
    healthy = all(c["ok"] for c in result.values())
    return {"status": "ok" if healthy else "degraded", "checks": result}


async def run_status(status: StatusFn) -> tuple[StatusData | None, str | None]:
    """Read ``status`` within a bound: (the data, None), or (None, why not)."""
    try:
        async with asyncio.timeout(STATUS_TIMEOUT_S):
            data = await _call(status)
    except TimeoutError:
        return None, f"the status took longer than {STATUS_TIMEOUT_S:g} s to read"
    except Exception as exc:
        log.warning("status page: the status could not be read", exc_info=True)
        return None, f"the status could not be read ({type(exc).__name__})"
    return data, None


def host_allowed(request: web.BaseRequest) -> bool:
    """The request names a loopback host (``Host: 127.0.0.1:9464``, ``[::1]``,
    ``localhost``): a page of another site that rebound its name to 127.0.0.1 does not."""
    host = request.headers.get("Host", "")
    if host.startswith("["):
        name = host[1:].partition("]")[0]
    else:
        name = host.rpartition(":")[0] if host.count(":") == 1 else host
    return is_loopback(name.lower())


def _misdirected() -> web.Response:
    return web.Response(
        status=421,
        text="the status page answers only to a loopback Host (127.0.0.1, [::1], localhost)\n",
        headers=dict(statuspage.HEADERS),
    )


def _page_handler(status: StatusFn) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        if not host_allowed(request):
            return _misdirected()
        refresh = statuspage.refresh_from_query(request.query.get("refresh"))
        data, problem = await run_status(status)
        if data is None:
            text = statuspage.render_unavailable(problem or "unavailable", refresh_s=refresh)
        else:
            text = statuspage.render_page(data, refresh_s=refresh)
        return web.Response(
            text=text,
            status=200 if data is not None else 503,
            content_type="text/html",
            charset="utf-8",
            headers=dict(statuspage.HEADERS),
        )

    return handler


def _status_json_handler(status: StatusFn) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        if not host_allowed(request):
            return _misdirected()
        data, problem = await run_status(status)
        body = {"error": problem} if data is None else data
        return web.json_response(
            body,
            status=200 if data is not None else 503,
            headers=dict(statuspage.HEADERS),
            dumps=lambda obj: json.dumps(obj, indent=2),
        )

    return handler


def service_checks(
    store: Store, metrics: Metrics, max_loop_gap_s: float = 60.0
) -> Callable[[], dict[str, CheckValue]]:
    """The usual checks: the store answers a read, and the service loop called
    :meth:`Metrics.beat` within ``max_loop_gap_s``."""

    def checks() -> dict[str, CheckValue]:
        out: dict[str, CheckValue] = {}
        try:
            store.items.counts_by_kind()
            out["store"] = (True, "readable")
        except Exception as exc:
            out["store"] = (False, f"unreadable: {type(exc).__name__}")
        age = metrics.loop_age_s()
        out["loop"] = (age <= max_loop_gap_s, f"last pass {age:.1f} s ago")
        return out

    return checks


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)
