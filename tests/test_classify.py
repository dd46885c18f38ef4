"""The send-outcome table: every wording in design/facts-evm-broadcast.md, as nodes send it.

The table is data and its order is part of the contract, so besides one case per (client,
message) these tests prove every rule reachable, check every pair of patterns for
overlaps, and make sure that nothing unrecognised, and no wrong hash, ever reads as success.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airlock.relays.classify import (
    CLIENTS,
    HASH_RETURNED,
    MAX_MESSAGE_CHARS,
    RULES,
    TRANSPORT,
    Rule,
    classify_error,
    classify_send_result,
    transport,
)
from airlock.relays.outcomes import Classified, Outcome

# One letter per outcome keeps the case table readable; X is INVALID (final).
A, N, U = Outcome.ALREADY_KNOWN, Outcome.NONCE_USED, Outcome.UNDERPRICED
F, X, T = Outcome.INSUFFICIENT_FUNDS, Outcome.INVALID, Outcome.TRANSIENT
BY_NAME = {rule.name: rule for rule in RULES}
TX_HASH = "0x" + "5c504ed432cb51138bcf09aa5e8a410dd4a1e204ef84bfed1be16dfba1b22060"

# (client, message exactly as the node words it, expected outcome)
CASES: list[tuple[str, str, Outcome]] = [
    # geth
    ("geth", "already known", A),
    ("geth", "nonce too low: next nonce 5, tx nonce 3", N),
    ("geth", "replacement transaction underpriced", U),
    ("geth", "transaction underpriced: gas tip cap 1, minimum needed 2", U),
    ("geth", "transaction gas price below minimum: gas tip cap 0, minimum needed 1000000000", U),
    ("geth", "insufficient funds for gas * price + value: balance 0, tx cost 21000000", F),
    ("geth", "intrinsic gas too low: gas 20000, minimum needed 21000", X),
    ("geth", "exceeds block gas limit", X),
    ("geth", "invalid sender", X),
    ("geth", "tx fee (1.20 ether) exceeds the configured cap (1.00 ether)", X),
    ("geth", "only replay-protected (EIP-155) transactions allowed over RPC", X),
    (
        "geth",
        "max priority fee per gas higher than max fee per gas: address 0x71C7656EC7ab88b098defB751"
        "B7401B5f6d8976F, maxPriorityFeePerGas: 2000000000, maxFeePerGas: 1000000000",
        X,
    ),
    ("geth", "txpool is full", T),
    ("geth", "future transaction tries to replace pending", T),
    ("geth", "account limit exceeded: pending 16", T),
    (
        "geth",
        "nonce too high: address 0x71C7656EC7ab88b098defB751B7401B5f6d8976F, tx: 9 state: 5",
        T,
    ),
    # reth speaks geth's words
    ("reth", "already known", A),
    ("reth", "nonce too low", N),
    ("reth", "replacement transaction underpriced", U),
    ("reth", "insufficient funds for gas * price + value", F),
    ("reth", "txpool is full", T),
    # anvil
    ("anvil", "transaction already imported", A),
    ("anvil", "nonce too low", N),
    ("anvil", "replacement transaction underpriced", U),
    ("anvil", "max fee per gas less than block base fee", U),
    ("anvil", "Insufficient funds for gas * price + value", F),
    ("anvil", "intrinsic gas too low", X),
    ("anvil", "intrinsic gas too high", X),
    ("anvil", "invalid chain id for signer", X),
    # Nethermind: geth's phrases in new versions, AcceptTxResult names in older ones
    ("nethermind", "already known", A),
    ("nethermind", "AlreadyKnown", A),
    ("nethermind", "nonce too low", N),
    ("nethermind", "OldNonce, Current nonce: 5, nonce of rejected tx: 3", N),
    ("nethermind", "replacement transaction underpriced", U),
    ("nethermind", "transaction underpriced", U),
    ("nethermind", "FeeTooLow, MaxFeePerGas too low. MaxFeePerGas: 1, BaseFee: 7", U),
    ("nethermind", "ReplacementNotAllowed", U),
    ("nethermind", "InsufficientFunds, Account balance: 0, cumulative cost: 21000", F),
    ("nethermind", "transaction invalid", X),
    ("nethermind", "failed to recover sender", X),
    ("nethermind", "nonce too high", T),
    ("nethermind", "NonceGap, Future nonce. Current nonce: 3, nonce of rejected tx: 7", T),
    # Erigon: "<ImportResult name>: <discard reason>"
    ("erigon", "ALREADY_EXISTS: already known", A),
    ("erigon", "INTERNAL_ERROR: existing txn with same hash", A),
    ("erigon", "INTERNAL_ERROR: nonce too low", N),
    ("erigon", "INTERNAL_ERROR: could not replace existing tx", U),
    ("erigon", "FEE_TOO_LOW: fee too low", U),
    ("erigon", "FEE_TOO_LOW: underpriced", U),
    ("erigon", "FEE_TOO_LOW: replacement transaction underpriced", U),
    ("erigon", "INTERNAL_ERROR: insufficient funds", F),
    ("erigon", "INVALID: invalid sender", X),
    ("erigon", "INTERNAL_ERROR: IntrinsicGas", X),
    ("erigon", "INTERNAL_ERROR: pending sub-pool is full", T),
    # Besu
    ("besu", "Known transaction", A),
    ("besu", "Nonce too low", N),
    ("besu", "Replacement transaction underpriced", U),
    ("besu", "Gas price below configured minimum gas price", U),
    ("besu", "Gas price below current base fee", U),
    ("besu", "Upfront cost exceeds account balance", F),
    ("besu", "Invalid signature", X),
    ("besu", "Transaction gas limit exceeds block gas limit", X),
    ("besu", "Transaction fee cap exceeded", X),
    ("besu", "Nonce too high", T),
    ("besu", "Transaction nonce is too distant from current sender nonce", T),
    # Flashbots Protect
    ("flashbots-protect", "invalid nonce", N),
    ("flashbots-protect", "transaction underpriced", U),
    ("flashbots-protect", "internal error", T),
]


@pytest.mark.parametrize(
    ("client", "message", "outcome"), CASES, ids=[f"{c}:{m[:40]}" for c, m, _ in CASES]
)
def test_every_wording_in_the_facts_table(client: str, message: str, outcome: Outcome) -> None:
    result = classify_error(message)
    assert result.outcome is outcome
    assert not result.unknown
    assert result.rule is not None
    assert client in BY_NAME[result.rule].clients, (result.rule, BY_NAME[result.rule].clients)
    assert result.message == message


def test_every_client_and_every_rule_has_a_case() -> None:
    assert {client for client, _, _ in CASES} == CLIENTS
    used = {classify_error(message).rule for _, message, _ in CASES}
    assert used == set(BY_NAME), sorted(set(BY_NAME) - used)


def test_every_classifiable_outcome_has_rules() -> None:
    assert {rule.outcome for rule in RULES} == set(Outcome) - {Outcome.ACCEPTED, Outcome.TRANSPORT}


# --- the table itself -----------------------------------------------------------------------


def test_patterns_and_names_are_unique() -> None:
    patterns = [rule.pattern for rule in RULES]
    names = [rule.name for rule in RULES]
    assert len(set(patterns)) == len(patterns)
    assert len(set(names)) == len(names)
    assert not {HASH_RETURNED, TRANSPORT} & set(names)


@pytest.mark.parametrize("rule", RULES, ids=[rule.name for rule in RULES])
def test_every_rule_is_reachable(rule: Rule) -> None:
    """No earlier rule shadows a later one: its own pattern classifies to it."""
    result = classify_error(rule.pattern)
    assert (result.rule, result.outcome) == (rule.name, rule.outcome)


# Pairs (longer, shorter) where the shorter pattern occurs inside the longer one. Each is a
# conscious decision: the longer must come first, and both must mean the same thing.
EXPECTED_OVERLAPS = {
    ("replacement_underpriced", "underpriced"),
    ("insufficient_funds", "insufficient_funds_short"),
}


def test_every_pair_of_patterns() -> None:
    overlaps = {
        (longer.name, shorter.name)
        for longer, shorter in itertools.permutations(RULES, 2)
        if shorter.matches(longer.pattern)
    }
    assert overlaps == EXPECTED_OVERLAPS
    order = {rule.name: i for i, rule in enumerate(RULES)}
    for longer, shorter in overlaps:
        assert order[longer] < order[shorter]
        assert BY_NAME[longer].outcome is BY_NAME[shorter].outcome


def test_base_fee_and_tip_above_cap_do_not_collide() -> None:
    """Both mention "max fee per gas"; one is retryable with a higher fee, one is final."""
    assert classify_error("max fee per gas less than block base fee").outcome is U
    tip = classify_error("max priority fee per gas higher than max fee per gas")
    assert (tip.outcome, tip.rule) == (X, "tip_above_fee_cap")
    assert classify_error("max fee per gas less than block base fee: baseFee: 7").outcome is U


def test_nonce_too_high_is_not_a_used_nonce() -> None:
    for message in ("nonce too high", "Nonce too high", "NonceGap"):
        assert classify_error(message).outcome is T
    assert classify_error("nonce too low").outcome is N
    # no rule matches a bare "nonce"
    assert classify_error("nonce").unknown


def test_erigon_prefixes_do_not_decide() -> None:
    """INTERNAL_ERROR and INVALID prefixes must not hit Protect's "internal error" or INVALID."""
    assert classify_error("INTERNAL_ERROR: nonce too low").outcome is N
    assert classify_error("INTERNAL_ERROR: pending sub-pool is full").outcome is T
    assert classify_error("INVALID: nonce too low").outcome is N
    assert classify_error("INTERNAL_ERROR: something new").unknown


