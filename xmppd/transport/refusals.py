"""Logging refusals (connection caps, failed component handshakes) without a log flood.

An attacker hammering a listener must not turn each refused attempt into a log line:
1,800 refusals a second would fill the disk and bury everything else. So the first
refusal of each (listener, reason, address group) in a window is logged at once, the
rest are only counted, and when the window ends one summary line per key says how many
more there were. Memory is bounded: past ``max_keys`` keys in one window, further
addresses are counted together under ``ip=other``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

import trio

from xmppd.transport.admission import address_key

log = logging.getLogger("xmppd.admission")

Key = tuple[str, str, str]


class RefusalLog:
    """First refusal per key and window logged, the rest summarised at the window's end."""

    def __init__(
        self,
        window: float = 60.0,
        *,
        ipv6_prefix: int = 64,
        max_keys: int = 256,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = log,
    ) -> None:
        self.window = window
        self.ipv6_prefix = ipv6_prefix
        self.max_keys = max_keys
        self._clock = clock
        self._log = logger
        self._started = clock()
        #: Refusals per key in this window beyond the first (which was logged).
        self._more: Counter[Key] = Counter()
        self._seen: set[Key] = set()
        #: Every refusal since start, per (listener, reason): for tests and health checks.
        self.totals: Counter[tuple[str, str]] = Counter()

    def refused(self, listener: str, reason: str, ip: str) -> None:
        """Count one refusal; log it if it is the first of its key in this window."""
        now = self._clock()
        if now - self._started >= self.window:
            self.flush(now)
        self.totals[(listener, reason)] += 1
        group = address_key(ip, self.ipv6_prefix)
        key = (listener, reason, group)
        if key in self._seen:
            self._more[key] += 1
            return
        if len(self._seen) >= self.max_keys:
            self._more[(listener, reason, "other")] += 1
            return
        self._seen.add(key)
        self._log.warning("event=connection_refused listener=%s reason=%s ip=%s", *key)

    def flush(self, now: float | None = None) -> None:
        """One summary line per key refused again after its first line; a new window."""
        now = self._clock() if now is None else now
        seconds = max(0, round(now - self._started))
        for (listener, reason, group), count in sorted(self._more.items()):
            self._log.warning(
                "event=connection_refused_summary listener=%s reason=%s ip=%s more=%d seconds=%d",
                listener,
                reason,
                group,
                count,
                seconds,
            )
        self._more.clear()
        self._seen.clear()
        self._started = now

    async def run(self) -> None:
        """Close a window every ``window`` seconds, so a flood that stops is summarised too."""
        while True:
            await trio.sleep(self.window)
            self.flush()
