"""WebSocket (RFC 7395) and BOSH (XEP-0206) framing of XMPP (xmppd/stream/framing.py).

A ``C2SStream`` with WebSocket framing gets a script of messages (``<open/>``, auth, bind,
stanzas, ``<close/>``, fuzz bytes, each possibly truncated or corrupted); one with BOSH
framing gets the payloads of a fuzzed ``<body/>``; and ``with_client_ns`` gets fuzz bytes.

Invariants:
- no exception escapes the machine; stream errors carry a defined condition;
- every frame the server sends is one complete XML document on its own, namespaces
  declared (RFC 7395 §3.3.3), stanzas in ``jabber:client``; nothing after ``<close/>``;
- ``with_client_ns`` of one serialised element changes at most its namespace, to
  ``jabber:client``, and only for a stanza.
"""

from __future__ import annotations

import base64

import atheris
from lxml import etree

from tests.unit.stream_helpers import settings
from xmppd.auth.base import Identity
from xmppd.bosh.body import BodyRequest, parse_body
from xmppd.stream.c2s import BindRequest, C2SStream, CheckPassword
from xmppd.stream.framing import BOSH, FRAMING_NS, WEBSOCKET, with_client_ns
from xmppd.stream.machine import StreamEnded
from xmppd.xml import ns

from _support import check_stream_error

OPEN = f"<open xmlns='{FRAMING_NS}' to='example.com' version='1.0'/>".encode()
MESSAGES = [
    OPEN,
    b"<auth xmlns='%s' mechanism='PLAIN'>%s</auth>"
    % (ns.SASL.encode(), base64.b64encode(b"\x00juliet\x00pw")),
    b"<iq xmlns='jabber:client' type='set' id='b1'>"
    b"<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>web</resource></bind></iq>",
    b"<message xmlns='jabber:client' to='a@example.com'><body>x</body></message>",
    b"<presence xmlns='jabber:client'/>",
    b"<message to='a@example.com'/>",
    b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>",
    f"<close xmlns='{FRAMING_NS}'/>".encode(),
]
SAFE = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def check_frames(stream: C2SStream) -> None:
    for frame in stream.frames_to_send():
        el = etree.fromstring(frame, SAFE)  # each frame alone, namespaces declared
        name = etree.QName(el)
        if name.localname in ("message", "presence", "iq"):
            assert name.namespace == ns.CLIENT, frame


def answer(stream: C2SStream, events: list[object]) -> bool:
    """Answer as the shell does; whether the stream ended."""
    ended = False
    for ev in events:
        if isinstance(ev, CheckPassword):
            stream.password_checked(Identity("juliet"))
        elif isinstance(ev, BindRequest):
            stream.bind_result(ev.iq_id, ev.jid)
        elif isinstance(ev, StreamEnded):
            ended = True
            if ev.error is not None:
                check_stream_error(ev.error)
    return ended


def websocket(fdp: atheris.FuzzedDataProvider) -> None:
    stream = C2SStream(settings(tls_available=False, tls_required=False), framing=WEBSOCKET)
    happy = iter(range(len(MESSAGES)))
    ended = False
    for _ in range(fdp.ConsumeIntInRange(1, 10)):
        kind = fdp.ConsumeIntInRange(0, 7)
        if kind == 0:
            message = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 80))
        else:
            message = MESSAGES[next(happy, 7)] if kind >= 4 else fdp.PickValueInList(MESSAGES)
            if kind == 1:
                message = message[: fdp.ConsumeIntInRange(0, len(message))]
            elif kind == 2 and message:
                at = fdp.ConsumeIntInRange(0, len(message) - 1)
                message = message[:at] + bytes([fdp.ConsumeInt(1) & 0xFF]) + message[at + 1 :]
        events = stream.receive_data(message)
        if ended:
            assert not events and not stream.frames_to_send(), "output after the stream ended"
        ended |= answer(stream, events)
        check_frames(stream)
    stream.dispose()


def bosh(fdp: atheris.FuzzedDataProvider) -> None:
    stream = C2SStream(settings(tls_available=False, tls_required=False), framing=BOSH)
    answer(stream, stream.open_stream({"to": "example.com", "version": "1.0"}))
    check_frames(stream)
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        inner = MESSAGES[1:6] if fdp.ConsumeBool() else []
        raw = b"".join(inner) + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 120))
        request = parse_body(
            b"<body xmlns='http://jabber.org/protocol/httpbind' rid='1'>" + raw + b"</body>"
        )
        if not isinstance(request, BodyRequest):
            continue
        if request.restart:
            answer(stream, stream.open_stream({"to": "example.com"}))
        for payload in request.payloads:
            answer(stream, stream.receive_element(payload))
            check_frames(stream)
    stream.dispose()


def client_ns(data: bytes) -> None:
    """``with_client_ns`` only ever sees lxml's serialisation of server-made stanzas."""
    try:
        before = etree.fromstring(data, SAFE)
    except etree.XMLSyntaxError:
        return
    after = etree.fromstring(with_client_ns(etree.tostring(before)), SAFE)
    if before.tag == after.tag:
        return
    assert isinstance(before.tag, str) and before.tag[:1] != "{", (data, before.tag)
    assert before.tag in ("message", "presence", "iq"), before.tag
    assert after.tag == "{%s}%s" % (ns.CLIENT, before.tag), after.tag


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    kind = fdp.ConsumeIntInRange(0, 3)
    if kind <= 1:
        websocket(fdp)
    elif kind == 2:
        bosh(fdp)
    else:
        client_ns(fdp.ConsumeBytes(fdp.remaining_bytes()))
