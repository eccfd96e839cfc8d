"""A bounded queue of outgoing byte chunks: the one every outbox is built on.

Whatever carries a client's or a component's stream (a socket, WebSocket messages, BOSH
response bodies), what waits to go out is a list of chunks measured in bytes. Stanzas
from the router are *offered* and refused once the bytes waiting would pass ``limit``
(the peer is too slow: its owner cuts it off, so memory stays bounded); the stream's own
output (negotiation, an error, the close tag) is *pushed* and never refused. Pure data:
the trio side (waking a writer, counting what was written) is
:class:`xmppd.transport.outbox.Outbox`'s, and BOSH keeps one in its sans-IO session.
"""

from __future__ import annotations


class ByteQueue:
    """Chunks in order, with their total size; at most ``limit`` bytes by :meth:`offer`."""

    __slots__ = ("_chunks", "limit", "queued")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: A list, not a deque: a deque keeps (and re-allocates on clear) a 64-slot block,
        #: which thousands of idle connections would each hold; an empty list is 56 bytes.
        self._chunks: list[bytes] = []
        #: Bytes waiting.
        self.queued = 0

    def __bool__(self) -> bool:
        return bool(self._chunks)

    def fits(self, size: int) -> bool:
        """Whether ``size`` more bytes stay within ``limit``."""
        return self.queued + size <= self.limit

    def offer(self, chunk: bytes) -> bool:
        """Queue ``chunk`` unless it would pass ``limit``; whether it was queued."""
        if not self.fits(len(chunk)):
            return False
        self.push(chunk)
        return True

    def push(self, chunk: bytes) -> None:
        """Queue ``chunk`` whatever the limit (the stream's own output)."""
        self._chunks.append(chunk)
        self.queued += len(chunk)

    def take(self) -> list[bytes]:
        """Everything waiting, in order; the queue is empty afterwards."""
        chunks = self._chunks
        self._chunks = []
        self.queued = 0
        return chunks

    def clear(self) -> None:
        self._chunks = []
        self.queued = 0