def test_patterns_start_words() -> None:
    """Besu's "known transaction" must not fire inside "unknown transaction type"."""
    assert classify_error("unknown transaction type").unknown
    assert classify_error("rlp: unknown transaction type 0x05").unknown
    assert classify_error("error: Known transaction").outcome is A
    assert classify_error("unknown transaction, Known transaction").outcome is A


def test_rule_validation() -> None:
    with pytest.raises(ValueError, match="lower case"):
        Rule(N, "Nonce too low", ("geth",), "x")
    with pytest.raises(ValueError, match="lower case"):
        Rule(N, "", ("geth",), "x")
    with pytest.raises(ValueError, match="start with"):
        Rule(N, "*nonce", ("geth",), "x")
    with pytest.raises(ValueError, match="clients"):
        Rule(N, "nonce too low", ("parity",), "x")
    with pytest.raises(ValueError, match="clients"):
        Rule(N, "nonce too low", (), "x")
    with pytest.raises(ValueError, match="reserved"):
        Rule(N, "nonce too low", ("geth",), TRANSPORT)


# --- matching details -----------------------------------------------------------------------


@pytest.mark.parametrize("rule", RULES, ids=[rule.name for rule in RULES])
def test_case_insensitive_and_details_around(rule: Rule) -> None:
    for message in (
        rule.pattern.upper(),
        rule.pattern.title(),
        f"{rule.pattern}: address 0xabc, have 0 want 21000",
        f"rpc error: {rule.pattern} (details follow)",
        f"{rule.pattern.upper()}\n",
    ):
        result = classify_error(message)
        assert (result.rule, result.outcome) == (rule.name, rule.outcome), message


