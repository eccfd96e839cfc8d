"""BOSH connection manager: the trio shell around :mod:`xmppd.bosh.session` for ``/http-bind``.

:class:`BoshManager` is what :func:`xmppd.http.app.make_bosh_handler` plugs in: it owns
the session table (sid -> :class:`BoshConnection`) and an inactivity reaper task.
Each :class:`BoshConnection` is one XMPP session carried over BOSH: the same
:class:`~xmppd.stream.c2s.C2SStream` (``BOSH`` framing) and
:class:`~xmppd.transport.driver.C2SDriver` as TCP and WebSocket, so SASL, bind and
routing are exactly theirs. It is also the session's :class:`~xmppd.session.Outbox`:
stanzas routed to the user are buffered in the sans-IO session (bounded) and go out in
the next response; a held request is a :class:`trio.Event` with its ``wait`` deadline.

Every request gets an answer: a request that ends its session (a wrong key, a rid out
of the window) is answered at once by :meth:`BoshSession.receive`, every other waiting
request gets the terminate body, and a request finding its session gone is answered
from what the session left (no request ever waits on a session that no longer exists).
A session still negotiating ``c2s.handshake_timeout`` seconds after its creation is
closed with ``connection-timeout``, as on TCP and WebSocket; each session counts against
the server's admission for its client address (see :mod:`xmppd.http.serving`).

The session id is a bearer secret: it is never logged.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any

import trio

from xmppd.bosh.body import BadBody, BodyRequest, parse_body, terminate_body
from xmppd.bosh.session import (
    LEGACY_STATUS,
    BoshSession,
    CreationError,
    Hold,
    Respond,
)
from xmppd.http.request import HttpRequest, HttpResponse
from xmppd.stream.c2s import C2SSettings, C2SStream
from xmppd.stream.framing import BOSH
from xmppd.transport.admission import AdmissionTicket
from xmppd.transport.driver import C2SDriver
from xmppd.transport.progress import WriteProgress

if TYPE_CHECKING:
    from xmppd.http.app import HttpApp
    from xmppd.server import Server
    from xmppd.session import Session

log = logging.getLogger("xmppd.bosh")

_NO_STORE = [("cache-control", "no-store")]
_INFO = (
    b"xmppd BOSH connection manager (XEP-0124 / XEP-0206).\n"
    b"POST <body xmlns='http://jabber.org/protocol/httpbind'/> requests to this URL.\n"
)


def _terminal(condition: str, status: int = 200) -> HttpResponse:
    return HttpResponse(status, terminate_body(condition), "text/xml; charset=utf-8", _NO_STORE)


class _Answer:
    """Where the response for one rid lands; shared by a request and its retransmissions."""

    __slots__ = ("body", "event", "status")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.body = b""
        #: Not 200 only for a legacy client's terminal error (an HTTP status, no body).
        self.status = 200

    def settle(self, outcome: Respond) -> None:
        self.body, self.status = outcome.body, outcome.status
        self.event.set()


class BoshConnection:
    """One BOSH session: sans-IO core + c2s stream + driver; the router's outbox."""

    __slots__ = (
        "_answers",
        "_lock",
        "_torn_down",
        "core",
        "driver",
        "manager",
        "peer_ip",
        "progress",
        "stream",
        "ticket",
    )

    def __init__(
        self,
        manager: BoshManager,
        core: BoshSession,
        settings: C2SSettings,
        peer_ip: str,
        user_agent: str | None,
    ) -> None:
        self.manager = manager
        self.core = core
        self.peer_ip = peer_ip
        self.stream = C2SStream(settings, framing=BOSH)
        self.driver = C2SDriver(
            manager.server, self.stream, self, peer_ip, "bosh", user_agent=user_agent
        )
        self._answers: dict[int, _Answer] = {}
        self._lock = trio.Lock()
        self._torn_down = False
        #: This session's place in the server's admission (released when it ends).
        self.ticket: AdmissionTicket | None = None
        #: "Written" = put into a response body.
        self.progress = WriteProgress(core.limits.max_buffer_bytes)

    @property
    def session(self) -> Session | None:
        return self.driver.session

    # ---------------------------------------------------------------- Outbox
    def enqueue(self, data: bytes) -> bool:
        """A stanza from the router: buffered until the next response (bounded)."""
        core = self.core
        if core.ended:
            return False
        frame = BOSH.outbound(data)
        if not core.push(frame):
            log.warning(
                "event=slow_reader_disconnected jid=%s ip=%s queued=%d transport=bosh",
                self.session.full_str if self.session else "-",
                self.peer_ip,
                core.buffered,
            )
            self.close("policy-violation", "too much data waiting for the client")
            return False
        self.progress.accept(len(frame))
        self._flush()
        return True

    def close(self, condition: str | None = None, text: str | None = None) -> None:
        """End the stream from the server's side (conflict, shutdown, slow reader)."""
        if self.core.ended:
            return
        self.stream.close(condition, text)
        self._collect()
        if condition is None:
            self.core.end(None)
        elif condition == "system-shutdown":
            self.core.end("system-shutdown")
        else:
            self.core.end("remote-stream-error")
        self._flush()
        self._end_xmpp()

    # ---------------------------------------------------------------- helpers
    def _collect(self) -> None:
        for frame in self.stream.frames_to_send():
            if self.core.push(frame, force=True):
                self.progress.accept(len(frame))

    def _flush(self) -> None:
        buffered = self.core.buffered
        answers = self.core.flush(trio.current_time())
        self.progress.wrote(buffered - self.core.buffered)
        for rid, body in answers:
            answer = self._answers.pop(rid, None)
            if answer is not None:
                answer.body = body
                answer.event.set()
        if self.core.ended:
            self._end_xmpp()  # however it ended (key, gap, reaper): the XMPP side ends too
        if self.core.finished:
            self.manager.drop(self)

    def abandon(self) -> None:
        """The sid is forgotten: whoever still waits is answered from what the session left."""
        answers, self._answers = self._answers, {}
        for rid, answer in answers.items():
            if not answer.event.is_set():
                answer.settle(self.core.answer_for(rid))

    def _end_xmpp(self) -> None:
        """Unbind and announce unavailable presence (once), in the manager's nursery."""
        if self._torn_down:
            return
        self._torn_down = True
        self.progress.close()
        self.manager.spawn_teardown(self)

    def fail(self, condition: str) -> None:
        """Terminate with a binding condition (every waiting request is told)."""
        if not self.core.ended:
            self.core.end(condition)
        self._flush()
        self._end_xmpp()

    def expire(self) -> None:
        """Inactivity (§10): the client is gone; end silently."""
        if not self.core.ended:
            log.info(
                "event=bosh_inactive jid=%s ip=%s",
                self.session.full_str if self.session else "-",
                self.peer_ip,
            )
            self.core.end("item-not-found")
        self._flush()
        self._end_xmpp()
        self.manager.drop(self)

    def negotiating_since(self, now: float) -> float:
        """Seconds this session has been open without a bound (or resumed) resource."""
        if self.session is not None or self.core.ended:
            return 0.0
        return now - self.core.created_at

    def negotiation_timeout(self) -> None:
        """The same deadline as TCP and WebSocket: unauthenticated sessions do not linger."""
        log.info("event=negotiation_timeout ip=%s transport=bosh", self.peer_ip)
        self.close("connection-timeout", "negotiation took too long")

    def _response(self, body: bytes) -> HttpResponse:
        return HttpResponse(200, body, self.core.content, _NO_STORE)

    def _answer_response(self, answer: _Answer | Respond) -> HttpResponse:
        if answer.status != 200:
            return HttpResponse(answer.status, b"", "text/plain", _NO_STORE)
        return self._response(answer.body)

    # --------------------------------------------------------------- requests
    async def open(self) -> HttpResponse:
        """The session creation request: open the stream, answer with its features."""
        core = self.core
        self.stream.open_stream(core.stream_attrs)
        core.set_authid(self.stream.stream_id)
        self._collect()
        if self.stream.closed:
            core.end("remote-stream-error")
            self._end_xmpp()
        return await self._wait(core.answered_upto + 1)

    async def request(self, request: BodyRequest) -> HttpResponse:
        """Any later request of this session."""
        core = self.core
        was_ended = core.ended
        lost = core.lost_rids
        outcome = core.receive(request, trio.current_time())
        answer = None
        if isinstance(outcome, Hold):
            # registered before anything is flushed, so an answer due at once finds it
            answer = self._answers.setdefault(outcome.rid, _Answer())
        if core.lost_rids != lost:
            self._log_lost(core.lost_rids - lost, "client moved past the gap")
        if core.ended and not was_ended:
            log.info("event=bosh_terminated condition=%s ip=%s", core.end_condition, self.peer_ip)
            self._flush()  # every other request still waiting gets the terminate body now
        if answer is None:
            assert isinstance(outcome, Respond)
            return self._answer_response(outcome)
        assert isinstance(outcome, Hold)
        self._flush()  # a new request may release older held ones (hold)
        await self._process()
        return await self._wait(outcome.rid, answer)

    def _log_lost(self, count: int, why: str) -> None:
        log.info("event=bosh_requests_lost count=%d reason=%r ip=%s", count, why, self.peer_ip)

    def skip_stale_gap(self, now: float) -> bool:
        """A gap open too long: count its requests as lost; True if there is work now."""
        skipped = self.core.skip_stale_gap(now)
        if skipped:
            self._log_lost(skipped, "gap open too long")
        return bool(skipped)

    async def process_ready(self) -> None:
        """Process what a skipped gap released, then answer what is due."""
        try:
            await self._process()
        except Exception:
            # a bug of ours: end this session cleanly, never the reaper or anyone else's
            log.exception("event=bosh_request_failed ip=%s", self.peer_ip)
            self.fail("internal-server-error")
            return
        self._flush()

    async def _wait(self, rid: int, answer: _Answer | None = None) -> HttpResponse:
        if answer is None:
            answer = self._answers.setdefault(rid, _Answer())
        self._flush()
        deadline = self.core.deadline(rid)
        if not answer.event.is_set() and deadline is None:
            # nothing in the session will answer this rid any more (it ended, or was
            # answered before we asked): answer from what it left, never wait on it
            self._answers.pop(rid, None)
            answer.settle(self.core.answer_for(rid))
        if not answer.event.is_set():
            assert deadline is not None
            with trio.move_on_at(deadline):
                await answer.event.wait()
            if not answer.event.is_set():
                self._flush()  # the wait is over: answered empty (unless a gap holds it)
                # a gap: until filled, skipped after gap_grace, or the session ends or is
                # dropped (every path answers it)
                await answer.event.wait()
        return self._answer_response(answer)

    async def _process(self) -> None:
        """Hand ready payloads to the stream and driver, strictly in rid order."""
        if not self.core.has_ready and not self._lock.locked():
            return  # an empty poll: nothing to process, no need to take the lock
        async with self._lock:
            while True:
                ready = self.core.take_ready()
                if not ready:
                    return
                for request in ready:
                    await self._run(request)
                    if self.core.ended:
                        return

    async def _run(self, request: BodyRequest) -> None:
        stream = self.stream
        core = self.core
        if request.restart and not stream.closed:
            attrs = dict(core.stream_attrs)
            lang = request.attrs.get("{http://www.w3.org/XML/1998/namespace}lang")
            if lang:
                attrs["xml:lang"] = lang
            stream.open_stream(attrs)
            self._collect()
        for payload in request.payloads:
            if stream.closed:
                break
            events = stream.receive_element(payload)
            await self.driver.handle(events)
            self._collect()
            self._flush()
        if core.ended:
            return
        if stream.closed:
            log.info("event=bosh_stream_error ip=%s", self.peer_ip)
            core.end("remote-stream-error")
            self._flush()
            self._end_xmpp()
        elif request.terminate:
            # the client closed its stream (XEP-0206 §7): an end, not a detachable drop
            self.driver._peer_closed = True  # same meaning as </stream:stream> on TCP
            stream.close()
            self._collect()
            core.end(None)
            self._flush()
            self._end_xmpp()
        else:
            self._flush()


