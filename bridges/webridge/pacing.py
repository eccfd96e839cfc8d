"""Pacing of outgoing messages (sans-IO: the caller passes the time in)."""

from __future__ import annotations


class TokenBucket:
    """``burst`` messages at once, then ``rate`` per second (time passed in)."""

    def __init__(self, burst: int, rate: float, now: float) -> None:
        self.burst, self.rate = burst, rate
        self.tokens = float(burst)
        self.stamp = now

    def wait_time(self, now: float) -> float:
        """Seconds until a token is available (0: take it now)."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1
