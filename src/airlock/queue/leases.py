"""Leases on lanes: which broadcaster may send for a lane, and until when.

A *lane* is what must be sent from one place at a time: an EVM sender on one chain
(``evm:<chain id>:<address>``: its nonces go out in order) or a Bybit account
(``bybit:<account>``: its rate limit). A broadcaster's presence is a lane too
(``node:<holder>``), so that the others can count who is alive.

A lease row is never deleted: a release sets ``released_ms``, a take overwrites the
holder. The rules that decide what to take, renew and release are pure
(:mod:`airlock.broadcaster.lanes`); these functions only read and write rows, inside the
store's write transaction, whose lock keeps two takers of one lane apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from airlock.encoding.records import from_row
from airlock.queue.db import Conn
from airlock.queue.states import LIVE

NODE_PREFIX = "node:"


@dataclass(frozen=True)
class Lease:
    lane: str
    holder: str
    taken_ms: int
    expires_ms: int
    released_ms: int | None
    why: str

    def live(self, now_ms: int) -> bool:
        """Held: not released and not past its expiry."""
        return self.released_ms is None and self.expires_ms > now_ms


@dataclass(frozen=True)
class Take:
    lane: str
    previous: str | None  # the last holder, if there was one
    why: str


@dataclass(frozen=True)
class Release:
    lane: str
    why: str


@dataclass(frozen=True)
class Plan:
    """One tick of a holder's leases, decided by :func:`airlock.broadcaster.lanes.plan`."""

    take: tuple[Take, ...] = ()
    renew: tuple[str, ...] = ()  # lanes held and kept
    release: tuple[Release, ...] = ()
    held: frozenset[str] = field(default_factory=frozenset)  # work lanes held after it
    present: bool = True  # renew this holder's presence (``node:<holder>``), else end it


def evm_lane(chain_id: int | None, sender: str) -> str:
    return f"evm:{chain_id}:{sender}"


def bybit_lane(account: str) -> str:
    return f"bybit:{account}"


def node_lane(holder: str) -> str:
    return NODE_PREFIX + holder


def evm_sender(lane: str) -> tuple[int | None, str] | None:
    """``evm:<chain id>:<sender>`` as ``(chain id, sender)``; None for other lanes."""
    kind, _, rest = lane.partition(":")
    if kind != "evm":
        return None
    chain, _, sender = rest.partition(":")
    return (None if chain == "None" else int(chain)), sender


def bybit_account(lane: str) -> str | None:
    """``bybit:<account>`` as its account; None for other lanes."""
    kind, _, account = lane.partition(":")
    return account if kind == "bybit" else None


def every(conn: Conn) -> dict[str, Lease]:
    rows = conn.execute(
        "SELECT lane, holder, taken_ms, expires_ms, released_ms, why FROM leases ORDER BY lane"
    ).fetchall()
    return {r["lane"]: Lease(**from_row(Lease, r)) for r in rows}


def take(conn: Conn, lane: str, holder: str, now_ms: int, expires_ms: int, why: str) -> None:
    """``holder`` holds ``lane`` from now (the caller checked it was free)."""
    conn.execute(
        "INSERT INTO leases (lane, holder, taken_ms, expires_ms, released_ms, why)"
        " VALUES (?, ?, ?, ?, NULL, ?) ON CONFLICT (lane) DO UPDATE SET"
        " holder = excluded.holder, taken_ms = excluded.taken_ms,"
        " expires_ms = excluded.expires_ms, released_ms = NULL, why = excluded.why",
        (lane, holder, now_ms, expires_ms, why),
    )


def renew(conn: Conn, holder: str, lanes: list[str], expires_ms: int) -> None:
    """Push the expiry of ``holder``'s leases on ``lanes`` out to ``expires_ms``."""
    conn.executemany(
        "UPDATE leases SET expires_ms = ? WHERE lane = ? AND holder = ? AND released_ms IS NULL",
        [(expires_ms, lane, holder) for lane in lanes],
    )


def release(conn: Conn, holder: str, lane: str, now_ms: int, why: str) -> None:
    conn.execute(
        "UPDATE leases SET released_ms = ?, why = ? WHERE lane = ? AND holder = ?"
        " AND released_ms IS NULL",
        (now_ms, why, lane, holder),
    )


def work(conn: Conn) -> set[str]:
    """The lanes of every live item: where some broadcaster has work to do."""
    live = tuple(str(s) for s in LIVE)
    marks = ", ".join("?" for _ in live)
    rows = conn.execute(
        f"SELECT DISTINCT kind, chain_id, account FROM items WHERE state IN ({marks})", live
    ).fetchall()
    return {
        evm_lane(r["chain_id"], r["account"]) if r["kind"] == "evm_tx" else bybit_lane(r["account"])
        for r in rows
    }


__all__ = [
    "NODE_PREFIX",
    "Lease",
    "Plan",
    "Release",
    "Take",
    "bybit_account",
    "bybit_lane",
    "every",
    "evm_lane",
    "evm_sender",
    "node_lane",
    "release",
    "renew",
    "take",
    "work",
]
