"""CPU and memory readings for the load client (this process) and the server under test."""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field

_TICK = os.sysconf("SC_CLK_TCK")


def client_cpu() -> float:
    """User+system CPU seconds of this process (all threads)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def server_cpu(pid: int) -> float:
    """User+system CPU seconds of a process (all threads) from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Meter:
    """Wall clock, client CPU and server CPU over one measurement window."""

    server_pid: int
    wall: float = 0.0
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    server_rss_start_kib: int = 0
    server_rss_end_kib: int = 0
    _start: tuple[float, float, float] = field(default=(0.0, 0.0, 0.0), repr=False)

    def start(self) -> None:
        self._start = (time.perf_counter(), client_cpu(), server_cpu(self.server_pid))
        self.server_rss_start_kib = rss_kib(self.server_pid)

    def stop(self) -> None:
        t0, c0, s0 = self._start
        self.wall = time.perf_counter() - t0
        self.client_cpu_s = client_cpu() - c0
        self.server_cpu_s = server_cpu(self.server_pid) - s0
        self.server_rss_end_kib = rss_kib(self.server_pid)

    def as_dict(self) -> dict[str, float | int]:
        wall = self.wall or 1e-9
        return {
            "wall_s": round(self.wall, 3),
            "client_cpu_s": round(self.client_cpu_s, 3),
            "server_cpu_s": round(self.server_cpu_s, 3),
            "client_cpu_pct": round(100 * self.client_cpu_s / wall, 1),
            "server_cpu_pct": round(100 * self.server_cpu_s / wall, 1),
            "server_rss_start_kib": self.server_rss_start_kib,
            "server_rss_end_kib": self.server_rss_end_kib,
        }


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]
