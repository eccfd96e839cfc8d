"""The c2s negotiation state machine, driven byte by byte with no sockets (RFC 6120 §4-§7)."""

from __future__ import annotations

import base64

import pytest
from lxml import etree

from tests.unit.stream_helpers import (
    BIND,
    CLIENT,
    DOMAIN,
    SASL,
    STREAMS,
    TLS,
    Driver,
    header,
    plain,
    sasl_failure,
    stanza_error,
    stream_error,
)
from xmppd.auth.base import Identity
from xmppd.jid import JID
from xmppd.stream.c2s import (
    MAX_SASL_ATTEMPTS,
    Authenticated,
    AuthFailed,
    BindRequest,
    Phase,
    StanzaReceived,
    StartTLS,
    StreamEnded,
)
from xmppd.xml import ns
from xmppd.xml.errors import StanzaError
from xmppd.xml.parser import StreamClose, StreamOpen

SASL_NS = ns.SASL


def feature_tags(features: etree._Element) -> list[str]:
    return [etree.QName(c).localname for c in features]


def mechanisms(features: etree._Element) -> list[str]:
    return [m.text for m in features.iterfind(f"{SASL}mechanisms/{SASL}mechanism")]


def ended(events) -> list[StreamEnded]:
    return [e for e in events if isinstance(e, StreamEnded)]


# ------------------------------------------------------------------ header checks
@pytest.mark.parametrize(
    ("kwargs", "condition"),
    [
        ({"to": None}, "host-unknown"),
        ({"to": "example.org"}, "host-unknown"),
        ({"to": "juliet@example.com"}, "host-unknown"),
        ({"to": "not a jid@@"}, "host-unknown"),
        ({"xmlns": "jabber:server"}, "invalid-namespace"),
        ({"version": None}, "unsupported-version"),
        ({"version": "0.9"}, "unsupported-version"),
        ({"version": "one"}, "unsupported-version"),
    ],
)
def test_bad_header(kwargs: dict, condition: str) -> None:
    d = Driver()
    events = d.send(header(**kwargs))
    items = d.take()
    assert isinstance(items[0], StreamOpen), "the server header comes before the error"
    assert items[0].attrs["from"] == DOMAIN
    assert items[0].attrs["version"] == "1.0"
    assert stream_error(items) == condition
    assert isinstance(items[-1], StreamClose)
    assert [e.error.condition for e in ended(events)] == [condition]
    assert d.stream.closed
    assert d.send(b"<message/>") == [] and d.take() == []


def test_wrong_stream_namespace_gets_invalid_namespace_with_our_header() -> None:
    d = Driver()
    d.send(header(stream_ns="urn:wrong"))
    items = d.take()
    assert isinstance(items[0], StreamOpen)
    assert stream_error(items) == "invalid-namespace"


def test_good_header_is_answered_with_header_and_features() -> None:
    d = Driver()
    d.send(header(extra=" from='juliet@example.com'"))
    items = d.take()
    assert isinstance(items[0], StreamOpen)
    attrs = items[0].attrs
    assert attrs["from"] == DOMAIN and attrs["to"] == "juliet@example.com"
    assert attrs["id"] == "sid1" and attrs["version"] == "1.0"
    assert items[0].default_ns == "jabber:client"
    assert items[1].tag == STREAMS + "features"
    assert d.stream.phase is Phase.NEGOTIATING
    assert d.raw.startswith(b"<?xml version='1.0'?><stream:stream ")


def test_version_above_one_is_fine() -> None:
    d = Driver(tls_required=False)
    assert mechanisms(d.open(version="1.5"))


def test_header_split_into_single_bytes() -> None:
    d = Driver(tls_required=False)
    data = header()
    d.send_chunks(data[i : i + 1] for i in range(len(data)))
    items = d.take()
    assert isinstance(items[0], StreamOpen) and items[1].tag == STREAMS + "features"


