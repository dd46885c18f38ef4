"""The Bybit broadcaster's pure decisions (``venue_decide``), as tables. No I/VO."""

from __future__ import annotations

from typing import Any

import pytest

from airlock.broadcaster import venue_decide as decide
from airlock.broadcaster.venue_decide import Step
from airlock.queue.states import TERMINAL, TRANSITIONS, State, check_transition
from airlock.queue.venue import Fill, VenueSeen
from airlock.relays.bybit import Placement
from airlock.relays.bybit_codes import VenueOutcome

VO = VenueOutcome
LINK = "al-" + "a" * 32
NOW = 1_700_000_000_000
WINDOW = 5_000


def placement(
    outcome: VenueOutcome,
    ret_code: int | None = None,
    rule: str = "",
    ret_msg: str = "venue words",
    order_id: str | None = None,
) -> Placement:
    return Placement(outcome, order_id, LINK, ret_code, ret_msg, rule)


def walk(src: State, path: tuple[State, ...]) -> State:
    """Apply ``path`` from ``src`` through the state machine; raise on any illegal move."""
    current = src
    for target in path:
        _, current = check_transition(current, target)
    return current


def test_walk_refuses_an_illegal_path() -> None:
    from airlock.queue.states import IllegalTransition

    with pytest.raises(IllegalTransition):
        walk(State.SENDING, (State.CONFIRMED,))


# -- judge_order_send ------------------------------------------------------------------


def test_order_placed_is_sent_and_names_the_order_id() -> None:
    step = decide.judge_order_send(placement(VO.PLACED, 0, "ok", order_id="1234"))
    assert step.path == (State.SENT,)
    assert "1234" in step.reason
    assert not (step.retry or step.lookup or step.halt) and step.alert is None
    walk(State.SENDING, step.path)


@pytest.mark.parametrize(
    ("outcome", "code", "rule"),
    [
        (VO.ALREADY_PLACED, 110072, "duplicate-link-id"),
        (VO.ALREADY_PLACED, 170141, "duplicate-link-id"),
        (VO.UNKNOWN, 10000, "server-timeout"),
        (VO.UNKNOWN, 10014, "duplicate-request"),
        (VO.UNKNOWN, None, "lost"),
        (VO.UNKNOWN, None, "http-error"),
    ],
)
def test_order_answers_that_may_hide_an_order_are_looked_up(
    outcome: VenueOutcome, code: int | None, rule: str
) -> None:
    step = decide.judge_order_send(placement(outcome, code, rule))
    assert step.path == ()  # never "failed": the item stays sending
    assert step.lookup
    assert not (step.retry or step.halt) and step.alert is None
    assert rule in step.reason and "venue words" in step.reason
    if code is not None:
        assert f"retCode {code}" in step.reason
    else:
        assert "retCode" not in step.reason


@pytest.mark.parametrize(
    ("outcome", "code", "words"),
    [
        (VO.TRANSPORT, None, "unreachable"),
        (VO.LATER, 110079, "later"),
        (VO.LATER, None, "later"),  # HTTP 403/429
        (VO.RATE_LIMITED, 10006, "rate limited"),
        (VO.RETRY_RESYNC, 10002, "re-sync"),
    ],
)
def test_order_answers_proving_nothing_happened_are_queued_again(
    outcome: VenueOutcome, code: int | None, words: str
) -> None:
    step = decide.judge_order_send(placement(outcome, code, "some-rule"))
    assert step.path == (State.QUEUED,)
    assert step.retry and step.halt
    assert not step.lookup and step.alert is None
    assert words in step.reason
    if code is not None:
        assert f"retCode {code}" in step.reason
    walk(State.SENDING, step.path)


def test_order_auth_stop_halts_without_retry() -> None:
    step = decide.judge_order_send(placement(VO.AUTH_STOP, 10003, "auth", "invalid api key"))
    assert step.path == (State.QUEUED,)
    assert step.halt and not step.retry and not step.lookup
    assert "retCode 10003" in step.reason and "invalid api key" in step.reason
    walk(State.SENDING, step.path)


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        (10001, "parameter-error"),
        (110007, "order-refused"),
        (110001, "order-not-exists"),
        (110008, "order-finished"),
    ],
)
def test_order_rejected_is_final_without_alert(code: int, rule: str) -> None:
    step = decide.judge_order_send(placement(VO.REJECTED, code, rule, "ab not enough"))
    assert step.path == (State.REJECTED,)
    assert step.alert is None
    assert not (step.retry or step.lookup or step.halt)
    assert f"retCode {code}" in step.reason and rule in step.reason
    assert "ab not enough" in step.reason
    walk(State.SENDING, step.path)


