"""``airlock broadcaster run``, ``airlock reconcile`` and ``airlock links status``.

Thin: build the relays and the broadcaster from the configuration, run them on an event
loop, print what happened. Progress goes to stderr as log lines; summaries to stdout.
The service (aiohttp, prometheus_client, the relays, the signer) is imported only by the
commands that run it.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from airlock.cli import common
from airlock.errors import AirlockError
from airlock.queue.states import State
from airlock.redact import redact_url

if TYPE_CHECKING:
    from airlock.broadcaster.results import PassResult
    from airlock.broadcaster.runner import Service
    from airlock.broadcaster.venue import VenueResult
    from airlock.config import AirlockConfig
    from airlock.hsm.keyring import KeyRing
    from airlock.queue.store import Store

T = TypeVar("T")


def _log_to_stderr(ctx: click.Context, verbose: bool) -> None:
    """Log lines to stderr, as text or JSON (``[service] log_format``)."""
    from airlock.broadcaster.alerts import configure_logging  # aiohttp (the alert webhook)

    configure_logging(common.config(ctx).service.log_format, verbose)


def _with_service(
    ctx: click.Context, job: Callable[[Service, KeyRing], Awaitable[T]]
) -> tuple[T, dict[str, int]]:
    """Hold the one-broadcaster lock, open the queue and the HSM, start whichever sides are
    configured (the EVM broadcaster for ``[[relays]]``, the Bybit one for ``[bybit]``),
    run ``job`` with the service and the HSM session; return its result and the queue's
    count per state afterwards."""
    import asyncio
    from contextlib import nullcontext

    from airlock.broadcaster.lock import ServiceLock
    from airlock.broadcaster.setup import build_service  # the relays, aiohttp, prometheus
    from airlock.relays.bybit import BybitAuthError

    settings = common.config(ctx)
    try:
        # One broadcaster per SQLite file, by its lock; a PostgreSQL queue is shared by
        # leases on lanes (broadcaster/keeper.py).
        lock = ServiceLock(settings.queue.path) if settings.queue.url is None else nullcontext()
        with lock, common.open_store(ctx) as (store, ring):
            service = build_service(settings, store, ring)

            async def main() -> T:
                async with service.started():
                    return await job(service, ring)

            outcome = asyncio.run(main())
            return outcome, _counts(store)
    except BybitAuthError as exc:
        raise AirlockError(f"Bybit refused the API key: {exc.reason}") from None


def _counts(store: Store) -> dict[str, int]:
    return {str(state): n for state in State if (n := store.items.count(state))}


def _summary(result: PassResult, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "sent": result.sent,
        "settled": result.settled,
        "bumped_or_rebroadcast": result.bumped,
        "expired": result.expired,
        "alerts": result.alerts,
        "queue": counts,
    }


def _summary_text(data: dict[str, Any]) -> str:
    queue = ", ".join(f"{k} {v}" for k, v in data["queue"].items()) or "empty"
    lines = [
        f"sent {data['sent']}, settled {data['settled']}, "
        f"bumped/rebroadcast {data['bumped_or_rebroadcast']}, expired {data['expired']}",
    ]
    bybit = data.get("bybit")
    if bybit is not None:
        lines.append(
            f"bybit: sent {bybit['sent']}, settled {bybit['settled']}, requeued "
            f"{bybit['requeued']}, quarantined {bybit['quarantined']}, new fills {bybit['fills']}"
        )
    lines.append(f"queue: {queue}")
    lines += [f"alert: {a}" for a in data["alerts"]]
    return "\n".join(lines)


def _venue_summary(result: VenueResult) -> dict[str, Any]:
    return {
        "sent": result.sent,
        "settled": result.settled,
        "requeued": result.requeued,
        "quarantined": result.quarantined,
        "fills": result.fills,
    }


@click.group("broadcaster")
def broadcaster_group() -> None:
    """The service that sends queued items the moment a link returns."""


@broadcaster_group.command("run")
@click.option(
    "--once",
    is_flag=True,
    help="Dispatch, bump and reconcile until nothing more can progress, then exit.",
)
@common.config_option
@click.option("--json", "as_json", is_flag=True, help="With --once: the summary as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and alerts on stderr.")
@click.pass_context
def broadcaster_run(
    ctx: click.Context, once: bool, config_path: Path | None, as_json: bool, quiet: bool
) -> None:
    """Drain the queue through every healthy relay; watch the chain until stopped."""
    common.use_config(ctx, config_path)
    _log_to_stderr(ctx, not quiet)
    if once:
        outcome, counts = _with_service(ctx, lambda s, _: s.run_once())
        data = _summary(outcome.evm, counts)
        if outcome.bybit is not None:
            data["bybit"] = _venue_summary(outcome.bybit)
        common.emit(as_json, data, lambda: _summary_text(data))
        return
    settings = common.config(ctx)
    _with_service(ctx, lambda service, ring: _serve(settings, service, ring))


async def _serve(settings: AirlockConfig, service: Service, ring: KeyRing) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly (every write is already durable);
    serve the local API beside the service unless ``[api] enabled = false``."""
    import asyncio

    from airlock.api.serve import serve_api, service_airlock  # aiohttp

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if not settings.api.enabled:
        await service.run(stop)
        return
    al = service_airlock(settings, ring, service)
    async with serve_api(al, settings.api, settings.home) as server:
        where = str(server.socket) + (f" and {server.tcp_url}" if server.tcp_url else "")
        logging.getLogger("airlock.api").info("local API on %s", where)
        await service.run(stop)


