"""How one c2s stream is framed on the wire: TCP, WebSocket (RFC 7395) or BOSH (XEP-0206).

:class:`~xmppd.stream.c2s.C2SStream` owns negotiation (SASL, bind, restarts); a
:class:`Framing` owns only what differs between transports:

- ``STREAM`` (TCP, direct TLS): ``<stream:stream …>`` header and ``</stream:stream>``;
  input is a byte stream parsed incrementally; a restart is a new header; stanzas
  inherit ``jabber:client`` from the header, which also declares the ``stream:`` prefix.
- ``WEBSOCKET`` (RFC 7395): ``<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' …/>``
  and ``<close …/>``; each message is one complete element (anything else is
  ``not-well-formed``); a restart is a new ``<open/>``; every element declares its own
  namespaces: stanzas carry ``xmlns='jabber:client'``, ``stream:features`` and
  ``stream:error`` declare ``xmlns:stream``.
- ``BOSH`` (XEP-0206): no header or close on the wire (the session creation response
  carries ``authid``; the BOSH layer sends ``terminate``); input is the children of each
  ``<body/>``, parsed by the BOSH layer; a restart is ``xmpp:restart='true'``; elements
  declare their namespaces as for WebSocket.

Output is a list of *frames*: each one top-level element (or, for ``STREAM`` only, the
header or close tag). WebSocket sends each frame as one message; BOSH wraps the frames
collected for a response in one ``<body/>``; TCP joins them.

Stanzas the server fans out (router, MUC byte templates in :mod:`xmppd.muc.wire`) are
serialised once for every recipient and transport. :meth:`Framing.outbound` makes such
bytes fit this framing without re-serialising: for WebSocket and BOSH it splices
``xmlns="jabber:client"`` into the start tag when it is missing (lxml output normally
already carries it, so this is usually one ``find`` and returns the same object).

BOSH API (what :mod:`xmppd.bosh.session` builds on)
---------------------------------------------------
``stream = C2SStream(settings, framing=BOSH)``; the BOSH layer parses each ``<body/>``
itself (it needs ``rid``/``sid``) and then:

- session creation request → ``stream.open_stream({"to": …, "version": …, xml:lang})``
  (``version`` from ``xmpp:version``); the features are the frames that follow, and
  ``stream.stream_id`` is the ``authid`` for the creation response;
- ``xmpp:restart="true"`` → ``stream.open_stream(same attrs)`` again (the stream is in
  ``EXPECT_RESTART`` after SASL success, exactly as TCP after ``<success/>``);
- each child of a ``<body/>`` → ``stream.receive_element(child)``; children still in the
  ``httpbind`` namespace (a client that left out ``xmlns='jabber:client'``) are taken as
  ``jabber:client``;
- ``stream.frames_to_send()`` → the top-level elements to put in the next response
  body, each with its namespaces declared (``stream:features`` / ``stream:error`` declare
  ``xmlns:stream`` themselves);
- a :class:`~xmppd.stream.c2s.StreamEnded` with ``error`` set → answer
  ``type='terminate' condition='remote-stream-error'`` with the ``<stream:error/>`` frame
  inside; without ``error`` → plain ``terminate``; ``type='terminate'`` from the client
  → ``stream.close()`` (no frames for BOSH).
Router/MUC bytes queued on a BOSH session pass through ``BOSH.outbound`` before going
into a body.
"""

from __future__ import annotations

import re

from lxml import etree

from xmppd.xml import ns
from xmppd.xml.errors import StreamError
from xmppd.xml.parser import ParserEvent, StreamClose, StreamOpen, StreamParser

FRAMING_NS = "urn:ietf:params:xml:ns:xmpp-framing"
HTTPBIND_NS = "http://jabber.org/protocol/httpbind"

_OPEN = "{%s}open" % FRAMING_NS
_CLOSE = "{%s}close" % FRAMING_NS
_STREAM_DECL = b' xmlns:stream="http://etherx.jabber.org/streams"'
_CLIENT_DECL = b' xmlns="jabber:client"'
_STANZA_NAMES = frozenset({b"message", b"presence", b"iq"})
_NAME_END = re.compile(rb"[\s/>]")
#: The stream context a WebSocket message is parsed in: prefixes any element may use.
_WS_CONTEXT = (
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
)


