"""Outgoing flood control, sans-IO: a token bucket and a bounded queue that counts overflow.

IRC servers kill a client that sends too fast ("Excess Flood"); the bot must pace itself
(burst of 10, then one line per second by default, like biboumi's throttle) and, when a
paste is larger than the queue, say how much it dropped instead of dropping silently.
Time is always passed in.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; one token per line."""

    def __init__(self, burst: int, rate: float, now: float) -> None:
        if burst < 1 or rate <= 0:
            raise ValueError("burst must be >= 1 and rate > 0")
        self.burst = burst
        self.rate = rate
        self.tokens = float(burst)
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, now: float) -> bool:
        """Spend a token if there is one."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait_time(self, now: float) -> float:
        """Seconds until a token is available (0 if one is now)."""
        self._refill(now)
        if self.tokens >= 1.0:
            return 0.0
        return (1.0 - self.tokens) / self.rate


class BoundedQueue(Generic[T]):
    """FIFO of at most ``size`` items; items offered when full are refused and counted.

    The newest are refused (not the oldest dropped) so a message already half sent keeps
    its tail; ``take_dropped`` hands the count to whoever reports it, once.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self.size = size
        self.items: deque[T] = deque()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self.items)

    def put(self, item: T) -> bool:
        if len(self.items) >= self.size:
            self.dropped += 1
            return False
        self.items.append(item)
        return True

    def put_front(self, item: T) -> None:
        """Ahead of everything, ignoring the bound (protocol replies such as PONG)."""
        self.items.appendleft(item)

    def pop(self) -> T:
        return self.items.popleft()

    def take_dropped(self) -> int:
        n, self.dropped = self.dropped, 0
        return n

    def clear(self) -> None:
        self.items.clear()
