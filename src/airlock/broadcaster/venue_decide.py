"""What a Bybit answer, or the venue's view of an order, means for a queued item. Pure.

The rules, from ``design/facts-bybit-v5.md`` and the anchors' failures:

- An order leaves under exactly one orderLinkId, fixed at enqueue; the venue refuses a
  second order with it (110072). So "did it arrive?" is always answered by looking the
  orderLinkId up, and a resend (after the lookup found nothing) can never place a second
  order: at worst it earns 110072, which is again a lookup.
- An answer that proves nothing happened (connection refused, 10006, 10002, 110079,
  HTTP 403/429) puts the item back in the queue; nothing is lost and nothing is doubled.
- An answer that may hide a placed order (timeout, lost response, 10000/10016, 5xx) is
  never "failed": the item stays ``sending`` until the lookup says.
- A sending order the venue does not know, once its request can no longer be processed
  (``recv_window`` plus a grace for "accepted but not yet visible" has passed since it
  left), goes back to the queue and is sent again under the same orderLinkId.
- Absence from a listing proves nothing (history lags; an order may move from open to
  closed between two queries): an item changes state only on a row that names it.
- A cancel is safe to repeat (the venue answers 110008/110010 for a finished order), so
  every unclear cancel answer is simply a retry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airlock.queue.states import TERMINAL, State
from airlock.queue.venue import Fill, VenueSeen
from airlock.relays.bybit import Placement
from airlock.relays.bybit_codes import VenueOutcome

OPEN_STATUSES = frozenset({"Created", "New", "PartiallyFilled", "Untriggered", "Active"})
"""Statuses of an order still working on the venue."""
DONE_STATUSES = frozenset({"Filled", "Cancelled", "PartiallyFilledCanceled", "Deactivated"})
"""Final statuses of an order that was placed: the item is confirmed, the status kept."""
REJECTED_STATUSES = frozenset({"Rejected"})
# The cancelType of an order the venue's Disconnect Cancel Protection cancelled: Bybit's
# enum page lists "CancelByDCP" ("cancelled by DCP triggering"); compared without case.
DCP_CANCEL_TYPES = frozenset({"cancelbydcp"})
LOOKUP_GRACE_MS = 5_000
"""Beyond ``recv_window``: how long an accepted order may stay invisible to queries."""
FILL_OVERLAP_MS = 60_000
"""Fills are read again from this long before the newest one seen (late arrivals)."""
MAX_SPAN_MS = 7 * 24 * 3600 * 1000
"""Bybit answers history and execution queries over at most 7 days."""


@dataclass(frozen=True)
class Step:
    """What to do with one item: the states it passes through (maybe none) and why.

    ``retry``: back in the queue, wait before the next send. ``lookup``: ask the venue
    for the orderLinkId before deciding. ``halt``: stop this dispatch pass (the link or
    the account cannot take more now). ``alert``: a human should look (why).
    """

    path: tuple[State, ...] = ()
    reason: str = ""
    retry: bool = False
    lookup: bool = False
    halt: bool = False
    alert: str | None = None


def _path(src: State, *targets: State) -> tuple[State, ...]:
    """The moves from ``src`` through ``targets``, skipping the state it is already in."""
    out: list[State] = []
    current = src
    for target in targets:
        if target is not current:
            out.append(target)
            current = target
    return tuple(out)


def judge_order_send(placement: Placement) -> Step:
    """An order's create answer (the item is ``sending``)."""
    outcome, said = placement.outcome, f"{placement.rule}: {placement.ret_msg}"
    code = "" if placement.ret_code is None else f" (retCode {placement.ret_code})"
    if outcome is VenueOutcome.PLACED:
        return Step((State.SENT,), f"placed: orderId {placement.order_id}")
    if outcome in (VenueOutcome.ALREADY_PLACED, VenueOutcome.UNKNOWN):
        return Step(reason=f"{outcome}{code}: {said}; looking the orderLinkId up", lookup=True)
    if outcome is VenueOutcome.REJECTED:
        alert = None
        if placement.rule == "unrecognised":
            alert = f"Bybit answered an unknown retCode {placement.ret_code}: {placement.ret_msg}"
        return Step((State.REJECTED,), f"rejected by the venue{code}: {said}", alert=alert)
    return _not_processed(outcome, said, code)


