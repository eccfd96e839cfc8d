"""The trio shell for XEP-0114 components: listener, connections, and the router hook.

The protocol lives in :class:`xmppd.stream.component.ComponentServerStream`. Each
configured component domain has one :class:`ComponentService` registered at
``router.services[domain]`` for the server's whole life, connected or not, so a stanza
for a component that is down gets ``service-unavailable`` rather than "no such server".

One connection per domain: a second one is refused with ``<conflict/>`` and the first
keeps running. XEP-0114 §3 has the server refuse a component name it will not service
with a stream error "e.g., <conflict/> or <host-unknown/>" in answer to the stream
header; we answer ``conflict`` only after the handshake proved the secret, so an
unauthenticated peer learns nothing about which components are connected and cannot
make us ping them. Refusing the newcomer, unlike c2s resource conflicts, keeps two copies
of one bridge from knocking each other off forever; a dead first connection is found
quickly because the conflict makes the server ping it, and the newcomer retries with
backoff.

Reload (:meth:`ComponentHub.reconfigure`): an added domain can connect at once (the
listener is bound then if it was not); a removed one is disconnected with ``host-gone``
and refused afterwards; a re-keyed one is disconnected with ``reset`` and must reconnect
with the new secret. Dropping the connection made with the old secret is deliberate: a
secret is changed because it leaked or its bridge was replaced, and a connection that
proved the old secret would otherwise outlive it for as long as it stays up. A handshake
in progress during the change is checked again against the new settings before it is
accepted.

Admission: connections at once are capped per address and in total
(``component_listener.max_connections_per_ip`` / ``max_connections``), and an address
whose handshakes failed ``limits.auth_failures_per_minute`` times in the last minute is
refused at once, before anything is read. Refusals and failed handshakes are logged
through the server's :class:`~xmppd.transport.refusals.RefusalLog`: the first of each
kind per address, then one summary line, never one line per attempt.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio
from lxml import etree

from xmppd.auth.ratelimit import FailureLimiter
from xmppd.config import ComponentConfig
from xmppd.jid import JID
from xmppd.metrics import COMPONENT
from xmppd.stream.component import (
    ComponentServerStream,
    ComponentSettings,
    HandshakeVerified,
    StanzaReceived,
    StreamEnded,
)
from xmppd.transport.admission import Admission
from xmppd.transport.keepalive import Keepalive, ping_iq
from xmppd.transport.outbox import Outbox
from xmppd.xml import ns
from xmppd.xml.errors import StanzaError

if TYPE_CHECKING:
    from xmppd.router import Router
    from xmppd.server import Server
    from xmppd.session import Session

log = logging.getLogger("xmppd.component")

READ_SIZE = 65536


class ComponentService:
    """The router's destination for one component domain."""

    __slots__ = ("config", "connection", "domain", "router")

    keeps_stanza = True  # serialised as it is (an error reply is a new element)

    def __init__(self, router: Router, config: ComponentConfig) -> None:
        self.router = router
        self.config = config
        self.domain = config.domain
        self.connection: ComponentConnection | None = None

    async def handle(self, stanza: etree._Element, to: JID, origin: Session | None) -> None:
        self.deliver(stanza, to)

    def deliver(self, stanza: etree._Element, to: JID) -> bool:
        """Send ``stanza`` down the component's stream, or answer for it while it is down.

        Returns whether it was queued for the component (the MUC drops an occupant
        whose stanzas cannot be delivered).
        """
        conn = self.connection
        if conn is not None and conn.send_stanza(stanza):
            return True
        if stanza.tag == "{%s}presence" % ns.CLIENT:
            return False  # presence to an absent entity is dropped (RFC 6121 §4.3, §4.6)
        if stanza.tag == "{%s}iq" % ns.CLIENT and stanza.get("type") not in ("get", "set"):
            return False
        self.router.bounce(
            stanza, StanzaError("service-unavailable", f"{self.domain} is not connected")
        )
        return False


