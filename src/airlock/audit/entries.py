"""Audit entries: their canonical bytes, their hashes, and the kinds airlock writes.

An entry is the canonical JSON (see :mod:`airlock.encoding.canonical`) of::

    {"v": 1, "seq": N, "prev": "<hex SHA-256 of entry N-1, or 64 zeros>",
     "time_ms": T, "type": "<type>", "item": "<item id>" | null, "data": {...}}

Entry N is leaf N of the RFC 6962 tree. Pure module with no airlock imports beyond this
package: the queue writes entries with it and an auditor's verifier reads them with it.
The rules an entry obeys are docs/audit-format.md §1; this module holds the names.
"""

from __future__ import annotations

import hashlib
from typing import Any

from airlock.encoding.canonical import MAX_SAFE_INTEGER, CanonicalError, canonical

# The format's version: ``v`` of every entry and of the manifest, and the tail of the
# manifest's ``format``. A change that a version-1 verifier would misread bumps all three.
VERSION = 1
GENESIS_PREV = "00" * 32
EXPORT_FORMAT = f"airlock-audit-export/{VERSION}"
MEMBERS = ("v", "seq", "prev", "time_ms", "type", "item", "data")

# The kinds of entry. A verifier must accept kinds it does not know (and say so).
ITEM_ENQUEUED = "item.enqueued"  # an item and every signed variant, in full
ITEM_TRANSITION = "item.transition"  # a state change and its reason
ITEM_CANCEL_REQUESTED = "item.cancel_requested"  # the pre-signed cancel replaces the item
NONCE_SYNC = "nonce.sync"  # a nonce counter raised (or not) from a node's reading
DATA_KEY_ROTATED = "data_key.rotated"  # an operator made a new primary data key
ITEMS_SENDING = "items.sending"  # a wave of items about to leave, and which variant each
ITEMS_SENT = "items.sent"  # that wave's answers from every relay, and what became of each item
ITEMS_SETTLED = "items.settled"  # what the chain decided for in-flight items (one reconcile batch)
ITEM_VARIANT_ADDED = "item.variant_added"  # a variant re-signed after the ladder ran out
RELAY_HEALTH = "relay.health"  # a relay changed state (up, degraded, down, disabled)
ALERT = "alert"  # something an operator must look at, and why
ORDER_REFUSED = "order.refused"  # the outage policy refused an order at enqueue, and why
ORDER_OBSERVED = "order.observed"  # the venue's state of an order changed, the item's did not
ORDER_FILLS = "order.fills"  # fills (executions) seen for the first time, each once
FAILOVER_DECISION = "failover.decision"  # a failover rule fired: mode, route, escalation
KINDS = frozenset(
    {
        ITEM_ENQUEUED,
        ITEM_TRANSITION,
        ITEM_CANCEL_REQUESTED,
        NONCE_SYNC,
        DATA_KEY_ROTATED,
        ITEMS_SENDING,
        ITEMS_SENT,
        ITEMS_SETTLED,
        ITEM_VARIANT_ADDED,
        RELAY_HEALTH,
        ALERT,
        ORDER_REFUSED,
        ORDER_OBSERVED,
        ORDER_FILLS,
        FAILOVER_DECISION,
    }
)
# Which types name an item in ``item`` (never null) and which never do (always null);
# an ``alert`` names the item it is about, if any, and so may a type added later.
ABOUT_AN_ITEM = frozenset(
    {ITEM_ENQUEUED, ITEM_TRANSITION, ITEM_CANCEL_REQUESTED, ITEM_VARIANT_ADDED, ORDER_OBSERVED}
)
ABOUT_NO_ITEM = KINDS - ABOUT_AN_ITEM - {ALERT}


def encode(
    seq: int, prev: str, time_ms: int, kind: str, item: str | None, data: dict[str, Any]
) -> bytes:
    """The canonical bytes of one entry.

    An integer in ``data`` beyond ±(2^53 - 1) (a chain id or nonce that large, a node's
    answer) is written as its decimal string (§1.1) rather than refused: the writer runs
    inside the transaction of the change it records and must never fail it. Only an entry
    that needs it pays for the second walk.
    """
    entry = {
        "v": VERSION,
        "seq": seq,
        "prev": prev,
        "time_ms": time_ms,
        "type": kind,
        "item": item,
        "data": data,
    }
    try:
        return canonical(entry)
    except CanonicalError:
        return canonical(dict(entry, data=wide_integers(data)))


def wide_integers(value: Any) -> Any:
    """``value`` with every integer outside ±(2^53 - 1) replaced by its decimal string."""
    if isinstance(value, bool) or not isinstance(value, int | dict | list | tuple):
        return value
    if isinstance(value, int):
        return str(value) if abs(value) > MAX_SAFE_INTEGER else value
    if isinstance(value, dict):
        return {key: wide_integers(item) for key, item in value.items()}
    return [wide_integers(item) for item in value]


def entry_hash(entry: bytes) -> bytes:
    """What the next entry's ``prev`` holds (hex): SHA-256 of the canonical bytes."""
    return hashlib.sha256(entry).digest()
