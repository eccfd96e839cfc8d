"""One BOSH session (XEP-0124, XEP-0206) as a sans-IO state machine: no trio, no clock.

The trio shell (:mod:`xmppd.bosh.manager`) hands every parsed ``<body/>`` to
:meth:`BoshSession.receive` with the current time and gets back either a response to
send at once (:class:`Respond`: a replayed cached response or a terminal error) or
:class:`Hold` (the request now waits for its response). Payloads come out of
:meth:`BoshSession.take_ready` strictly in ``rid`` order, each request exactly once;
output frames go in with :meth:`push`; :meth:`flush` says which held requests to
answer now and with which bytes. Time only ever arrives as an argument.

Rules, each with its section of XEP-0124:

- rid window (§14.2-14.3): a new rid must lie in ``(processed, processed + requests]``;
  a gap is held until the missing rid arrives, then both are processed in order; a rid
  already answered gets the cached original response and its payloads are NOT processed
  again; a rid already received but not yet answered joins that request; anything
  else terminates the session with ``item-not-found`` (the same condition whether too
  large or too small, so an attacker learns nothing).
- lost requests: a missing rid can be gone for good — a page reload aborts a request
  the browser had not sent yet, and Strophe's session restore continues after it. Two
  signs say so, and then the gap is skipped (its rids count as processed, nothing of
  them is ever delivered) instead of stalling the session: a rid just past the window
  arrives while the gap is open (a client that still had the missing request in flight
  could not send it: it would have ``requests`` + 1 open), or the gap has been open for
  ``gap_grace`` seconds (:meth:`BoshSession.skip_stale_gap`, called by the shell).
- hold (§7): while more than ``hold`` requests wait, the oldest is answered (empty if
  nothing is buffered); answers always go out in rid order.
- requests (§11): more than ``requests`` unanswered requests at once (one more if the
  last is a pause or terminate), or a rid just past the window while requests are
  still open and no gap explains it (the client has more than ``requests`` in flight),
  is ``policy-violation``; a rid further out is ``item-not-found``. Polling sessions (hold or wait
  0, §12): two empty polls closer than ``polling`` seconds after an empty answer is
  ``policy-violation``. The stricter non-polling "too frequent" rule of §11 is not
  enforced: it would cut off clients that legitimately keep ``requests`` outstanding.
- wait (§7): a held request is answered (empty) after ``wait`` seconds.
- inactivity (§10): with no request waiting, the session ends ``inactivity`` seconds
  after the last answer (or after the ``pause`` a client asked for, up to ``maxpause``;
  a pause answers every waiting request at once and carries no payloads).
- acks (§9): with ``ack='1'`` on creation, responses carry ``ack`` (highest rid received
  with none missing below it) and client acks trim the response cache; a client ack
  lagging behind for :data:`REPORT_AFTER` seconds gets ``report``/``time`` at once.

The ceilings (``max_wait``, ``max_hold``, ``polling``, ``gap_grace``…) are the ``[bosh]``
section itself (:class:`~xmppd.bosh.config.BoshConfig`), not a copy of it.
- keys (§15): ``newkey``/``key`` sequences are checked when the client uses them; a
  wrong or missing key ends the session and its own request gets the terminal answer
  from :meth:`BoshSession.receive` at once.
- content (§7): responses are always ``text/xml; charset=utf-8``; a client's
  ``content`` attribute is ignored (XEP-0206 fixes the payload type anyway).
- terminate (§13): the request's payloads are processed first; every request still
  waiting is answered and the session is gone.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from xmppd.bosh.body import XMPP_VERSION, BodyRequest, render_body, terminate_body
from xmppd.bosh.config import BoshConfig
from xmppd.stream.outqueue import ByteQueue

#: Highest BOSH version we speak (XEP-0124 1.11).
OUR_VERSION = (1, 11)
DEFAULT_CONTENT = "text/xml; charset=utf-8"
#: Deprecated HTTP statuses for legacy clients (no ``ver``; XEP-0124 §17.1).
LEGACY_STATUS = {"bad-request": 400, "policy-violation": 403, "item-not-found": 404}
#: Seconds a missing response may lag before a lagging client ack gets a report.
REPORT_AFTER = 2.0


class CreationError(Exception):
    """The session creation request is refused with this terminal condition."""

    def __init__(self, condition: str, text: str = "") -> None:
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition
        self.text = text


@dataclass(frozen=True, slots=True)
class Respond:
    """Answer this HTTP request now (replay or terminal error); nothing is processed."""

    body: bytes
    status: int = 200
    condition: str | None = None


@dataclass(frozen=True, slots=True)
class Hold:
    """The request is accepted; its response comes from :meth:`BoshSession.flush`."""

    rid: int


Outcome = Respond | Hold


@dataclass(slots=True)
class _Slot:
    """A request received and not yet answered."""

    rid: int
    arrived: float
    #: Answer without payloads (a pause request, §10).
    no_payload: bool = False
    #: Extra attributes for its response (creation response, report/time).
    attrs: list[tuple[str, str]] = field(default_factory=list)
    #: Answer as soon as it may go (rid order permitting).
    immediate: bool = False


def _version(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    major, _, minor = text.strip().partition(".")
    try:
        return int(major), int(minor or 0)
    except ValueError:
        return None


class BoshSession:
    """The connection-manager side of one BOSH session; see the module rules."""

    __slots__ = (
        "_cache",
        "_end_body",
        "_force_upto",
        "_key",
        "_key_skips",
        "_last_empty_answer",
        "_last_poll",
        "_out",
        "_pending",
        "_ready",
        "_slots",
        "acks",
        "answered_upto",
        "content",
        "created_at",
        "end_condition",
        "finished",
        "hold",
        "inactivity",
        "last_answer_at",
        "legacy",
        "limits",
        "lost_rids",
        "pause",
        "polling_session",
        "processed",
        "requests",
        "sid",
        "stream_attrs",
        "ver",
        "wait",
    )

    def __init__(
        self, sid: str, request: BodyRequest, domain: str, limits: BoshConfig, now: float
    ) -> None:
        """Validate a creation request (no ``sid``); raises :class:`CreationError`."""
        attrs = request.attrs
        try:
            wait = request.int_attr("wait")
            hold = request.int_attr("hold")
        except ValueError:
            raise CreationError("bad-request", "wait and hold must be integers") from None
        to = (attrs.get("to") or "").strip()
        if not to:
            raise CreationError("improper-addressing", "the 'to' attribute is required")
        if to.lower() != domain:
            raise CreationError("host-unknown", f"this server does not serve {to}")
        self.sid = sid
        self.limits = limits
        self.wait = min(limits.max_wait if wait is None else wait, limits.max_wait)
        self.hold = min(1 if hold is None else hold, limits.max_hold)
        self.requests = self.hold + 1
        self.polling_session = self.hold == 0 or self.wait == 0
        self.inactivity = limits.max_inactivity + (limits.polling if self.polling_session else 0)
        client_ver = _version(attrs.get("ver"))
        self.legacy = client_ver is None
        self.ver = min(client_ver, OUR_VERSION) if client_ver else None
        #: Always ours: the client's ``content`` attribute is not echoed into a response
        #: header (it could name text/html, or carry CR/LF).
        self.content = DEFAULT_CONTENT
        self.acks = attrs.get("ack") == "1"
        self._key = attrs.get("newkey")
        #: Requests skipped as lost since the last key check (their keys never came).
        self._key_skips = 0
        #: rids given up as lost over the session (for the shell's log).
        self.lost_rids = 0
        #: What the shell passes to the stream as its header (to, version, xml:lang).
        self.stream_attrs = {"to": to, "version": attrs.get(XMPP_VERSION, "1.0")}
        lang = attrs.get("{http://www.w3.org/XML/1998/namespace}lang")
        if lang:
            self.stream_attrs["xml:lang"] = lang
        self.created_at = now
        self.processed = request.rid
        self.answered_upto = request.rid - 1
        self.last_answer_at = now
        self.pause: int | None = None
        self.end_condition: str | None = None
        self.finished = False
        self._end_body: bytes | None = None
        self._slots: dict[int, _Slot] = {}
        self._pending: dict[int, BodyRequest] = {}
        self._ready: deque[BodyRequest] = deque()
        self._cache: OrderedDict[int, tuple[bytes, float]] = OrderedDict()
        self._out = ByteQueue(limits.max_buffer_bytes)
        self._force_upto = 0
        self._last_poll: float | None = None
        self._last_empty_answer = False
        created = _Slot(request.rid, now, attrs=self._creation_attrs(request.rid, domain))
        self._slots[request.rid] = created

    def _creation_attrs(self, rid: int, domain: str) -> list[tuple[str, str]]:
        attrs = [
            ("sid", self.sid),
            ("wait", str(self.wait)),
            ("hold", str(self.hold)),
            ("requests", str(self.requests)),
            ("inactivity", str(self.inactivity)),
            ("polling", str(self.limits.polling)),
            ("maxpause", str(self.limits.max_pause)),
            ("from", domain),
            ("xmpp:version", "1.0"),
            ("xmpp:restartlogic", "true"),
        ]
        if self.ver is not None:
            attrs.append(("ver", f"{self.ver[0]}.{self.ver[1]}"))
        if self.acks:
            attrs.append(("ack", str(rid)))
        return attrs

    def set_authid(self, stream_id: str) -> None:
        """The stream's id, reported as ``authid`` in the creation response (XEP-0206)."""
        slot = self._slots.get(self.answered_upto + 1)
        if slot is not None and any(k == "sid" for k, _ in slot.attrs):
            slot.attrs.append(("authid", stream_id))

    # ------------------------------------------------------------- requests in
    @property
    def ended(self) -> bool:
        return self._end_body is not None

    @property
    def waiting(self) -> int:
        """Requests received and not yet answered."""
        return len(self._slots)

    def _terminal(self, condition: str) -> Respond:
        if self.legacy and condition in LEGACY_STATUS:
            return Respond(b"", LEGACY_STATUS[condition], condition)
        return Respond(terminate_body(condition), 200, condition)

    def answer_for(self, rid: int) -> Respond:
        """The answer for a request whose response nobody will send any more (the shell
        found its session gone): the cached response if there is one, else terminal."""
        cached = self._cache.get(rid)
        if cached is not None:
            return Respond(cached[0])
        return self._terminal(self.end_condition or "item-not-found")

    def fail(self, condition: str) -> Respond:
        """End the session with a terminal ``condition``; the response for this request."""
        self.end(condition)
        return self._terminal(condition)

    def receive(self, request: BodyRequest, now: float) -> Outcome:
        """A client request for this session (its ``sid`` already matched)."""
        if self._end_body is not None:
            if self._out:
                # Ended while no request was waiting: the final frames (the stream error
                # saying why) go out with the next request instead of being lost.
                self.finished = True
                return Respond(terminate_body(self.end_condition, self._take_out()))
            return self._terminal(self.end_condition or "item-not-found")
        rid = request.rid
        if rid in self._slots:
            return Hold(rid)  # a retransmission of a request still waiting: join it
        if rid <= self.processed:
            cached = self._cache.get(rid)
            if cached is not None:
                return Respond(cached[0])  # §14.3: the original response, not reprocessed
            return self.fail("item-not-found")
        if rid > self.processed + self.requests and self._pending:
            # A gap is open and the client has moved past it: the missing rids are lost.
            self._skip_gap()
            if self._end_body is not None:
                return self._terminal(self.end_condition or "item-not-found")
        if rid > self.processed + self.requests:
            if self._slots and rid <= self.processed + 2 * self.requests:
                # just past the window while requests are still open: the client has
                # more than 'requests' in flight (§11), not a stale or forged rid
                return self.fail("policy-violation")
            return self.fail("item-not-found")
        special = request.terminate or "pause" in request.attrs
        allowed = self.requests + (1 if special else 0)
        if len(self._slots) + 1 > allowed:
            return self.fail("policy-violation")
        if self.polling_session and request.empty and not special:
            last = self._last_poll
            if last is not None and self._last_empty_answer and now - last < self.limits.polling:
                return self.fail("policy-violation")
            self._last_poll = now
        slot = _Slot(rid, now)
        if self.acks and "ack" in request.attrs:
            self._client_ack(request.attrs["ack"], slot, now)
        self._slots[rid] = slot
        self._pending[rid] = request
        self.pause = None  # §10: back to normal inactivity on the next request
        self._advance()
        if self._end_body is not None:
            # processing reached a request that ends the session (a wrong or missing key):
            # this request is answered now; the others still waiting get the terminate
            # body from flush(), so no request is left waiting on a session that is gone
            del self._slots[rid]
            return self._terminal(self.end_condition or "item-not-found")
        return Hold(rid)

    def _client_ack(self, value: str, slot: _Slot, now: float) -> None:
        try:
            ack = int(value)
        except ValueError:
            return
        for rid in [r for r in self._cache if r <= ack]:
            del self._cache[rid]
        missing = self._cache.get(ack + 1)
        if ack < self.answered_upto and missing is not None:
            lag = now - missing[1]
            if lag >= REPORT_AFTER:
                slot.attrs += [("report", str(ack + 1)), ("time", str(int(lag * 1000)))]
                slot.immediate = True

    def _advance(self) -> None:
        """Move contiguous requests to the ready queue, checking key and pause in order."""
        while self._end_body is None:
            request = self._pending.pop(self.processed + 1, None)
            if request is None:
                return
            self.processed = request.rid
            if not self._check_key(request):
                self.end("item-not-found")
                self._ready.clear()
                return
            pause = request.attrs.get("pause")
            if pause is not None:
                self._pause(request.rid, pause)
            self._ready.append(request)

    def _check_key(self, request: BodyRequest) -> bool:
        if self._key is None:
            return True
        key = request.attrs.get("key")
        if key is None:
            return False
        digest = key
        for _ in range(1 + self._key_skips):  # a lost request's key is one more hash away
            digest = hashlib.sha1(digest.encode(), usedforsecurity=False).hexdigest()
        self._key_skips = 0
        # As bytes: compare_digest refuses str with non-ASCII, and newkey is the client's.
        if not hmac.compare_digest(digest.encode(), self._key.lower().encode()):
            return False
        self._key = request.attrs.get("newkey") or key
        return True

    def _skip_gap(self) -> int:
        """Count the rids missing below the oldest waiting request as lost; process on."""
        if not self._pending or self.processed + 1 in self._pending:
            return 0
        first = min(self._pending)
        skipped = first - self.processed - 1
        self._key_skips += skipped
        self.lost_rids += skipped
        self.processed = first - 1
        self._advance()
        return skipped

    def skip_stale_gap(self, now: float) -> int:
        """Give up on a gap open for ``gap_grace`` seconds; the number of rids skipped.

        Afterwards :attr:`has_ready` tells the shell there is something to process.
        """
        if self._end_body is not None or not self._pending:
            return 0
        oldest = self._slots.get(min(self._pending))
        if oldest is None or now - oldest.arrived < self.limits.gap_grace:
            return 0
        return self._skip_gap()

    def _pause(self, rid: int, value: str) -> None:
        try:
            seconds = int(value)
        except ValueError:
            return
        if not 0 <= seconds <= self.limits.max_pause:
            return  # §10: only up to maxpause; otherwise an ordinary request
        self.pause = seconds
        self._force_upto = rid
        slot = self._slots.get(rid)
        if slot is not None:
            slot.no_payload = True

    @property
    def has_ready(self) -> bool:
        return bool(self._ready)

    def take_ready(self) -> list[BodyRequest]:
        """Requests to process now, in rid order; each one is handed out exactly once."""
        ready = list(self._ready)
        self._ready.clear()
        return ready

    # ---------------------------------------------------------- output, answers
    def push(self, frame: bytes, force: bool = False) -> bool:
        """Buffer one element for the client; ``False`` when the buffer limit is reached.

        ``force``: the stream's own output (negotiation, a stream error) is never refused.
        """
        if self._end_body is not None:
            return False  # the session is over; nothing more will be delivered
        if force:
            self._out.push(frame)
            return True
        return self._out.offer(frame)

    @property
    def buffered(self) -> int:
        return self._out.queued

    def end(self, condition: str | None = None) -> None:
        """The session is over: every waiting request gets a terminate body.

        ``condition`` None is a normal end (the client's terminate); buffered frames
        (final stanzas, a ``<stream:error/>`` for ``remote-stream-error``) go into the
        first terminate body.
        """
        if self._end_body is not None:
            return
        self.end_condition = condition
        self._end_body = terminate_body(condition)
        self._pending.clear()
        self._ready.clear()

    def flush(self, now: float) -> list[tuple[int, bytes]]:
        """The (rid, body) responses due now, in rid order."""
        out: list[tuple[int, bytes]] = []
        if self._end_body is not None:
            for rid in sorted(self._slots):
                if out or not self._out:
                    out.append((rid, self._end_body))
                else:
                    out.append((rid, terminate_body(self.end_condition, self._take_out())))
            if out:
                self.finished = True
                self._slots.clear()
                self.last_answer_at = now
            return out
        slots = self._slots
        while slots:
            rid = min(slots)
            if rid > self.processed:
                break  # not processed yet (a gap below it): answers go in rid order
            slot = slots[rid]
            due = (
                len(slots) > self.hold
                or rid <= self._force_upto
                or slot.immediate
                or now >= slot.arrived + self.wait
                or (bool(self._out) and not slot.no_payload)
            )
            if not due:
                break
            payloads = [] if slot.no_payload else self._take_out()
            attrs = list(slot.attrs)
            if self.acks and self.processed != rid and not any(k == "sid" for k, _ in attrs):
                attrs.append(("ack", str(self.processed)))
            body = render_body(attrs, payloads, xbosh=any(k == "sid" for k, _ in attrs))
            del slots[rid]
            self.answered_upto = rid
            self.last_answer_at = now
            self._last_empty_answer = not payloads
            if not slot.no_payload:
                self._remember(rid, body, now)
            out.append((rid, body))
        return out

    def _take_out(self) -> list[bytes]:
        return self._out.take()

    def _remember(self, rid: int, body: bytes, now: float) -> None:
        cache = self._cache
        cache[rid] = (body, now)
        while len(cache) > self.requests:
            cache.popitem(last=False)

    # --------------------------------------------------------------------- time
    def deadline(self, rid: int) -> float | None:
        """When the held request ``rid`` is answered at the latest (``wait``)."""
        slot = self._slots.get(rid)
        if slot is None:
            return None
        return slot.arrived + self.wait

    def expired(self, now: float) -> bool:
        """The client is gone: inactive too long, or a gap never filled (§10)."""
        if self._slots:
            oldest = self._slots[min(self._slots)]
            return now - oldest.arrived > self.wait + self.inactivity
        limit = self.inactivity if self.pause is None else self.pause
        return now - self.last_answer_at > limit
