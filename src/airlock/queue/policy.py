"""The Bybit outage policy, applied once when an order or a cancel is enqueued.

Why at enqueue: the trader is still at the keyboard. A refusal now ("IOC cannot wait for a
link") can be acted on; the same refusal an hour later, when the link returns, cannot. So every
question the outage raises (may this order wait? at what price? for how long? ahead of what?)
is answered here, once, and the answer is stored with the item.

Pure and deterministic: no I/O, no clock (the caller passes ``now_ms`` to :func:`expires_ms`),
no HSM. The same request, venue state and :class:`PolicyConfig` (declared with the other
settings, in :mod:`airlock.config.bybit`) always give the same
:class:`Decision`, and every decision names the rule that fired (:data:`RULES`), because that
name goes into the audit log and an auditor must be able to tell *why* an order waited, was
rewritten, or was turned away.

Decisions (see also the function docstrings):

- Inputs are validated the same way whether or not the venue is reachable: a negative
  slippage or a TTL above the maximum is wrong in any weather, and a decision's validity must
  not depend on the link's state at the moment of typing.
- Nothing here raises for bad *requests*: every refusal is a :class:`Decision`, so the caller
  has one path to the audit log. Only a bad :class:`PolicyConfig` raises (``ConfigError``):
  that is a setup mistake, not a trader's.
- While the venue is reachable every valid order is queued under ``venue-up`` unchanged: the
  broadcaster sends it at once. Orders that cannot rest (IOC, FOK, Market) get the short
  ``immediate_ttl_s``, so that if the link drops between enqueue and send they expire instead
  of firing minutes later, which is exactly what the outage rules would have refused.
- While it is unreachable: IOC and FOK are refused (they mean "now or never"); a Market order
  is rewritten as a Limit order at the slippage cap, or refused; GTC and PostOnly wait with a
  TTL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext
from typing import Any, Literal

from airlock.config import BPS_PER_UNIT, PolicyConfig
from airlock.errors import InvalidInput
from airlock.queue.account import reduces
from airlock.queue.items import Priority
from airlock.signer.bybit import (
    OrderIntent,
    canonical_decimal,
    intent_dict,
    make_order_intent,
    order_link_id_for,
)
from airlock.vocab import CATEGORIES, Side

Action = Literal["queue", "refuse", "local"]

RULES: Mapping[str, str] = {
    "venue-up": "the venue is reachable: queued unchanged, the broadcaster sends it at once",
    "ioc-fok-never-queued": "IOC and FOK orders are refused while the venue is unreachable",
    "market-needs-ref-and-slippage": "a Market order in an outage needs a ref price and a cap",
    "market-disabled-in-outage": "Market orders in an outage are disabled by configuration",
    "market-to-limit": "a Market order in an outage becomes a Limit order at the slippage cap",
    "slippage-over-cap": "the slippage asked for is above the configured maximum",
    "gtc-ttl": "a GTC order waits for the link, for its TTL at most",
    "postonly-ttl": "a PostOnly order waits for the link, for its TTL at most",
    "ttl-over-max": "the TTL asked for is above the configured maximum",
    "invalid-order": "the order itself is malformed; nothing was queued",
    "cancel-first": "a cancel is queued ahead of every new order (Priority.CANCEL)",
    "cancel-local": "the order was never sent: it is dropped locally, nothing goes out",
    "invalid-cancel": "the cancel itself is malformed; nothing was queued",
}
"""Every rule a :class:`Decision` can name, with a one-line reason for the audit trail."""

_TIF_RULE: Mapping[str, str] = {
    "IOC": "ioc-fok-never-queued",
    "FOK": "ioc-fok-never-queued",
    "GTC": "gtc-ttl",
    "PostOnly": "postonly-ttl",
}
"""Outage rule per time in force of a Limit order (Market orders have their own path)."""

_CAP_ROUNDING: Mapping[str, str] = {"Buy": ROUND_FLOOR, "Sell": ROUND_CEILING}
"""Round *towards the reference price* so the cap is never exceeded; see capped_limit_price."""

_CAP_DIRECTION: Mapping[str, int] = {"Buy": 1, "Sell": -1}

_BPS_RE = re.compile(r"-?[0-9]{1,6}(\.[0-9]{1,4})?")
_SYMBOL_RE = re.compile(r"[A-Z0-9]{1,32}")  # as airlock.signer.bybit accepts for orders
_MAX_PLACES = 40  # decimal places of a ref price, as canonical_decimal allows
_PRECISION = 200  # far above 40+40 digits times a 10-digit factor: products are exact


# ----------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class OrderRequest:
    """An order as the CLI received it, before any validation.

    Decimals (``qty``, ``price``, ``ref_price``) are strings in plain notation, as typed;
    ``ref_price`` should carry the instrument's tick precision ("100.00", not "100"), because
    the rewritten limit price keeps exactly that many decimal places.
    """

    category: str
    symbol: str
    side: str
    order_type: str
    qty: str | int | Decimal
    idempotency_key: str
    price: str | int | Decimal | None = None
    tif: str | None = None
    ttl_s: int | None = None
    ref_price: str | int | Decimal | None = None
    slippage_bps: int | str | Decimal | None = None
    reduce_only: bool = False


@dataclass(frozen=True)
class CancelRequest:
    """A cancel of the order queued under ``idempotency_key`` (its orderLinkId derives from it)."""

    category: str
    symbol: str
    idempotency_key: str


@dataclass(frozen=True)
class Decision:
    """What the policy decided, and which rule decided it (for the audit log).

    ``action``: ``queue`` (store it; the broadcaster sends it when it can), ``refuse``
    (store nothing; ``message`` says what to do instead) or ``local`` (a cancel settled
    without the network). ``intent`` is the order to sign, possibly rewritten; ``None`` when
    refused and for cancels. ``ttl_s`` is how long the item may wait unsent (``None``: no
    expiry, or refused); ``priority`` orders the dispatch (``None`` when refused).
    """

    action: Action
    rule: str
    message: str
    intent: OrderIntent | None = None
    ttl_s: int | None = None
    priority: Priority | None = None
    field: str | None = None  # an invalid-order refusal: the input that was wrong, if one

    def as_json(self) -> dict[str, Any]:
        """The decision as the audit log records it."""
        return {
            "action": self.action,
            "rule": self.rule,
            "message": self.message,
            "intent": None if self.intent is None else intent_dict(self.intent),
            "ttl_s": self.ttl_s,
            "priority": None if self.priority is None else int(self.priority),
        }


def expires_ms(decision: Decision, now_ms: int) -> int | None:
    """When the decided item expires, counted from ``now_ms`` (the caller's clock)."""
    return None if decision.ttl_s is None else now_ms + decision.ttl_s * 1000


def _refuse(rule: str, message: str, field: str | None = None) -> Decision:
    return Decision(action="refuse", rule=rule, message=message, field=field)


# ----------------------------------------------------------------------------- arithmetic


def _places(ref_price: str | int | Decimal) -> int:
    """Decimal places of the reference price *as typed*: "100.50" has 2, 100 has 0.

    The typed precision stands in for the tick size, which this pure module cannot look up;
    canonical_decimal would strip the trailing zero and lose that information.
    """
    if isinstance(ref_price, int):
        return 0
    exponent = Decimal(ref_price).as_tuple().exponent
    assert isinstance(exponent, int)  # finite: canonical_decimal accepted it first
    return max(0, -exponent)


def parse_bps(value: int | str | Decimal) -> Decimal:
    """A slippage in basis points: an integer or a plain decimal with up to 4 places, >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise InvalidInput(
            f"slippage_bps must be a number of basis points, got {value!r}", field="slippage_bps"
        )
    if isinstance(value, str) and not _BPS_RE.fullmatch(value):
        raise InvalidInput(
            f"slippage_bps must be plain basis points such as '50', got {value!r}",
            field="slippage_bps",
        )
    number = Decimal(value)
    if not number.is_finite():
        raise InvalidInput(f"slippage_bps must be finite, got {value!r}", field="slippage_bps")
    if number < 0:
        raise InvalidInput(
            f"slippage_bps must be 0 or more, got {value!r}: it is the most the price may move "
            f"against you (a Buy pays at most ref + bps, a Sell receives at least ref - bps)",
            field="slippage_bps",
        )
    return number


def capped_limit_price(side: Side, ref_price: str | int | Decimal, slippage_bps: Decimal) -> str:
    """The limit price that stands in for a Market order: ``ref * (1 ± bps / 10 000)``.

    Buy: ``ref * (1 + bps/10 000)`` rounded *down*; Sell: ``ref * (1 - bps/10 000)`` rounded
    *up*, both to the decimal places of ``ref_price`` as typed. Why that direction: the cap is
    the trader's protection, the worst price they agreed to. Rounding a Buy up (or a Sell
    down) would step past it by up to one tick, so rounding always goes back towards the
    reference. The result therefore lies between the reference and the cap, inclusive; with
    coarse precision and a small cap it may equal the reference itself (and may then not fill,
    which is the safe failure). The result is in canonical spelling ("100.5", not "100.50"),
    as the intent will hold it. Decimal arithmetic is exact here (precision 200), so no
    binary rounding ever moves the price.
    """
    ref = Decimal(canonical_decimal("ref_price", ref_price))
    places = _places(ref_price)
    if slippage_bps < 0 or (side == "Sell" and slippage_bps >= BPS_PER_UNIT):
        raise InvalidInput(f"slippage_bps must be in 0..{BPS_PER_UNIT} (exclusive for Sell)")
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        factor = 1 + _CAP_DIRECTION[side] * slippage_bps / BPS_PER_UNIT
        exact = ref * factor
        price = exact.quantize(Decimal(1).scaleb(-places), rounding=_CAP_ROUNDING[side])
    return canonical_decimal("limit price", price)  # the one spelling: "100.50" -> "100.5"


# ----------------------------------------------------------------------------- orders


def _ttl(
    raw: OrderRequest, default: int, config: PolicyConfig
) -> tuple[int | None, Decision | None]:
    """The TTL to use, or the refusal. ``ttl_s`` given wins; else ``default``."""
    if raw.ttl_s is None:
        return default, None
    if isinstance(raw.ttl_s, bool) or not isinstance(raw.ttl_s, int) or raw.ttl_s < 1:
        return None, _refuse(
            "invalid-order",
            f"ttl_s must be a whole number of seconds, 1 or more, got {raw.ttl_s!r}: "
            f"give --ttl in seconds, or leave it out for the default ({default} s)",
            "ttl",
        )
    if raw.ttl_s > config.max_ttl_s:
        return None, _refuse(
            "ttl-over-max",
            f"--ttl {raw.ttl_s} s is above the maximum of {config.max_ttl_s} s: give a shorter "
            f"--ttl, or resubmit the order once the venue is reachable",
        )
    return raw.ttl_s, None


def _validate(
    raw: OrderRequest, config: PolicyConfig
) -> tuple[OrderIntent | None, Decision | None]:
    """Every check that does not depend on the venue's state. Returns the intent or a refusal."""
    is_market = raw.order_type == "Market"
    if raw.order_type == "Limit" and raw.price is None:
        return None, _refuse(
            "invalid-order",
            "a Limit order needs a price: give --price, or for a market order use --type Market "
            "(with --ref-price and --slippage-bps if it may have to wait for the link)",
            "price",
        )
    if not is_market and (raw.ref_price is not None or raw.slippage_bps is not None):
        return None, _refuse(
            "invalid-order",
            "--ref-price and --slippage-bps apply to Market orders only: a Limit order's price "
            "is already its cap, so drop them or use --type Market",
            "ref_price" if raw.ref_price is not None else "slippage_bps",
        )
    if (raw.ref_price is None) != (raw.slippage_bps is None):
        return None, _refuse(
            "invalid-order",
            "give --ref-price and --slippage-bps together: the cap is ref ± bps, "
            "and one without the other defines nothing",
            "slippage_bps" if raw.slippage_bps is None else "ref_price",
        )
    try:
        intent = make_order_intent(
            category=raw.category,
            symbol=raw.symbol,
            side=raw.side,
            order_type=raw.order_type,
            qty=raw.qty,
            price=raw.price,
            time_in_force=raw.tif,
            reduce_only=raw.reduce_only,
            order_link_id=order_link_id_for(raw.idempotency_key),
        )
        if raw.ref_price is not None:
            canonical_decimal("ref_price", raw.ref_price)
            if _places(raw.ref_price) > _MAX_PLACES:  # a Decimal("1.000…") typed past 40
                raise InvalidInput(
                    f"ref_price has {_places(raw.ref_price)} decimal places; at most "
                    f"{_MAX_PLACES} (it sets the precision of the capped limit price)",
                    field="ref_price",
                )
        if raw.slippage_bps is not None:
            bps = parse_bps(raw.slippage_bps)
            if bps > config.max_slippage_bps:
                return None, _refuse(
                    "slippage-over-cap",
                    f"--slippage-bps {raw.slippage_bps} is above the maximum of "
                    f"{config.max_slippage_bps} bps: give a smaller cap, or wait for the venue "
                    f"and send the order when it is reachable",
                )
    except InvalidInput as exc:
        message = f"{exc}; nothing was queued: correct and resubmit"
        return None, _refuse("invalid-order", message, exc.field)
    return intent, None


