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
from collections import Counter
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


_type_baseline: Counter[str] = Counter()


def _qualname(obj: object) -> str:
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def type_growth(top: int) -> list[tuple[str, int, int]]:
    """Objects the collector tracks, counted per type after a full collection: the
    ``top`` types whose count changed most since the previous call (name, count, change;
    the first call compares with nothing). Objects grown one per cycle show here when the
    tracemalloc diff spreads them over many allocation sites."""
    global _type_baseline
    gc.collect()
    counts = Counter(_qualname(obj) for obj in gc.get_objects())
    changes = counts.copy()
    changes.subtract(_type_baseline)
    _type_baseline = counts
    ranked = sorted(changes.items(), key=lambda item: (-abs(item[1]), item[0]))[:top]
    return [(name, counts[name], change) for name, change in ranked if change]


def _describe(ref: object) -> str:
    line = _qualname(ref)
    if isinstance(ref, (dict, list, set, tuple)):
        line += f" len={len(ref)}"
    return line


def referrers(type_name: str, sample: int) -> list[str]:
    """Who holds ``sample`` of the tracked objects of ``type_name`` (module.qualname):
    per object its start (``repr``, 60 characters), then one line per referrer, its type
    and, for containers, its size and the types of what holds the container in turn
    (usually the owner whose attribute it is). Sampled from the end of the collector's
    list, where objects that survived the latest collections are."""
    gc.collect()
    found = [obj for obj in gc.get_objects() if _qualname(obj) == type_name][-sample:]
    lines: list[str] = []
    ignore = {id(found), id(lines)}
    for obj in found:
        lines.append(repr(obj)[:60])
        refs = gc.get_referrers(obj)
        for ref in refs:
            if id(ref) in ignore or ref is refs:
                continue
            line = "  <- " + _describe(ref)
            if isinstance(ref, (dict, list, set, tuple)):
                owners = sorted(
                    {
                        _describe(o)
                        for o in gc.get_referrers(ref)
                        if id(o) not in ignore and o is not refs
                    }
                )
                line += " <- " + ", ".join(owners[:4])
            lines.append(line)
    del found
    return lines
