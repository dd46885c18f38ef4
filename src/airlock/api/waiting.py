"""Waiting for an item: when a wait is over, and the two ways it can end badly.

Pure: an item and the states waited for in, a verdict out. :meth:`Airlock.wait` and
:meth:`AsyncAirlock.wait` poll the queue and ask :func:`judge` each time.
"""

from __future__ import annotations

from collections.abc import Collection

from airlock.api.checks import STATE_NAMES, names
from airlock.api.records import Item
from airlock.errors import AirlockError, InvalidInput
from airlock.queue.states import TERMINAL, State

DEFAULT_WAIT_S = 60.0
WAIT_POLL_S = 0.05


class WaitTimeout(AirlockError, TimeoutError):
    """:meth:`Airlock.wait` ran out of time; ``item`` is the item as it was last seen."""

    def __init__(self, message: str, item: Item) -> None:
        super().__init__(message)
        self.item = item


class ItemEnded(AirlockError):
    """:meth:`Airlock.wait`: the item reached a final state it was not waited for (a
    transaction ``rejected`` while waiting for ``confirmed``); ``item`` says which."""

    def __init__(self, message: str, item: Item) -> None:
        super().__init__(message)
        self.item = item


# The way forward an item takes when all goes well: waiting for a state is also answered
# by a later one on this path (a wait for "sent" by an item already "confirmed").
PROGRESS = {State.QUEUED: 0, State.SENDING: 1, State.SENT: 2, State.CONFIRMED: 3}
# Where waiting for anything else is over: the final states, an item replaced (its nonce
# went to another transaction: it will not be mined as it is) and one confirmed.
SETTLED = TERMINAL | {State.REPLACED, State.CONFIRMED}


def judge(item: Item, wanted: frozenset[str]) -> Item | None:
    """The item when it is where it was waited for (or past it on the way forward); raise
    :class:`ItemEnded` when it never will be."""
    if item.state in wanted:
        return item
    reached = PROGRESS.get(item.state)
    if reached is not None and any(reached >= PROGRESS.get(State(w), 99) for w in wanted):
        return item
    if item.state in SETTLED:
        raise ItemEnded(
            f"item {item.id} ended {item.state} ({item.state_reason or 'no reason given'}), "
            f"not {' or '.join(sorted(wanted))}",
            item,
        )
    return None


def wanted_states(until: str | Collection[str]) -> frozenset[str]:
    wanted = frozenset(names("until", until, STATE_NAMES))
    if not wanted:
        raise InvalidInput("until names no state", field="until")
    return wanted
