"""Which lanes a broadcaster takes, keeps and lets go of: pure rules, table-tested.

Several broadcasters on one PostgreSQL queue, each on its own network path, share the
work by lanes (an EVM sender on a chain, a Bybit account: :mod:`airlock.queue.leases`).
One :func:`plan` per tick, from what the database says now (its clock, every lease), what
has work, and which lanes this broadcaster can reach (a usable link to the chain or the
venue):

- **renew** what it holds and can still reach, and its presence (``node:<holder>``);
- **release** what it holds but can no longer reach: its links for that lane are down,
  so a broadcaster with a live path must be able to take it at once, not after the lease
  runs out;
- **take** lanes with work that nobody holds (never held, released, or expired: a holder
  that died or froze) and that it can reach, up to its fair share: the lanes with work
  divided by the broadcasters present, rounded up, less the lanes with work it keeps;
  beyond its share, a lane it has seen free for a whole lease (whoever had room did not
  take it: one that reaches some links but not this lane's, say).
  A broadcaster takes nothing in the tick it first shows its presence, so that several
  started together see each other before they share; one with no usable link at all
  shows no presence, so the others' share is counted without it.

There is no rebalancing: a broadcaster keeps what it holds while it can reach it, since
every hand-over costs a reconcile.

A lane that changes hands is sent for only after the taker has reconciled it (every hash
the last holder recorded asked about): the keeper keeps that rule, not this plan.
"""

from __future__ import annotations

import math

from airlock.queue.leases import NODE_PREFIX, Lease, Plan, Release, Take, node_lane


def live_nodes(leases: dict[str, Lease], now_ms: int) -> set[str]:
    return {
        lease.holder
        for lane, lease in leases.items()
        if lane.startswith(NODE_PREFIX) and lease.live(now_ms)
    }


def fair_share(work: int, nodes: int) -> int:
    """Lanes per broadcaster: every lane with work covered by the live ones."""
    return math.ceil(work / max(nodes, 1))


def plan(
    holder: str,
    now_ms: int,
    leases: dict[str, Lease],
    work: set[str],
    reachable: set[str],
    *,
    reaches_any: bool = True,
    free_since: dict[str, int] | None = None,
    patience_ms: int | None = None,
) -> Plan:
    """This tick's takes, renewals and releases for ``holder`` (see the module).

    ``reaches_any``: the broadcaster has at least one usable link. One with none shows no
    presence, so that the others' share is counted without it. ``free_since``: since when
    this broadcaster has seen each lane free; one free for ``patience_ms`` is taken beyond
    the share (whoever had room did not take it: it must not wait for ever)."""
    mine = {
        lane
        for lane, lease in leases.items()
        if lease.holder == holder and lease.live(now_ms) and not lane.startswith(NODE_PREFIX)
    }
    keep = sorted(lane for lane in mine if lane in reachable)
    release = tuple(
        Release(lane, "no healthy link for this lane on this broadcaster")
        for lane in sorted(mine - reachable)
    )
    if not reaches_any:
        return Plan((), tuple(keep), release, frozenset(keep), present=False)
    presence = leases.get(node_lane(holder))
    takes: list[Take] = []
    if presence is not None and presence.live(now_ms):
        nodes = live_nodes(leases, now_ms) | {holder}
        room = fair_share(len(work), len(nodes)) - len(set(keep) & work)
        for lane in sorted(work & reachable):
            lease = leases.get(lane)
            if lease is not None and lease.live(now_ms):
                continue  # held: by another, or by this one and kept above
            waited = now_ms - (free_since or {}).get(lane, now_ms)
            if room <= 0 and (patience_ms is None or waited < patience_ms):
                continue  # beyond this one's share: left to the others, for a while
            takes.append(
                Take(lane, None if lease is None else lease.holder, _why_free(lease, now_ms))
            )
            room -= 1
    held = frozenset(keep) | {t.lane for t in takes}
    return Plan(tuple(takes), tuple(keep), release, held)


def _why_free(lease: Lease | None, now_ms: int) -> str:
    if lease is None:
        return "never held"
    if lease.released_ms is not None:
        return f"released by {lease.holder}: {lease.why}"
    late = now_ms - lease.expires_ms
    return f"the lease of {lease.holder} expired {late} ms ago (no renewal: stopped or cut off)"


__all__ = ["Plan", "Release", "Take", "fair_share", "live_nodes", "plan"]
