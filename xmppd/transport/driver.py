"""What every c2s transport does with stream events, whatever carries the bytes.

:class:`~xmppd.stream.c2s.C2SStream` turns input into events; this driver performs
them against the server: rate limits and the auth backend for SASL, binding in the
router, routing stanzas, and the teardown that unbinds and sends unavailable presence.
TCP, direct TLS, WebSocket and BOSH shells differ only in how bytes move and in the
framing they gave the stream; they all run their events through one :class:`C2SDriver`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal

import trio

from xmppd.auth.base import AuthContext, AuthError
from xmppd.auth.ratelimit import LoginAttempt
from xmppd.jid import JID
from xmppd.session import Outbox, Session
from xmppd.stream.c2s import (
    AckAnswer,
    Authenticated,
    AuthFailed,
    BindRequest,
    C2SStream,
    CheckPassword,
    ClientStateChanged,
    FetchScram,
    ResumeRequest,
    SMEnabled,
    StanzaReceived,
    StartTLS,
    StreamEnded,
    StreamEvent,
)
from xmppd.stream.csi import HeldQueue
from xmppd.stream.sm import HandledCountTooHigh, R
from xmppd.xml.errors import StanzaError

if TYPE_CHECKING:
    from xmppd.server import Server

log = logging.getLogger("xmppd.c2s")

TransportName = Literal["tcp", "tls", "bosh", "websocket"]


class C2SDriver:
    """Performs one stream's events; the shell moves the bytes the stream produces."""

    __slots__ = (
        "_attempt",
        "_failures",
        "_limited",
        "_peer_closed",
        "outbox",
        "peer_ip",
        "server",
        "session",
        "start_tls",
        "stream",
        "transport",
        "user_agent",
    )

    def __init__(
        self,
        server: Server,
        stream: C2SStream,
        outbox: Outbox,
        peer_ip: str,
        transport: TransportName,
        *,
        start_tls: Callable[[], Awaitable[None]] | None = None,
        user_agent: str | None = None,
    ) -> None:
        self.server = server
        self.stream = stream
        self.outbox = outbox
        self.peer_ip = peer_ip
        #: ``tcp`` becomes ``tls`` after STARTTLS; WebSocket/BOSH keep their name.
        self.transport: TransportName = transport
        #: Flush, swap the transport for TLS and call ``stream.tls_established()``.
        self.start_tls = start_tls
        self.user_agent = user_agent
        self.session: Session | None = None
        self._failures = 0
        #: The SASL exchange in progress and its hold on the failed-login limits.
        self._attempt: LoginAttempt | None = None
        #: The last SASL failure was the limiter's refusal: nothing to count.
        self._limited = False
        #: The client ended the stream with ``</stream:stream>``: no resumption.
        self._peer_closed = False

    def _transport_name(self) -> TransportName:
        if self.transport == "tcp" and self.stream.tls_active:
            return "tls"
        return self.transport

    async def handle(self, events: list[StreamEvent]) -> bool:
        """Perform ``events`` (and those they lead to); ``False`` once the stream ended."""
        try:
            return await self._handle(events)
        finally:
            if self._attempt is not None and not self.stream.authenticating:
                # <abort/>, or the stream closed mid-exchange: no verdict, no count
                self._settle_login(None)

    async def _handle(self, events: list[StreamEvent]) -> bool:
        pending = list(events)
        while pending:
            event = pending.pop(0)
            session = self.session
            if session is not None and session.sm is not None:
                # XEP-0198 counts stanzas in wire order: what the stream produced while
                # parsing goes out before anything routing this event sends.
                self.flush()
            if isinstance(event, StreamEnded):
                self._peer_closed = event.by_peer
                return False
            if isinstance(event, StanzaReceived):
                await self.route(event)
                continue
            if isinstance(event, SMEnabled):
                self._sm_enabled(event)
                continue
            if isinstance(event, AckAnswer):  # the stanzas it counts are routed now
                if session is not None and session.ack_barriers:
                    await self._durable(session)
                self.stream.send(event.data)
                self.flush()
                continue
            if isinstance(event, ResumeRequest):
                pending.extend(self._resume(event))
                continue
            if isinstance(event, ClientStateChanged):
                self._client_state(event.active)
                continue
            pending.extend(await self._negotiation_event(event))
        return not self.stream.closed

    @staticmethod
    async def _durable(session: Session) -> None:
        """Before ``<a/>`` counts a stanza as received: what routing it queued for the
        database is committed (its archive rows), so a crash after the ack loses nothing
        the client was told the server has (XEP-0198 §4; issue 15)."""
        barriers, session.ack_barriers = session.ack_barriers, None
        for wait in (barriers or {}).values():
            await wait()

    def flush(self) -> None:
        """Move the stream's pending output into the outbox (keeps it in order)."""
        for frame in self.stream.frames_to_send():
            self.outbox.enqueue(frame)

    def idle_request(self) -> bytes | None:
        """An ``<r/>`` to send when output goes quiet with stanzas not yet acknowledged."""
        session = self.session
        sm = session.sm if session is not None else None
        if sm is None or not sm.request_pending():
            return None
        sm.requested()
        return R

    # ------------------------------------------------------ stream management
    def _sm_enabled(self, event: SMEnabled) -> None:
        session = self.session
        if session is None:  # cannot happen: <enable/> is only accepted once bound
            return
        session.sm = event.sm
        self.server.sm.register(session)
        self.flush()  # <enabled/> before any stanza counted under it
        log.info(
            "event=sm_enabled jid=%s resume=%s max=%d",
            session.full_str,
            event.sm.resumable,
            event.sm.max,
        )

    def _resume(self, event: ResumeRequest) -> list[StreamEvent]:
        """XEP-0198 §5: take the session over, or fail so the client can bind afresh."""
        stream = self.stream
        identity = stream.identity
        manager = self.server.sm
        if identity is None:
            return []
        owner = str(JID(identity.localpart, self.server.router.domain, None))
        session = manager.lookup(event.previd, owner)
        sm = session.sm if session is not None else None
        if session is None or sm is None:
            stream.resume_failed(manager.ended_h(event.previd, owner), "no such session")
            log.info("event=sm_resume_failed user=%s ip=%s", identity.localpart, self.peer_ip)
            return []
        try:
            sm.ack(event.h)
        except HandledCountTooHigh as exc:
            return [stream.close("undefined-condition", str(exc), app=exc.app_condition())]
        old = manager.take_over(session, self.outbox)
        if old is not None:
            # The old connection looked alive (its peer slept): XEP-0198 §5 'conflict'.
            old.close("conflict", "the session was resumed on another connection")
        session.transport = self._transport_name()
        session.ip = self.peer_ip
        session.login = identity.login  # the newest proof is what gets re-checked
        self.session = session
        stream.resumed(session.jid, sm)
        self.flush()
        resend = sm.unacked()
        for data in resend:
            self.outbox.enqueue(data)
        if resend:
            sm.requested()
            self.outbox.enqueue(R)
        # XEP-0352: the state is not restored on resumption; held stanzas go out now,
        # after the resent ones (which were sent before they were held)
        session.set_active()
        log.info(
            "event=sm_resumed jid=%s ip=%s transport=%s resent=%d",
            session.full_str,
            self.peer_ip,
            self.transport,
            len(resend),
        )
        return []

    def _client_state(self, active: bool) -> None:
        """XEP-0352 §4.2; §5.1: what ``<active/>`` flushes goes out before anything the
        client sends after it is handled (this runs before the next event)."""
        session = self.session
        if session is None:  # cannot happen: the stream accepts it only once bound
            return
        if active:
            flushed = session.set_active()
            log.info("event=csi_active jid=%s flushed=%d", session.full_str, flushed)
            return
        cfg = self.server.config.csi
        router = self.server.router
        full = session.full_str

        def nick_of(room: str) -> str | None:
            lookup = getattr(router.services.get(room.partition("@")[2]), "occupant_nick", None)
            return lookup(room, full) if lookup is not None else None

        session.set_inactive(
            HeldQueue(
                session.bare_str, nick_of, max_held=cfg.max_held, max_bytes=cfg.max_held_bytes
            )
        )
        log.info("event=csi_inactive jid=%s", full)

    async def route(self, event: StanzaReceived) -> None:
        session = self.session
        if session is None:  # cannot happen: the stream emits stanzas only once bound
            return
        if session.outbox is not self.outbox:
            return  # XEP-0198: resumed on another connection; this one is being closed
        router = self.server.router
        self.server.metrics.stanza_in(event.stanza.tag)
        try:
            await router.route(event.stanza, session)
        except Exception:
            log.exception("event=routing_failed jid=%s", session.full_str)
            router.bounce(event.stanza, StanzaError("internal-server-error"))

    async def _negotiation_event(self, event: StreamEvent) -> list[StreamEvent]:
        server = self.server
        stream = self.stream
        if isinstance(event, StartTLS):
            if self.start_tls is None:  # the stream only asks when tls_available
                return [stream.close("internal-server-error")]
            await self.start_tls()
            return []
        if isinstance(event, CheckPassword):
            ctx = self._begin_login()
            if ctx is None:
                return self._rate_limited()
            try:
                identity = await server.authenticator.check_password(
                    event.authcid, event.password, ctx
                )
            except AuthError as err:
                return stream.password_checked(err)
            return stream.password_checked(identity)
        if isinstance(event, FetchScram):
            ctx = self._begin_login()
            if ctx is None:
                return self._rate_limited()
            try:
                found = await server.authenticator.scram_credentials(
                    event.username,
                    event.hash_name,  # type: ignore[arg-type]
                    ctx,
                )
            except AuthError:
                found = None
            if self._attempt is not None and self._attempt.refused:
                return self._rate_limited()
            return stream.scram_credentials(found)
        if isinstance(event, AuthFailed):
            result = "rate_limited" if self._limited else event.condition
            server.metrics.login(result, event.mechanism)
            self._settle_login(False)
            self._failures += 1
            log.info(
                "event=auth_failed ip=%s transport=%s condition=%s",
                self.peer_ip,
                self.transport,
                event.condition,
            )
            # Slow down guessing from one connection: each failure costs more time.
            await trio.sleep(min(0.2 * self._failures, 2.0))
            return []
        if isinstance(event, Authenticated):
            server.metrics.login("success", event.mechanism)
            self._settle_login(True)
            log.info(
                "event=authenticated user=%s mechanism=%s ip=%s transport=%s",
                event.identity.localpart,
                event.mechanism,
                self.peer_ip,
                self.transport,
            )
            return []
        if isinstance(event, BindRequest):
            if not server.sm.make_room(event.jid):
                # RFC 6120 §7.6.2.1: the account has its limit of connected resources
                log.info("event=bind_refused jid=%s ip=%s", event.jid, self.peer_ip)
                text = "this account has too many resources bound"
                stream.bind_result(event.iq_id, StanzaError("resource-constraint", text))
                return []
            session = Session(event.jid, self.outbox, self._transport_name(), self.peer_ip)
            session.login = stream.identity.login if stream.identity is not None else None
            session.sent = server.metrics.client_sent  # counted per stanza, by kind
            replaced = server.router.bind(session)
            if replaced is not None:
                replaced.close("conflict", "replaced by a new session with the same resource")
            self.session = session
            stream.bind_result(event.iq_id, event.jid)
            log.info(
                "event=session_bound jid=%s ip=%s transport=%s",
                session.full_str,
                self.peer_ip,
                self.transport,
            )
            return []
        return []

    # ------------------------------------------------------ failed-login limits
    def _begin_login(self) -> AuthContext | None:
        """Take a place in the limits for one SASL exchange; ``None`` if refused."""
        self._settle_login(None)  # a stale one (cannot normally happen)
        attempt = self.server.begin_login(self.peer_ip)
        if attempt is None:
            return None
        self._attempt = attempt
        return AuthContext(
            peer_ip=self.peer_ip,
            transport=self._transport_name(),
            secure=self.stream.tls_active,
            user_agent=self.user_agent,
            gate=attempt,
        )

    def _rate_limited(self) -> list[StreamEvent]:
        self._limited = True
        return self.stream.rate_limited()

    def _settle_login(self, ok: bool | None) -> None:
        """Settle the exchange in progress: failed, succeeded, or (None) without verdict.

        A failure with no exchange (a malformed payload) counts for the address; the
        limiter's own refusal counts for nothing.
        """
        attempt, self._attempt = self._attempt, None
        limited, self._limited = self._limited, False
        if attempt is not None:
            if ok is None:
                attempt.release()
            elif ok:
                attempt.succeeded()
            else:
                attempt.failed()
        elif ok is False and not limited:
            self.server.record_login_failure(self.peer_ip)

    async def teardown(self) -> None:
        """Unbind and announce the session's end; safe to call more than once."""
        self._settle_login(None)
        self.stream.dispose()
        session = self.session
        self.session = None
        if session is None:
            return
        if session.outbox is not self.outbox:
            return  # resumed on another connection: that one carries it now
        server = self.server
        manager = server.sm
        sm = session.sm
        if (
            sm is not None
            and sm.resumable
            and not self._peer_closed
            and not manager.closing
            and not sm.over_limit
            and session.revoked is None
            and server.router.session_for(session.jid) is session
        ):
            manager.detach(session)
            return
        await manager.end_session(session)