@dataclass(slots=True)
class ComponentChanges:
    """What :meth:`ComponentHub.reconfigure` did, by domain (never a secret)."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    rekeyed: list[str] = field(default_factory=list)
    #: Same secret, other ``muc_nicks``.
    changed: list[str] = field(default_factory=list)


class ComponentHub:
    """All configured components of one server: settings, services, the listener."""

    def __init__(self, server: Server) -> None:
        self.server = server
        cfg = server.config
        self.services: dict[str, ComponentService] = {}
        for comp in cfg.components:
            self._add(comp)
        #: The domains and secrets new handshakes are checked against (replaced whole on
        #: reload; a handshake in progress keeps the snapshot it started with).
        self.settings = self._settings(cfg.components)
        self.connections: set[ComponentConnection] = set()
        self.port: int | None = None
        self._listeners: list[trio.SocketListener] | None = None
        self._bound = trio.Event()
        listener = cfg.component_listener
        self.admission = Admission(
            listener.max_connections_per_ip, listener.max_connections, cfg.limits.ipv6_prefix
        )
        #: Failed handshakes per address group (not shared with c2s logins: a broken
        #: bridge must not lock local users out, nor they it).
        self.failures = FailureLimiter(cfg.limits.auth_failures_per_minute)

    def _add(self, comp: ComponentConfig) -> None:
        service = ComponentService(self.server.router, comp)
        self.services[comp.domain] = service
        self.server.router.services[comp.domain] = service
        muc = getattr(self.server, "muc", None)
        if muc is not None:
            muc.ctx.component_nicks[comp.domain] = tuple(comp.muc_nicks)

    def _settings(self, components: Sequence[ComponentConfig]) -> ComponentSettings:
        limits = self.server.config.limits
        return ComponentSettings(
            secrets={c.domain: c.secret for c in components},
            max_stanza_size=limits.max_stanza_size,
            max_depth=limits.max_depth,
        )

    def reconfigure(self, components: Sequence[ComponentConfig]) -> ComponentChanges:
        """Serve ``components`` from now on (a reload); see the module docstring."""
        wanted = {c.domain: c for c in components}
        changes = ComponentChanges()
        for domain in [d for d in self.services if d not in wanted]:
            service = self.services[domain]
            self._cut(service, "host-gone", f"{domain} is no longer served here")  # first:
            del self.services[domain]  # detaching needs the service (occupants, disco)
            self.server.router.services.pop(domain, None)
            muc = getattr(self.server, "muc", None)
            if muc is not None:
                muc.ctx.component_nicks.pop(domain, None)
            changes.removed.append(domain)
        for domain, comp in wanted.items():
            service = self.services.get(domain)
            if service is None:
                self._add(comp)
                changes.added.append(domain)
                continue
            old, service.config = service.config, comp
            muc = getattr(self.server, "muc", None)
            if muc is not None:
                muc.ctx.component_nicks[domain] = tuple(comp.muc_nicks)
            if not hmac.compare_digest(old.secret.encode(), comp.secret.encode()):
                self._cut(service, "reset", "the secret changed: reconnect with the new one")
                changes.rekeyed.append(domain)
            elif old.muc_nicks != comp.muc_nicks:
                changes.changed.append(domain)
        self.settings = self._settings(components)
        return changes

    def _cut(self, service: ComponentService, condition: str, text: str) -> None:
        """End ``service``'s connection now: detached at once (so its successor is not a
        ``conflict``), its room occupants gone (status 333), then the stream error."""
        conn = service.connection
        if conn is None:
            return
        assert conn.domain is not None
        self.detach(conn.domain, conn)
        log.info("event=component_cut domain=%s condition=%s", conn.domain, condition)
        conn.close(condition, text)

    def refusal(self, domain: str, settings: ComponentSettings) -> tuple[str, str] | None:
        """Why a handshake verified against ``settings`` must not be accepted now: the
        domain was removed, or its secret changed, while it was in progress."""
        current = self.settings.secrets.get(domain)
        if current is None or domain not in self.services:
            return ("host-gone", f"{domain} is no longer served here")
        if not hmac.compare_digest(current.encode(), settings.secrets[domain].encode()):
            return ("not-authorized", "the secret changed during the handshake: reconnect")
        return None

    def attach(self, domain: str, conn: ComponentConnection) -> ComponentConnection | None:
        """Make ``conn`` the connection of ``domain``; return the one already there."""
        service = self.services[domain]
        if service.connection is not None:
            return service.connection
        service.connection = conn
        self.server.router.disco_items[domain] = None
        return None

    def detach(self, domain: str, conn: ComponentConnection) -> None:
        service = self.services.get(domain)
        if service is not None and service.connection is conn:
            service.connection = None
            self.server.router.disco_items.pop(domain, None)
            muc = getattr(self.server, "muc", None)
            if muc is not None:
                muc.domain_gone(domain)  # its occupants leave the rooms (status 333)

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Listen once components are configured (at start, or when a reload adds the
        first: :meth:`listen`); ``started`` with the port, or None while not listening."""
        if self.services:
            await self.listen()
        task_status.started(self.port)
        await self._bound.wait()
        assert self._listeners is not None
        await trio.serve_listeners(self._handle, self._listeners)

    async def listen(self) -> int:
        """Bind the listener unless it is bound; its port. ``OSError`` if it cannot bind."""
        if self._listeners is None:
            cfg = self.server.config.component_listener
            listeners = await trio.open_tcp_listeners(cfg.port, host=cfg.host)
            self._listeners = listeners
            self.port = listeners[0].socket.getsockname()[1]
            log.info(
                "event=listening service=component address=%s port=%d components=%d",
                cfg.host,
                self.port,
                len(self.services),
            )
            self._bound.set()
        assert self.port is not None
        return self.port

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            peer = stream.socket.getpeername()
            ip = peer[0] if isinstance(peer, tuple) else str(peer)
        except OSError:
            await stream.aclose()
            return
        refusals = self.server.refusals
        if not self.failures.allowed(self.admission.key(ip)):
            refusals.refused("component", "too_many_failures", ip)
            await _refuse(stream, self.settings, "too many failed handshakes, try later")
            return
        ticket = self.admission.try_admit(ip)
        if ticket is None:
            refusals.refused("component", "total" if self.admission.full else "per_address", ip)
            await _refuse(stream, self.settings, "too many connections")
            return
        conn = ComponentConnection(self, stream, ip)
        with ticket:  # given back however the connection ends
            self.connections.add(conn)
            try:
                await conn.run()
            finally:
                self.connections.discard(conn)

    def handshake_failed(self, ip: str, condition: str) -> None:
        """Count a failed handshake for ``ip``'s group; logged, summarised under a flood."""
        self.failures.record_failure(self.admission.key(ip))
        self.server.refusals.refused("component", condition, ip)

    async def shutdown(self, grace: float = 2.0) -> None:
        for conn in list(self.connections):
            conn.close("system-shutdown", "the server is shutting down")
        with trio.move_on_after(grace):
            while self.connections:  # noqa: ASYNC110 - connections end on their own tasks
                await trio.sleep(0.05)


