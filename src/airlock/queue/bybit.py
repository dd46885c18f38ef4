"""Queue a Bybit order: the outage policy decides, the HSM signs the intent, the store keeps it.

The policy decision (:mod:`airlock.queue.policy`) is made before the write lock is taken;
a refusal raises :class:`OrderRefused` and is itself an audit entry (``order.refused``)
with the rule that fired. A queued order's ``item.enqueued`` entry carries the intent in
its canonical form, its P-256 signature and the intent key's public PEM, so an auditor can
check every order intent offline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from airlock.audit import entries as audit_entries
from airlock.errors import InvalidInput
from airlock.queue.errors import IllegalTransition
from airlock.queue.items import Item, Kind
from airlock.queue.payloads import PolicyNote, SignedIntent
from airlock.queue.policy import CancelRequest, Decision, OrderRequest, decide_cancel
from airlock.queue.states import State
from airlock.queue.store import Builder, Built, CancelResult, Draft, Enqueued, Store
from airlock.queue.venue import VenueDraft
from airlock.signer.bybit import (
    DigestSigner,
    cancel_dict,
    intent_dict,
    make_cancel_intent,
    order_link_id_for,
    sign_intent,
    start_intent_signature,
)


class OrderRefused(InvalidInput):
    """The outage policy refused the order; nothing was queued. ``rule`` says which rule
    (``invalid-order`` when the order itself is malformed: then ``field`` names the input
    that is wrong, if one is)."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(
            f"order refused ({decision.rule}): {decision.message}", field=decision.field
        )
        self.decision = decision

    @property
    def rule(self) -> str:
        return self.decision.rule


class NothingToCancel(IllegalTransition, InvalidInput):
    """The order is already final (or was never placed): its state allows no cancel."""


@dataclass(frozen=True)
class IntentKey:
    """The HSM P-256 key that signs order intents, and its public PEM for auditors."""

    key: DigestSigner
    label: str
    public_pem: str


def enqueue_order(
    store: Store,
    request: OrderRequest,
    decision: Decision,
    intent_key: IntentKey,
    **options: Any,
) -> Enqueued:
    """Store the order ``decision`` allows for ``request``, its intent signed in the HSM.

    Refusals are recorded in the audit log, then raised; ``cancel-local`` decisions are
    not orders and are refused here. A retry of an order already queued under the same
    idempotency key answers with that item whatever the policy says now (an IOC queued
    while the venue was up is not "refused" by a retry during the outage that followed).
    ``options`` are :func:`prepare_order`'s (``account`` is required)."""
    return store.items.enqueue(*prepare_order(store, request, decision, intent_key, **options))


def prepare_order(
    store: Store,
    request: OrderRequest,
    decision: Decision,
    intent_key: IntentKey,
    *,
    account: str,
    strategy: str = "default",
    asked: OrderRequest | None = None,
    signature: Callable[[], bytes] | None = None,
) -> tuple[Draft, Builder]:
    """What :func:`enqueue_order` stores, without storing it (so that several orders can go
    in one transaction, ``store.items.enqueue_many``). A refusal is audited and raised here,
    unless the key already names a queued item (then the draft finds that item).

    ``asked`` is the request as the caller gave it when a rule rewrote it into
    ``request`` (the slow-link rule): a retry is compared with what was asked.
    ``signature`` is the intent's signature already started (a batch signs all its
    intents in one HSM job); by default it is started here, before the write lock."""
    asked = asked or request
    if decision.action != "queue" or decision.intent is None:
        if store.items.by_key(request.idempotency_key) is not None:
            return _retry_draft(asked, account, strategy), _never_built
        store.audit.record(
            audit_entries.ORDER_REFUSED,
            {"request": _request_json(request), "decision": decision.as_json()},
        )
        raise OrderRefused(decision)
    intent = decision.intent
    assert decision.priority is not None  # every "queue" decision names one (queue/policy.py)
    if signature is None:
        signature = start_intent_signature(intent_key.key, intent)  # before the write lock
    draft = Draft(
        kind=Kind.BYBIT_ORDER,
        account=account,
        strategy=strategy,
        idempotency_key=request.idempotency_key,
        request=_request_json(asked),
        priority=decision.priority,
        ttl_ms=None if decision.ttl_s is None else decision.ttl_s * 1000,
        signer=intent_key.label,
        venue=VenueDraft("order", intent.category, intent.symbol, intent.order_link_id),
    )

    def build(_: int | None) -> Built:
        signed = SignedIntent(
            intent_dict(intent),
            signature(),
            intent_key.public_pem,
            PolicyNote(decision.rule, decision.message),
        ).as_json()
        return Built(payload=signed, audit=signed)

    return draft, build


