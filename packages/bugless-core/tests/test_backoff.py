"""The one retry backoff: exponential growth, the cap, and the jitter's range and floor."""

from __future__ import annotations

import random

import pytest

from bugless_core.backoff import Backoff
from bugless_core.failover import RESEND_BACKOFF
from bugless_core.leases import TAKE_BACKOFF
from bugless_core.supervision import LOOP_BACKOFF
from bugless_core.transactions import COCKROACH_RETRIES, POSTGRES_RETRIES


def test_the_delay_doubles_from_the_first_until_the_cap() -> None:
    backoff = Backoff(first_seconds=1.0, max_seconds=60.0, jitter=0.0)
    assert [backoff.nominal(n) for n in range(1, 10)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert [backoff.delay(n) for n in range(1, 10)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_a_count_below_one_reads_as_the_first_failure() -> None:
    backoff = Backoff(first_seconds=0.5, max_seconds=4.0)
    assert backoff.nominal(0) == backoff.nominal(-3) == backoff.nominal(1) == 0.5


def test_weeks_of_failures_stay_at_the_cap_without_overflow() -> None:
    backoff = Backoff(first_seconds=0.01, max_seconds=3600.0, factor=10.0)
    assert backoff.nominal(10_000) == 3600.0
    assert backoff.delay(10**9, lambda: 0.0) == 3600.0


def test_the_factor_sets_the_growth() -> None:
    backoff = Backoff(first_seconds=0.2, max_seconds=100.0, factor=3.0, jitter=0.0)
    assert [backoff.nominal(n) for n in range(1, 6)] == pytest.approx([0.2, 0.6, 1.8, 5.4, 16.2])
    flat = Backoff(first_seconds=0.05, max_seconds=0.05, factor=1.0)
    assert {flat.nominal(n) for n in range(1, 20)} == {0.05}


def test_full_jitter_is_the_default_and_draws_from_zero_to_the_delay() -> None:
    backoff = Backoff(first_seconds=0.02, max_seconds=1.0)
    assert backoff.jitter == 1.0
    rng = random.Random(20151)
    for failures in range(1, 12):
        cap = min(1.0, 0.02 * 2 ** (failures - 1))
        delays = [backoff.delay(failures, rng.random) for _ in range(200)]
        assert all(0 < d <= cap for d in delays)
        # Spread over the whole range, not bunched at one end.
        assert min(delays) < cap * 0.1
        assert max(delays) > cap * 0.9


def test_a_jitter_below_one_keeps_a_floor() -> None:
    equal = Backoff(first_seconds=30.0, max_seconds=4 * 3600.0, jitter=0.5)
    rng = random.Random(7)
    for failures in range(1, 14):
        cap = equal.nominal(failures)
        delays = [equal.delay(failures, rng.random) for _ in range(200)]
        assert all(cap / 2 <= d <= cap for d in delays)
        assert min(delays) < cap * 0.55
        assert max(delays) > cap * 0.95


def test_the_draw_maps_linearly_onto_the_jittered_range() -> None:
    backoff = Backoff(first_seconds=0.1, max_seconds=0.1, jitter=0.8)
    assert backoff.delay(1, lambda: 0.0) == pytest.approx(0.1)
    assert backoff.delay(1, lambda: 0.5) == pytest.approx(0.06)
    assert backoff.delay(1, lambda: 0.999_999) == pytest.approx(0.02, abs=1e-6)


def test_the_same_seed_gives_the_same_delays() -> None:
    backoff = Backoff(first_seconds=0.2, max_seconds=10.0)
    first = [backoff.delay(n, random.Random(3).random) for n in range(1, 8)]
    again = [backoff.delay(n, random.Random(3).random) for n in range(1, 8)]
    assert first == again


@pytest.mark.parametrize(
    ("first", "most", "factor", "jitter"),
    [
        (0, 1, 2, 0.5),
        (-1, 1, 2, 0.5),
        (2, 1, 2, 0.5),
        (1, 2, 0.5, 0.5),
        (1, 2, 2, 1.5),
        (1, 2, 2, -0.1),
    ],
)
def test_a_backoff_that_would_not_back_off_is_refused(
    first: float, most: float, factor: float, jitter: float
) -> None:
    with pytest.raises(ValueError, match="must be"):
        Backoff(first_seconds=first, max_seconds=most, factor=factor, jitter=jitter)


@pytest.mark.parametrize(
    ("backoff", "first", "longest"),
    [
        (LOOP_BACKOFF, (0.5, 1.0), (30.0, 60.0)),
        (TAKE_BACKOFF, (0.05, 0.05), (1.0, 1.0)),
        (RESEND_BACKOFF, (0.02, 0.1), (0.02, 0.1)),
        (POSTGRES_RETRIES.backoff, (0.01, 0.01), (0.08, 0.08)),
        (COCKROACH_RETRIES.backoff, (0.0, 0.02), (0.0, 1.0)),
    ],
    ids=["supervised loops", "lease take", "drain resend", "postgres 40001", "cockroach 40001"],
)
def test_the_core_sites_keep_their_bounds(
    backoff: Backoff, first: tuple[float, float], longest: tuple[float, float]
) -> None:
    """The delays each site drew before it used :class:`Backoff` (the lowest draw, the highest)."""
    almost_one = 1 - 1e-12
    assert backoff.delay(1, lambda: almost_one) == pytest.approx(first[0], abs=1e-9)
    assert backoff.delay(1, lambda: 0.0) == pytest.approx(first[1])
    assert backoff.delay(100, lambda: almost_one) == pytest.approx(longest[0], abs=1e-9)
    assert backoff.delay(100, lambda: 0.0) == pytest.approx(longest[1])
