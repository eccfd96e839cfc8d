"""A small RFC 7395 client on the ``websockets`` library, for integration tests.

It speaks raw XMPP framing (``<open/>``, one element per message) so tests can assert
exactly what the server sent, and offers a PLAIN login + bind shortcut.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from lxml import etree
from websockets.asyncio.client import ClientConnection, connect

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
STREAMS = "http://etherx.jabber.org/streams"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
CLIENT = "jabber:client"
STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"


def q(namespace: str, name: str) -> str:
    return "{%s}%s" % (namespace, name)


class WsXmpp:
    """One WebSocket XMPP connection; every received message must parse on its own."""

    def __init__(self, ws: ClientConnection, domain: str) -> None:
        self.ws = ws
        self.domain = domain
        self.jid = ""

    @classmethod
    async def connect(
        cls,
        url: str,
        domain: str = "localhost",
        *,
        subprotocols: list[str] | None = None,
        origin: str | None = None,
        headers: dict[str, str] | None = None,
        **socket_options: Any,
    ) -> WsXmpp:
        """``socket_options`` go to the event loop's ``create_connection`` (e.g.
        ``local_addr=("127.0.0.2", 0)``, ``ssl=context``)."""
        ws = await connect(
            url,
            subprotocols=["xmpp"] if subprotocols is None else subprotocols,  # type: ignore[list-item]
            origin=origin,  # type: ignore[arg-type]
            additional_headers=headers,
            max_size=None,
            open_timeout=10,
            **socket_options,
        )
        return cls(ws, domain)

    async def send(self, xml: str | bytes) -> None:
        await self.ws.send(xml.decode() if isinstance(xml, bytes) else xml)

    async def recv(self, timeout: float = 10.0) -> etree._Element:
        data = await asyncio.wait_for(self.ws.recv(), timeout)
        return etree.fromstring(data.encode() if isinstance(data, str) else data)

    async def recv_until(self, tag: str, timeout: float = 10.0) -> etree._Element:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            el = await self.recv(max(0.1, deadline - loop.time()))
            if el.tag == tag:
                return el

    async def open(self) -> etree._Element:
        """Send ``<open/>``; return the features."""
        await self.send(f"<open xmlns='{FRAMING}' to='{self.domain}' version='1.0'/>")
        opened = await self.recv()
        assert opened.tag == q(FRAMING, "open"), etree.tostring(opened)
        features = await self.recv()
        assert features.tag == q(STREAMS, "features"), etree.tostring(features)
        return features

    async def login(self, user: str, password: str, resource: str = "ws") -> str:
        features = await self.open()
        mechs = [m.text for m in features.iter(q(SASL, "mechanism"))]
        assert "PLAIN" in mechs, etree.tostring(features)
        token = base64.b64encode(f"\x00{user}\x00{password}".encode()).decode()
        await self.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{token}</auth>")
        result = await self.recv()
        assert result.tag == q(SASL, "success"), etree.tostring(result)
        features = await self.open()
        assert features.find(q(BIND, "bind")) is not None
        await self.send(
            f"<iq xmlns='{CLIENT}' type='set' id='bind1'><bind xmlns='{BIND}'>"
            f"<resource>{resource}</resource></bind></iq>"
        )
        reply = await self.recv()
        assert reply.get("type") == "result", etree.tostring(reply)
        self.jid = reply.findtext(f"{q(BIND, 'bind')}/{q(BIND, 'jid')}") or ""
        return self.jid

    async def close(self) -> None:
        try:
            await self.ws.close()
        except Exception:
            pass


def stream_error(el: etree._Element) -> str | None:
    """The condition of a ``<stream:error/>`` element, else None."""
    if el.tag != q(STREAMS, "error"):
        return None
    for child in el:
        if child.tag.startswith("{%s}" % STREAM_ERRORS) and not child.tag.endswith("}text"):
            return etree.QName(child).localname
    return None


def close_code(ws: Any) -> int | None:
    return ws.close_code
