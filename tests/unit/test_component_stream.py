"""XEP-0114 handshake and component stanza rules, bytes in and bytes out (no sockets)."""

from __future__ import annotations

import hashlib

import pytest
from lxml import etree

from xmppd.stream.component import (
    ComponentClientStream,
    ComponentServerStream,
    ComponentSettings,
    Established,
    HandshakeVerified,
    StanzaReceived,
    StreamEnded,
    convert_namespace,
    handshake_digest,
    to_component,
)
from xmppd.xml import ns
from xmppd.xml.parser import StreamOpen, StreamParser

DOMAIN = "irc.example.com"
SECRET = "s3cret & <more>"
STREAM_ID = "4a6f0e1c"
HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='%s'>"
)


def server() -> ComponentServerStream:
    return ComponentServerStream(ComponentSettings({DOMAIN: SECRET}), lambda: STREAM_ID)


def read(data: bytes) -> list[object]:
    """Parse what the server wrote (a header is supplied when it was read earlier)."""
    if b"<stream:stream" not in data:
        data = HEADER % b"x" + data
    return StreamParser().feed(data)


def error_condition(data: bytes) -> str:
    errors = [e for e in read(data) if isinstance(e, etree._Element) and e.tag.endswith("}error")]
    assert errors, data
    return etree.QName(errors[0][0]).localname


def established() -> ComponentServerStream:
    s = server()
    s.receive_data(HEADER % DOMAIN.encode())
    s.receive_data(b"<handshake>%s</handshake>" % handshake_digest(STREAM_ID, SECRET).encode())
    s.accept()
    s.data_to_send()
    return s


def test_digest_is_lowercase_hex_sha1_of_id_and_secret() -> None:
    expected = hashlib.sha1((STREAM_ID + SECRET).encode(), usedforsecurity=False).hexdigest()
    assert handshake_digest(STREAM_ID, SECRET) == expected
    assert expected == expected.lower() and len(expected) == 40


def test_handshake_success() -> None:
    s = server()
    assert s.receive_data(HEADER % DOMAIN.encode()) == []
    out = s.data_to_send()
    (header,) = read(out)
    assert isinstance(header, StreamOpen)
    assert header.default_ns == ns.COMPONENT
    assert header.attrs == {"from": DOMAIN, "id": STREAM_ID}
    digest = handshake_digest(STREAM_ID, SECRET).upper()  # case-insensitive hex
    events = s.receive_data(b"<handshake> %s </handshake>" % digest.encode())
    assert events == [HandshakeVerified(DOMAIN)]
    assert s.data_to_send() == b""  # nothing until the shell accepts
    s.accept()
    assert s.data_to_send() == b"<handshake/>"
    assert s.established


def test_wrong_secret_is_not_authorized() -> None:
    s = server()
    s.receive_data(HEADER % DOMAIN.encode())
    s.data_to_send()
    bad = handshake_digest(STREAM_ID, "wrong")
    (event,) = s.receive_data(b"<handshake>%s</handshake>" % bad.encode())
    assert isinstance(event, StreamEnded) and event.error is not None
    assert event.error.condition == "not-authorized"
    out = s.data_to_send()
    assert error_condition(out) == "not-authorized"
    assert out.endswith(b"</stream:stream>")
    assert s.closed


def test_non_ascii_handshake_is_refused_not_crashing() -> None:
    s = server()
    s.receive_data(HEADER % DOMAIN.encode())
    (event,) = s.receive_data("<handshake>é</handshake>".encode())
    assert isinstance(event, StreamEnded) and event.error.condition == "not-authorized"  # type: ignore[union-attr]


def test_unknown_domain_is_host_unknown() -> None:
    s = server()
    (event,) = s.receive_data(HEADER % b"other.example.com")
    assert isinstance(event, StreamEnded) and event.error is not None
    assert event.error.condition == "host-unknown"
    out = s.data_to_send()
    assert isinstance(read(out)[0], StreamOpen)  # a header first, then the error
    assert error_condition(out) == "host-unknown"


def test_missing_to_is_host_unknown() -> None:
    s = server()
    (event,) = s.receive_data(
        b"<stream:stream xmlns='jabber:component:accept' "
        b"xmlns:stream='http://etherx.jabber.org/streams'>"
    )
    assert event.error.condition == "host-unknown"  # type: ignore[union-attr]


def test_client_namespace_is_invalid_namespace() -> None:
    s = server()
    (event,) = s.receive_data(
        b"<stream:stream xmlns='jabber:client' "
        b"xmlns:stream='http://etherx.jabber.org/streams' to='%s'>" % DOMAIN.encode()
    )
    assert event.error.condition == "invalid-namespace"  # type: ignore[union-attr]
    assert error_condition(s.data_to_send()) == "invalid-namespace"


