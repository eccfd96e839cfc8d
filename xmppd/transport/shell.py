"""The trio shell of one client connection, whatever carries its stream.

TCP, direct TLS and WebSocket differ only in how bytes move; what they share lives here:
the reader loop feeding the :class:`~xmppd.stream.c2s.C2SStream` and its
:class:`~xmppd.transport.driver.C2SDriver`, the bounded :class:`~xmppd.transport.outbox.Outbox`
and its writer, the keepalive ping, the negotiation deadline, the polite close and the
abort, the admission ticket held for the connection's life, and one set of log events
with ``transport=tcp|tls|websocket`` (BOSH, which has its own shell, logs the same names
with ``transport=bosh``): ``negotiation_timeout``, ``ping_timeout``,
``slow_reader_disconnected``, ``send_timeout``, ``connection_crashed``. A transport plugs
in as a :class:`Wire`: a byte stream (:mod:`xmppd.transport.c2s`) or a message stream
(:mod:`xmppd.http.websocket`).

Before binding there is only the reader, which writes directly, so nothing else can be
interleaved with negotiation (STARTTLS swaps the wire's stream in the middle of it).
Once bound, the reader parses and routes while a writer task drains the outbox; the
writer exits after a little idleness, so thousands of quiet clients hold no task.

A peer that does not read is cut off when its outbox passes ``c2s.send_queue_bytes``
(``event=slow_reader_disconnected``), or when one write has waited ``c2s.send_timeout``
seconds on full buffers (``event=send_timeout``; a wire whose carrier enforces its own
deadline, as hypercorn's stream does for WebSocket, sets ``write_deadline`` to ``None``):
memory stays bounded, the router never blocks on one slow client, and no stalled peer
holds its socket forever.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

import trio
from lxml import etree

from xmppd.session import Session
from xmppd.stream.c2s import C2SStream
from xmppd.transport.admission import AdmissionTicket
from xmppd.transport.driver import C2SDriver, TransportName
from xmppd.transport.keepalive import Keepalive, ping_iq
from xmppd.transport.outbox import Outbox
from xmppd.transport.progress import WriteProgress

if TYPE_CHECKING:
    from xmppd.server import Server

log = logging.getLogger("xmppd.c2s")

#: The peer is gone: nothing more to read or write (not our bug, nothing to log).
PEER_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, OSError)


class Wire(Protocol):
    """What a transport gives the shell: input as it arrives, output in chunks."""

    #: ``tcp`` (``tls`` once STARTTLS is done, see the driver), ``tls`` or ``websocket``.
    name: TransportName
    #: Seconds one write may wait before the peer counts as stalled; ``None`` when the
    #: carrier enforces a deadline of its own.
    write_deadline: float | None
    #: The largest input accepted at once (a message transport's one element), or None.
    max_input: int | None
    #: STARTTLS on this wire, or None where the stream never offers it.
    start_tls: Callable[[], Awaitable[None]] | None

    async def open(self) -> None:
        """What precedes the stream (a direct TLS handshake); bounded by the shell."""

    async def receive(self) -> bytes:
        """The next input (bytes, or a bytearray the shell converts); ``b""`` once the
        peer has gone."""
        ...

    async def send(self, chunks: list[bytes]) -> None:
        """Write ``chunks`` in order (one write, or one message per chunk)."""

    async def finish(self) -> None:
        """Everything is written: end the carrier politely (a WebSocket close frame)."""

    async def aclose(self) -> None:
        """Release the carrier; called once, shielded, at the very end."""


class ClientConnection:
    """One client stream over one :class:`Wire`, from accept to close; the session's outbox."""

    # Thousands of these sit idle: no per-instance __dict__.
    __slots__ = (
        "_cancel",
        "_negotiation",
        "_nursery",
        "_writer_running",
        "driver",
        "outbox",
        "peer_ip",
        "server",
        "stream",
        "ticket",
        "wire",
    )

    def __init__(
        self,
        server: Server,
        wire: Wire,
        stream: C2SStream,
        peer_ip: str,
        *,
        ticket: AdmissionTicket | None = None,
        user_agent: str | None = None,
    ) -> None:
        self.server = server
        self.wire = wire
        self.stream = stream
        self.peer_ip = peer_ip
        #: This connection's place in the admission, given back when :meth:`run` ends.
        self.ticket = ticket
        start_tls = self._starttls if wire.start_tls is not None else None
        self.driver = C2SDriver(
            server, stream, self, peer_ip, wire.name, start_tls=start_tls, user_agent=user_agent
        )
        self.outbox = Outbox(server.config.c2s.send_queue_bytes)
        self._nursery: trio.Nursery | None = None
        self._writer_running = False
        self._cancel: trio.CancelScope | None = None
        self._negotiation: trio.CancelScope | None = None

    @property
    def session(self) -> Session | None:
        return self.driver.session

    @property
    def progress(self) -> WriteProgress:
        """The outbox's :class:`~xmppd.transport.progress.WriteProgress` (offline delivery)."""
        return self.outbox.progress

    @property
    def transport(self) -> TransportName:
        """``tcp``, ``tls`` (direct, or after STARTTLS) or ``websocket``: for log lines."""
        return self.driver._transport_name()

    def _jid(self) -> str:
        session = self.session
        return session.full_str if session is not None else "-"

    # ---------------------------------------------------------------- Outbox
    def enqueue(self, data: bytes) -> bool:
        """A stanza from the router (serialised once, shared); ``False`` if cut off."""
        outbox = self.outbox
        if outbox.closing:
            return False
        framing = self.stream.framing
        if framing.rewrites_outbound:
            data = framing.outbound(data)
        if not outbox.offer(data):
            log.warning(
                "event=slow_reader_disconnected jid=%s ip=%s queued=%d transport=%s",
                self._jid(),
                self.peer_ip,
                outbox.queued,
                self.transport,
            )
            self._abort()
            return False
        if not self._writer_running:
            self._kick_writer()
        return True

    def close(self, condition: str | None = None, text: str | None = None) -> None:
        """End the stream politely: queue the error and the close tag, then hang up."""
        if self.outbox.closing:
            return
        self.stream.close(condition, text)
        for frame in self.stream.frames_to_send():  # one message each on a WebSocket
            self.outbox.push(frame)
        self.outbox.finish()
        if self._nursery is not None:
            self._kick_writer()
        elif self._negotiation is not None:
            self._negotiation.cancel()  # run() writes the close itself
        elif self._cancel is not None:
            self._cancel.cancel()

    def _push_stream_output(self) -> None:
        """The stream's own output (acks, errors, the close tag): never refused."""
        for frame in self.stream.frames_to_send():
            self.outbox.push(frame)
        self._kick_writer()

    def _kick_writer(self) -> None:
        """Start a writer unless one runs (a waiting one was woken by the outbox)."""
        outbox = self.outbox
        if self._writer_running or self._nursery is None or not (outbox or outbox.closing):
            return
        self._writer_running = True
        self._nursery.start_soon(self._writer)

    def _stalled(self) -> None:
        """A write outlasted ``c2s.send_timeout``: the peer stopped reading; hang up."""
        log.warning(
            "event=send_timeout jid=%s ip=%s transport=%s",
            self._jid(),
            self.peer_ip,
            self.transport,
        )
        self._abort()

    def _abort(self) -> None:
        self.outbox.cut()
        if self._cancel is not None:
            self._cancel.cancel()

    # ------------------------------------------------------------------- run
    async def run(self) -> None:
        """Serve the connection until it ends; the admission ticket is released after."""
        with self.ticket or contextlib.nullcontext():
            connections = self.server.connections
            connections.add(self)
            try:
                await self._run()
            finally:
                connections.discard(self)

    async def _run(self) -> None:
        cfg = self.server.config.c2s
        try:
            with trio.CancelScope() as self._cancel:
                with trio.fail_after(cfg.handshake_timeout):
                    await self.wire.open()
                bound = False
                with trio.move_on_after(cfg.handshake_timeout) as negotiation:
                    self._negotiation = negotiation
                    bound = await self._negotiate()
                self._negotiation = None
                if not self.outbox.closing and negotiation.cancelled_caught:
                    log.info(
                        "event=negotiation_timeout ip=%s transport=%s",
                        self.peer_ip,
                        self.transport,
                    )
                    self.stream.close("connection-timeout", "negotiation took too long")
                if not bound or negotiation.cancelled_caught:
                    await self._flush_direct()  # close() while negotiating, or it ended
                    return
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    try:
                        self._kick_writer()
                        await self._reader()
                        # reader finished: let the writer flush the closing bytes, then stop
                        self.outbox.finish()
                        self._kick_writer()
                    finally:
                        # From here the nursery winds down and soon takes no new task
                        # (trio raises in start_soon): nothing is queued or started, so
                        # a stanza for this connection fails here, not in its sender.
                        self._nursery = None
                        self.outbox.closing = True
        except* PEER_GONE:
            pass  # the peer went away (TLS clients often skip close_notify): not our bug
        except* Exception:
            log.exception(
                "event=connection_crashed ip=%s transport=%s", self.peer_ip, self.transport
            )
        finally:
            self._nursery = None  # nothing is started or queued from now on
            self.outbox.closing = True
            self.outbox.progress.close()
            with trio.CancelScope(shield=True):
                await self.driver.teardown()
                await self.wire.aclose()

    async def _flush_direct(self) -> None:
        """Write what the stream and the outbox hold, then end the carrier; bounded."""
        chunks = self.outbox.take() + self.stream.frames_to_send()
        with trio.move_on_after(2):
            if chunks:
                await self.wire.send(chunks)
            await self.wire.finish()

    async def _send_direct(self) -> None:
        frames = self.stream.frames_to_send()
        if frames:
            await self.wire.send(frames)

    async def _starttls(self) -> None:
        """STARTTLS: flush ``<proceed/>``, handshake, then the stream restarts."""
        assert self.wire.start_tls is not None
        await self._send_direct()
        await self.wire.start_tls()
        self.stream.tls_established()

    # ------------------------------------------------------------ negotiation
    async def _negotiate(self) -> bool:
        """Run the stream up to a bound resource; ``False`` if it ended before."""
        while True:
            data = await self.wire.receive()
            if not data:
                return False
            if type(data) is not bytes:
                data = bytes(data)
            if self._too_large(data):
                return False
            alive = await self.driver.handle(self.stream.receive_data(data))
            await self._send_direct()
            if not alive:
                return False
            if self.session is not None:
                return True

    def _too_large(self, data: bytes) -> bool:
        """One message over the wire's limit closes the stream (``policy-violation``)."""
        limit = self.wire.max_input
        if limit is None or len(data) <= limit:
            return False
        self.stream.close("policy-violation", f"stanza larger than {limit} bytes")
        return True

    # ----------------------------------------------------------- established
    async def _reader(self) -> None:
        """Read, parse and route until the peer goes, pinging it while it is quiet.

        Deliberately one flat loop with one cancel scope per read: thousands of idle
        connections wait here, and each nested coroutine frame or scope would be kept by
        every one of them.
        """
        cfg = self.server.config.c2s
        keepalive = Keepalive(cfg.ping_interval, cfg.ping_timeout, self._ping)
        hibernate_after = cfg.hibernate_after
        outbox, stream, driver, wire = self.outbox, self.stream, self.driver, self.wire
        awake = True  # the parser holds its buffers
        while not outbox.closing:
            deadline = keepalive.deadline()
            hibernate_at = trio.current_time() + hibernate_after
            hibernating = awake and 0 < hibernate_after and hibernate_at < deadline
            with trio.CancelScope(deadline=hibernate_at if hibernating else deadline) as wait:
                keepalive.watch(wait)
                data = await wire.receive()
            keepalive.watch(None)
            if wait.cancelled_caught:
                if hibernating:
                    stream.hibernate()  # idle: the parser gives its memory back
                    awake = False
                elif keepalive.expired():
                    log.info(
                        "event=ping_timeout jid=%s ip=%s transport=%s",
                        self._jid(),
                        self.peer_ip,
                        self.transport,
                    )
                    self.close("connection-timeout", "no answer to ping")
                    return
                continue
            if not data:
                return
            if type(data) is not bytes:
                data = bytes(data)  # a memory stream's bytearray: the parser takes bytes
            keepalive.heard()
            awake = True
            if self._too_large(data):
                self._push_stream_output()
                return
            alive = await driver.handle(stream.receive_data(data))
            self._push_stream_output()
            if not alive:
                return

    def _ping(self) -> None:
        session = self.session
        if session is None:
            return
        iq = ping_iq(self.server.config.server.domain, session.full_str)
        # through the session: a managed stream counts it like any stanza
        session.send(etree.tostring(iq))

    async def _writer(self) -> None:
        """Drain the outbox; linger a little, then exit so idle peers hold no task."""
        outbox = self.outbox
        wire = self.wire
        linger = self.server.config.c2s.hibernate_after or 5.0
        deadline = wire.write_deadline
        try:
            while True:
                if not outbox:
                    if outbox.closing:
                        break
                    if not await outbox.wait(linger) and not outbox:
                        request = self.driver.idle_request()
                        if request is None or outbox.closing:
                            return
                        outbox.push(request)  # XEP-0198: ack the tail of a burst
                    continue
                chunks = outbox.take()
                if deadline is None:
                    await wire.send(chunks)
                else:
                    with trio.move_on_after(deadline) as stalled:
                        await wire.send(chunks)
                    if stalled.cancelled_caught:
                        self._stalled()
                        return
                outbox.wrote(sum(map(len, chunks)))
            await wire.finish()
        except BaseException:
            if self._cancel is not None:
                self._cancel.cancel()
            raise
        finally:
            self._writer_running = False
        # closing and flushed: hang up (cancels the reader too)
        if self._cancel is not None:
            self._cancel.cancel()
