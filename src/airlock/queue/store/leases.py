"""``store.leases``: the lanes several broadcasters share a queue by (queue/leases.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airlock.audit import entries as audit_entries
from airlock.queue import leases
from airlock.queue.leases import Lease, Plan
from airlock.queue.store.core import Core

Planner = Callable[[int, dict[str, Lease], set[str]], Plan]
"""``(now_ms, every lease, lanes with work) -> Plan``: the rules, from above the queue."""


class Leases:
    def __init__(self, core: Core) -> None:
        self._core = core

    def all(self) -> dict[str, Lease]:
        with self._core.reading() as conn:
            return leases.every(conn)

    def work(self) -> set[str]:
        """The lanes of every live item."""
        with self._core.reading() as conn:
            return leases.work(conn)

    def now_ms(self) -> int:
        """The leases' clock: the database server's on PostgreSQL (one clock for every
        broadcaster, whatever their machines say), else the store's."""
        with self._core.reading():
            return self._now()

    def _now(self) -> int:
        return self._core.db.now_ms() or self._core.clock_ms()

    def cycle(self, holder: str, ttl_ms: int, planner: Planner) -> Plan:
        """One tick for ``holder``, in one transaction: read every lease and the lanes with
        work, let ``planner`` decide, write it. Each take and release is a
        ``failover.decision`` entry naming who let go, who took, and why."""
        with self._core.transaction() as conn:
            now = self._now()
            before = leases.every(conn)
            plan = planner(now, before, leases.work(conn))
            expires = now + ttl_ms
            for release in plan.release:
                leases.release(conn, holder, release.lane, now, release.why)
                self._decided(conn, "release", release.lane, holder, None, release.why, ttl_ms)
            for take in plan.take:
                leases.take(conn, take.lane, holder, now, expires, take.why)
                self._decided(conn, "take", take.lane, take.previous, holder, take.why, ttl_ms)
            leases.renew(conn, holder, list(plan.renew), expires)
            presence = before.get(leases.node_lane(holder))
            if plan.present:
                self._presence(conn, holder, presence, now, expires)
            elif presence is not None and presence.holder == holder and presence.live(now):
                leases.release(conn, holder, presence.lane, now, "no usable link")
        return plan

    def release_all(self, holder: str, why: str) -> list[str]:
        """Let go of every lane ``holder`` holds (a clean stop): the others need not wait
        for the leases to run out."""
        with self._core.transaction() as conn:
            now = self._now()
            held = [
                lane
                for lane, lease in leases.every(conn).items()
                if lease.holder == holder and lease.live(now)
            ]
            for lane in held:
                leases.release(conn, holder, lane, now, why)
                if not lane.startswith(leases.NODE_PREFIX):
                    self._decided(conn, "release", lane, holder, None, why, 0)
        return held

    @staticmethod
    def _presence(conn: Any, holder: str, current: Lease | None, now: int, expires: int) -> None:
        """``node:<holder>``: alive until ``expires`` (no audit entry: not a hand-over)."""
        lane = leases.node_lane(holder)
        if current is not None and current.holder == holder and current.live(now):
            leases.renew(conn, holder, [lane], expires)
        else:
            leases.take(conn, lane, holder, now, expires, "alive")

    def _decided(
        self,
        conn: Any,
        action: str,
        lane: str,
        released_by: str | None,
        taken_by: str | None,
        why: str,
        ttl_ms: int,
    ) -> None:
        data = {
            "decision": "lane",
            "rule": "lease",
            "action": action,
            "lane": lane,
            "from": released_by,
            "to": taken_by,
            "why": why,
            "inputs": {"lease_ms": ttl_ms},
        }
        self._core.journal.append(conn, audit_entries.FAILOVER_DECISION, None, data)