def test_order_rejected_with_an_unknown_code_alerts() -> None:
    step = decide.judge_order_send(placement(VO.REJECTED, 987654, "unrecognised", "brand new"))
    assert step.path == (State.REJECTED,)
    assert step.alert is not None
    assert "987654" in step.alert and "brand new" in step.alert
    assert "retCode 987654" in step.reason


def test_every_order_outcome_is_covered_and_legal_from_sending() -> None:
    for outcome in VenueOutcome:
        step = decide.judge_order_send(placement(outcome, 1, "r"))
        walk(State.SENDING, step.path)
        # Exactly one of: moved, or waiting on a lookup.
        assert bool(step.path) != step.lookup, outcome


# -- judge_cancel_send -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "path", "retry"),
    [
        (placement(VO.PLACED, 0, "ok"), (State.SENT,), False),
        (placement(VO.REJECTED, 110008, "order-finished"), (State.SENT,), False),
        (placement(VO.REJECTED, 110010, "order-finished"), (State.SENT,), False),
        (placement(VO.REJECTED, 110001, "order-not-exists"), (State.REJECTED,), False),
        (placement(VO.REJECTED, 10001, "parameter-error"), (State.REJECTED,), False),
        (placement(VO.ALREADY_PLACED, 110072, "duplicate-link-id"), (State.REJECTED,), False),
        (placement(VO.UNKNOWN, None, "lost"), (State.QUEUED,), True),
        (placement(VO.LATER, 10000, "server-timeout"), (State.QUEUED,), True),
        (placement(VO.TRANSPORT, None, "connect"), (State.QUEUED,), True),
        (placement(VO.RATE_LIMITED, 10006, "rate-limit"), (State.QUEUED,), True),
        (placement(VO.RETRY_RESYNC, 10002, "timestamp-window"), (State.QUEUED,), True),
        (placement(VO.AUTH_STOP, 10005, "auth"), (State.QUEUED,), False),
    ],
)
def test_cancel_answers(answer: Placement, path: tuple[State, ...], retry: bool) -> None:
    step = decide.judge_cancel_send(answer)
    assert step.path == path
    assert step.retry is retry
    assert not step.lookup  # a cancel is safe to repeat: it never waits on a lookup
    walk(State.SENDING, step.path)
    if answer.ret_code not in (None, 0):
        assert f"retCode {answer.ret_code}" in step.reason


def test_cancel_unknown_is_retried_without_halting_the_pass() -> None:
    step = decide.judge_cancel_send(placement(VO.UNKNOWN, None, "lost", "read timed out"))
    assert step.path == (State.QUEUED,) and step.retry and not step.halt
    assert "read timed out" in step.reason


def test_cancel_auth_stop_halts() -> None:
    step = decide.judge_cancel_send(placement(VO.AUTH_STOP, 10005, "auth"))
    assert step.halt and not step.retry


def test_every_cancel_outcome_is_legal_from_sending() -> None:
    for outcome in VenueOutcome:
        for rule in ("order-finished", "order-not-exists", "x"):
            step = decide.judge_cancel_send(placement(outcome, 1, rule))
            assert step.path, (outcome, rule)
            walk(State.SENDING, step.path)


# -- judge_order_row -------------------------------------------------------------------

SOURCES = (State.SENDING, State.SENT, State.NEEDS_OPERATOR)


def row(status: str | None, **more: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"orderLinkId": LINK, "orderId": "42", **more}
    if status is not None:
        out["orderStatus"] = status
    return out


@pytest.mark.parametrize("src", SOURCES)
@pytest.mark.parametrize("status", sorted(decide.OPEN_STATUSES))
def test_open_row_means_sent(src: State, status: str) -> None:
    step = decide.judge_order_row(src, row(status))
    assert walk(src, step.path) is State.SENT
    assert step.path == (() if src is State.SENT else (State.SENT,))
    assert status in step.reason and step.alert is None


