"""The library's typed results: what a bot holds after asking airlock something.

Frozen records built from the queue's clear metadata (nothing here needs the HSM): an
:class:`Item` with its signed variants' hashes, its venue reference and fills; a
:class:`Queued` item (the answer to queueing, with whether it was a replay); a
:class:`Cancelled` outcome; an :class:`Event` of the event stream. Each has ``as_json()``,
the form the local HTTP API and ``--json`` print: integers that may exceed 2^53 (values,
fees, chain ids, nonces) stay integers in Python and become decimal strings in JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from airlock.queue.events import EventRow
from airlock.queue.items import Item as QueueItem
from airlock.queue.items import Kind
from airlock.queue.states import State
from airlock.queue.store import Variant as StoredVariant
from airlock.queue.store import VariantKind
from airlock.queue.venue import Fill as StoredFill
from airlock.queue.venue import VenueRef
from airlock.vocab import Category

__all__ = ["Cancelled", "Event", "Fill", "Item", "Queued", "Variant"]

JSON_SAFE = 2**53 - 1
"""Above this an integer is written as a decimal string: JSON readers lose precision."""


def json_int(value: int | None) -> int | str | None:
    """``value`` as JSON would carry it without loss: an integer, or past 2^53 a string."""
    if value is None or abs(value) <= JSON_SAFE:
        return value
    return str(value)


@dataclass(frozen=True)
class Variant:
    """One pre-signed transaction of an EVM item: a fee level (``step``) or its cancel."""

    idx: int
    kind: VariantKind
    hash: str
    fee_per_gas: int
    tip_per_gas: int | None

    @classmethod
    def of(cls, stored: StoredVariant) -> Variant:
        tip = None if stored.tip_per_gas is None else int(stored.tip_per_gas)
        return cls(stored.idx, stored.kind, stored.tx_hash, int(stored.fee_per_gas), tip)

    def as_json(self) -> dict[str, Any]:
        return {
            "idx": self.idx,
            "kind": self.kind,
            "hash": self.hash,
            "fee_per_gas": str(self.fee_per_gas),
            "tip_per_gas": None if self.tip_per_gas is None else str(self.tip_per_gas),
        }


@dataclass(frozen=True)
class Fill:
    """One execution of a Bybit order, stored once per venue execution id."""

    exec_id: str
    qty: str
    price: str
    time_ms: int
    side: str
    symbol: str

    @classmethod
    def of(cls, stored: StoredFill) -> Fill:
        return cls(
            stored.exec_id,
            stored.exec_qty,
            stored.exec_price,
            stored.exec_time_ms,
            stored.side,
            stored.symbol,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "exec_id": self.exec_id,
            "qty": self.qty,
            "price": self.price,
            "time_ms": self.time_ms,
            "side": self.side,
            "symbol": self.symbol,
        }


@dataclass(frozen=True)
class Item:
    """An item as the queue knows it now: metadata, variant hashes, venue state, fills.

    ``state`` is a :class:`~airlock.queue.states.State` (a ``str``: ``item.state ==
    "confirmed"`` works). ``nonce`` and ``chain_id`` are set for EVM items, the ``venue_*``
    and ``order_link_id`` fields for Bybit items.
    """

    id: str
    kind: Kind
    state: State
    seq: int
    account: str
    strategy: str
    idempotency_key: str
    priority: int
    created_ms: int
    updated_ms: int
    expires_ms: int | None = None
    state_reason: str | None = None
    chain_id: int | None = None
    nonce: int | None = None
    private: bool = False
    cancel_requested: bool = False
    signer: str | None = None
    variants: tuple[Variant, ...] = ()
    active_variant: int | None = None
    sent_ms: int | None = None
    mined_hash: str | None = None
    mined_block: int | None = None
    mined_block_hash: str | None = None
    category: Category | None = None
    symbol: str | None = None
    order_link_id: str | None = None
    venue_order_id: str | None = None
    venue_status: str | None = None
    cum_qty: str | None = None
    avg_price: str | None = None
    venue_seen_ms: int | None = None
    fills: tuple[Fill, ...] = ()

    @property
    def hashes(self) -> tuple[str, ...]:
        """Every signed variant's transaction hash, fee levels first, the cancel last."""
        return tuple(v.hash for v in self.variants)

    @classmethod
    def of(
        cls,
        item: QueueItem,
        variants: list[StoredVariant] | None = None,
        venue: VenueRef | None = None,
        fills: list[StoredFill] | None = None,
    ) -> Item:
        return cls(**_item_fields(item, variants, venue, fills))

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": str(self.kind),
            "state": str(self.state),
            "state_reason": self.state_reason,
            "seq": self.seq,
            "account": self.account,
            "strategy": self.strategy,
            "idempotency_key": self.idempotency_key,
            "priority": self.priority,
            "created_ms": self.created_ms,
            "updated_ms": self.updated_ms,
            "expires_ms": self.expires_ms,
            "chain_id": json_int(self.chain_id),
            "nonce": json_int(self.nonce),
            "private": self.private,
            "cancel_requested": self.cancel_requested,
            "signer": self.signer,
            "variants": [v.as_json() for v in self.variants],
            "active_variant": self.active_variant,
            "sent_ms": self.sent_ms,
            "mined": None
            if self.mined_hash is None
            else {
                "hash": self.mined_hash,
                "block": self.mined_block,
                "block_hash": self.mined_block_hash,
            },
            "category": self.category,
            "symbol": self.symbol,
            "order_link_id": self.order_link_id,
            "venue_order_id": self.venue_order_id,
            "venue_status": self.venue_status,
            "cum_qty": self.cum_qty,
            "avg_price": self.avg_price,
            "venue_seen_ms": self.venue_seen_ms,
            "fills": [f.as_json() for f in self.fills],
        }


