"""The c2s stream's phases and every transition between them, in one table.

:class:`~xmppd.stream.c2s.C2SStream` changes phase only by these rows
(:meth:`~xmppd.stream.machine.StreamMachine._go`); what a missing row means is in
:mod:`xmppd.stream.machine`. Phases, and what each accepts from the client (anything else
is the stream error in :data:`REFUSALS`):

====================  ===============================================================
``EXPECT_HEADER``     a stream header (first, and after STARTTLS)
``NEGOTIATING``       ``<starttls/>``, ``<auth/>`` (RFC 6120 §5, §6)
``WAIT_TLS``          nothing, unread: the shell is swapping the transport for TLS
``SASL``              ``<response/>``, ``<abort/>`` (§6.4)
``SASL_CHECK``        nothing: the shell is asking the auth backend
``EXPECT_RESTART``    a stream header after SASL success (§6.4.6)
``BIND``              a bind ``<iq/>`` (§7), XEP-0198 ``<resume/>``; a legacy session
                      ``<iq/>`` is answered, ``<enable/>`` refused (bind first)
``BINDING``           nothing: the shell is asking the router for the resource
``RESUMING``          nothing: the shell is looking for the session to resume
``ESTABLISHED``       stanzas; XEP-0198 ``<enable/>``, ``<r/>``, ``<a/>``
``CLOSED``            nothing, unread
====================  ===============================================================

Every open phase closes on the client's ``</stream:stream>``, on a stream error we send
and on our own close. :func:`classify` says which event a client's element is.
"""

from __future__ import annotations

from lxml import etree

from xmppd.stream import sm as smp
from xmppd.stream.machine import Refusal, Rules, TableEnum, closing_rows
from xmppd.xml import ns


class Phase(TableEnum):
    EXPECT_HEADER = "expect-header"
    NEGOTIATING = "negotiating"
    WAIT_TLS = "wait-tls"
    SASL = "sasl"
    SASL_CHECK = "sasl-check"
    EXPECT_RESTART = "expect-restart"
    BIND = "bind"
    BINDING = "binding"
    RESUMING = "resuming"
    ESTABLISHED = "established"
    CLOSED = "closed"


class Event(TableEnum):
    # -- the client (peer)
    HEADER = "stream header"
    CLOSE = "closing tag"
    STARTTLS = "starttls"
    AUTH = "auth"
    RESPONSE = "response"
    ABORT = "abort"
    #: ``<iq type='set'>`` with one ``<bind/>``.
    BIND = "bind"
    #: ``<iq>`` with one RFC 3921 ``<session/>`` (RFC 6121 keeps it as a no-op).
    SESSION = "session"
    STANZA = "stanza"
    SM_ENABLE = "enable"
    SM_RESUME = "resume"
    SM_REQUEST = "r"
    SM_ACK = "a"
    #: XEP-0352 ``<active/>`` / ``<inactive/>``.
    CSI = "client state"
    OTHER = "element"
    # -- the shell's answers
    TLS_DONE = "tls established"
    #: password_checked, scram_credentials, rate_limited.
    VERDICT = "backend verdict"
    BOUND = "bound"
    BIND_REFUSED = "bind refused"
    RESUMED = "resumed"
    RESUME_FAILED = "resume failed"
    # -- our outcomes
    CHALLENGE = "challenge"
    CHECK = "check with the backend"
    SUCCESS = "sasl success"
    FAILURE = "sasl failure"
    ERROR = "stream error"
    END = "close"


PEER = frozenset(
    {
        Event.HEADER, Event.CLOSE, Event.STARTTLS, Event.AUTH, Event.RESPONSE, Event.ABORT,
        Event.BIND, Event.SESSION, Event.STANZA, Event.SM_ENABLE, Event.SM_RESUME,
        Event.SM_REQUEST, Event.SM_ACK, Event.CSI, Event.OTHER,
    }
)  # fmt: skip
ANSWERS = frozenset(
    {
        Event.TLS_DONE, Event.VERDICT, Event.BOUND, Event.BIND_REFUSED, Event.RESUMED,
        Event.RESUME_FAILED,
    }
)  # fmt: skip

IQ_TAG = "{%s}iq" % ns.CLIENT
BIND_TAG = "{%s}bind" % ns.BIND
SESSION_TAG = "{%s}session" % ns.SESSION
_STANZAS = frozenset({"{%s}message" % ns.CLIENT, "{%s}presence" % ns.CLIENT, IQ_TAG})
#: Top-level elements other than stanzas, by qualified name.
_NONZAS = {
    "{%s}starttls" % ns.TLS: Event.STARTTLS,
    "{%s}auth" % ns.SASL: Event.AUTH,
    "{%s}response" % ns.SASL: Event.RESPONSE,
    "{%s}abort" % ns.SASL: Event.ABORT,
    smp.ENABLE: Event.SM_ENABLE,
    smp.RESUME: Event.SM_RESUME,
    smp.REQUEST: Event.SM_REQUEST,
    smp.ANSWER: Event.SM_ACK,
    "{%s}active" % ns.CSI: Event.CSI,
    "{%s}inactive" % ns.CSI: Event.CSI,
}


def classify(el: etree._Element) -> Event:
    """Which table event a top-level element from the client is."""
    tag = el.tag
    if tag in _STANZAS:
        if tag == IQ_TAG and len(el) == 1:
            child = el[0].tag
            if child == BIND_TAG and el.get("type") == "set":
                return Event.BIND
            if child == SESSION_TAG:
                return Event.SESSION
        return Event.STANZA
    return _NONZAS.get(tag, Event.OTHER)