def judge_cancel_send(placement: Placement) -> Step:
    """A cancel's answer (the cancel item is ``sending``)."""
    outcome, said = placement.outcome, f"{placement.rule}: {placement.ret_msg}"
    code = "" if placement.ret_code is None else f" (retCode {placement.ret_code})"
    if outcome is VenueOutcome.PLACED:
        return Step((State.SENT,), "cancel accepted by the venue")
    if outcome is VenueOutcome.REJECTED and placement.rule == "order-finished":
        return Step((State.SENT,), f"the order is already final{code}: {placement.ret_msg}")
    if outcome in (VenueOutcome.REJECTED, VenueOutcome.ALREADY_PLACED):
        return Step((State.REJECTED,), f"cancel rejected by the venue{code}: {said}")
    if outcome is VenueOutcome.UNKNOWN:
        return Step((State.QUEUED,), f"cancel answer lost{code}: {said}; sent again", retry=True)
    return _not_processed(outcome, said, code)


def _not_processed(outcome: VenueOutcome, said: str, code: str) -> Step:
    """Answers proving the request was not processed: queue it again, stop the pass."""
    if outcome is VenueOutcome.AUTH_STOP:
        return Step((State.QUEUED,), f"account stopped{code}: {said}", halt=True)
    what = {
        VenueOutcome.TRANSPORT: "venue unreachable, nothing sent",
        VenueOutcome.RATE_LIMITED: "rate limited, not processed",
        VenueOutcome.RETRY_RESYNC: "timestamp refused after a clock re-sync, not processed",
        VenueOutcome.LATER: "venue asked to come back later, not processed",
    }.get(outcome, f"{outcome}, not processed")
    return Step((State.QUEUED,), f"{what}{code}: {said}", retry=True, halt=True)


def seen_of(row: Mapping[str, Any]) -> VenueSeen:
    """The venue fields airlock keeps of an order row (strings, as Bybit gives them)."""

    def text(key: str) -> str | None:
        value = row.get(key)
        return str(value) if isinstance(value, str | int) and str(value) != "" else None

    return VenueSeen(
        order_id=text("orderId"),
        status=text("orderStatus"),
        cum_qty=text("cumExecQty"),
        avg_price=text("avgPrice"),
    )


def judge_order_row(src: State, row: Mapping[str, Any]) -> Step:
    """What the venue's row for an order means for its item (in ``src``)."""
    status = str(row.get("orderStatus", ""))
    if status in OPEN_STATUSES:
        return Step(_path(src, State.SENT), f"on the venue: {status}")
    if status in DONE_STATUSES:
        filled = row.get("cumExecQty", "?")
        if by_dcp(row):
            why = "cancelled by the venue's Disconnect Cancel Protection"
            reason = f"{why} (cancelType {row.get('cancelType')}) while no stream of this "
            reason += f"account was connected, filled {filled}"
            return Step(_path(src, State.SENT, State.CONFIRMED), reason, alert=f"order {why}")
        reason = f"final on the venue: {status}, filled {filled}"
        return Step(_path(src, State.SENT, State.CONFIRMED), reason)
    if status in REJECTED_STATUSES:
        return Step((State.REJECTED,), f"rejected by the venue: {row.get('rejectReason', '')}")
    return Step(reason=f"unknown order status {status!r}", alert=f"unknown order status {status!r}")


def by_dcp(row: Mapping[str, Any]) -> bool:
    """The venue cancelled the order because every stream of the account was gone longer
    than the DCP window (``[bybit] dcp_window_s``)."""
    return str(row.get("cancelType", "")).lower() in DCP_CANCEL_TYPES