def _item_fields(
    item: QueueItem,
    variants: list[StoredVariant] | None,
    venue: VenueRef | None,
    fills: list[StoredFill] | None,
) -> dict[str, Any]:
    return {
        "id": item.id,
        "kind": item.kind,
        "state": item.state,
        "seq": item.seq,
        "account": item.account,
        "strategy": item.strategy,
        "idempotency_key": item.idempotency_key,
        "priority": item.priority,
        "created_ms": item.created_ms,
        "updated_ms": item.updated_ms,
        "expires_ms": item.expires_ms,
        "state_reason": item.state_reason,
        "chain_id": item.chain_id,
        "nonce": item.nonce,
        "private": item.private,
        "cancel_requested": item.cancel_requested,
        "signer": item.signer,
        "variants": tuple(Variant.of(v) for v in variants or ()),
        "active_variant": item.active_idx,
        "sent_ms": item.sent_ms,
        "mined_hash": item.mined_hash,
        "mined_block": item.mined_block,
        "mined_block_hash": item.mined_block_hash,
        "category": None if venue is None else venue.category,
        "symbol": None if venue is None else venue.symbol,
        "order_link_id": None if venue is None else venue.link_id,
        "venue_order_id": None if venue is None else venue.order_id,
        "venue_status": None if venue is None else venue.status,
        "cum_qty": None if venue is None else venue.cum_qty,
        "avg_price": None if venue is None else venue.avg_price,
        "venue_seen_ms": None if venue is None else venue.seen_ms,
        "fills": tuple(Fill.of(f) for f in fills or ()),
    }


@dataclass(frozen=True)
class Queued(Item):
    """The answer to queueing: the stored item, and what the call itself did.

    ``replayed`` is true when the idempotency key already named this item (nothing new
    was stored). For an order: ``rule``/``message`` are the outage policy's decision (the
    one it was first queued under, for a replay), ``intent`` the signed order intent, and
    ``venue_reachable`` what the policy was told. ``warnings`` are what an operator should
    act on (a ladder the fee cap shortened, a slow-link rewrite, a replay); ``notes`` what
    they may want to know (how the venue answered, an intent key created on first use).
    """

    replayed: bool = False
    rule: str | None = None
    message: str | None = None
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    venue_reachable: bool | None = None
    intent: dict[str, Any] | None = field(default=None, hash=False, compare=False)

    @classmethod
    def of_item(cls, item: Item, **answer: Any) -> Queued:
        fields = {name: getattr(item, name) for name in Item.__dataclass_fields__}
        return cls(**fields, **answer)

    def as_json(self) -> dict[str, Any]:
        return super().as_json() | {
            "replayed": self.replayed,
            "rule": self.rule,
            "message": self.message,
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "venue_reachable": self.venue_reachable,
            "intent": self.intent,
        }


CancelAction = Literal["local", "queued", "presigned"]


@dataclass(frozen=True)
class Cancelled:
    """What :meth:`Airlock.cancel` did.

    ``local``: the item never left; it is cancelled in the queue, nothing was sent.
    ``queued``: a Bybit order already at the venue; a signed cancel (``cancel_item``) goes
    out ahead of every new order. ``presigned``: an EVM transaction with a pre-signed
    cancel whose nonce must be used; that cancel is sent in its place.
    """

    action: CancelAction
    message: str
    item: Item
    rule: str | None = None
    cancel_item: Item | None = None
    replayed: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "rule": self.rule,
            "message": self.message,
            "item": self.item.as_json(),
            "cancel_item": None if self.cancel_item is None else self.cancel_item.as_json(),
            "replayed": self.replayed,
        }


EventType = Literal["item.created", "item.state", "item.fill"]


@dataclass(frozen=True)
class Event:
    """One entry of the event stream, numbered by the queue in commit order.

    ``item.created`` (``state`` is the first state), ``item.state`` (``from_state`` ->
    ``state``, with the reason), ``item.fill`` (``fill``). A client that has seen event
    ``id`` asks for the ones after it and gets each later event exactly once.
    """

    id: int
    type: EventType
    item_id: str
    at_ms: int
    state: str | None = None
    from_state: str | None = None
    reason: str | None = None
    fill: Fill | None = None

    @classmethod
    def of(cls, row: EventRow) -> Event:
        fill = None if row.fill is None else Fill.of(row.fill)
        return cls(
            id=row.id,
            type=row.type,
            item_id=row.item_id,
            at_ms=row.at_ms,
            state=row.to_state,
            from_state=row.from_state,
            reason=row.reason,
            fill=fill,
        )

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "item": self.item_id,
            "at_ms": self.at_ms,
        }
        if self.type == "item.fill":
            data["fill"] = None if self.fill is None else self.fill.as_json()
        else:
            data |= {"state": self.state, "from_state": self.from_state, "reason": self.reason}
        return data


# Re-exported for the facade: the states a caller may name.
STATES: frozenset[str] = frozenset(s.value for s in State)
KINDS: frozenset[str] = frozenset(k.value for k in Kind)
