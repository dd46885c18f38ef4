"""Turn a relay's answer to ``eth_sendRawTransaction`` into an :class:`Outcome`.

The wording of node errors is the one thing here that changes under us (a provider once
reworded its duplicate error and clogged a relayer's queue for hours), so it lives in
:data:`RULES` as data, tested message by message, and anything no rule recognises becomes
TRANSIENT with ``unknown=True``: retried and alerted on, never mistaken for success.

Matching is a case-insensitive substring search, because nodes append details after a
colon (``nonce too low: next nonce 5, tx nonce 3``) or prefix a category (Erigon's
``FEE_TOO_LOW: …``). One guard on top: a pattern must start a word, i.e. not follow a
letter or digit, so Besu's ``known transaction`` does not fire inside ``unknown transaction
type``. The first matching rule wins, so the order of :data:`RULES` is part of the contract:

1. "not lost" answers first (ALREADY_KNOWN, NONCE_USED): a duplicate must never be read as
   a failure;
2. then the retryable ones (TRANSIENT, UNDERPRICED, INSUFFICIENT_FUNDS);
3. then INVALID, which is final for the bytes, so it only wins when nothing milder matched;
4. last, the vague catch-alls (``transaction invalid``, ``invalid nonce``, ``internal
   error``), which wrap more precise messages on some nodes.

Within that order a longer pattern comes before any pattern it contains
(``replacement transaction underpriced`` before ``transaction underpriced``); the tests
prove every rule is reachable and check every pair of patterns for overlaps.

No I/O here: the relays call these functions on what they received.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from airlock.relays.errors import clip
from airlock.relays.outcomes import Classified, Outcome

# Node families and relays whose wording the table covers; a typo in a rule fails at import.
CLIENTS: frozenset[str] = frozenset(
    {"geth", "reth", "anvil", "nethermind", "erigon", "besu", "flashbots-protect"}
)
# Rule names the built-in checks use; no table rule may take them.
HASH_RETURNED = "hash_returned"
TRANSPORT = "transport"
# How much of a relay's text is kept in a Classified: enough to diagnose, not a megabyte.
MAX_MESSAGE_CHARS = 500

_TX_HASH = re.compile(r"0x[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class Rule:
    """``pattern`` (lower case) found in an error message means ``outcome``.

    ``clients`` records which nodes send that wording (documentation and tests; matching
    does not depend on which node answered, since a relay may front any of them).
    """

    outcome: Outcome
    pattern: str
    clients: tuple[str, ...]
    name: str

    def __post_init__(self) -> None:
        if not self.pattern or self.pattern != self.pattern.strip().lower():
            raise ValueError(f"rule {self.name!r}: pattern must be non-empty, trimmed, lower case")
        if not self.pattern[0].isalnum():
            raise ValueError(f"rule {self.name!r}: pattern must start with a letter or digit")
        if not self.clients or not set(self.clients) <= CLIENTS:
            raise ValueError(f"rule {self.name!r}: clients must be a non-empty subset of CLIENTS")
        if self.name in (HASH_RETURNED, TRANSPORT):
            raise ValueError(f"rule name {self.name!r} is reserved")

    def matches(self, lowered: str) -> bool:
        """True if the pattern occurs in ``lowered`` at the start of a word."""
        start = lowered.find(self.pattern)
        while start != -1:
            if start == 0 or not lowered[start - 1].isalnum():
                return True
            start = lowered.find(self.pattern, start + 1)
        return False


_A, _N, _U = Outcome.ALREADY_KNOWN, Outcome.NONCE_USED, Outcome.UNDERPRICED
_F, _I, _T = Outcome.INSUFFICIENT_FUNDS, Outcome.INVALID, Outcome.TRANSIENT

RULES: tuple[Rule, ...] = (
    # --- 1. not lost: the node has these bytes, or the nonce is already mined ---------------
    Rule(_A, "already known", ("geth", "reth", "nethermind", "erigon"), "already_known"),
    Rule(_A, "alreadyknown", ("nethermind",), "already_known_enum"),
    Rule(_A, "transaction already imported", ("anvil",), "already_imported"),
    Rule(_A, "existing txn with same hash", ("erigon",), "same_hash"),
    Rule(_A, "known transaction", ("besu",), "known_transaction"),
    Rule(
        _N,
        "nonce too low",
        ("geth", "reth", "anvil", "nethermind", "erigon", "besu"),
        "nonce_too_low",
    ),
    Rule(_N, "oldnonce", ("nethermind",), "old_nonce"),
    # --- 2a. transient: try the same bytes again later --------------------------------------
    # "nonce too high" is a gap, not a used nonce; no rule matches a bare "nonce".
    Rule(_T, "nonce too high", ("geth", "reth", "nethermind", "besu"), "nonce_too_high"),
    Rule(_T, "noncegap", ("nethermind",), "nonce_gap"),
    Rule(_T, "too distant", ("besu",), "nonce_too_distant"),
    Rule(_T, "txpool is full", ("geth", "reth"), "txpool_full"),
    Rule(_T, "pending sub-pool is full", ("erigon",), "subpool_full"),
    Rule(_T, "future transaction tries to replace pending", ("geth", "reth"), "future_replace"),
    Rule(_T, "account limit exceeded", ("geth", "reth"), "account_limit"),
    # --- 2b. underpriced: the next pre-signed variant is needed -----------------------------
    # The replacement wording contains the plain one, so it must come first.
    Rule(
        _U,
        "replacement transaction underpriced",
        ("geth", "reth", "anvil", "nethermind", "erigon", "besu"),
        "replacement_underpriced",
    ),
    Rule(
        _U,
        "transaction underpriced",
        ("geth", "reth", "nethermind", "flashbots-protect"),
        "underpriced",
    ),
    Rule(_U, "gas price below minimum", ("geth", "reth", "nethermind"), "below_min_gas_price"),
    Rule(_U, "below configured minimum", ("besu",), "below_configured_minimum"),
    Rule(_U, "below current base fee", ("besu",), "below_base_fee"),
    # Shares "max fee per gas" with geth's INVALID tip-above-cap message, but neither full
    # pattern contains the other.
    Rule(_U, "max fee per gas less than block base fee", ("anvil",), "fee_cap_below_base_fee"),
    Rule(_U, "feetoolow", ("nethermind",), "fee_too_low_enum"),
    Rule(_U, "replacementnotallowed", ("nethermind",), "replacement_not_allowed"),
    Rule(_U, "could not replace existing tx", ("erigon",), "not_replaced"),
    # Erigon prefixes its pool's reason with an import-result name: "FEE_TOO_LOW: underpriced".
    # Its other prefixes (ALREADY_EXISTS, INVALID, INTERNAL_ERROR) say nothing more than the
    # reason after them, so no rule matches them: "INTERNAL_ERROR: nonce too low" is NONCE_USED.
    Rule(_U, "fee_too_low", ("erigon",), "fee_too_low_result"),
    # --- 2c. insufficient funds: fund the account, or fall back to a cheaper variant --------
    # geth's full wording contains Erigon's short one, so it comes first.
    Rule(
        _F,
        "insufficient funds for gas * price + value",
        ("geth", "reth", "anvil"),
        "insufficient_funds",
    ),
    Rule(_F, "insufficient funds", ("erigon",), "insufficient_funds_short"),
    Rule(_F, "insufficientfunds", ("nethermind",), "insufficient_funds_enum"),
    Rule(_F, "upfront cost exceeds account balance", ("besu",), "upfront_cost"),
    # --- 3. invalid: final for these bytes --------------------------------------------------
    Rule(_I, "intrinsic gas too low", ("geth", "reth", "anvil"), "intrinsic_gas_too_low"),
    Rule(_I, "intrinsic gas too high", ("anvil",), "intrinsic_gas_too_high"),
    Rule(_I, "intrinsicgas", ("erigon",), "intrinsic_gas_enum"),
    Rule(_I, "exceeds block gas limit", ("geth", "reth", "besu"), "exceeds_block_gas_limit"),
    Rule(_I, "exceeds the configured cap", ("geth", "reth"), "over_rpc_fee_cap"),
    Rule(_I, "fee cap exceeded", ("besu",), "over_rpc_fee_cap_besu"),
    Rule(_I, "only replay-protected", ("geth", "reth"), "not_replay_protected"),
    Rule(
        _I,
        "max priority fee per gas higher than max fee per gas",
        ("geth", "reth"),
        "tip_above_fee_cap",
    ),
    Rule(_I, "invalid chain id for signer", ("anvil",), "wrong_chain_id"),
    Rule(_I, "invalid sender", ("geth", "reth", "erigon"), "invalid_sender"),
    Rule(_I, "failed to recover sender", ("nethermind",), "unrecoverable_sender"),
    Rule(_I, "invalid signature", ("besu",), "invalid_signature"),
    # --- 4. vague catch-alls: only when nothing more precise matched ------------------------
    Rule(_I, "transaction invalid", ("nethermind",), "transaction_invalid"),
    # Flashbots Protect answers "invalid nonce" (-32603) when the nonce is below the chain's
    # (used: the common case, e.g. a resend after inclusion) or beyond the highest it has
    # seen + 1. NONCE_USED sends the broadcaster to receipts and the chain nonce, which settle
    # both cases; reading it as TRANSIENT would resend a mined nonce forever.
    Rule(_N, "invalid nonce", ("flashbots-protect",), "invalid_nonce"),
    Rule(_T, "internal error", ("flashbots-protect",), "internal_error"),
)


def classify_error(message: str, code: int | None = None) -> Classified:
    """Classify the ``error.message`` of a JSON-RPC error answer to a send.

    ``code`` is kept in the recorded message but does not decide anything: nodes reuse
    codes (-32000 covers most of geth's pool errors), so only the wording is reliable.
    """
    if not isinstance(message, str):  # a relay's JSON may put anything in "message"
        message = repr(message)
    recorded = _clip(message) + (f" (JSON-RPC code {code})" if code is not None else "")
    lowered = message.lower()
    for rule in RULES:
        if rule.matches(lowered):
            return Classified(rule.outcome, rule.name, recorded, unknown=False)
    return Classified(
        Outcome.TRANSIENT,
        None,
        f"unrecognised relay error, retrying as transient: {recorded}",
        unknown=True,
    )


def classify_send_result(result: object, expected_hash: str) -> Classified:
    """Classify the ``result`` of a successful JSON-RPC answer to a send.

    Only this transaction's own hash (any letter case) counts as ACCEPTED. A different
    hash, ``null`` or a non-string means the relay is broken or lying; that must never
    count as accepted, so it is TRANSIENT with ``unknown=True`` for the caller to alert on.
    """
    if not isinstance(expected_hash, str) or not _TX_HASH.fullmatch(expected_hash):
        raise ValueError(f"expected_hash must be a 0x-prefixed 32-byte hex hash: {expected_hash!r}")
    if isinstance(result, str) and result.lower() == expected_hash.lower():
        return Classified(
            Outcome.ACCEPTED, HASH_RETURNED, f"relay returned {expected_hash}", unknown=False
        )
    return Classified(
        Outcome.TRANSIENT,
        None,
        f"relay returned {_clip(repr(result))}, which is not this transaction's hash "
        f"{expected_hash}: not counted as accepted",
        unknown=True,
    )


def transport(reason: str) -> Classified:
    """A TRANSPORT outcome: the link failed (timeout, refused, HTTP 5xx, not JSON-RPC).

    The caller decides that the failure is the link's; this only records it uniformly.
    """
    return Classified(
        Outcome.TRANSPORT, TRANSPORT, _clip(reason) or "transport failure", unknown=False
    )


def _clip(text: str) -> str:
    return clip(text, MAX_MESSAGE_CHARS)
