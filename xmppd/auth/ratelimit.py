"""Failed-login throttling, shared by every auth backend.

The stream shell keeps one :class:`FailureLimiter` per dimension (peer IP, username)
and asks ``allowed()`` before handing credentials to a backend; each failure is
recorded. This stops password guessing and SID guessing alike, and keeps a flood of
bad logins from turning into a flood of forum database queries.

A sliding window per key: at most ``per_minute`` failures within any 60 seconds. Memory
is bounded twice: per key by ``per_minute`` timestamps, overall by ``max_keys`` keys
(the least recently failed key is forgotten first; quiet keys are dropped as the window
passes them).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable


class FailureLimiter:
    """Count failed attempts per key in a sliding window; ``per_minute <= 0`` disables it."""

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_keys: int = 65_536,
        window: float = 60.0,
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        if window <= 0:
            raise ValueError("window must be positive")
        self.per_minute = per_minute
        self.window = window
        self.max_keys = max_keys
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def _expire(self, key: str, now: float) -> deque[float] | None:
        """Drop ``key``'s failures older than the window; forget the key when none remain."""
        stamps = self._failures.get(key)
        if stamps is None:
            return None
        horizon = now - self.window
        while stamps and stamps[0] <= horizon:
            stamps.popleft()
        if not stamps:
            del self._failures[key]
            return None
        return stamps

    def _sweep(self, now: float, budget: int = 8) -> None:
        """Forget a few stale keys from the old end, so idle keys do not pile up."""
        for key in list(self._failures.keys())[:budget]:
            self._expire(key, now)

    def allowed(self, key: str) -> bool:
        """Whether another attempt for ``key`` may go ahead now."""
        if self.per_minute <= 0:
            return True
        stamps = self._expire(key, self._clock())
        return stamps is None or len(stamps) < self.per_minute

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` is allowed again (0 when it already is)."""
        if self.per_minute <= 0:
            return 0.0
        now = self._clock()
        stamps = self._expire(key, now)
        if stamps is None or len(stamps) < self.per_minute:
            return 0.0
        return max(0.0, stamps[-self.per_minute] + self.window - now)

    def record_failure(self, key: str) -> None:
        """Count one failed attempt for ``key``."""
        if self.per_minute <= 0:
            return
        now = self._clock()
        self._sweep(now)
        stamps = self._expire(key, now)
        if stamps is None:
            while len(self._failures) >= self.max_keys:
                self._failures.popitem(last=False)
            stamps = self._failures[key] = deque(maxlen=self.per_minute)
        else:
            self._failures.move_to_end(key)
        stamps.append(now)

    def reset(self, key: str) -> None:
        """Forget ``key``'s failures (after a successful login)."""
        self._failures.pop(key, None)
