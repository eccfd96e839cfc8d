"""Client connections over TCP and direct TLS: a byte-stream :class:`~xmppd.transport.shell.Wire`.

Everything a client connection does lives in :class:`~xmppd.transport.shell.ClientConnection`;
this module only adapts a trio stream to it: reads of up to ``READ_SIZE`` bytes, each
batch of output joined into one ``send_all``, STARTTLS and direct TLS by wrapping the
socket in a :class:`trio.SSLStream`, and a bounded close.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from xmppd.stream.c2s import C2SStream
from xmppd.transport.admission import AdmissionTicket
from xmppd.transport.driver import TransportName
from xmppd.transport.shell import ClientConnection

if TYPE_CHECKING:
    import ssl

    from xmppd.server import Server

READ_SIZE = 65536


class StreamWire:
    """A trio byte stream (TCP, later perhaps TLS over it) as the shell's wire."""

    __slots__ = (
        "_tls_context",
        "direct_tls",
        "name",
        "receive",
        "start_tls",
        "stream",
        "write_deadline",
    )

    #: Byte streams have no message boundaries: the parser bounds stanza sizes.
    max_input = None

    def __init__(
        self,
        stream: trio.abc.Stream,
        tls_context: Callable[[], ssl.SSLContext | None],
        *,
        direct_tls: bool,
        send_timeout: float,
    ) -> None:
        self.stream = stream
        #: The next input (``b""`` once the peer has gone): the stream's own method, with
        #: no coroutine of ours in between (an idle connection waits in it).
        self.receive: Callable[[], Awaitable[bytes]] = functools.partial(
            stream.receive_some, READ_SIZE
        )
        self.direct_tls = direct_tls
        #: The context in force when a handshake starts (a reload may swap it).
        self._tls_context = tls_context
        self.name: TransportName = "tls" if direct_tls else "tcp"
        self.write_deadline: float | None = send_timeout
        #: The stream offers STARTTLS only when a context is loaded (``tls_available``).
        self.start_tls: Callable[[], Awaitable[None]] | None = self._wrap_tls

    async def open(self) -> None:
        if self.direct_tls:
            await self._wrap_tls()

    async def _wrap_tls(self) -> None:
        ctx = self._tls_context()
        assert ctx is not None
        tls = trio.SSLStream(self.stream, ctx, server_side=True)
        await tls.do_handshake()
        self.stream = tls
        self.receive = functools.partial(tls.receive_some, READ_SIZE)

    async def send(self, chunks: list[bytes]) -> None:
        await self.stream.send_all(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    async def finish(self) -> None:
        """Nothing to say below XMPP: the close tag was the last write."""

    async def aclose(self) -> None:
        # SocketStream.aclose only closes the socket; TLS may try a close_notify, so
        # give it a bound.
        if isinstance(self.stream, trio.SSLStream):
            with trio.move_on_after(1):
                await _quiet_aclose(self.stream)
        else:
            await _quiet_aclose(self.stream)


def c2s_connection(
    server: Server,
    stream: trio.abc.Stream,
    peer_ip: str,
    *,
    direct_tls: bool,
    ticket: AdmissionTicket | None = None,
) -> ClientConnection:
    """The shell for one accepted TCP (or direct TLS) connection."""
    wire = StreamWire(
        stream,
        lambda: server.ssl_context,
        direct_tls=direct_tls,
        send_timeout=server.config.c2s.send_timeout,
    )
    c2s = C2SStream(server.c2s_settings(peer_ip, direct_tls))
    return ClientConnection(server, wire, c2s, peer_ip, ticket=ticket)


async def _quiet_aclose(stream: trio.abc.Stream) -> None:
    try:
        await stream.aclose()
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
