"""A bounded, non-blocking send queue drained by one writer task.

The router must never wait on a slow peer: it appends bytes and moves on. When the bytes
waiting pass ``limit`` the peer is too slow and the queue refuses (the owner disconnects
it), so memory stays bounded. Used by component connections; the c2s shell keeps its own
variant tuned for thousands of idle clients (no writer task while idle).
"""

from __future__ import annotations

from collections import deque

import trio


class SendQueue:
    """Bytes for one peer, written in order by :meth:`drain`."""

    __slots__ = ("_closing", "_items", "_queued", "_wake", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: deque[bytes] = deque()
        self._queued = 0
        self._wake = trio.Event()
        self._closing = False

    @property
    def queued(self) -> int:
        """Bytes waiting to be written."""
        return self._queued

    def put(self, data: bytes) -> bool:
        """Queue ``data``; ``False`` when closing or when it would pass the limit."""
        if self._closing:
            return False
        if self._queued + len(data) > self.limit:
            return False
        self._items.append(data)
        self._queued += len(data)
        self._wake.set()
        return True

    def put_final(self, data: bytes) -> None:
        """Queue the last bytes (a stream error, the close tag) and stop accepting more."""
        if data:
            self._items.append(data)
            self._queued += len(data)
        self._closing = True
        self._wake.set()

    def clear(self) -> None:
        """Drop everything (the peer is being cut off) and stop accepting more."""
        self._items.clear()
        self._queued = 0
        self._closing = True
        self._wake.set()

    async def drain(self, transport: trio.abc.SendStream) -> None:
        """Write until :meth:`put_final`/:meth:`clear` and everything before it is out."""
        while True:
            if not self._items:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake = trio.Event()
                continue
            data = b"".join(self._items)
            self._items.clear()
            self._queued = 0
            await transport.send_all(data)
