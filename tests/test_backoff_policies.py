"""The backoff policies as tables: FullJitter's window, its seeded purity and overflow
safety, FixedDelay, and the one ``Backoff`` protocol all three policies satisfy.

BackoffPolicy's own tables stay in test_relay_bybit.py (the REST client's policy).
"""

from __future__ import annotations

import pytest

from airlock.relays.backoff import Backoff, BackoffPolicy, FixedDelay, FullJitter

HUGE = (1_100, 10_000, 10**30)  # past 2.0**n in a float, and past a C long


@pytest.mark.parametrize("policy", [BackoffPolicy(), FullJitter(0.5, 30.0), FixedDelay(1.0)])
def test_every_policy_is_a_backoff(policy: object) -> None:
    assert isinstance(policy, Backoff)


@pytest.mark.parametrize(
    ("base_s", "cap_s", "ceilings"),
    [
        (0.5, 8.0, [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]),
        (1.0, 1.0, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
        (0.1, 30.0, [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4]),
        (3.0, 10.0, [3.0, 6.0, 10.0, 10.0, 10.0, 10.0, 10.0]),
    ],
)
def test_full_jitter_window_doubles_then_caps(
    base_s: float, cap_s: float, ceilings: list[float]
) -> None:
    policy = FullJitter(base_s, cap_s)
    assert [policy.ceiling(n) for n in range(len(ceilings))] == pytest.approx(ceilings)


@pytest.mark.parametrize("seed", [None, 0, 7, 12345])
def test_full_jitter_delays_stay_within_zero_and_the_window(seed: int | None) -> None:
    policy = FullJitter(0.5, 8.0, seed=seed)
    for n in range(40):
        assert 0.0 <= policy.delay(n) <= policy.ceiling(n)


# Pinned: with a seed the table is the same in every process and on every run.
SEED_7 = [0.3507, 0.9893, 0.5028, 3.0974, 3.4867, 5.1084, 4.8842, 0.0640]


def test_full_jitter_with_a_seed_is_a_pinned_table() -> None:
    delays = [FullJitter(0.5, 8.0, seed=7).delay(n) for n in range(len(SEED_7))]
    assert delays == pytest.approx(SEED_7, abs=1e-4)


def test_full_jitter_with_a_seed_is_a_pure_function_of_seed_and_attempt() -> None:
    one, other = FullJitter(0.5, 8.0, seed=7), FullJitter(0.5, 8.0, seed=7)
    forward = [one.delay(n) for n in range(20)]
    backward = [other.delay(n) for n in reversed(range(20))][::-1]
    assert forward == backward  # no hidden state: the order of calls does not matter
    assert forward != [FullJitter(0.5, 8.0, seed=8).delay(n) for n in range(20)]


def test_full_jitter_spreads_over_the_whole_window_not_a_band_under_it() -> None:
    delays = [FullJitter(1.0, 10.0, seed=seed).delay(10) for seed in range(2_000)]
    assert min(delays) < 0.1  # bounded jitter (BackoffPolicy) never goes below 80 %
    assert max(delays) > 9.9


@pytest.mark.parametrize("attempt", HUGE)
def test_full_jitter_never_overflows(attempt: int) -> None:
    for seed in (None, 3):
        policy = FullJitter(0.5, 30.0, seed=seed)
        assert policy.ceiling(attempt) == 30.0
        assert 0.0 <= policy.delay(attempt) <= 30.0


def test_full_jitter_tiny_base_still_doubles_past_the_float_exponent_of_two() -> None:
    # 1e-300 * 2**1001 is about 21: the ceiling must be computed, not assumed capped
    assert FullJitter(1e-300, 1e10).ceiling(1001) == pytest.approx(1e-300 * 2.0**1001)


@pytest.mark.parametrize(
    ("base_s", "cap_s"),
    [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0), (float("nan"), 1.0), (1.0, float("inf"))],
)
def test_full_jitter_refuses_a_window_that_makes_no_sense(base_s: float, cap_s: float) -> None:
    with pytest.raises(ValueError, match="base_s"):
        FullJitter(base_s, cap_s)


@pytest.mark.parametrize("delay_s", [0.0, 0.25, 5.0])
def test_fixed_delay_is_the_same_every_attempt(delay_s: float) -> None:
    policy = FixedDelay(delay_s)
    assert [policy.delay(n) for n in (0, 1, 2, 50, *HUGE)] == [delay_s] * 7


@pytest.mark.parametrize("delay_s", [-0.1, float("inf"), float("nan")])
def test_fixed_delay_refuses_a_delay_that_makes_no_sense(delay_s: float) -> None:
    with pytest.raises(ValueError, match="delay_s"):
        FixedDelay(delay_s)


@pytest.mark.parametrize("policy", [FullJitter(0.5, 8.0, seed=1), FixedDelay(1.0)])
def test_a_negative_attempt_is_a_callers_bug(policy: Backoff) -> None:
    with pytest.raises(ValueError, match="attempt"):
        policy.delay(-1)
