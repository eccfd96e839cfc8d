"""Token buckets per user: the MUC's flood, invitation and room-creation limits.

Pure (no clock of its own: callers pass ``now`` in seconds), so rooms stay sans-IO. A
bucket belongs to a *bare JID*, not to a join or a connection: leaving and rejoining, or
a second resource, finds the same bucket, so a limit cannot be reset by reconnecting.

Memory stays bounded: a bucket that has refilled completely behaves exactly like a new
one, so it is forgotten (a few are swept on every use), and past ``max_keys`` the bucket
used longest ago goes first.
"""

from __future__ import annotations

from collections import OrderedDict


class Buckets:
    """``burst`` tokens per key, refilled at ``rate`` per second; ``burst <= 0`` disables."""

    def __init__(self, burst: float, rate: float, *, max_keys: int = 65_536) -> None:
        self.burst = float(burst)
        self.rate = max(0.0, float(rate))
        self.max_keys = max(1, max_keys)
        #: key -> (tokens, when they were counted), least recently used first
        self._state: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._state)

    def _level(self, key: str, now: float) -> float:
        state = self._state.get(key)
        if state is None:
            return self.burst
        tokens, stamp = state
        return min(self.burst, tokens + max(0.0, now - stamp) * self.rate)

    def _sweep(self, now: float, budget: int = 4) -> None:
        for key in list(self._state.keys())[:budget]:
            if self._level(key, now) >= self.burst:
                del self._state[key]

    def take(self, key: str, now: float, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens of ``key`` if it has them (then True), else spend none."""
        if self.burst <= 0:
            return True
        self._sweep(now)
        level = self._level(key, now)
        if level < cost:
            return False
        self._state[key] = (level - cost, now)
        self._state.move_to_end(key)
        while len(self._state) > self.max_keys:
            self._state.popitem(last=False)
        return True

    def reset(self, key: str) -> None:
        """Give ``key`` a full bucket again (e.g. a request that was granted)."""
        self._state.pop(key, None)

    def retry_after(self, key: str, now: float, cost: float = 1.0) -> float:
        """Seconds until ``key`` has ``cost`` tokens again (0 when it has them now)."""
        if self.burst <= 0:
            return 0.0
        missing = cost - self._level(key, now)
        if missing <= 0:
            return 0.0
        return float("inf") if self.rate == 0 else missing / self.rate
