"""A minimal XMPP-over-WebSocket client (RFC 7395) for load generation.

Each WebSocket message is one element, so no stream scanner is needed: messages are handed
over as strings and matched with the same helpers as the TCP client (:mod:`.xmpp`).
``<open/>`` and ``<close/>`` replace the stream header and end; SASL and bind are as on TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
from xml.sax.saxutils import escape

from websockets.asyncio.client import ClientConnection, connect

from . import muc, scram, xmpp

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
PATH = "/xmpp-websocket"


class WsClient:
    """One WebSocket XMPP connection; use :func:`open_ws`, then :meth:`login`."""

    def __init__(self, ws: ClientConnection, domain: str) -> None:
        self.ws = ws
        self.domain = domain
        self.jid = ""

    async def send(self, data: str) -> None:
        await self.ws.send(data)

    async def recv(self) -> str:
        data = await self.ws.recv()
        return data if isinstance(data, str) else data.decode()

    async def recv_until(self, predicate) -> str:  # type: ignore[no-untyped-def]
        while True:
            element = await self.recv()
            if element.startswith(("<close", "<stream:error", "<error")):
                raise xmpp.XmppError(f"stream ended: {element[:200]}")
            if predicate(element):
                return element

    async def open_stream(self) -> str:
        """Send ``<open/>``; return the features element."""
        await self.send(f"<open xmlns='{FRAMING}' to='{self.domain}' version='1.0'/>")
        opened = await self.recv()
        if not opened.startswith("<open"):
            raise xmpp.XmppError(f"expected <open/>, got {opened[:200]}")
        return await self.recv_until(lambda e: "features" in e[:40])

    async def login(self, user: str, password: str, mechanism: str, resource: str) -> None:
        """SASL, stream restart, bind, initial presence."""
        features = await self.open_stream()
        if mechanism not in features:
            raise xmpp.XmppError(f"mechanism {mechanism} not offered")
        ns = xmpp.NS_SASL
        if mechanism == "PLAIN":
            initial = scram.plain_initial(user, password)
            await self.send(f"<auth xmlns='{ns}' mechanism='PLAIN'>{initial}</auth>")
        else:
            client = scram.ScramClient(mechanism, user, password)
            await self.send(f"<auth xmlns='{ns}' mechanism='{mechanism}'>{client.first()}</auth>")
            challenge = await self.recv()
            if not challenge.startswith("<challenge"):
                raise xmpp.XmppError(f"SASL failed: {challenge[:200]}")
            reply = client.final(xmpp.text_of(challenge))
            await self.send(f"<response xmlns='{ns}'>{reply}</response>")
        outcome = await self.recv()
        if not outcome.startswith("<success"):
            raise xmpp.XmppError(f"SASL failed: {outcome[:200]}")
        await self.open_stream()
        await self.send(
            "<iq type='set' id='bind1' xmlns='jabber:client'>"
            "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            f"<resource>{escape(resource)}</resource></bind></iq>"
        )
        reply = await self.recv_until(lambda e: e.startswith("<iq"))
        if xmpp.attr_type(reply) != "result" or "<jid>" not in reply:
            raise xmpp.XmppError(f"bind failed: {reply[:200]}")
        self.jid = reply.split("<jid>", 1)[1].split("</jid>", 1)[0]
        await self.send("<presence xmlns='jabber:client'/>")

    async def join(self, room: str, nick: str) -> None:
        """Join without history; wait for the own presence (status 110)."""
        full = f"{room}/{nick}"
        await self.send(muc.join_presence(room, nick).replace("<presence ", _CLIENT_PRESENCE, 1))

        def mine(e: str) -> bool:
            if not e.startswith("<presence") or muc.attr_from(e) != full:
                return False
            if xmpp.attr_type(e) == "error":
                raise xmpp.XmppError(f"MUC join refused: {e[:300]}")
            return "code='110'" in e or 'code="110"' in e

        await self.recv_until(mine)

    async def leave(self, room: str, nick: str) -> None:
        full = f"{room}/{nick}"
        await self.send(f"<presence xmlns='jabber:client' to='{full}' type='unavailable'/>")
        await self.recv_until(
            lambda e: (
                e.startswith("<presence")
                and muc.attr_from(e) == full
                and xmpp.attr_type(e) == "unavailable"
            )
        )

    async def close(self, wait: float = 5.0) -> None:
        """``<close/>``, the server's ``<close/>`` (bounded wait), then the WebSocket close."""
        with contextlib.suppress(Exception):  # closing anyway
            async with asyncio.timeout(wait):
                await self.send(f"<close xmlns='{FRAMING}'/>")
                while not (await self.recv()).startswith("<close"):
                    pass
        await self.ws.close()


_CLIENT_PRESENCE = "<presence xmlns='jabber:client' "


async def open_ws(host: str, port: int, domain: str) -> WsClient:
    ws = await connect(
        f"ws://{host}:{port}{PATH}", subprotocols=["xmpp"], open_timeout=10, max_size=None
    )
    return WsClient(ws, domain)
