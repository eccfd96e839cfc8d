"""A minimal, fast XMPP c2s client on asyncio for load generation.

Stream handling is hand-rolled: a regex finds tags and tracks depth, and every complete
depth-1 element is handed over as a string. That is enough for the well-formed output of the
servers under test and costs far less CPU than a full XML parser.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import collections
import hashlib
import re
import socket
from collections.abc import Callable
from xml.sax.saxutils import escape

from . import scram

NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
_TAG = re.compile(r"<(/?)([^\s>/]+)[^>]*?(/?)>")
_MECH = re.compile(r"<mechanism>([^<]+)</mechanism>")
_TEXT = re.compile(r">([^<]*)<")
_ATTR_ID = re.compile(r"""\sid=['"]([^'"]*)['"]""")
_ATTR_TYPE = re.compile(r"""\stype=['"]([^'"]*)['"]""")
_JID = re.compile(r"<jid>([^<]+)</jid>")
_ATTR_FROM = re.compile(r"""\sfrom=['"]([^'"]*)['"]""")
_QUERY_NODE = re.compile(r"""<query[^>]*\snode=['"]([^'"]*)['"]""")
NS_CAPS = "http://jabber.org/protocol/caps"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
CAPS_NODE = "https://xmppd.invalid/bench"


class XmppError(Exception):
    """The server refused something or closed the stream."""


def stream_header(domain: str) -> str:
    return (
        f"<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
    )


def text_of(element: str) -> str:
    m = _TEXT.search(element)
    return m.group(1) if m else ""


def attr_id(element: str) -> str:
    m = _ATTR_ID.search(element[: element.find(">")])
    return m.group(1) if m else ""


def attr_type(element: str) -> str:
    m = _ATTR_TYPE.search(element[: element.find(">")])
    return m.group(1) if m else ""


def attr_from(element: str) -> str:
    m = _ATTR_FROM.search(element[: element.find(">")])
    return m.group(1) if m else ""


class Caps:
    """This client's XEP-0115 entity capabilities: one identity, a feature list, the ver.

    The ver is the XEP-0115 §5.1 SHA-1 over ``category/type/lang/name<`` for the identity
    and ``feature<`` for each feature in byte order (no data forms), base64-encoded; servers
    that verify it (xmppd, §5.4) only use features whose hash matches.
    """

    def __init__(self, features: list[str], name: str = "xmppd bench") -> None:
        self.identity = ("client", "pc", "", name)
        self.features = sorted(set(features) | {NS_DISCO_INFO, NS_CAPS})
        s = "/".join(self.identity) + "<" + "".join(f + "<" for f in self.features)
        digest = hashlib.sha1(s.encode(), usedforsecurity=False).digest()
        self.ver = base64.b64encode(digest).decode()

    def presence(self, extra: str = "") -> str:
        """Available presence announcing these caps (§4)."""
        return (
            f"<presence>{extra}<c xmlns='{NS_CAPS}' hash='sha-1' node='{CAPS_NODE}' "
            f"ver='{self.ver}'/></presence>"
        )

    def answer(self, element: str) -> str | None:
        """The disco#info result for a server's caps query (§6.2), echoing its node; None
        if ``element`` is not a disco#info get."""
        if not element.startswith("<iq") or NS_DISCO_INFO not in element:
            return None
        if attr_type(element) != "get":
            return None
        m = _QUERY_NODE.search(element)
        # attribute values are copied as the server wrote them (already escaped XML text);
        # only a ' inside a "-quoted value needs escaping for our '-quoted attributes
        node = f" node='{m.group(1).replace(chr(39), '&apos;')}'" if m else ""
        cat, typ, _, name = self.identity
        feats = "".join(f"<feature var='{f}'/>" for f in self.features)
        return (
            f"<iq type='result' id='{attr_id(element).replace(chr(39), '&apos;')}' "
            f"to='{attr_from(element).replace(chr(39), '&apos;')}'>"
            f"<query xmlns='{NS_DISCO_INFO}'{node}>"
            f"<identity category='{cat}' type='{typ}' name='{name}'/>{feats}</query></iq>"
        )


