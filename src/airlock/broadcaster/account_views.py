"""What the venue says about the account, read into rows: pure, table-tested.

The same readers serve the private stream (``position`` and ``wallet`` messages) and the
REST reconcile (``/v5/position/list``, ``/v5/account/wallet-balance``). A row the venue
sends in a shape we cannot trust (a size that is no decimal, no symbol) is refused with
the reason, never half-stored. The stream's ``entryPrice`` is REST's ``avgPrice``
(design/facts-bybit-ws.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from airlock.queue.account import Balance, Position


class BadRow(ValueError):
    """A row of the venue's answer that cannot be stored as it is."""


@dataclass(frozen=True)
class Seen:
    """Where a row came from and when: the account it belongs to, ``stream`` or ``rest``,
    our clock when it arrived, and the venue time to use when the row carries none."""

    account: str
    source: str
    seen_ms: int
    venue_ms: int


def _decimal(row: Mapping[str, Any], key: str, *, required: bool = True) -> str | None:
    raw = row.get(key)
    if raw in (None, ""):
        if required:
            raise BadRow(f"no {key}")
        return None
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise BadRow(f"{key} {raw!r} is not a decimal") from None
    if not value.is_finite():
        raise BadRow(f"{key} {raw!r} is not finite")
    return str(raw)


def _ms(row: Mapping[str, Any], key: str, fallback: int) -> int:
    raw = row.get(key)
    try:
        return int(str(raw)) if raw not in (None, "") else fallback
    except ValueError:
        raise BadRow(f"{key} {raw!r} is not a time in ms") from None


def position_of(row: Mapping[str, Any], category: str, seen: Seen) -> Position:
    """One position row (REST or stream). ``category`` when the row names none (REST)."""
    symbol = str(row.get("symbol") or "")
    if not symbol:
        raise BadRow("no symbol")
    size = _decimal(row, "size")
    assert size is not None
    side = str(row.get("side") or "")
    if side not in ("Buy", "Sell", ""):
        raise BadRow(f"side {side!r} is not Buy, Sell or empty")
    flat = Decimal(size) == 0
    price = row.get("avgPrice", row.get("entryPrice"))
    return Position(
        account=seen.account,
        category=str(row.get("category") or category),
        symbol=symbol,
        side="" if flat else side,
        size="0" if flat else size,
        avg_price=_decimal({"avgPrice": price}, "avgPrice", required=False) or "0",
        mark_price=_decimal(row, "markPrice", required=False),
        unrealised_pnl=_decimal(row, "unrealisedPnl", required=False),
        cum_realised_pnl=_decimal(row, "cumRealisedPnl", required=False),
        venue_ms=_ms(row, "updatedTime", seen.venue_ms),
        seen_ms=seen.seen_ms,
        source=seen.source,
    )


def balances_of(wallet: Mapping[str, Any], seen: Seen) -> list[Balance]:
    """The coins of one wallet (``{"accountType", "coin": [...]}``)."""
    coins = wallet.get("coin")
    if not isinstance(coins, list):
        raise BadRow("no coin list")
    rows = []
    for coin in coins:
        if not isinstance(coin, Mapping) or not coin.get("coin"):
            raise BadRow("a coin without its name")
        balance = _decimal(coin, "walletBalance")
        assert balance is not None
        rows.append(
            Balance(
                account=seen.account,
                coin=str(coin["coin"]),
                wallet_balance=balance,
                equity=_decimal(coin, "equity", required=False) or balance,
                locked=_decimal(coin, "locked", required=False),
                unrealised_pnl=_decimal(coin, "unrealisedPnl", required=False),
                venue_ms=seen.venue_ms,
                seen_ms=seen.seen_ms,
                source=seen.source,
            )
        )
    return rows
