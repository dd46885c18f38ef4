"""The store's records: what callers hand in (drafts, signed content, send and chain
verdicts) and what they get back (enqueued items, variants, cancel results)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from airlock.queue import items, venue
from airlock.queue.items import Item, Kind
from airlock.queue.sends import Attempt, Mined
from airlock.queue.states import State

VariantKind = Literal["step", "cancel"]  # a fee level of the ladder, or its cancel


@dataclass(frozen=True)
class Draft:
    """What a caller wants queued, before signing. ``request`` is kept (encrypted) so a
    retry with the same idempotency key can be told apart from a different request."""

    kind: Kind
    account: str
    strategy: str
    idempotency_key: str
    request: dict[str, Any]
    priority: int = items.Priority.NORMAL
    ttl_ms: int | None = None
    chain_id: int | None = None
    wants_nonce: bool = False
    explicit_nonce: int | None = None
    private: bool = False
    signer: str | None = None
    venue: venue.VenueDraft | None = None  # Bybit items: the venue reference, kept in clear


@dataclass(frozen=True)
class VariantDraft:
    kind: VariantKind
    tx_hash: str
    fee_per_gas: int
    tip_per_gas: int | None
    raw: bytes


@dataclass(frozen=True)
class Built:
    """The signed content of an item: an encrypted payload and any signed variants."""

    payload: dict[str, Any]
    variants: tuple[VariantDraft, ...] = ()
    audit: dict[str, Any] = field(default_factory=dict)  # more for the item.enqueued entry


@dataclass(frozen=True)
class Variant:
    idx: int
    kind: VariantKind
    tx_hash: str
    fee_per_gas: int
    tip_per_gas: int | None

    def as_json(self) -> dict[str, Any]:
        return {
            "idx": self.idx,
            "kind": self.kind,
            "hash": self.tx_hash,
            "fee_per_gas": str(self.fee_per_gas),
            "tip_per_gas": None if self.tip_per_gas is None else str(self.tip_per_gas),
        }


@dataclass(frozen=True)
class Enqueued:
    item: Item
    existing: bool  # the idempotency key already named this item; nothing new was stored
    variants: list[Variant]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CancelResult:
    item: Item
    action: str  # "cancelled" or "cancel_requested" (the pre-signed cancel fills the nonce)
    message: str


@dataclass(frozen=True)
class SendRecord:
    """What one send of one variant came to, as the broadcaster judged it."""

    item_id: str
    from_state: State  # the item's state when the wave left
    variant_idx: int
    attempts: tuple[Attempt, ...]
    accepted: bool  # a relay took it or already had it: the bump and rebroadcast clocks restart
    target: State | None  # the state the item moves to, if it moves
    reason: str
    head: int | None = None  # the chain head when it was accepted
    retry_ms: int | None = None  # not before this time (a send that got nowhere)


@dataclass(frozen=True)
class ChainRecord:
    """What the chain says about an in-flight item, as reconcile judged it."""

    item_id: str
    from_state: State  # the item's state when reconcile read it
    verdict: str  # "mined", "confirmed", "replaced" or "reorged"
    reason: str
    mined: Mined | None = None
    cancel: bool = False  # what was mined is the item's cancel: it ends replaced, not confirmed


Builder = Callable[[int | None], Built]
