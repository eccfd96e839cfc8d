"""A reusable trio XEP-0114 component client (the API is in COMPONENT_API.md).

Built on :class:`xmppd.stream.component.ComponentClientStream` (the same parser and
handshake code as the server), so there is no second XML or stream implementation.

What it adds around the protocol:

- reconnect forever, with exponential backoff, full jitter and a floor
  (:class:`Backoff`), so a bridge never hammers a server that is down or refusing it;
- a bounded outgoing queue that survives reconnects: :meth:`ComponentClient.send` never
  blocks; when full the oldest stanza is dropped and the drops are logged with a count;
- ``on_connected`` is awaited after every handshake *before* the queue is flushed, so a
  bridge can (re)join its rooms first; :meth:`ComponentClient.send_now` bypasses the queue
  for exactly that;
- keepalive: a ping round trip through the server after ``keepalive_interval`` seconds of
  silence, and a reconnect when nothing at all arrives within ``keepalive_timeout`` more;
  pings from the server are answered here and never reach ``on_stanza``;
- clean shutdown: :meth:`ComponentClient.aclose` flushes the queue (bounded time), sends
  ``</stream:stream>`` and stops :meth:`ComponentClient.run`.

Delivery guarantee: a queued stanza is removed only after the socket accepted it, so a
connection lost mid-write re-sends that batch on the next connection (at least once for
the batch in flight; stanzas queued while disconnected arrive exactly once).
"""

from __future__ import annotations

import logging
import math
import random
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio
from lxml import etree

from xmppd.stream.component import (
    ComponentClientStream,
    Established,
    StanzaReceived,
    StreamEnded,
)
from xmppd.xml import ns

log = logging.getLogger("bridges.component")

StanzaHandler = Callable[[etree._Element], Awaitable[None]]
ConnectedHandler = Callable[[], Awaitable[None]]

