"""The client connection shell over trio's in-memory streams, on a mock clock.

A real :class:`Server` (in-memory routing, a file database nobody waits on) and a
backend that answers at once, so nothing blocks on a thread and ``autojump_clock`` can
skip every timeout: the keepalive, the negotiation deadline, the write deadline. The
client is played by the test, byte for byte. Every test also checks that the admission
ticket was given back, whatever ended the connection.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.unit.stream_helpers import header, plain
from xmppd.auth.base import AuthContext, AuthError, Identity, ScramCredentials, claim_account
from xmppd.config import Config
from xmppd.http.websocket import websocket_connection
from xmppd.server import Server
from xmppd.storage import AsyncDatabase, Database
from xmppd.stream.c2s import C2SStream
from xmppd.transport.admission import Admission
from xmppd.transport.c2s import StreamWire
from xmppd.transport.driver import C2SDriver
from xmppd.transport.shell import ClientConnection

IP = "192.0.2.7"
BIND = b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>"


class InstantBackend:
    """Any password but ``wrong`` is right; no thread, no wait."""

    name = "instant"

    def supports_scram(self) -> bool:
        return False

    async def check_password(self, username: str, password: str, ctx: AuthContext) -> Identity:
        claim_account(ctx, username.lower())
        if password == "wrong":
            raise AuthError("not-authorized")
        return Identity(localpart=username.lower())

    async def scram_credentials(
        self, username: str, hash_name: str, ctx: AuthContext | None = None
    ) -> tuple[Identity, ScramCredentials] | None:
        return None

    async def user_exists(self, localpart: str) -> bool:
        return True

    async def aclose(self) -> None:
        return None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    config = Config()
    config.server.data_dir = str(tmp_path)
    c2s = config.c2s
    c2s.ping_interval, c2s.ping_timeout = 100.0, 20.0
    c2s.handshake_timeout, c2s.send_timeout = 30.0, 60.0
    c2s.send_queue_bytes = 64 * 1024
    db = Database(config.database_url)
    db.upgrade()
    try:
        yield Server(config, db, InstantBackend(), AsyncDatabase(db))  # type: ignore[arg-type]
    finally:
        db.dispose()


class Peer:
    """The client's end: what it sends, and everything it has read so far."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.seen = b""

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def expect(self, marker: bytes) -> bytes:
        """Read until ``marker`` has arrived; what came up to and including it."""
        while marker not in self.seen:
            data = await self.stream.receive_some(65536)
            assert data, f"EOF while waiting for {marker!r}; got {self.seen[-300:]!r}"
            self.seen += data
        head, _, self.seen = self.seen.partition(marker)
        return head + marker

    async def read_to_eof(self) -> bytes:
        while data := await self.stream.receive_some(65536):
            self.seen += data
        return self.seen

    async def login(self) -> None:
        await self.send(header(to="localhost"))
        await self.expect(b"</stream:features>")
        await self.send(plain("alice", "secret"))
        await self.expect(b"<success")
        await self.send(header(to="localhost"))
        await self.expect(b"</stream:features>")
        await self.send(BIND)
        await self.expect(b"</iq>")


class Harness:
    def __init__(self, server: Server, pair: tuple[trio.abc.Stream, trio.abc.Stream]) -> None:
        self.server = server
        self.admission = Admission(per_address=4)
        ticket = self.admission.try_admit(IP)
        client_end, server_end = pair
        self.peer = Peer(client_end)
        wire = StreamWire(
            server_end,
            lambda: None,
            direct_tls=False,
            send_timeout=server.config.c2s.send_timeout,
        )
        settings = dataclasses.replace(server.c2s_settings(IP, False), tls_required=False)
        self.conn = ClientConnection(server, wire, C2SStream(settings), IP, ticket=ticket)
        self.ended = trio.Event()

    async def run(self) -> None:
        try:
            await self.conn.run()
        finally:
            self.ended.set()

    @property
    def admitted(self) -> int:
        return self.admission.count(IP)


def memory(server: Server) -> Harness:
    return Harness(server, trio.testing.memory_stream_pair())


def lockstep(server: Server) -> Harness:
    return Harness(server, trio.testing.lockstep_stream_pair())


