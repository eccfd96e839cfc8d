"""XMPP over WebSocket (RFC 7395) against a real ``xmppd serve``, with a real WebSocket client.

A browser-like client (the ``websockets`` library) logs in, joins the MUC room and
chats with a slixmpp client on TCP; bad input gets the RFC's answer and does not
disturb another WebSocket session.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.slix import login, run
from tests.ws_client import CLIENT, FRAMING, SASL, STREAMS, WsXmpp, q, stream_error
from tests.xmppd_process import XmppdProcess, make_server

pytestmark = pytest.mark.integration

ROOM = "sax@conference.localhost"
MUC = "http://jabber.org/protocol/muc"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[XmppdProcess]:
    srv = make_server(
        tmp_path,
        http={"cors_origins": ["https://forum.example"]},
        limits={"max_stanza_size": 20_000},
        c2s={"send_queue_bytes": 300_000},
        roster={"max_items": 100},  # a full roster must fit half the smaller queue
    )
    srv.add_user("alice", "secret")
    srv.add_user("bob", "secret")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def ws_url(server: XmppdProcess) -> str:
    return f"ws://127.0.0.1:{server.http_port}/xmpp-websocket"


async def _ping(ws: WsXmpp, n: int) -> None:
    """The session still works: a server ping round trip."""
    await ws.send(
        f"<iq xmlns='jabber:client' type='get' id='p{n}' to='localhost'>"
        "<ping xmlns='urn:xmpp:ping'/></iq>"
    )
    reply = await ws.recv_until(q(CLIENT, "iq"))
    assert reply.get("id") == f"p{n}" and reply.get("type") == "result"


def test_login_join_room_and_chat_with_tcp_client(server: XmppdProcess) -> None:
    async def scenario() -> None:
        ws = await WsXmpp.connect(ws_url(server))
        jid = await ws.login("alice", "secret", "browser")
        assert jid == "alice@localhost/browser"
        assert ws.ws.subprotocol == "xmpp"
        bob = await login(server, "bob@localhost/desk", plugins=["xep_0045"])
        try:
            await bob.plugin["xep_0045"].join_muc_wait(ROOM, "Bob", maxstanzas=0, timeout=10)
            await ws.send(
                f"<presence xmlns='jabber:client' to='{ROOM}/Alice'>"
                f"<x xmlns='{MUC}'><history maxstanzas='0'/></x></presence>"
            )
            # own presence (status 110) arrives after Bob's
            while True:
                pres = await ws.recv_until(q(CLIENT, "presence"))
                if pres.get("from") == f"{ROOM}/Alice":
                    break
            await ws.send(
                f"<message xmlns='jabber:client' to='{ROOM}' type='groupchat'>"
                "<body>hello from the browser &amp; co</body></message>"
            )
            while True:
                msg = await bob.next_message(10)
                if msg["type"] == "groupchat" and msg["body"]:
                    break
            assert msg["body"] == "hello from the browser & co"
            assert msg["from"].resource == "Alice"
            bob.send_message(mto=ROOM, mbody="hi <browser>", mtype="groupchat")
            while True:
                el = await ws.recv_until(q(CLIENT, "message"))
                if el.findtext(q(CLIENT, "body")) == "hi <browser>":
                    break
            # fan-out bytes were made once for all; on the WebSocket they carry jabber:client
            assert el.get("from") == f"{ROOM}/Bob" and el.get("to") == jid
            await ws.send(f"<close xmlns='{FRAMING}'/>")
            closing = await ws.recv()
            assert closing.tag == q(FRAMING, "close")
            await asyncio.wait_for(ws.ws.wait_closed(), 5)
            assert ws.ws.close_code == 1000
        finally:
            await ws.close()
            await bob.close()

    run(scenario, timeout=60)


def test_handshake_refusals(server: XmppdProcess) -> None:
    async def scenario() -> None:
        with pytest.raises(InvalidStatus) as wrong_protocol:
            await WsXmpp.connect(ws_url(server), subprotocols=["chat"])
        assert wrong_protocol.value.response.status_code == 400
        with pytest.raises(InvalidStatus) as no_protocol:
            await WsXmpp.connect(ws_url(server), subprotocols=[])
        assert no_protocol.value.response.status_code == 400
        with pytest.raises(InvalidStatus) as bad_origin:
            await WsXmpp.connect(ws_url(server), origin="https://evil.example")
        assert bad_origin.value.response.status_code == 403
        ok = await WsXmpp.connect(ws_url(server), origin="https://forum.example")
        await ok.open()
        await ok.close()
        same = f"http://127.0.0.1:{server.http_port}"
        ok = await WsXmpp.connect(ws_url(server), origin=same)
        await ok.open()
        await ok.close()

    run(scenario, timeout=30)


BAD_FRAMES = {
    "incomplete": ("<message xmlns='jabber:client' to='bob@localhost'><body>", "not-well-formed"),
    "malformed": (
        "<message xmlns='jabber:client' to='bob@localhost'><body>x</mesage>",
        "not-well-formed",
    ),
    "not-xml": ("hello there", "not-well-formed"),
    "two-elements": (
        "<presence xmlns='jabber:client'/><presence xmlns='jabber:client'/>",
        "not-well-formed",
    ),
    "oversized": (
        "<message xmlns='jabber:client' to='bob@localhost'><body>"
        + "x" * 30_000
        + "</body></message>",
        "policy-violation",
    ),
    "entity": (
        "<message xmlns='jabber:client' to='bob@localhost'><body>&xxe;</body></message>",
        "restricted-xml",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FRAMES))
def test_bad_frame_gets_stream_error_and_others_unaffected(server: XmppdProcess, case: str) -> None:
    frame, condition = BAD_FRAMES[case]

    async def scenario() -> None:
        bystander = await WsXmpp.connect(ws_url(server))
        await bystander.login("bob", "secret", "other")
        ws = await WsXmpp.connect(ws_url(server))
        await ws.login("alice", "secret", "bad")
        await ws.send(frame)
        error = await ws.recv_until(q(STREAMS, "error"))
        assert stream_error(error) == condition
        closing = await ws.recv()
        assert closing.tag == q(FRAMING, "close")
        await asyncio.wait_for(ws.ws.wait_closed(), 5)
        with pytest.raises(ConnectionClosed):
            await ws.send("<presence xmlns='jabber:client'/>")
            await ws.recv(2)
        await _ping(bystander, 1)
        await bystander.close()

    run(scenario, timeout=30)


def test_stream_header_instead_of_open_is_refused(server: XmppdProcess) -> None:
    async def scenario() -> None:
        ws = await WsXmpp.connect(ws_url(server))
        await ws.send(
            f"<stream:stream xmlns='jabber:client' xmlns:stream='{STREAMS}' to='localhost'"
            " version='1.0'/>"
        )
        items = [await ws.recv(), await ws.recv(), await ws.recv()]
        assert items[0].tag == q(FRAMING, "open")
        assert stream_error(items[1]) == "invalid-namespace"
        assert items[2].tag == q(FRAMING, "close")

    run(scenario, timeout=20)


def test_stanzas_before_auth_and_wrong_password(server: XmppdProcess) -> None:
    async def scenario() -> None:
        ws = await WsXmpp.connect(ws_url(server))
        await ws.open()
        token = base64.b64encode(b"\x00alice\x00wrong").decode()
        await ws.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{token}</auth>")
        failure = await ws.recv()
        assert failure.tag == q(SASL, "failure")
        assert failure.find(q(SASL, "not-authorized")) is not None
        await ws.send("<message xmlns='jabber:client' to='bob@localhost'><body>x</body></message>")
        error = await ws.recv()
        assert stream_error(error) == "not-authorized"
        await ws.close()

    run(scenario, timeout=20)


def test_features_declare_stream_prefix_and_elements_stand_alone(server: XmppdProcess) -> None:
    """RFC 7395 §3.3.3: every message is a complete document with its namespaces."""

    async def scenario() -> None:
        ws = await WsXmpp.connect(ws_url(server))
        await ws.send(f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>")
        raw_open = await asyncio.wait_for(ws.ws.recv(), 5)
        raw_features = await asyncio.wait_for(ws.ws.recv(), 5)
        assert "xmlns:stream=" in raw_features
        opened = etree.fromstring(raw_open.encode())
        assert opened.get("from") == "localhost" and opened.get("version") == "1.0"
        assert opened.get("id")
        await ws.close()

    run(scenario, timeout=20)


def test_idle_ping_and_negotiation_timeout(tmp_path: Path) -> None:
    srv = make_server(tmp_path, c2s={"ping_interval": 1.0, "ping_timeout": 1.0,
                                     "handshake_timeout": 1.5})  # fmt: skip
    srv.add_user("alice", "secret")
    srv.start()
    try:

        async def scenario() -> None:
            silent = await WsXmpp.connect(ws_url(srv))
            await silent.open()  # …and never authenticates
            error = await silent.recv_until(q(STREAMS, "error"), timeout=10)
            assert stream_error(error) == "connection-timeout"
            ws = await WsXmpp.connect(ws_url(srv))
            await ws.login("alice", "secret")
            ping = await ws.recv_until(q(CLIENT, "iq"), timeout=10)
            assert ping.get("type") == "get" and ping.find("{urn:xmpp:ping}ping") is not None
            # answering keeps the session; the next unanswered ping ends it
            await ws.send(
                f"<iq xmlns='jabber:client' type='result' id='{ping.get('id')}' to='localhost'/>"
            )
            await ws.recv_until(q(CLIENT, "iq"), timeout=10)
            error = await ws.recv_until(q(STREAMS, "error"), timeout=10)
            assert stream_error(error) == "connection-timeout"

        run(scenario, timeout=40)
    finally:
        srv.stop()


def test_server_shutdown_tells_websocket_clients(tmp_path: Path) -> None:
    srv = make_server(tmp_path)
    srv.add_user("alice", "secret")
    srv.start()
    try:

        async def scenario() -> None:
            ws = await WsXmpp.connect(ws_url(srv))
            await ws.login("alice", "secret")
            stopper = asyncio.get_running_loop().run_in_executor(None, srv.stop)
            error = await ws.recv_until(q(STREAMS, "error"), timeout=10)
            assert stream_error(error) == "system-shutdown"
            assert (await ws.recv()).tag == q(FRAMING, "close")
            assert await stopper == 0

        run(scenario, timeout=40)
    finally:
        srv.stop()


def test_clients_closing_as_the_server_closes_leave_no_crash_in_the_log(
    server: XmppdProcess,
) -> None:
    """A client that answers the server's ``<close/>`` with its close frame at once (as
    browsers do) races the server's own close frame on the socket: hypercorn closing
    while our writer sends is the peer going, not a crash with a traceback at ERROR."""

    async def one(n: int) -> None:
        ws = await WsXmpp.connect(ws_url(server))
        await ws.login("alice", "secret", f"close{n}")
        await ws.send(f"<close xmlns='{FRAMING}'/>")
        try:
            await ws.recv_until(q(FRAMING, "close"))
        except ConnectionClosed:
            pass
        await ws.close()

    async def main() -> None:
        for batch in range(4):
            await asyncio.gather(*(one(10 * batch + k) for k in range(10)))

    run(main, timeout=60)
    log = server.log()
    assert "event=connection_crashed" not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
