"""FailureLimiter: sliding-window failure counts with a fake clock, and bounded memory."""

from __future__ import annotations

import pytest

from xmppd.auth.ratelimit import FailureLimiter


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_blocks_after_per_minute_failures() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(3, clock)
    for _ in range(3):
        assert limiter.allowed("1.2.3.4")
        limiter.record_failure("1.2.3.4")
    assert not limiter.allowed("1.2.3.4")
    assert limiter.allowed("5.6.7.8")  # other keys are unaffected


def test_window_slides() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(2, clock)
    limiter.record_failure("k")
    clock.now += 30
    limiter.record_failure("k")
    assert not limiter.allowed("k")
    assert limiter.retry_after("k") == pytest.approx(30.0)
    clock.now += 30.5  # the first failure has left the window, the second has not
    assert limiter.allowed("k")
    limiter.record_failure("k")
    assert not limiter.allowed("k")
    clock.now += 61
    assert limiter.allowed("k")
    assert limiter.retry_after("k") == 0.0


def test_reset_forgets_a_key() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(1, clock)
    limiter.record_failure("jane")
    assert not limiter.allowed("jane")
    limiter.reset("jane")
    assert limiter.allowed("jane")
    limiter.reset("never-seen")  # no error


def test_zero_disables_the_limit() -> None:
    limiter = FailureLimiter(0, FakeClock())
    for _ in range(100):
        limiter.record_failure("k")
    assert limiter.allowed("k")
    assert len(limiter) == 0


def test_total_keys_are_capped_oldest_first() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(1, clock, max_keys=3)
    for key in ("a", "b", "c", "d"):
        limiter.record_failure(key)
        clock.now += 1
    assert len(limiter) == 3
    assert limiter.allowed("a")  # evicted: the least recently failed key
    assert not limiter.allowed("d")


def test_stale_keys_are_dropped_as_time_passes() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(5, clock)
    for i in range(50):
        limiter.record_failure(f"ip{i}")
    assert len(limiter) == 50
    clock.now += 120
    for i in range(10):  # every call sweeps a few stale keys
        limiter.record_failure(f"new{i}")
    assert len(limiter) < 50
    assert all(limiter.allowed(f"ip{i}") for i in range(50))
    assert len(limiter) == 10  # asking about a stale key forgets it


def test_per_key_memory_is_bounded() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(4, clock)
    for _ in range(1000):
        limiter.record_failure("k")
    assert len(limiter._failures["k"]) == 4


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        FailureLimiter(5, FakeClock(), max_keys=0)
    with pytest.raises(ValueError):
        FailureLimiter(5, FakeClock(), window=0)
