"""The server's figures over time: RSS and open descriptors from /proc, and the
event-loop lag histogram (``xmppd_event_loop_lag_seconds``) from ``/metrics``."""

from __future__ import annotations

import os
import re
import time
import urllib.request
from dataclasses import dataclass, field

_BUCKET = re.compile(r'^xmppd_event_loop_lag_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)$', re.M)


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def lag_buckets(http_port: int) -> dict[float, float] | None:
    """Cumulative bucket counts of the lag histogram (None: not reachable)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return None
    return {float(le): float(n) for le, n in _BUCKET.findall(text)}


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """Upper bound of the bucket holding quantile ``q`` (Prometheus-style, no interpolation)."""
    if not buckets:
        return None
    edges = sorted(buckets)
    total = buckets[edges[-1]]
    if total <= 0:
        return None
    for le in edges:
        if buckets[le] >= q * total:
            return le
    return edges[-1]


@dataclass
class Sampler:
    """Call :meth:`sample` on a schedule; the lag histogram's increments since the last
    sample are accumulated (a restart resets the server's counters: then all of it)."""

    http_port: int
    samples: list[dict] = field(default_factory=list)
    lag_total: dict[float, float] = field(default_factory=dict)
    _last: dict[float, float] = field(default_factory=dict)
    _t0: float = field(default_factory=time.monotonic)

    def sample(self, pid: int | None, note: str = "") -> dict:
        buckets = lag_buckets(self.http_port) or {}
        delta = {}
        restarted = any(buckets.get(le, 0) < n for le, n in self._last.items())
        for le, n in buckets.items():
            delta[le] = n - (0 if restarted else self._last.get(le, 0))
            self.lag_total[le] = self.lag_total.get(le, 0) + delta[le]
        if buckets:
            self._last = buckets
        row = {
            "t": round(time.monotonic() - self._t0, 1),
            "pid": pid,
            "rss_kib": rss_kib(pid) if pid else None,
            "fds": open_fds(pid) if pid else None,
            "lag_p99_s": quantile(delta, 0.99),
            "lag_samples": int(max(delta.values(), default=0)),
        }
        if note:
            row["note"] = note
        self.samples.append(row)
        return row

    def forget_lag_baseline(self) -> None:
        """After a restart of the server: its counters start again from zero."""
        self._last = {}
