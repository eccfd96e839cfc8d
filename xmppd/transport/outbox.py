"""The outbox of one connection: a bounded, non-blocking send queue and its writer's wake-up.

The router must never wait on a slow peer: it offers bytes and moves on. When the bytes
waiting would pass ``limit`` the offer is refused and the owner cuts the peer off, so
memory stays bounded (:class:`~xmppd.stream.outqueue.ByteQueue`). One writer task drains
it; the client shell starts that task only while there is something to write (thousands
of idle clients hold no task), the component keeps one running (:meth:`Outbox.drain`).
``progress`` counts the bytes queued and written, for producers that must not overrun
the queue (offline delivery) or need to know their bytes went out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from xmppd.stream.outqueue import ByteQueue
from xmppd.transport.progress import WriteProgress

#: Writes a batch of chunks to the peer (joined into one write, or one message each).
Write = Callable[[list[bytes]], Awaitable[None]]


class Outbox:
    """Chunks for one peer, written in order by one writer task."""

    __slots__ = ("_queue", "_wake", "closing", "progress")

    def __init__(self, limit: int) -> None:
        self._queue = ByteQueue(limit)
        self.progress = WriteProgress(limit)
        #: Set only while the writer waits (idle connections keep no event).
        self._wake: trio.Event | None = None
        #: Nothing more is accepted; the writer stops once what is queued is out.
        self.closing = False

    def __bool__(self) -> bool:
        return bool(self._queue)

    @property
    def queued(self) -> int:
        """Bytes waiting to be written."""
        return self._queue.queued

    def offer(self, data: bytes) -> bool:
        """Queue ``data``; ``False`` when closing or when it would pass the limit.

        Called once per recipient of every stanza, so :meth:`push` is written out here.
        """
        queue = self._queue
        size = len(data)
        if self.closing or not queue.fits(size):
            return False
        if size:
            queue.push(data)
            self.progress.accepted += size
            if self._wake is not None:
                self._wake.set()
        return True

    def push(self, data: bytes) -> None:
        """Queue ``data`` whatever the limit: the stream's own output is never refused."""
        if not data:
            return
        self._queue.push(data)
        self.progress.accept(len(data))
        self._notify()

    def finish(self, data: bytes = b"") -> None:
        """Queue the last bytes (a stream error, the close tag) and accept nothing more."""
        self.push(data)
        self.closing = True
        self._notify()

    def cut(self) -> None:
        """Drop everything (the peer is being cut off) and accept nothing more."""
        self._queue.clear()
        self.closing = True
        self.progress.close()
        self._notify()

    def take(self) -> list[bytes]:
        """Everything waiting, for one write; report it with :meth:`wrote`."""
        return self._queue.take()

    def wrote(self, size: int) -> None:
        self.progress.wrote(size)

    async def wait(self, patience: float = float("inf")) -> bool:
        """Until something is queued or the outbox closes; ``False`` after ``patience`` s."""
        if self._queue or self.closing:
            return True
        self._wake = trio.Event()
        try:
            with trio.move_on_after(patience):
                await self._wake.wait()
            return self._wake.is_set()
        finally:
            self._wake = None

    async def drain(self, write: Write) -> None:
        """Write until :meth:`finish`/:meth:`cut` and everything before it is out."""
        while True:
            if not self._queue:
                if self.closing:
                    return
                await self.wait()
                continue
            chunks = self.take()
            await write(chunks)
            self.wrote(sum(map(len, chunks)))

    def _notify(self) -> None:
        if self._wake is not None:
            self._wake.set()