@pytest.mark.parametrize("src", SOURCES)
@pytest.mark.parametrize("status", sorted(decide.DONE_STATUSES))
def test_done_row_means_confirmed(src: State, status: str) -> None:
    step = decide.judge_order_row(src, row(status, cumExecQty="0.004"))
    assert walk(src, step.path) is State.CONFIRMED
    expected = (State.CONFIRMED,) if src is State.SENT else (State.SENT, State.CONFIRMED)
    assert step.path == expected
    assert status in step.reason and "0.004" in step.reason
    assert step.alert is None


@pytest.mark.parametrize("src", SOURCES)
@pytest.mark.parametrize("status", sorted(decide.REJECTED_STATUSES))
def test_rejected_row_means_rejected(src: State, status: str) -> None:
    step = decide.judge_order_row(src, row(status, rejectReason="EC_NoEnoughBalance"))
    assert walk(src, step.path) is State.REJECTED
    assert step.path == (State.REJECTED,)
    assert "EC_NoEnoughBalance" in step.reason


def test_status_sets_do_not_overlap() -> None:
    sets = (decide.OPEN_STATUSES, decide.DONE_STATUSES, decide.REJECTED_STATUSES)
    assert sum(len(s) for s in sets) == len(set().union(*sets))


@pytest.mark.parametrize("src", SOURCES)
@pytest.mark.parametrize("status", ["Mystery", "", "filled", None])
def test_unknown_status_moves_nothing_and_alerts(src: State, status: str | None) -> None:
    step = decide.judge_order_row(src, row(status))
    assert step.path == ()
    assert step.alert is not None and repr(status or "") in step.alert


# -- judge_missing ---------------------------------------------------------------------

LIMIT = WINDOW + decide.LOOKUP_GRACE_MS


@pytest.mark.parametrize(
    ("waited", "path"),
    [
        (0, ()),
        (WINDOW, ()),
        (LIMIT - 1, ()),
        (LIMIT, ()),  # exactly at the boundary: it may still be processed
        (LIMIT + 1, (State.QUEUED,)),  # one ms past: it can no longer be
        (10 * LIMIT, (State.QUEUED,)),
    ],
)
def test_missing_sending_order_boundary(waited: int, path: tuple[State, ...]) -> None:
    step = decide.judge_missing(State.SENDING, NOW - waited, NOW, WINDOW)
    assert step.path == path
    walk(State.SENDING, step.path)
    assert not step.retry  # resent as soon as due, under the same orderLinkId
    if path:
        assert str(waited) in step.reason and "orderLinkId" in step.reason


@pytest.mark.parametrize("src", [State.SENT, State.NEEDS_OPERATOR])
@pytest.mark.parametrize("waited", [0, LIMIT + 1, 10 * LIMIT])
def test_missing_from_a_listing_never_moves_a_sent_order(src: State, waited: int) -> None:
    step = decide.judge_missing(src, NOW - waited, NOW, WINDOW)
    assert step.path == () and step.alert is None


# -- judge_cancel_target ---------------------------------------------------------------

FINAL_STATUSES = sorted(decide.DONE_STATUSES | decide.REJECTED_STATUSES)


@pytest.mark.parametrize("status", FINAL_STATUSES)
@pytest.mark.parametrize("target", [State.SENT, State.SENDING, State.NEEDS_OPERATOR])
def test_cancel_done_when_the_venue_shows_the_order_final(target: State, status: str) -> None:
    step = decide.judge_cancel_target(target, status)
    assert step.path == (State.CONFIRMED,) and status in step.reason
    walk(State.SENT, step.path)


@pytest.mark.parametrize(
    "target", [State.CONFIRMED, State.REJECTED, State.CANCELLED, State.EXPIRED]
)
@pytest.mark.parametrize("status", [None, "New"])
def test_cancel_done_when_the_queue_has_the_order_final(target: State, status: str | None) -> None:
    step = decide.judge_cancel_target(target, status)
    assert step.path == (State.CONFIRMED,) and str(target) in step.reason
    walk(State.SENT, step.path)


@pytest.mark.parametrize("target", [*sorted(TERMINAL), State.REPLACED])
def test_cancel_done_for_every_final_order_state(target: State) -> None:
    assert decide.judge_cancel_target(target, None).path == (State.CONFIRMED,)


