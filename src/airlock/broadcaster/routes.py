"""Which relays the EVM broadcaster may use: for a send, for a read, and the best head.

Small functions over the relays and their link monitor, apart from the broadcaster's
passes so that the rules read in one place: private items only ever go to (and are only
ever asked about at) private relays; with the failover rules' router, a send goes only to
the role its priority is routed to.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from airlock.relays.health import LinkState, Monitor
from airlock.relays.jsonrpc import EvmRelay

if TYPE_CHECKING:
    from airlock.broadcaster.failover import RouteLinks

Router = Callable[[int], "RouteLinks"]
"""priority -> the relay role the failover rules send it through, or none."""


def eligible(
    relays: Sequence[EvmRelay],
    monitor: Monitor,
    chain_id: int | None,
    private: bool,
    priority: int | None = None,
    router: Router | None = None,
) -> list[EvmRelay]:
    """Usable relays of the chain; private items only ever go to private relays.

    With a ``router`` (the service's failover rules) and a send's ``priority``, only
    relays of the role the rules route that priority to: primaries normally; in an
    outage backups for cancels and risk-reducing items while the window lasts; none for
    the rest. Reads (``priority`` None) may use any usable relay."""
    usable = [
        r
        for r in relays
        if r.chain_id == chain_id and r.private == private and monitor.usable(r.name)
    ]
    if router is None or priority is None:
        return usable
    role = router(priority)
    return [r for r in usable if r.config.role == role]


def reader(
    relays: Sequence[EvmRelay], monitor: Monitor, chain_id: int | None, private: bool
) -> EvmRelay | None:
    """The relay reconcile asks about an item: a usable one of its chain and privacy,
    healthiest first. Private items are asked about only at private relays: even a
    receipt query names the hash, and a public node must not learn it before it is
    mined."""
    usable = eligible(relays, monitor, chain_id, private)
    states = monitor.snapshots()
    usable.sort(key=lambda r: 0 if states[r.name].state is LinkState.UP else 1)
    return usable[0] if usable else None


def best_head(relays: Sequence[EvmRelay], monitor: Monitor, chain_id: int | None) -> int | None:
    """The highest block a probe of any relay of the chain saw."""
    heads = [
        h for r in relays if r.chain_id == chain_id and (h := monitor.head(r.name)) is not None
    ]
    return max(heads) if heads else None