@pytest.mark.parametrize(
    "message",
    [
        "",
        "   ",
        "something new went wrong",
        "tx already in mempool",  # a changed duplicate wording: alert, never success
        "transaction already exists",
        "underpriced",
        "method not found",
    ],
)
def test_unknown_messages_are_transient_and_flagged(message: str) -> None:
    result = classify_error(message)
    assert result.outcome is T
    assert result.unknown
    assert result.rule is None
    assert message in result.message
    assert "unrecognised" in result.message


def test_code_is_recorded_not_decisive() -> None:
    result = classify_error("invalid nonce", -32603)
    assert result.outcome is N
    assert "-32603" in result.message
    assert classify_error("invalid nonce", -32000).outcome is N
    assert "-32600" in classify_error("strange", -32600).message


def test_long_messages_are_clipped_but_fully_matched() -> None:
    result = classify_error("x" * 10_000 + " nonce too low")
    assert result.outcome is N
    assert len(result.message) <= MAX_MESSAGE_CHARS


def test_non_string_message_does_not_raise() -> None:
    for junk in (None, 42, {"nested": "nonce too low"}, b"already known"):
        result = classify_error(junk)  # type: ignore[arg-type]
        assert isinstance(result.outcome, Outcome)


@given(st.text())
def test_classify_error_never_raises(message: str) -> None:
    result = classify_error(message)
    assert result.outcome in set(Outcome)
    if result.unknown:
        assert (result.outcome, result.rule) == (T, None)
    else:
        assert result.rule in BY_NAME
        assert result.outcome is BY_NAME[result.rule].outcome
    assert result.outcome is not Outcome.ACCEPTED


