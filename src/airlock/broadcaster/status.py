"""What ``airlock status`` and the service's status page show, as data.

Five sections, plain JSON-ready dicts in a fixed key order (``airlock status --json``
prints them as they are): LINKS (each relay and Bybit), QUEUE (counts by kind and state,
the oldest live item), NONCES (per chain and sender), BROADCASTER (the service's heartbeat
and last reconcile, from its notes in the queue) and ALERTS (the open ones).

Where the links come from is the caller's business: ``airlock status`` probes each relay
once (:mod:`airlock.cli.status_probe`); the running service reads its own link monitor
(:func:`live_relay_probe`, :func:`live_bybit_probe`), so the page shows exactly what the
broadcaster routes by. Everything else is read from the store (:func:`read_store`).

Imports nothing of the network stack at run time (``airlock status --no-probe`` loads
this module and must load neither aiohttp nor the relays).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airlock.clock import wall_clock_ms
from airlock.queue.states import LIVE, State
from airlock.redact import redact_url

if TYPE_CHECKING:
    from airlock.config import RelayConfig
    from airlock.queue.store import Store
    from airlock.relays.health import HealthSnapshot

log = logging.getLogger(__name__)

STALE_HEARTBEAT_S = 15.0  # the service writes its heartbeat every few seconds

NOTE_HEARTBEAT = "broadcaster.heartbeat_ms"
NOTE_RECONCILE = "broadcaster.last_reconcile_ms"
NOTE_PID = "broadcaster.pid"

SECTIONS = ("links", "queue", "nonces", "broadcaster", "alerts")

# Live states first (what still waits or may still land), then the final ones.
STATE_ORDER = [
    State.QUEUED,
    State.SENDING,
    State.SENT,
    State.NEEDS_OPERATOR,
    State.QUARANTINED,
    State.CONFIRMED,
    State.REPLACED,
    State.REJECTED,
    State.EXPIRED,
    State.CANCELLED,
]


# --------------------------------------------------------------------------- links


def links_section(
    relays: Sequence[RelayConfig],
    probes: Mapping[str, dict[str, Any]],
    bybit: dict[str, Any] | None,
    *,
    probed: bool,
) -> dict[str, Any]:
    """The LINKS section: one row per relay (``probes`` by relay name; a relay without
    one is "not probed") and the Bybit row (:func:`bybit_row`, None: not configured)."""
    rows = [relay_row(relay, probes.get(relay.name)) for relay in relays]
    every = rows + ([bybit] if bybit is not None else [])
    down = [row["name"] for row in every if row["probed"] and not row["usable"]]
    return {
        "probed": probed,
        "relays": rows,
        "bybit": bybit,
        "down": down,
        "any_up": any(row["usable"] for row in every),
    }


def relay_row(relay: RelayConfig, probe: Mapping[str, Any] | None) -> dict[str, Any]:
    """One relay as configured, with what a probe (or the monitor) says of it."""
    row: dict[str, Any] = {
        "name": relay.name,
        "kind": relay.kind,
        "role": relay.role,
        "url": redact_url(relay.url),
        "link": relay.link,
        "chain_id": relay.chain_id,
    }
    if probe is None:
        return row | {
            "probed": False,
            "state": "not probed",
            "usable": False,
            "head": None,
            "latency_ms": None,
            "last_error": None,
        }
    return row | {"probed": True, **probe}


def bybit_row(
    account: str, base_url: str, recv_window_ms: int, probe: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The venue as configured (``[bybit]``), with what a probe (or the supervisor) says."""
    row: dict[str, Any] = {
        "name": "bybit",
        "kind": "bybit",
        "account": account,
        "url": redact_url(base_url),
        "recv_window_ms": recv_window_ms,
    }
    if probe is None:
        return row | {
            "probed": False,
            "state": "not probed",
            "usable": False,
            "offset_ms": None,
            "latency_ms": None,
            "last_error": None,
        }
    state = "up" if probe["usable"] else "down"
    return row | {"probed": True, "state": state, **probe}


def live_relay_probe(snap: HealthSnapshot) -> dict[str, Any]:
    """What the service's link monitor says of one relay, in a probe's shape. Its state
    is the monitor's own word (up, degraded, down, disabled), made of several probes.
    As with a failed probe, a relay that is not usable shows no head and no latency (the
    monitor's are from its last good probe) but its last error."""
    usable = snap.usable
    return {
        "state": str(snap.state),
        "usable": usable,
        "head": snap.head if usable else None,
        "latency_ms": snap.latency_ms if usable else None,
        "last_error": None if usable else snap.last_error,
    }


def live_bybit_probe(
    connected: bool, offset_ms: int, latency_ms: float | None, error: str | None
) -> dict[str, Any]:
    """What the venue's connection supervisor says, in a probe's shape."""
    return {
        "usable": connected,
        "offset_ms": offset_ms if connected else None,
        "latency_ms": None if latency_ms is None or not connected else round(latency_ms),
        "last_error": error,
    }


