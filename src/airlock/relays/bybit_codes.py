"""What a Bybit V5 answer means for the order it carried: the retCode table, as data.

The table follows ``design/facts-bybit-v5.md`` ("retCodes and what to do"). It exists so
that every caller acts the same way on the same answer, and so that the anchors' failures
cannot come back: a duplicate orderLinkId is *already placed* (ccxt hid it as a generic
invalid order), a server timeout on create is *unknown* (never "failed": Hummingbot lost
exchange-accepted orders that way), a revoked key stops the account instead of looping.

Pure: no I/O. The HTTP shell (:mod:`airlock.relays.bybit`) adds the outcomes that have no
retCode (TRANSPORT, UNKNOWN after a lost answer, LATER after HTTP 403/429).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# The V5 paths airlock speaks (the rules below are per endpoint; the client and its
# supervisor name them in their errors).
SERVER_TIME = "/v5/market/time"
REALTIME = "/v5/order/realtime"
HISTORY = "/v5/order/history"
EXECUTIONS = "/v5/execution/list"
CREATE = "/v5/order/create"
CREATE_BATCH = "/v5/order/create-batch"
CANCEL = "/v5/order/cancel"
POSITIONS = "/v5/position/list"
WALLET = "/v5/account/wallet-balance"
DCP_SET = "/v5/order/disconnected-cancel-all"
DCP_INFO = "/v5/account/query-dcp-info"
CREATE_ENDPOINTS = frozenset({CREATE, CREATE_BATCH})


class VenueOutcome(StrEnum):
    """The normalised meaning of one Bybit answer (or of its absence) for one request."""

    PLACED = "placed"
    """retCode 0: the venue accepted the request (for a create: the order exists; its
    status comes later)."""

    ALREADY_PLACED = "already_placed"
    """The orderLinkId is already used (110072, spot 170141): the order exists from an
    earlier send. Look it up by orderLinkId; never resend it under a new id."""

    UNKNOWN = "unknown"
    """The request may have taken effect: timeout or lost connection after sending, a
    server-side timeout (10000, 10016, 170007, 170146) or 10014 on create. Look the
    orderLinkId up before any resend."""

    RETRY_RESYNC = "retry_resync"
    """10002: our timestamp is outside the venue's window. Nothing happened; re-sync the
    clock, re-sign and resend."""

    RATE_LIMITED = "rate_limited"
    """10006: over the per-endpoint limit. Nothing happened; wait until the reset
    timestamp, then resend."""

    LATER = "later"
    """Not processed now, safe to send the same request later (110079 order processing,
    HTTP 403/429 protection, a server timeout on a read or a cancel)."""

    AUTH_STOP = "auth_stop"
    """The key is invalid, revoked, lacks permission or is IP-bound (10003, 10004, 10005,
    10010). Stop sending for the account and alert once: retrying cannot help."""

    REJECTED = "rejected"
    """Final: the venue refused this request and will refuse it again (parameters,
    balance, price range, order finished, any retCode the table does not know)."""

    TRANSPORT = "transport"
    """The connection failed before the request was sent (refused, DNS, connect timeout).
    Nothing arrived; safe to retry with backoff."""


@dataclass(frozen=True)
class Rule:
    """One row: these codes mean ``on_create`` for a create, ``on_other`` elsewhere."""

    name: str
    codes: tuple[int, ...]
    on_create: VenueOutcome
    on_other: VenueOutcome | None = None  # None: same as on_create


@dataclass(frozen=True)
class Verdict:
    """A classified answer. ``rule`` names the table row (or the built-in check) that
    decided, so logs say *why*; ``known`` is False when no row matched (the outcome is then
    REJECTED and the caller should alert: a new code must be looked at by a human)."""

    outcome: VenueOutcome
    rule: str
    message: str
    ret_code: int | None = None
    known: bool = True


V = VenueOutcome
RULES: tuple[Rule, ...] = (
    Rule("ok", (0,), V.PLACED),
    # On create the order may exist; elsewhere (a read, a cancel) asking again is harmless.
    Rule("server-timeout", (10000, 10016, 170007, 170146), V.UNKNOWN, V.LATER),
    Rule("parameter-error", (10001,), V.REJECTED),
    Rule("timestamp-window", (10002,), V.RETRY_RESYNC),
    Rule("auth", (10003, 10004, 10005, 10010), V.AUTH_STOP),
    Rule("rate-limit", (10006,), V.RATE_LIMITED),
    Rule("duplicate-request", (10014,), V.UNKNOWN),
    Rule("order-not-exists", (110001,), V.REJECTED),
    Rule("order-refused", (110003, 110004, 110007, 110012, 110020), V.REJECTED),
    Rule("order-finished", (110008, 110010), V.REJECTED),
    Rule("duplicate-link-id", (110072, 170141), V.ALREADY_PLACED),
    Rule("order-processing", (110079,), V.LATER),
    # The trade stream's own codes (design/facts-bybit-ws.md): IP limit, system protection,
    # service restarting mean not processed; a repeated reqId may hide a processed one.
    Rule("trade-not-processed", (10403, 10429, 10019), V.LATER),
    Rule("trade-repeated-req-id", (20006,), V.UNKNOWN, V.LATER),
)
_BY_CODE: dict[int, Rule] = {code: rule for rule in RULES for code in rule.codes}
# Where one endpoint means something else by a code. The DCP switch answers a permission
# refusal (10005 in the simulator; unconfirmed) for accounts that may not use DCP: that
# refuses the feature, not the key, so the account must not stop.
BY_ENDPOINT: dict[tuple[str, int], Rule] = {
    (DCP_SET, 10005): Rule("dcp-not-permitted", (10005,), V.REJECTED),
}
if len(_BY_CODE) != sum(len(rule.codes) for rule in RULES):  # pragma: no cover - table typo
    raise AssertionError("a retCode appears in two rules")

HTTP_BACK_OFF = frozenset({403, 429})
"""Per facts: 403 is the per-IP ban ("access too frequent"), 429 system protection."""


def classify(ret_code: int, ret_msg: str, *, endpoint: str) -> Verdict:
    """The verdict for a V5 envelope with ``ret_code`` answered on ``endpoint`` (a path)."""
    rule = BY_ENDPOINT.get((endpoint, ret_code)) or _BY_CODE.get(ret_code)
    if rule is None:
        return Verdict(V.REJECTED, "unrecognised", ret_msg, ret_code, known=False)
    outcome = rule.on_create
    if endpoint not in CREATE_ENDPOINTS and rule.on_other is not None:
        outcome = rule.on_other
    return Verdict(outcome, rule.name, ret_msg, ret_code)


def classify_http(status: int, text: str, *, endpoint: str) -> Verdict:
    """A non-2xx HTTP answer with no V5 envelope.

    403/429: refused by protection before processing, back off (LATER). Anything else (a
    gateway 5xx) may hide a processed request: UNKNOWN on create, LATER elsewhere.
    """
    if status in HTTP_BACK_OFF:
        return Verdict(V.LATER, f"http-{status}", text)
    outcome = V.UNKNOWN if endpoint in CREATE_ENDPOINTS else V.LATER
    return Verdict(outcome, "http-error", f"HTTP {status}: {text}")