async def test_quiet_client_is_pinged_then_dropped_without_an_answer(
    server: Server, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    h = memory(server)
    caplog.set_level(logging.INFO, logger="xmppd.c2s")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(h.run)
        await h.peer.login()
        bound_at = trio.current_time()
        assert h.admitted == 1 and server.connections == {h.conn}
        ping = await h.peer.expect(b"</iq>")
        assert b"urn:xmpp:ping" in ping and b'type="get"' in ping
        assert trio.current_time() - bound_at == pytest.approx(100.0)
        rest = await h.peer.read_to_eof()
        assert b"<connection-timeout" in rest and rest.endswith(b"</stream:stream>")
        assert trio.current_time() - bound_at == pytest.approx(120.0)
        await h.ended.wait()
    assert h.admitted == 0 and not server.connections
    assert any(
        r.getMessage().startswith("event=ping_timeout jid=alice@localhost/")
        and r.getMessage().endswith(f" ip={IP} transport=tcp")
        for r in caplog.records
    )


async def test_any_answer_to_a_ping_keeps_the_connection(
    server: Server, autojump_clock: trio.testing.MockClock
) -> None:
    h = memory(server)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(h.run)
        await h.peer.login()
        for _ in range(3):
            await h.peer.expect(b"urn:xmpp:ping")
            await h.peer.expect(b"</iq>")
            await h.peer.send(b"<presence type='unavailable'/>")  # anything counts
        assert not h.ended.is_set()
        await h.peer.stream.aclose()
        await h.ended.wait()
    assert h.admitted == 0


async def test_outbox_over_its_bound_cuts_the_slow_reader_off(
    server: Server, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    h = memory(server)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(h.run)
        await h.peer.login()
        session = h.conn.session
        assert session is not None
        stanza = b"<message to='alice@localhost'><body>" + b"x" * 8000 + b"</body></message>"
        with caplog.at_level(logging.WARNING, logger="xmppd.c2s"):
            accepted = [h.conn.enqueue(stanza) for _ in range(10)]  # 80 kB, no await
        assert accepted == [True] * 8 + [False, False]
        assert h.conn.outbox.progress.closed
        await h.ended.wait()
    line = next(r.getMessage() for r in caplog.records if "slow_reader" in r.getMessage())
    assert line.startswith("event=slow_reader_disconnected jid=alice@localhost/")
    assert f"ip={IP}" in line and line.endswith("transport=tcp")
    assert h.admitted == 0 and not server.connections


async def test_a_write_stalled_past_send_timeout_aborts(
    server: Server, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    h = lockstep(server)  # a write finishes only when the client reads it
    async with trio.open_nursery() as nursery:
        nursery.start_soon(h.run)
        await h.peer.login()
        stalled_at = trio.current_time()
        with caplog.at_level(logging.WARNING, logger="xmppd.c2s"):
            assert h.conn.enqueue(b"<message to='alice@localhost'><body>hi</body></message>")
            await h.ended.wait()  # the client reads nothing from now on
        assert trio.current_time() - stalled_at == pytest.approx(60.0)
    line = next(r.getMessage() for r in caplog.records if "send_timeout" in r.getMessage())
    assert line.startswith("event=send_timeout jid=alice@localhost/")
    assert line.endswith(f" ip={IP} transport=tcp")
    assert h.admitted == 0 and not server.connections


async def test_reader_eof_ends_the_session(
    server: Server, autojump_clock: trio.testing.MockClock
) -> None:
    h = memory(server)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(h.run)
        await h.peer.login()
        session = h.conn.session
        assert session is not None and server.router.session_for(session.jid) is session
        await h.peer.stream.send_eof()  # type: ignore[attr-defined]
        await h.ended.wait()
        assert server.router.session_for(session.jid) is None
    assert h.admitted == 0 and not server.connections


async def test_negotiation_deadline_closes_with_connection_timeout(
    server: Server, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    h = memory(server)
    caplog.set_level(logging.INFO, logger="xmppd.c2s")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(h.run)
        await h.peer.send(header(to="localhost"))  # and never authenticates
        everything = await h.peer.read_to_eof()
        assert b"<connection-timeout" in everything
        assert trio.current_time() == pytest.approx(30.0)
        await h.ended.wait()
    assert h.admitted == 0
    messages = [r.getMessage() for r in caplog.records]
    assert f"event=negotiation_timeout ip={IP} transport=tcp" in messages


async def test_close_queues_the_error_and_hangs_up(
    server: Server, autojump_clock: trio.testing.MockClock
) -> None:
    h = memory(server)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(h.run)
        await h.peer.login()
        h.conn.close("system-shutdown", "bye")
        assert not h.conn.enqueue(b"<message/>")  # closing: nothing more is taken
        rest = await h.peer.read_to_eof()
        assert b"<system-shutdown" in rest and rest.endswith(b"</stream:stream>")
        await h.ended.wait()
    assert h.admitted == 0


@pytest.mark.parametrize("when", ["before_header", "negotiating", "bound"])
async def test_admission_is_given_back_when_cancelled_from_outside(
    server: Server, autojump_clock: trio.testing.MockClock, when: str
) -> None:
    h = memory(server)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(h.run)
        if when == "negotiating":
            await h.peer.send(header(to="localhost"))
            await h.peer.expect(b"</stream:features>")
        elif when == "bound":
            await h.peer.login()
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert h.ended.is_set()
    assert h.admitted == 0 and not server.connections


async def test_admission_is_given_back_when_the_driver_crashes(
    server: Server,
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def boom(driver: C2SDriver, events: object) -> bool:
        raise RuntimeError("a bug")

    h = memory(server)
    monkeypatch.setattr(C2SDriver, "handle", boom)
    with caplog.at_level(logging.ERROR, logger="xmppd.c2s"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(h.run)
            await h.peer.send(header(to="localhost"))
            await h.ended.wait()
    assert any(
        r.getMessage() == f"event=connection_crashed ip={IP} transport=tcp" for r in caplog.records
    )
    assert h.admitted == 0 and not server.connections


# ------------------------------------------------------------- the message wire
FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
WS_OPEN = f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>"


class WsPeer:
    """An ASGI WebSocket's other end: messages in, messages out."""

    def __init__(self) -> None:
        self.to_server, self.server_inbox = trio.open_memory_channel[dict[str, object]](100)
        self.server_outbox, self.from_server = trio.open_memory_channel[dict[str, object]](100)

    async def receive(self) -> dict[str, object]:
        return await self.server_inbox.receive()

    async def send(self, message: dict[str, object]) -> None:
        await self.server_outbox.send(message)

    async def say(self, text: str) -> None:
        await self.to_server.send({"type": "websocket.receive", "text": text})

    async def expect(self, marker: str) -> list[dict[str, object]]:
        """Messages up to the first whose text holds ``marker``."""
        got = []
        while True:
            message = await self.from_server.receive()
            got.append(message)
            if marker in str(message.get("text", "")):
                return got

    async def login(self) -> None:
        await self.say(WS_OPEN)
        await self.expect("</stream:features>")
        await self.say(plain("alice", "secret").decode())
        await self.expect("<success")
        await self.say(WS_OPEN)
        await self.expect("</stream:features>")
        await self.say(BIND.decode().replace("<iq ", "<iq xmlns='jabber:client' ", 1))
        await self.expect("</iq>")


def websocket(server: Server, admission: Admission) -> tuple[WsPeer, ClientConnection]:
    peer = WsPeer()
    settings = dataclasses.replace(server.c2s_settings(IP, False), tls_required=False)
    conn = websocket_connection(
        server, settings, peer.receive, peer.send, IP, "test", admission.try_admit(IP)
    )
    return peer, conn


async def test_websocket_pings_and_closes_each_element_its_own_message(
    server: Server, autojump_clock: trio.testing.MockClock
) -> None:
    admission = Admission(per_address=4)
    peer, conn = websocket(server, admission)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.run)
        await peer.login()
        (ping,) = await peer.expect("urn:xmpp:ping")
        assert ping["type"] == "websocket.send" and "jabber:client" in str(ping["text"])
        error, close, end = [await peer.from_server.receive() for _ in range(3)]
        assert "<connection-timeout" in str(error["text"])
        assert str(close["text"]).startswith("<close ")
        assert end == {"type": "websocket.close", "code": 1000}
    assert trio.current_time() == pytest.approx(120.0)
    assert admission.count(IP) == 0 and not server.connections


async def test_websocket_message_over_the_stanza_limit_is_a_policy_violation(
    server: Server, autojump_clock: trio.testing.MockClock
) -> None:
    admission = Admission(per_address=4)
    peer, conn = websocket(server, admission)
    limit = server.config.limits.max_stanza_size
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.run)
        await peer.login()
        await peer.say(f"<message xmlns='jabber:client'><body>{'x' * limit}</body></message>")
        assert len(await peer.expect("policy-violation")) == 1  # the next message
        assert [await peer.from_server.receive() for _ in range(2)][1]["type"] == "websocket.close"
    assert admission.count(IP) == 0


async def test_websocket_disconnect_ends_the_session(
    server: Server, autojump_clock: trio.testing.MockClock
) -> None:
    admission = Admission(per_address=4)
    peer, conn = websocket(server, admission)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.run)
        await peer.login()
        session = conn.session
        assert session is not None
        await peer.to_server.send({"type": "websocket.disconnect", "code": 1001})
    assert server.router.session_for(session.jid) is None
    assert admission.count(IP) == 0 and not server.connections


async def test_a_stanza_for_a_connection_going_down_never_raises_in_its_sender(
    server: Server, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The peer vanishes while the writer lingers: while the shell's nursery winds down
    (the writer cancelled, the nursery closed, the shell not yet resumed) another
    session's stanzas keep arriving; queueing them must not raise in that sender (trio's
    "nursery is closed to new arrivals" once reached the sender's routing). The race sits
    in one scheduling batch, whose order trio shuffles: run it often enough to meet it."""

    resetting = trio.Event()

    async def reader_then_reset(self: ClientConnection) -> None:
        assert self.enqueue(b"<message xmlns='jabber:client'/>")  # the writer is started
        await trio.sleep(1)
        resetting.set()
        raise trio.BrokenResourceError("connection reset by peer")

    monkeypatch.setattr(ClientConnection, "_reader", reader_then_reset)
    for _ in range(20):
        resetting = trio.Event()
        h = memory(server)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(h.run)
            await h.peer.login()

            async def sender(h: Harness = h, resetting: trio.Event = resetting) -> None:
                await resetting.wait()
                while not h.ended.is_set():
                    h.conn.enqueue(b"<message xmlns='jabber:client'/>")
                    await trio.lowlevel.checkpoint()

            nursery.start_soon(sender)
        assert h.admitted == 0 and not server.connections
