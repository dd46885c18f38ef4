"""What a relay's answer to ``eth_sendRawTransaction`` means, in one small vocabulary.

Every node family words its errors differently (design/facts-evm-broadcast.md). The
broadcaster must not care: relays hand it an :class:`Outcome`, and each outcome says what
to do next. The wording itself is classified in :mod:`airlock.relays.classify`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    """The normalised answer of one relay to one send of one signed transaction."""

    ACCEPTED = "accepted"
    """The relay returned this transaction's hash. Record the send and wait for a receipt:
    acceptance is not proof of pooling (geth's local-tx tracker answers with the hash for
    some temporary rejections too); only a receipt proves inclusion."""

    ALREADY_KNOWN = "already_known"
    """The relay already holds these exact bytes. Not lost: do not resend in a loop and do
    not call anything failed; treat it as sent and let reconcile look at receipts."""

    NONCE_USED = "nonce_used"
    """The sender's nonce is already past this one: this tx, a variant of it, or someone
    else's tx was mined. Not lost either: look at the receipts of every hash sent for the
    nonce before calling anything failed or replaced."""

    UNDERPRICED = "underpriced"
    """The fee is too low for the pool, or too close to the tx it would replace. These
    bytes will not get in now: the next (higher) pre-signed variant is needed."""

    INSUFFICIENT_FUNDS = "insufficient_funds"
    """The sender cannot pay gas * price + value. Resending the same bytes is pointless
    until the account is funded; a lower-fee variant might fit. Tell the operator."""

    INVALID = "invalid"
    """Final for these bytes: bad signature or chain id, gas limit out of range, over the
    node's fee cap, not replay-protected. No relay will ever take them; never retry them."""

    TRANSIENT = "transient"
    """The node is busy or not ready for this nonce yet (pool full, nonce gap, rate
    limit). Retry the same bytes later. Also the outcome of any answer no rule
    recognises, so that an unknown message is never read as success."""

    TRANSPORT = "transport"
    """The link failed, not the tx: timeout, refused connection, HTTP 5xx, a body that is
    not JSON-RPC. The bytes may or may not have arrived; mark the relay unhealthy and
    retry through it (or another) when it is back."""


@dataclass(frozen=True)
class Classified:
    """One classified relay answer, ready to be recorded and acted on.

    ``rule`` names the table rule (or the built-in check) that decided the outcome, so the
    audit log can say *why*. ``unknown=True`` means nothing recognised the answer: the
    outcome is then always TRANSIENT (retry, never silent success) and the caller must raise
    an alert, because a changed error wording can otherwise clog a queue for hours.
    """

    outcome: Outcome
    rule: str | None
    message: str
    unknown: bool

    def __post_init__(self) -> None:
        if self.unknown and (self.outcome != Outcome.TRANSIENT or self.rule is not None):
            raise ValueError("an unrecognised answer must be TRANSIENT with no rule")
        if not self.unknown and self.rule is None:
            raise ValueError("a recognised answer must name the rule that recognised it")


@dataclass(frozen=True)
class Receipt:
    """The parts of a transaction receipt reconcile needs; hashes lowercase ``0x`` hex."""

    tx_hash: str
    block_number: int
    block_hash: str
    status: int  # 1 success, 0 reverted: mined either way, the nonce is spent