def _priority(intent: OrderIntent, held: Decimal | None = None) -> Priority:
    """Risk-reducing orders go before new exposure: reduce-only ones (they can only shrink
    a position) and those that shrink the reconciled position ``held``."""
    shrinks = reduces(held, intent.side, Decimal(intent.qty))
    return Priority.RISK_REDUCING if intent.reduce_only or shrinks else Priority.NORMAL


def _market_to_limit(
    raw: OrderRequest, intent: OrderIntent, config: PolicyConfig, held: Decimal | None
) -> Decision:
    """The outage path of a Market order: rewrite at the cap, or refuse."""
    if not config.allow_market_with_ref:
        return _refuse(
            "market-disabled-in-outage",
            "Market orders cannot wait for a link (disabled by configuration): send it when the "
            "venue is reachable, or use a Limit order with --price and --ttl",
        )
    if raw.ref_price is None or raw.slippage_bps is None:
        return _refuse(
            "market-needs-ref-and-slippage",
            "a Market order cannot wait for a link without a price limit: give --ref-price and "
            "--slippage-bps (it is then queued as a Limit order at the cap), use a Limit order "
            "with --price, or send it when the venue is reachable",
        )
    ttl, refusal = _ttl(raw, config.market_ttl_s, config)
    if refusal is not None:
        return refusal
    bps = parse_bps(raw.slippage_bps)  # validated already
    price = capped_limit_price(intent.side, raw.ref_price, bps)
    try:
        limit = make_order_intent(
            category=intent.category,
            symbol=intent.symbol,
            side=intent.side,
            order_type="Limit",
            qty=intent.qty,
            price=price,
            time_in_force=config.market_limit_tif,
            reduce_only=intent.reduce_only,
            order_link_id=intent.order_link_id,
        )
    except InvalidInput as exc:  # e.g. a price beyond 40 integer digits
        return _refuse("invalid-order", f"the capped limit price is not valid: {exc}")
    rounding = "down" if intent.side == "Buy" else "up"
    return Decision(
        action="queue",
        rule="market-to-limit",
        message=(
            f"venue unreachable: Market {intent.side} queued as Limit {config.market_limit_tif} "
            f"{intent.side} {intent.qty} @ {price} (ref {raw.ref_price}, cap {bps} bps, rounded "
            f"{rounding} to the ref's {_places(raw.ref_price)} decimal places), "
            f"expires in {ttl} s"
        ),
        intent=limit,
        ttl_s=ttl,
        priority=_priority(limit, held),
    )


