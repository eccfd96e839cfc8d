"""The XEP-0114 component handshake and stanza rules (xmppd/stream/component.py).

The input is a script against the accepting (server) side: header, handshake (right or
wrong), stanzas, raw bytes, each possibly truncated or corrupted; and raw bytes against the
connecting (client) side.

Invariants:
- no exception escapes either machine; everything the server writes parses as XML in a
  component stream; stream errors carry a defined condition;
- the handshake is verified only for the right digest, stanzas are accepted only after
  ``accept()``, in ``jabber:client``, from the component's own domain;
- a stanza moved to the router and back (``to_router`` then ``component_bytes``) parses
  to the same infoset it arrived as.
"""

from __future__ import annotations

import atheris
from lxml import etree

from xmppd.jid import JID
from xmppd.stream.component import (
    ComponentClientStream,
    ComponentServerStream,
    ComponentSettings,
    HandshakeVerified,
    StanzaReceived,
    StreamEnded,
    component_bytes,
    handshake_digest,
)
from xmppd.xml import ns
from xmppd.xml.parser import StreamParser

from _support import canonical, check_stream_error

DOMAIN = "irc.example.com"
SECRET = "s3cret & <more>"
STREAM_ID = "4a6f0e1c"
HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='irc.example.com'>"
)
GOOD = b"<handshake>%s</handshake>" % handshake_digest(STREAM_ID, SECRET).encode()
STEPS = [
    HEADER,
    GOOD,
    b"<handshake>0000000000000000000000000000000000000000</handshake>",
    b"<message from='bob@irc.example.com/x' to='juliet@example.com' type='chat'>"
    b"<body>hi</body><x xmlns='jabber:client'><y/></x></message>",
    b"<presence from='irc.example.com' to='room@muc.example.com/n'/>",
    b"<iq type='get' id='1' from='irc.example.com' to='example.com'>"
    b"<ping xmlns='urn:xmpp:ping'/></iq>",
    b"<message from='juliet@example.com' to='x@example.com'/>",
    b"<iq type='set' id='2' from='irc.example.com' to='example.com'/>",
    b"</stream:stream>",
]
SETTINGS = ComponentSettings({DOMAIN: SECRET})


class Reader:
    """Parses the server's output the way the component would."""

    def __init__(self) -> None:
        self.parser = StreamParser()

    def feed(self, data: bytes) -> list[object]:
        return self.parser.feed(data)


def server_script(fdp: atheris.FuzzedDataProvider) -> None:
    server = ComponentServerStream(SETTINGS, lambda: STREAM_ID)
    out = Reader()
    sent_good = accepted = closed = False
    happy = iter([0, 1, 3, 4, 5, 6, 7, 8])  # the usual order, to get deep quickly
    for _ in range(fdp.ConsumeIntInRange(1, 12)):
        kind = fdp.ConsumeIntInRange(0, 9)
        if kind == 0:
            chunk = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 48))
        elif kind == 1:
            events = server.close(fdp.PickValueInList([None, "conflict", "system-shutdown"]))
            closed = True
            chunk = b""
        else:
            chunk = STEPS[next(happy, 8)] if kind >= 6 else fdp.PickValueInList(STEPS)
            if kind == 2:
                chunk = chunk[: fdp.ConsumeIntInRange(0, len(chunk))]
            elif kind == 3 and chunk:
                at = fdp.ConsumeIntInRange(0, len(chunk) - 1)
                chunk = chunk[:at] + bytes([fdp.ConsumeInt(1) & 0xFF]) + chunk[at + 1 :]
            sent_good |= chunk == GOOD
        events = server.receive_data(chunk) if chunk else []
        for ev in events:
            if isinstance(ev, HandshakeVerified):
                assert sent_good and ev.domain == DOMAIN
                if fdp.ConsumeBool():
                    server.accept()
                    accepted = True
                else:
                    server.close("conflict")
            elif isinstance(ev, StanzaReceived):
                assert accepted and not closed
                assert ev.stanza.tag.startswith("{%s}" % ns.CLIENT), ev.stanza.tag
                assert JID.parse(ev.stanza.get("from")).domain == DOMAIN
                again = etree.fromstring(component_bytes(ev.stanza))
                assert again.tag.startswith("{%s}" % ns.COMPONENT), again.tag
                assert len(canonical(again)) > 0
            elif isinstance(ev, StreamEnded):
                closed = True
                if ev.error is not None:
                    check_stream_error(ev.error)
        written = server.data_to_send()
        for item in out.feed(written):
            if isinstance(item, etree._Element) and item.tag == "{%s}error" % ns.STREAMS:
                assert len(item) >= 1
    server.dispose()


def client_script(fdp: atheris.FuzzedDataProvider) -> None:
    client = ComponentClientStream(DOMAIN, SECRET)
    client.initiate()
    server_header = (
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
        b"xmlns:stream='http://etherx.jabber.org/streams' from='irc.example.com' id='ab'>"
    )
    feed = server_header if fdp.ConsumeBool() else b""
    for ev in client.receive_data(feed + fdp.ConsumeBytes(fdp.remaining_bytes())):
        if isinstance(ev, StreamEnded) and ev.error is not None:
            check_stream_error(ev.error)
    out = client.data_to_send()
    if out:
        StreamParser().feed(HEADER + out)
    client.dispose()


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeIntInRange(0, 3):
        server_script(fdp)
    else:
        client_script(fdp)