@given(st.text(), st.integers() | st.none())
def test_classify_error_with_any_code(message: str, code: int | None) -> None:
    assert classify_error(message, code).outcome is not Outcome.ACCEPTED


# --- successful answers ---------------------------------------------------------------------


def test_own_hash_is_accepted_in_any_case() -> None:
    mixed = "0x" + "".join(c.upper() if i % 2 else c for i, c in enumerate(TX_HASH[2:]))
    for result in (TX_HASH, mixed, TX_HASH.upper().replace("0X", "0x")):
        classified = classify_send_result(result, TX_HASH)
        assert classified == Classified(
            Outcome.ACCEPTED, HASH_RETURNED, f"relay returned {TX_HASH}", False
        )
    assert classify_send_result(TX_HASH, mixed).outcome is Outcome.ACCEPTED


@pytest.mark.parametrize(
    "result",
    [
        "0x" + "00" * 32,  # another transaction's hash: a lying or confused relay
        TX_HASH[:-1] + "1",
        TX_HASH + " ",
        TX_HASH[2:],
        "",
        None,
        123,
        {},
        [],
        True,
        TX_HASH.encode(),
        [TX_HASH],
        {"hash": TX_HASH},
    ],
    ids=repr,
)
def test_anything_else_is_not_accepted(result: object) -> None:
    classified = classify_send_result(result, TX_HASH)
    assert classified.outcome is T
    assert classified.unknown
    assert classified.rule is None
    assert "not this transaction's hash" in classified.message
    assert TX_HASH in classified.message


@pytest.mark.parametrize(
    "expected", ["", "0x", "0x1234", TX_HASH[2:], TX_HASH + "00", "0x" + "zz" * 32]
)
def test_expected_hash_must_be_a_hash(expected: str) -> None:
    with pytest.raises(ValueError, match="expected_hash"):
        classify_send_result(expected, expected)


@given(st.text(max_size=80) | st.none() | st.integers() | st.binary(max_size=40))
def test_only_the_own_hash_is_ever_accepted(result: object) -> None:
    classified = classify_send_result(result, TX_HASH)
    own = isinstance(result, str) and result.lower() == TX_HASH.lower()
    assert (classified.outcome is Outcome.ACCEPTED) == own
    assert classified.unknown == (not own)


# --- transport and the record ---------------------------------------------------------------


def test_transport_constructor() -> None:
    result = transport("timeout after 10 s")
    assert result == Classified(Outcome.TRANSPORT, TRANSPORT, "timeout after 10 s", False)
    assert transport("").message == "transport failure"
    assert len(transport("HTTP 502: " + "<html>" * 1000).message) <= MAX_MESSAGE_CHARS


def test_classified_invariants() -> None:
    with pytest.raises(ValueError, match="TRANSIENT"):
        Classified(Outcome.ACCEPTED, None, "ok", unknown=True)
    with pytest.raises(ValueError, match="TRANSIENT"):
        Classified(Outcome.TRANSIENT, "nonce_too_low", "x", unknown=True)
    with pytest.raises(ValueError, match="name the rule"):
        Classified(Outcome.INVALID, None, "x", unknown=False)
    result = classify_error("already known")
    with pytest.raises(AttributeError):
        result.outcome = Outcome.ACCEPTED  # type: ignore[misc]
