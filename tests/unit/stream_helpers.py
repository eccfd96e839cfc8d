"""An in-memory driver for :class:`~xmppd.stream.c2s.C2SStream` (h11's ConnectionPair idea).

The test plays the client: it writes raw bytes, the driver feeds them to the server
machine, answers the machine's I/O events from a fake backend (a ``users`` dict, SCRAM keys
from :func:`derive_scram`) and parses everything the server wrote with a client-side
:class:`StreamParser`, so assertions are on elements rather than on byte strings.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterable
from typing import Any

from lxml import etree
from slixmpp.util.sasl import choose

from xmppd.auth.base import AuthError, Identity, ScramCredentials
from xmppd.auth.scram import derive_scram
from xmppd.jid import JID
from xmppd.stream.c2s import (
    AckAnswer,
    BindRequest,
    C2SSettings,
    C2SStream,
    CheckPassword,
    FetchScram,
    StreamEvent,
)
from xmppd.stream.mechanisms import offered_mechanisms
from xmppd.xml import ns
from xmppd.xml.errors import StanzaError
from xmppd.xml.parser import StreamClose, StreamOpen, StreamParser

DOMAIN = "example.com"
USERS = {"juliet": "r0meo & balcony", "romeo": "pencil"}
_DECL = b"<?xml version='1.0'?>"

STREAMS = "{%s}" % ns.STREAMS
SASL = "{%s}" % ns.SASL
TLS = "{%s}" % ns.TLS
CLIENT = "{%s}" % ns.CLIENT
BIND = "{%s}" % ns.BIND


def header(
    to: str | None = DOMAIN,
    version: str | None = "1.0",
    xmlns: str = ns.CLIENT,
    stream_ns: str = ns.STREAMS,
    extra: str = "",
) -> bytes:
    """A client stream header."""
    attrs = f"xmlns='{xmlns}' xmlns:stream='{stream_ns}'"
    if to is not None:
        attrs += f" to='{to}'"
    if version is not None:
        attrs += f" version='{version}'"
    return f"<?xml version='1.0'?><stream:stream {attrs}{extra}>".encode()


def plain(username: str, password: str, authzid: str = "") -> bytes:
    raw = f"{authzid}\x00{username}\x00{password}".encode()
    return b"<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" % (
        ns.SASL.encode(),
        base64.b64encode(raw),
    )


def settings(**overrides: Any) -> C2SSettings:
    base: dict[str, Any] = {
        "domain": DOMAIN,
        "mechanisms": offered_mechanisms(DOMAIN, scram=True),
        "tls_available": True,
        "tls_active": False,
        "tls_required": True,
    }
    base.update(overrides)
    return C2SSettings(**base)


class Driver:
    """Client bytes in; server events answered; server output parsed into ``received``."""

    def __init__(
        self,
        users: dict[str, str] | None = None,
        *,
        auto_bind: bool = True,
        auto_auth: bool = True,
        rate_limited: bool = False,
        **setting_overrides: Any,
    ) -> None:
        ids = itertools.count(1)
        self.stream = C2SStream(settings(**setting_overrides), lambda: f"sid{next(ids)}")
        self.users = dict(USERS if users is None else users)
        self.auto_bind = auto_bind
        self.auto_auth = auto_auth
        self.rate_limited = rate_limited
        self.events: list[StreamEvent] = []
        self.raw = b""  # every byte the server wrote, in order
        self.received: list[Any] = []  # parsed server output not yet taken
        self.headers: list[StreamOpen] = []
        self._client_parser: StreamParser | None = None
        self._scram_cache: dict[tuple[str, str], ScramCredentials] = {}

    # ---------------------------------------------------------------- client side
    def send(self, data: bytes) -> list[StreamEvent]:
        """Feed client bytes; return the events (including those of auto-answers)."""
        events = self._handle(self.stream.receive_data(data))
        self._pump()
        return events

    def send_chunks(self, chunks: Iterable[bytes]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for chunk in chunks:
            out += self.send(chunk)
        return out

    def take(self) -> list[Any]:
        items, self.received = self.received, []
        return items

    def take_elements(self) -> list[etree._Element]:
        return [i for i in self.take() if isinstance(i, etree._Element)]

    def tls(self) -> None:
        self.stream.tls_established()
        self._pump()

    # ---------------------------------------------------------------- the backend
    def _handle(self, events: list[StreamEvent]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for ev in events:
            out.append(ev)
            self.events.append(ev)
            if isinstance(ev, CheckPassword | FetchScram) and not self.auto_auth:
                continue
            if isinstance(ev, CheckPassword | FetchScram) and self.rate_limited:
                out += self._handle(self.stream.rate_limited())
            elif isinstance(ev, CheckPassword):
                out += self._handle(self.stream.password_checked(self._check(ev)))
            elif isinstance(ev, FetchScram):
                out += self._handle(self.stream.scram_credentials(self._scram(ev)))
            elif isinstance(ev, BindRequest) and self.auto_bind:
                self.stream.bind_result(ev.iq_id, ev.jid)
            elif isinstance(ev, AckAnswer):  # as the shell does once it routed the stanzas
                self.stream.send(ev.data)
        return out

    def _check(self, ev: CheckPassword) -> Identity | AuthError:
        if self.users.get(ev.authcid) == ev.password:
            return Identity(ev.authcid)
        return AuthError("not-authorized")

    def _scram(self, ev: FetchScram) -> tuple[Identity, ScramCredentials] | None:
        password = self.users.get(ev.username)
        if password is None:
            return None
        key = (ev.username, ev.hash_name)
        if key not in self._scram_cache:
            self._scram_cache[key] = derive_scram(password, ev.hash_name)
        return Identity(ev.username), self._scram_cache[key]

    # ---------------------------------------------------------------- server output
    def _pump(self) -> None:
        data = self.stream.data_to_send()
        if not data:
            return
        self.raw += data
        # Every server header starts with the XML declaration: a fresh stream each time.
        for i, segment in enumerate(data.split(_DECL)):
            if i > 0:
                self._client_parser = StreamParser()
                segment = _DECL + segment
            if not segment:
                continue
            assert self._client_parser is not None, f"server wrote before a header: {data!r}"
            for item in self._client_parser.feed(segment):
                if isinstance(item, StreamOpen):
                    self.headers.append(item)
                self.received.append(item)

    # ---------------------------------------------------------------- conveniences
    def open(self, **kw: Any) -> etree._Element:
        """Send a header; return the features the server answered with."""
        self.send(header(**kw))
        items = self.take()
        assert isinstance(items[0], StreamOpen), items
        assert len(items) == 2, items
        assert items[1].tag == STREAMS + "features"
        return items[1]

    def scram_login(
        self, mechanism: str, username: str, password: str
    ) -> tuple[etree._Element, Any]:
        """Run a SCRAM exchange with slixmpp's client; return the last SASL element."""
        creds = {"username": username, "password": password}
        security = {"encrypted": True, "unencrypted_scram": True, "binding_proposed": False}
        client = choose([mechanism], lambda required, optional: dict(creds), lambda _: security)
        first = base64.b64encode(client.process(b"")).decode()
        self.send(f"<auth xmlns='{ns.SASL}' mechanism='{mechanism}'>{first}</auth>".encode())
        while True:
            items = self.take_elements()
            assert len(items) == 1, items
            el = items[0]
            if el.tag != SASL + "challenge":
                return el, client
            answer = base64.b64encode(client.process(base64.b64decode(el.text or ""))).decode()
            self.send(f"<response xmlns='{ns.SASL}'>{answer}</response>".encode())

    def login(self, username: str = "juliet", password: str | None = None) -> etree._Element:
        """Header, PLAIN success and restart; return the post-auth features."""
        if password is None:
            password = self.users[username]
        self.open()
        self.send(plain(username, password))
        items = self.take_elements()
        assert [i.tag for i in items] == [SASL + "success"], items
        return self.open()

    def bind(self, resource: str | None = "balcony") -> JID:
        self.login()
        payload = f"<resource>{resource}</resource>" if resource else ""
        self.send(f"<iq type='set' id='b1'><bind xmlns='{ns.BIND}'>{payload}</bind></iq>".encode())
        items = self.take_elements()
        assert len(items) == 1 and items[0].get("type") == "result", items
        jid = items[0].findtext(f"{BIND}bind/{BIND}jid")
        assert jid is not None
        return JID.parse(jid)


def stream_error(items: list[Any]) -> str | None:
    """The condition of the stream error in ``items`` (checking the stream then closes)."""
    for n, item in enumerate(items):
        if isinstance(item, etree._Element) and item.tag == STREAMS + "error":
            assert isinstance(items[n + 1], StreamClose), items
            conditions = [c.tag for c in item if c.tag != "{%s}text" % ns.STREAM_ERRORS]
            assert len(conditions) == 1, conditions
            return etree.QName(conditions[0]).localname
    return None


def sasl_failure(el: etree._Element) -> str:
    assert el.tag == SASL + "failure", etree.tostring(el)
    conditions = [c.tag for c in el if c.tag != SASL + "text"]
    assert len(conditions) == 1
    return etree.QName(conditions[0]).localname


def stanza_error(el: etree._Element) -> str:
    err = el.find(CLIENT + "error")
    assert err is not None and el.get("type") == "error", etree.tostring(el)
    conditions = [c.tag for c in err if etree.QName(c).localname != "text"]
    return etree.QName(conditions[0]).localname


__all__ = ["Driver", "StanzaError", "header", "plain", "sasl_failure", "stream_error"]
