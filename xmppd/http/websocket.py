"""XMPP over WebSocket (RFC 7395): the trio shell of one accepted ASGI WebSocket.

The stream is the same :class:`~xmppd.stream.c2s.C2SStream` TCP uses, in the
``WEBSOCKET`` framing (``<open/>``/``<close/>``, one element per message), and its
events run through the same :class:`~xmppd.transport.driver.C2SDriver`. What is left
here: moving messages, a bounded send queue (a peer that does not read is cut off, as
on TCP), the negotiation deadline and idle pings (XEP-0199, as on TCP).
"""

from __future__ import annotations

import logging
import math
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio
from lxml import etree

from xmppd.session import Session
from xmppd.stream.c2s import C2SSettings, C2SStream
from xmppd.stream.framing import WEBSOCKET
from xmppd.transport.driver import C2SDriver
from xmppd.transport.progress import WriteProgress
from xmppd.xml import ns

if TYPE_CHECKING:
    from xmppd.server import Server

log = logging.getLogger("xmppd.websocket")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class WebSocketConnection:
    """One RFC 7395 session, from ``websocket.accept`` to close."""

    __slots__ = (
        "_cancel",
        "_closing",
        "_queue",
        "_queued",
        "_receive",
        "_send",
        "_wake",
        "driver",
        "peer_ip",
        "progress",
        "server",
        "stream",
    )

    def __init__(
        self,
        server: Server,
        settings: C2SSettings,
        receive: Receive,
        send: Send,
        peer_ip: str,
        user_agent: str | None,
    ) -> None:
        self.server = server
        self.peer_ip = peer_ip
        self.stream = C2SStream(settings, framing=WEBSOCKET)
        self.driver = C2SDriver(
            server, self.stream, self, peer_ip, "websocket", user_agent=user_agent
        )
        self._receive = receive
        self._send = send
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self.progress = WriteProgress(server.config.c2s.send_queue_bytes)
        self._wake = trio.Event()
        self._closing = False
        self._cancel: trio.CancelScope | None = None

    @property
    def session(self) -> Session | None:
        return self.driver.session

    # ---------------------------------------------------------------- Outbox
    def enqueue(self, data: bytes) -> bool:
        """A stanza from the router (serialised once, shared): one message."""
        if self._closing:
            return False
        if self._queued + len(data) > self.server.config.c2s.send_queue_bytes:
            log.warning(
                "event=slow_reader_disconnected jid=%s ip=%s queued=%d transport=websocket",
                self.session.full_str if self.session else "-",
                self.peer_ip,
                self._queued,
            )
            self._abort()
            return False
        frame = WEBSOCKET.outbound(data)
        self._queue.append(frame)
        self._queued += len(frame)
        self.progress.accept(len(frame))
        self._wake.set()
        return True

    def close(self, condition: str | None = None, text: str | None = None) -> None:
        if self._closing:
            return
        self.stream.close(condition, text)
        self._flush_stream()
        self._closing = True
        self._wake.set()

    def _abort(self) -> None:
        self._closing = True
        self._queue.clear()
        self._queued = 0
        self.progress.close()
        if self._cancel is not None:
            self._cancel.cancel()

    def _flush_stream(self) -> None:
        """The stream's own output (negotiation, errors, close): never refused."""
        for frame in self.stream.frames_to_send():
            self._queue.append(frame)
            self._queued += len(frame)
            self.progress.accept(len(frame))
        self._wake.set()

    # ------------------------------------------------------------------- run
    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._cancel = nursery.cancel_scope
                nursery.start_soon(self._writer)
                await self._reader()
                self._closing = True
                self._wake.set()
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except* Exception:
            log.exception("event=connection_crashed ip=%s transport=websocket", self.peer_ip)
        finally:
            self.progress.close()
            with trio.CancelScope(shield=True):
                await self.driver.teardown()

    async def _next_message(self, patience: float) -> bytes | None:
        """The next message's bytes; ``None`` after ``patience`` s; ``b""`` if the peer left."""
        with trio.move_on_after(patience):
            message = await self._receive()
            if message["type"] == "websocket.disconnect":
                return b""
            text = message.get("text")
            if text is not None:
                return text.encode("utf-8") or b" "
            return message.get("bytes") or b" "
        return None

    async def _reader(self) -> None:
        server = self.server
        c2s = server.config.c2s
        negotiate_until = trio.current_time() + c2s.handshake_timeout
        ping_id: str | None = None
        max_size = server.config.limits.max_stanza_size
        while not self._closing:
            if self.session is None:
                timeout = negotiate_until - trio.current_time()
                if timeout <= 0:
                    self.close("connection-timeout", "negotiation took too long")
                    return
            else:
                timeout = c2s.ping_timeout if ping_id else c2s.ping_interval
                if timeout <= 0:
                    timeout = math.inf
            data = await self._next_message(timeout)
            if data is None:
                if self.session is None:
                    continue  # the deadline check above closes
                if ping_id is not None:
                    self.close("connection-timeout", "no answer to ping")
                    return
                ping_id = "ping-" + secrets.token_hex(4)
                # through the session: a managed stream counts it like any stanza
                full = self.session.full_str
                self.session.send(_ping(server.config.server.domain, full, ping_id))
                continue
            if not data:
                return
            ping_id = None
            if len(data) > max_size:
                self.close("policy-violation", f"stanza larger than {max_size} bytes")
                return
            alive = await self.driver.handle(self.stream.receive_data(data))
            self._flush_stream()
            if not alive:
                return

    async def _writer(self) -> None:
        send = self._send
        try:
            while True:
                if not self._queue:
                    if self._closing:
                        break
                    self._wake = trio.Event()
                    await self._wake.wait()
                    continue
                frame = self._queue.popleft()
                self._queued -= len(frame)
                await send({"type": "websocket.send", "text": frame.decode("utf-8")})
                self.progress.wrote(len(frame))
            await send({"type": "websocket.close", "code": 1000})
        finally:
            if self._cancel is not None:
                self._cancel.cancel()


def _ping(domain: str, to: str, iq_id: str) -> bytes:
    iq = etree.Element("{%s}iq" % ns.CLIENT, nsmap={None: ns.CLIENT})
    iq.set("type", "get")
    iq.set("id", iq_id)
    iq.set("from", domain)
    iq.set("to", to)
    etree.SubElement(iq, "{%s}ping" % ns.PING, nsmap={None: ns.PING})
    return etree.tostring(iq)