class ComponentConnection:
    """One accepted component TCP connection, from accept to close."""

    def __init__(self, hub: ComponentHub, transport: trio.SocketStream, peer_ip: str) -> None:
        self.hub = hub
        self.transport = transport
        self.peer_ip = peer_ip
        self.stream = ComponentServerStream(hub.settings)
        cfg = hub.server.config.component_listener
        self.outbox = Outbox(cfg.send_queue_bytes)
        self.keepalive = Keepalive(cfg.ping_interval, cfg.ping_timeout, self._ping)
        self.domain: str | None = None
        self._cancel: trio.CancelScope | None = None

    # ----------------------------------------------------------- outbox
    def send_stanza(self, stanza: etree._Element) -> bool:
        self.hub.server.metrics.stanza_out(stanza.tag, COMPONENT)
        return self.enqueue(self.stream.stanza_bytes(stanza))

    def enqueue(self, data: bytes) -> bool:
        if self.outbox.offer(data):
            return True
        if not self.stream.closed:
            log.warning(
                "event=slow_component_disconnected domain=%s queued=%d",
                self.domain,
                self.outbox.queued,
            )
            self.stream.close()
            self.outbox.cut()
            if self._cancel is not None:
                self._cancel.cancel()
        return False

    def close(self, condition: str | None = None, text: str | None = None) -> None:
        """End the stream politely: queue the error and close tag; the writer hangs up."""
        if self.stream.closed:
            return
        self.stream.close(condition, text)
        self.outbox.finish(self.stream.data_to_send())

    def poke(self) -> None:
        """Someone else claims our domain: ping now, so a dead peer is noticed soon."""
        if self.stream.established:
            self.keepalive.poke()

    def _ping(self) -> None:
        assert self.domain is not None
        iq = ping_iq(self.hub.server.config.server.domain, self.domain)
        self.enqueue(self.stream.stanza_bytes(iq))

    # -------------------------------------------------------------- run
    async def run(self) -> None:
        cfg = self.hub.server.config.component_listener
        try:
            with trio.CancelScope() as self._cancel:
                with trio.move_on_after(cfg.handshake_timeout) as deadline:
                    ok = await self._handshake()
                if deadline.cancelled_caught:
                    self.hub.handshake_failed(self.peer_ip, "connection-timeout")
                    self.stream.close("connection-timeout", "the handshake took too long")
                    await self._send_direct()
                    return
                if not ok:
                    return
                log.info("event=component_connected domain=%s ip=%s", self.domain, self.peer_ip)
                self.hub.server.metrics.component_connects.labels(self.domain).inc()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer)
                    await self._reader()
                    self.close()  # flush what is queued, then our close tag
        except* (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, OSError):
            pass  # the peer went away
        except* Exception:
            log.exception("event=component_crashed domain=%s ip=%s", self.domain, self.peer_ip)
        finally:
            self.stream.dispose()
            if self.domain is not None:
                self.hub.detach(self.domain, self)
                log.info("event=component_disconnected domain=%s", self.domain)
            with trio.CancelScope(shield=True):
                try:
                    await self.transport.aclose()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass

    async def _send_direct(self) -> None:
        data = self.stream.data_to_send()
        if data:
            with trio.move_on_after(2):
                await self.transport.send_all(data)

    async def _handshake(self) -> bool:
        """Up to an accepted handshake; ``False`` if the stream ended before."""
        while True:
            data = await self.transport.receive_some(READ_SIZE)
            if not data:
                return False
            for event in self.stream.receive_data(data):
                if isinstance(event, HandshakeVerified):
                    refusal = self.hub.refusal(event.domain, self.stream.settings)
                    existing = None if refusal else self.hub.attach(event.domain, self)
                    if refusal is not None:
                        self.stream.close(*refusal)
                    elif existing is not None:
                        log.warning(
                            "event=component_conflict domain=%s ip=%s",
                            event.domain,
                            self.peer_ip,
                        )
                        existing.poke()
                        self.stream.close("conflict", f"{event.domain} is already connected")
                    else:
                        self.domain = event.domain
                        self.stream.accept()
                elif isinstance(event, StreamEnded):
                    if event.error is not None and event.error.condition != "conflict":
                        self.hub.handshake_failed(self.peer_ip, event.error.condition)
            await self._send_direct()
            if self.stream.closed:
                return False
            if self.stream.established:
                return True

    async def _reader(self) -> None:
        """Read and route; ping after ``ping_interval`` of silence, hang up after
        ``ping_timeout`` more (any data counts as an answer)."""
        router = self.hub.server.router
        metrics = self.hub.server.metrics
        while not self.stream.closed:
            data = await self.keepalive.receive(self._read)
            if data is None:
                self.close("connection-timeout", "no answer to ping")
                return
            if not data:
                return
            for event in self.stream.receive_data(data):
                if isinstance(event, StanzaReceived):
                    metrics.stanza_in(event.stanza.tag, COMPONENT)
                    try:
                        await router.route(event.stanza, None)
                    except Exception:
                        log.exception("event=routing_failed domain=%s", self.domain)
                        router.bounce(event.stanza, StanzaError("internal-server-error"))
                elif isinstance(event, StreamEnded):
                    self.outbox.finish(self.stream.data_to_send())
                    return
            out = self.stream.data_to_send()
            if out:
                self.enqueue(out)

    async def _read(self) -> bytes:
        return await self.transport.receive_some(READ_SIZE)

    async def _write(self, chunks: list[bytes]) -> None:
        await self.transport.send_all(b"".join(chunks))

    async def _writer(self) -> None:
        try:
            await self.outbox.drain(self._write)
        finally:
            # flushed (or failed): hang up, which also ends the reader
            if self._cancel is not None:
                self._cancel.cancel()


async def _refuse(stream: trio.SocketStream, settings: ComponentSettings, text: str) -> None:
    """``policy-violation`` before reading anything (header, error, close), then hang up."""
    refusal = ComponentServerStream(settings)
    refusal.close("policy-violation", text)
    with trio.CancelScope(shield=True), trio.move_on_after(1):
        try:
            await stream.send_all(refusal.data_to_send())
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            try:
                await stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
