"""Queue a Bybit order: the outage policy decides, the HSM signs the intent, the store keeps it.

The policy decision (:mod:`airlock.queue.policy`) is made before the write lock is taken;
a refusal raises :class:`OrderRefused` and is itself an audit entry (``order.refused``)
with the rule that fired. A queued order's ``item.enqueued`` entry carries the intent in
its canonical form, its P-256 signature and the intent key's public PEM, so an auditor can
check every order intent offline.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from airlock.audit import entries as audit_entries
from airlock.errors import InvalidInput
from airlock.queue.items import Kind
from airlock.queue.policy import Decision, OrderRequest
from airlock.queue.store import Built, Draft, Enqueued, Store
from airlock.signer.bybit import DigestSigner, intent_dict, sign_intent


class OrderRefused(InvalidInput):
    """The outage policy refused the order; nothing was queued. ``rule`` says which rule."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(f"order refused ({decision.rule}): {decision.message}")
        self.decision = decision


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
    *,
    account: str,
    strategy: str = "default",
) -> Enqueued:
    """Store the order ``decision`` allows for ``request``, its intent signed in the HSM.

    Refusals are recorded in the audit log, then raised; ``cancel-local`` decisions are
    not orders and are refused here."""
    if decision.action != "queue" or decision.intent is None:
        store.record_event(
            audit_entries.ORDER_REFUSED,
            {"request": _request_json(request), "decision": decision.as_json()},
        )
        raise OrderRefused(decision)
    intent = decision.intent
    draft = Draft(
        kind=Kind.BYBIT_ORDER,
        account=account,
        strategy=strategy,
        idempotency_key=request.idempotency_key,
        request=_request_json(request),
        priority=decision.priority,
        ttl_ms=None if decision.ttl_s is None else decision.ttl_s * 1000,
        signer=intent_key.label,
    )

    def build(_: int | None) -> Built:
        signature = sign_intent(intent_key.key, intent)
        signed = {
            "intent": intent_dict(intent),
            "intent_signature": signature.hex(),
            "intent_key_pem": intent_key.public_pem,
            "policy": {"rule": decision.rule, "message": decision.message},
        }
        return Built(payload=signed, audit=signed)

    return store.enqueue(draft, build)


def _request_json(request: OrderRequest) -> dict[str, Any]:
    """The caller's request as plain JSON (kept to tell a retry from a new request)."""
    return {f.name: _plain(getattr(request, f.name)) for f in fields(request)}


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)