def decide_order(
    raw: OrderRequest,
    *,
    venue_reachable: bool,
    config: PolicyConfig,
    position: Decimal | None = None,
) -> Decision:
    """Decide whether ``raw`` may be queued, in what form, for how long and at what priority.

    Order of rules: validity first (same in any weather), then ``venue-up`` if the venue is
    reachable, else by order type and time in force (:data:`_TIF_RULE`). ``position`` is
    the instrument's reconciled position (signed: long positive; None when unknown): an
    order that shrinks it is risk-reducing, whatever the caller said.
    """
    intent, refusal = _validate(raw, config)
    if refusal is not None:
        return refusal
    assert intent is not None
    rests = intent.time_in_force in ("GTC", "PostOnly")
    if venue_reachable:
        ttl, refusal = _ttl(raw, config.default_ttl_s if rests else config.immediate_ttl_s, config)
        if refusal is not None:
            return refusal
        return Decision(
            action="queue",
            rule="venue-up",
            message=f"venue reachable: {intent.order_type} {intent.side} sent at once "
            f"(expires in {ttl} s if the link drops first)"
            + ("; ref price and slippage cap unused" if raw.ref_price is not None else ""),
            intent=intent,
            ttl_s=ttl,
            priority=_priority(intent, position),
        )
    if intent.order_type == "Market":
        return _market_to_limit(raw, intent, config, position)
    rule = _TIF_RULE[intent.time_in_force]
    if not rests:
        return _refuse(
            rule,
            f"{intent.time_in_force} orders cannot wait for a link: send when the venue is "
            f"reachable, or use GTC with --ttl",
        )
    ttl, refusal = _ttl(raw, config.default_ttl_s, config)
    if refusal is not None:
        return refusal
    return Decision(
        action="queue",
        rule=rule,
        message=f"venue unreachable: {intent.time_in_force} {intent.side} {intent.qty} "
        f"@ {intent.price} queued, expires in {ttl} s unless the link returns first",
        intent=intent,
        ttl_s=ttl,
        priority=_priority(intent, position),
    )


