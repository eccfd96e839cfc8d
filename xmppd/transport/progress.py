"""How far a client outbox has got: bytes it accepted, bytes its transport wrote.

Every c2s outbox (TCP, WebSocket, BOSH) keeps one :class:`WriteProgress`. Both counters
only grow, so a producer remembers ``accepted`` right after queueing something and later
knows it was written once ``written`` reaches that mark. Offline delivery uses it to send
in pages that fit the queue and to delete stored messages only once they are written
(see :mod:`xmppd.services.offline`). "Written" means handed to the socket (TCP,
WebSocket) or put into an HTTP response body (BOSH): the most a server knows without
XEP-0198 acknowledgements.

Idle connections wait for nothing, so the event is only created while someone waits.
"""

from __future__ import annotations

import trio


class WriteProgress:
    """Byte positions of one outbox whose queue holds at most ``limit`` bytes."""

    __slots__ = ("_changed", "accepted", "closed", "limit", "written")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: Bytes ever queued (each position is one byte of the stream to the client).
        self.accepted = 0
        #: Bytes ever written by the transport; never passes ``accepted``.
        self.written = 0
        #: The outbox takes nothing more and writes nothing more.
        self.closed = False
        self._changed: trio.Event | None = None

    @property
    def pending(self) -> int:
        """Bytes queued or being written: what the queue limit is measured against."""
        return self.accepted - self.written

    def accept(self, size: int) -> None:
        self.accepted += size

    def wrote(self, size: int) -> None:
        self.written = min(self.accepted, self.written + size)
        self._notify()

    def close(self) -> None:
        """The connection is gone (or cut off): whoever waits learns it now."""
        self.closed = True
        self._notify()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def _next_change(self) -> None:
        if self._changed is None:
            self._changed = trio.Event()
        await self._changed.wait()

    async def wait_written(self, mark: int) -> bool:
        """Until ``written`` reaches ``mark``; ``False`` if the outbox closed before."""
        while self.written < mark:
            if self.closed:
                return False
            await self._next_change()
        return True

    async def wait_room(self, size: int) -> bool:
        """Until ``size`` more bytes fit under ``limit``; ``False`` if the outbox closed."""
        while self.pending + size > self.limit:
            if self.closed:
                return False
            await self._next_change()
        return not self.closed
