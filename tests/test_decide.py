"""The broadcaster's pure decisions, as tables."""

from __future__ import annotations

import pytest

from airlock.broadcaster import decide
from airlock.broadcaster.decide import ChainVerdict, SendVerdict
from airlock.relays.outcomes import Classified, Outcome, Receipt


def answer(outcome: Outcome, message: str = "", unknown: bool = False) -> Classified:
    rule = None if unknown else f"test:{outcome}"
    return Classified(outcome=outcome, rule=rule, message=message, unknown=unknown)


A, K, N, U = Outcome.ACCEPTED, Outcome.ALREADY_KNOWN, Outcome.NONCE_USED, Outcome.UNDERPRICED
F, V, T, X = Outcome.INSUFFICIENT_FUNDS, Outcome.INVALID, Outcome.TRANSIENT, Outcome.TRANSPORT


@pytest.mark.parametrize(
    ("outcomes", "verdict"),
    [
        ([A], SendVerdict.SENT),
        ([K], SendVerdict.SENT),
        ([X, A], SendVerdict.SENT),  # one relay taking it is enough
        ([V, A], SendVerdict.SENT),  # a relay calling it invalid does not outvote one taking it
        ([N, A], SendVerdict.SENT),
        ([N], SendVerdict.NONCE_USED),
        ([N, U, X], SendVerdict.NONCE_USED),  # a spent nonce: receipts decide, not a bump
        ([U], SendVerdict.NEXT_VARIANT),
        ([U, X], SendVerdict.NEXT_VARIANT),
        ([U, V], SendVerdict.NEXT_VARIANT),
        ([V], SendVerdict.REJECTED),
        ([V, V, V], SendVerdict.REJECTED),
        ([V, X], SendVerdict.RETRY),  # the broken relay might be the only one that would take it
        ([V, T], SendVerdict.RETRY),
        ([F], SendVerdict.RETRY),
        ([F, X], SendVerdict.RETRY),
        ([T], SendVerdict.RETRY),
        ([X], SendVerdict.RETRY),
        ([X, X, T], SendVerdict.RETRY),
        ([], SendVerdict.RETRY),
    ],
)
def test_send_verdicts(outcomes: list[Outcome], verdict: SendVerdict) -> None:
    answers = {f"relay-{n}": answer(o, f"msg {o}") for n, o in enumerate(outcomes)}
    assert decide.judge_send(answers).verdict is verdict


def test_accepted_names_the_relays_that_took_it() -> None:
    judged = decide.judge_send({"b": answer(A), "a": answer(K), "c": answer(X)})
    assert judged.reason == "accepted by b, a"


def test_unknown_answer_is_retried_with_an_alert_never_success() -> None:
    judged = decide.judge_send({"a": answer(T, "brand new wording", unknown=True)})
    assert judged.verdict is SendVerdict.RETRY
    assert judged.alert is not None and "brand new wording" in judged.alert


def test_rejected_and_unfunded_raise_alerts() -> None:
    assert decide.judge_send({"a": answer(V, "invalid sender")}).alert
    unfunded = decide.judge_send({"a": answer(F, "insufficient funds")})
    assert unfunded.alert and unfunded.retry_ms == decide.UNFUNDED_RETRY_MS


def test_retry_backs_off_and_is_capped() -> None:
    waits = [decide.judge_send({"a": answer(X)}, tries).retry_ms for tries in range(20)]
    assert waits[0] == decide.RETRY_BASE_MS
    assert waits == sorted(waits)
    assert waits[-1] == decide.RETRY_CAP_MS


def rcpt(tx_hash: str, block: int, status: int = 1) -> Receipt:
    return Receipt(tx_hash, block, f"0xblock{block}", status)


H0, H1 = "0xaa", "0xbb"


