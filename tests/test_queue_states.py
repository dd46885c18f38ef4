"""The queue's state machine: the table is the whole contract, so test it exhaustively.

Every (from, to) pair is checked against ``TRANSITIONS`` and against the handful of
facts the rest of airlock relies on (which states are final, how quarantine is entered,
that a reorg can undo a confirmation).
"""

from __future__ import annotations

import itertools
import re
from collections import deque

import pytest

from airlock.queue.states import (
    LIVE,
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    State,
    check_transition,
)

ALL_PAIRS = list(itertools.product(State, State))


def reachable_from(start: State) -> set[State]:
    """Breadth-first search over the transition table."""
    seen = {start}
    todo = deque([start])
    while todo:
        for nxt in TRANSITIONS[todo.popleft()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def predecessors(target: State) -> set[State]:
    return {src for src, targets in TRANSITIONS.items() if target in targets}


def names(message: str, state: State) -> bool:
    return re.search(rf"\b{re.escape(state.value)}\b", message) is not None


@pytest.mark.parametrize(("src", "dst"), ALL_PAIRS, ids=[f"{a}->{b}" for a, b in ALL_PAIRS])
def test_check_transition_follows_the_table(src: State, dst: State) -> None:
    if dst in TRANSITIONS[src]:
        assert check_transition(src, dst) == (src, dst)
        # plain strings, as read back from the database, work too
        result = check_transition(src.value, dst.value)
        assert result == (src, dst)
        assert all(isinstance(s, State) for s in result)
    else:
        with pytest.raises(IllegalTransition) as info:
            check_transition(src, dst)
        message = str(info.value)
        assert names(message, src) and names(message, dst), message
        # the source is named before the target (twice for a self-loop)
        assert re.search(rf"\b{src.value}\b.*\b{dst.value}\b", message), message


def test_table_covers_every_state() -> None:
    assert set(TRANSITIONS) == set(State)


def test_terminal_states() -> None:
    expected = {State.EXPIRED, State.CANCELLED, State.REJECTED, State.QUARANTINED}
    assert expected == TERMINAL
    assert not TERMINAL & LIVE


@pytest.mark.parametrize("final", sorted(TERMINAL))
def test_terminal_states_say_they_are_final(final: State) -> None:
    with pytest.raises(IllegalTransition, match="final"):
        check_transition(final, State.QUEUED)


def test_quarantine_is_entered_only_before_a_send_succeeds() -> None:
    """A quarantined item is never sent: only queued and sending items can be quarantined."""
    assert predecessors(State.QUARANTINED) == {State.QUEUED, State.SENDING}
    with pytest.raises(IllegalTransition):
        check_transition(State.SENT, State.QUARANTINED)
    with pytest.raises(IllegalTransition):
        check_transition(State.CONFIRMED, State.QUARANTINED)


def test_reorg_moves_confirmed_back_to_sent() -> None:
    assert check_transition(State.CONFIRMED, State.SENT) == (State.CONFIRMED, State.SENT)


def test_reorg_moves_replaced_back_to_sent() -> None:
    """Replaced by its own mined cancel, then a reorg took the cancel's block away."""
    assert check_transition(State.REPLACED, State.SENT) == (State.REPLACED, State.SENT)
    with pytest.raises(IllegalTransition):
        check_transition(State.REPLACED, State.QUEUED)


def test_no_state_moves_to_itself() -> None:
    """A self-loop would let a write "change" a state and record a bogus event."""
    assert all(state not in TRANSITIONS[state] for state in State)


def test_every_state_is_reachable_from_queued() -> None:
    assert reachable_from(State.QUEUED) == set(State)


def test_every_live_state_can_still_end() -> None:
    """No live item can get stuck: a terminal or confirmed state is always reachable."""
    for state in LIVE:
        assert reachable_from(state) & (TERMINAL | {State.CONFIRMED}), state
