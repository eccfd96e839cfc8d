"""The trio shell of one client connection: socket, TLS, timeouts, bounded send queue.

The protocol lives in :class:`xmppd.stream.c2s.C2SStream` and what its events ask of the
server in :class:`xmppd.transport.driver.C2SDriver` (shared with WebSocket and BOSH);
this module only moves bytes. Two tasks per bound connection: the reader (parse, route)
and the writer (drain the queue). Before binding there is only the reader, which writes
directly, so nothing else can be interleaved with negotiation.

A peer that does not read is cut off when its queue passes ``send_queue_bytes``, or when
one write has waited ``send_timeout`` seconds on full kernel buffers: memory stays bounded,
the router never blocks on one slow client, and no stalled peer holds its socket forever.
``progress`` counts the bytes queued and written, for producers that must not overrun the
queue (offline delivery) or need to know their bytes went out.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections import deque
from typing import TYPE_CHECKING

import trio
from lxml import etree

from xmppd.session import Session
from xmppd.stream.c2s import C2SStream
from xmppd.transport.driver import C2SDriver
from xmppd.transport.progress import WriteProgress
from xmppd.xml import ns

if TYPE_CHECKING:
    from xmppd.server import Server

log = logging.getLogger("xmppd.c2s")

READ_SIZE = 65536


class C2SConnection:
    """One accepted TCP (or direct TLS) connection, from accept to close."""

    # Thousands of these sit idle: no per-instance __dict__.
    __slots__ = (
        "_cancel",
        "_closing",
        "_nursery",
        "_queue",
        "_queued",
        "_wake",
        "_writer_running",
        "direct_tls",
        "driver",
        "peer_ip",
        "progress",
        "server",
        "stream",
        "transport",
    )

    def __init__(
        self, server: Server, transport: trio.abc.Stream, peer_ip: str, *, direct_tls: bool
    ) -> None:
        self.server = server
        self.transport = transport
        self.peer_ip = peer_ip
        self.direct_tls = direct_tls
        self.stream = C2SStream(server.c2s_settings(peer_ip, direct_tls))
        self.driver = C2SDriver(
            server,
            self.stream,
            self,
            peer_ip,
            "tls" if direct_tls else "tcp",
            start_tls=self._starttls,
        )
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self.progress = WriteProgress(server.config.c2s.send_queue_bytes)
        self._wake: trio.Event | None = None
        self._nursery: trio.Nursery | None = None
        self._writer_running = False
        self._closing = False
        self._cancel: trio.CancelScope | None = None

    @property
    def session(self) -> Session | None:
        return self.driver.session

    # ---------------------------------------------------------------- Outbox
    def enqueue(self, data: bytes) -> bool:
        if self._closing:
            return False
        if self._queued + len(data) > self.server.config.c2s.send_queue_bytes:
            log.warning(
                "event=slow_reader_disconnected jid=%s ip=%s queued=%d",
                self.session.full_str if self.session else "-",
                self.peer_ip,
                self._queued,
            )
            self._abort()
            return False
        self._push(data)
        self._kick_writer()
        return True

    def _push(self, data: bytes) -> None:
        self._queue.append(data)
        self._queued += len(data)
        self.progress.accept(len(data))

    def _kick_writer(self) -> None:
        """Wake the writer, or start one: idle connections keep no writer task."""
        if self._wake is not None:
            self._wake.set()
        elif not self._writer_running and self._nursery is not None:
            self._writer_running = True
            self._nursery.start_soon(self._writer)

    def close(self, condition: str | None = None, text: str | None = None) -> None:
        """End the stream politely: queue the error and the close tag, then hang up."""
        if self._closing:
            return
        self.stream.close(condition, text)
        self._push(self.stream.data_to_send())
        self._closing = True
        if self._nursery is not None:
            self._kick_writer()
        elif self._cancel is not None:
            self._cancel.cancel()

    def _stalled(self) -> None:
        """A write outlasted ``c2s.send_timeout``: the peer stopped reading; hang up."""
        log.warning(
            "event=send_timeout jid=%s ip=%s transport=tcp",
            self.session.full_str if self.session else "-",
            self.peer_ip,
        )
        self._abort()

    def _abort(self) -> None:
        self._closing = True
        self._queue.clear()
        self._queued = 0
        self.progress.close()
        if self._cancel is not None:
            self._cancel.cancel()

    # ------------------------------------------------------------------- run
    async def run(self) -> None:
        cfg = self.server.config.c2s
        try:
            with trio.CancelScope() as self._cancel:
                if self.direct_tls:
                    with trio.fail_after(cfg.handshake_timeout):
                        await self._start_tls()
                with trio.move_on_after(cfg.handshake_timeout) as deadline:
                    bound = await self._negotiate()
                if deadline.cancelled_caught:
                    await self._send_direct_close("connection-timeout", "negotiation took too long")
                    return
                if not bound:
                    return
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    if self._queue:
                        self._kick_writer()
                    await self._reader()
                    # reader finished: let the writer flush the closing bytes, then stop
                    self._closing = True
                    self._kick_writer()
        except* (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, OSError):
            pass  # the peer went away (TLS clients often skip close_notify): not our bug
        except* Exception:
            log.exception("event=connection_crashed ip=%s", self.peer_ip)
        finally:
            await self._teardown()

    async def _teardown(self) -> None:
        self.progress.close()
        await self.driver.teardown()
        # SocketStream.aclose only closes the socket; TLS may try a close_notify, so
        # give it a bound (shielded: we may be here because we were cancelled).
        if isinstance(self.transport, trio.SSLStream):
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await _quiet_aclose(self.transport)
        else:
            with trio.CancelScope(shield=True):
                await _quiet_aclose(self.transport)

    async def _send_direct(self) -> None:
        data = self.stream.data_to_send()
        if data:
            await self.transport.send_all(data)

    async def _send_direct_close(self, condition: str, text: str) -> None:
        self.stream.close(condition, text)
        with trio.move_on_after(2):
            await self._send_direct()

    async def _starttls(self) -> None:
        """STARTTLS: flush ``<proceed/>``, handshake, then the stream restarts."""
        await self._send_direct()
        await self._start_tls()
        self.stream.tls_established()

    async def _start_tls(self) -> None:
        ctx = self.server.ssl_context
        assert ctx is not None
        tls = trio.SSLStream(self.transport, ctx, server_side=True)
        await tls.do_handshake()
        self.transport = tls

    # ------------------------------------------------------------ negotiation
    async def _negotiate(self) -> bool:
        """Run the stream up to a bound resource; ``False`` if it ended before."""
        while True:
            data = await self.transport.receive_some(READ_SIZE)
            if not data:
                return False
            alive = await self.driver.handle(self.stream.receive_data(data))
            await self._send_direct()
            if not alive:
                return False
            if self.session is not None:
                return True

    # ----------------------------------------------------------- established
    async def _reader(self) -> None:
        cfg = self.server.config.c2s
        session = self.session
        assert session is not None
        ping_id: str | None = None
        hibernate_after = cfg.hibernate_after
        while not self._closing:
            timeout = cfg.ping_timeout if ping_id else cfg.ping_interval
            if timeout <= 0:
                timeout = math.inf
            data = None
            if 0 < hibernate_after < timeout:
                with trio.move_on_after(hibernate_after):
                    data = await self.transport.receive_some(READ_SIZE)
                if data is None:
                    self.stream.hibernate()
                    timeout -= hibernate_after
            if data is None:
                with trio.move_on_after(timeout):
                    data = await self.transport.receive_some(READ_SIZE)
            if data is None:
                if ping_id is not None:
                    self.close("connection-timeout", "no answer to ping")
                    return
                ping_id = "ping-" + secrets.token_hex(4)
                # through the session: a managed stream counts it like any stanza
                session.send(_ping(self.server.config.server.domain, session.full_str, ping_id))
                continue
            if not data:
                return
            ping_id = None
            alive = await self.driver.handle(self.stream.receive_data(data))
            if not alive:
                out = self.stream.data_to_send()
                if out:
                    self._push(out)
                return
            out = self.stream.data_to_send()
            if out:
                self.enqueue(out)

    async def _writer(self) -> None:
        """Drain the queue; linger a little, then exit so idle peers hold no task."""
        transport = self.transport
        linger = self.server.config.c2s.hibernate_after or 5.0
        send_timeout = self.server.config.c2s.send_timeout
        try:
            while True:
                if not self._queue:
                    if self._closing:
                        break
                    self._wake = trio.Event()
                    with trio.move_on_after(linger):
                        await self._wake.wait()
                    woken = self._wake.is_set()
                    self._wake = None
                    if not woken and not self._queue:
                        request = self.driver.idle_request()
                        if request is None or self._closing:
                            return
                        self._push(request)  # XEP-0198: ack the tail of a burst
                    continue
                data = b"".join(self._queue)
                self._queue.clear()
                self._queued = 0
                with trio.move_on_after(send_timeout) as stalled:
                    await transport.send_all(data)
                if stalled.cancelled_caught:
                    self._stalled()
                    return
                self.progress.wrote(len(data))
        except BaseException:
            if self._cancel is not None:
                self._cancel.cancel()
            raise
        finally:
            self._writer_running = False
        # closing and flushed: hang up (cancels the reader too)
        if self._cancel is not None:
            self._cancel.cancel()


async def _quiet_aclose(stream: trio.abc.Stream) -> None:
    try:
        await stream.aclose()
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass


def _ping(domain: str, to: str, iq_id: str) -> bytes:
    iq = etree.Element("{%s}iq" % ns.CLIENT, nsmap={None: ns.CLIENT})
    iq.set("type", "get")
    iq.set("id", iq_id)
    iq.set("from", domain)
    iq.set("to", to)
    etree.SubElement(iq, "{%s}ping" % ns.PING, nsmap={None: ns.PING})
    return etree.tostring(iq)