_P, _E = Phase, Event
OPEN = frozenset(Phase) - {Phase.CLOSED}

TRANSITIONS: dict[tuple[Phase, Event], Phase] = {
    # The client opens the stream (RFC 6120 §4.2), and again after SASL (§6.4.6).
    (_P.EXPECT_HEADER, _E.HEADER): _P.NEGOTIATING,
    (_P.EXPECT_RESTART, _E.HEADER): _P.BIND,
    # STARTTLS (§5.4.2): <proceed/> (or <failure/> and close), the shell swaps the
    # transport, the stream restarts.
    (_P.NEGOTIATING, _E.STARTTLS): _P.WAIT_TLS,
    (_P.WAIT_TLS, _E.TLS_DONE): _P.EXPECT_HEADER,
    # SASL (§6.4): <auth/> starts an exchange (which may fail at once); each step
    # challenges, asks the backend through the shell, succeeds or fails.
    (_P.NEGOTIATING, _E.AUTH): _P.SASL,
    (_P.SASL, _E.RESPONSE): _P.SASL,
    (_P.SASL, _E.ABORT): _P.SASL,  # ends in FAILURE (aborted)
    (_P.SASL, _E.CHALLENGE): _P.SASL,
    (_P.SASL, _E.CHECK): _P.SASL_CHECK,
    (_P.SASL_CHECK, _E.VERDICT): _P.SASL,
    (_P.SASL, _E.SUCCESS): _P.EXPECT_RESTART,
    (_P.SASL, _E.FAILURE): _P.NEGOTIATING,
    # Resource binding (§7), or resuming a detached session instead (XEP-0198 §5).
    (_P.BIND, _E.BIND): _P.BINDING,
    (_P.BINDING, _E.BOUND): _P.ESTABLISHED,
    (_P.BINDING, _E.BIND_REFUSED): _P.BIND,
    (_P.BIND, _E.SESSION): _P.BIND,  # answered: a no-op (RFC 6121)
    (_P.BIND, _E.SM_ENABLE): _P.BIND,  # refused with <failed/>: bind first (XEP-0198 §3)
    (_P.BIND, _E.SM_RESUME): _P.RESUMING,
    (_P.RESUMING, _E.RESUMED): _P.ESTABLISHED,
    (_P.RESUMING, _E.RESUME_FAILED): _P.BIND,
    # Established: stanzas (a bind or session iq now is an ordinary one) and XEP-0198.
    (_P.ESTABLISHED, _E.STANZA): _P.ESTABLISHED,
    (_P.ESTABLISHED, _E.BIND): _P.ESTABLISHED,
    (_P.ESTABLISHED, _E.SESSION): _P.ESTABLISHED,
    (_P.ESTABLISHED, _E.SM_ENABLE): _P.ESTABLISHED,
    (_P.ESTABLISHED, _E.SM_RESUME): _P.ESTABLISHED,  # refused with <failed/>: bound
    (_P.ESTABLISHED, _E.SM_REQUEST): _P.ESTABLISHED,
    (_P.ESTABLISHED, _E.SM_ACK): _P.ESTABLISHED,
    (_P.ESTABLISHED, _E.CSI): _P.ESTABLISHED,  # XEP-0352 §4: only once bound
    # The end, from every open phase (in WAIT_TLS only by us: nothing is read there).
    **closing_rows(OPEN, Phase.CLOSED, Event.ERROR, Event.END),
    **closing_rows(OPEN - {Phase.WAIT_TLS}, Phase.CLOSED, Event.CLOSE),
}

_NOT_AUTHENTICATED = Refusal("not-authorized", "authenticate first")

#: The stream error for a client event a phase has no row for (RFC 6120 §4.9.3).
REFUSALS: dict[object, Refusal] = {
    _E.HEADER: Refusal("not-well-formed", "unexpected stream header"),
    _P.EXPECT_HEADER: Refusal("not-well-formed", "the stream is not open"),
    _P.NEGOTIATING: Refusal("unsupported-stanza-type", "unexpected element during negotiation"),
    (_P.NEGOTIATING, _E.STANZA): _NOT_AUTHENTICATED,
    (_P.NEGOTIATING, _E.BIND): _NOT_AUTHENTICATED,
    (_P.NEGOTIATING, _E.SESSION): _NOT_AUTHENTICATED,
    _P.SASL: Refusal("not-authorized", "expected a SASL response"),
    # The client must wait for <challenge/>, <success/> or <failure/> (§6.4): going on
    # would queue a backend check per element and let an old answer meet a newer exchange.
    _P.SASL_CHECK: Refusal("not-authorized", "wait for the outcome of the SASL step"),
    _P.EXPECT_RESTART: Refusal("not-authorized", "restart the stream after SASL success"),
    _P.BIND: Refusal("not-authorized", "bind a resource first"),
    _P.BINDING: Refusal("not-authorized", "wait for the bind result"),
    _P.RESUMING: Refusal("not-authorized", "wait for the resumption result"),
    _P.ESTABLISHED: Refusal("unsupported-stanza-type", "{name} is not a stanza"),
}

RULES: Rules[Phase, Event] = Rules(
    initial=Phase.EXPECT_HEADER,
    closed=Phase.CLOSED,
    transitions=TRANSITIONS,
    peer=PEER,
    answers=ANSWERS,
    refusals=REFUSALS,
    peer_close=Event.CLOSE,
    error=Event.ERROR,
    end=Event.END,
    deaf=frozenset({Phase.WAIT_TLS, Phase.CLOSED}),
)
