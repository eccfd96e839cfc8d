"""Server side of one client-to-server stream (RFC 6120): negotiation as a sans-IO machine.

``receive_data(bytes)`` returns events; ``data_to_send()`` returns the bytes to write.
Whatever needs I/O — TLS, looking up credentials, binding a resource in the router —
is an event for the trio shell, which answers through ``tls_established()``,
``password_checked()``, ``scram_credentials()`` and ``bind_result()``.

Negotiation phases, and what each accepts (anything else is a stream error):

====================  ===============================================================
``EXPECT_HEADER``     a stream header (initially and after every restart)
``NEGOTIATING``       ``<starttls/>``, ``<auth/>`` before authentication;
                      a bind ``<iq/>`` after it
``WAIT_TLS``          nothing: the shell is swapping the transport for TLS
``SASL``              ``<response/>`` / ``<abort/>``, or waiting on the shell
``BINDING``           waiting on the shell for the router's answer
``ESTABLISHED``       stanzas (emitted with the authenticated ``from``); XEP-0198
                      ``<enable/>``, ``<r/>``, ``<a/>``
``CLOSED``            nothing
====================  ===============================================================

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
import enum
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

from xmppd.auth.base import AuthError, Identity, ScramCredentials
from xmppd.jid import JID, JIDError, resourceprep
from xmppd.stream import sm as smp
from xmppd.stream.framing import STREAM, Framing, Reader, adopt_httpbind
from xmppd.stream.sasl import (
    Challenge,
    Failure,
    NeedPassword,
    NeedScramCredentials,
    SaslStep,
    ServerMechanism,
    Success,
)
from xmppd.xml import ns
from xmppd.xml.errors import StanzaError, StreamError, error_reply
from xmppd.xml.parser import StreamClose, StreamOpen

MAX_SASL_ATTEMPTS = 5

_STARTTLS = "{%s}starttls" % ns.TLS
_AUTH = "{%s}auth" % ns.SASL
_RESPONSE = "{%s}response" % ns.SASL
_ABORT = "{%s}abort" % ns.SASL
_IQ = "{%s}iq" % ns.CLIENT
_STANZAS = frozenset({"{%s}message" % ns.CLIENT, "{%s}presence" % ns.CLIENT, _IQ})
_BIND = "{%s}bind" % ns.BIND
_SESSION = "{%s}session" % ns.SESSION


# ------------------------------------------------------------------------ events
@dataclass(frozen=True, slots=True)
class StartTLS:
    """Flush what is pending, wrap the transport in TLS, then call ``tls_established()``."""


@dataclass(frozen=True, slots=True)
class CheckPassword:
    """Verify with the auth backend, then call ``password_checked()``."""

    authcid: str
    authzid: str | None
    password: str


@dataclass(frozen=True, slots=True)
class FetchScram:
    """Look up stored SCRAM keys, then call ``scram_credentials()``."""

    username: str
    hash_name: str


@dataclass(frozen=True, slots=True)
class Authenticated:
    identity: Identity
    mechanism: str


@dataclass(frozen=True, slots=True)
class AuthFailed:
    """Feed for rate limits: ``username`` may be None when the payload was unusable."""

    username: str | None
    condition: str
    #: The SASL mechanism of the failed exchange ("" when none was started).
    mechanism: str = ""


@dataclass(frozen=True, slots=True)
class BindRequest:
    """Ask the router to bind ``jid``; then call ``bind_result()``."""

    jid: JID
    iq_id: str


@dataclass(frozen=True, slots=True)
class StanzaReceived:
    stanza: etree._Element


@dataclass(frozen=True, slots=True)
class SMEnabled:
    """XEP-0198 is on: attach ``sm`` to the session (and register its token)."""

    sm: smp.StreamManagement


@dataclass(frozen=True, slots=True)
class ResumeRequest:
    """``<resume/>`` after auth: find the session, then ``resumed()``/``resume_failed()``."""

    previd: str
    h: int


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The stream is over (peer closed, or we sent an error); close the transport."""

    error: StreamError | None = None
    by_peer: bool = False


StreamEvent = (
    StartTLS | CheckPassword | FetchScram | Authenticated | AuthFailed | BindRequest
    | StanzaReceived | StreamEnded | SMEnabled | ResumeRequest
)  # fmt: skip