@dataclass(frozen=True)
class CancelOutcome:
    """What ``cancel_order`` did: ``local`` (the order never left; it is cancelled in the
    queue) or ``queued`` (a cancel item goes to the venue ahead of new orders)."""

    action: str
    rule: str
    message: str
    order: Item
    cancel: Enqueued | None = None
    local: CancelResult | None = None


def cancel_order(
    store: Store,
    order: Item,
    intent_key: IntentKey,
    *,
    idempotency_key: str | None = None,
    strategy: str = "default",
) -> CancelOutcome:
    """Cancel the queued Bybit order ``order``: locally when it never left, else through
    the venue with an HSM-signed cancel intent queued at cancel priority.

    "Never left" is read from the queue and acted on under the store's guard: if the
    broadcaster takes the order between the read and the local cancel, the local cancel
    is refused by the state machine and a venue cancel is queued instead.
    """
    pair = store.venue.of_item(order.id)
    if order.kind is not Kind.BYBIT_ORDER or pair is None:
        raise InvalidInput(f"item {order.id} is not a Bybit order")
    _, ref = pair
    request = CancelRequest(ref.category, ref.symbol, order.idempotency_key)
    if order.state is State.QUEUED:
        decision = decide_cancel(request, sent=False)
        try:
            local = store.items.cancel(order.id, f"{decision.rule}: {decision.message}")
        except IllegalTransition:
            order = store.items.get(order.id)  # taken by the broadcaster meanwhile
        else:
            return CancelOutcome("local", decision.rule, decision.message, local.item, local=local)
    decision = decide_cancel(request, sent=True)
    if decision.action != "queue":
        raise InvalidInput(decision.message)
    if order.state not in (State.SENDING, State.SENT, State.NEEDS_OPERATOR):
        raise NothingToCancel(f"order {ref.link_id} is {order.state}: there is nothing to cancel")
    intent = make_cancel_intent(ref.category, ref.symbol, order_link_id_for(order.idempotency_key))
    key = idempotency_key or f"cancel:{order.idempotency_key}"
    draft = Draft(
        kind=Kind.BYBIT_CANCEL,
        account=order.account,
        strategy=strategy,
        idempotency_key=key,
        request={"cancel": order.id, "order_link_id": ref.link_id},
        priority=decision.priority or 0,
        signer=intent_key.label,
        venue=VenueDraft("cancel", ref.category, ref.symbol, ref.link_id),
    )

    def build(_: int | None) -> Built:
        signed = SignedIntent(
            cancel_dict(intent),
            sign_intent(intent_key.key, intent),
            intent_key.public_pem,
            PolicyNote(decision.rule, decision.message),
        ).as_json()
        return Built(payload=signed, audit=signed)

    queued = store.items.enqueue(draft, build)
    return CancelOutcome("queued", decision.rule, decision.message, order, cancel=queued)


def _retry_draft(request: OrderRequest, account: str, strategy: str) -> Draft:
    """Enough of a draft for the store to find the stored item and compare the request."""
    return Draft(
        kind=Kind.BYBIT_ORDER,
        account=account,
        strategy=strategy,
        idempotency_key=request.idempotency_key,
        request=_request_json(request),
    )


def _never_built(_: int | None) -> Built:
    raise AssertionError("an existing item is never built again")


def _request_json(request: OrderRequest) -> dict[str, Any]:
    """The caller's request as plain JSON (kept to tell a retry from a new request)."""
    return {f.name: _plain(getattr(request, f.name)) for f in fields(request)}


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)
