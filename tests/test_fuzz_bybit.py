"""Fuzz: what Bybit answers. The V5 envelope, result.list, pagination and the server
time (BybitClient), the retCode and HTTP tables, and the broadcaster's venue row readers.

Contract: reads return rows or raise BybitError; the envelope is a reply or a lost
answer (_Lost); the tables always give a Verdict; the row readers never raise (fill_of
gives None for a row it cannot use, and any Fill it gives fits the fills table).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from tests.kits.fuzz import NASTY_BODIES, fuzz, json_scalars, json_values, no_hang

from airlock.broadcaster.venue_decide import (
    Step,
    fill_of,
    judge_order_row,
    newest_rows,
    seen_of,
)
from airlock.queue.states import State
from airlock.queue.venue import Fill, VenueSeen
from airlock.relays.bybit import (
    EXECUTIONS,
    HISTORY,
    REALTIME,
    BybitClient,
    BybitError,
    _Lost,
    _Reply,
    _rows,
)
from airlock.relays.bybit_codes import CREATE, RULES, VenueOutcome, Verdict, classify, classify_http

SQLITE_INT = (-(2**63), 2**63 - 1)
ROW_KEYS = [
    "orderId",
    "orderLinkId",
    "orderStatus",
    "cumExecQty",
    "avgPrice",
    "updatedTime",
    "rejectReason",
    "execId",
    "symbol",
    "side",
    "execQty",
    "execPrice",
    "execTime",
]
row_values = st.one_of(
    json_values,
    st.sampled_from(["", "1", "0.5", "New", "Filled", "Rejected", "Cancelled", "Buy", "al-x"]),
    st.sampled_from(["1700000000000", "-1", " 12 ", "1_000", "\uff11", "9" * 30, "1e3", "1.5"]),
    st.floats(),  # JSON's 1e999 arrives as inf
    st.integers(-(10**30), 10**30),
)
rows = st.dictionaries(st.sampled_from(ROW_KEYS) | st.text(max_size=5), row_values, max_size=8)
complete_fill_rows = st.fixed_dictionaries(
    {k: st.text(min_size=1, max_size=5) for k in ("execId", "orderId", "symbol", "side")}
    | {"execQty": st.just("1"), "execPrice": st.just("2"), "execTime": row_values},
    optional={"orderLinkId": row_values},
)


def client() -> BybitClient:
    return BybitClient("http://127.0.0.1:9", "KEY", lambda payload: "00" * 32, "hmac")


# ----------------------------------------------------------------------------- envelope


envelopes = st.fixed_dictionaries(
    {},
    optional={
        "retCode": st.integers(-5, 200_000) | json_scalars,
        "retMsg": st.text(max_size=20) | json_scalars,
        "result": json_values
        | st.dictionaries(st.sampled_from(["list", "nextPageCursor"]), json_values),
        "time": json_scalars,
    },
)
envelope_bodies = st.one_of(
    envelopes.map(lambda e: json.dumps(e).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from(NASTY_BODIES),
    st.binary(max_size=100),
)


@fuzz(500)
@given(raw=envelope_bodies, path=st.sampled_from([CREATE, REALTIME, HISTORY, EXECUTIONS]))
def test_envelope_reply_or_lost(raw, path):
    with no_hang():
        try:
            reply = client()._envelope(path, f"GET {path}", raw, {})
        except _Lost as exc:
            assert exc.verdict.message
            assert exc.verdict.outcome in (VenueOutcome.UNKNOWN, VenueOutcome.LATER)
            return
    assert isinstance(reply, _Reply)
    assert type(reply.ret_code) is int and isinstance(reply.ret_msg, str)


@fuzz(300)
@given(result=st.dictionaries(st.sampled_from(["list", "x"]), json_values))
def test_rows_list_or_bybit_error(result):
    try:
        assert isinstance(_rows(REALTIME, result), list)
    except BybitError as exc:
        assert str(exc)


# ----------------------------------------------------------------------------- pagination

cursors = st.one_of(
    st.none(),
    st.sampled_from(["", "abc", "a%3Ab", "%zz", "a b", "\ud800", "\udfff", "x" * 5000]),
    st.text(max_size=10),
    json_scalars,
    json_values,
)
pages = st.fixed_dictionaries(
    {},
    optional={
        "list": st.lists(rows | json_scalars, max_size=3) | json_values,
        "nextPageCursor": cursors,
    },
)


@fuzz(300, deadline_ms=None)
@given(
    script=st.lists(pages, min_size=1, max_size=5),
    read=st.sampled_from(["open_orders", "history", "executions", "order_by_link_id"]),
)
def test_paged_reads_rows_or_bybit_error(script, read):
    """The venue's pages (as the envelope parser would return them) fed to the readers:
    rows, or a BybitError; a venue that never stops is cut off, not followed forever."""
    venue = client()
    queue = list(script)

    async def fake_read(method: str, path: str, params: dict[str, str], **_: Any) -> Any:
        from airlock.relays.bybit import _query

        _query(params)  # what _read_reply does with the params before anything is sent
        page = queue.pop(0) if len(queue) > 1 else queue[0]  # the last page repeats
        return page

    venue._read = fake_read  # type: ignore[method-assign]

    async def run() -> Any:
        if read == "order_by_link_id":
            return await venue.order_by_link_id("linear", "al-x")
        return await getattr(venue, read)("linear")

    with no_hang():
        try:
            found = asyncio.run(run())
        except BybitError as exc:
            assert str(exc)
            return
    if read != "order_by_link_id":
        assert all(isinstance(row, dict) for row in found)


time_results = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "timeSecond": json_scalars | st.floats() | st.sampled_from(["1700000000", "x"]),
            "timeNano": json_scalars | st.floats() | st.sampled_from(["1700000000000000000"]),
        },
    ),
)


@fuzz(300)
@given(result=time_results)
def test_sync_time_offset_or_bybit_error(result):
    venue = client()

    async def fake_reply(*args: Any, **kwargs: Any) -> _Reply:
        return _Reply(0, "OK", result, {})

    venue._read_reply = fake_reply  # type: ignore[method-assign]
    with no_hang():
        try:
            assert isinstance(asyncio.run(venue.sync_time()), int)
        except BybitError as exc:
            assert str(exc)


# ----------------------------------------------------------------------------- tables

KNOWN_CODES = sorted({code for rule in RULES for code in rule.codes})


@fuzz(500)
@given(
    code=st.sampled_from(KNOWN_CODES) | st.integers() | st.integers(-(10**4000), 10**4000),
    message=st.text(),
    endpoint=st.sampled_from([CREATE, "/v5/order/cancel", REALTIME]) | st.text(max_size=20),
)
def test_classify_always_gives_a_verdict(code, message, endpoint):
    verdict = classify(code, message, endpoint=endpoint)
    assert isinstance(verdict, Verdict) and verdict.outcome in VenueOutcome


@fuzz(300)
@given(
    status=st.integers(-1000, 1000) | st.integers(),
    text=st.text(),
    endpoint=st.sampled_from([CREATE, REALTIME]) | st.text(max_size=20),
)
def test_classify_http_always_gives_a_verdict(status, text, endpoint):
    verdict = classify_http(status, text, endpoint=endpoint)
    assert isinstance(verdict, Verdict) and verdict.outcome in VenueOutcome


# ----------------------------------------------------------------------------- row readers


@fuzz(500)
@given(row=rows)
def test_seen_of_never_raises(row):
    seen = seen_of(row)
    assert isinstance(seen, VenueSeen)
    for value in seen.as_json().values():
        assert value is None or (isinstance(value, str) and value)


@fuzz(500)
@given(
    row=rows | complete_fill_rows | json_values,
    links=st.dictionaries(st.text(max_size=5), st.text(max_size=5)),
)
def test_fill_of_fill_or_none(row, links):
    with no_hang():
        fill = fill_of(row, links)
    if fill is not None:
        assert isinstance(fill, Fill)
        low, high = SQLITE_INT
        assert low <= fill.exec_time_ms <= high, "the fills table cannot store this execTime"


@fuzz(500)
@given(src=st.sampled_from(list(State)), row=rows)
def test_judge_order_row_always_gives_a_step(src, row):
    assert isinstance(judge_order_row(src, row), Step)


@fuzz(500)
@given(
    listings=st.lists(
        st.lists(
            rows
            | st.fixed_dictionaries(
                {"orderLinkId": st.sampled_from(["a", "b"]), "updatedTime": row_values}
            ),
            max_size=4,
        ),
        max_size=3,
    )
)
def test_newest_rows_never_raises(listings):
    with no_hang():
        found = newest_rows(*listings)
    assert all(isinstance(k, str) and k for k in found)
