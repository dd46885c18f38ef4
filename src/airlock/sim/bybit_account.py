"""The account side of the pure Bybit simulator: positions, the wallet, and Disconnect
Cancel Protection (DCP).

Like :mod:`airlock.sim.bybit_engine`, nothing here does I/O or reads a clock. The rules
come from ``design/facts-bybit-ws.md`` ("REST reconcile", "Disconnect Cancel Protection");
where the facts are silent the choice made is said where it is made. The big ones:

- one-way positions (``positionIdx`` 0), leverage "10", no margin, no liquidation
  (``liqPrice`` ""); a fill moves the position (open, add, reduce, close, flip) and its
  realised PnL, net of the fill's fee, goes to the wallet and to ``cumRealisedPnl``;
- one UNIFIED wallet; linear and inverse contracts alike settle in USDT, symbols ending in
  USDC or PERP and options in USDC (inverse contracts really settle in the base coin: a
  simplification), spot fills only pay their fee (spot coin balances are not modelled);
  every coin counts 1 USD; ``locked`` is "0" (no margin is reserved for open orders).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from airlock.sim.bybit_engine import (
    PARAM_ERROR,
    Engine,
    Execution,
    Order,
    VenueRefusal,
    page,
    parse_limit,
    plain,
)

ACCOUNT_TYPE = "UNIFIED"
DEFAULT_BALANCE = Decimal(100000)
LEVERAGE = "10"
POSITION_CATEGORIES = frozenset({"linear", "inverse", "option"})
PRICE_PLACES = Decimal("1e-8")  # average entry prices are kept to 8 places
ZERO = Decimal(0)


def settle_coin(category: str, symbol: str) -> str:
    """The coin a symbol's PnL and fees settle in (see the module doc)."""
    if category == "option" or symbol.endswith(("USDC", "PERP")):
        return "USDC"
    return "USDT"


@dataclass
class Position:
    """A one-way position; ``size`` is signed (long > 0), ``rank`` orders creation."""

    category: str
    symbol: str
    rank: int
    created_ms: int
    size: Decimal = ZERO
    avg: Decimal = ZERO
    realised: Decimal = ZERO
    seq: int = 0
    updated_ms: int = 0

    def apply(self, execution: Execution) -> Decimal:
        """Move by one fill; returns the realised PnL net of the fee (what the wallet gets)."""
        qty, price = execution.exec_qty, execution.exec_price
        delta = qty if execution.side == "Buy" else -qty
        gross = ZERO
        if self.size == 0 or (self.size > 0) == (delta > 0):
            held = abs(self.size)
            self.avg = ((held * self.avg + qty * price) / (held + qty)).quantize(PRICE_PLACES)
        else:
            direction = 1 if self.size > 0 else -1
            gross = min(abs(self.size), qty) * (price - self.avg) * direction
            if abs(delta) > abs(self.size):
                self.avg = price  # flipped: the rest opens at the fill price
        self.size += delta
        if self.size == 0:
            self.avg = ZERO
        net = gross - execution.fee
        self.realised += net
        self.seq, self.updated_ms = execution.seq, execution.time_ms
        return net

    @property
    def side(self) -> str:
        return "Buy" if self.size > 0 else "Sell" if self.size < 0 else ""

    def unrealised(self, mark: Decimal | None) -> Decimal:
        return self.size * (mark - self.avg) if self.size and mark is not None else ZERO

    def view(self, mark: Decimal | None) -> dict[str, Any]:
        """The row of ``GET /v5/position/list``; the mark is the average when none is set."""
        shown = mark if mark is not None else self.avg
        return {
            "positionIdx": 0,
            "symbol": self.symbol,
            "side": self.side,
            "size": plain(abs(self.size)),
            "avgPrice": plain(self.avg),
            "positionValue": plain(abs(self.size) * self.avg),
            "markPrice": plain(shown),
            "unrealisedPnl": plain(self.unrealised(shown)),
            "cumRealisedPnl": plain(self.realised),
            "leverage": LEVERAGE,
            "liqPrice": "",
            "positionStatus": "Normal",
            "tradeMode": 0,
            "seq": self.seq,
            "createdTime": str(self.created_ms),
            "updatedTime": str(self.updated_ms),
        }

    def stream_view(self, mark: Decimal | None) -> dict[str, Any]:
        """The ``position`` stream's item: REST's ``avgPrice`` is ``entryPrice`` there."""
        row = self.view(mark)
        row["entryPrice"] = row.pop("avgPrice")
        return {"category": self.category, **row}