def judge_missing(src: State, sent_ms: int | None, now_ms: int, recv_window_ms: int) -> Step:
    """A ``sending`` order the venue does not (yet) know."""
    if src is not State.SENDING:
        return Step(reason="not in this listing; looked at again next pass")
    waited = now_ms - (sent_ms or 0)
    if waited <= recv_window_ms + LOOKUP_GRACE_MS:
        return Step(reason="not visible on the venue yet; looked up again next pass")
    return Step(
        (State.QUEUED,),
        f"unknown to the venue {waited} ms after sending, past recv_window: "
        "sent again under the same orderLinkId",
    )


def judge_cancel_target(target_state: State, target_status: str | None) -> Step:
    """A sent cancel is done once its order is final (on the venue or in the queue)."""
    if target_status in DONE_STATUSES or target_status in REJECTED_STATUSES:
        return Step((State.CONFIRMED,), f"the order is final on the venue: {target_status}")
    if target_state in TERMINAL or target_state in (State.CONFIRMED, State.REPLACED):
        return Step((State.CONFIRMED,), f"the order is {target_state}")
    return Step(reason="waiting for the venue to show the order cancelled")


def cancel_before_send(target_state: State) -> Step | None:
    """A queued cancel whose order is not (or no longer) on the venue needs no request.

    None: send it. A Step with no path: wait (the order's own send is unresolved)."""
    if target_state is State.QUEUED:
        return Step((State.CANCELLED,), "the order had not left: cancelled locally instead")
    if target_state is State.SENDING:
        return Step(reason="the order's send is unresolved; the cancel waits for it")
    if target_state in (State.SENT, State.NEEDS_OPERATOR):
        return None
    return Step((State.CANCELLED,), f"the order is already {target_state}: nothing to cancel")


_MAX_MS = (1 << 63) - 1  # SQLite INTEGER
_FILL_TEXT = ("execId", "orderId", "symbol", "side", "execQty", "execPrice")


def fill_of(row: Any, item_ids: Mapping[str, str]) -> Fill | None:
    """A fill from an execution row; None for a row without the fields a fill needs
    (each a non-empty string, execTime a whole number of milliseconds)."""
    if not isinstance(row, Mapping):
        return None
    values = [v for key in _FILL_TEXT if isinstance(v := row.get(key), str) and v]
    if len(values) != len(_FILL_TEXT):
        return None
    try:
        exec_time = int(str(row.get("execTime")))
    except ValueError:
        return None
    if not 0 <= exec_time <= _MAX_MS:  # the fills table's INTEGER could not store it
        return None
    link = row.get("orderLinkId")
    link = link if isinstance(link, str) else ""
    exec_id, order_id, symbol, side, qty, price = values
    return Fill(
        exec_id=exec_id,
        link_id=link,
        order_id=order_id,
        symbol=symbol,
        side=side,
        exec_qty=qty,
        exec_price=price,
        exec_time_ms=exec_time,
        item_id=item_ids.get(link),
    )


def fills_window(now_ms: int, latest_fill_ms: int | None, oldest_sent_ms: int | None) -> int:
    """Where the next executions read starts: a little before the newest fill already
    seen (the venue's execTime only grows), else before the oldest order ever sent;
    never more than 7 days back."""
    anchor = latest_fill_ms if latest_fill_ms is not None else oldest_sent_ms
    start = (now_ms if anchor is None else anchor) - FILL_OVERLAP_MS
    return max(start, now_ms - MAX_SPAN_MS + FILL_OVERLAP_MS)


def newest_rows(*listings: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Order rows by orderLinkId; when one order appears twice (open in one query, closed
    in the next), the row updated last wins."""
    found: dict[str, dict[str, Any]] = {}
    for rows in listings:
        for row in rows:
            link = row.get("orderLinkId")
            if not isinstance(link, str) or not link:
                continue
            old = found.get(link)
            if old is None or _updated(row) >= _updated(old):
                found[link] = row
    return found


def _updated(row: Mapping[str, Any]) -> int:
    try:
        return int(row.get("updatedTime") or 0)
    except (TypeError, ValueError, OverflowError):  # OverflowError: JSON's 1e999 is inf
        return 0
