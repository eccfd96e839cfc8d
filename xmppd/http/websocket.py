"""XMPP over WebSocket (RFC 7395): an ASGI WebSocket as a :class:`~xmppd.transport.shell.Wire`.

The stream is the same :class:`~xmppd.stream.c2s.C2SStream` TCP uses, in the
``WEBSOCKET`` framing (``<open/>``/``<close/>``, one element per message), run by the
same :class:`~xmppd.transport.shell.ClientConnection`: reader, bounded outbox, keepalive
pings, negotiation deadline and close are TCP's. What is left here is moving messages:
each input message is one element (at most ``limits.max_stanza_size`` bytes), each
output chunk one text message, and the end a close frame (code 1000). Writes carry no
deadline of their own: hypercorn's stream gives up on a peer that stops reading
(:class:`xmppd.http.serving._PeerWatch`, ``event=send_timeout transport=http``).

A client that closes first (its close frame, or EOF) makes hypercorn close the socket
(``send_eof``) while our writer may be sending its last message or close frame on it:
trio then refuses our send as ``BusyResourceError``. That is the peer having gone, as
hypercorn itself treats it, not a crash: :meth:`send` turns it into
``ClosedResourceError`` and :meth:`finish` has nothing left to do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from xmppd.stream.c2s import C2SSettings, C2SStream
from xmppd.stream.framing import WEBSOCKET
from xmppd.transport.driver import TransportName
from xmppd.transport.shell import ClientConnection

if TYPE_CHECKING:
    from xmppd.server import Server
    from xmppd.transport.admission import AdmissionTicket

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class WebSocketWire:
    """One accepted ASGI WebSocket, message by message."""

    __slots__ = ("_receive", "_send", "max_input")

    name: TransportName = "websocket"
    write_deadline = None
    start_tls = None

    def __init__(self, receive: Receive, send: Send, max_input: int) -> None:
        self._receive = receive
        self._send = send
        self.max_input = max_input

    async def open(self) -> None:
        """Accepted already (the app answered the handshake)."""

    async def receive(self) -> bytes:
        message = await self._receive()
        if message["type"] == "websocket.disconnect":
            return b""
        text = message.get("text")
        if text is not None:
            return text.encode("utf-8") or b" "
        return message.get("bytes") or b" "

    async def send(self, chunks: list[bytes]) -> None:
        try:
            for chunk in chunks:
                await self._send({"type": "websocket.send", "text": chunk.decode("utf-8")})
        except trio.BusyResourceError:
            raise trio.ClosedResourceError("hypercorn is closing the connection") from None

    async def finish(self) -> None:
        try:
            await self._send({"type": "websocket.close", "code": 1000})
        except trio.BusyResourceError:
            pass  # hypercorn is closing the connection already

    async def aclose(self) -> None:
        """hypercorn closes the connection once the application returns."""


def websocket_connection(
    server: Server,
    settings: C2SSettings,
    receive: Receive,
    send: Send,
    peer_ip: str,
    user_agent: str | None,
    ticket: AdmissionTicket | None = None,
) -> ClientConnection:
    """The shell for one RFC 7395 session, from ``websocket.accept`` to close."""
    wire = WebSocketWire(receive, send, server.config.limits.max_stanza_size)
    stream = C2SStream(settings, framing=WEBSOCKET)
    return ClientConnection(server, wire, stream, peer_ip, ticket=ticket, user_agent=user_agent)