@pytest.mark.parametrize("target", [State.SENT, State.SENDING, State.NEEDS_OPERATOR])
@pytest.mark.parametrize("status", [None, *sorted(decide.OPEN_STATUSES), "Mystery"])
def test_cancel_waits_while_the_order_may_still_work(target: State, status: str | None) -> None:
    step = decide.judge_cancel_target(target, status)
    assert step.path == () and step.alert is None


# -- cancel_before_send ----------------------------------------------------------------

BEFORE_SEND: dict[State, tuple[State, ...] | None] = {
    State.QUEUED: (State.CANCELLED,),
    State.SENDING: (),
    State.SENT: None,
    State.NEEDS_OPERATOR: None,
    State.CONFIRMED: (State.CANCELLED,),
    State.EXPIRED: (State.CANCELLED,),
    State.CANCELLED: (State.CANCELLED,),
    State.REJECTED: (State.CANCELLED,),
    State.REPLACED: (State.CANCELLED,),
    State.QUARANTINED: (State.CANCELLED,),
}


def test_before_send_table_covers_every_state() -> None:
    assert set(BEFORE_SEND) == set(State)


@pytest.mark.parametrize("target", list(State))
def test_cancel_before_send(target: State) -> None:
    step = decide.cancel_before_send(target)
    expected = BEFORE_SEND[target]
    if expected is None:
        assert step is None  # the order may be working: send the cancel
        return
    assert step is not None and step.path == expected
    walk(State.QUEUED, step.path)  # the cancel item is queued when this is asked
    if target not in (State.QUEUED, State.SENDING):
        assert str(target) in step.reason


# -- fill_of ---------------------------------------------------------------------------

GOOD_FILL: dict[str, Any] = {
    "execId": "e-1",
    "orderLinkId": LINK,
    "orderId": "42",
    "symbol": "BTCUSDT",
    "side": "Buy",
    "execQty": "0.004",
    "execPrice": "60000",
    "execTime": "1700000000123",
}
REQUIRED = ("execId", "orderId", "symbol", "side", "execQty", "execPrice", "execTime")
STRINGS = tuple(f for f in REQUIRED if f != "execTime")


def test_fill_of_a_good_row() -> None:
    fill = decide.fill_of(GOOD_FILL, {LINK: "item-1"})
    assert fill == Fill(
        exec_id="e-1",
        link_id=LINK,
        order_id="42",
        symbol="BTCUSDT",
        side="Buy",
        exec_qty="0.004",
        exec_price="60000",
        exec_time_ms=1_700_000_000_123,
        item_id="item-1",
    )


@pytest.mark.parametrize("link", [None, "", "al-somebody-else"])
def test_fill_of_a_row_not_placed_by_airlock(link: str | None) -> None:
    raw = dict(GOOD_FILL)
    if link is None:
        del raw["orderLinkId"]
    else:
        raw["orderLinkId"] = link
    fill = decide.fill_of(raw, {LINK: "item-1"})
    assert fill is not None and fill.item_id is None
    assert fill.link_id == (link or "")


def test_fill_of_an_integer_exec_time() -> None:
    fill = decide.fill_of(dict(GOOD_FILL, execTime=1_700_000_000_123), {})
    assert fill is not None and fill.exec_time_ms == 1_700_000_000_123


@pytest.mark.parametrize("field", REQUIRED)
def test_fill_of_a_row_missing_a_field(field: str) -> None:
    raw = {k: v for k, v in GOOD_FILL.items() if k != field}
    assert decide.fill_of(raw, {LINK: "item-1"}) is None


@pytest.mark.parametrize(
    "garbage",
    [
        {"execId": ""},
        {"execTime": "soon"},
        {"execTime": ""},
        {"execTime": None},
        {"execTime": "1.5"},
        {"execTime": []},
        {"execTime": {}},
    ],
)
def test_fill_of_a_row_with_garbage(garbage: dict[str, Any]) -> None:
    assert decide.fill_of(dict(GOOD_FILL, **garbage), {LINK: "item-1"}) is None


@pytest.mark.parametrize("not_a_row", [None, [], "row", 7])
def test_fill_of_something_that_is_not_a_row(not_a_row: Any) -> None:
    assert decide.fill_of(not_a_row, {}) is None


