"""Canonical JSON: exact bytes for each value, refusals, and the strict parser."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airlock.encoding.canonical import MAX_SAFE_INTEGER, CanonicalError, canonical, parse_canonical

# ----------------------------------------------------------------------- exact bytes

EXACT: list[tuple[Any, bytes]] = [
    # scalars
    (None, b"null"),
    (True, b"true"),
    (False, b"false"),
    (0, b"0"),
    (7, b"7"),
    (-5, b"-5"),
    (MAX_SAFE_INTEGER, b"9007199254740991"),
    (-MAX_SAFE_INTEGER, b"-9007199254740991"),
    ("", b'""'),
    ("plain", b'"plain"'),
    # empty containers
    ({}, b"{}"),
    ([], b"[]"),
    ([{}, []], b"[{},[]]"),
    # key order by code point, not by insertion and not case-folded
    ({"b": 1, "a": 2}, b'{"a":2,"b":1}'),
    ({"a": 1, "B": 2, "_": 3, "aa": 4, "A": 5}, b'{"A":5,"B":2,"_":3,"a":1,"aa":4}'),
    ({"9": 1, "10": 2, "": 3}, b'{"":3,"10":2,"9":1}'),
    ({"a b": 1, "a": 2, "a~": 3}, b'{"a":2,"a b":1,"a~":3}'),
    # nesting, with every level sorted
    (
        {"z": {"y": [1, {"b": None, "a": [True, False]}], "x": {}}, "a": []},
        b'{"a":[],"z":{"x":{},"y":[1,{"a":[true,false],"b":null}]}}',
    ),
    ((1, "two", (3,)), b'[1,"two",[3]]'),
    # non-ASCII is written as raw UTF-8, not escaped
    ("é", b'"\xc3\xa9"'),
    ("€", b'"\xe2\x82\xac"'),
    ("😀", b'"\xf0\x9f\x98\x80"'),
    ("日本", '"日本"'.encode()),
    ("\u2028\u2029", b'"\xe2\x80\xa8\xe2\x80\xa9"'),
    ("\u00a0", b'"\xc2\xa0"'),
    ("\x7f", b'"\x7f"'),
    ("\x80", b'"\xc2\x80"'),
    # control characters: short forms, others \u00xx with lower-case hex
    ("\n", b'"\\n"'),
    ("\r", b'"\\r"'),
    ("\t", b'"\\t"'),
    ("\b", b'"\\b"'),
    ("\f", b'"\\f"'),
    ("\u0000", b'"\\u0000"'),
    ("\u0001", b'"\\u0001"'),
    ("\u000b", b'"\\u000b"'),
    ("\u001b", b'"\\u001b"'),
    ("\u001f", b'"\\u001f"'),
    # the two characters that must be escaped; "/" is not
    ('"', b'"\\""'),
    ("\\", b'"\\\\"'),
    ("/", b'"/"'),
    ('a"b\\c\nd', b'"a\\"b\\\\c\\nd"'),
    # escapes inside keys and values alike
    ({"k\n": "v\u0001"}, b'{"k\\n":"v\\u0001"}'),
]


@pytest.mark.parametrize(("value", "expected"), EXACT)
def test_exact_bytes(value: Any, expected: bytes) -> None:
    assert canonical(value) == expected


@pytest.mark.parametrize(("value", "expected"), EXACT)
def test_exact_bytes_parse_back(value: Any, expected: bytes) -> None:
    # Tuples come back as lists; everything else as itself.
    assert parse_canonical(expected) == json.loads(json.dumps(value))


def test_all_control_characters() -> None:
    short = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
    for code in range(0x20):
        char = chr(code)
        escaped = short.get(char, f"\\u{code:04x}")
        assert canonical(char) == f'"{escaped}"'.encode()
        assert parse_canonical(f'"{escaped}"'.encode()) == char


# -------------------------------------------------------------------------- refusals

REFUSED: list[tuple[Any, str]] = [
    (1.0, "float"),
    (0.5, "float"),
    (float("nan"), "float"),
    (float("inf"), "float"),
    (-float("inf"), "float"),
    (Decimal("1"), "Decimal"),
    (2**53, "too large"),
    (-(2**53), "too large"),
    (10**30, "too large"),
    ({"é": 1}, "ASCII"),
    ({"a": {"ключ": 1}}, "ASCII"),
    ({1: 2}, "ASCII strings"),
    ({None: 1}, "ASCII strings"),
    ({True: 1}, "ASCII strings"),
    ({(1,): 1}, "ASCII strings"),
    (b"bytes", "bytes"),
    (bytearray(b"x"), "bytearray"),
    ("\ud800", "lone surrogate"),
    ("a\udfffb", "lone surrogate"),
    ({"a": "\udc00"}, "lone surrogate"),
    ({1, 2}, "set"),
    (frozenset(), "frozenset"),
    (object(), "object"),
    ([1, [2, 1.5]], "float"),
    ({"a": [0, {"b": 2**60}]}, "too large"),
]


@pytest.mark.parametrize(("value", "message"), REFUSED)
def test_refusals(value: Any, message: str) -> None:
    with pytest.raises(CanonicalError, match=message):
        canonical(value)


def test_refusal_names_the_path() -> None:
    with pytest.raises(CanonicalError, match=r"\$\.a\[1\]\.b"):
        canonical({"a": [0, {"b": 1.5}]})


def test_canonical_error_is_a_value_error() -> None:
    assert issubclass(CanonicalError, ValueError)


# ---------------------------------------------------------------------- strict parser

NOT_CANONICAL: list[tuple[bytes, str]] = [
    # whitespace anywhere outside strings
    (b'{"a": 1}', "canonical"),
    (b'{"a" :1}', "canonical"),
    (b"[1, 2]", "canonical"),
    (b" 1", "canonical"),
    (b"1 ", "canonical"),
    (b"1\n", "canonical"),
    (b"\t[]", "canonical"),
    (b"[\n]", "canonical"),
    # unsorted and duplicate keys
    (b'{"b":1,"a":2}', "canonical"),
    (b'{"a":{"d":1,"c":2}}', "canonical"),
    (b'{"a":1,"a":1}', "duplicate"),
    (b'{"a":1,"a":2}', "duplicate"),
    (b'[{"x":{"k":1,"k":1}}]', "duplicate"),
    # numbers
    (b"1.0", "floating point"),
    (b"1.5", "floating point"),
    (b"1e3", "floating point"),
    (b"-0.0", "floating point"),
    (b"NaN", "floating point"),
    (b"Infinity", "floating point"),
    (b"-Infinity", "floating point"),
    (b"[1,2.5]", "floating point"),
    (b"-0", "canonical"),
    (b"01", "JSON"),
    (b"+1", "JSON"),
    (b"9007199254740992", "too large"),
    (b"-9007199254740992", "too large"),
    # not UTF-8 (including an encoded surrogate and overlong forms)
    (b'"\xff"', "UTF-8"),
    (b'"\xc3"', "UTF-8"),
    (b'"\xed\xa0\x80"', "UTF-8"),
    (b'"\xc0\xaf"', "UTF-8"),
    (b'"\xe9"', "UTF-8"),
    # escapes that differ from the canonical spelling
    (b'"\\u0041"', "canonical"),
    (b'"\\/"', "canonical"),
    (b'"\\u000a"', "canonical"),
    (b'"\\u001F"', "canonical"),
    (b'"\\u00e9"', "canonical"),
    (b'"\\u2028"', "canonical"),
    (b'"\\ud83d\\ude00"', "canonical"),
    (b'"\\u0022"', "canonical"),
    (b'"\\u005c"', "canonical"),
    (b'{"\\u0061":1}', "canonical"),
    # lone surrogate escapes, non-ASCII keys
    (b'"\\ud800"', "surrogate"),
    (b'{"\xc3\xa9":1}', "ASCII"),
    # not JSON at all
    (b"", "JSON"),
    (b"\xef\xbb\xbf1", "JSON"),
    (b"[1,]", "JSON"),
    (b"{'a':1}", "JSON"),
    (b"[1][2]", "JSON"),
    (b'"raw\ncontrol"', "JSON"),
    (b"True", "JSON"),
]


@pytest.mark.parametrize(("data", "message"), NOT_CANONICAL)
def test_parse_canonical_refuses(data: bytes, message: str) -> None:
    with pytest.raises(CanonicalError, match=message):
        parse_canonical(data)


def test_parse_canonical_deep_nesting_is_a_canonical_error() -> None:
    depth = 100_000
    with pytest.raises(CanonicalError):
        parse_canonical(b"[" * depth + b"]" * depth)


# -------------------------------------------------------------------------- round trip

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER) | st.text(),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.text(st.characters(max_codepoint=0x7F), max_size=8), children, max_size=5
        )
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_round_trip(value: Any) -> None:
    data = canonical(value)
    assert parse_canonical(data) == value
    # One value, one byte string: re-encoding what was parsed gives the same bytes, and so
    # does a plain encoder with the same settings.
    assert canonical(parse_canonical(data)) == data
    assert data == json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_other_spellings_are_refused(value: Any) -> None:
    spaced = json.dumps(value, sort_keys=True, ensure_ascii=False, indent=1).encode("utf-8")
    if spaced != canonical(value):
        with pytest.raises(CanonicalError):
            parse_canonical(spaced)
    escaped = json.dumps(value, sort_keys=True, separators=(",", ":")).encode("ascii")
    if escaped != canonical(value):
        with pytest.raises(CanonicalError):
            parse_canonical(escaped)
