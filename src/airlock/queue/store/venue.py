"""``store.venue``: Bybit items' venue references, what the venue said, and fills.

Kept in clear (category, symbol, orderLinkId, venue status, fills): venue observations
and routing metadata, not the signed intent, which stays in the encrypted payload.
"""

from __future__ import annotations

from collections.abc import Sequence

from airlock.audit import entries as audit_entries
from airlock.queue import items, venue
from airlock.queue.errors import StaleItems
from airlock.queue.items import Item
from airlock.queue.states import State
from airlock.queue.store.core import Core
from airlock.queue.venue import Fill, VenueRef, VenueSeen


class Venue:
    """The Bybit side's records (``store.venue``)."""

    def __init__(self, core: Core) -> None:
        self._core = core

    def due(
        self, limit: int = 100, accounts: Sequence[str] | None = None
    ) -> list[tuple[Item, VenueRef]]:
        """Queued Bybit items due a send, most urgent first (cancels lead); only
        ``accounts``' when given."""
        with self._core.lock:
            return venue.due(self._core.conn, self._core.clock_ms(), limit, accounts)

    def in_states(self, states: list[State]) -> list[tuple[Item, VenueRef]]:
        with self._core.lock:
            return venue.in_states(self._core.conn, [str(s) for s in states])

    def all(self, limit: int | None = None) -> list[tuple[Item, VenueRef]]:
        """Every Bybit item, newest first."""
        with self._core.lock:
            return venue.every(self._core.conn, limit)

    def of_item(self, item_id: str) -> tuple[Item, VenueRef] | None:
        with self._core.lock:
            return venue.of_item(self._core.conn, item_id)

    def order_by_link(self, link_id: str) -> tuple[Item, VenueRef] | None:
        """The queued order with this orderLinkId (cancels are not returned)."""
        with self._core.lock:
            return venue.order_by_link(self._core.conn, link_id)

    def items_by_link(self, link_ids: list[str]) -> dict[str, str]:
        with self._core.lock:
            return venue.item_ids_by_link(self._core.conn, link_ids)

    def begin(self, item: Item, reason: str) -> Item:
        """Durably mark a queued Bybit item ``sending`` before its request leaves.

        Raises :class:`StaleItems` (nothing written) if the item moved since it was read."""
        with self._core.transaction() as conn:
            current = items.get(conn, item.id)
            if current.state is not State.QUEUED or item.state is not State.QUEUED:
                raise StaleItems(f"item {item.id} is {current.state}, no longer queued")
            venue.set_sent_ms(conn, item.id, self._core.clock_ms())
            return self._core.move(conn, current, State.SENDING, reason)

    def record(
        self,
        item: Item,
        path: list[State],
        reason: str,
        seen: VenueSeen | None = None,
        *,
        retry_ms: int | None = None,
    ) -> Item:
        """What the venue said of one item: the states it passes through (``path``, maybe
        empty), its venue state, and a retry time; one transaction, audited.

        A venue change with no state change is an ``order.observed`` entry. Raises
        :class:`StaleItems` (nothing written) if the item moved since it was read."""
        now = self._core.clock_ms()
        with self._core.transaction() as conn:
            current = items.get(conn, item.id)
            if current.state is not item.state:
                raise StaleItems(f"item {item.id} is {current.state}, not {item.state}")
            before = venue.of_item(conn, item.id)
            seen_json = None if seen is None else seen.as_json()
            if seen is not None:
                venue.note_seen(conn, item.id, seen, now)
            for target in path:
                current = self._core.move(conn, current, target, reason, venue_seen=seen_json)
            if retry_ms is not None or current.state is State.QUEUED:
                venue.set_retry(conn, item.id, retry_ms)
            after = venue.of_item(conn, item.id)
            changed = (
                before is not None and after is not None and _venue_changed(before[1], after[1])
            )
            if not path and changed:
                assert seen_json is not None
                data = {"state": str(current.state), "reason": reason, "venue": seen_json}
                self._core.journal.append(conn, audit_entries.ORDER_OBSERVED, item.id, data)
            return items.get(conn, item.id)

    def record_fills(self, found: list[Fill]) -> list[Fill]:
        """Store fills not seen before (by execId) and audit them in one entry; returns
        the new ones."""
        if not found:
            return []
        with self._core.transaction() as conn:
            new = venue.add_fills(conn, found, self._core.clock_ms())
            if new:
                data = {"fills": [f.as_json() for f in new]}
                self._core.journal.append(conn, audit_entries.ORDER_FILLS, None, data)
            return new

    def fills(self, item_id: str | None = None) -> list[Fill]:
        with self._core.lock:
            return venue.fills(self._core.conn, item_id)

    def fill_counts(self) -> dict[str, int]:
        with self._core.lock:
            return venue.fill_counts(self._core.conn)

    def latest_fill_ms(self) -> int | None:
        with self._core.lock:
            return venue.latest_fill_ms(self._core.conn)


def _venue_changed(before: VenueRef, after: VenueRef) -> bool:
    fields = ("order_id", "status", "cum_qty", "avg_price")
    return any(getattr(before, f) != getattr(after, f) for f in fields)
