"""ULIDs: the queue orders items by id, so ids must sort by creation and never repeat.

Time is passed in as ``now_ms`` wherever the test depends on it, so nothing here waits.
"""

from __future__ import annotations

import itertools
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airlock.queue.ulid import UlidGenerator, encode, is_ulid, timestamp_ms

MAX_MS = 2**48 - 1  # the 48-bit time field
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
valid_ms = st.integers(0, MAX_MS)


def test_length_and_alphabet() -> None:
    ulid = UlidGenerator().new()
    assert len(ulid) == 26
    assert set(ulid) <= set(CROCKFORD)
    assert is_ulid(ulid)


@given(ms=valid_ms)
def test_generated_ids_are_ulids_and_keep_their_time(ms: int) -> None:
    ulid = UlidGenerator().new(now_ms=ms)
    assert len(ulid) == 26
    assert is_ulid(ulid)
    assert timestamp_ms(ulid) == ms


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0" * 26),
        (31, "0" * 25 + "Z"),
        (32, "0" * 24 + "10"),
        (2**128 - 1, "7" + "Z" * 25),
    ],
)
def test_encode_table(value: int, expected: str) -> None:
    assert encode(value) == expected


GOOD = "01ARZ3NDEKTSV4RRFFQ69G5FAV"  # the example from the ULID spec


@pytest.mark.parametrize(
    "text",
    [
        "",
        GOOD[:-1],  # 25 characters
        GOOD + "0",  # 27 characters
        "I" + GOOD[1:],
        GOOD[:-1] + "I",
        GOOD[:-1] + "L",
        GOOD[:-1] + "O",
        GOOD[:-1] + "U",
        "8" + GOOD[1:],  # first char > '7': more than 128 bits
        "Z" + GOOD[1:],
        GOOD[:-1] + "-",
        GOOD[:-1] + " ",
    ],
)
def test_is_ulid_rejects(text: str) -> None:
    assert is_ulid(GOOD)
    assert not is_ulid(text)


def test_ids_within_one_millisecond_strictly_increase() -> None:
    gen = UlidGenerator()
    ids = [gen.new(now_ms=1_700_000_000_000) for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(a < b for a, b in itertools.pairwise(ids))
    assert {timestamp_ms(i) for i in ids} == {1_700_000_000_000}


@given(times=st.lists(valid_ms, min_size=2, max_size=50, unique=True).map(sorted))
def test_ids_sort_in_time_order(times: list[int]) -> None:
    gen = UlidGenerator()
    ids = [gen.new(now_ms=ms) for ms in times]
    assert ids == sorted(ids)
    assert [timestamp_ms(i) for i in ids] == times


@given(times=st.lists(valid_ms, min_size=1, max_size=50))
def test_ids_increase_even_when_the_clock_goes_back(times: list[int]) -> None:
    """A clock step backwards keeps the last time: ids still increase, time never falls."""
    gen = UlidGenerator()
    ids = [gen.new(now_ms=ms) for ms in times]
    assert all(a < b for a, b in itertools.pairwise(ids))
    stamps = [timestamp_ms(i) for i in ids]
    running_max = [max(times[: n + 1]) for n in range(len(times))]
    assert stamps == running_max


def test_earlier_time_still_gives_a_greater_id() -> None:
    gen = UlidGenerator()
    later = gen.new(now_ms=2_000)
    earlier = gen.new(now_ms=1_000)
    assert earlier > later
    assert timestamp_ms(earlier) == 2_000


def test_random_part_overflow_moves_to_the_next_millisecond() -> None:
    """After 2**80 ids in one millisecond the generator borrows the next one.

    Reaching that state honestly takes 2**80 calls, so the test sets it directly.
    """
    gen = UlidGenerator()
    gen.new(now_ms=5_000)
    gen._last_random = 2**80 - 1
    last = encode((5_000 << 80) | gen._last_random)
    rolled = gen.new(now_ms=5_000)
    assert rolled > last
    assert timestamp_ms(rolled) == 5_001
    assert gen.new(now_ms=5_000) > rolled


def test_threads_never_share_an_id() -> None:
    gen = UlidGenerator()
    threads, per_thread = 8, 1_000
    results: list[list[str]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads)

    def work(out: list[str]) -> None:
        start.wait()
        out.extend(gen.new() for _ in range(per_thread))

    workers = [threading.Thread(target=work, args=(out,)) for out in results]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    everything = [ulid for out in results for ulid in out]
    assert len(everything) == threads * per_thread
    assert len(set(everything)) == len(everything)
    for out in results:  # each thread sees its own ids strictly increasing
        assert all(a < b for a, b in itertools.pairwise(out))
