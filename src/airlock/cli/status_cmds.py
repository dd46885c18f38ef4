"""``airlock status``: one screen an operator reads at a glance during an outage.

Five sections, the same in text and JSON: LINKS (every relay probed now, and Bybit),
QUEUE (counts by kind and state, the oldest live item), NONCES (per chain and sender),
BROADCASTER (the service's heartbeat and last reconcile, from its notes in the queue) and
ALERTS (the open ones). The command only reads: the queue is opened through the HSM
because its data keys are wrapped there, and a missing queue file is reported, not
created. Links being down is information, not an error: the exit status is 0 and a
warning says so on stderr; 1 only for errors (configuration, HSM). The probes live in
:mod:`airlock.cli.status_probe`, imported only when probing: without them the command
loads neither aiohttp nor the relays. What the sections hold is computed by
:mod:`airlock.broadcaster.status`, which the service's status page (``GET /`` beside
``/metrics``) reads too: this module only adds the probes, the wording and the layout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from airlock.broadcaster import status as status_data
from airlock.broadcaster.status import (
    NOTE_HEARTBEAT,
    NOTE_PID,
    NOTE_RECONCILE,
    STALE_HEARTBEAT_S,
    STATE_ORDER,
    age,
    ago,
)
from airlock.cli import common
from airlock.clock import wall_clock_ms

if TYPE_CHECKING:
    from airlock.config import AirlockConfig
    from airlock.hsm.keyring import KeyRing
    from airlock.queue.store import Store

__all__ = [
    "NOTE_HEARTBEAT",
    "NOTE_PID",
    "NOTE_RECONCILE",
    "STALE_HEARTBEAT_S",
    "STATE_ORDER",
    "age",
    "collect",
    "render",
    "status",
]


@click.command("status")
@common.config_option
@click.option("--json", "as_json", is_flag=True, help="One object with the same sections.")
@click.option("--no-probe", is_flag=True, help="No network I/O: links are shown 'not probed'.")
@click.pass_context
def status(ctx: click.Context, config_path: Path | None, as_json: bool, no_probe: bool) -> None:
    """Links, queue, nonces, broadcaster and open alerts on one screen (reads only)."""
    common.use_config(ctx, config_path)
    settings = common.config(ctx)
    data = collect(ctx, settings, probe=not no_probe)
    common.emit(as_json, data, lambda: render(data))
    links = data["links"]
    if links["down"]:
        message = f"links down: {', '.join(links['down'])}"
        if not links["any_up"]:
            message += f"; no link is up, {data['queue']['live']} live item(s) wait"
        common.warn(message)


def collect(ctx: click.Context, settings: AirlockConfig, *, probe: bool) -> dict[str, Any]:
    """Every section as data. The HSM is always opened (its failure is an error), the
    queue only when its file exists."""
    path = settings.queue.path
    on_server = settings.queue.url is not None  # a PostgreSQL queue: always there to open
    with _local(ctx, on_server or path.exists()) as (store, ring):
        now = wall_clock_ms()
        if store is not None:
            local = status_data.read_store(store, now)
        else:
            local = status_data.no_store(path)
        links = _links(settings, ring, probe=probe)
    shown = store.shown if store is not None else str(path)
    return {"generated_ms": now, "queue_path": shown, "links": links, **local}


@contextlib.contextmanager
def _local(ctx: click.Context, exists: bool) -> Iterator[tuple[Store | None, KeyRing]]:
    if exists:
        with common.open_store(ctx) as (store, ring):
            yield store, ring
    else:
        with common.keyring(ctx) as ring:
            yield None, ring


# --------------------------------------------------------------------------- links


def _links(settings: AirlockConfig, ring: KeyRing, *, probe: bool) -> dict[str, Any]:
    probes: dict[str, dict[str, Any]] = {}
    bybit_probe: dict[str, Any] | None = None
    if probe:
        from airlock.cli.status_probe import probe_all  # aiohttp and the relays: to probe only

        probes, bybit_probe = probe_all(settings, ring)
    bybit = None
    if settings.bybit is not None:
        b = settings.bybit
        bybit = status_data.bybit_row(b.account, b.base_url, b.recv_window_ms, bybit_probe)
    return status_data.links_section(settings.relays, probes, bybit, probed=probe)


# --------------------------------------------------------------------------- text


def render(data: dict[str, Any]) -> str:
    when = datetime.fromtimestamp(data["generated_ms"] / 1000, UTC)
    head = f"airlock status  {when.isoformat(timespec='seconds').replace('+00:00', 'Z')}"
    sections = [
        head,
        _links_text(data["links"]),
        _queue_text(data["queue"], data["queue_path"]),
        _nonces_text(data["nonces"]),
        _broadcaster_text(data["broadcaster"]),
        _alerts_text(data["alerts"]),
    ]
    return "\n\n".join(sections)


def _table(header: list[str] | None, rows: list[list[str]], right: set[int]) -> list[str]:
    """Aligned columns, two spaces apart, indented by two; ``right`` columns right-aligned."""
    every = rows if header is None else [header, *rows]
    widths = [max(len(r[i]) for r in every) for i in range(len(every[0]))]

    def line(cells: list[str]) -> str:
        parts = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return ("  " + "  ".join(parts)).rstrip()

    return [line(r) for r in every]


def _links_text(links: dict[str, Any]) -> str:
    rows = links["relays"] + ([links["bybit"]] if links["bybit"] is not None else [])
    if not rows:
        return "LINKS  none configured (add [[relays]] or [bybit] to airlock.toml)"
    if not links["probed"]:
        title = "LINKS  not probed (--no-probe)"
    else:
        up = sum(1 for r in rows if r["usable"])
        title = f"LINKS  {up} of {len(rows)} up"
        if not links["any_up"]:
            title += "  -- NO LINK IS UP: nothing can be sent; queued items wait"
        elif links["down"]:
            title += f"  -- DOWN: {', '.join(links['down'])}"
    table: list[list[str]] = []
    errors: dict[int, str] = {}
    for row in rows:
        if row["kind"] == "bybit":
            detail = "-" if row["offset_ms"] is None else f"clock offset {row['offset_ms']:+d} ms"
        else:
            detail = "-" if row["head"] is None else f"head {row['head']}"
        latency = "-" if row["latency_ms"] is None else f"{row['latency_ms']} ms"
        table.append([row["name"], row["kind"], row["state"].upper(), detail, latency, row["url"]])
        if row["last_error"]:
            errors[len(table)] = row["last_error"]
    lines = _table(["NAME", "KIND", "STATE", "HEAD / CLOCK", "LATENCY", "URL"], table, {4})
    out = [title]
    for n, line in enumerate(lines):
        out.append(line)
        if n in errors:
            out.append(f"    error: {errors[n]}")
    return "\n".join(out)


def _queue_text(queue: dict[str, Any], path: str) -> str:
    if not queue["exists"]:
        return f"QUEUE  no queue yet ({path} does not exist)"
    if not queue["total"]:
        return "QUEUE  empty"
    title = f"QUEUE  {queue['live']} live, {queue['total']} in all"
    present = [str(s) for s in STATE_ORDER if str(s) in queue["by_state"]]
    rows = [
        [kind, *(str(counts.get(s, "-")) for s in present)]
        for kind, counts in sorted(queue["by_kind"].items())
    ]
    lines = [title, *_table(["KIND", *present], rows, set(range(1, len(present) + 1)))]
    oldest = queue["oldest_live"]
    if oldest is not None:
        lines.append(
            f"  oldest live: {oldest['id']}  {oldest['kind']} {oldest['state']}, "
            f"waiting {age(oldest['age_s'])}  ({oldest['account']})"
        )
    return "\n".join(lines)


def _nonces_text(nonces: list[dict[str, Any]]) -> str:
    if not nonces:
        return "NONCES  no senders yet"
    rows = []
    for n in nonces:
        lowest = "-" if n["lowest_live"] is None else str(n["lowest_live"])
        pending = "-" if n["chain_pending"] is None else str(n["chain_pending"])
        gaps = ", ".join(map(str, n["gaps"])) if n["gaps"] else "-"
        rows.append(
            [
                str(n["chain_id"]),
                n["sender"],
                str(n["next_nonce"]),
                str(n["live"]),
                lowest,
                pending,
                ago(n["synced_age_s"]),
                gaps,
            ]
        )
    header = ["CHAIN", "SENDER", "NEXT", "LIVE", "LOWEST", "CHAIN PENDING", "SYNCED", "GAPS"]
    title = "NONCES"
    if any(n["gaps"] for n in nonces):
        title += "  -- GAPS: later nonces wait until each gap is filled"
    return "\n".join([title, *_table(header, rows, {2, 3, 4, 5})])


def _broadcaster_text(b: dict[str, Any]) -> str:
    if b["heartbeat_ms"] is None:
        title = "BROADCASTER  no heartbeat ever recorded (never run as a service here?)"
    elif b["stale"]:
        title = (
            f"BROADCASTER  -- NOT RUNNING? last heartbeat {ago(b['heartbeat_age_s'])} "
            "(start it: airlock broadcaster run)"
        )
    else:
        title = "BROADCASTER  running"
    pid = "" if b["pid"] is None else f"  (pid {b['pid']})"
    lines = [
        title,
        f"  heartbeat       {ago(b['heartbeat_age_s'])}{pid}",
        f"  last reconcile  {ago(b['last_reconcile_age_s'])}",
    ]
    return "\n".join(lines)


def _alerts_text(alerts: list[dict[str, Any]]) -> str:
    if not alerts:
        return "ALERTS  none open"
    lines = [f"ALERTS  {len(alerts)} open"]
    rows = [
        [
            a["severity"].upper(),
            a["key"],
            f"x{a['count']}",
            f"first {ago(a['first_age_s'])}",
            f"last {ago(a['last_age_s'])}",
        ]
        for a in alerts
    ]
    for alert, line in zip(alerts, _table(None, rows, {2}), strict=True):
        lines.append(line)
        lines.append(f"    {alert['message']}")
    return "\n".join(lines)
