"""Give freed heap memory back to the operating system.

Idle streams release their parser buffers (``StreamParser.hibernate``), but glibc keeps
small freed chunks inside the process, so RSS would not show it and a burst of traffic
would leave the peak footprint behind for good. ``malloc_trim`` returns free pages;
calling it every few seconds is cheap (a few milliseconds on a large heap).

When RSS grows anyway, ``tracemalloc`` says where: it can be switched on in a running
server (admin command ``memory-trace``) so a long run is not slowed from its start, and
its snapshots go to files that ``bench/memory_cycles.py`` compares.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import time
import tracemalloc
from pathlib import Path

import trio

log = logging.getLogger("xmppd.memory")


def _load_trim():  # type: ignore[no-untyped-def]
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc (musl, macOS): nothing to do
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _load_trim()

_M_ARENA_MAX = -8  # glibc mallopt() parameter number


def limit_arenas(count: int = 2) -> bool:
    """Cap glibc's malloc arenas before worker threads start.

    Every thread that mallocs (database and hashing workers) otherwise gets an arena of its
    own, each keeping megabytes of freed memory resident; the event loop does nearly all
    allocation, so two arenas cost no contention worth measuring.
    """
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, count))


def trim() -> bool:
    """Release free heap pages now; ``False`` where the C library cannot."""
    if _TRIM is None:
        return False
    return bool(_TRIM(0))


async def trim_periodically(interval: float) -> None:
    """Run forever, trimming every ``interval`` seconds (0 disables)."""
    if interval <= 0 or _TRIM is None:
        return
    while True:
        await trio.sleep(interval)
        trim()


def trace_start(frames: int) -> bool:
    """Start tracing allocations with ``frames`` frames each; ``False`` if it already ran."""
    if tracemalloc.is_tracing():
        return False
    tracemalloc.start(frames)
    return True


def trace_stop() -> bool:
    """Stop tracing and free its bookkeeping; ``False`` if it was not running."""
    if not tracemalloc.is_tracing():
        return False
    tracemalloc.stop()
    return True


def trace_snapshot() -> tuple[tracemalloc.Snapshot, int]:
    """What is allocated now, since tracing started (``RuntimeError`` when it is off), and
    how many objects a full garbage collection freed first: cyclic garbage not yet
    collected is not a leak, and would hide one."""
    if not tracemalloc.is_tracing():
        raise RuntimeError("tracemalloc is not running")
    collected = gc.collect()
    return tracemalloc.take_snapshot(), collected


def collect() -> tuple[int, int]:
    """A full garbage collection, then :func:`trim`: objects freed, and the objects the
    collector still tracks. Separates memory kept alive from garbage not yet collected."""
    freed = gc.collect()
    trim()
    return freed, len(gc.get_objects())


def traced_sizes() -> tuple[int, int]:
    """Bytes traced now and at the peak since tracing started."""
    return tracemalloc.get_traced_memory()


def dump_snapshot(snapshot: tracemalloc.Snapshot, directory: Path) -> Path:
    """Write ``snapshot`` to a new file in ``directory`` (private: only us). Blocking."""
    path = directory / f"tracemalloc-{time.time_ns()}.dump"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    snapshot.dump(str(path))
    return path
