"""``store.events``: the numbered stream of item creations, state changes and fills
(written by triggers in the transaction of each change; see :mod:`airlock.queue.events`)."""

from __future__ import annotations

from collections.abc import Callable

from airlock.queue import events
from airlock.queue.store.core import Core


class Events:
    """The event stream (``store.events``)."""

    def __init__(self, core: Core) -> None:
        self._core = core

    def after(
        self, after: int = 0, limit: int = 1000, item_id: str | None = None
    ) -> list[events.EventRow]:
        """Events numbered above ``after``, oldest first: the local API's event stream."""
        with self._core.lock:
            return events.after(self._core.conn, after, limit, item_id)

    def last_id(self) -> int:
        with self._core.lock:
            return events.last_id(self._core.conn)

    def on_commit(self, listener: Callable[[], None]) -> Callable[[], None]:
        """``listener`` after each write this process commits (new events may be there);
        returns the unsubscribe. Other processes' writes are found by polling."""
        return self._core.on_commit(listener)