@dataclass
class AccountEngine(Engine):
    """The matching engine plus positions and a UNIFIED wallet moved by its fills."""

    positions: dict[tuple[str, str], Position] = field(default_factory=dict)
    balances: dict[str, Decimal] = field(default_factory=lambda: {"USDT": DEFAULT_BALANCE})

    # -- hooks from the engine -----------------------------------------------------------

    def _filled(self, execution: Execution) -> None:
        coin = settle_coin(execution.category, execution.symbol)
        if execution.category in POSITION_CATEGORIES:
            position = self._position(execution.category, execution.symbol, execution.time_ms)
            self.balances[coin] = self.balances.get(coin, ZERO) + position.apply(execution)
            self._position_changed(position)
        else:
            self.balances[coin] = self.balances.get(coin, ZERO) - execution.fee
        self._changed("wallet", ACCOUNT_TYPE, self.wallet_view(None))

    def _touched(self, order: Order, now_ms: int) -> None:
        """The facts: a position message on every order create, amend and cancel."""
        req = order.request
        if req.category in POSITION_CATEGORIES:
            self._position_changed(self._position(req.category, req.symbol, now_ms))

    def _position(self, category: str, symbol: str, now_ms: int) -> Position:
        key = (category, symbol)
        if key not in self.positions:
            self.positions[key] = Position(category, symbol, len(self.positions) + 1, now_ms)
            self.positions[key].updated_ms = now_ms
        return self.positions[key]

    def _position_changed(self, position: Position) -> None:
        key = f"{position.category}/{position.symbol}"
        self._changed("position", key, position.stream_view(self.marks.get(position.symbol)))

    # -- test control --------------------------------------------------------------------

    def set_balance(self, coin: str, amount: Decimal) -> None:
        """Set a coin's walletBalance (a deposit or withdrawal, as far as the wallet sees)."""
        self.balances[coin] = amount
        self._changed("wallet", ACCOUNT_TYPE, self.wallet_view(None))

    def position_views(self) -> list[dict[str, Any]]:
        """Every position row the venue holds, flat ones included, oldest first."""
        ordered = sorted(self.positions.values(), key=lambda p: p.rank)
        return [{"category": p.category, **p.view(self.marks.get(p.symbol))} for p in ordered]

    # -- queries -------------------------------------------------------------------------

    def position_list(self, q: Mapping[str, str], now_ms: int) -> tuple[str, list[Any], str]:
        """``GET /v5/position/list``: (category, rows, nextPageCursor). A symbol returns its
        row even when flat; settleCoin (or, outside linear, no filter) lists size > 0 only.
        Newest first by when the venue first held the position."""
        category = q.get("category")
        if category not in POSITION_CATEGORIES:
            raise VenueRefusal(PARAM_ERROR, "category must be linear, inverse or option")
        symbol, coin = q.get("symbol") or "", q.get("settleCoin") or ""
        if category == "linear" and not (symbol or coin):
            raise VenueRefusal(PARAM_ERROR, "symbol or settleCoin is required for linear")
        limit = parse_limit(q.get("limit"), 20, 200)
        if symbol:
            held = self.positions.get((category, symbol))
            pool = [held or Position(category, symbol, 0, now_ms, updated_ms=now_ms)]
        else:
            pool = [
                p
                for p in self.positions.values()
                if p.category == category and p.size != 0
                and (not coin or settle_coin(p.category, p.symbol) == coin)
            ]  # fmt: skip
        newest = sorted(pool, key=lambda p: p.rank, reverse=True)
        rows, cursor = page(newest, "pos", q.get("cursor"), limit, lambda p: p.rank)
        return category, [p.view(self.marks.get(p.symbol)) for p in rows], cursor

    def wallet_view(self, coins: list[str] | None) -> dict[str, Any]:
        """One ``list[]`` item of ``GET /v5/account/wallet-balance``: the named coins, or
        every coin with a non-zero balance or equity."""
        unrealised: dict[str, Decimal] = {}
        realised: dict[str, Decimal] = {}
        for p in self.positions.values():
            coin = settle_coin(p.category, p.symbol)
            unrealised[coin] = unrealised.get(coin, ZERO) + p.unrealised(self.marks.get(p.symbol))
            realised[coin] = realised.get(coin, ZERO) + p.realised
        names = coins if coins is not None else sorted({*self.balances, *unrealised})
        rows = []
        for coin in names:
            balance, upnl = self.balances.get(coin, ZERO), unrealised.get(coin, ZERO)
            if coins is None and balance == 0 and balance + upnl == 0:
                continue
            rows.append(_coin_row(coin, balance, upnl, realised.get(coin, ZERO)))
        return _wallet_item(rows)

    def wallet_balance(self, q: Mapping[str, str]) -> dict[str, Any]:
        if q.get("accountType") != ACCOUNT_TYPE:
            raise VenueRefusal(PARAM_ERROR, "accountType must be UNIFIED")
        wanted = q.get("coin")
        coins = [c for c in wanted.split(",") if c] if wanted else None
        return {"list": [self.wallet_view(coins)]}


