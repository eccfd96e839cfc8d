"""Server side of one client-to-server stream (RFC 6120): negotiation as a sans-IO machine.

``receive_data(bytes)`` returns events; ``data_to_send()`` returns the bytes to write.
Whatever needs I/O — TLS, looking up credentials, binding a resource in the router —
is an event for the trio shell, which answers through ``tls_established()``,
``password_checked()``, ``scram_credentials()``, ``rate_limited()``, ``bind_result()``,
``resumed()`` and ``resume_failed()``.

The phases and every transition between them are one table in
:mod:`xmppd.stream.c2s_states`; this module says what each accepted input does. The
plumbing (parser feed, output, closing, a protocol error turned into a stream error) is
:class:`~xmppd.stream.machine.StreamMachine`, shared with the component streams.

Stream management (XEP-0198, :mod:`xmppd.stream.sm`): after authentication the features
offer ``<sm/>``; instead of binding, ``<resume/>`` is a :class:`ResumeRequest` the shell
answers with ``resumed()`` or ``resume_failed()``. Once enabled (``<enable/>`` after
bind, :class:`SMEnabled`) the stream counts every stanza it accepts, answers ``<r/>``,
applies ``<a/>`` and records the stanzas it makes itself (error replies) in the same
unacked queue the session records routed stanzas in.

The same machine serves TCP, WebSocket and BOSH: a :class:`~xmppd.stream.framing.Framing`
decides the header, close tag and input parsing (see that module for the BOSH API).
Output is kept as frames (one top-level element each) so WebSocket can send one message
per element and BOSH can wrap them in ``<body/>``.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable
from typing import Any

from lxml import etree

from xmppd.auth.base import AuthError, Identity, ScramCredentials
from xmppd.jid import JID, JIDError, resourceprep
from xmppd.stream import sm as smp
from xmppd.stream.c2s_events import (
    AckAnswer,
    Authenticated,
    AuthFailed,
    BindRequest,
    C2SSettings,
    CheckPassword,
    ClientStateChanged,
    FetchScram,
    ResumeRequest,
    SMEnabled,
    StanzaReceived,
    StartTLS,
    StreamEvent,
)
from xmppd.stream.c2s_features import bound_features, negotiation_features
from xmppd.stream.c2s_states import BIND_TAG, IQ_TAG, RULES, Event, Phase, classify
from xmppd.stream.csi import client_state
from xmppd.stream.framing import STREAM, Framing, Reader, adopt_httpbind
from xmppd.stream.machine import StreamEnded, StreamMachine
from xmppd.stream.sasl import (
    Challenge,
    Failure,
    NeedPassword,
    NeedScramCredentials,
    SaslStep,
    ServerMechanism,
    Success,
    decode_payload,
    xml_text,
)
from xmppd.xml import ns
from xmppd.xml.errors import StanzaError, StreamError, error_reply
from xmppd.xml.parser import StreamOpen

__all__ = [
    "AckAnswer",
    "AuthFailed",
    "Authenticated",
    "BindRequest",
    "C2SSettings",
    "C2SStream",
    "CheckPassword",
    "ClientStateChanged",
    "FetchScram",
    "Phase",
    "ResumeRequest",
    "SMEnabled",
    "StanzaReceived",
    "StartTLS",
    "StreamEnded",
    "StreamEvent",
]

MAX_SASL_ATTEMPTS = 5


class C2SStream(StreamMachine[Phase, Event]):
    """One client stream on the server side; no I/O, no clock, no database."""

    __slots__ = (
        "_framing",
        "_mechanism",
        "_new_id",
        "_peer_from",
        "_pending_user",
        "_sasl_failures",
        "identity",
        "jid",
        "settings",
        "sm",
        "stream_id",
        "tls_active",
    )

    RULES = RULES

    def __init__(
        self,
        settings: C2SSettings,
        stream_id_factory: Callable[[], str] | None = None,
        framing: Framing = STREAM,
    ) -> None:
        self.settings = settings
        self._framing = framing
        super().__init__(self._make_parser())
        self._new_id = stream_id_factory or (lambda: secrets.token_hex(8))
        self.tls_active = settings.tls_active
        self.identity: Identity | None = None
        self.jid: JID | None = None
        self.stream_id = ""
        self._mechanism: ServerMechanism | None = None
        self._sasl_failures = 0
        self._peer_from: str | None = None
        self._pending_user: str | None = None
        #: XEP-0198 state once enabled or resumed (shared with the session).
        self.sm: smp.StreamManagement | None = None

    # --------------------------------------------------------------- plumbing
    def _make_parser(self) -> Reader:
        return self._framing.reader(self.settings.max_stanza_size, self.settings.max_depth)

    @property
    def framing(self) -> Framing:
        return self._framing

    @property
    def authenticating(self) -> bool:
        """A SASL exchange is under way (the shell may hold a login attempt for it)."""
        return self.phase in (Phase.SASL, Phase.SASL_CHECK)

    def send_stanza(self, stanza: etree._Element) -> None:
        data = etree.tostring(stanza)
        self._out.append(data)
        sm = self.sm
        if sm is not None and self.phase is Phase.ESTABLISHED and sm.record(data):
            self._out.append(smp.R)

    def hibernate(self) -> bool:
        """Release parser memory while an established stream is idle between stanzas."""
        return self.phase is Phase.ESTABLISHED and self._parser.hibernate()

    def _closing_bytes(self) -> bytes:
        return self._framing.closing()

    def _error_bytes(self, err: StreamError) -> bytes:
        return self._framing.stream_error(err)

    def open_stream(self, attrs: dict[str, str]) -> list[StreamEvent]:
        """A stream header that arrived outside the byte stream (BOSH creation/restart)."""
        if self.phase in RULES.deaf:
            return []
        events: list[Any] = []
        try:
            self._on_header(StreamOpen(dict(attrs), ns.CLIENT), events)
        except StreamError as err:
            events.append(self._fail(err))
        return events

    def receive_element(self, el: etree._Element) -> list[StreamEvent]:
        """One top-level element parsed by the transport (a BOSH ``<body/>`` child)."""
        if self.phase in RULES.deaf:
            return []
        events: list[Any] = []
        try:
            self._on_element(adopt_httpbind(el), events)
        except StreamError as err:
            events.append(self._fail(err))
        return events

    def close(
        self,
        condition: str | None = None,
        text: str | None = None,
        app: etree._Element | None = None,
    ) -> StreamEnded:
        """End the stream from our side, with a stream error when ``condition`` is set."""
        return self._end(condition, text, app)

    # ----------------------------------------------------------------- header
    def _header_bytes(self) -> bytes:
        if not self.stream_id:
            self.stream_id = self._new_id()
        attrs = {
            "from": self.settings.domain,
            "id": self.stream_id,
            "version": "1.0",
            "xml:lang": self.settings.lang,
        }
        if self._peer_from:
            attrs["to"] = self._peer_from
        return self._framing.header(attrs)

    def _on_header(self, header: StreamOpen, events: list[Any]) -> None:
        self._go(Event.HEADER)
        self.stream_id = self._new_id()
        peer_from = header.attrs.get("from")
        if peer_from is not None:
            try:
                self._peer_from = str(JID.parse(peer_from))
            except JIDError:
                self._peer_from = None
        self._header_sent = False
        if header.default_ns != ns.CLIENT:
            raise StreamError("invalid-namespace", "the default namespace must be jabber:client")
        to = header.attrs.get("to")
        if to is None:
            raise StreamError("host-unknown", "the stream header has no 'to' address")
        try:
            to_jid = JID.parse(to)
        except JIDError:
            raise StreamError("host-unknown", "the 'to' address is not a domain we serve") from None
        if to_jid.domain != self.settings.domain or not to_jid.is_domain:
            raise StreamError("host-unknown", f"this server does not serve {to}")
        version = header.attrs.get("version", "0.9")
        if not _version_ok(version):
            raise StreamError("unsupported-version", "XMPP 1.0 is required")
        self._ensure_header()
        self.send(self._features())

    def _sasl_allowed(self) -> bool:
        return self.tls_active or not self.settings.tls_required

    def _features(self) -> bytes:
        parts = [self._framing.features_open]
        if self.phase is Phase.NEGOTIATING:
            parts += negotiation_features(self.settings, self.tls_active, self._sasl_allowed())
        else:
            parts += bound_features(self.settings)
        parts += (self.settings.caps, b"</stream:features>")
        return b"".join(parts)

    # --------------------------------------------------------------- elements
    def _on_element(self, el: etree._Element, events: list[Any]) -> None:
        event = classify(el)
        self._go(event, el)  # a refusal when the phase has no row
        _HANDLERS[event](self, el, events)

    def _stanza(self, el: etree._Element, events: list[Any]) -> None:
        if self.sm is not None:
            self.sm.handled()
        if self._invalid_stanza(el):
            return
        el.set("from", str(self.jid))
        events.append(StanzaReceived(el))

    def _invalid_stanza(self, el: etree._Element) -> bool:
        """RFC 6120 §8.1/§8.2 checks that are the stream's business: bounce and drop."""
        if el.tag != IQ_TAG:
            return False
        kind = el.get("type")
        if el.get("id") is None or kind not in ("get", "set", "result", "error"):
            if kind != "error":
                el.set("from", str(self.jid))
                self._bounce(el, StanzaError("bad-request", "an iq needs an id and a valid type"))
            return True
        if kind in ("get", "set") and len(el) != 1:
            el.set("from", str(self.jid))
            self._bounce(
                el, StanzaError("bad-request", "an iq get/set carries exactly one payload")
            )
            return True
        return False

    def _bounce(self, el: etree._Element, err: StanzaError) -> None:
        # error_reply answers from the stanza's addressee; with no 'to' the error comes
        # from the account itself, which RFC 6120 §8.1.2.1 lets us leave implicit.
        reply = error_reply(el, err)
        reply.set("to", str(self.jid) if self.jid else "")
        if not reply.get("to"):
            del reply.attrib["to"]
        self.send_stanza(reply)

    def _reply_result(self, el: etree._Element) -> None:
        reply = etree.Element(IQ_TAG, nsmap={None: ns.CLIENT})
        reply.set("type", "result")
        reply.set("id", el.get("id") or "")
        if self.jid is not None:
            reply.set("to", str(self.jid))
        self.send_stanza(reply)

    def _starttls(self, el: etree._Element, events: list[Any]) -> None:
        if not self.settings.tls_available or self.tls_active:
            self.send(b'<failure xmlns="%s"/>' % ns.TLS.encode())  # and close (§5.4.2.2)
            events.append(self._end())
            return
        self.send(b'<proceed xmlns="%s"/>' % ns.TLS.encode())
        events.append(StartTLS())

    # ------------------------------------------------------------------- bind
    def _bind_or_stanza(self, el: etree._Element, events: list[Any]) -> None:
        if self.phase is Phase.ESTABLISHED:
            self._stanza(el, events)
            return
        iq_id = el.get("id")
        if iq_id is None:
            raise StreamError("not-authorized", "bind iq without id")
        resource_el = el[0].find("{%s}resource" % ns.BIND)
        requested = (resource_el.text or "").strip() if resource_el is not None else ""
        resource = None
        if requested:
            try:
                resource = resourceprep(requested)
            except JIDError:
                self.bind_result(iq_id, StanzaError("bad-request", "the resource is not valid"))
                return
        if resource is None:
            resource = secrets.token_hex(6)
        if self.identity is None:  # unreachable: BIND follows SASL success
            raise StreamError("internal-server-error", "bound without an identity")
        jid = JID(self.identity.localpart, self.settings.domain, resource)
        events.append(BindRequest(jid, iq_id))

    def _session_or_stanza(self, el: etree._Element, events: list[Any]) -> None:
        """RFC 6121 legacy session establishment: a no-op, answered (and counted)."""
        if self.phase is not Phase.ESTABLISHED:
            self._reply_result(el)
        elif el.get("to") not in (None, self.settings.domain):
            self._stanza(el, events)  # to someone else: theirs to answer
        else:
            if self.sm is not None:
                self.sm.handled()
            self._reply_result(el)

    def _bind_error(self, iq_id: str, condition: str, text: str | None = None) -> None:
        err = StanzaError(condition, text)
        iq = etree.Element(IQ_TAG, nsmap={None: ns.CLIENT})
        iq.set("type", "error")
        iq.set("id", iq_id)
        self.send_stanza(error_reply(iq, err))

    def bind_result(self, iq_id: str, jid: JID | StanzaError) -> None:
        """The router bound (or refused) the resource asked for in :class:`BindRequest`."""
        if isinstance(jid, StanzaError):
            if self._go(Event.BIND_REFUSED):
                self._bind_error(iq_id, jid.condition, jid.text)
            return
        if not self._go(Event.BOUND):
            return
        self.jid = jid
        reply = etree.Element(IQ_TAG, nsmap={None: ns.CLIENT})
        reply.set("type", "result")
        reply.set("id", iq_id)
        bind = etree.SubElement(reply, BIND_TAG, nsmap={None: ns.BIND})
        etree.SubElement(bind, "{%s}jid" % ns.BIND).text = str(jid)
        self.send_stanza(reply)

    # ------------------------------------------------------------------- SASL
    def _auth(self, el: etree._Element, events: list[Any]) -> None:
        if not self._sasl_allowed():
            self._sasl_failure("encryption-required", None, events)
            return
        factory = self.settings.mechanisms.get(el.get("mechanism", ""))
        if factory is None:
            self._sasl_failure("invalid-mechanism", None, events)
            return
        try:
            initial = decode_payload(el.text)
        except (binascii.Error, ValueError):
            self._sasl_failure("incorrect-encoding", None, events)
            return
        self._mechanism = factory()
        self._sasl_step(self._mechanism.start(initial), events)

    def _response(self, el: etree._Element, events: list[Any]) -> None:
        mechanism = self._mechanism
        if mechanism is None:  # unreachable: SASL always has its mechanism
            raise StreamError("internal-server-error", "no SASL exchange is waiting for input")
        try:
            data = decode_payload(el.text) or b""
        except (binascii.Error, ValueError):
            self._sasl_failure("incorrect-encoding", None, events)
            return
        self._sasl_step(mechanism.respond(data), events)

    def _abort(self, el: etree._Element, events: list[Any]) -> None:
        self._sasl_failure("aborted", None, events)

    def _sasl_step(self, step: SaslStep, events: list[Any]) -> None:
        if isinstance(step, Challenge):
            self._go(Event.CHALLENGE)
            payload = base64.b64encode(step.data) if step.data else b"="
            self.send(b'<challenge xmlns="%s">%s</challenge>' % (ns.SASL.encode(), payload))
        elif isinstance(step, NeedPassword):
            self._go(Event.CHECK)
            self._pending_user = step.authcid
            events.append(CheckPassword(step.authcid, step.authzid, step.password))
        elif isinstance(step, NeedScramCredentials):
            self._go(Event.CHECK)
            self._pending_user = step.username
            events.append(FetchScram(step.username, step.hash_name))
        elif isinstance(step, Success):
            self._sasl_success(step, events)
        elif isinstance(step, Failure):
            self._sasl_failure(step.condition, step.text, events)

    def _sasl_success(self, step: Success, events: list[Any]) -> None:
        self._go(Event.SUCCESS)
        name = self._mechanism.name if self._mechanism else ""
        self._mechanism = None
        self.identity = step.identity
        payload = base64.b64encode(step.additional_data) if step.additional_data else b""
        self.send(b'<success xmlns="%s">%s</success>' % (ns.SASL.encode(), payload))
        events.append(Authenticated(step.identity, name))
        self._restart()

    def _sasl_failure(self, condition: str, text: str | None, events: list[Any]) -> None:
        self._go(Event.FAILURE)
        mechanism = self._mechanism.name if self._mechanism else ""
        self._mechanism = None
        body = b"<%s/>" % condition.encode()
        if text:
            body += b'<text xml:lang="en">%s</text>' % xml_text(text).encode()
        self.send(b'<failure xmlns="%s">%s</failure>' % (ns.SASL.encode(), body))
        if condition in ("aborted", "invalid-mechanism", "encryption-required"):
            return
        events.append(AuthFailed(self._pending_user, condition, mechanism))
        self._sasl_failures += 1
        if self._sasl_failures >= MAX_SASL_ATTEMPTS:
            events.append(self._fail(StreamError("policy-violation", "too many failed logins")))

    def password_checked(self, result: Identity | AuthError) -> list[StreamEvent]:
        """The backend's verdict on a :class:`CheckPassword`."""

        def verdict(events: list[Any]) -> None:
            if isinstance(result, AuthError):
                self._sasl_failure(result.condition, None, events)
            else:
                self._sasl_success(Success(result), events)

        return self._answer(Event.VERDICT, verdict)

    def scram_credentials(
        self, found: tuple[Identity, ScramCredentials] | None
    ) -> list[StreamEvent]:
        """The stored keys for a :class:`FetchScram` (``None``: unknown user)."""

        def step(events: list[Any]) -> None:
            mechanism = self._mechanism
            if mechanism is None:  # unreachable: a FetchScram came from a mechanism
                raise StreamError("internal-server-error", "no SASL exchange for the keys")
            self._sasl_step(mechanism.credentials(found), events)

        return self._answer(Event.VERDICT, step)

    def rate_limited(self) -> list[StreamEvent]:
        """The shell refused to even try: too many failures from this peer or user."""
        return self._answer(
            Event.VERDICT,
            lambda events: self._sasl_failure(
                "temporary-auth-failure", "too many failed attempts, try later", events
            ),
        )

    # ------------------------------------------------------ stream management
    def _enable(self, el: etree._Element, events: list[Any]) -> None:
        if self.phase is not Phase.ESTABLISHED:
            # XEP-0198 §3: enabling before a resource is bound is not allowed.
            self.send(smp.failed_element("unexpected-request", text="bind a resource first"))
            return
        if not self.settings.sm_enabled:
            self.send(smp.failed_element("feature-not-implemented"))
            return
        if self.sm is not None:
            # XEP-0198 §3: at most one <enable/> per stream.
            self.send(smp.failed_element("unexpected-request", text="already enabled"))
            return
        settings = self.settings
        sm = smp.StreamManagement(
            str(self.jid.bare) if self.jid else "",
            token=smp.new_token() if el.get("resume") in ("true", "1") else None,
            max_seconds=smp.resume_timeout(el.get("max"), settings.sm_resume_timeout),
            request_every=settings.sm_request_every,
            max_unacked=settings.sm_max_unacked,
        )
        self.sm = sm
        self.send(sm.enabled_element())
        events.append(SMEnabled(sm))

    def _sm_request(self, el: etree._Element, events: list[Any]) -> None:
        if self.sm is None:
            raise StreamError("unsupported-stanza-type", "stream management is not enabled")
        answer = self.sm.answer()  # h as of now: the stanzas before this <r/>
        if any(isinstance(e, StanzaReceived) for e in events):
            events.append(AckAnswer(answer))  # after the shell has routed them
        else:
            self.send(answer)

    def _sm_ack(self, el: etree._Element, events: list[Any]) -> None:
        sm = self.sm
        if sm is None:
            raise StreamError("unsupported-stanza-type", "stream management is not enabled")
        h = smp.parse_h(el.get("h"))
        if h is None:
            raise StreamError("invalid-xml", "'h' must be an unsigned 32-bit integer")
        try:
            sm.ack(h)
        except smp.HandledCountTooHigh as exc:
            raise StreamError("undefined-condition", str(exc), exc.app_condition()) from None

    def _resume(self, el: etree._Element, events: list[Any]) -> None:
        if self.phase is Phase.ESTABLISHED:
            self.send(smp.failed_element("unexpected-request", text="the stream is bound"))
            return
        if not self.settings.sm_enabled:
            self._resume_refused("feature-not-implemented")
            return
        previd = el.get("previd") or ""
        h = smp.parse_h(el.get("h"))
        if not previd or h is None:
            self._resume_refused("bad-request", text="previd and h are required")
            return
        events.append(ResumeRequest(previd, h))

    def _resume_refused(
        self, condition: str, h: int | None = None, text: str | None = None
    ) -> None:
        if self._go(Event.RESUME_FAILED):
            self.send(smp.failed_element(condition, h, text))

    def resumed(self, jid: JID, sm: smp.StreamManagement) -> None:
        """The shell took over the session ``jid``: answer ``<resumed/>`` (XEP-0198 §5)."""
        if not self._go(Event.RESUMED):
            return
        self.jid = jid
        self.sm = sm
        self.send(sm.resumed_element())

    def resume_failed(self, h: int | None = None, text: str | None = None) -> None:
        """No such session (or not this user's): ``item-not-found``; binding stays open."""
        self._resume_refused("item-not-found", h, text)

    # --------------------------------------------------------- TLS and restart
    def tls_established(self) -> None:
        """The transport is now TLS: expect a fresh stream header (RFC 6120 §5.4.3.3)."""
        if self._go(Event.TLS_DONE):
            self.tls_active = True
            self._restart()

    def _restart(self) -> None:
        self._parser.dispose()
        self._parser = self._make_parser()
        self._header_sent = False


_Handler = Callable[[C2SStream, etree._Element, list[Any]], None]

#: What an accepted element does (its row in the table says where the phase goes).
_HANDLERS: dict[Event, _Handler] = {
    Event.STARTTLS: C2SStream._starttls,
    Event.AUTH: C2SStream._auth,
    Event.RESPONSE: C2SStream._response,
    Event.ABORT: C2SStream._abort,
    Event.BIND: C2SStream._bind_or_stanza,
    Event.SESSION: C2SStream._session_or_stanza,
    Event.STANZA: C2SStream._stanza,
    Event.SM_ENABLE: C2SStream._enable,
    Event.SM_RESUME: C2SStream._resume,
    Event.SM_REQUEST: C2SStream._sm_request,
    Event.SM_ACK: C2SStream._sm_ack,
    Event.CSI: lambda stream, el, events: events.append(client_state(stream.settings, el)),
}


def _version_ok(version: str) -> bool:
    try:
        major, _, _minor = version.partition(".")
        return int(major) >= 1
    except ValueError:
        return False
