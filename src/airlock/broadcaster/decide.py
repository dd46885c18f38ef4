"""The broadcaster's decisions, as pure functions over what relays and the chain said.

Nothing here does I/O, so every rule is table-tested (tests/test_decide.py). The
imperative shell (:mod:`airlock.broadcaster.service`) gathers the inputs, calls these,
and writes the verdicts down through the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from airlock.relays.outcomes import Classified, Outcome, Receipt

# A send that got nowhere is retried after this long (doubling per attempt up to the cap).
RETRY_BASE_MS = 250
RETRY_CAP_MS = 30_000
# Every relay said the account cannot pay: retrying soon is pointless.
UNFUNDED_RETRY_MS = 30_000


class SendVerdict(StrEnum):
    SENT = "sent"  # a relay accepted it or already had it
    NONCE_USED = "nonce_used"  # the nonce is spent: reconcile looks at receipts
    NEXT_VARIANT = "next_variant"  # too cheap for the pool: send the next fee level
    REJECTED = "rejected"  # every relay called these bytes invalid: final
    RETRY = "retry"  # nothing decided: the same bytes again later


@dataclass(frozen=True)
class SendJudgement:
    verdict: SendVerdict
    reason: str
    alert: str | None = None  # something an operator must see
    retry_ms: int = 0  # for RETRY: wait this long


def judge_send(answers: Mapping[str, Classified], tries: int = 0) -> SendJudgement:
    """What one fan-out of one variant came to. ``answers`` maps relay name to answer.

    Acceptance by any relay wins (the bytes are out); a spent nonce beats every other
    refusal (the chain decides, not us); invalid is final only if *every* relay says so,
    since one broken relay must not kill a transaction the others would take.
    """
    if not answers:
        return SendJudgement(SendVerdict.RETRY, "no usable relay", retry_ms=_backoff(tries))
    by_outcome: dict[Outcome, list[str]] = {}
    for relay, answer in sorted(answers.items()):
        by_outcome.setdefault(answer.outcome, []).append(relay)
    alert = _unknown_alert(answers)

    def named(outcome: Outcome) -> str:
        return ", ".join(by_outcome[outcome])

    if Outcome.ACCEPTED in by_outcome or Outcome.ALREADY_KNOWN in by_outcome:
        takers = by_outcome.get(Outcome.ACCEPTED, []) + by_outcome.get(Outcome.ALREADY_KNOWN, [])
        return SendJudgement(SendVerdict.SENT, f"accepted by {', '.join(takers)}", alert)
    if Outcome.NONCE_USED in by_outcome:
        reason = f"nonce already used ({named(Outcome.NONCE_USED)}): receipts decide"
        return SendJudgement(SendVerdict.NONCE_USED, reason, alert)
    if Outcome.UNDERPRICED in by_outcome:
        reason = f"underpriced at {named(Outcome.UNDERPRICED)}: next fee level"
        return SendJudgement(SendVerdict.NEXT_VARIANT, reason, alert)
    if set(by_outcome) == {Outcome.INVALID}:
        message = next(iter(answers.values())).message
        reason = f"invalid at every relay: {message}"
        return SendJudgement(SendVerdict.REJECTED, reason, alert or reason)
    if Outcome.INSUFFICIENT_FUNDS in by_outcome:
        reason = f"insufficient funds ({named(Outcome.INSUFFICIENT_FUNDS)}): fund the sender"
        return SendJudgement(SendVerdict.RETRY, reason, alert or reason, UNFUNDED_RETRY_MS)
    summary = "; ".join(f"{relay}: {a.outcome}" for relay, a in sorted(answers.items()))
    return SendJudgement(SendVerdict.RETRY, f"not taken ({summary})", alert, _backoff(tries))


def _backoff(tries: int) -> int:
    return int(min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** min(tries, 16)))


def _unknown_alert(answers: Mapping[str, Classified]) -> str | None:
    unknown = [f"{relay}: {a.message!r}" for relay, a in sorted(answers.items()) if a.unknown]
    if not unknown:
        return None
    return "unrecognised relay answer, treated as transient: " + "; ".join(unknown)


# --------------------------------------------------------------------------- reconcile


class ChainVerdict(StrEnum):
    MINED = "mined"  # a receipt of ours, not yet deep enough
    CONFIRMED = "confirmed"  # a receipt of ours at the confirmation depth
    REPLACED = "replaced"  # the nonce is spent and no hash of ours has a receipt
    REORGED = "reorged"  # a receipt we had is gone from the canonical chain
    PENDING = "pending"  # nothing yet: wait (and bump or rebroadcast when due)
    UNKNOWN = "unknown"  # the node could not say (indexing, a missing answer): ask later


@dataclass(frozen=True)
class ChainJudgement:
    verdict: ChainVerdict
    reason: str
    receipt: Receipt | None = None


def judge_chain(
    *,
    nonce: int,
    hashes: Sequence[str],
    receipts: Mapping[str, Receipt | None],
    chain_nonce: int | None,
    head: int,
    confirmations: int,
    had_receipt: str | None,
) -> ChainJudgement:
    """The fate of one nonce from the receipts of every hash we signed for it.

    ``receipts`` lacks a hash the node could not answer for (not the same as ``None``,
    which means no receipt). ``chain_nonce`` is the sender's ``latest`` nonce, read
    *before* the receipts, so a tx mined in between cannot look replaced.
    ``had_receipt`` is the hash we had recorded as mined, if any.
    """
    for tx_hash in hashes:
        receipt = receipts.get(tx_hash)
        if receipt is not None:
            depth = head - receipt.block_number + 1
            outcome = "" if receipt.status == 1 else " (reverted: status 0, the nonce is spent)"
            where = f"{tx_hash} in block {receipt.block_number}{outcome}"
            if depth >= confirmations:
                reason = f"mined as {where}, {depth} confirmation(s)"
                return ChainJudgement(ChainVerdict.CONFIRMED, reason, receipt)
            reason = f"mined as {where}, {max(depth, 0)} of {confirmations} confirmation(s)"
            return ChainJudgement(ChainVerdict.MINED, reason, receipt)
    if any(h not in receipts for h in hashes):
        return ChainJudgement(ChainVerdict.UNKNOWN, "the node could not answer for every hash")
    if had_receipt is not None:
        reason = f"reorg: the receipt of {had_receipt} left the canonical chain"
        return ChainJudgement(ChainVerdict.REORGED, reason)
    if chain_nonce is not None and chain_nonce > nonce:
        reason = (
            f"nonce {nonce} is spent (chain nonce {chain_nonce}) and none of our "
            f"{len(hashes)} hash(es) has a receipt: another transaction used it"
        )
        return ChainJudgement(ChainVerdict.REPLACED, reason)
    return ChainJudgement(ChainVerdict.PENDING, "no receipt yet")


# --------------------------------------------------------------------------- bump


@dataclass(frozen=True)
class BumpPolicy:
    after_blocks: int
    after_ms: int


def bump_due(
    *,
    sent_ms: int | None,
    sent_block: int | None,
    now_ms: int,
    head: int | None,
    policy: BumpPolicy,
) -> bool:
    """No receipt after ``after_blocks`` new blocks or ``after_ms``, whichever first."""
    if sent_ms is None:
        return False
    if now_ms - sent_ms >= policy.after_ms:
        return True
    return head is not None and sent_block is not None and head - sent_block >= policy.after_blocks


class PendingMove(StrEnum):
    WAIT = "wait"
    BUMP = "bump"  # the next fee level (or a re-signed one)
    RESEND = "resend"  # the same bytes again


def pending_move(
    *,
    fates: Sequence[str | None],
    active: int,
    sent_ms: int | None,
    sent_block: int | None,
    now_ms: int,
    head: int | None,
    policy: BumpPolicy,
    rebroadcast_ms: int,
) -> PendingMove:
    """What to do about a sent item with no receipt yet.

    A level whose last send reached no relay (a bump lost to a link failure) goes again
    before any higher one: skipping it would burn a fee level for nothing.
    """
    if fates[active] is None:
        return PendingMove.RESEND
    if bump_due(sent_ms=sent_ms, sent_block=sent_block, now_ms=now_ms, head=head, policy=policy):
        return PendingMove.BUMP
    if now_ms - (sent_ms or 0) >= rebroadcast_ms:
        return PendingMove.RESEND
    return PendingMove.WAIT


def next_step(kinds: Sequence[str], active: int | None) -> int | None:
    """The next fee level after ``active`` (never the cancel: that is not a bump)."""
    start = 0 if active is None else active + 1
    for idx in range(start, len(kinds)):
        if kinds[idx] == "step":
            return idx
    return None


def first_variant(kinds: Sequence[str], cancel_requested: bool) -> int:
    """What goes out first: the lowest fee level, or the cancel when one was requested."""
    if cancel_requested and "cancel" in kinds:
        return kinds.index("cancel")
    return 0