# ------------------------------------------------------------------ features and TLS
def test_features_before_tls_when_required() -> None:
    features = Driver(tls_required=True).open()
    assert feature_tags(features) == ["starttls"]
    assert features.find(f"{TLS}starttls/{TLS}required") is not None
    assert mechanisms(features) == []


def test_features_before_tls_when_optional() -> None:
    features = Driver(tls_required=False).open()
    assert feature_tags(features) == ["starttls", "mechanisms"]
    assert features.find(f"{TLS}starttls/{TLS}required") is None
    assert mechanisms(features) == ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]


def test_features_without_tls_available() -> None:
    features = Driver(tls_available=False, tls_required=False).open()
    assert feature_tags(features) == ["mechanisms"]


def test_starttls_then_restart() -> None:
    d = Driver()
    d.open()
    # The bytes after <starttls/> in the same read are plaintext injection: dropped.
    events = d.send(f"<starttls xmlns='{ns.TLS}'/>".encode() + plain("juliet", "r0meo & balcony"))
    assert events == [StartTLS()]
    items = d.take_elements()
    assert [i.tag for i in items] == [TLS + "proceed"]
    assert d.stream.phase is Phase.WAIT_TLS
    assert d.send(b"<message/>") == [] and d.take() == []
    d.tls()
    assert d.stream.tls_active
    assert d.take() == []  # nothing until the client's new header
    features = d.open()
    assert d.headers[-1].attrs["id"] == "sid2"  # a new stream id after restart
    assert feature_tags(features) == ["mechanisms"]
    assert "PLAIN" in mechanisms(features)
    d.send(plain("juliet", "r0meo & balcony"))
    assert [i.tag for i in d.take_elements()] == [SASL + "success"]


def test_starttls_when_not_available_fails_the_stream() -> None:
    d = Driver(tls_available=False, tls_required=False)
    d.open()
    events = d.send(f"<starttls xmlns='{ns.TLS}'/>".encode())
    items = d.take()
    assert items[0].tag == TLS + "failure"
    assert isinstance(items[1], StreamClose)
    assert ended(events) and d.stream.closed


def test_starttls_twice_fails() -> None:
    d = Driver()
    d.open()
    d.send(f"<starttls xmlns='{ns.TLS}'/>".encode())
    d.tls()
    d.take()
    d.open()
    d.send(f"<starttls xmlns='{ns.TLS}'/>".encode())
    assert d.take()[0].tag == TLS + "failure"
    assert d.stream.closed


# ------------------------------------------------------------------ SASL PLAIN
def plain_driver(**kw) -> Driver:
    d = Driver(tls_required=False, **kw)
    d.open()
    return d


def test_plain_success_and_restart() -> None:
    d = plain_driver()
    events = d.send(plain("juliet", "r0meo & balcony"))
    assert Authenticated(Identity("juliet"), "PLAIN") in events
    items = d.take()
    assert [i.tag for i in items] == [SASL + "success"]
    assert d.stream.phase is Phase.EXPECT_RESTART
    features = d.open()
    assert feature_tags(features)[:3] == ["bind", "session", "ver"]
    assert features.find(BIND + "bind") is not None
    assert features.find("{%s}session/{%s}optional" % (ns.SESSION, ns.SESSION)) is not None
    assert features.find("{%s}ver" % ns.ROSTER_VER) is not None
    assert mechanisms(features) == []


def test_plain_wrong_password() -> None:
    d = plain_driver()
    events = d.send(plain("juliet", "wrong"))
    assert sasl_failure(d.take_elements()[0]) == "not-authorized"
    assert AuthFailed("juliet", "not-authorized", "PLAIN") in events
    assert d.stream.phase is Phase.NEGOTIATING
    d.send(plain("juliet", "r0meo & balcony"))  # may retry
    assert [i.tag for i in d.take_elements()] == [SASL + "success"]