# ----------------------------------------------------------------------------- cancels


def decide_cancel(raw: CancelRequest, *, sent: bool) -> Decision:
    """Decide how to cancel the order queued under ``raw.idempotency_key``.

    ``sent=False`` must mean the broadcaster never put the order on the wire (the caller
    knows from the queue). Then the venue has never heard of it: a cancel request would only
    earn 110001 "order does not exist", so it is dropped locally (``cancel-local``).
    Otherwise the cancel is queued at :attr:`Priority.CANCEL`, ahead of every new order, so
    that a new order for the same symbol can never overtake the cancel it was meant to follow.
    Cancels never expire: sending a stale one is harmless (110001/110008/110010 are final
    answers), while dropping one could leave an order working that the trader wanted gone.
    """
    if raw.category not in CATEGORIES:
        return _refuse(
            "invalid-cancel",
            f"category must be one of {' | '.join(CATEGORIES)}, got {raw.category!r}: "
            f"give the category the order was placed in",
        )
    if not isinstance(raw.symbol, str) or not _SYMBOL_RE.fullmatch(raw.symbol):
        return _refuse(
            "invalid-cancel",
            f"symbol must be upper-case letters and digits such as 'BTCUSDT', got {raw.symbol!r}",
        )
    try:
        link_id = order_link_id_for(raw.idempotency_key)
    except InvalidInput as exc:
        return _refuse(
            "invalid-cancel", f"{exc}: give the idempotency key the order was queued with"
        )
    if not sent:
        return Decision(
            action="local",
            rule="cancel-local",
            message=f"order {link_id} was never sent: dropped from the queue, nothing goes out",
        )
    return Decision(
        action="queue",
        rule="cancel-first",
        message=f"cancel of {raw.symbol} order {link_id} queued ahead of new orders",
        priority=Priority.CANCEL,
    )


__all__ = [
    "RULES",
    "CancelRequest",
    "Decision",
    "OrderRequest",
    "PolicyConfig",
    "capped_limit_price",
    "decide_cancel",
    "decide_order",
    "expires_ms",
    "parse_bps",
]