# --------------------------------------------------------------------------- the queue


def document(store: Store, links: dict[str, Any], now: int | None = None) -> dict[str, Any]:
    """Every section at once, as ``airlock status --json`` prints it. A store that cannot
    be read gives the links and a ``store_error`` instead of the other four sections (the
    page must still say which links are down while the queue's server is away)."""
    now = wall_clock_ms() if now is None else now
    head: dict[str, Any] = {"generated_ms": now, "queue_path": store.shown, "links": links}
    try:
        return head | read_store(store, now)
    except Exception as exc:  # the page must still show the links
        log.warning("status: the queue could not be read", exc_info=True)
        return head | {"store_error": f"the queue could not be read ({type(exc).__name__})"}


def read_store(store: Store, now: int) -> dict[str, Any]:
    """QUEUE, NONCES, BROADCASTER and ALERTS from the store."""
    return {
        "queue": queue_section(store, now),
        "nonces": [nonce_row(row.as_json(), now) for row in store.nonces.status()],
        "broadcaster": broadcaster_section(store, now),
        "alerts": [alert_row(a.as_json(), now) for a in store.alerts.open()],
    }


def no_store(path: Path) -> dict[str, Any]:
    """The four store sections when there is no queue file (yet): nothing to show."""
    empty = {"exists": False, "live": 0, "total": 0, "by_kind": {}, "by_state": {}}
    broadcaster = {
        "heartbeat_ms": None,
        "heartbeat_age_s": None,
        "stale": None,
        "last_reconcile_ms": None,
        "last_reconcile_age_s": None,
        "pid": None,
    }
    return {
        "queue": empty | {"oldest_live": None},
        "nonces": [],
        "broadcaster": broadcaster,
        "alerts": [],
    }


def queue_section(store: Store, now: int) -> dict[str, Any]:
    by_kind: dict[str, dict[str, int]] = {}
    by_state: dict[str, int] = {}
    for kind, state, count, _ in store.items.counts_by_kind():
        by_kind.setdefault(kind, {})[state] = count
        by_state[state] = by_state.get(state, 0) + count
    live_states = {str(s) for s in LIVE}
    oldest = store.items.select(sorted(LIVE), limit=1)  # ids are ULIDs: creation order
    return {
        "exists": True,
        "live": sum(n for s, n in by_state.items() if s in live_states),
        "total": sum(by_state.values()),
        "by_kind": by_kind,
        "by_state": by_state,
        "oldest_live": None
        if not oldest
        else {
            "id": oldest[0].id,
            "kind": str(oldest[0].kind),
            "state": str(oldest[0].state),
            "account": oldest[0].account,
            "created_ms": oldest[0].created_ms,
            "age_s": age_s(now, oldest[0].created_ms),
        },
    }


def nonce_row(row: dict[str, Any], now: int) -> dict[str, Any]:
    return row | {"synced_age_s": age_s(now, row["synced_ms"])}


def broadcaster_section(store: Store, now: int) -> dict[str, Any]:
    heartbeat = _int_note(store, NOTE_HEARTBEAT)
    reconciled = _int_note(store, NOTE_RECONCILE)
    heartbeat_age = age_s(now, heartbeat)
    return {
        "heartbeat_ms": heartbeat,
        "heartbeat_age_s": heartbeat_age,
        "stale": None if heartbeat_age is None else heartbeat_age > STALE_HEARTBEAT_S,
        "last_reconcile_ms": reconciled,
        "last_reconcile_age_s": age_s(now, reconciled),
        "pid": _int_note(store, NOTE_PID),
    }


def _int_note(store: Store, key: str) -> int | None:
    raw = store.notes.get(key)
    try:
        return None if raw is None else int(raw)
    except ValueError:
        return None  # a note the service will overwrite; not worth failing the screen


def alert_row(alert: dict[str, Any], now: int) -> dict[str, Any]:
    return alert | {
        "first_age_s": age_s(now, alert["first_ms"]),
        "last_age_s": age_s(now, alert["last_ms"]),
    }


def age_s(now: int, then_ms: int | None) -> int | None:
    return None if then_ms is None else (now - then_ms) // 1000


# --------------------------------------------------------------------------- wording


def age(seconds: int | None) -> str:
    """42 s, 3 min, 2 h 5 min, 3 d 4 h; "never" for no time at all."""
    if seconds is None:
        return "never"
    if seconds < 0:
        return f"{age(-seconds)} in the future (clock?)"
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        hours, minutes = divmod(seconds // 60, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(seconds // 3600, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def ago(seconds: int | None) -> str:
    return "never" if seconds is None else f"{age(seconds)} ago"