@pytest.mark.parametrize(
    ("receipts", "chain_nonce", "had", "verdict"),
    [
        ({H0: rcpt(H0, 10), H1: None}, 6, None, ChainVerdict.CONFIRMED),
        ({H0: None, H1: rcpt(H1, 10)}, 6, None, ChainVerdict.CONFIRMED),  # the bump was mined
        ({H0: rcpt(H0, 12)}, 6, None, ChainVerdict.MINED),  # 1 of 2 confirmations
        ({H0: rcpt(H0, 10, status=0)}, 6, None, ChainVerdict.CONFIRMED),  # reverted is mined
        ({H0: None, H1: None}, 6, None, ChainVerdict.REPLACED),
        ({H0: None, H1: None}, 5, None, ChainVerdict.PENDING),
        ({H0: None, H1: None}, None, None, ChainVerdict.PENDING),
        ({H0: None}, 6, None, ChainVerdict.UNKNOWN),  # no answer for H1
        ({H0: None, H1: None}, 6, H0, ChainVerdict.REORGED),
        ({H0: None, H1: None}, 5, H0, ChainVerdict.REORGED),
        ({H0: rcpt(H0, 11), H1: None}, 6, H0, ChainVerdict.CONFIRMED),  # re-mined elsewhere
    ],
)
def test_chain_verdicts(receipts, chain_nonce, had, verdict) -> None:
    judged = decide.judge_chain(
        nonce=5,
        hashes=[H0, H1],
        receipts=receipts,
        chain_nonce=chain_nonce,
        head=12,
        confirmations=2,
        had_receipt=had,
    )
    assert judged.verdict is verdict


def test_reverted_receipt_says_so() -> None:
    judged = decide.judge_chain(
        nonce=0,
        hashes=[H0],
        receipts={H0: rcpt(H0, 3, status=0)},
        chain_nonce=1,
        head=3,
        confirmations=1,
        had_receipt=None,
    )
    assert "reverted" in judged.reason and judged.receipt == rcpt(H0, 3, status=0)


POLICY = decide.BumpPolicy(after_blocks=3, after_ms=60_000)


@pytest.mark.parametrize(
    ("sent_ms", "sent_block", "now_ms", "head", "due"),
    [
        (None, None, 10**9, 100, False),  # never accepted: nothing to bump
        (0, 10, 59_999, 12, False),
        (0, 10, 60_000, 12, True),  # the time trigger
        (0, 10, 1_000, 13, True),  # the block trigger
        (0, None, 1_000, 13, False),
        (0, 10, 1_000, None, False),
    ],
)
def test_bump_due(sent_ms, sent_block, now_ms, head, due) -> None:
    got = decide.bump_due(
        sent_ms=sent_ms, sent_block=sent_block, now_ms=now_ms, head=head, policy=POLICY
    )
    assert got is due


@pytest.mark.parametrize(
    ("kinds", "active", "expected"),
    [
        (["step", "step", "cancel"], None, 0),
        (["step", "step", "cancel"], 0, 1),
        (["step", "step", "cancel"], 1, None),  # never the cancel as a bump
        (["step", "step", "cancel", "step"], 1, 3),  # a re-signed level after the cancel
        (["step", "cancel"], 1, None),
        (["step"], 0, None),
    ],
)
def test_next_step(kinds, active, expected) -> None:
    assert decide.next_step(kinds, active) == expected


def test_first_variant_is_the_cancel_only_when_requested() -> None:
    assert decide.first_variant(["step", "step", "cancel"], cancel_requested=False) == 0
    assert decide.first_variant(["step", "step", "cancel"], cancel_requested=True) == 2
    assert decide.first_variant(["step"], cancel_requested=True) == 0


MOVE = {"policy": POLICY, "rebroadcast_ms": 120_000, "head": 12, "sent_block": 10}


@pytest.mark.parametrize(
    ("fates", "active", "sent_ms", "now_ms", "move"),
    [
        (["sent", None], 0, 0, 1_000, decide.PendingMove.WAIT),
        (["sent", None], 0, 0, 60_000, decide.PendingMove.BUMP),
        (["sent", None], 1, 0, 1_000, decide.PendingMove.RESEND),  # the bump never got through
        (["sent", None], 1, 0, 60_000, decide.PendingMove.RESEND),  # not skipped, even when due
        (["sent", "sent"], 1, 0, 60_000, decide.PendingMove.BUMP),
        (["sent"], 0, 0, 119_999, decide.PendingMove.BUMP),  # a bump comes before a resend
    ],
)
def test_pending_move(fates, active, sent_ms, now_ms, move) -> None:
    got = decide.pending_move(fates=fates, active=active, sent_ms=sent_ms, now_ms=now_ms, **MOVE)
    assert got is move


def test_silent_item_is_rebroadcast_when_bumps_are_far() -> None:
    far = decide.BumpPolicy(after_blocks=1000, after_ms=10**9)
    got = decide.pending_move(
        fates=["sent"],
        active=0,
        sent_ms=0,
        sent_block=10,
        now_ms=120_000,
        head=12,
        policy=far,
        rebroadcast_ms=120_000,
    )
    assert got is decide.PendingMove.RESEND