def _attr(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def with_client_ns(data: bytes) -> bytes:
    """``data`` (one serialised stanza) with ``xmlns="jabber:client"`` on its start tag.

    Cheap on the common path: lxml puts the declaration on every stanza built with
    ``nsmap={None: jabber:client}``, so this is a bounded search of the start tag.
    """
    if data[:1] != b"<":
        return data
    end = data.find(b">")
    if end < 0:
        return data
    start_tag = data[:end]
    if b' xmlns="' in start_tag or b" xmlns='" in start_tag:
        return data
    m = _NAME_END.search(data, 1)
    if m is None or data[1 : m.start()] not in _STANZA_NAMES:
        return data  # prefixed names carry their own declaration; nonzas theirs
    cut = m.start()
    return data[:cut] + _CLIENT_DECL + data[cut:]


class Reader:
    """Turns peer input into parser events; one instance per stream (re)start."""

    __slots__ = ("parser",)

    def __init__(self, parser: StreamParser) -> None:
        self.parser = parser

    def feed(self, data: bytes) -> list[ParserEvent]:
        return self.parser.feed(data)

    def dispose(self) -> None:
        self.parser.dispose()

    def hibernate(self) -> bool:
        return self.parser.hibernate()


class WebSocketReader(Reader):
    """RFC 7395 §3.3.3: each message is exactly one complete element."""

    __slots__ = ()

    def __init__(self, parser: StreamParser) -> None:
        super().__init__(parser)
        parser.feed(_WS_CONTEXT)  # its StreamOpen is ours, not the peer's: dropped

    def feed(self, data: bytes) -> list[ParserEvent]:
        if not data.strip():
            return []
        events = self.parser.feed(data)
        if not self.parser.between_stanzas:
            raise StreamError("not-well-formed", "a WebSocket message must be one complete element")
        if len(events) != 1:
            raise StreamError("not-well-formed", "one element per WebSocket message")
        el = events[0]
        if not isinstance(el, etree._Element):
            raise StreamError("not-well-formed", "unexpected stream markup")
        if el.tag == _OPEN:
            return [StreamOpen(dict(el.attrib), ns.CLIENT)]
        if el.tag == _CLOSE:
            return [StreamClose()]
        if el.tag == "{%s}stream" % ns.STREAMS:
            raise StreamError("invalid-namespace", "use <open/> on a WebSocket")
        return [el]


class Framing:
    """TCP framing; subclasses change what differs (see the module table)."""

    name = "stream"
    #: Stanzas on the wire must declare ``jabber:client`` themselves.
    explicit_ns = False
    #: :meth:`outbound` changes the bytes (the shell skips the call where it does not:
    #: it runs once per recipient of every stanza).
    rewrites_outbound = False
    features_open = b"<stream:features>"

    def header(self, attrs: dict[str, str]) -> bytes:
        rendered = " ".join(f'{k}="{_attr(v)}"' for k, v in attrs.items())
        return (
            b"<?xml version='1.0'?><stream:stream xmlns=\"jabber:client\" "
            b'xmlns:stream="http://etherx.jabber.org/streams" ' + rendered.encode() + b">"
        )

    def closing(self) -> bytes:
        return b"</stream:stream>"

    def stream_error(self, err: StreamError) -> bytes:
        return err.to_bytes()

    def reader(self, max_stanza_size: int, max_depth: int) -> Reader:
        return Reader(StreamParser(max_stanza_size, max_depth))

    def outbound(self, data: bytes) -> bytes:
        """Server-made stanza bytes as this framing must carry them."""
        return data


class WebSocketFraming(Framing):
    name = "websocket"
    explicit_ns = True
    rewrites_outbound = True
    features_open = b"<stream:features" + _STREAM_DECL + b">"

    def header(self, attrs: dict[str, str]) -> bytes:
        rendered = " ".join(f'{k}="{_attr(v)}"' for k, v in attrs.items())
        return f'<open xmlns="{FRAMING_NS}" {rendered}/>'.encode()

    def closing(self) -> bytes:
        return f'<close xmlns="{FRAMING_NS}"/>'.encode()

    def stream_error(self, err: StreamError) -> bytes:
        data = err.to_bytes()
        return data.replace(b"<stream:error", b"<stream:error" + _STREAM_DECL, 1)

    def reader(self, max_stanza_size: int, max_depth: int) -> Reader:
        return WebSocketReader(StreamParser(max_stanza_size, max_depth))

    def outbound(self, data: bytes) -> bytes:
        return with_client_ns(data)


class BoshFraming(WebSocketFraming):
    """No header or close on the wire: the BOSH layer's ``<body/>`` plays their part."""

    name = "bosh"

    def header(self, attrs: dict[str, str]) -> bytes:
        return b""

    def closing(self) -> bytes:
        return b""

    def reader(self, max_stanza_size: int, max_depth: int) -> Reader:
        # Unused for input (the BOSH layer parses bodies); kept so restarts look alike.
        return Reader(StreamParser(max_stanza_size, max_depth))


STREAM = Framing()
WEBSOCKET = WebSocketFraming()
BOSH = BoshFraming()


def adopt_httpbind(el: etree._Element) -> etree._Element:
    """A BOSH child left in the ``httpbind`` namespace is read as ``jabber:client``.

    The stanza is moved under a fresh top element whose default namespace is
    ``jabber:client``: renaming tags alone leaves the wrapper's default (``httpbind``) in
    scope, and the stanza, relayed as is to other users, would go out as
    ``<ns0:message xmlns:ns0='jabber:client' xmlns='…httpbind'>`` — prefixed stanzas
    (RFC 6120 §4.8.5) that clients reading ``<message>``/``<body>`` by name drop.
    """
    prefix = "{%s}" % HTTPBIND_NS
    if not isinstance(el.tag, str) or not el.tag.startswith(prefix):
        return el
    for node in el.iter():
        if isinstance(node.tag, str) and node.tag.startswith(prefix):
            node.tag = "{%s}%s" % (ns.CLIENT, node.tag[len(prefix) :])
    fresh = etree.Element(el.tag, attrib=dict(el.attrib), nsmap={None: ns.CLIENT})
    fresh.text = el.text
    fresh.extend(list(el))
    return fresh
