"""One C2SStream, three framings: WebSocket (RFC 7395) and BOSH (XEP-0206) negotiation."""

from __future__ import annotations

import base64

from lxml import etree

from tests.unit.stream_helpers import DOMAIN, settings
from xmppd.auth.base import Identity
from xmppd.stream.c2s import (
    BindRequest,
    C2SStream,
    CheckPassword,
    StanzaReceived,
    StreamEnded,
)
from xmppd.stream.framing import (
    BOSH,
    FRAMING_NS,
    HTTPBIND_NS,
    WEBSOCKET,
    adopt_httpbind,
    with_client_ns,
)
from xmppd.xml import ns

OPEN = f"<open xmlns='{FRAMING_NS}' to='{DOMAIN}' version='1.0'/>".encode()
PLAIN = base64.b64encode(b"\x00juliet\x00pw").decode()
AUTH = f"<auth xmlns='{ns.SASL}' mechanism='PLAIN'>{PLAIN}</auth>".encode()
BIND = (
    b"<iq xmlns='jabber:client' type='set' id='b1'>"
    b"<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>web</resource></bind></iq>"
)


def ws_stream() -> C2SStream:
    return C2SStream(settings(tls_available=False, tls_required=False), framing=WEBSOCKET)


def parse_frames(frames: list[bytes]) -> list[etree._Element]:
    """Every frame must be a complete, namespace-correct document on its own."""
    return [etree.fromstring(f) for f in frames]


def login(stream: C2SStream, feed) -> None:  # type: ignore[no-untyped-def]
    events = feed(AUTH)
    assert isinstance(events[0], CheckPassword)
    stream.password_checked(Identity("juliet"))
    [success] = parse_frames(stream.frames_to_send())
    assert success.tag == "{%s}success" % ns.SASL


def test_websocket_negotiation_one_element_per_frame() -> None:
    s = ws_stream()
    assert s.receive_data(OPEN) == []
    opened, features = parse_frames(s.frames_to_send())
    assert opened.tag == "{%s}open" % FRAMING_NS
    assert opened.get("from") == DOMAIN and opened.get("id") and opened.get("version") == "1.0"
    assert features.tag == "{%s}features" % ns.STREAMS
    assert features.find("{%s}mechanisms" % ns.SASL) is not None
    login(s, s.receive_data)
    s.receive_data(OPEN)  # restart after SASL is a new <open/>
    opened, features = parse_frames(s.frames_to_send())
    assert features.find("{%s}bind" % ns.BIND) is not None
    [bind] = s.receive_data(BIND)
    assert isinstance(bind, BindRequest)
    s.bind_result(bind.iq_id, bind.jid)
    [result] = parse_frames(s.frames_to_send())
    assert result.tag == "{jabber:client}iq" and result.get("type") == "result"
    [stanza] = s.receive_data(
        b"<message xmlns='jabber:client' to='a@example.com'><body>x</body></message>"
    )
    assert isinstance(stanza, StanzaReceived)
    assert stanza.stanza.get("from") == f"juliet@{DOMAIN}/web"
    [ended] = s.receive_data(f"<close xmlns='{FRAMING_NS}'/>".encode())
    assert isinstance(ended, StreamEnded) and ended.by_peer
    [close] = parse_frames(s.frames_to_send())
    assert close.tag == "{%s}close" % FRAMING_NS


def test_websocket_incomplete_frame_is_not_well_formed() -> None:
    s = ws_stream()
    s.receive_data(OPEN)
    s.frames_to_send()
    [ended] = s.receive_data(b"<message xmlns='jabber:client'><body>")
    assert isinstance(ended, StreamEnded) and ended.error is not None
    assert ended.error.condition == "not-well-formed"
    error, close = parse_frames(s.frames_to_send())
    assert error.tag == "{%s}error" % ns.STREAMS
    assert close.tag == "{%s}close" % FRAMING_NS


def test_websocket_two_elements_in_one_frame_refused() -> None:
    s = ws_stream()
    s.receive_data(OPEN)
    s.frames_to_send()
    [ended] = s.receive_data(AUTH + AUTH)
    assert isinstance(ended, StreamEnded) and ended.error.condition == "not-well-formed"


