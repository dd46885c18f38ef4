"""The lane rules (broadcaster/lanes.py) as a table: what one tick takes, keeps and lets
go of, from the leases the database holds, the lanes with work and what is reachable."""

from __future__ import annotations

import pytest

from airlock.broadcaster.lanes import fair_share, live_nodes, plan
from airlock.queue.leases import (
    Lease,
    bybit_account,
    bybit_lane,
    evm_lane,
    evm_sender,
    node_lane,
)

NOW = 1_000_000
A, B, C = "a/1/x", "b/2/y", "c/3/z"
L1, L2, L3, L4 = (evm_lane(1, f"0x{n}") for n in "1234")


def lease(lane: str, holder: str, expires: int = NOW + 1000, released: int | None = None):
    return Lease(lane, holder, NOW - 5000, expires, released, "test")


def alive(*holders: str) -> dict[str, Lease]:
    return {node_lane(h): lease(node_lane(h), h) for h in holders}


def test_the_first_tick_only_shows_presence() -> None:
    p = plan(A, NOW, {}, {L1, L2}, {L1, L2})
    assert p.take == () and p.held == frozenset()
    assert p.present and p.renew == ()


def test_free_lanes_are_taken_up_to_the_fair_share() -> None:
    leases = alive(A, B)
    p = plan(A, NOW, leases, {L1, L2, L3, L4}, {L1, L2, L3, L4})
    assert [t.lane for t in p.take] == [L1, L2]  # 4 lanes, 2 alive: 2 each
    assert all(t.previous is None and t.why == "never held" for t in p.take)
    assert p.held == {L1, L2}


def test_a_live_lease_of_another_is_never_taken() -> None:
    leases = alive(A, B) | {L1: lease(L1, B)}
    p = plan(A, NOW, leases, {L1}, {L1})
    assert p.take == ()


@pytest.mark.parametrize(
    ("held_by_b", "why"),
    [
        (lease(L1, B, expires=NOW - 250), f"the lease of {B} expired 250 ms ago"),
        (lease(L1, B, released=NOW - 10), f"released by {B}: test"),
    ],
)
def test_an_expired_or_released_lane_is_taken_naming_its_last_holder(held_by_b, why) -> None:
    p = plan(A, NOW, alive(A) | {L1: held_by_b}, {L1}, {L1})
    (take,) = p.take
    assert take.lane == L1 and take.previous == B and take.why.startswith(why)


def test_held_lanes_are_renewed_while_reachable_and_released_when_not() -> None:
    leases = alive(A) | {L1: lease(L1, A), L2: lease(L2, A)}
    p = plan(A, NOW, leases, {L1, L2}, {L1})
    assert p.renew == (L1,)
    assert [(r.lane, r.why) for r in p.release] == [
        (L2, "no healthy link for this lane on this broadcaster")
    ]
    assert p.held == {L1}


def test_unreachable_lanes_are_not_taken() -> None:
    p = plan(A, NOW, alive(A), {L1, L2}, {L2})
    assert [t.lane for t in p.take] == [L2]


@pytest.mark.parametrize(("waited", "taken"), [(0, False), (999, False), (1000, True)])
def test_a_lane_beyond_the_share_is_taken_once_free_for_a_lease(waited, taken) -> None:
    """Whoever had room did not take it (it reaches some links, not this lane's): after a
    lease of waiting it is taken anyway, so no work waits for ever."""
    leases = alive(A, B) | {L1: lease(L1, A), L2: lease(L2, A), L3: lease(L3, B, released=NOW)}
    p = plan(
        A, NOW, leases, {L1, L2, L3}, {L1, L2, L3}, free_since={L3: NOW - waited}, patience_ms=1000
    )
    assert [(t.lane, t.previous) for t in p.take] == ([(L3, B)] if taken else [])


def test_idle_lanes_kept_do_not_count_against_the_share() -> None:
    leases = alive(A, B) | {L1: lease(L1, A), L2: lease(L2, A)}  # done: no work left
    p = plan(A, NOW, leases, {L3, L4}, {L1, L2, L3, L4})
    assert [t.lane for t in p.take] == [L3]  # its share of the two new lanes


def test_with_no_usable_link_it_shows_no_presence_and_lets_go() -> None:
    leases = alive(A, B) | {L1: lease(L1, A)}
    p = plan(A, NOW, leases, {L1, L2}, set(), reaches_any=False)
    assert not p.present and p.take == () and p.held == frozenset()
    assert [r.lane for r in p.release] == [L1]


def test_kept_lanes_count_against_the_share() -> None:
    leases = alive(A, B, C) | {L1: lease(L1, A)}
    p = plan(A, NOW, leases, {L1, L2, L3}, {L1, L2, L3})
    assert p.take == ()  # 3 lanes, 3 alive: one each, and it has one
    assert p.held == {L1}


def test_a_lane_of_mine_that_expired_is_taken_again_with_a_reconcile() -> None:
    leases = alive(A) | {L1: lease(L1, A, expires=NOW - 1)}
    (take,) = plan(A, NOW, leases, {L1}, {L1}).take
    assert take.previous == A  # the keeper reconciles it before sending, as for any take


def test_dead_nodes_do_not_count() -> None:
    leases = alive(A) | {node_lane(B): lease(node_lane(B), B, expires=NOW - 1)}
    assert live_nodes(leases, NOW) == {A}
    p = plan(A, NOW, leases, {L1, L2}, {L1, L2})
    assert [t.lane for t in p.take] == [L1, L2]


@pytest.mark.parametrize(("work", "nodes", "share"), [(0, 1, 0), (5, 3, 2), (6, 3, 2), (1, 0, 1)])
def test_fair_share(work: int, nodes: int, share: int) -> None:
    assert fair_share(work, nodes) == share


def test_lane_names_parse_back() -> None:
    assert evm_sender(evm_lane(31337, "0xAbC")) == (31337, "0xAbC")
    assert evm_sender(bybit_lane("main")) is None and evm_sender(node_lane(A)) is None
    assert bybit_account(bybit_lane("main")) == "main"
    assert bybit_account(evm_lane(1, "0x1")) is None and bybit_account(node_lane(A)) is None