_IQ = "{%s}iq" % ns.COMPONENT
_PING = "{%s}ping" % ns.PING
READ_SIZE = 65536
#: Most stanzas written in one ``send_all`` when flushing the queue.
BATCH = 200


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter and a floor.

    The n-th consecutive failure (n from 0) waits a uniform random time between
    ``floor`` and ``min(maximum, initial * 2**n)`` (never less than ``floor``): jitter
    spreads reconnecting bridges apart, the floor keeps even a lucky draw from
    reconnecting in a tight loop (e.g. above an IRC server's ghost-reaping window).
    A connection that stayed up ``reset_after`` seconds resets the sequence.
    """

    initial: float = 1.0
    maximum: float = 60.0
    floor: float = 0.0
    reset_after: float = 10.0

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial or self.floor < 0:
            raise ValueError("need 0 < initial <= maximum and floor >= 0")

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait before reconnect number ``attempt`` (0-based)."""
        cap = min(self.maximum, self.initial * 2 ** min(attempt, 62))
        low = self.floor
        high = max(low, cap)
        return low + (high - low) * rng()


class _Connection:
    """One live TCP connection and its protocol state."""

    __slots__ = ("proto", "received", "transport")

    def __init__(self, transport: trio.SocketStream, proto: ComponentClientStream) -> None:
        self.transport = transport
        self.proto = proto
        #: The stream ended (error, close, EOF): stop using it.
        self.received = trio.Event()


class ComponentClient:
    """Connects to an XMPP server as component ``domain`` and keeps it connected."""

    def __init__(
        self,
        host: str,
        port: int,
        domain: str,
        secret: str,
        on_stanza: StanzaHandler,
        on_connected: ConnectedHandler | None = None,
        queue_size: int = 1000,
        backoff: Backoff | None = None,
        *,
        connect_timeout: float = 10.0,
        handshake_timeout: float = 10.0,
        flush_timeout: float = 5.0,
        keepalive_interval: float = 60.0,
        keepalive_timeout: float = 30.0,
        max_stanza_size: int = 1_048_576,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.host = host
        self.port = port
        self.domain = domain
        self._secret = secret
        self.on_stanza = on_stanza
        self.on_connected = on_connected
        self.queue_size = queue_size
        self.backoff = backoff or Backoff()
        self.connect_timeout = connect_timeout
        self.handshake_timeout = handshake_timeout
        self.flush_timeout = flush_timeout
        self.keepalive_interval = keepalive_interval
        self.keepalive_timeout = keepalive_timeout
        self.max_stanza_size = max_stanza_size
        #: (sequence number, serialised stanza), oldest first.
        self._queue: deque[tuple[int, bytes]] = deque()
        self._seq = 0
        self._queue_changed = trio.Event()
        self._conn: _Connection | None = None
        self._connected = False
        self._connected_event = trio.Event()
        self._send_lock = trio.Lock()
        self._closing = False
        self._run_scope: trio.CancelScope | None = None
        self._stopped = trio.Event()
        self._ping_id: str | None = None
        self._last_rx = 0.0
        #: Stanzas dropped because the queue was full (total, and not yet logged).
        self.dropped = 0
        self._dropped_unlogged = 0
        self._drop_logged_at = -math.inf
        #: Completed handshakes so far (1 after the first connection).
        self.connections = 0
        self.attempts = 0

    # ------------------------------------------------------------ public API
    @property
    def connected(self) -> bool:
        """Handshake done and ``on_connected`` finished: stanzas flow."""
        return self._connected

    @property
    def queued(self) -> int:
        """Stanzas waiting to be written."""
        return len(self._queue)

    async def wait_connected(self) -> None:
        """Return once connected (immediately if already)."""
        while not self._connected:
            await self._connected_event.wait()

    def send(self, stanza: etree._Element | bytes) -> None:
        """Queue a stanza; never blocks. When the queue is full the oldest is dropped."""
        if self._closing:
            log.warning("event=component_send_after_close domain=%s", self.domain)
            return
        data = ComponentClientStream.stanza_bytes(stanza)
        if len(self._queue) >= self.queue_size:
            self._queue.popleft()
            self.dropped += 1
            self._dropped_unlogged += 1
            self._log_drops()
        self._seq += 1
        self._queue.append((self._seq, data))
        self._queue_changed.set()

    async def send_now(self, stanza: etree._Element | bytes) -> None:
        """Write a stanza immediately, ahead of the queue (e.g. a MUC join presence from
        ``on_connected``). Raises :class:`ConnectionError` when there is no connection."""
        conn = self._conn
        if conn is None or conn.proto.closed:
            raise ConnectionError(f"component {self.domain} is not connected")
        data = ComponentClientStream.stanza_bytes(stanza)
        async with self._send_lock:
            await conn.transport.send_all(data)

    async def aclose(self) -> None:
        """Flush the queue (at most ``flush_timeout`` s), close the stream, stop ``run``."""
        if self._closing:
            await self._stopped.wait()
            return
        self._closing = True
        with trio.move_on_after(self.flush_timeout):
            while self._queue and self._connected:
                self._queue_changed.set()
                await trio.sleep(0.01)
        if self._queue:
            log.warning(
                "event=component_closed_unsent domain=%s count=%d", self.domain, len(self._queue)
            )
        self._log_drops(force=True)
        conn = self._conn
        if conn is not None and not conn.proto.closed:
            with trio.move_on_after(2):
                try:
                    async with self._send_lock:
                        await conn.transport.send_all(conn.proto.close())
                    await conn.received.wait()  # the server's </stream:stream>
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
        if self._run_scope is not None:
            self._run_scope.cancel()
        with trio.move_on_after(5):
            await self._stopped.wait()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, handshake, read, reconnect with backoff, until :meth:`aclose`."""
        try:
            with trio.CancelScope() as self._run_scope:
                task_status.started()
                attempt = 0
                while not self._closing:
                    self.attempts += 1
                    started = trio.current_time()
                    established = await self._connect_once()
                    if self._closing:
                        break
                    if established and trio.current_time() - started >= self.backoff.reset_after:
                        attempt = 0
                    delay = self.backoff.delay(attempt)
                    attempt += 1
                    log.info(
                        "event=component_reconnect_scheduled domain=%s delay=%.2f attempt=%d",
                        self.domain,
                        delay,
                        attempt,
                    )
                    await trio.sleep(delay)
        finally:
            self._set_disconnected()
            self._stopped.set()

    # ------------------------------------------------------------- internals
    def _log_drops(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._dropped_unlogged and (force or now - self._drop_logged_at >= 5.0):
            log.warning(
                "event=component_queue_overflow domain=%s dropped=%d total_dropped=%d size=%d",
                self.domain,
                self._dropped_unlogged,
                self.dropped,
                self.queue_size,
            )
            self._dropped_unlogged = 0
            self._drop_logged_at = now

    def _set_disconnected(self) -> None:
        if self._connected:
            self._connected = False
            self._connected_event = trio.Event()
        self._conn = None

    async def _connect_once(self) -> bool:
        """One connection from connect to close; True if the handshake succeeded."""
        transport: trio.SocketStream | None = None
        established = False
        try:
            with trio.fail_after(self.connect_timeout):
                transport = await trio.open_tcp_stream(self.host, self.port)
            proto = ComponentClientStream(
                self.domain, self._secret, max_stanza_size=self.max_stanza_size
            )
            conn = _Connection(transport, proto)
            await transport.send_all(proto.initiate())
            with trio.fail_after(self.handshake_timeout):
                error = await self._handshake(conn)
            if error is not None:
                log.warning(
                    "event=component_refused domain=%s host=%s port=%d condition=%s",
                    self.domain,
                    self.host,
                    self.port,
                    error,
                )
                return False
            established = True
            self.connections += 1
            self._conn = conn
            log.info("event=component_connected domain=%s host=%s port=%d", self.domain,
                     self.host, self.port)  # fmt: skip
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reader, conn, nursery.cancel_scope)
                if self.on_connected is not None:
                    try:
                        await self.on_connected()
                    except Exception:
                        log.exception("event=component_on_connected_failed domain=%s", self.domain)
                if not conn.received.is_set():
                    self._connected = True
                    self._connected_event.set()
                    nursery.start_soon(self._writer, conn, nursery.cancel_scope)
                    nursery.start_soon(self._keepalive, conn, nursery.cancel_scope)
        except trio.TooSlowError:
            log.warning("event=component_timeout domain=%s established=%s", self.domain,
                        established)  # fmt: skip
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.warning(
                "event=component_connection_failed domain=%s host=%s port=%d error=%s",
                self.domain,
                self.host,
                self.port,
                type(exc).__name__,
            )
        finally:
            was_connected = self._conn is not None
            self._set_disconnected()
            if transport is not None:
                with trio.CancelScope(shield=True):
                    try:
                        await transport.aclose()
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        pass
            if was_connected:
                log.info("event=component_disconnected domain=%s queued=%d", self.domain,
                         len(self._queue))  # fmt: skip
        return established

    async def _handshake(self, conn: _Connection) -> str | None:
        """Until ``<handshake/>``; returns the stream error condition on refusal."""
        while True:
            data = await conn.transport.receive_some(READ_SIZE)
            if not data:
                return "connection-closed"
            events = conn.proto.receive_data(data)
            out = conn.proto.data_to_send()
            if out:
                try:
                    await conn.transport.send_all(out)
                except (trio.BrokenResourceError, OSError):
                    if not events:
                        raise
            for event in events:
                if isinstance(event, Established):
                    return None
                if isinstance(event, StreamEnded):
                    return event.error.condition if event.error else "connection-closed"

    async def _reader(self, conn: _Connection, scope: trio.CancelScope) -> None:
        try:
            while True:
                data = await conn.transport.receive_some(READ_SIZE)
                if not data:
                    return
                self._last_rx = trio.current_time()
                for event in conn.proto.receive_data(data):
                    if isinstance(event, StanzaReceived):
                        await self._dispatch(conn, event.stanza)
                    elif isinstance(event, StreamEnded):
                        if event.error is not None:
                            log.warning(
                                "event=component_stream_error domain=%s condition=%s text=%s",
                                self.domain,
                                event.error.condition,
                                event.error.text or "",
                            )
                        out = conn.proto.data_to_send()
                        if out and not self._closing:
                            with trio.move_on_after(1):
                                async with self._send_lock:
                                    await conn.transport.send_all(out)
                        return
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return
        finally:
            conn.received.set()
            self._connected = False
            self._connected_event = trio.Event()
            scope.cancel()

    async def _dispatch(self, conn: _Connection, stanza: etree._Element) -> None:
        if stanza.tag == _IQ:
            kind = stanza.get("type")
            if kind == "get" and len(stanza) == 1 and stanza[0].tag == _PING:
                await self._reply_pong(conn, stanza)
                return
            if kind in ("result", "error") and stanza.get("id") == self._ping_id:
                return  # our keepalive round trip
        try:
            await self.on_stanza(stanza)
        except Exception:
            log.exception("event=component_on_stanza_failed domain=%s", self.domain)

    async def _reply_pong(self, conn: _Connection, ping: etree._Element) -> None:
        pong = etree.Element(_IQ, nsmap={None: ns.COMPONENT})
        pong.set("type", "result")
        pong.set("id", ping.get("id") or "")
        pong.set("from", ping.get("to") or self.domain)
        if ping.get("from"):
            pong.set("to", ping.get("from") or "")
        async with self._send_lock:
            await conn.transport.send_all(etree.tostring(pong))

    async def _writer(self, conn: _Connection, scope: trio.CancelScope) -> None:
        """Flush the queue in batches; an item leaves it only once written."""
        try:
            while True:
                if not self._queue:
                    self._queue_changed = trio.Event()
                    if not self._queue:
                        await self._queue_changed.wait()
                    continue
                batch = [self._queue[i] for i in range(min(BATCH, len(self._queue)))]
                last = batch[-1][0]
                async with self._send_lock:
                    await conn.transport.send_all(b"".join(data for _, data in batch))
                # send() may have dropped from the head meanwhile: pop by sequence number
                while self._queue and self._queue[0][0] <= last:
                    self._queue.popleft()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            scope.cancel()

    async def _keepalive(self, conn: _Connection, scope: trio.CancelScope) -> None:
        """Ping ourselves through the server after silence; give up when nothing comes."""
        if self.keepalive_interval <= 0:
            return
        self._last_rx = trio.current_time()
        while True:
            idle = trio.current_time() - self._last_rx
            if idle < self.keepalive_interval:
                await trio.sleep(self.keepalive_interval - idle)
                continue
            self._ping_id = "keepalive-" + secrets.token_hex(4)
            ping = etree.Element(_IQ, nsmap={None: ns.COMPONENT})
            ping.set("type", "get")
            ping.set("id", self._ping_id)
            ping.set("from", self.domain)
            ping.set("to", self.domain)
            etree.SubElement(ping, _PING, nsmap={None: ns.PING})
            sent_at = trio.current_time()
            try:
                async with self._send_lock:
                    await conn.transport.send_all(etree.tostring(ping))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                scope.cancel()
                return
            await trio.sleep(self.keepalive_timeout)
            if self._last_rx < sent_at:
                log.warning("event=component_keepalive_timeout domain=%s", self.domain)
                scope.cancel()
                return


__all__ = ["Backoff", "ComponentClient"]
