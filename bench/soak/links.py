"""Three client transports with one interface for the soak's clients: plain TCP c2s,
WebSocket (RFC 7395) and BOSH (XEP-0124/0206), each yielding whole top-level elements
as strings. Cheap on CPU (regex framing, h11): one process drives hundreds of them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
from collections.abc import Callable

import h11
from lxml import etree
from websockets.asyncio.client import connect as ws_connect

from bench.loadgen import xmpp
from bench.loadgen.bosh import PATH, HttpClient, HttpStatus

NS_FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
NS_BIND = "http://jabber.org/protocol/httpbind"
NS_XBOSH = "urn:xmpp:xbosh"
END = "</stream:stream>"


class LinkLost(Exception):
    """The connection (or BOSH session) is gone."""


class Link:
    """A stream of elements; ``recv()`` raises :class:`LinkLost` once it ended."""

    kind = ""
    sm = True  # XEP-0198 used on this transport by the soak's clients

    def __init__(self) -> None:
        self._queue: collections.deque[str] = collections.deque()
        self._event = asyncio.Event()
        self.closed = False

    def _push(self, element: str) -> None:
        self._queue.append(element)
        self._event.set()

    def _lost(self) -> None:
        self.closed = True
        self._event.set()

    async def recv(self) -> str:
        while not self._queue:
            if self.closed:
                raise LinkLost(self.kind)
            self._event.clear()
            await self._event.wait()
        return self._queue.popleft()

    async def recv_until(self, *starts: str) -> str:
        while True:
            element = await self.recv()
            if element.startswith(("<stream:error", END, "<close")):
                raise LinkLost(f"stream ended: {element[:120]}")
            if element.startswith(starts):
                return element

    async def open(self, source: str) -> str:
        """Connect and open the stream; the features element."""
        raise NotImplementedError

    async def restart(self) -> str:
        """Stream restart after SASL; the new features."""
        raise NotImplementedError

    def send(self, data: str) -> None:
        raise NotImplementedError

    def cut_mid_stanza(self) -> None:
        """Half a stanza on the wire, then the socket is dropped (a fault)."""
        raise NotImplementedError

    def pause_reading(self, on: bool) -> None:
        """Stop (or resume) reading from the socket: the server's writes back up."""

    def close(self) -> None:
        raise NotImplementedError


class TcpLink(Link):
    kind = "tcp"

    def __init__(self, host: str, port: int, domain: str) -> None:
        super().__init__()
        self.host, self.port, self.domain = host, port, domain
        self.client: xmpp.Client | None = None

    async def open(self, source: str) -> str:
        loop = asyncio.get_running_loop()
        _, client = await loop.create_connection(
            lambda: xmpp.Client(self.domain), self.host, self.port, local_addr=(source, 0)
        )
        self.client = client
        self._watch()
        features = await client.open_stream()
        client.on_stanza = self._push
        return features

    def _watch(self) -> None:
        client = self.client
        assert client is not None
        original = client.connection_lost

        def lost(exc: Exception | None) -> None:
            original(exc)
            self._lost()

        client.connection_lost = lost  # type: ignore[method-assign]

    async def restart(self) -> str:
        assert self.client is not None
        self.client.on_stanza = None
        self.client.reset_stream()
        features = await self.client.open_stream()
        self.client.on_stanza = self._push
        return features

    def send(self, data: str) -> None:
        if self.client is not None:
            self.client.send(data)

    def cut_mid_stanza(self) -> None:
        if self.client is not None and self.client.transport is not None:
            self.client.transport.write(b"<message type='groupchat' to='sax@conf")
            self.client.transport.abort()

    def pause_reading(self, on: bool) -> None:
        if self.client is not None and self.client.transport is not None:
            with contextlib.suppress(RuntimeError):
                if on:
                    self.client.transport.pause_reading()
                else:
                    self.client.transport.resume_reading()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        self._lost()


class WsLink(Link):
    kind = "websocket"

    def __init__(self, url: str, domain: str) -> None:
        super().__init__()
        self.url, self.domain = url, domain
        self.ws = None
        self._reader: asyncio.Task[None] | None = None

    def _open_frame(self) -> str:
        return f"<open xmlns='{NS_FRAMING}' to='{self.domain}' version='1.0'/>"

    async def open(self, source: str) -> str:
        self.ws = await ws_connect(
            self.url,
            subprotocols=["xmpp"],
            max_size=None,
            open_timeout=30,  # type: ignore[list-item]
            local_addr=(source, 0),
            ping_interval=None,
        )
        self._reader = asyncio.create_task(self._read())
        self.send(self._open_frame())
        await self.recv_until("<open")
        return await self.recv_until("<stream:features", "<features")

    async def _read(self) -> None:
        assert self.ws is not None
        with contextlib.suppress(Exception):  # any end of the connection ends the link
            async for message in self.ws:
                self._push(message if isinstance(message, str) else message.decode())
        self._lost()

    async def restart(self) -> str:
        self.send(self._open_frame())
        await self.recv_until("<open")
        return await self.recv_until("<stream:features", "<features")

    def send(self, data: str) -> None:
        if self.ws is None or self.closed:
            return
        task = asyncio.ensure_future(self.ws.send(data))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _transport(self) -> asyncio.Transport | None:
        return None if self.ws is None else self.ws.transport  # type: ignore[return-value]

    def cut_mid_stanza(self) -> None:
        transport = self._transport()
        if transport is not None:
            transport.write(b"\x81\xfe\x01\x00")  # a masked text frame's header, no payload
            transport.abort()

    def pause_reading(self, on: bool) -> None:
        transport = self._transport()
        if transport is not None:
            with contextlib.suppress(RuntimeError):
                transport.pause_reading() if on else transport.resume_reading()

    def close(self) -> None:
        transport = self._transport()
        if transport is not None:
            transport.abort()
        if self._reader is not None:
            self._reader.cancel()
        self._lost()