class BoshManager:
    """``/http-bind``: the session table, request dispatch and the inactivity reaper."""

    def __init__(self, app: HttpApp) -> None:
        self.app = app
        server = app.server
        self.server: Server = server
        cfg = server.config.bosh
        self.cfg = cfg
        #: The ceilings sessions clamp to: the ``[bosh]`` section itself.
        self.limits = cfg
        self.sessions: dict[str, BoshConnection] = {}
        #: Creations admitted and still awaiting their stream settings (count toward
        #: max_sessions, so concurrent creations cannot pass it together).
        self._creating = 0
        self._nursery: trio.Nursery | None = None

    # ------------------------------------------------------------------ tasks
    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Reap inactive sessions, give up on stale rid gaps; teardowns run in this nursery."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            negotiation = self.server.config.c2s.handshake_timeout
            while True:
                await trio.sleep(1.0)
                now = trio.current_time()
                for conn in list(self.sessions.values()):
                    if conn.skip_stale_gap(now):
                        nursery.start_soon(conn.process_ready)
                    if conn.core.expired(now):
                        conn.expire()
                    elif conn.negotiating_since(now) > negotiation:
                        conn.negotiation_timeout()

    def spawn_teardown(self, conn: BoshConnection) -> None:
        if self._nursery is None:
            return
        self._nursery.start_soon(self._teardown, conn)

    async def _teardown(self, conn: BoshConnection) -> None:
        try:
            await conn.driver.teardown()
        finally:
            self.server.connections.discard(conn)  # type: ignore[arg-type]
            if conn.ticket is not None:
                conn.ticket.release()

    def drop(self, conn: BoshConnection) -> None:
        """Forget the sid: later requests with it get ``item-not-found``; anyone still
        waiting on it is answered."""
        sid = conn.core.sid
        if self.sessions.get(sid) is conn:
            del self.sessions[sid]
        conn.abandon()
        if conn.ticket is not None:
            conn.ticket.release()

    # --------------------------------------------------------------- requests
    async def handle(self, request: HttpRequest) -> HttpResponse:
        method = request.method
        if method in ("GET", "HEAD"):
            return HttpResponse(200, _INFO, "text/plain; charset=utf-8", _NO_STORE)
        if method != "POST":
            return HttpResponse(
                405, b"method not allowed\n", headers=[("allow", "GET, POST, OPTIONS")]
            )
        limits = self.server.config.limits
        parsed = parse_body(request.body, limits.max_stanza_size, limits.max_depth)
        if isinstance(parsed, BadBody):
            return self._bad(parsed, request)
        if parsed.sid is None:
            return await self._create(parsed, request)
        conn = self.sessions.get(parsed.sid)
        if conn is None:
            return _terminal("item-not-found")
        try:
            return await conn.request(parsed)
        except Exception:
            # a bug of ours: end this session cleanly, never anyone else's
            log.exception("event=bosh_request_failed ip=%s", request.client_ip)
            conn.fail("internal-server-error")
            return _terminal("internal-server-error")

    def _bad(self, bad: BadBody, request: HttpRequest) -> HttpResponse:
        """``bad-request``; a plausible request of a live session terminates that session."""
        log.info("event=bosh_bad_request ip=%s reason=%s", request.client_ip, bad.reason[:120])
        conn = self.sessions.get(bad.sid) if bad.sid else None
        if conn is not None and bad.rid is not None:
            core = conn.core
            if core.processed < bad.rid <= core.processed + core.requests:
                conn.fail("bad-request")
                if core.legacy:
                    return HttpResponse(LEGACY_STATUS["bad-request"], b"", headers=_NO_STORE)
        return _terminal("bad-request")

    async def _create(self, parsed: BodyRequest, request: HttpRequest) -> HttpResponse:
        server = self.server
        ip = request.client_ip
        # every cap is checked and counted here, before the first await
        if len(self.sessions) + self._creating >= self.cfg.max_sessions:
            server.refusals.refused("bosh", "max_sessions", ip)
            return _terminal("undefined-condition", 503)
        sid = secrets.token_urlsafe(24)
        while sid in self.sessions:  # pragma: no cover - 192 random bits
            sid = secrets.token_urlsafe(24)
        try:
            core = BoshSession(
                sid, parsed, server.config.server.domain, self.limits, trio.current_time()
            )
        except CreationError as err:
            log.info("event=bosh_refused reason=%s ip=%s", err.condition, ip)
            return _terminal(err.condition)
        ticket = server.admission.try_admit(ip)
        if ticket is None:
            full = server.admission.full
            server.refusals.refused("bosh", "total" if full else "per_address", ip)
            return _terminal("undefined-condition", 503 if full else 429)
        self._creating += 1
        try:
            settings = await self.app.stream_settings(request)
        except BaseException:
            ticket.release()
            raise
        finally:
            self._creating -= 1
        conn = BoshConnection(self, core, settings, ip, request.header("user-agent"))
        conn.ticket = ticket
        self.sessions[sid] = conn
        server.connections.add(conn)  # type: ignore[arg-type]
        log.info("event=bosh_session_created ip=%s wait=%d hold=%d", ip, core.wait, core.hold)
        return await conn.open()