def test_websocket_stream_header_refused() -> None:
    s = ws_stream()
    [ended] = s.receive_data(
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
        b" to='example.com' version='1.0'>"
    )
    assert isinstance(ended, StreamEnded) and ended.error is not None
    frames = parse_frames(s.frames_to_send())  # open, error, close: each parses alone
    assert [f.tag for f in frames][-1] == "{%s}close" % FRAMING_NS


def test_bosh_api_open_elements_restart() -> None:
    s = C2SStream(settings(tls_available=False, tls_required=False), framing=BOSH)
    assert s.open_stream({"to": DOMAIN, "version": "1.0"}) == []
    [features] = parse_frames(s.frames_to_send())  # no header on the wire
    assert features.tag == "{%s}features" % ns.STREAMS and s.stream_id
    auth = etree.fromstring(f"<body xmlns='{HTTPBIND_NS}'>{AUTH.decode()}</body>".encode())[0]
    login(s, lambda _data: s.receive_element(auth))
    s.open_stream({"to": DOMAIN, "version": "1.0"})
    [features] = parse_frames(s.frames_to_send())
    assert features.find("{%s}bind" % ns.BIND) is not None
    # a client that forgot xmlns='jabber:client' inside <body/>
    body = etree.fromstring(
        f"<body xmlns='{HTTPBIND_NS}'><iq type='set' id='b1'>"
        "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq></body>".encode()
    )
    [bind] = s.receive_element(body[0])
    assert isinstance(bind, BindRequest)
    s.bind_result(bind.iq_id, bind.jid)
    [result] = parse_frames(s.frames_to_send())
    assert result.tag == "{jabber:client}iq"
    end = s.close()
    assert end.error is None and s.frames_to_send() == []


def test_bosh_stream_error_frame_declares_prefix() -> None:
    s = C2SStream(settings(), framing=BOSH)
    [ended] = s.open_stream({"to": "elsewhere.example", "version": "1.0"})
    assert isinstance(ended, StreamEnded) and ended.error.condition == "host-unknown"
    [error] = parse_frames(s.frames_to_send())
    assert error.tag == "{%s}error" % ns.STREAMS


def test_with_client_ns_adds_only_when_missing() -> None:
    ready = b'<message xmlns="jabber:client" to="a@b"><body>x</body></message>'
    assert with_client_ns(ready) is ready
    spliced = with_client_ns(b'<message to="a@b"><body>x</body></message>')
    assert etree.fromstring(spliced).tag == "{jabber:client}message"
    assert etree.fromstring(with_client_ns(b"<iq/>")).tag == "{jabber:client}iq"
    other = b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
    assert with_client_ns(other) is other
    # a template's head/to/tail splice (xmppd.muc.wire) keeps its declaration in the tail
    tpl = b'<message to="r@b/n" xmlns="jabber:client" from="room@muc/a"/>'
    assert with_client_ns(tpl) is tpl


def test_bosh_child_without_client_namespace_is_relayed_unprefixed() -> None:
    """Renaming the tags alone left the wrapper's default namespace in scope: the stanza
    went on to its recipient as ``<ns0:message xmlns:ns0='jabber:client'
    xmlns='…httpbind'>`` (the soak's BOSH users' one-to-one messages vanished for
    clients reading elements by name)."""
    body = etree.fromstring(
        f"<body xmlns='{HTTPBIND_NS}' xmlns:xmpp='urn:xmpp:xbosh' rid='7'>"
        "<message type='chat' to='bob@localhost' xml:lang='en'>hi <body>one &amp; two</body>"
        "<active xmlns='http://jabber.org/protocol/chatstates'/></message></body>".encode()
    )
    msg = adopt_httpbind(body[0])
    assert etree.tostring(msg) == (
        b'<message xmlns="jabber:client" type="chat" to="bob@localhost" xml:lang="en">'
        b"hi <body>one &amp; two</body>"
        b'<active xmlns="http://jabber.org/protocol/chatstates"/></message>'
    )
    assert msg.findtext("{jabber:client}body") == "one & two"
    qualified = etree.fromstring(
        f"<body xmlns='{HTTPBIND_NS}'><message xmlns='jabber:client'/></body>".encode()
    )[0]
    assert adopt_httpbind(qualified) is qualified  # already right: untouched