class Phase(enum.Enum):
    EXPECT_HEADER = "expect-header"
    NEGOTIATING = "negotiating"
    WAIT_TLS = "wait-tls"
    SASL = "sasl"
    BINDING = "binding"
    ESTABLISHED = "established"
    CLOSED = "closed"


@dataclass(slots=True)
class C2SSettings:
    """What a stream needs to know about its server and transport."""

    domain: str
    mechanisms: dict[str, Callable[[], ServerMechanism]]
    tls_available: bool = False
    tls_active: bool = False
    #: TLS must be negotiated before SASL (``require_encryption`` and not exempt).
    tls_required: bool = True
    max_stanza_size: int = 262_144
    max_depth: int = 64
    lang: str = "en"
    #: XEP-0198 offered after authentication.
    sm_enabled: bool = False
    #: Longest a detached session is kept, seconds (the ``max`` we grant).
    sm_resume_timeout: int = 300
    sm_request_every: int = 5
    sm_max_unacked: int = 500


def _b64decode(text: str | None) -> bytes | None:
    """SASL payloads: absent -> None, ``=`` -> empty (RFC 6120 §6.4.2)."""
    if text is None:
        return None
    text = text.strip()
    if text in ("", "="):
        return b""
    return base64.b64decode(text, validate=True)


