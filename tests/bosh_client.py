"""A raw BOSH (XEP-0124/0206) test client over httpx: every request is visible and controllable.

Tests choose rids, resend bodies byte for byte, post out of order and stop polling, so
this client does nothing behind the test's back: :meth:`Bosh.post` sends exactly the
bytes given; :meth:`Bosh.send` numbers the next request and collects the payloads.
"""

from __future__ import annotations

import asyncio
import base64
import random
from collections.abc import Callable

import httpx
from lxml import etree

NS = "http://jabber.org/protocol/httpbind"
XBOSH = "urn:xmpp:xbosh"
CLIENT = "jabber:client"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
STREAMS = "http://etherx.jabber.org/streams"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
MUC = "http://jabber.org/protocol/muc"
MUC_USER = "http://jabber.org/protocol/muc#user"


def q(tag: str, ns: str = CLIENT) -> str:
    return "{%s}%s" % (ns, tag)


class BoshError(Exception):
    pass


class Bosh:
    """One BOSH session; ``rid`` is the last rid used."""

    def __init__(
        self, port: int, domain: str = "localhost", *, local_address: str | None = None
    ) -> None:
        """``local_address``: the client's own address (e.g. 127.0.0.2, another client)."""
        self.url = f"http://127.0.0.1:{port}/http-bind"
        self.domain = domain
        transport = httpx.AsyncHTTPTransport(local_address=local_address)
        self.http = httpx.AsyncClient(
            timeout=30, limits=httpx.Limits(max_connections=8), transport=transport
        )
        self.rid = random.randint(1 << 30, 1 << 40)
        self.sid = ""
        self.jid = ""
        self.inbox: list[etree._Element] = []
        self.created: etree._Element | None = None

    async def aclose(self) -> None:
        await self.http.aclose()

    def body(self, payload: str = "", rid: int | None = None, **attrs: str) -> bytes:
        """The bytes of one request (``rid`` defaults to the next one, not consumed)."""
        rid = self.rid + 1 if rid is None else rid
        extra = "".join(f" {k.replace('__', ':')}='{v}'" for k, v in attrs.items())
        sid = f" sid='{self.sid}'" if self.sid else ""
        return (
            f"<body xmlns='{NS}' xmlns:xmpp='{XBOSH}' rid='{rid}'{sid}{extra}>{payload}</body>"
        ).encode()

    async def post(self, data: bytes) -> tuple[int, bytes]:
        resp = await self.http.post(
            self.url, content=data, headers={"content-type": "text/xml; charset=utf-8"}
        )
        return resp.status_code, resp.content

    async def send(self, payload: str = "", **attrs: str) -> etree._Element:
        """Post the next request; payloads of the answer go to :attr:`inbox`."""
        self.rid += 1
        status, raw = await self.post(self.body(payload, self.rid, **attrs))
        if status != 200:
            raise BoshError(f"HTTP {status}")
        el = etree.fromstring(raw)
        self.inbox.extend(el)
        if el.get("type") == "terminate" and attrs.get("type") != "terminate":
            raise BoshError(f"terminated: {el.get('condition')}")
        return el

    async def create(self, wait: int = 5, hold: int = 1, **attrs: str) -> etree._Element:
        params = {
            "to": self.domain,
            "wait": str(wait),
            "hold": str(hold),
            "ver": "1.6",
            "xml__lang": "en",
            "xmpp__version": "1.0",
        } | attrs
        el = await self.send(**params)
        self.sid = el.get("sid") or ""
        if not self.sid:
            raise BoshError("no sid in the session creation response")
        self.created = el
        return el

    async def expect(
        self, match: Callable[[etree._Element], bool], timeout: float = 10.0
    ) -> etree._Element:
        """Long-poll until an element matching ``match`` is in the inbox; take it."""
        async with asyncio.timeout(timeout):
            while True:
                for i, el in enumerate(self.inbox):
                    if match(el):
                        del self.inbox[i]
                        return el
                await self.send()

    async def login(self, user: str, password: str = "secret", resource: str = "web") -> str:
        await self.create()
        await self.expect(lambda e: e.tag == q("features", STREAMS))
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        await self.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{token}</auth>")
        result = await self.expect(lambda e: e.tag in (q("success", SASL), q("failure", SASL)))
        if result.tag != q("success", SASL):
            raise BoshError("SASL failed")
        await self.send(to=self.domain, xml__lang="en", xmpp__restart="true")
        await self.expect(lambda e: e.tag == q("features", STREAMS))
        await self.send(
            f"<iq xmlns='{CLIENT}' type='set' id='b1'><bind xmlns='{BIND}'>"
            f"<resource>{resource}</resource></bind></iq>"
        )
        iq = await self.expect(lambda e: e.tag == q("iq") and e.get("id") == "b1")
        self.jid = iq.findtext(f".//{{{BIND}}}jid") or ""
        if iq.get("type") != "result" or not self.jid:
            raise BoshError("bind failed")
        return self.jid

    async def join(self, room: str, nick: str) -> None:
        await self.send(
            f"<presence xmlns='{CLIENT}' to='{room}/{nick}'>"
            f"<x xmlns='{MUC}'><history maxstanzas='0'/></x></presence>"
        )

        def self_presence(el: etree._Element) -> bool:
            codes = {s.get("code") for s in el.iter(q("status", MUC_USER))}
            return (
                el.tag == q("presence") and el.get("from") == f"{room}/{nick}" and ("110" in codes)
            )

        await self.expect(self_presence)