def test_malformed_xml_is_not_well_formed() -> None:
    s = server()
    s.receive_data(HEADER % DOMAIN.encode())
    (event,) = s.receive_data(b"<handshake>abc</wrong>")
    assert event.error.condition == "not-well-formed"  # type: ignore[union-attr]


def test_stanza_before_handshake_is_not_authorized() -> None:
    s = server()
    s.receive_data(HEADER % DOMAIN.encode())
    (event,) = s.receive_data(b"<message from='a@%s' to='b@x'/>" % DOMAIN.encode())
    assert event.error.condition == "not-authorized"  # type: ignore[union-attr]


def test_conflict_close_after_verification() -> None:
    s = server()
    s.receive_data(HEADER % DOMAIN.encode())
    s.receive_data(b"<handshake>%s</handshake>" % handshake_digest(STREAM_ID, SECRET).encode())
    s.data_to_send()
    ended = s.close("conflict", "already connected")
    assert ended.error.condition == "conflict"  # type: ignore[union-attr]
    out = s.data_to_send()
    assert error_condition(out) == "conflict"
    assert b"<handshake/>" not in out


def test_stanza_is_converted_to_client_namespace_with_checked_from() -> None:
    s = established()
    (event,) = s.receive_data(
        b"<message from='bot@%s/r' to='alice@example.com' type='chat'>"
        b"<body>hi &lt;3</body><x xmlns='urn:example'/></message>" % DOMAIN.encode()
    )
    assert isinstance(event, StanzaReceived)
    el = event.stanza
    assert el.tag == "{%s}message" % ns.CLIENT
    assert el.findtext("{%s}body" % ns.CLIENT) == "hi <3"
    assert el.find("{urn:example}x") is not None
    assert etree.tostring(el).startswith(b'<message xmlns="jabber:client"')


@pytest.mark.parametrize(
    ("stanza", "condition"),
    [
        (b"<message from='bot@evil.example' to='alice@example.com'/>", "forbidden"),
        (b"<message from='bot@sub.irc.example.com' to='alice@example.com'/>", "forbidden"),
        (b"<message to='alice@example.com'/>", "bad-request"),
        (b"<message from='@@' to='alice@example.com'/>", "jid-malformed"),
        (b"<message from='bot@irc.example.com'/>", "bad-request"),
        (b"<iq from='bot@irc.example.com' to='example.com' type='get'>"
         b"<ping xmlns='urn:xmpp:ping'/></iq>", "bad-request"),
        (b"<iq from='bot@irc.example.com' to='example.com' id='1' type='get'/>", "bad-request"),
    ],
)  # fmt: skip
def test_bad_stanzas_get_a_stanza_error_and_are_not_routed(stanza: bytes, condition: str) -> None:
    s = established()
    assert s.receive_data(stanza) == []
    (reply,) = [e for e in read(s.data_to_send()) if isinstance(e, etree._Element)]
    assert reply.tag == "{%s}message" % ns.COMPONENT or reply.tag == "{%s}iq" % ns.COMPONENT
    assert reply.get("type") == "error"
    cond = reply.find("{%s}error" % ns.COMPONENT)[0]  # type: ignore[index]
    assert etree.QName(cond).localname == condition
    assert s.established  # the stream survives


def test_error_stanza_with_bad_from_is_dropped_silently() -> None:
    s = established()
    assert s.receive_data(b"<message type='error' from='x@evil' to='a@b'/>") == []
    assert s.data_to_send() == b""


def test_non_stanza_element_is_unsupported_stanza_type() -> None:
    s = established()
    (event,) = s.receive_data(b"<foo from='a@%s' to='b@c'/>" % DOMAIN.encode())
    assert event.error.condition == "unsupported-stanza-type"  # type: ignore[union-attr]


def test_peer_close_is_answered() -> None:
    s = established()
    (event,) = s.receive_data(b"</stream:stream>")
    assert event == StreamEnded(by_peer=True)
    assert s.data_to_send() == b"</stream:stream>"


def test_router_stanza_serialised_in_component_namespace() -> None:
    s = established()
    iq = etree.Element("{%s}iq" % ns.CLIENT, nsmap={None: ns.CLIENT}, type="get", id="1")
    etree.SubElement(iq, "{urn:xmpp:ping}ping", nsmap={None: "urn:xmpp:ping"})
    assert s.stanza_bytes(iq) == (
        b'<iq xmlns="jabber:component:accept" type="get" id="1"><ping xmlns="urn:xmpp:ping"/></iq>'
    )