class C2SStream:
    """One client stream on the server side; no I/O, no clock, no database."""

    __slots__ = (
        "_awaiting_backend",
        "_framing",
        "_header_sent",
        "_mechanism",
        "_new_id",
        "_out",
        "_parser",
        "_peer_from",
        "_pending_user",
        "_sasl_failures",
        "identity",
        "jid",
        "phase",
        "settings",
        "sm",
        "stream_id",
        "tls_active",
    )

    def __init__(
        self,
        settings: C2SSettings,
        stream_id_factory: Callable[[], str] | None = None,
        framing: Framing = STREAM,
    ) -> None:
        self.settings = settings
        self._framing = framing
        self._new_id = stream_id_factory or (lambda: secrets.token_hex(8))
        self.phase = Phase.EXPECT_HEADER
        self.tls_active = settings.tls_active
        self.identity: Identity | None = None
        self.jid: JID | None = None
        self.stream_id = ""
        self._out: list[bytes] = []
        self._parser = self._make_parser()
        self._header_sent = False
        self._mechanism: ServerMechanism | None = None
        self._sasl_failures = 0
        self._peer_from: str | None = None
        self._pending_user: str | None = None
        #: A CheckPassword/FetchScram is out: the shell owes us its answer.
        self._awaiting_backend = False
        #: XEP-0198 state once enabled or resumed (shared with the session).
        self.sm: smp.StreamManagement | None = None

    # --------------------------------------------------------------- plumbing
    def _make_parser(self) -> Reader:
        return self._framing.reader(self.settings.max_stanza_size, self.settings.max_depth)

    @property
    def framing(self) -> Framing:
        return self._framing

    def data_to_send(self) -> bytes:
        """Bytes produced since the last call, in order."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def frames_to_send(self) -> list[bytes]:
        """Output since the last call, one top-level element (or header/close) per item."""
        frames = self._out
        self._out = []
        return frames

    def send(self, data: bytes) -> None:
        """Queue one frame (a complete element, or for TCP any bytes)."""
        if data:
            self._out.append(data)

    def send_stanza(self, stanza: etree._Element) -> None:
        data = etree.tostring(stanza)
        self._out.append(data)
        sm = self.sm
        if sm is not None and self.phase is Phase.ESTABLISHED and sm.record(data):
            self._out.append(smp.R)

    def dispose(self) -> None:
        """Free parser state; the connection is gone."""
        self._parser.dispose()

    def hibernate(self) -> bool:
        """Release parser memory while an established stream is idle between stanzas."""
        return self.phase is Phase.ESTABLISHED and self._parser.hibernate()

    @property
    def closed(self) -> bool:
        return self.phase is Phase.CLOSED

    def receive_data(self, data: bytes) -> list[StreamEvent]:
        """Feed bytes from the peer; returns the events they complete."""
        if self.phase in (Phase.CLOSED, Phase.WAIT_TLS):
            return []  # after <proceed/>, plaintext bytes must not be trusted (RFC 6120 §5.4.3.3)
        events: list[StreamEvent] = []
        try:
            for item in self._parser.feed(data):
                if self.phase is Phase.CLOSED:
                    break
                if isinstance(item, StreamOpen):
                    self._on_header(item)
                elif isinstance(item, StreamClose):
                    self.send(self._framing.closing())
                    self.phase = Phase.CLOSED
                    events.append(StreamEnded(by_peer=True))
                else:
                    self._on_element(item, events)
                if self.phase is Phase.WAIT_TLS:
                    break
        except StreamError as err:
            events.append(self._fail(err))
        return events

    def open_stream(self, attrs: dict[str, str]) -> list[StreamEvent]:
        """A stream header that arrived outside the byte stream (BOSH creation/restart)."""
        if self.phase is Phase.CLOSED:
            return []
        try:
            self._on_header(StreamOpen(dict(attrs), ns.CLIENT))
        except StreamError as err:
            return [self._fail(err)]
        return []

    def receive_element(self, el: etree._Element) -> list[StreamEvent]:
        """One top-level element parsed by the transport (a BOSH ``<body/>`` child)."""
        if self.phase in (Phase.CLOSED, Phase.WAIT_TLS):
            return []
        events: list[StreamEvent] = []
        try:
            if self.phase is Phase.EXPECT_HEADER:
                raise StreamError("not-authorized", "the stream is not open")
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
        if self.phase is Phase.CLOSED:
            return StreamEnded()
        if condition is None:
            self._ensure_header()
            self.send(self._framing.closing())
            self.phase = Phase.CLOSED
            return StreamEnded()
        return self._fail(StreamError(condition, text, app))

    def _fail(self, err: StreamError) -> StreamEnded:
        self._ensure_header()
        self.send(self._framing.stream_error(err))
        self.send(self._framing.closing())
        self.phase = Phase.CLOSED
        return StreamEnded(error=err)

    # ----------------------------------------------------------------- header
    def _header_bytes(self) -> bytes:
        attrs = {
            "from": self.settings.domain,
            "id": self.stream_id,
            "version": "1.0",
            "xml:lang": self.settings.lang,
        }
        if self._peer_from:
            attrs["to"] = self._peer_from
        return self._framing.header(attrs)

    def _ensure_header(self) -> None:
        if not self._header_sent:
            if not self.stream_id:
                self.stream_id = self._new_id()
            self.send(self._header_bytes())
            self._header_sent = True

    def _on_header(self, header: StreamOpen) -> None:
        if self.phase is not Phase.EXPECT_HEADER:
            raise StreamError("not-well-formed", "unexpected stream header")
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
        self.phase = Phase.ESTABLISHED if self.jid is not None else Phase.NEGOTIATING

    def _sasl_allowed(self) -> bool:
        return self.tls_active or not self.settings.tls_required

    def _features(self) -> bytes:
        parts = [self._framing.features_open]
        if self.identity is None:
            if self.settings.tls_available and not self.tls_active:
                required = b"<required/>" if self.settings.tls_required else b""
                parts.append(b'<starttls xmlns="%s">%s</starttls>' % (ns.TLS.encode(), required))
            if self._sasl_allowed():
                parts.append(b'<mechanisms xmlns="%s">' % ns.SASL.encode())
                for name in self.settings.mechanisms:
                    parts.append(b"<mechanism>%s</mechanism>" % name.encode())
                parts.append(b"</mechanisms>")
        elif self.jid is None:
            parts.append(b'<bind xmlns="%s"/>' % ns.BIND.encode())
            parts.append(b'<session xmlns="%s"><optional/></session>' % ns.SESSION.encode())
            parts.append(b'<ver xmlns="%s"/>' % ns.ROSTER_VER.encode())
            parts.append(b'<sub xmlns="%s"/>' % ns.PRE_APPROVAL.encode())
            if self.settings.sm_enabled:
                parts.append(smp.FEATURE)
        parts.append(b"</stream:features>")
        return b"".join(parts)

    # --------------------------------------------------------------- elements
    def _on_element(self, el: etree._Element, events: list[StreamEvent]) -> None:
        if self._awaiting_backend:
            # The client must wait for <challenge/>, <success/> or <failure/> (RFC 6120
            # §6.4). Going on would queue one backend check per element of a single read
            # and let an old answer land on a newer exchange.
            raise StreamError("not-authorized", "wait for the outcome of the SASL step")
        phase = self.phase
        tag = el.tag
        if phase is Phase.ESTABLISHED:
            if tag not in _STANZAS:
                if tag.startswith("{urn:xmpp:sm:3}"):
                    self._sm_element(el, events)
                    return
                raise StreamError(
                    "unsupported-stanza-type", f"{etree.QName(el).localname} is not a stanza"
                )
            if self.sm is not None:
                self.sm.handled()
            if tag == _IQ and len(el) == 1 and el[0].tag == _SESSION and el.get("to") in (
                None, self.settings.domain,
            ):  # fmt: skip
                self._reply_result(el)  # RFC 6121 legacy session establishment: a no-op
                return
            if self._invalid_stanza(el):
                return
            el.set("from", str(self.jid))
            events.append(StanzaReceived(el))
            return
        if phase is Phase.NEGOTIATING:
            if self.identity is None:
                self._pre_auth(el, events)
            else:
                self._pre_bind(el, events)
            return
        if phase is Phase.SASL:
            self._sasl_element(el, events)
            return
        if phase is Phase.BINDING:
            raise StreamError("not-authorized", "wait for the bind result")
        raise StreamError("not-well-formed", "unexpected element")

    def _invalid_stanza(self, el: etree._Element) -> bool:
        """RFC 6120 §8.1/§8.2 checks that are the stream's business: bounce and drop."""
        if el.tag != _IQ:
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
        reply = etree.Element(_IQ, nsmap={None: ns.CLIENT})
        reply.set("type", "result")
        reply.set("id", el.get("id") or "")
        if self.jid is not None:
            reply.set("to", str(self.jid))
        self.send_stanza(reply)

    def _pre_auth(self, el: etree._Element, events: list[StreamEvent]) -> None:
        tag = el.tag
        if tag == _STARTTLS:
            if not self.settings.tls_available or self.tls_active:
                self.send(b'<failure xmlns="%s"/>' % ns.TLS.encode())
                self.send(self._framing.closing())
                self.phase = Phase.CLOSED
                events.append(StreamEnded())
                return
            self.send(b'<proceed xmlns="%s"/>' % ns.TLS.encode())
            self.phase = Phase.WAIT_TLS
            events.append(StartTLS())
            return
        if tag == _AUTH:
            if not self._sasl_allowed():
                self._sasl_failure("encryption-required", None, events)
                return
            name = el.get("mechanism", "")
            factory = self.settings.mechanisms.get(name)
            if factory is None:
                self._sasl_failure("invalid-mechanism", None, events)
                return
            try:
                initial = _b64decode(el.text)
            except (binascii.Error, ValueError):
                self._sasl_failure("incorrect-encoding", None, events)
                return
            self._mechanism = factory()
            self.phase = Phase.SASL
            self._sasl_step(self._mechanism.start(initial), events)
            return
        if tag in _STANZAS:
            raise StreamError("not-authorized", "authenticate first")
        raise StreamError("unsupported-stanza-type", "unexpected element during negotiation")

    def _pre_bind(self, el: etree._Element, events: list[StreamEvent]) -> None:
        if el.tag == smp.RESUME:
            self._resume_element(el, events)
            return
        if el.tag == smp.ENABLE:
            # XEP-0198 §3: enabling before a resource is bound is not allowed.
            self.send(smp.failed_element("unexpected-request", text="bind a resource first"))
            return
        if el.tag == _IQ and el.get("type") == "set" and len(el) == 1 and el[0].tag == _BIND:
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
                    self._bind_error(iq_id, "bad-request", "the resource is not valid")
                    return
            if resource is None:
                resource = secrets.token_hex(6)
            assert self.identity is not None
            jid = JID(self.identity.localpart, self.settings.domain, resource)
            self.phase = Phase.BINDING
            events.append(BindRequest(jid, iq_id))
            return
        if el.tag == _IQ and len(el) == 1 and el[0].tag == _SESSION:
            self._reply_result(el)
            return
        raise StreamError("not-authorized", "bind a resource first")

    def _bind_error(self, iq_id: str, condition: str, text: str | None = None) -> None:
        err = StanzaError(condition, text)
        iq = etree.Element(_IQ, nsmap={None: ns.CLIENT})
        iq.set("type", "error")
        iq.set("id", iq_id)
        self.send_stanza(error_reply(iq, err))

    # ------------------------------------------------------------------- SASL
    def _sasl_element(self, el: etree._Element, events: list[StreamEvent]) -> None:
        if self._mechanism is None:
            raise StreamError("not-authorized", "no SASL exchange is waiting for input")
        if el.tag == _ABORT:
            self._sasl_failure("aborted", None, events)
            return
        if el.tag != _RESPONSE:
            raise StreamError("not-authorized", "expected a SASL response")
        try:
            data = _b64decode(el.text) or b""
        except (binascii.Error, ValueError):
            self._sasl_failure("incorrect-encoding", None, events)
            return
        self._sasl_step(self._mechanism.respond(data), events)

    def _sasl_step(self, step: SaslStep, events: list[StreamEvent]) -> None:
        if isinstance(step, Challenge):
            payload = base64.b64encode(step.data) if step.data else b"="
            self.send(b'<challenge xmlns="%s">%s</challenge>' % (ns.SASL.encode(), payload))
        elif isinstance(step, NeedPassword):
            self._pending_user = step.authcid
            self._awaiting_backend = True
            events.append(CheckPassword(step.authcid, step.authzid, step.password))
        elif isinstance(step, NeedScramCredentials):
            self._pending_user = step.username
            self._awaiting_backend = True
            events.append(FetchScram(step.username, step.hash_name))
        elif isinstance(step, Success):
            self._sasl_success(step, events)
        elif isinstance(step, Failure):
            self._sasl_failure(step.condition, step.text, events)

    def _sasl_success(self, step: Success, events: list[StreamEvent]) -> None:
        name = self._mechanism.name if self._mechanism else ""
        self._mechanism = None
        self.identity = step.identity
        payload = base64.b64encode(step.additional_data) if step.additional_data else b""
        self.send(b'<success xmlns="%s">%s</success>' % (ns.SASL.encode(), payload))
        events.append(Authenticated(step.identity, name))
        self._restart()

    def _sasl_failure(self, condition: str, text: str | None, events: list[StreamEvent]) -> None:
        mechanism = self._mechanism.name if self._mechanism else ""
        self._mechanism = None
        self.phase = Phase.NEGOTIATING
        body = b"<%s/>" % condition.encode()
        if text:
            body += b'<text xml:lang="en">%s</text>' % _text(text).encode()
        self.send(b'<failure xmlns="%s">%s</failure>' % (ns.SASL.encode(), body))
        if condition in ("aborted", "invalid-mechanism", "encryption-required"):
            return
        events.append(AuthFailed(self._pending_user, condition, mechanism))
        self._sasl_failures += 1
        if self._sasl_failures >= MAX_SASL_ATTEMPTS:
            events.append(self._fail(StreamError("policy-violation", "too many failed logins")))

    def password_checked(self, result: Identity | AuthError) -> list[StreamEvent]:
        """The backend's verdict on a :class:`CheckPassword`."""
        if self.phase is not Phase.SASL:
            return []
        self._awaiting_backend = False
        events: list[StreamEvent] = []
        if isinstance(result, AuthError):
            self._sasl_failure(result.condition, None, events)
        else:
            self._sasl_success(Success(result), events)
        return events

    def scram_credentials(
        self, found: tuple[Identity, ScramCredentials] | None
    ) -> list[StreamEvent]:
        """The stored keys for a :class:`FetchScram` (``None``: unknown user)."""
        if self.phase is not Phase.SASL or self._mechanism is None:
            return []
        self._awaiting_backend = False
        events: list[StreamEvent] = []
        self._sasl_step(self._mechanism.credentials(found), events)
        return events

    def rate_limited(self) -> list[StreamEvent]:
        """The shell refused to even try: too many failures from this peer or user."""
        if self.phase is Phase.CLOSED:
            return []
        self._awaiting_backend = False
        events: list[StreamEvent] = []
        self._sasl_failure("temporary-auth-failure", "too many failed attempts, try later", events)
        return events

    # ------------------------------------------------------ stream management
    def _sm_element(self, el: etree._Element, events: list[StreamEvent]) -> None:
        tag = el.tag
        sm = self.sm
        if tag == smp.REQUEST and sm is not None:
            self.send(sm.answer())
            return
        if tag == smp.ANSWER and sm is not None:
            h = smp.parse_h(el.get("h"))
            if h is None:
                raise StreamError("invalid-xml", "'h' must be an unsigned 32-bit integer")
            try:
                sm.ack(h)
            except smp.HandledCountTooHigh as exc:
                raise StreamError("undefined-condition", str(exc), exc.app_condition()) from None
            return
        if tag == smp.ENABLE:
            if not self.settings.sm_enabled:
                self.send(smp.failed_element("feature-not-implemented"))
                return
            if sm is not None:
                # XEP-0198 §3: at most one <enable/> per stream.
                self.send(smp.failed_element("unexpected-request", text="already enabled"))
                return
            assert self.jid is not None
            settings = self.settings
            resume = el.get("resume") in ("true", "1")
            sm = smp.StreamManagement(
                str(self.jid.bare),
                token=smp.new_token() if resume else None,
                max_seconds=smp.resume_timeout(el.get("max"), settings.sm_resume_timeout),
                request_every=settings.sm_request_every,
                max_unacked=settings.sm_max_unacked,
            )
            self.sm = sm
            self.send(sm.enabled_element())
            events.append(SMEnabled(sm))
            return
        if tag == smp.RESUME:
            self.send(smp.failed_element("unexpected-request", text="the stream is bound"))
            return
        raise StreamError("unsupported-stanza-type", "stream management is not enabled")

    def _resume_element(self, el: etree._Element, events: list[StreamEvent]) -> None:
        if not self.settings.sm_enabled:
            self.send(smp.failed_element("feature-not-implemented"))
            return
        previd = el.get("previd") or ""
        h = smp.parse_h(el.get("h"))
        if not previd or h is None:
            self.send(smp.failed_element("bad-request", text="previd and h are required"))
            return
        self.phase = Phase.BINDING
        events.append(ResumeRequest(previd, h))

    def resumed(self, jid: JID, sm: smp.StreamManagement) -> None:
        """The shell took over the session ``jid``: answer ``<resumed/>`` (XEP-0198 §5)."""
        if self.phase is not Phase.BINDING:
            return
        self.jid = jid
        self.sm = sm
        self.phase = Phase.ESTABLISHED
        self.send(sm.resumed_element())

    def resume_failed(self, h: int | None = None, text: str | None = None) -> None:
        """No such session (or not this user's): ``item-not-found``; binding stays open."""
        if self.phase is not Phase.BINDING:
            return
        self.phase = Phase.NEGOTIATING
        self.send(smp.failed_element("item-not-found", h, text))

    # --------------------------------------------------------- TLS and restart
    def tls_established(self) -> None:
        """The transport is now TLS: expect a fresh stream header (RFC 6120 §5.4.3.3)."""
        self.tls_active = True
        self._restart()

    def _restart(self) -> None:
        self._parser.dispose()
        self._parser = self._make_parser()
        self._header_sent = False
        self.phase = Phase.EXPECT_HEADER

    # -------------------------------------------------------------------- bind
    def bind_result(self, iq_id: str, jid: JID | StanzaError) -> None:
        """The router bound (or refused) the resource asked for in :class:`BindRequest`."""
        if self.phase is not Phase.BINDING:
            return
        if isinstance(jid, StanzaError):
            self.phase = Phase.NEGOTIATING
            self._bind_error(iq_id, jid.condition, jid.text)
            return
        self.jid = jid
        self.phase = Phase.ESTABLISHED
        reply = etree.Element(_IQ, nsmap={None: ns.CLIENT})
        reply.set("type", "result")
        reply.set("id", iq_id)
        bind = etree.SubElement(reply, _BIND, nsmap={None: ns.BIND})
        etree.SubElement(bind, "{%s}jid" % ns.BIND).text = str(jid)
        self.send_stanza(reply)


def _version_ok(version: str) -> bool:
    try:
        major, _, _minor = version.partition(".")
        return int(major) >= 1
    except ValueError:
        return False


def _text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
