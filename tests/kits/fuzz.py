"""The fuzz tests' parts (tests/test_fuzz_*.py): time bounds and nasty inputs.

Every fuzz target asserts the same contract for a parser of outside input: it returns a
value or raises its own documented error, with a message; never another exception, never
a crash, never a hang. See docs/fuzzing.md.

Time bounds, so that ``make test`` stays fast:

- each target has a CI budget of examples (``fuzz(n)``); ``AIRLOCK_FUZZ_EXAMPLES=N``
  replaces every budget by N to fuzz longer locally;
- each example has a hypothesis deadline (slow inputs fail as a finding, not a timeout);
- :func:`no_hang` interrupts an example that runs longer than a hard bound, with an
  exception nothing under test catches (so a hang is reported, not waited on).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FUZZ_EXAMPLES_ENV = "AIRLOCK_FUZZ_EXAMPLES"
HANG_S = 10.0
"""Hard bound of one example: far above any honest parse, far below a CI timeout."""


def _examples(default: int) -> int:
    raw = os.environ.get(FUZZ_EXAMPLES_ENV, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RuntimeError(f"{FUZZ_EXAMPLES_ENV} must be a whole number, got {raw!r}") from None
    if value < 1:
        raise RuntimeError(f"{FUZZ_EXAMPLES_ENV} must be at least 1, got {value}")
    return value


def fuzz(examples: int, *, deadline_ms: int | None = 2000) -> settings:
    """The settings of one fuzz target: ``examples`` in CI, ``$AIRLOCK_FUZZ_EXAMPLES`` if set.

    Function-scoped fixtures are fine here: every target resets what it mutates itself.
    """
    return settings(
        max_examples=_examples(examples),
        deadline=None if deadline_ms is None else timedelta(milliseconds=deadline_ms),
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.function_scoped_fixture,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
        print_blob=True,
    )


class Hang(BaseException):
    """An example ran longer than :data:`HANG_S`."""


@contextlib.contextmanager
def no_hang(seconds: float = HANG_S) -> Iterator[None]:
    """Raise :class:`Hang` in the main thread if the block runs longer than ``seconds``."""
    if threading.current_thread() is not threading.main_thread():  # pragma: no cover
        yield
        return

    def alarm(signum: int, frame: Any) -> None:
        raise Hang(f"no result after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ----------------------------------------------------------------------------- strategies

NUMBERISH = [
    "",
    " ",
    "0",
    "1",
    "-1",
    "+1",
    "01",
    "1.0",
    "1.",
    ".5",
    "1e3",
    "1E-3",
    "1_000",
    "1,000",
    " 1",
    "1 ",
    "\t1\n",
    "NaN",
    "nan",
    "-NaN",
    "sNaN",
    "Infinity",
    "-Infinity",
    "inf",
    "-inf",
    "0x",
    "0x0",
    "0X1f",
    "0xg",
    "-0x1",
    "0b101",
    "0o17",
    "1f",
    "ff",
    "\u0661\u0662",  # Arabic-Indic digits: str.isdigit() says yes
    "\uff11\uff12",  # full-width digits
    "\u00b2",  # superscript two: isdigit() but not decimal
    "1\x00",
    "9" * 78,
    "9" * 79,
    "1" * 4301,  # past CPython's int <-> str digit limit
    "0x" + "f" * 64,
    "0x" + "f" * 65,
    "0x" + "f" * 5000,
    "0" * 5000 + "1",
    "1" + "0" * 40,
    "0." + "0" * 39 + "1",
    "0." + "0" * 40 + "1",
    "1" * 41,
    "1" * 40 + "." + "1" * 40,
]
"""Spellings that have broken number parsers somewhere: signs, exponents, separators,
special values, non-ASCII digits, lengths around every limit in the code."""


def numberish() -> st.SearchStrategy[str]:
    """Number-like text: the samples above, mutated and mixed with random text."""
    alphabet = st.sampled_from(list("0123456789abcdefABCDEFxX.+-_eE ,\t\n\u0661\uff11"))
    return st.one_of(
        st.sampled_from(NUMBERISH),
        st.text(alphabet, max_size=90),
        st.builds(lambda a, b: a + b, st.sampled_from(NUMBERISH), st.sampled_from(NUMBERISH)),
        st.integers().map(str),
        st.decimals(allow_nan=True, allow_infinity=True).map(str),
        st.floats().map(repr),
        st.text(max_size=40),
    )


INT_DIGITS_LIMIT = 4300
"""CPython's int <-> str conversion limit (``sys.get_int_max_str_digits``). Text and JSON
can only carry integers below it (parsing a longer one raises), so :func:`huge_ints`
stays below it; Python int *objects* past it are a known limit, see test_fuzz_inputs."""


def huge_ints() -> st.SearchStrategy[int]:
    """Integers of every size up to the int <-> str digit limit."""
    return st.one_of(
        st.integers(),
        st.integers(-(2**300), 2**300),
        st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**256 - 1, 2**256, -(2**255)]),
        st.integers(0, INT_DIGITS_LIMIT - 1).map(lambda n: 10**n),
    )


# ----------------------------------------------------------------------------- JSON answers

_HASH = "0x" + "ab" * 32

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(10**4000), 10**4000),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["0x", "0x0", "0x1", "0x" + "f" * 64, "0x" + "f" * 65, _HASH, "2.0", "1.0"]),
)
"""JSON leaves an outside server may answer: huge integers, hex of every length, text."""

json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
"""Any JSON value built from :data:`json_scalars`, nested a few levels."""


def nested(depth: int, opening: str = "[", closing: str = "]") -> bytes:
    """``1`` inside ``depth`` brackets: the shape that finds recursion limits."""
    return (opening * depth + "1" + closing * depth).encode()


NASTY_BODIES = [
    b"",
    b"\xff\xfe",
    b"\xef\xbb\xbf{}",  # a UTF-8 byte order mark
    b"NaN",
    b"[Infinity]",
    b"[1e999]",
    b"[" + b"1" * 5000 + b"]",  # past the int <-> str digit limit
    b'"\\ud800"',  # a lone surrogate escape
    b'{"a": 1, "a": 2}',
    nested(64),
    nested(65),
    nested(200_000),  # C-recursion depth: refused unparsed, never parsed
    nested(100_000, '{"a":', "}"),
    b"[" * 200_000,
    b"]" * 10,
    b'"' * 7,
    b'["\\\\\\"]',
    b"\\" * 100,
]
"""Response bodies that have broken JSON readers: encodings, special numbers, depth."""
