"""Queue an Ethereum transaction: allocate its nonce, sign its fee ladder, store it — at once.

The caller's raw input is validated before the write transaction starts (so bad input
never takes the write lock); the nonce is chosen, every variant signed by the HSM and all
of it stored inside one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from airlock.errors import InvalidInput
from airlock.hsm.interface import EcdsaSigningKey
from airlock.queue.items import Kind, Priority
from airlock.queue.payloads import TxPayload
from airlock.queue.store import Builder, Built, Draft, Enqueued, Store, VariantDraft
from airlock.signer import evm
from airlock.signer.ladder import LadderSpec, build_ladder, fee_of

MAX_TTL_S = 365 * 24 * 3600


def enqueue_transaction(
    store: Store, key: EcdsaSigningKey, fields: Mapping[str, Any], **options: Any
) -> Enqueued:
    """Sign ``fields`` (the :func:`airlock.signer.evm.make_intent` arguments except the
    nonce) at every ladder level and store it durably; ``options`` are
    :func:`prepare_transaction`'s (``nonce=None`` allocates one)."""
    return store.items.enqueue(*prepare_transaction(key, fields, **options))


def prepare_transaction(
    key: EcdsaSigningKey,
    fields: Mapping[str, Any],
    *,
    nonce: Any = None,
    ladder: LadderSpec | None = None,
    ttl_s: int | None = None,
    idempotency_key: str | None = None,
    strategy: str = "default",
    private: bool = False,
    priority: int = Priority.NORMAL,
) -> tuple[Draft, Builder]:
    """Validate everything (before any lock is taken) and return what the store needs:
    the draft, and the callback that signs the ladder once the nonce is allocated. Apart
    so that several transactions can be stored in one transaction
    (``store.items.enqueue_many``)."""
    ladder = ladder or LadderSpec()
    explicit = None if nonce is None else evm.make_intent(**fields, nonce=nonce).nonce
    base = evm.make_intent(**fields, nonce=explicit or 0)  # validation, before any lock
    sender = evm.address_from_public_key(key.public_key)
    build_ladder(base, ladder, sender)  # a fee above the cap fails here, before any lock
    draft = Draft(
        kind=Kind.EVM_TX,
        account=sender,
        strategy=check_strategy(strategy),
        idempotency_key=_idempotency_key(idempotency_key),
        request=_request(base, explicit, key.label, ladder, ttl_s, private, priority),
        priority=priority,
        ttl_ms=_ttl_ms(ttl_s),
        chain_id=base.chain_id,
        wants_nonce=True,
        explicit_nonce=explicit,
        private=private,
        signer=key.label,
    )
    return draft, _ladder_builder(base, ladder, sender, key)


def _request(
    base: evm.TxIntent,
    explicit: int | None,
    label: str,
    ladder: LadderSpec,
    ttl_s: int | None,
    private: bool,
    priority: int,
) -> dict[str, Any]:
    """The caller's request as stored (to tell a retry from a different request)."""
    return {
        "intent": evm.intent_as_json(base) | {"nonce": explicit},
        "key": label,
        "ladder": {
            "levels": ladder.levels,
            "bump_pct": ladder.bump_pct,
            "max_fee_cap": None if ladder.max_fee_cap is None else str(ladder.max_fee_cap),
            "with_cancel": ladder.with_cancel,
        },
        "ttl_seconds": ttl_s,
        "private": private,
        "priority": int(priority),
    }


def _ladder_builder(
    base: evm.TxIntent, ladder: LadderSpec, sender: str, key: EcdsaSigningKey
) -> Builder:
    """The store's callback: sign every level (and the cancel) at the allocated nonce."""

    def build(allocated: int | None) -> Built:
        assert allocated is not None
        intent = evm.with_nonce(base, allocated)
        plan = build_ladder(intent, ladder, sender)
        to_sign = [*plan.steps, *([plan.cancel] if plan.cancel else [])]
        signed = evm.sign_transactions(to_sign, key)
        variants = tuple(
            VariantDraft(
                kind="cancel" if i == len(plan.steps) else "step",
                tx_hash=tx.hash_hex,
                fee_per_gas=fee_of(intent_i),
                tip_per_gas=intent_i.max_priority_fee_per_gas,
                raw=tx.raw,
            )
            for i, (intent_i, tx) in enumerate(zip(to_sign, signed, strict=True))
        )
        payload = TxPayload(evm.intent_as_json(intent), sender, plan.truncated)
        return Built(payload=payload.as_json(), variants=variants)

    return build


def _ttl_ms(ttl_s: int | None) -> int | None:
    if ttl_s is None:
        return None
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not 1 <= ttl_s <= MAX_TTL_S:
        raise InvalidInput(f"TTL must be 1..{MAX_TTL_S} seconds, got {ttl_s!r}", field="ttl")
    return ttl_s * 1000


def _idempotency_key(key: str | None) -> str:
    if key is None:
        return f"auto:{uuid.uuid4()}"
    if (
        not isinstance(key, str)
        or not key
        or len(key) > 128
        or not key.isprintable()
        or key != key.strip()
    ):
        raise InvalidInput(
            f"bad idempotency key {key!r}: use 1-128 printable characters, no edge spaces",
            field="idempotency_key",
        )
    return key


def check_strategy(name: str) -> str:
    """A strategy id: 1-64 printable characters, no edge spaces (EVM items and orders)."""
    if (
        not isinstance(name, str)
        or not name
        or len(name) > 64
        or not name.isprintable()
        or name != name.strip()
    ):
        raise InvalidInput(
            f"bad strategy id {name!r}: use 1-64 printable characters", field="strategy"
        )
    return name
