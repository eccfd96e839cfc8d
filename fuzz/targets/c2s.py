"""c2s negotiation (xmppd/stream/c2s.py): STARTTLS, SASL, bind, XEP-0198 and stanzas as a
fuzzed script of client steps, each possibly truncated, corrupted or out of order.

The sans-IO ``C2SStream`` is driven by the unit tests' in-memory ``Driver``
(tests/unit/stream_helpers.py), which answers auth and bind like the shell and parses
every byte the server writes with a fresh client-side parser.

Invariants:
- no exception escapes the machine (an error is a stream error it sends);
- everything the server writes is XML a client can parse, and a stream error names one
  defined condition and is followed by the closing tag, after which nothing is written;
- no authentication before TLS (``tls_required``), none with a wrong password, no bind
  and no stanza routed before authentication;
- routed stanzas carry the session's full JID as ``from``.
"""

from __future__ import annotations

import base64

import atheris
from lxml import etree

from tests.unit.stream_helpers import USERS, Driver, header, plain
from xmppd.auth.scram import derive_scram
from xmppd.jid import JID
from xmppd.stream.c2s import (
    Authenticated,
    BindRequest,
    CheckPassword,
    FetchScram,
    ResumeRequest,
    StanzaReceived,
    StartTLS,
)
from xmppd.stream.machine import StreamEnded
from xmppd.xml import ns
from xmppd.xml.errors import STREAM_CONDITIONS

from _support import check_stream_error

SM = "urn:xmpp:sm:3"
SCRAM_CACHE = {
    (user, h): derive_scram(pw, h, iterations=2)
    for user, pw in USERS.items()
    for h in ("sha1", "sha256")
}
STEPS: list[bytes] = [
    header(),
    b"<starttls xmlns='%s'/>" % ns.TLS.encode(),
    b"",  # TLS established (the shell's answer), not bytes
    plain("juliet", USERS["juliet"]),
    plain("juliet", "wrong"),
    b"<auth xmlns='%s' mechanism='SCRAM-SHA-1'>%s</auth>"
    % (ns.SASL.encode(), base64.b64encode(b"n,,n=juliet,r=abcdef")),
    b"<response xmlns='%s'>%s</response>"
    % (ns.SASL.encode(), base64.b64encode(b"c=biws,r=abcdef,p=AAAA")),
    b"<abort xmlns='%s'/>" % ns.SASL.encode(),
    b"<iq type='set' id='b1'><bind xmlns='%s'><resource>r</resource></bind></iq>"
    % ns.BIND.encode(),
    b"<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>",
    b"<enable xmlns='%s' resume='true'/>" % SM.encode(),
    b"<r xmlns='%s'/>" % SM.encode(),
    b"<a xmlns='%s' h='1'/>" % SM.encode(),
    b"<resume xmlns='%s' previd='x' h='0'/>" % SM.encode(),
    b"<message to='romeo@example.com' type='chat'><body>hi</body></message>",
    b"<presence/>",
    b"<iq type='get' id='q'><query xmlns='jabber:iq:roster'/></iq>",
    b"<active xmlns='urn:xmpp:csi:0'/>",
    b" ",
    b"</stream:stream>",
]
TLS_STEP = 2
GOOD_PLAIN = 3
#: The usual order (indexes into STEPS): header, STARTTLS, TLS, header, PLAIN, header,
#: bind, enable SM, a message, r, a, presence, close. Following it gets deep quickly.
HAPPY = [0, 1, 2, 0, 3, 0, 8, 10, 14, 11, 12, 15, 19]


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    driver = Driver(sm_enabled=True, csi_enabled=True, tls_required=fdp.ConsumeBool())
    driver._scram_cache = SCRAM_CACHE  # no PBKDF2 per input
    tls = False
    authed_by_password = False
    closed = False
    happy = iter(HAPPY)
    for _ in range(fdp.ConsumeIntInRange(1, 24)):
        if fdp.remaining_bytes() == 0:
            break
        kind = fdp.ConsumeIntInRange(0, 15)
        if kind == 0:
            chunk = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
        else:
            index = next(happy, 19) if kind >= 6 else fdp.ConsumeIntInRange(0, len(STEPS) - 1)
            if index == TLS_STEP:
                if any(isinstance(e, StartTLS) for e in driver.events) and not tls:
                    tls = True
                    driver.tls()
                continue
            chunk = STEPS[index]
            authed_by_password |= index == GOOD_PLAIN
            if kind == 1:  # truncated
                chunk = chunk[: fdp.ConsumeIntInRange(0, len(chunk))]
            elif kind == 2 and chunk:  # one byte changed
                at = fdp.ConsumeIntInRange(0, len(chunk) - 1)
                chunk = chunk[:at] + bytes([fdp.ConsumeInt(1) & 0xFF]) + chunk[at + 1 :]
        before = len(driver.raw)
        events = driver.send(chunk)
        if closed:
            assert len(driver.raw) == before, "wrote after the stream closed"
        for ev in events:
            if isinstance(ev, ResumeRequest):
                driver.stream.resume_failed(ev.h)
                driver._pump()
            if isinstance(ev, CheckPassword | FetchScram) and driver.stream.settings.tls_required:
                assert tls, "authentication before TLS"
            if isinstance(ev, Authenticated) and ev.mechanism == "PLAIN":
                assert authed_by_password, "PLAIN success without the password"
            if isinstance(ev, BindRequest | StanzaReceived):
                assert any(isinstance(e, Authenticated) for e in driver.events), ev
            if isinstance(ev, StanzaReceived):
                sender = JID.parse(ev.stanza.get("from", ""))
                assert sender.local in USERS and sender.resource, sender
            if isinstance(ev, StreamEnded):
                closed = True
                if ev.error is not None:
                    check_stream_error(ev.error)
        for item in driver.take():
            if isinstance(item, etree._Element) and item.tag == "{%s}error" % ns.STREAMS:
                defined = [
                    etree.QName(c).localname
                    for c in item
                    if etree.QName(c).namespace == ns.STREAM_ERRORS
                    and etree.QName(c).localname != "text"
                ]  # plus, optionally, an application-specific one (RFC 6120 §4.9.4)
                assert len(defined) == 1, etree.tostring(item)
                assert defined[0] in STREAM_CONDITIONS, defined
    driver.stream.dispose()