def test_plain_without_initial_response_gets_empty_challenge() -> None:
    d = plain_driver()
    d.send(f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'/>".encode())
    (challenge,) = d.take_elements()
    assert challenge.tag == SASL + "challenge" and challenge.text == "="
    payload = base64.b64encode(b"\x00romeo\x00pencil").decode()
    d.send(f"<response xmlns='{SASL_NS}'>{payload}</response>".encode())
    assert [i.tag for i in d.take_elements()] == [SASL + "success"]


def test_unknown_mechanism() -> None:
    d = plain_driver()
    events = d.send(f"<auth xmlns='{SASL_NS}' mechanism='X-OAUTH2'>AA==</auth>".encode())
    assert sasl_failure(d.take_elements()[0]) == "invalid-mechanism"
    assert not ended(events)


def test_bad_base64() -> None:
    d = plain_driver()
    d.send(f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>*not base64*</auth>".encode())
    assert sasl_failure(d.take_elements()[0]) == "incorrect-encoding"


def test_bad_base64_in_response() -> None:
    d = plain_driver()
    d.send(f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'/>".encode())
    d.take()
    d.send(f"<response xmlns='{SASL_NS}'>%%%</response>".encode())
    assert sasl_failure(d.take_elements()[0]) == "incorrect-encoding"


def test_abort() -> None:
    d = plain_driver()
    d.send(f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'/>".encode())
    d.take()
    events = d.send(f"<abort xmlns='{SASL_NS}'/>".encode())
    assert sasl_failure(d.take_elements()[0]) == "aborted"
    assert not [e for e in events if isinstance(e, AuthFailed)]
    d.send(plain("romeo", "pencil"))
    assert [i.tag for i in d.take_elements()] == [SASL + "success"]


def test_auth_without_tls_when_required() -> None:
    d = Driver(tls_required=True)
    d.open()
    d.send(plain("juliet", "r0meo & balcony"))
    assert sasl_failure(d.take_elements()[0]) == "encryption-required"
    assert d.stream.identity is None


def test_five_failures_end_the_stream() -> None:
    d = plain_driver()
    for n in range(1, MAX_SASL_ATTEMPTS + 1):
        events = d.send(plain("juliet", f"wrong{n}"))
        items = d.take()
        assert sasl_failure(items[0]) == "not-authorized"
        if n < MAX_SASL_ATTEMPTS:
            assert not ended(events) and len(items) == 1
    assert stream_error(items) == "policy-violation"
    assert [e.error.condition for e in ended(events)] == ["policy-violation"]
    assert d.stream.closed


@pytest.mark.parametrize("mech", ["PLAIN", "SCRAM-SHA-256"])
def test_rate_limited(mech: str) -> None:
    d = plain_driver(rate_limited=True)
    if mech == "PLAIN":
        events = d.send(plain("juliet", "r0meo & balcony"))
        failure = d.take_elements()[0]
    else:
        failure, _client = d.scram_login(mech, "juliet", "r0meo & balcony")
        events = d.events
    assert sasl_failure(failure) == "temporary-auth-failure"
    assert failure.findtext(SASL + "text")
    assert AuthFailed("juliet", "temporary-auth-failure", mech) in events
    assert d.stream.identity is None and d.stream.phase is Phase.NEGOTIATING


def test_elements_while_the_backend_is_checking_end_the_stream() -> None:
    """One read must not queue a password check per element (nor mix up answers)."""
    d = plain_driver(auto_auth=False)
    guesses = b"".join(
        b"<response xmlns='%s'>%s</response>"
        % (SASL_NS.encode(), base64.b64encode(b"\x00juliet\x00guess%d" % i))
        for i in range(50)
    )
    events = d.send(plain("juliet", "guess") + guesses)
    assert [type(e).__name__ for e in events] == ["CheckPassword", "StreamEnded"]
    assert stream_error(d.take()) == "not-authorized"
    # The late answer is ignored: the stream is over.
    assert d.stream.password_checked(Identity("juliet")) == []
    assert d.stream.identity is None and d.stream.data_to_send() == b""


def test_new_auth_while_scram_lookup_pending_is_refused() -> None:
    d = plain_driver(auto_auth=False)
    d.send(f"<auth xmlns='{SASL_NS}' mechanism='SCRAM-SHA-1'>".encode()
           + base64.b64encode(b"n,,n=romeo,r=abcdefgh") + b"</auth>")  # fmt: skip
    d.send(f"<abort xmlns='{SASL_NS}'/>".encode())
    assert stream_error(d.take()) == "not-authorized"


def test_wait_for_backend_then_continue() -> None:
    d = plain_driver(auto_auth=False)
    (check,) = d.send(plain("juliet", "r0meo & balcony"))
    assert d.take() == []
    d.send(b" ")  # a whitespace keepalive while waiting is fine
    assert not d.stream.closed
    d._handle(d.stream.password_checked(Identity(check.authcid)))
    d._pump()
    assert [i.tag for i in d.take_elements()] == [SASL + "success"]


# ------------------------------------------------------------------ SCRAM
@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_scram_success(mech: str) -> None:
    d = plain_driver()
    last, client = d.scram_login(mech, "juliet", "r0meo & balcony")
    assert last.tag == SASL + "success"
    # The client verifies the server signature carried in <success/>.
    assert client.process(base64.b64decode(last.text)) == b""
    assert d.stream.identity == Identity("juliet")
    assert Authenticated(Identity("juliet"), mech) in d.events
    assert feature_tags(d.open())[0] == "bind"


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
@pytest.mark.parametrize("user", ["juliet", "nobody"], ids=["wrong-password", "unknown-user"])
def test_scram_refused(mech: str, user: str) -> None:
    d = plain_driver()
    last, _client = d.scram_login(mech, user, "wrong password")
    assert sasl_failure(last) == "not-authorized"
    assert d.stream.identity is None
    assert AuthFailed(user, "not-authorized", mech) in d.events


# ------------------------------------------------------------------ ordering
def test_stanza_before_auth() -> None:
    d = plain_driver()
    events = d.send(b"<message to='romeo@example.com'><body>hi</body></message>")
    assert stream_error(d.take()) == "not-authorized"
    assert not [e for e in events if isinstance(e, StanzaReceived)]


def test_stanza_before_header_is_not_well_formed() -> None:
    d = Driver()
    d.send(b"<message/>")
    items = d.take()
    assert isinstance(items[0], StreamOpen)
    assert stream_error(items) == "not-well-formed"


def test_unknown_element_during_negotiation() -> None:
    d = plain_driver()
    d.send(b"<foo xmlns='urn:example'/>")
    assert stream_error(d.take()) == "unsupported-stanza-type"


def test_stanza_before_bind() -> None:
    d = Driver(tls_required=False)
    d.login()
    d.send(b"<message to='romeo@example.com'><body>hi</body></message>")
    assert stream_error(d.take()) == "not-authorized"


def test_legacy_session_before_bind_is_answered() -> None:
    d = Driver(tls_required=False)
    d.login()
    d.send(f"<iq type='set' id='s0'><session xmlns='{ns.SESSION}'/></iq>".encode())
    (reply,) = d.take_elements()
    assert reply.get("type") == "result" and reply.get("id") == "s0"


# ------------------------------------------------------------------ bind
def test_bind_with_resource() -> None:
    d = Driver(tls_required=False)
    jid = d.bind("balcony")
    assert jid == JID("juliet", DOMAIN, "balcony")
    assert d.stream.jid == jid and d.stream.phase is Phase.ESTABLISHED
    (req,) = [e for e in d.events if isinstance(e, BindRequest)]
    assert req == BindRequest(jid, "b1")


def test_bind_without_resource_gets_a_generated_one() -> None:
    d = Driver(tls_required=False)
    jid = d.bind(None)
    assert jid.local == "juliet" and jid.domain == DOMAIN
    assert jid.resource and len(jid.resource) >= 8


def test_bind_with_invalid_resource() -> None:
    d = Driver(tls_required=False)
    d.login()
    d.send(f"<iq type='set' id='b1'><bind xmlns='{ns.BIND}'><resource>a\u200bb</resource>"
           "</bind></iq>".encode())  # fmt: skip
    (reply,) = d.take_elements()
    assert reply.get("id") == "b1"
    assert stanza_error(reply) == "bad-request"
    assert not [e for e in d.events if isinstance(e, BindRequest)]
    assert d.stream.phase is Phase.BIND  # may try again
    d.send(f"<iq type='set' id='b2'><bind xmlns='{ns.BIND}'/></iq>".encode())
    assert d.take_elements()[0].get("type") == "result"


def test_bind_conflict_from_the_router() -> None:
    d = Driver(tls_required=False, auto_bind=False)
    d.login()
    events = d.send(
        f"<iq type='set' id='b1'><bind xmlns='{ns.BIND}'><resource>r</resource></bind></iq>"
        .encode()
    )  # fmt: skip
    (req,) = [e for e in events if isinstance(e, BindRequest)]
    assert req.jid.resource == "r"
    assert d.stream.phase is Phase.BINDING
    d.send(b"<presence/>")  # nothing may overtake the bind
    assert stream_error(d.take()) == "not-authorized"

    d = Driver(tls_required=False, auto_bind=False)
    d.login()
    d.send(f"<iq type='set' id='b1'><bind xmlns='{ns.BIND}'/></iq>".encode())
    d.stream.bind_result("b1", StanzaError("conflict"))
    d._pump()
    (reply,) = d.take_elements()
    assert reply.get("id") == "b1" and stanza_error(reply) == "conflict"
    assert reply.find(f"{CLIENT}error").get("type") == "cancel"
    assert d.stream.jid is None and d.stream.phase is Phase.BIND


def test_bind_without_id_is_refused() -> None:
    d = Driver(tls_required=False)
    d.login()
    d.send(f"<iq type='set'><bind xmlns='{ns.BIND}'/></iq>".encode())
    assert stream_error(d.take()) == "not-authorized"


# ------------------------------------------------------------------ established
def established() -> Driver:
    d = Driver(tls_required=False)
    d.bind("balcony")
    d.events.clear()
    return d


def test_stanzas_get_the_authenticated_from() -> None:
    d = established()
    events = d.send(
        b"<message to='romeo@example.com' from='romeo@example.com/evil' id='m1'>"
        b"<body>hi</body></message><presence/>"
    )
    received = [e.stanza for e in events if isinstance(e, StanzaReceived)]
    assert [etree.QName(s).localname for s in received] == ["message", "presence"]
    assert all(s.get("from") == "juliet@example.com/balcony" for s in received)
    assert received[0].get("to") == "romeo@example.com"
    assert received[0].findtext(f"{CLIENT}body") == "hi"
    assert d.take() == []


def test_stanza_split_across_reads() -> None:
    d = established()
    data = b"<message to='romeo@example.com'><body>\xe2\x98\x83</body></message>"
    events = d.send_chunks(data[i : i + 1] for i in range(len(data)))
    (ev,) = events
    assert isinstance(ev, StanzaReceived)
    assert ev.stanza.findtext(f"{CLIENT}body") == "\u2603"


def test_legacy_session_is_answered_with_result() -> None:
    d = established()
    events = d.send(f"<iq type='set' id='s1'><session xmlns='{ns.SESSION}'/></iq>".encode())
    assert events == []
    (reply,) = d.take_elements()
    assert reply.tag == CLIENT + "iq"
    assert reply.get("type") == "result" and reply.get("id") == "s1"
    assert reply.get("to") == "juliet@example.com/balcony"


@pytest.mark.parametrize(
    "iq",
    [
        b"<iq type='get' to='example.com'><ping xmlns='urn:xmpp:ping'/></iq>",
        b"<iq type='fetch' id='x1'><ping xmlns='urn:xmpp:ping'/></iq>",
        b"<iq id='x1'><ping xmlns='urn:xmpp:ping'/></iq>",
        b"<iq type='get' id='x1'/>",
        b"<iq type='set' id='x1'><a xmlns='urn:a'/><b xmlns='urn:b'/></iq>",
    ],
    ids=["no-id", "bad-type", "no-type", "no-payload", "two-payloads"],
)
def test_invalid_iq_bounced_not_routed(iq: bytes) -> None:
    d = established()
    events = d.send(iq)
    assert not [e for e in events if isinstance(e, StanzaReceived)]
    (reply,) = d.take_elements()
    assert stanza_error(reply) == "bad-request"
    assert reply.get("to") == "juliet@example.com/balcony"
    assert reply.get("id") == etree.fromstring(iq).get("id")
    # the error comes from the addressee; with no 'to', implicitly from the account
    assert reply.get("from") == etree.fromstring(iq).get("to")
    assert not d.stream.closed


def test_iq_error_without_id_is_dropped_silently() -> None:
    d = established()
    assert d.send(b"<iq type='error'><x xmlns='urn:x'/></iq>") == []
    assert d.take() == []


def test_unknown_top_level_element() -> None:
    d = established()
    events = d.send(b"<foo xmlns='urn:example'/>")
    assert stream_error(d.take()) == "unsupported-stanza-type"
    assert ended(events)[0].error.condition == "unsupported-stanza-type"


def test_stanza_in_wrong_namespace_is_not_a_stanza() -> None:
    d = established()
    d.send(b"<message xmlns='jabber:server'/>")
    assert stream_error(d.take()) == "unsupported-stanza-type"


def test_broken_xml_after_bind() -> None:
    d = established()
    d.send(b"<message><body></message>")
    assert stream_error(d.take()) == "not-well-formed"


def test_oversized_stanza_is_policy_violation() -> None:
    d = Driver(tls_required=False, max_stanza_size=10_000)
    d.bind("balcony")
    d.take()
    d.send(b"<message><body>" + b"x" * 11_000 + b"</body></message>")
    assert stream_error(d.take()) == "policy-violation"


# ------------------------------------------------------------------ closing
def test_client_closes_the_stream() -> None:
    d = established()
    events = d.send(b"</stream:stream>")
    assert events == [StreamEnded(by_peer=True)]
    items = d.take()
    assert items == [StreamClose()]
    assert d.raw.endswith(b"</stream:stream>")
    assert d.stream.closed
    assert d.stream.close() == StreamEnded()
    assert d.stream.data_to_send() == b""


def test_client_closes_before_auth() -> None:
    d = plain_driver()
    events = d.send(b"</stream:stream>")
    assert events == [StreamEnded(by_peer=True)]
    assert d.take() == [StreamClose()]


def test_close_system_shutdown() -> None:
    d = established()
    ev = d.stream.close("system-shutdown")
    d._pump()
    assert ev.error is not None and ev.error.condition == "system-shutdown"
    assert d.raw.endswith(
        b'<stream:error><system-shutdown xmlns="urn:ietf:params:xml:ns:xmpp-streams"/>'
        b"</stream:error></stream:stream>"
    )
    items = d.take()
    assert stream_error(items) == "system-shutdown"
    assert d.stream.closed


def test_close_before_any_header_still_sends_one() -> None:
    d = Driver()
    d.stream.close("system-shutdown")
    d._pump()
    items = d.take()
    assert isinstance(items[0], StreamOpen)
    assert stream_error(items) == "system-shutdown"


def test_close_without_error() -> None:
    d = established()
    assert d.stream.close() == StreamEnded()
    d._pump()
    assert d.take() == [StreamClose()]
