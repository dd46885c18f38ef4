"""airlock: sign ahead with an HSM, queue durably, broadcast the moment a link returns.

The library is the front door::

    from airlock import Airlock, OrderRefused

    with Airlock.open() as al:
        tx = al.queue_transaction(key="hot-1", chain_id=1, to="0x...", value=1000, gas=21000,
                                  max_fee=30_000_000_000, priority_fee=1_000_000_000)
        al.wait(tx.id, until={"confirmed"}, timeout=120)

Names are imported on first use (PEP 562), so ``import airlock`` and the ``airlock``
command stay fast: the HSM, the queue and the signer load when a bot first asks for them.

The errors, all :class:`AirlockError`::

    AirlockError
    ├── InvalidInput (also ValueError)  bad input; .field names it, .index its batch element
    │   ├── OrderRefused                the outage policy said no; .rule names the rule
    │   ├── IdempotencyConflict         the key already names other content
    │   └── ItemNotFound
    ├── ConfigError                     airlock.toml is missing, unreadable or inconsistent
    ├── WaitTimeout (also TimeoutError) Airlock.wait ran out of time
    └── ItemEnded                       Airlock.wait: the item ended in another state
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Airlock": "airlock.api.client",
    "AsyncAirlock": "airlock.api.aio",
    "Cancelled": "airlock.api.records",
    "Event": "airlock.api.records",
    "Fill": "airlock.api.records",
    "Item": "airlock.api.records",
    "Queued": "airlock.api.records",
    "Variant": "airlock.api.records",
    "WaitTimeout": "airlock.api.waiting",
    "ItemEnded": "airlock.api.waiting",
    "AirlockError": "airlock.errors",
    "InvalidInput": "airlock.errors",
    "ConfigError": "airlock.errors",
    "OrderRefused": "airlock.queue.bybit",
    "IdempotencyConflict": "airlock.queue.errors",
    "ItemNotFound": "airlock.queue.errors",
}

__all__ = [
    "Airlock",
    "AirlockError",
    "AsyncAirlock",
    "Cancelled",
    "ConfigError",
    "Event",
    "Fill",
    "IdempotencyConflict",
    "InvalidInput",
    "Item",
    "ItemEnded",
    "ItemNotFound",
    "OrderRefused",
    "Queued",
    "Variant",
    "WaitTimeout",
]

if TYPE_CHECKING:
    from airlock.api.aio import AsyncAirlock
    from airlock.api.client import Airlock
    from airlock.api.records import Cancelled, Event, Fill, Item, Queued, Variant
    from airlock.api.waiting import ItemEnded, WaitTimeout
    from airlock.errors import AirlockError, ConfigError, InvalidInput
    from airlock.queue.bybit import OrderRefused
    from airlock.queue.errors import IdempotencyConflict, ItemNotFound


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'airlock' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
