"""A venue account's positions and balances as last seen: the rows and their SQL.

Kept current by the private stream and reconciled over REST (issue 17): each row keeps the
venue's own time of the state it shows (``venue_ms``: ``updatedTime`` of a position, the
message's ``creationTime`` of a wallet update, the answer's time of a REST read) and a
write never replaces a row with an older state: a REST snapshot that left the venue
before a stream message already stored does not undo it. Plain values, like fills: no
signed payload lives here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from airlock.encoding.records import from_row, plain
from airlock.queue.db import Conn

Source = Literal["stream", "rest"]
RESUME_NOTE = "bybit.resume_ms"
"""The note ``airlock bybit resume`` writes: the service resumes a stopped stream when it
is newer than the stop."""


@dataclass(frozen=True)
class Position:
    """One instrument's position (one-way mode): ``side`` "" when flat."""

    account: str
    category: str
    symbol: str
    side: str
    size: str
    avg_price: str
    mark_price: str | None
    unrealised_pnl: str | None
    cum_realised_pnl: str | None
    venue_ms: int
    seen_ms: int
    source: str

    def as_json(self) -> dict[str, object]:
        return plain(self)


@dataclass(frozen=True)
class Balance:
    """One coin of one account type's wallet."""

    account: str
    coin: str
    wallet_balance: str
    equity: str
    locked: str | None
    unrealised_pnl: str | None
    venue_ms: int
    seen_ms: int
    source: str

    def as_json(self) -> dict[str, object]:
        return plain(self)


_POSITION_COLUMNS = (
    "account, category, symbol, side, size, avg_price, mark_price, unrealised_pnl, "
    "cum_realised_pnl, venue_ms, seen_ms, source"
)
_BALANCE_COLUMNS = (
    "account, coin, wallet_balance, equity, locked, unrealised_pnl, venue_ms, seen_ms, source"
)


def _upsert(table: str, columns: str, key: str) -> str:
    names = [c.strip() for c in columns.split(",")]
    keys = {k.strip() for k in key.split(",")}
    updates = ", ".join(f"{n} = excluded.{n}" for n in names if n not in keys)
    marks = ", ".join("?" for _ in names)
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({marks}) ON CONFLICT ({key}) DO UPDATE "
        f"SET {updates} WHERE excluded.venue_ms >= {table}.venue_ms"
    )


_PUT_POSITION = _upsert("positions", _POSITION_COLUMNS, "account, category, symbol")
_PUT_BALANCE = _upsert("balances", _BALANCE_COLUMNS, "account, coin")


def put_positions(conn: Conn, rows: Iterable[Position]) -> None:
    for row in rows:
        conn.execute(_PUT_POSITION, tuple(plain(row).values()))


def put_balances(conn: Conn, rows: Iterable[Balance]) -> None:
    for row in rows:
        conn.execute(_PUT_BALANCE, tuple(plain(row).values()))


def flatten_missing(
    conn: Conn, account: str, category: str, present: Sequence[str], venue_ms: int, now_ms: int
) -> None:
    """A complete REST listing of open positions: the ones it leaves out are flat now
    (unless a newer state is stored)."""
    marks = ", ".join("?" for _ in present) or "''"
    conn.execute(
        "UPDATE positions SET side = '', size = '0', unrealised_pnl = '0', venue_ms = ?,"
        " seen_ms = ?, source = 'rest' WHERE account = ? AND category = ?"
        f" AND symbol NOT IN ({marks}) AND size <> '0' AND venue_ms <= ?",
        (venue_ms, now_ms, account, category, *present, venue_ms),
    )


def positions(conn: Conn, account: str | None = None) -> list[Position]:
    where, args = ("WHERE account = ?", (account,)) if account is not None else ("", ())
    rows = conn.execute(
        f"SELECT {_POSITION_COLUMNS} FROM positions {where} ORDER BY account, category, symbol",
        args,
    ).fetchall()
    return [Position(**from_row(Position, r)) for r in rows]


def balances(conn: Conn, account: str | None = None) -> list[Balance]:
    where, args = ("WHERE account = ?", (account,)) if account is not None else ("", ())
    rows = conn.execute(
        f"SELECT {_BALANCE_COLUMNS} FROM balances {where} ORDER BY account, coin", args
    ).fetchall()
    return [Balance(**from_row(Balance, r)) for r in rows]


def signed_size(position: Position | None) -> Decimal | None:
    """The position as one number: long positive, short negative, flat 0; None when no
    position is known (never reconciled)."""
    if position is None:
        return None
    if not position.side:
        return Decimal(0)
    size = Decimal(position.size)
    return size if position.side == "Buy" else -size


def reduces(held: Decimal | None, side: str, qty: Decimal) -> bool:
    """Whether an order shrinks the reconciled position ``held`` without going past flat:
    a sell of at most a long's size, a buy of at most a short's. Nothing reduces a flat
    or unknown position (the outage policy's "risk-reducing", issue 17)."""
    if held is None or held == 0 or qty <= 0:
        return False
    against = (held > 0 and side == "Sell") or (held < 0 and side == "Buy")
    return against and qty <= abs(held)
