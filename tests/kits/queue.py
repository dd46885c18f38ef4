"""Queue builders: a valid type-2 transfer and a one-call way to queue it."""

from __future__ import annotations

from typing import Any

from airlock.hsm.interface import EcdsaSigningKey
from airlock.queue.evm import enqueue_transaction
from airlock.queue.store import Enqueued, Store

FIELDS: dict[str, Any] = {
    "chain_id": 31337,
    "to": "0x" + "11" * 20,
    "value": 1000,
    "gas": 21000,
    "max_fee_per_gas": 2 * 10**9,
    "max_priority_fee_per_gas": 10**9,
}
"""A transfer every check accepts; tests change one field with ``fields={...}``."""


def queue_tx(store: Store, key: EcdsaSigningKey, **kwargs: Any) -> Enqueued:
    """Queue :data:`FIELDS` (updated by ``fields=``) signed by ``key``; other keyword
    arguments go to ``enqueue_transaction`` (ladder, priority, idempotency key, ...)."""
    fields = dict(FIELDS, **kwargs.pop("fields", {}))
    return enqueue_transaction(store, key, fields, **kwargs)
