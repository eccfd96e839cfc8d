"""A minimal XMPP client over a real TCP socket, for transcripts: raw XML in and out.

It logs in the way the loopback test configuration allows (no TLS, SASL PLAIN), binds
the resource the transcript names, and then only sends what the file says and hands
back every top-level element the server sends, one at a time. No initial presence, no
roster, nothing implicit: what the file shows is all that happens.
"""

from __future__ import annotations

import base64
import math

import trio
from lxml import etree

STREAMS = "http://etherx.jabber.org/streams"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
HEADER = (
    "<?xml version='1.0'?><stream:stream to='%s' version='1.0' xmlns='jabber:client' "
    "xmlns:stream='%s'>"
)


class StreamClosed(Exception):
    """The server closed the stream or the connection."""


class Connection:
    """One client connection: :meth:`next` returns the server's stanzas in order."""

    def __init__(self, stream: trio.SocketStream, domain: str) -> None:
        self._stream = stream
        self._domain = domain
        self._ready: list[etree._Element] = []
        self._parser = self._new_parser()
        self._depth = 0
        self.closed = False

    @classmethod
    async def open(cls, port: int, domain: str) -> Connection:
        return cls(await trio.open_tcp_stream("127.0.0.1", port), domain)

    @staticmethod
    def _new_parser() -> etree.XMLPullParser:
        return etree.XMLPullParser(events=("start", "end"), resolve_entities=False)

    async def send(self, data: str) -> None:
        await self._stream.send_all(data.encode())

    async def restart(self) -> etree._Element:
        """Open (or reopen, after SASL) the stream; the server's features."""
        self._parser, self._depth = self._new_parser(), 0
        await self.send(HEADER % (self._domain, STREAMS))
        features = await self.next(10)
        if features.tag != "{%s}features" % STREAMS:
            raise StreamClosed(f"expected stream features, got {etree.tostring(features)!r}")
        return features

    async def login(self, localpart: str, password: str, resource: str) -> str:
        """SASL PLAIN and resource binding; the full JID the server bound."""
        await self.restart()
        token = base64.b64encode(f"\0{localpart}\0{password}".encode()).decode()
        await self.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{token}</auth>")
        answer = await self.next(10)
        if answer.tag != "{%s}success" % SASL:
            raise StreamClosed(f"login failed: {etree.tostring(answer)!r}")
        await self.restart()
        await self.send(
            f"<iq type='set' id='bind'><bind xmlns='{BIND}'><resource>{resource}</resource>"
            "</bind></iq>"
        )
        bound = await self.next(10)
        jid = bound.findtext(".//{%s}jid" % BIND)
        if bound.get("type") != "result" or not jid:
            raise StreamClosed(f"bind failed: {etree.tostring(bound)!r}")
        return jid

    async def next(self, timeout: float) -> etree._Element:
        """The next top-level element; TimeoutError after ``timeout`` s without one,
        :class:`StreamClosed` when the stream ends first."""
        with trio.move_on_after(timeout):
            while not self._ready:
                if self.closed:
                    raise StreamClosed("the server closed the stream")
                await self._read()
            return self._ready.pop(0)
        raise TimeoutError

    async def pending(self, quiet: float) -> list[etree._Element]:
        """Everything that arrives within ``quiet`` s (and what already has)."""
        got: list[etree._Element] = []
        while True:
            try:
                got.append(await self.next(quiet))
            except (TimeoutError, StreamClosed):
                return got

    async def close(self, timeout: float = 5.0) -> list[etree._Element]:
        """Close the stream, wait for the server's close; what arrived meanwhile."""
        got: list[etree._Element] = []
        if not self.closed:
            try:
                await self.send("</stream:stream>")
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.closed = True
        with trio.move_on_after(timeout):
            while True:
                try:
                    got.append(await self.next(math.inf))
                except StreamClosed:
                    break
        await self.abort()
        return got

    async def abort(self) -> None:
        self.closed = True
        await self._stream.aclose()

    async def _read(self) -> None:
        try:
            data = await self._stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self.closed = True
            return
        self._parser.feed(data)
        for event, element in self._parser.read_events():
            if event == "start":
                self._depth += 1
                continue
            self._depth -= 1
            if self._depth == 1:
                self._ready.append(_detached(element))
                element.clear()
            elif self._depth == 0:
                self.closed = True


def _detached(element: etree._Element) -> etree._Element:
    """A copy of a stanza that owns its namespace declarations (no stream root)."""
    copy = etree.fromstring(etree.tostring(element))
    etree.cleanup_namespaces(copy)
    return copy