class Client(asyncio.Protocol):
    """One c2s connection. Use :func:`connect`, then :meth:`login` or the lower-level calls."""

    def __init__(self, domain: str) -> None:
        self.domain = domain
        self.transport: asyncio.Transport | None = None
        self.jid = ""
        self.closed = False
        self.on_stanza: Callable[[str], None] | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._buf = ""
        self._depth = 0
        self._start = 0
        self._scan = 0
        self._queue: collections.deque[str] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buf = self._buf + self._decoder.decode(data)
        depth = self._depth
        start = self._start
        last_end = self._scan
        for m in _TAG.finditer(buf, last_end):
            last_end = m.end()
            closing, name, selfclosing = m.groups()
            if name[0] in "?!":
                continue
            if closing:
                depth -= 1
                if depth == 1:
                    self._deliver(buf[start:last_end])
                elif depth == 0:
                    self._push("</stream:stream>")
            elif selfclosing:
                if depth == 1:
                    self._deliver(m.group(0))
            else:
                if depth == 0:
                    self._push(m.group(0))  # the stream header
                elif depth == 1:
                    start = m.start()
                depth += 1
        # Keep the unfinished depth-1 element (or any partial tag); scanning resumes after the
        # last tag already counted.
        keep = start if depth > 1 else last_end
        self._buf = buf[keep:]
        self._start = start - keep if depth > 1 else 0
        self._scan = last_end - keep
        self._depth = depth

    def _deliver(self, element: str) -> None:
        if self.on_stanza is not None:
            self.on_stanza(element)
        else:
            self._push(element)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    # -- plumbing --------------------------------------------------------------------------
    def _push(self, element: str) -> None:
        self._queue.append(element)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def send(self, data: str) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data.encode())

    async def recv(self) -> str:
        """The next depth-1 element (or stream header / stream end marker)."""
        while not self._queue:
            if self.closed:
                raise XmppError("connection closed by server")
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None
        return self._queue.popleft()

    async def recv_until(self, predicate: Callable[[str], bool]) -> str:
        while True:
            element = await self.recv()
            if element.startswith("<stream:error") or element == "</stream:stream>":
                raise XmppError(f"stream ended: {element[:200]}")
            if predicate(element):
                return element

    def reset_stream(self) -> None:
        self._depth = 0
        self._buf = ""
        self._start = 0
        self._scan = 0

    async def open_stream(self) -> str:
        """Send a stream header, return the stream features element."""
        self.send(stream_header(self.domain))
        header = await self.recv()
        if not header.startswith("<stream:stream"):
            raise XmppError(f"expected stream header, got {header[:200]}")
        return await self.recv_until(lambda e: e.startswith("<stream:features"))

    # -- login -----------------------------------------------------------------------------
    async def authenticate(self, features: str, user: str, password: str, mechanism: str) -> None:
        offered = _MECH.findall(features)
        if mechanism not in offered:
            raise XmppError(f"mechanism {mechanism} not offered ({offered})")
        if mechanism == "PLAIN":
            self.send(
                f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>"
                f"{scram.plain_initial(user, password)}</auth>"
            )
            reply = await self.recv()
        else:
            client = scram.ScramClient(mechanism, user, password)
            self.send(f"<auth xmlns='{NS_SASL}' mechanism='{mechanism}'>{client.first()}</auth>")
            reply = await self.recv()
            if not reply.startswith("<challenge"):
                raise XmppError(f"SASL failed: {reply[:200]}")
            self.send(f"<response xmlns='{NS_SASL}'>{client.final(text_of(reply))}</response>")
            reply = await self.recv()
            if reply.startswith("<challenge"):  # v= in a final challenge
                self.send(f"<response xmlns='{NS_SASL}'/>")
                reply = await self.recv()
            elif reply.startswith("<success") and not reply.endswith("/>"):
                client.verify(text_of(reply))
        if not reply.startswith("<success"):
            raise XmppError(f"SASL failed: {reply[:200]}")

    async def login(
        self,
        user: str,
        password: str,
        mechanism: str,
        resource: str,
        presence: bool = False,
    ) -> None:
        features = await self.open_stream()
        await self.authenticate(features, user, password, mechanism)
        self.reset_stream()
        features = await self.open_stream()
        self.send(
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            f"<resource>{escape(resource)}</resource></bind></iq>"
        )
        reply = await self.recv_until(lambda e: e.startswith("<iq"))
        m = _JID.search(reply)
        if attr_type(reply) != "result" or m is None:
            raise XmppError(f"bind failed: {reply[:200]}")
        self.jid = m.group(1)
        if "xmpp-session" in features and "<optional" not in features.split("xmpp-session")[1]:
            self.send(
                "<iq type='set' id='sess1'>"
                "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>"
            )
            await self.recv_until(lambda e: e.startswith("<iq") and attr_id(e) == "sess1")
        if presence:
            self.send("<presence/>")

    async def sync(self, ident: str = "sync1") -> None:
        """Round trip (XEP-0199 ping to the server): everything sent before is processed."""
        self.send(
            f"<iq type='get' id='{ident}' to='{self.domain}'><ping xmlns='urn:xmpp:ping'/></iq>"
        )
        await self.recv_until(lambda e: e.startswith("<iq") and attr_id(e) == ident)

    async def close_gracefully(self, wait: float = 5.0) -> None:
        """Send the stream end and wait (bounded) for the server's before closing the socket."""
        if self.transport is None or self.closed:
            return
        self.on_stanza = None
        self.transport.write(b"</stream:stream>")
        try:
            async with asyncio.timeout(wait):
                while await self.recv() != "</stream:stream>":
                    pass
        except (TimeoutError, XmppError):
            pass
        self.transport.close()
        self.closed = True

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(b"</stream:stream>")
            self.transport.close()
        self.closed = True


async def connect(host: str, port: int, domain: str) -> Client:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: Client(domain), host, port)
    return client


async def probe_mechanisms(host: str, port: int, domain: str) -> list[str]:
    client = await connect(host, port, domain)
    try:
        async with asyncio.timeout(10):
            features = await client.open_stream()
        return _MECH.findall(features)
    finally:
        client.close()


def pick_scram(offered_by_each: list[list[str]]) -> str:
    """The strongest SCRAM mechanism offered by every server (PLAIN if none is)."""
    for mech in scram.SCRAM_PREFERENCE:
        if all(mech in offered for offered in offered_by_each):
            return mech
    return "PLAIN"
