"""``store.account``: a venue account's positions and balances, as the stream and REST
reconcile last saw them (:mod:`airlock.queue.account` says which write wins)."""

from __future__ import annotations

from collections.abc import Sequence

from airlock.queue import account
from airlock.queue.account import Balance, Position
from airlock.queue.store.core import Core


class Account:
    """Positions and balances (``store.account``)."""

    def __init__(self, core: Core) -> None:
        self._core = core

    def put_positions(self, rows: Sequence[Position]) -> None:
        """Store what a stream message or a REST page said, unless something newer is."""
        if rows:
            with self._core.transaction() as conn:
                account.put_positions(conn, rows)

    def reconcile_positions(
        self, account_name: str, category: str, rows: Sequence[Position], venue_ms: int
    ) -> None:
        """A complete REST listing of one category's open positions: store it, and mark
        the stored ones it leaves out flat."""
        with self._core.transaction() as conn:
            account.put_positions(conn, rows)
            present = [r.symbol for r in rows if r.size not in ("0", "")]
            account.flatten_missing(
                conn, account_name, category, present, venue_ms, self._core.clock_ms()
            )

    def put_balances(self, rows: Sequence[Balance]) -> None:
        if rows:
            with self._core.transaction() as conn:
                account.put_balances(conn, rows)

    def positions(self, account_name: str | None = None) -> list[Position]:
        with self._core.reading() as conn:
            return account.positions(conn, account_name)

    def balances(self, account_name: str | None = None) -> list[Balance]:
        with self._core.reading() as conn:
            return account.balances(conn, account_name)

    def position(self, account_name: str, category: str, symbol: str) -> Position | None:
        return next(
            (
                p
                for p in self.positions(account_name)
                if (p.category, p.symbol) == (category, symbol)
            ),
            None,
        )
