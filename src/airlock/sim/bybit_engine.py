"""The pure parts of the Bybit V5 simulator: signatures, validation, matching, paging, limits.

Nothing here does I/O or reads a clock: every function takes the time it needs as an
argument, so the HTTP shell (:mod:`airlock.sim.bybit`) and tests drive time explicitly.
The rules come from ``design/facts-bybit-v5.md``; where the facts are silent the choice
made is said where it is made.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote, unquote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from airlock.errors import AirlockError

OK = 0
PARAM_ERROR = 10001
TIMESTAMP_ERROR = 10002
INVALID_KEY = 10003
SIGN_ERROR = 10004
RATE_LIMITED = 10006
ORDER_NOT_EXISTS = 110001
ORDER_FINISHED = 110008
ORDER_CANCELLED = 110010
DUPLICATE_LINK_ID = 110072

DEFAULT_RECV_WINDOW = 5000
FUTURE_TOLERANCE_MS = 1000
SECOND_MS = 1000
DAY_MS = 24 * 3600 * SECOND_MS
MAX_SPAN_MS = 7 * DAY_MS
CANCELLED_RETENTION_MS = DAY_MS
CLOSED_RETENTION_MS = 7 * DAY_MS
RECENT_CLOSED = 500
BATCH_MAX = 20
BATCH_MAX_SPOT = 10
MAKER_FEE = Decimal("0.0002")
TAKER_FEE = Decimal("0.00055")
SPOT_FEE = Decimal("0.001")
NO_CANCEL = "UNKNOWN"  # cancelType of an order nobody cancelled
CANCEL_BY_USER = "CancelByUser"

CATEGORIES = frozenset({"linear", "inverse", "spot", "option"})
SIDES = frozenset({"Buy", "Sell"})
ORDER_TYPES = frozenset({"Market", "Limit"})
TIME_IN_FORCE = frozenset({"GTC", "IOC", "FOK", "PostOnly"})
OPEN_STATUSES = frozenset({"New", "PartiallyFilled", "Untriggered"})
_LINK_ID = re.compile(r"[0-9A-Za-z_-]{1,36}")
_SYMBOL = re.compile(r"[0-9A-Z]{1,32}")


class VenueRefusal(AirlockError):
    """A refusal answered as a V5 envelope with this retCode (HTTP 200, as Bybit does)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ----------------------------------------------------------------------------- signing


def sign_payload(timestamp: str, api_key: str, recv_window: str, payload: bytes) -> bytes:
    """The bytes Bybit signs: timestamp + key + window + (raw body | raw query string).

    Kept as bytes end to end: the body is signed exactly as received, never re-serialised.
    """
    return timestamp.encode() + api_key.encode() + recv_window.encode() + payload


def hmac_signature(secret: bytes, payload: bytes) -> str:
    """HMAC-SHA256, lowercase hex (the form Bybit expects for system-generated keys)."""
    return hmac.new(secret, payload, hashlib.sha256).hexdigest()


def verify_hmac(secret: bytes, payload: bytes, signature: str) -> bool:
    return hmac.compare_digest(hmac_signature(secret, payload), signature.lower())


