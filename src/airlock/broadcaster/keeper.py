"""The lane keeper: one broadcaster's leases on a queue it shares with others.

Every ``tick_ms`` the keeper runs one :meth:`~airlock.queue.store.leases.Leases.cycle`
with the pure rules of :mod:`airlock.broadcaster.lanes`: renew what it holds and can
reach, release what it cannot, take free lanes up to its share. The sides ask it what
they may do:

- **reconcile** the lanes it holds (:meth:`LaneKeeper.evm_senders`,
  :meth:`LaneKeeper.bybit_accounts`);
- **send** only on lanes it holds *and* has reconciled since it took them
  (:meth:`LaneKeeper.evm_dispatch_senders`, :meth:`LaneKeeper.may_send`): the last holder
  may have put bytes on the wire that it never recorded as answered, so the taker asks the
  chain (or the venue) about every hash and order the store holds before it sends
  anything of that lane. A taken lane asks the sides for a reconcile at once.

The lease lasts ``lease_ms`` (by default the failover rules' outage time,
``[failover] heartbeat_gap_ms``) and is renewed every ``lease_ms / 4``: a broadcaster
that dies or is cut off from the database loses its lanes within one lease; one whose
links die releases them at its next tick after its link monitor says so.

Without a keeper (the embedded SQLite queue, one broadcaster by its file lock) the sides
send and reconcile everything, as before.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass

from airlock.broadcaster import lanes
from airlock.queue.leases import Lease, Plan, bybit_account, evm_sender
from airlock.queue.store import Store

log = logging.getLogger("airlock.broadcaster")

Reach = Callable[[str], bool]
"""Whether this broadcaster has a usable link for a lane (``evm:...`` or ``bybit:...``)."""


def holder_name(name: str = "") -> str:
    """This process's name in the leases: ``[broadcaster] name`` or the host, its pid,
    and a few random characters (a restarted process is a new holder)."""
    base = name or socket.gethostname()
    return f"{base}/{os.getpid()}/{secrets.token_hex(3)}"


@dataclass(frozen=True)
class KeeperSettings:
    lease_ms: int = 3_000
    tick_ms: int = 750


class LaneKeeper:
    """Holds, renews and releases one broadcaster's lanes (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        reach: Reach | None = None,
        settings: KeeperSettings | None = None,
        *,
        holder: str | None = None,
        on_taken: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.reach = reach  # the service sets its own when None
        self.reaches_any: Callable[[], bool] | None = None  # a usable link at all (the service's)
        self.settings = settings or KeeperSettings()
        self.holder = holder or holder_name()
        self.on_taken = on_taken  # a side's "reconcile now", set by the service
        self.held: frozenset[str] = frozenset()
        self._taken_at: dict[str, int] = {}  # lane -> generation it was taken in
        self._generations = itertools.count(1)
        self._free_since: dict[str, int] = {}  # lane -> when this one first saw it free
        self.generation = 0

    # -- one tick ------------------------------------------------------------------------

    def tick(self) -> Plan:
        """One cycle, written and applied (for callers without an event loop)."""
        plan = self.cycle()
        self.apply(plan)
        return plan

    def cycle(self) -> Plan:
        """One cycle in the store: decided and written (a worker thread may run it)."""
        return self.store.leases.cycle(self.holder, self.settings.lease_ms, self._plan)

    def apply(self, plan: Plan) -> None:
        """What the sides may do from now (in the thread the sides run in)."""
        for release in plan.release:
            log.warning("lane %s released: %s", release.lane, release.why)
        if plan.take:
            self.generation = next(self._generations)
            for take in plan.take:
                self._taken_at[take.lane] = self.generation
                log.info("lane %s taken (%s); reconciling before sending", take.lane, take.why)
        self.held = plan.held
        for lane in list(self._taken_at):
            if lane not in self.held:
                del self._taken_at[lane]
        if plan.take and self.on_taken is not None:
            self.on_taken()

    def _plan(self, now_ms: int, leases: dict[str, Lease], work: set[str]) -> Plan:
        candidates = work | {lane for lane, lease in leases.items() if lease.holder == self.holder}
        reach = self.reach or (lambda _lane: False)
        reachable = {lane for lane in candidates if reach(lane)}
        reaches_any = self.reaches_any() if self.reaches_any is not None else True
        free = {lane for lane in work if not (lane in leases and leases[lane].live(now_ms))}
        self._free_since = {lane: self._free_since.get(lane, now_ms) for lane in free}
        return lanes.plan(
            self.holder,
            now_ms,
            leases,
            work,
            reachable,
            reaches_any=reaches_any,
            free_since=self._free_since,
            patience_ms=self.settings.lease_ms,
        )

    def lost(self) -> None:
        """The queue could not be reached: these leases may have run out, and another
        broadcaster may hold the lanes now. Send for none until a tick proves them."""
        if self.held:
            log.warning("holding no lane until the queue answers again")
        self.held, self._taken_at = frozenset(), {}

    def release_all(self, why: str = "stopping") -> None:
        """Let the others take every lane now (a clean stop)."""
        released = self.store.leases.release_all(self.holder, why)
        self.held, self._taken_at = frozenset(), {}
        if released:
            log.info("released %d lanes: %s", len(released), why)

    # -- what the sides may do -----------------------------------------------------------

    def may_send(self, lane: str) -> bool:
        """Held, and reconciled since it was taken."""
        return lane in self.held and lane not in self._taken_at

    def evm_senders(self) -> list[tuple[int | None, str]]:
        return sorted(filter(None, map(evm_sender, self.held)), key=str)

    def evm_dispatch_senders(self) -> list[tuple[int | None, str]]:
        sendable = (lane for lane in self.held if self.may_send(lane))
        return sorted(filter(None, map(evm_sender, sendable)), key=str)

    def bybit_accounts(self, sendable: bool = False) -> list[str]:
        lanes_ = (lane for lane in self.held if not sendable or self.may_send(lane))
        return sorted(filter(None, map(bybit_account, lanes_)))

    def reconciled(self, lanes_done: set[str], generation: int) -> None:
        """A reconcile that started at ``generation`` covered ``lanes_done``: lanes taken
        at or before it may be sent for now."""
        for lane in lanes_done:
            taken = self._taken_at.get(lane)
            if taken is not None and taken <= generation:
                del self._taken_at[lane]
                log.info("lane %s reconciled: sending", lane)


__all__ = ["KeeperSettings", "LaneKeeper", "holder_name"]
