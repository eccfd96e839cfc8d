"""FailureLimiter and LoginLimits: sliding-window failure counts with a fake clock,
attempts in flight, per-account claims, IPv6 grouping, and bounded memory."""

from __future__ import annotations

import pytest

from xmppd.auth.base import AuthContext, AuthError, claim_account
from xmppd.auth.ratelimit import FailureLimiter, LoginLimits


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


# -- attempts in flight ---------------------------------------------------------------


def test_in_flight_attempts_count_towards_the_limit() -> None:
    limiter = FailureLimiter(3, FakeClock())
    assert [limiter.acquire("k") for _ in range(5)] == [True, True, True, False, False]
    assert limiter.in_flight("k") == 3 and not limiter.allowed("k")
    limiter.release("k")
    limiter.record_failure("k")  # a settled failure still counts, in the window now
    assert not limiter.acquire("k")
    limiter.release("k")
    assert limiter.acquire("k")
    limiter.release("k")
    limiter.release("k")
    limiter.release("k")  # one too many: harmless, never negative
    assert limiter.in_flight("k") == 0
    assert limiter.acquire("other")


def test_disabled_limiter_does_not_count_in_flight() -> None:
    limiter = FailureLimiter(0, FakeClock())
    assert all(limiter.acquire("k") for _ in range(100))
    assert limiter.in_flight("k") == 0


def test_concurrent_attempts_for_one_account_check_at_most_the_limit() -> None:
    """40 guesses all started before any finished: only ``per_minute`` get to check."""
    limits = LoginLimits(10, clock=FakeClock())
    attempts = [limits.begin(f"198.51.100.{i}") for i in range(40)]
    checked = []
    for attempt in attempts:
        assert attempt is not None  # each from its own address
        try:
            attempt.claim("user:7")
        except AuthError as err:
            assert err.condition == "temporary-auth-failure"
            assert attempt.refused
            continue
        checked.append(attempt)
    assert len(checked) == 10
    for attempt in attempts:
        attempt.failed()
    assert limits.by_account.in_flight("user:7") == 0
    assert len(limits.by_account._failures["user:7"]) == 10  # refusals add nothing
    # the refused ones still count for their addresses: each cost a lookup
    assert all(len(limits.by_address._failures[f"198.51.100.{i}"]) == 1 for i in range(40))
    late = limits.begin("203.0.113.1")
    assert late is not None
    with pytest.raises(AuthError):
        late.claim("user:7")


def test_concurrent_attempts_from_one_address_are_capped_at_begin() -> None:
    limits = LoginLimits(10, clock=FakeClock())
    attempts = [limits.begin("192.0.2.1") for _ in range(40)]
    started = [a for a in attempts if a is not None]
    assert len(started) == 10
    for attempt in started:
        attempt.failed()
    assert limits.begin("192.0.2.1") is None
    assert len(limits.by_address._failures["192.0.2.1"]) == 10


def test_attempt_settles_once_and_success_forgets_the_accounts_failures() -> None:
    clock = FakeClock()
    limits = LoginLimits(3, clock=clock)
    for _ in range(2):
        attempt = limits.begin("192.0.2.1")
        assert attempt is not None
        attempt.claim("name:jane")
        attempt.claim("user:5")
        attempt.claim("user:5")  # the same account twice holds one place
        assert limits.by_account.in_flight("user:5") == 1
        attempt.failed()
        attempt.failed()  # settled already: no second count
    assert len(limits.by_account._failures["user:5"]) == 2
    assert len(limits.by_account._failures["name:jane"]) == 2
    attempt = limits.begin("192.0.2.2")
    assert attempt is not None
    attempt.claim("user:5")
    attempt.succeeded()
    assert limits.by_account.allowed("user:5") and "user:5" not in limits.by_account._failures
    assert len(limits.by_address._failures["192.0.2.1"]) == 2  # addresses are not forgiven
    released = limits.begin("192.0.2.3")
    assert released is not None
    released.claim("user:9")
    released.release()
    assert limits.by_account.in_flight("user:9") == 0
    assert "user:9" not in limits.by_account._failures
    assert limits.by_address.in_flight("192.0.2.3") == 0


def test_claim_account_reaches_the_gate_only_when_there_is_one() -> None:
    limits = LoginLimits(1, clock=FakeClock())
    attempt = limits.begin("192.0.2.1")
    assert attempt is not None
    claim_account(AuthContext(peer_ip="192.0.2.1"), "nobody")  # no gate: nothing to do
    claim_account(None, "nobody")
    claim_account(AuthContext(peer_ip="192.0.2.1", gate=attempt), "jane")
    assert attempt.accounts == ["jane"]


# -- addresses --------------------------------------------------------------------------


def test_ipv6_addresses_share_the_limit_of_their_network() -> None:
    limits = LoginLimits(2, clock=FakeClock())
    limits.record_failure("2001:db8:1:2::1")
    limits.record_failure("2001:DB8:1:2:ffff:ffff:ffff:fffe")  # same /64, other host
    assert not limits.allowed("2001:db8:1:2::77")
    assert limits.begin("2001:db8:1:2:a:b:c:d") is None
    assert limits.allowed("2001:db8:1:3::1")  # the neighbouring /64
    assert limits.allowed("192.0.2.1")


def test_ipv6_prefix_is_configurable() -> None:
    wide = LoginLimits(1, ipv6_prefix=48, clock=FakeClock())
    wide.record_failure("2001:db8:1:2::1")
    assert not wide.allowed("2001:db8:1:ffff::1")  # same /48
    assert wide.allowed("2001:db8:2::1")
    exact = LoginLimits(1, ipv6_prefix=128, clock=FakeClock())
    exact.record_failure("2001:db8::1")
    assert exact.allowed("2001:db8::2")


def test_ipv4_mapped_and_ipv4_addresses_are_one_key() -> None:
    limits = LoginLimits(1, clock=FakeClock())
    attempt = limits.begin("::ffff:192.0.2.9")
    assert attempt is not None and attempt.address == "192.0.2.9"
    attempt.failed()
    assert not limits.allowed("192.0.2.9")
    assert limits.begin("192.0.2.9") is None