@pytest.mark.parametrize("field", STRINGS)
def test_fill_of_a_row_with_a_null_field(field: str) -> None:
    assert decide.fill_of(dict(GOOD_FILL, **{field: None}), {LINK: "item-1"}) is None


# -- fills_window ----------------------------------------------------------------------

OVERLAP, SPAN = decide.FILL_OVERLAP_MS, decide.MAX_SPAN_MS


@pytest.mark.parametrize(
    ("latest", "oldest_sent", "start"),
    [
        (NOW - 10_000, NOW - 3_600_000, NOW - 10_000 - OVERLAP),  # latest fill wins
        (NOW - 3_600_000, NOW - 10_000, NOW - 3_600_000 - OVERLAP),  # even when older
        (None, NOW - 3_600_000, NOW - 3_600_000 - OVERLAP),
        (None, None, NOW - OVERLAP),
        (NOW - 30 * 86_400_000, None, NOW - SPAN + OVERLAP),  # capped at 7 days
        (None, NOW - 30 * 86_400_000, NOW - SPAN + OVERLAP),
        (NOW - SPAN, NOW, NOW - SPAN + OVERLAP),
    ],
)
def test_fills_window(latest: int | None, oldest_sent: int | None, start: int) -> None:
    got = decide.fills_window(NOW, latest, oldest_sent)
    assert got == start
    assert NOW - got <= SPAN


# -- newest_rows -----------------------------------------------------------------------


def order_row(link: Any, updated: Any, status: str = "New") -> dict[str, Any]:
    return {"orderLinkId": link, "updatedTime": updated, "orderStatus": status}


def test_newest_rows_later_update_wins_in_either_order() -> None:
    older, newer = order_row("a", "1000", "New"), order_row("a", "2000", "Filled")
    assert decide.newest_rows([older], [newer]) == {"a": newer}
    assert decide.newest_rows([newer], [older]) == {"a": newer}
    assert decide.newest_rows([older, newer]) == {"a": newer}


def test_newest_rows_on_a_tie_the_later_listing_wins() -> None:
    first, second = order_row("a", "1000", "New"), order_row("a", "1000", "Filled")
    assert decide.newest_rows([first], [second]) == {"a": second}


def test_newest_rows_keeps_every_link() -> None:
    a, b = order_row("a", "1"), order_row("b", "2")
    assert decide.newest_rows([a], [b], []) == {"a": a, "b": b}
    assert decide.newest_rows() == {}


@pytest.mark.parametrize("link", [None, "", 7, ["a"]])
def test_newest_rows_ignores_rows_without_an_order_link_id(link: Any) -> None:
    keep = order_row("a", "1")
    assert decide.newest_rows([order_row(link, "9"), keep]) == {"a": keep}
    assert decide.newest_rows([{"updatedTime": "9"}]) == {}


@pytest.mark.parametrize("garbage", ["soon", None, "", "1.5", [], {}])
def test_newest_rows_garbage_updated_time_counts_as_zero(garbage: Any) -> None:
    bad, good = order_row("a", garbage, "Filled"), order_row("a", "1", "New")
    assert decide.newest_rows([bad], [good]) == {"a": good}  # 1 > 0
    assert decide.newest_rows([good], [bad]) == {"a": good}
    zero = order_row("a", "0", "New")
    assert decide.newest_rows([zero], [bad]) == {"a": bad}  # 0 == 0: the later one


# -- seen_of ---------------------------------------------------------------------------


def test_seen_of_keeps_the_venue_fields() -> None:
    raw = {"orderId": "42", "orderStatus": "PartiallyFilled", "cumExecQty": "0.1", "avgPrice": 7}
    assert decide.seen_of(raw) == VenueSeen("42", "PartiallyFilled", "0.1", "7")


def test_seen_of_drops_empty_and_odd_fields() -> None:
    raw = {"orderId": "", "orderStatus": None, "cumExecQty": 0.1, "avgPrice": {}}
    assert decide.seen_of(raw) == VenueSeen()


def test_step_defaults_do_nothing() -> None:
    step = Step()
    assert step.path == () and not (step.retry or step.lookup or step.halt)
    assert step.alert is None


def test_transitions_table_knows_every_state() -> None:
    assert set(TRANSITIONS) == set(State)