def verify_rsa(public_key: rsa.RSAPublicKey, payload: bytes, signature: str) -> bool:
    """RSA PKCS#1 v1.5 over SHA-256, base64: Bybit holds only the public key."""
    try:
        raw = base64.b64decode(signature, validate=True)
        public_key.verify(raw, payload, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def load_rsa_public(pem: bytes) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the registered key must be an RSA public key")
    return key


def check_timestamp(server_ms: int, timestamp: str | None, recv_window: str | None) -> None:
    """Accept iff ``server - window <= ts < server + 1000``; otherwise 10002 naming all three
    numbers, so a client can see whether its clock or its window is off."""
    if timestamp is None or not timestamp.isdigit():
        raise VenueRefusal(TIMESTAMP_ERROR, "invalid request, please check your timestamp")
    window = DEFAULT_RECV_WINDOW if recv_window is None else _positive_int(recv_window)
    ts = int(timestamp)
    if not server_ms - window <= ts < server_ms + FUTURE_TOLERANCE_MS:
        raise VenueRefusal(
            TIMESTAMP_ERROR,
            "invalid request, please check your server timestamp or recv_window param. "
            f"req_timestamp[{ts}],server_timestamp[{server_ms}],recv_window[{window}]",
        )


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise VenueRefusal(PARAM_ERROR, f"recv_window must be a positive integer, got {text!r}")
    return int(text)


# ---------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class OrderRequest:
    """One validated create request."""

    category: str
    symbol: str
    side: str
    order_type: str
    qty: Decimal
    price: Decimal | None
    time_in_force: str
    order_link_id: str


def check_link_id(value: Any, *, required: bool) -> str:
    """At most 36 of ``[0-9A-Za-z_-]``; an empty id is "none given" (then Bybit needs none,
    except for options)."""
    if value is None or value == "":
        if required:
            raise VenueRefusal(PARAM_ERROR, "orderLinkId is required for options")
        return ""
    if not isinstance(value, str) or not _LINK_ID.fullmatch(value):
        raise VenueRefusal(PARAM_ERROR, "orderLinkId must be 1-36 characters of [0-9A-Za-z_-]")
    return value


def validate_order(params: Mapping[str, Any], category: str | None = None) -> OrderRequest:
    """Refuse a malformed create request with 10001, before anything is stored."""
    category = category if category is not None else params.get("category")
    if category not in CATEGORIES:
        raise VenueRefusal(PARAM_ERROR, f"category must be one of {sorted(CATEGORIES)}")
    symbol = params.get("symbol")
    if not isinstance(symbol, str) or not _SYMBOL.fullmatch(symbol):
        raise VenueRefusal(PARAM_ERROR, "symbol must be upper case, e.g. BTCUSDT")
    side, order_type = params.get("side"), params.get("orderType")
    if side not in SIDES:
        raise VenueRefusal(PARAM_ERROR, "side must be Buy or Sell")
    if order_type not in ORDER_TYPES:
        raise VenueRefusal(PARAM_ERROR, "orderType must be Market or Limit")
    tif = params.get("timeInForce") or "GTC"
    if tif not in TIME_IN_FORCE:
        raise VenueRefusal(PARAM_ERROR, f"timeInForce must be one of {sorted(TIME_IN_FORCE)}")
    qty = _positive_decimal(params.get("qty"), "qty")
    price = None
    if order_type == "Limit":
        price = _positive_decimal(params.get("price"), "price")
    link = check_link_id(params.get("orderLinkId"), required=category == "option")
    return OrderRequest(category, symbol, side, order_type, qty, price, tif, link)


def _positive_decimal(value: Any, name: str) -> Decimal:
    """Bybit takes numbers as strings; a JSON number or anything non-positive is refused."""
    if not isinstance(value, str):
        raise VenueRefusal(PARAM_ERROR, f"{name} must be a decimal string")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise VenueRefusal(PARAM_ERROR, f"{name} is not a number: {value!r}") from None
    if not number.is_finite() or number <= 0:
        raise VenueRefusal(PARAM_ERROR, f"{name} must be positive")
    return number


def parse_limit(value: str | None, default: int, maximum: int) -> int:
    if value is None or value == "":
        return default
    if not value.isdigit() or not 1 <= int(value) <= maximum:
        raise VenueRefusal(PARAM_ERROR, f"limit must be 1-{maximum}")
    return int(value)


# ------------------------------------------------------------------------------ cursors


def encode_cursor(kind: str, seq: int) -> str:
    """Opaque to clients and, like Bybit's, already URL-encoded (contains %3D, %26)."""
    return quote(f"{kind}={seq}&page=next", safe="")


def decode_cursor(kind: str, cursor: str | None) -> int | None:
    """The sequence number to continue below; clients may send the cursor as received or
    percent-encode it once more, so decode until it stops changing."""
    if not cursor:
        return None
    text = cursor
    for _ in range(3):
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    match = re.fullmatch(rf"{kind}=(\d+)&page=next", text)
    if match is None:
        raise VenueRefusal(PARAM_ERROR, "invalid cursor")
    return int(match.group(1))


def page(
    items: list[Any], kind: str, cursor: str | None, limit: int, seq: Callable[[Any], int]
) -> tuple[list[Any], str]:
    """One page of ``items`` (newest first, strictly decreasing ``seq``) after ``cursor``.

    Paging by the last sequence number seen, not by offset, so a fill arriving between two
    page requests neither repeats nor hides a row of the older pages.
    """
    after = decode_cursor(kind, cursor)
    rest = [item for item in items if after is None or seq(item) < after]
    chosen = rest[:limit]
    more = len(rest) > limit
    return chosen, encode_cursor(kind, seq(chosen[-1])) if more else ""


def time_range(
    start: str | None, end: str | None, now_ms: int, *, default_span: int = MAX_SPAN_MS
) -> tuple[int, int]:
    """startTime/endTime with Bybit's 7-day maximum span; absent ones default to the last
    7 days (or 7 days from the one given)."""
    lo = _opt_ms(start, "startTime")
    hi = _opt_ms(end, "endTime")
    if hi is None:
        hi = now_ms if lo is None else lo + default_span
    if lo is None:
        lo = hi - default_span
    if hi < lo or hi - lo > MAX_SPAN_MS:
        raise VenueRefusal(PARAM_ERROR, "startTime and endTime must span at most 7 days")
    return lo, hi


def _opt_ms(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise VenueRefusal(PARAM_ERROR, f"{name} must be milliseconds")
    return int(value)


# ------------------------------------------------------------------------------- engine


@dataclass
class Order:
    """An order as the venue holds it; ``seq`` orders creation for paging."""

    seq: int
    order_id: str
    request: OrderRequest
    created_ms: int
    updated_ms: int
    status: str = "New"
    cum_qty: Decimal = Decimal(0)
    cum_value: Decimal = Decimal(0)
    reject_reason: str = "EC_NoError"
    cancel_type: str = NO_CANCEL

    @property
    def leaves(self) -> Decimal:
        return self.request.qty - self.cum_qty if self.status in OPEN_STATUSES else Decimal(0)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def view(self) -> dict[str, Any]:
        """The order as V5 shows it (numbers as strings)."""
        req = self.request
        avg = self.cum_value / self.cum_qty if self.cum_qty else Decimal(0)
        return {
            "orderId": self.order_id,
            "orderLinkId": req.order_link_id,
            "category": req.category,
            "symbol": req.symbol,
            "side": req.side,
            "orderType": req.order_type,
            "price": plain(req.price) if req.price is not None else "0",
            "qty": plain(req.qty),
            "timeInForce": req.time_in_force,
            "orderStatus": self.status,
            "rejectReason": self.reject_reason,
            "cancelType": self.cancel_type,
            "cumExecQty": plain(self.cum_qty),
            "cumExecValue": plain(self.cum_value),
            "avgPrice": plain(avg) if self.cum_qty else "",
            "leavesQty": plain(self.leaves),
            "createdTime": str(self.created_ms),
            "updatedTime": str(self.updated_ms),
        }


@dataclass(frozen=True)
class Execution:
    """One fill; ``exec_id`` is unique, which is what clients de-duplicate on."""

    seq: int
    exec_id: str
    order_id: str
    order_link_id: str
    category: str
    symbol: str
    side: str
    order_type: str
    exec_price: Decimal
    exec_qty: Decimal
    is_maker: bool
    time_ms: int
    order_qty: Decimal
    leaves_qty: Decimal
    fee_rate: Decimal = Decimal(0)

    @property
    def value(self) -> Decimal:
        return self.exec_price * self.exec_qty

    @property
    def fee(self) -> Decimal:
        return self.value * self.fee_rate

    def view(self) -> dict[str, Any]:
        return {
            "execId": self.exec_id,
            "orderId": self.order_id,
            "orderLinkId": self.order_link_id,
            "category": self.category,
            "symbol": self.symbol,
            "side": self.side,
            "orderType": self.order_type,
            "execPrice": plain(self.exec_price),
            "execQty": plain(self.exec_qty),
            "execValue": plain(self.value),
            "execType": "Trade",
            "execFee": plain(self.fee),
            "feeRate": plain(self.fee_rate),
            "isMaker": self.is_maker,
            "orderQty": plain(self.order_qty),
            "leavesQty": plain(self.leaves_qty),
            "execTime": str(self.time_ms),
            "seq": self.seq,
        }


def plain(number: Decimal) -> str:
    """Plain decimal text without exponent or trailing zeros ("0.5", "100")."""
    text = format(number.normalize(), "f")
    return text


def fee_rate(category: str, maker: bool) -> Decimal:
    """The fee per unit of execValue. A choice, not from the facts: Bybit's base (non-VIP)
    rates, derivatives maker 0.02 % / taker 0.055 %, spot 0.1 % either way."""
    if category == "spot":
        return SPOT_FEE
    return MAKER_FEE if maker else TAKER_FEE


@dataclass(frozen=True)
class Change:
    """One thing the private streams report: ``topic`` (order, execution, position,
    wallet), a ``key`` naming what changed, and its view at the time."""

    topic: str
    key: str
    data: dict[str, Any]


def crosses(side: str, price: Decimal, mark: Decimal) -> bool:
    """A buy at or above the mark, or a sell at or below it, would take liquidity."""
    return price >= mark if side == "Buy" else price <= mark


@dataclass
class Engine:
    """Orders, a resting book per symbol, and fills against the mark price.

    The book has unlimited liquidity at the mark: a crossing order fills completely, so
    IOC and FOK differ only in name here (both fill all or cancel). A taker fills at the
    mark; a resting limit that the mark moves through fills at its own price (maker).
    Every change is also kept in an outbox (:meth:`drain`) for the streams. Not
    thread-safe: the shell holds one lock around every call.
    """

    marks: dict[str, Decimal] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    by_link: dict[str, str] = field(default_factory=dict)
    executions: list[Execution] = field(default_factory=list)
    recent_closed: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_CLOSED))
    changes: list[Change] = field(default_factory=list)
    _seq: int = 0

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def drain(self) -> list[Change]:
        """The changes since the last drain, the latest view per key (an order created and
        filled in one command is reported once, Filled), in order of first change."""
        latest: dict[tuple[str, str], Change] = {}
        for change in self.changes:
            latest[change.topic, change.key] = change
        self.changes = []
        return list(latest.values())

    def _changed(self, topic: str, key: str, data: dict[str, Any]) -> None:
        self.changes.append(Change(topic, key, data))

    def _touched(self, order: Order, now_ms: int) -> None:
        """Hook: an order was created or cancelled (the account pushes its position)."""

    def _filled(self, execution: Execution) -> None:
        """Hook: a fill happened (the account moves the position and the wallet)."""

    # -- commands ------------------------------------------------------------------------

    def create(self, req: OrderRequest, now_ms: int) -> Order:
        """Store, then match: the order exists (and keeps its link id) whatever happens next."""
        if req.order_link_id and req.order_link_id in self.by_link:
            raise VenueRefusal(DUPLICATE_LINK_ID, "OrderLinkedID is duplicate")
        order = Order(self._next(), str(uuid.uuid4()), req, now_ms, now_ms)
        self.orders[order.order_id] = order
        if req.order_link_id:
            self.by_link[req.order_link_id] = order.order_id
        self._on_arrival(order, now_ms)
        if order.is_open:
            self._changed("order", order.order_id, order.view())
        self._touched(order, now_ms)
        return order

    def _on_arrival(self, order: Order, now_ms: int) -> None:
        req = order.request
        mark = self.marks.get(req.symbol)
        if req.order_type == "Market":
            if mark is None:
                self._close(order, "Cancelled", now_ms, "EC_NoImmediateQtyToFill")
            else:
                self._fill(order, mark, now_ms, maker=False)
            return
        assert req.price is not None
        would_cross = mark is not None and crosses(req.side, req.price, mark)
        if req.time_in_force == "PostOnly" and would_cross:
            # Inference: Bybit accepts the request, then cancels the order (not an error code).
            self._close(order, "Cancelled", now_ms, "EC_PostOnlyWillTakeLiquidity")
        elif would_cross:
            assert mark is not None
            self._fill(order, mark, now_ms, maker=False)
        elif req.time_in_force in ("IOC", "FOK"):
            self._close(order, "Cancelled", now_ms, "EC_NoImmediateQtyToFill")

    def set_mark(self, symbol: str, price: Decimal, now_ms: int) -> list[Execution]:
        """Move the mark; resting limits it crosses fill at their own price, oldest first."""
        self.marks[symbol] = price
        before = len(self.executions)
        for order in sorted(self.orders.values(), key=lambda o: o.seq):
            req = order.request
            limit = req.price
            resting = order.is_open and req.symbol == symbol
            if resting and limit is not None and crosses(req.side, limit, price):
                self._fill(order, limit, now_ms, maker=True)
        return self.executions[before:]

    def cancel(self, category: str, symbol: str, order_id: str, link_id: str, now_ms: int) -> Order:
        """orderId wins over orderLinkId; finished orders answer 110008/110010."""
        order = self.find(order_id, link_id)
        if order is None or order.request.symbol != symbol or order.request.category != category:
            raise VenueRefusal(ORDER_NOT_EXISTS, "order not exists or too late to cancel")
        if order.status == "Cancelled":
            raise VenueRefusal(ORDER_CANCELLED, "order has been cancelled")
        if not order.is_open:
            raise VenueRefusal(ORDER_FINISHED, "order has been finished")
        order.cancel_type = CANCEL_BY_USER
        self._close(order, "Cancelled", now_ms, "EC_PerCancelRequest")
        self._touched(order, now_ms)
        return order

    def cancel_all(self, categories: Iterable[str], now_ms: int, cancel_type: str) -> list[Order]:
        """The venue cancels every open order of these categories (what DCP does)."""
        wanted = set(categories)
        cancelled = []
        for order in sorted(self.orders.values(), key=lambda o: o.seq):
            if order.is_open and order.request.category in wanted:
                order.cancel_type = cancel_type
                self._close(order, "Cancelled", now_ms, "EC_PerCancelRequest")
                self._touched(order, now_ms)
                cancelled.append(order)
        return cancelled

    def _fill(self, order: Order, price: Decimal, now_ms: int, *, maker: bool) -> None:
        qty = order.leaves
        order.cum_qty += qty
        order.cum_value += qty * price
        req = order.request
        execution = Execution(
            self._next(), str(uuid.uuid4()), order.order_id, req.order_link_id,
            req.category, req.symbol, req.side, req.order_type, price, qty, maker,
            now_ms, req.qty, Decimal(0), fee_rate(req.category, maker),
        )  # fmt: skip
        self.executions.append(execution)
        self._changed("execution", execution.exec_id, execution.view())
        self._close(order, "Filled", now_ms, order.reject_reason)
        self._filled(execution)

    def _close(self, order: Order, status: str, now_ms: int, reason: str) -> None:
        order.status = status
        order.updated_ms = now_ms
        order.reject_reason = reason
        self.recent_closed.append(order.order_id)
        self._changed("order", order.order_id, order.view())

    # -- queries -------------------------------------------------------------------------

    def find(self, order_id: str, link_id: str) -> Order | None:
        if order_id:
            return self.orders.get(order_id)
        if link_id:
            return self.orders.get(self.by_link.get(link_id, ""))
        return None

    def realtime(self, category: str, q: Mapping[str, str]) -> list[Order]:
        """Open orders, or with openOnly=1 the 500 most recent closed ones; an orderId or
        orderLinkId picks that order whether open or recently closed (lookup priority
        orderId > orderLinkId > symbol), newest first."""
        recent = set(self.recent_closed)
        wanted = self.find(q.get("orderId", ""), q.get("orderLinkId", ""))
        if q.get("orderId") or q.get("orderLinkId"):
            pool: Iterable[Order] = (
                [wanted] if wanted and (wanted.is_open or wanted.order_id in recent) else []
            )
        elif q.get("openOnly") == "1":
            pool = [self.orders[i] for i in recent]
        else:
            pool = [o for o in self.orders.values() if o.is_open]
        return _newest(o for o in pool if _matches(o, category, q.get("symbol")))

    def history(self, category: str, q: Mapping[str, str], now_ms: int) -> list[Order]:
        """Orders created in the queried span and still retained: cancelled/rejected
        without fills for 24 h, other closed orders for 7 days (open ones always)."""
        lo, hi = time_range(q.get("startTime"), q.get("endTime"), now_ms)
        wanted = self.find(q.get("orderId", ""), q.get("orderLinkId", ""))
        if q.get("orderId") or q.get("orderLinkId"):
            pool: Iterable[Order] = [wanted] if wanted else []
        else:
            pool = (o for o in self.orders.values() if lo <= o.created_ms <= hi)
        return _newest(
            o
            for o in pool
            if _matches(o, category, q.get("symbol")) and _retained(o, now_ms)
            and (not q.get("orderStatus") or o.status == q["orderStatus"])
        )  # fmt: skip

    def execution_list(self, category: str, q: Mapping[str, str], now_ms: int) -> list[Execution]:
        lo, hi = time_range(q.get("startTime"), q.get("endTime"), now_ms)
        return [
            e
            for e in reversed(self.executions)
            if e.category == category and lo <= e.time_ms <= hi
            and (not q.get("symbol") or e.symbol == q["symbol"])
            and (not q.get("orderId") or e.order_id == q["orderId"])
            and (not q.get("orderLinkId") or e.order_link_id == q["orderLinkId"])
        ]  # fmt: skip