def test_convert_namespace_keeps_text_looking_like_a_namespace() -> None:
    el = etree.fromstring(
        b'<message xmlns="jabber:client"><body>xmlns="jabber:client"</body></message>'
    )
    out = etree.tostring(convert_namespace(el, (ns.CLIENT,), ns.COMPONENT))
    assert out == (
        b'<message xmlns="jabber:component:accept"><body>xmlns="jabber:client"</body></message>'
    )


def test_to_component_accepts_unqualified_elements() -> None:
    el = etree.fromstring(b"<message to='a@b'><body>x</body></message>")
    out = etree.tostring(to_component(el))
    assert out == b'<message xmlns="jabber:component:accept" to="a@b"><body>x</body></message>'


# ------------------------------------------------------------------ both sides
def pump(client: ComponentClientStream, srv: ComponentServerStream) -> list[object]:
    """Exchange bytes until both sides are quiet; return every event seen."""
    events: list[object] = []
    for _ in range(10):
        c_out, s_out = client.data_to_send(), srv.data_to_send()
        if not c_out and not s_out:
            break
        if c_out:
            for ev in srv.receive_data(c_out):
                events.append(ev)
                if isinstance(ev, HandshakeVerified):
                    srv.accept()
        if s_out:
            events.extend(client.receive_data(s_out))
    return events


def test_client_and_server_in_memory() -> None:
    client = ComponentClientStream(DOMAIN, SECRET)
    srv = server()
    events = srv.receive_data(client.initiate())
    events += pump(client, srv)
    assert HandshakeVerified(DOMAIN) in events and Established() in events
    assert client.established and srv.established
    # component -> server: a jabber:client element is converted on the way out
    msg = etree.Element("{%s}message" % ns.CLIENT, nsmap={None: ns.CLIENT})
    msg.set("from", f"bot@{DOMAIN}")
    msg.set("to", "alice@example.com")
    etree.SubElement(msg, "{%s}body" % ns.CLIENT).text = "hello"
    (got,) = srv.receive_data(client.stanza_bytes(msg))
    assert isinstance(got, StanzaReceived)
    assert got.stanza.findtext("{%s}body" % ns.CLIENT) == "hello"
    # server -> component
    reply = etree.fromstring(
        b'<message xmlns="jabber:client" from="alice@example.com" to="bot@%s">'
        b"<body>back</body></message>" % DOMAIN.encode()
    )
    (back,) = client.receive_data(srv.stanza_bytes(reply))
    assert isinstance(back, StanzaReceived)
    assert back.stanza.tag == "{%s}message" % ns.COMPONENT
    assert back.stanza.findtext("{%s}body" % ns.COMPONENT) == "back"


def test_client_sees_stream_error() -> None:
    client = ComponentClientStream(DOMAIN, "wrong secret")
    srv = server()
    srv.receive_data(client.initiate())
    events = pump(client, srv)
    ended = [e for e in events if isinstance(e, StreamEnded) and e.by_peer]
    assert ended and ended[0].error is not None
    assert ended[0].error.condition == "not-authorized"
    assert client.closed


def test_client_bytes_input_is_converted() -> None:
    client = ComponentClientStream(DOMAIN, SECRET)
    out = client.stanza_bytes(b"<message xmlns='jabber:client' to='a@b'><body>x</body></message>")
    assert out == b'<message xmlns="jabber:component:accept" to="a@b"><body>x</body></message>'


def test_forwarded_client_stanza_keeps_its_namespace() -> None:
    """XEP-0297 payloads declare jabber:client themselves: only the outer stanza moves."""
    s = established()
    msg = etree.fromstring(
        b'<message xmlns="jabber:client" to="bot@irc.example.com"><result xmlns="urn:xmpp:mam:2">'
        b'<forwarded xmlns="urn:xmpp:forward:0"><message xmlns="jabber:client" from="a@b">'
        b"<body>old</body></message></forwarded></result></message>"
    )
    out = s.stanza_bytes(msg)
    assert out.startswith(b'<message xmlns="jabber:component:accept"')
    el = etree.fromstring(out)
    inner = el.find("{urn:xmpp:mam:2}result/{urn:xmpp:forward:0}forwarded/{jabber:client}message")
    assert inner is not None and inner.findtext("{jabber:client}body") == "old"


def test_prefixed_component_stanza_is_converted_too() -> None:
    s = established()
    (event,) = s.receive_data(
        b"<c:message xmlns:c='jabber:component:accept' from='bot@%s' to='a@example.com'>"
        b"<c:body>prefixed</c:body></c:message>" % DOMAIN.encode()
    )
    assert isinstance(event, StanzaReceived)
    assert event.stanza.tag == "{%s}message" % ns.CLIENT
    assert event.stanza.findtext("{%s}body" % ns.CLIENT) == "prefixed"
    assert etree.tostring(event.stanza).startswith(b'<message xmlns="jabber:client"')