def _coin_row(coin: str, balance: Decimal, upnl: Decimal, realised: Decimal) -> dict[str, Any]:
    equity = balance + upnl
    return {
        "coin": coin,
        "walletBalance": plain(balance),
        "equity": plain(equity),
        "usdValue": plain(equity),
        "locked": "0",
        "unrealisedPnl": plain(upnl),
        "cumRealisedPnl": plain(realised),
        "totalOrderIM": "0",
        "totalPositionIM": "0",
        "totalPositionMM": "0",
    }


def _wallet_item(rows: list[dict[str, Any]]) -> dict[str, Any]:
    equity = sum((Decimal(r["equity"]) for r in rows), ZERO)
    balance = sum((Decimal(r["walletBalance"]) for r in rows), ZERO)
    upnl = sum((Decimal(r["unrealisedPnl"]) for r in rows), ZERO)
    return {
        "accountType": ACCOUNT_TYPE,
        "totalEquity": plain(equity),
        "totalWalletBalance": plain(balance),
        "totalMarginBalance": plain(equity),
        "totalAvailableBalance": plain(equity),
        "totalPerpUPL": plain(upnl),
        "totalInitialMargin": "0",
        "totalMaintenanceMargin": "0",
        "accountIMRate": "0",
        "accountMMRate": "0",
        "coin": rows,
    }


# ------------------------------------------------------------------------------------ DCP

PRODUCTS = ("OPTIONS", "DERIVATIVES", "SPOT")
TOPIC_PRODUCT = {"dcp.option": "OPTIONS", "dcp.future": "DERIVATIVES", "dcp.spot": "SPOT"}
PRODUCT_CATEGORIES = {
    "OPTIONS": ("option",),
    "DERIVATIVES": ("linear", "inverse"),
    "SPOT": ("spot",),
}
DEFAULT_WINDOW_S = 10
WINDOW_RANGE_S = (3, 300)
DCP_NOT_ALLOWED = 10005  # unconfirmed: the code Bybit answers to an account without DCP
CANCEL_BY_DCP = "CancelByDCP"  # unconfirmed: seen in SDK enums, not in the facts


@dataclass
class Dcp:
    """Disconnect Cancel Protection for one account.

    ``allowed``: the account manager switched DCP on (institutional accounts only), which
    the docs say turns it on with a 10 s window; so every product is ON at 10 s from the
    start and ``POST /v5/order/disconnected-cancel-all`` changes one product's window
    (taking effect at once, not after the ~10 s the docs warn of). A product fires once
    every connection subscribed to its topic has been gone longer than its window; a
    product nobody subscribed to never fires, and after firing it waits for a new
    subscription. Subscribing is what counts as "reconnected" (no ping is needed).
    """

    allowed: bool = False
    windows: dict[str, int] = field(default_factory=dict)
    live: dict[str, set[str]] = field(default_factory=dict)
    gone_since: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.allowed and not self.windows:
            self.windows = dict.fromkeys(PRODUCTS, DEFAULT_WINDOW_S)

    def configure(self, params: Mapping[str, Any]) -> None:
        """The body of ``POST /v5/order/disconnected-cancel-all``; product defaults to
        OPTIONS, timeWindow (required, as dcp.mdx says) is 3-300 seconds."""
        if not self.allowed:
            raise VenueRefusal(DCP_NOT_ALLOWED, "DCP is only for institutional accounts")
        product = params.get("product") or "OPTIONS"
        if product not in PRODUCTS:
            raise VenueRefusal(PARAM_ERROR, f"product must be one of {list(PRODUCTS)}")
        window = params.get("timeWindow")
        if isinstance(window, str) and window.isdigit():
            window = int(window)
        lo, hi = WINDOW_RANGE_S
        if not isinstance(window, int) or isinstance(window, bool) or not lo <= window <= hi:
            raise VenueRefusal(PARAM_ERROR, f"timeWindow must be an integer in [{lo}, {hi}]")
        self.windows[product] = window

    def info(self) -> dict[str, Any]:
        """``GET /v5/account/query-dcp-info``: empty for an account without DCP."""
        infos = [
            {"product": p, "dcpStatus": "ON", "timeWindow": str(self.windows[p])}
            for p in PRODUCTS
            if p in self.windows
        ]
        return {"dcpInfos": infos}

    def join(self, topic: str, conn_id: str) -> None:
        product = TOPIC_PRODUCT[topic]
        self.live.setdefault(product, set()).add(conn_id)
        self.gone_since.pop(product, None)

    def leave(self, topic: str, conn_id: str, now_ms: int) -> None:
        product = TOPIC_PRODUCT[topic]
        live = self.live.get(product, set())
        if conn_id in live:
            live.discard(conn_id)
            if not live:
                self.gone_since[product] = now_ms

    def due(self, now_ms: int) -> list[str]:
        """The products whose window has passed with nobody subscribed; each fires once."""
        fired = []
        for product, since in list(self.gone_since.items()):
            window = self.windows.get(product)
            if window is not None and now_ms - since > window * 1000:
                fired.append(product)
                del self.gone_since[product]
        return fired
