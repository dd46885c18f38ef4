"""What an item's encrypted payload holds, as typed records instead of loose dicts.

The payload is stored as JSON (the audit log's ``item.enqueued`` entry carries the same
members for a Bybit item, byte for byte); these records are the one place that knows
its members, both when it is written and when it is read back. Reading is strict: a
member missing or of the wrong type raises :class:`InvalidInput`, which the broadcaster
treats like a tampered payload (the item is refused, never sent).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airlock.errors import InvalidInput


@dataclass(frozen=True)
class PolicyNote:
    """The outage policy's decision an order was queued under: its rule and message."""

    rule: str
    message: str


@dataclass(frozen=True)
class SignedIntent:
    """A Bybit order's or cancel's payload: the intent in its canonical form, the HSM's
    P-256 signature over it, the signing key's public PEM, the policy's decision."""

    intent: dict[str, Any]
    signature: bytes
    key_pem: str
    policy: PolicyNote

    def as_json(self) -> dict[str, Any]:
        return {
            "intent": self.intent,
            "intent_signature": self.signature.hex(),
            "intent_key_pem": self.key_pem,
            "policy": {"rule": self.policy.rule, "message": self.policy.message},
        }

    @classmethod
    def of(cls, payload: Mapping[str, Any]) -> SignedIntent:
        intent, policy = payload.get("intent"), payload.get("policy")
        signature, pem = payload.get("intent_signature"), payload.get("intent_key_pem")
        if not isinstance(intent, dict) or not isinstance(policy, dict):
            raise InvalidInput("the payload has no intent or no policy decision")
        if not isinstance(signature, str) or not isinstance(pem, str):
            raise InvalidInput("the payload's intent signature or key is missing")
        try:
            raw = bytes.fromhex(signature)
        except ValueError:
            raise InvalidInput("the payload's intent signature is not hex") from None
        rule, message = policy.get("rule"), policy.get("message")
        if not isinstance(rule, str) or not isinstance(message, str):
            raise InvalidInput("the payload's policy decision is malformed")
        return cls(intent, raw, pem, PolicyNote(rule, message))


@dataclass(frozen=True)
class TxPayload:
    """An EVM transaction's payload: the signed intent at its allocated nonce (the JSON of
    :func:`airlock.signer.evm.intent_as_json`), its sender, and whether the fee cap cut
    the ladder short."""

    intent: dict[str, Any]
    sender: str
    ladder_truncated: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "intent": self.intent,
            "sender": self.sender,
            "ladder_truncated": self.ladder_truncated,
        }

    @classmethod
    def of(cls, payload: Mapping[str, Any]) -> TxPayload:
        intent, sender = payload.get("intent"), payload.get("sender")
        if not isinstance(intent, dict) or not isinstance(sender, str):
            raise InvalidInput("the payload has no transaction intent or no sender")
        return cls(intent, sender, bool(payload.get("ladder_truncated", False)))
