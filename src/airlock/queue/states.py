"""The item state machine: one table of legal transitions, and nothing else.

Pure data and a check. The store consults :func:`check_transition` before every state
change, so an illegal move raises before anything is written.
"""

from __future__ import annotations

from enum import StrEnum

from airlock.queue.errors import IllegalTransition


class State(StrEnum):
    QUEUED = "queued"  # stored, signed, never sent
    SENDING = "sending"  # a send is in flight: bytes may have left
    SENT = "sent"  # at least one relay or venue accepted it
    CONFIRMED = "confirmed"  # mined / filled, at the confirmation depth
    EXPIRED = "expired"  # the TTL passed before it was sent
    CANCELLED = "cancelled"  # withdrawn before it was sent
    REJECTED = "rejected"  # the venue said no, final
    REPLACED = "replaced"  # another variant or transaction used the nonce
    QUARANTINED = "quarantined"  # payload failed authentication or verification; never sent
    NEEDS_OPERATOR = "needs_operator"  # outcome unknown after reconcile: a human decides


TRANSITIONS: dict[State, frozenset[State]] = {
    State.QUEUED: frozenset(
        {
            State.SENDING,
            State.EXPIRED,
            State.CANCELLED,
            State.QUARANTINED,
            State.NEEDS_OPERATOR,
        }
    ),
    State.SENDING: frozenset(
        {
            State.SENT,
            State.QUEUED,  # nothing left the machine: every link failed at transport level
            State.REJECTED,
            State.QUARANTINED,
            State.NEEDS_OPERATOR,
        }
    ),
    State.SENT: frozenset({State.CONFIRMED, State.REPLACED, State.REJECTED, State.NEEDS_OPERATOR}),
    State.CONFIRMED: frozenset({State.SENT}),  # a reorg removed the receipt
    State.NEEDS_OPERATOR: frozenset(
        {State.QUEUED, State.SENT, State.CONFIRMED, State.REPLACED, State.REJECTED, State.CANCELLED}
    ),
    State.EXPIRED: frozenset(),
    State.CANCELLED: frozenset(),
    State.REJECTED: frozenset(),
    # a reorg removed the receipt of the item's own pre-signed cancel: its nonce is empty
    # again (an item replaced by someone else's transaction is final)
    State.REPLACED: frozenset({State.SENT}),
    State.QUARANTINED: frozenset(),
}

TERMINAL: frozenset[State] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
# Items in these states may still put bytes on the network, or already have.
LIVE: frozenset[State] = frozenset({State.QUEUED, State.SENDING, State.SENT, State.NEEDS_OPERATOR})


def check_transition(current: State | str, target: State | str) -> tuple[State, State]:
    """Return both states as :class:`State`; raise :class:`IllegalTransition` if not allowed."""
    src, dst = State(current), State(target)
    if dst not in TRANSITIONS[src]:
        allowed = ", ".join(sorted(TRANSITIONS[src])) or "none: it is final"
        raise IllegalTransition(f"cannot move an item from {src} to {dst} (allowed: {allowed})")
    return src, dst