def _matches(order: Order, category: str, symbol: str | None) -> bool:
    return order.request.category == category and (not symbol or order.request.symbol == symbol)


def _newest(orders: Iterable[Order]) -> list[Order]:
    return sorted(orders, key=lambda o: o.seq, reverse=True)


def _retained(order: Order, now_ms: int) -> bool:
    if order.is_open:
        return True
    quiet = order.status in ("Cancelled", "Rejected", "Deactivated") and not order.cum_qty
    keep = CANCELLED_RETENTION_MS if quiet else CLOSED_RETENTION_MS
    return now_ms - order.updated_ms <= keep


# --------------------------------------------------------------------------- rate limits


@dataclass
class Window:
    """A rolling window: at most ``limit`` units per ``span_ms``, by the injected clock."""

    limit: int
    span_ms: int = SECOND_MS
    hits: deque[int] = field(default_factory=deque)

    def _expire(self, now_ms: int) -> None:
        while self.hits and self.hits[0] <= now_ms - self.span_ms:
            self.hits.popleft()

    def take(self, now_ms: int, units: int = 1) -> bool:
        """Count ``units`` if they fit; a refused request does not use up the window."""
        self._expire(now_ms)
        if len(self.hits) + units > self.limit:
            return False
        self.hits.extend([now_ms] * units)
        return True

    def remaining(self, now_ms: int) -> int:
        self._expire(now_ms)
        return max(0, self.limit - len(self.hits))

    def reset_ms(self, now_ms: int) -> int:
        """When the oldest counted request leaves the window (now, if none is counted)."""
        self._expire(now_ms)
        return self.hits[0] + self.span_ms if self.hits else now_ms


def record_view(item: Any) -> dict[str, Any]:
    """A plain-dict copy for test assertions (decimals kept as :class:`Decimal`)."""
    return asdict(item)