class _Http(HttpClient):
    """The load client's HTTP connection; an HTTP error ends the link."""

    async def post(self, body: bytes, target: str = PATH) -> bytes:
        try:
            return await super().post(body, target)
        except HttpStatus as exc:
            raise LinkLost(f"HTTP {exc.status}") from None


class BoshLink(Link):
    """hold=1: one long poll always waiting at the server, sends on a second connection."""

    kind = "bosh"
    sm = False  # BOSH's own rid/ack reliability; a lost session is rejoined with MAM

    def __init__(self, host: str, port: int, domain: str, wait: int = 30) -> None:
        super().__init__()
        self.host, self.port, self.domain, self.wait = host, port, domain, wait
        self.sid = ""
        self.rid = random.randint(1 << 20, 1 << 40)
        self.source = "127.0.0.1"
        self._http: list[_Http] = []
        self._busy: set[_Http] = set()
        self._out: list[str] = []
        self._acks: list[Callable[[], None]] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.retries = 0  # requests sent again after their connection failed

    def _body(self, payload: str = "", **attrs: str) -> bytes:
        self.rid += 1
        extra = "".join(f" {k}='{v}'" for k, v in attrs.items())
        sid = f" sid='{self.sid}'" if self.sid else ""
        return (
            f"<body rid='{self.rid}'{sid} xmlns='{NS_BIND}' xmlns:xmpp='{NS_XBOSH}'"
            f"{extra}>{payload}</body>"
        ).encode()

    async def _post(self, data: bytes) -> None:
        http = self._http.pop() if self._http else _Http(self.host, self.port, self.source)
        self._busy.add(http)
        try:
            for attempt in range(3):  # a cut connection: the same rid again (XEP-0124 §14.3)
                try:
                    raw = await http.post(data)
                    break
                except (OSError, h11.ProtocolError):
                    http.close()
                    self.retries += 1
                    if attempt == 2 or self.closed:
                        self._lost()
                        raise LinkLost("BOSH request failed") from None
                    if attempt:  # the first retry at once, on a new connection, as
                        await asyncio.sleep(0.5)  # browsers retry a dead keep-alive one
        finally:
            self._busy.discard(http)
        self._http.append(http)
        try:
            body = etree.fromstring(raw)
        except etree.XMLSyntaxError:
            self._lost()
            raise LinkLost("bad BOSH body") from None
        if body.get("type") == "terminate":
            self._lost()
            raise LinkLost(f"terminated: {body.get('condition')}")
        if not self.sid:
            self.sid = body.get("sid") or ""
        for child in body:
            self._push(etree.tostring(child, encoding=str, with_tail=False))

    async def open(self, source: str) -> str:
        self.source = source
        await self._post(
            self._body(
                to=self.domain,
                wait=str(self.wait),
                hold="1",
                ver="1.6",
                **{"xml:lang": "en", "xmpp:version": "1.0"},
            )
        )
        self._tasks = [asyncio.create_task(self._poll()), asyncio.create_task(self._sender())]
        return await self.recv_until("<stream:features")

    async def _poll(self) -> None:
        with contextlib.suppress(LinkLost):
            while not self.closed:
                await self._post(self._body())

    async def _sender(self) -> None:
        with contextlib.suppress(LinkLost):
            while not self.closed:
                await self._wake.wait()
                self._wake.clear()
                if self._out:
                    payload, self._out = "".join(self._out), []
                    acks, self._acks = self._acks, []
                    await self._post(self._body(payload))
                    for ack in acks:  # answered: the server has them (XEP-0124 §9)
                        ack()

    async def restart(self) -> str:
        await self._post(self._body(to=self.domain, **{"xml:lang": "en", "xmpp:restart": "true"}))
        return await self.recv_until("<stream:features")

    def send(self, data: str, on_ack: Callable[[], None] | None = None) -> None:
        if not self.closed:
            self._out.append(data)
            if on_ack is not None:
                self._acks.append(on_ack)
            self._wake.set()

    def cut_mid_stanza(self) -> None:
        """The held request's connection is dropped: the client sends the same rid again."""
        for http in list(self._busy):
            http.abort()

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for http in [*self._http, *self._busy]:
            http.close()
        self._lost()
