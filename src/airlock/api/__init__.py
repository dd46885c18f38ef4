"""The public library (:class:`Airlock`, :class:`AsyncAirlock`, typed records) and, in
:mod:`airlock.api.http`, the service's local HTTP API over it."""

from airlock.api.aio import AsyncAirlock
from airlock.api.client import Airlock, ItemEnded, WaitTimeout
from airlock.api.records import Cancelled, Event, Fill, Item, Queued, Variant

__all__ = [
    "Airlock",
    "AsyncAirlock",
    "Cancelled",
    "Event",
    "Fill",
    "Item",
    "ItemEnded",
    "Queued",
    "Variant",
    "WaitTimeout",
]