@click.command("reconcile")
@common.config_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def reconcile(ctx: click.Context, config_path: Path | None, as_json: bool) -> None:
    """One reconcile pass — receipts, replacements, reorgs, bumps; Bybit order states and
    fills — with no new dispatch."""
    from airlock.broadcaster.results import PassResult
    from airlock.broadcaster.venue import VenueResult

    common.use_config(ctx, config_path)
    _log_to_stderr(ctx, False)

    async def job(service: Service, _: KeyRing) -> tuple[PassResult, VenueResult | None]:
        evm, venue = service.evm, service.venue
        result = PassResult()
        if evm is not None:
            await evm.monitor.probe_all()
            result = await evm.reconcile()
        venue_result = None
        if venue is not None:
            venue_result = VenueResult()
            if await venue.connect():
                venue_result = await venue.reconcile()
            else:
                venue_result.alerts.append(f"bybit unreachable: {venue.last_error}")
            result.alerts += venue_result.alerts
        service.write_notes()
        return result, venue_result

    (result, venue_result), counts = _with_service(ctx, job)
    data = _summary(result, counts)
    if venue_result is not None:
        data["bybit"] = _venue_summary(venue_result)
    common.emit(as_json, data, lambda: _summary_text(data))


@click.group("links")
def links_group() -> None:
    """The relays and the links they are reached over."""


@links_group.command("status")
@common.config_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def links_status(ctx: click.Context, config_path: Path | None, as_json: bool) -> None:
    """Probe every relay now (chain id, head block) and show its health."""
    import asyncio

    from airlock.broadcaster.setup import build_relays  # the relays: aiohttp, eth_utils
    from airlock.hsm.keyring import KeyRing
    from airlock.relays.health import Monitor
    from airlock.relays.jsonrpc import started

    common.use_config(ctx, config_path)
    settings = common.config(ctx)
    needs_hsm = any(r.auth_key_label for r in settings.relays)
    with common.keyring(ctx) if needs_hsm else contextlib.nullcontext() as ring:
        relays = build_relays(settings, ring if isinstance(ring, KeyRing) else None)

        async def probe() -> dict[str, Any]:
            async with started(relays):
                return await Monitor(relays, settings.broadcaster.health).probe_all()

        snapshots = asyncio.run(probe())
    rows = []
    for relay in settings.relays:
        snap = snapshots[relay.name].as_json()
        rows.append(
            snap
            | {
                "kind": relay.kind,
                "url": redact_url(relay.url),
                "link": relay.link,
                "expected_chain_id": relay.chain_id,
            }
        )
    common.emit(as_json, rows, lambda: _links_text(rows))


def _links_text(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        latency = "-" if row.get("latency_ms") is None else f"{row['latency_ms']:.0f} ms"
        head = "-" if row.get("head") is None else str(row["head"])
        line = (
            f"{row['relay']:<16} {row['state']:<9} {row['kind']:<12} head {head:<10} "
            f"latency {latency:<8} {row['url']}"
        )
        if row.get("last_error") and row["state"] != "up":
            line += f"  ({row['last_error']})"
        lines.append(line)
    return "\n".join(lines)
