"""The public library (:class:`Airlock`, :class:`AsyncAirlock`, typed records) and, in
:mod:`airlock.api.http`, the service's local HTTP API over it."""

from airlock.api.aio import AsyncAirlock
from airlock.api.client import Airlock
from airlock.api.records import Cancelled, Event, Fill, Item, Queued, Variant
from airlock.api.waiting import ItemEnded, WaitTimeout

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
