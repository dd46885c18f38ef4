"""Link changes into the audit log: the record the SLO report reads availability from.

Both sides write ``relay.health`` entries here: the EVM monitor's relays (``side`` "evm")
and the Bybit venue (relay "bybit", ``side`` "bybit"). The first entry of each link after
a broadcaster starts has ``from`` "unknown": the state it was first seen in (a link that
does not answer its first probe is recorded ``unknown -> down`` then and there), so a
reader knows from when the link was watched, and each restart is visible. On a shared
queue the entry names the broadcaster (``by``): relay names are per airlock.toml.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from airlock.audit import entries as audit_entries
from airlock.queue.errors import StoreUnavailable
from airlock.queue.store import Store

log = logging.getLogger("airlock.broadcaster")

FIRST_VIEW = "first probe since the start"


class LinkLog:
    """The ``relay.health`` entries of one side's links."""

    def __init__(self, store: Store, side: str, by: Callable[[], str | None]) -> None:
        self.store = store
        self.side = side
        self.by = by  # the broadcaster's name on a shared queue (its lease holder), or None
        self._seen: set[str] = set()

    def restart(self) -> None:
        """A (re)start: the next entry of each link is its first."""
        self._seen.clear()

    def changed(self, link: str, old: str, new: str, reason: str) -> None:
        if link not in self._seen:
            self._seen.add(link)
            old = "unknown"  # its first state since this process started
        self.record(link, old, new, reason)

    def first_view(self, link: str, state: str, why: str | None) -> None:
        """What the first probe found, unless a change already said it."""
        if link not in self._seen:
            self.changed(link, "unknown", state, f"{FIRST_VIEW}: {why}")

    def record(self, link: str, old: str, new: str, reason: str) -> None:
        """One entry; a queue that cannot be written is logged, not raised (the monitor
        must go on judging the links)."""
        data = {"relay": link, "side": self.side, "from": old, "to": new, "reason": reason}
        by = self.by()
        if by is not None:
            data["by"] = by
        try:
            self.store.audit.record(audit_entries.RELAY_HEALTH, data)
        except StoreUnavailable as exc:
            log.warning("relay %s's change not recorded: %s", link, exc)
