"""Give freed heap memory back to the operating system.

Idle streams release their parser buffers (``StreamParser.hibernate``), but glibc keeps
small freed chunks inside the process, so RSS would not show it and a burst of traffic
would leave the peak footprint behind for good. ``malloc_trim`` returns free pages;
calling it every few seconds is cheap (a few milliseconds on a large heap).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

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
