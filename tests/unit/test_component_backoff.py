"""``bridges.component.Backoff``: exponential growth, full jitter, floor and cap."""

from __future__ import annotations

import random

import pytest

from bridges.component import Backoff


def test_upper_bound_doubles_up_to_the_maximum() -> None:
    b = Backoff(initial=1.0, maximum=60.0)
    assert [b.delay(n, rng=lambda: 1.0) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]


def test_full_jitter_reaches_down_to_the_floor() -> None:
    b = Backoff(initial=1.0, maximum=60.0, floor=0.0)
    assert b.delay(5, rng=lambda: 0.0) == 0.0
    assert Backoff(initial=1.0, maximum=60.0, floor=15.0).delay(5, rng=lambda: 0.0) == 15.0


def test_floor_above_the_cap_is_respected() -> None:
    b = Backoff(initial=1.0, maximum=60.0, floor=30.0)
    assert b.delay(0, rng=lambda: 0.5) == 30.0  # cap 1 < floor 30


def test_delays_are_spread_and_bounded() -> None:
    b = Backoff(initial=0.5, maximum=8.0, floor=0.25)
    rng = random.Random(4).random
    delays = [b.delay(10, rng=rng) for _ in range(500)]
    assert all(0.25 <= d <= 8.0 for d in delays)
    assert max(delays) - min(delays) > 6  # jitter, not a constant


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert Backoff().delay(10_000, rng=lambda: 1.0) == 60.0


@pytest.mark.parametrize("kwargs", [{"initial": 0}, {"initial": 2, "maximum": 1}, {"floor": -1}])
def test_bad_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)
