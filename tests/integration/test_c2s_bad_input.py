"""Bad input against a real server: the offender gets the RFC's error, everyone else is fine."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from pathlib import Path

import pytest

from tests.raw_client import HEADER, RawClient
from tests.slix import login, run
from tests.xmppd_process import XmppdProcess, running_server

pytestmark = pytest.mark.integration


def _bystander_still_served(server: XmppdProcess) -> str:
    """Two fresh clients can still chat: the server survived whatever happened."""

    async def scenario() -> str:
        alice = await login(server, "alice@localhost/ok")
        bob = await login(server, "bob@localhost/ok")
        alice.send_message(mto="bob@localhost/ok", mbody="still here", mtype="chat")
        msg = await bob.next_message()
        await alice.close()
        await bob.close()
        return msg["body"]

    return run(scenario)


def _error_then_close(client: RawClient, condition: bytes) -> bytes:
    data = client.read_to_close()
    assert b"<stream:error>" in data, data[-400:]
    assert condition in data, data[-400:]
    assert data.rstrip().endswith(b"</stream:stream>"), data[-200:]
    return data


def test_malformed_xml(xmppd_server: XmppdProcess) -> None:
    c = RawClient(xmppd_server.port)
    c.login("alice", "secret")
    c.send(b"<message to='bob@localhost'><body>x</bodyy></message>")
    _error_then_close(c, b"<not-well-formed")
    assert _bystander_still_served(xmppd_server) == "still here"


def test_doctype_is_restricted_xml(xmppd_server: XmppdProcess) -> None:
    c = RawClient(xmppd_server.port)
    c.send(b"<?xml version='1.0'?><!DOCTYPE lol [<!ENTITY a 'aaaaaaaaaa'>]>" + HEADER[21:])
    data = _error_then_close(c, b"<restricted-xml")
    # RFC 6120 §4.9.1.3: a stream header precedes the error
    assert data.index(b"<stream:stream") < data.index(b"<stream:error>")


def test_entity_reference_is_restricted_xml(xmppd_server: XmppdProcess) -> None:
    c = RawClient(xmppd_server.port)
    c.login("alice", "secret")
    c.send(b"<message to='bob@localhost'><body>&xxe;</body></message>")
    _error_then_close(c, b"<restricted-xml")


def test_one_mebibyte_stanza_is_policy_violation(xmppd_server: XmppdProcess) -> None:
    c = RawClient(xmppd_server.port)
    c.login("alice", "secret")
    c.send(b"<message to='bob@localhost'><body>")
    chunk = b"A" * 65536
    try:
        for _ in range(16):
            c.send(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may hang up before we finish writing
    _error_then_close(c, b"<policy-violation")
    assert _bystander_still_served(xmppd_server) == "still here"


def test_stanza_before_auth_is_not_authorized(xmppd_server: XmppdProcess) -> None:
    c = RawClient(xmppd_server.port)
    c.open_stream()
    c.send(b"<message to='bob@localhost'><body>sneaky</body></message>")
    _error_then_close(c, b"<not-authorized")


def test_unknown_mechanism(xmppd_server: XmppdProcess) -> None:
    c = RawClient(xmppd_server.port)
    c.open_stream()
    c.send(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X-MAGIC'>=</auth>")
    data = c.read_until(b"</failure>")
    assert b"<invalid-mechanism/>" in data


def test_wrong_password_gets_not_authorized_and_is_slowed_down(xmppd_server: XmppdProcess) -> None:
    c = RawClient(xmppd_server.port)
    c.open_stream()
    durations = []
    for attempt in range(3):
        c.buffer = b""
        token = base64.b64encode(f"\0alice\0wrong{attempt}".encode())
        start = time.monotonic()
        c.send(
            b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
            + token
            + b"</auth>"
        )
        data = c.read_until(b"</failure>")
        assert b"<not-authorized/>" in data
        durations.append(time.monotonic() - start)
        # the slowdown is applied after the failure is sent: wait for it to pass
        time.sleep(0.1)
    # each further failure costs more; a right password afterwards still works on a new connection
    assert _bystander_still_served(xmppd_server) == "still here"


def test_repeated_failures_from_one_ip_are_refused(tmp_path: Path) -> None:
    with running_server(tmp_path, limits={"auth_failures_per_minute": 3}) as server:
        server.add_user("carol", "right")
        outcomes = []
        for attempt in range(5):
            c = RawClient(server.port)
            c.open_stream()
            token = base64.b64encode(f"\0carol\0bad{attempt}".encode())
            c.send(
                b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                + token
                + b"</auth>"
            )
            outcomes.append(c.read_until(b"</failure>"))
            c.close()
        assert b"<not-authorized/>" in outcomes[0]
        assert b"<temporary-auth-failure/>" in outcomes[-1]
        # even the right password is refused while the limit holds
        c = RawClient(server.port)
        c.open_stream()
        c.send(
            b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
            + base64.b64encode(b"\0carol\0right")
            + b"</auth>"
        )
        assert b"<temporary-auth-failure/>" in c.read_until(b"</failure>")


def test_silent_client_is_dropped(tmp_path: Path) -> None:
    with running_server(tmp_path, c2s={"handshake_timeout": 1.0}) as server:
        c = RawClient(server.port)
        start = time.monotonic()
        data = c.read_to_close(timeout=5)
        assert time.monotonic() - start < 4
        assert b"<connection-timeout" in data


def test_plain_refused_before_tls_when_not_loopback_exempt(tmp_path: Path) -> None:
    with running_server(tmp_path, c2s={"allow_plain_on_loopback": False}) as server:
        server.add_user("dave", "pw")
        c = RawClient(server.port)
        features = c.open_stream()
        assert b"<required/>" in features
        assert b"<mechanisms" not in features
        c.send(
            b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
            + base64.b64encode(b"\0dave\0pw")
            + b"</auth>"
        )
        assert b"<encryption-required/>" in c.read_until(b"</failure>")
        # after STARTTLS the mechanisms appear and the login works
        c2 = RawClient(server.port)
        c2.open_stream()
        c2.starttls()
        features = c2.open_stream()
        assert b"<mechanism>PLAIN</mechanism>" in features
        c2.send(
            b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
            + base64.b64encode(b"\0dave\0pw")
            + b"</auth>"
        )
        assert b"<success" in c2.read_until(b"success")


def test_client_that_never_reads_is_cut_off(tmp_path: Path) -> None:
    # a full roster must fit half the send queue: fewer contacts for this small queue
    small = {"c2s": {"send_queue_bytes": 300_000}, "roster": {"max_items": 100}}
    with running_server(tmp_path, **small) as server:
        server.add_user("alice", "secret")
        server.add_user("bob", "secret")
        server.add_user("sink", "secret")
        sink = RawClient(server.port)
        sink.login("sink", "secret", resource="never-reads")
        sink.send(b"<presence/>")
        # shrink the receive buffer so the kernel cannot absorb everything
        sink.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

        async def flood() -> str:
            alice = await login(server, "alice@localhost/f")
            bob = await login(server, "bob@localhost/f")
            payload = "x" * 8000
            for i in range(600):
                alice.send_message(mto="sink@localhost/never-reads", mbody=f"{i} {payload}")
                if i % 50 == 0:
                    await asyncio.sleep(0.01)
            alice.send_message(mto="bob@localhost/f", mbody="after the flood")
            msg = await bob.next_message(timeout=10)
            await alice.close()
            await bob.close()
            return msg["body"]

        assert run(flood, timeout=60) == "after the flood"
        deadline = time.monotonic() + 10
        while "event=slow_reader_disconnected" not in server.log():
            assert time.monotonic() < deadline, server.log()[-2000:]
            time.sleep(0.1)
        sink.close()


def test_server_pings_idle_clients_and_drops_dead_ones(tmp_path: Path) -> None:
    with running_server(
        tmp_path, c2s={"ping_interval": 1.0, "ping_timeout": 1.0, "hibernate_after": 0.5}
    ) as server:
        server.add_user("alice", "secret")
        c = RawClient(server.port)
        c.login("alice", "secret", resource="idle")
        data = c.read_until(b"urn:xmpp:ping", timeout=5)
        assert b'type="get"' in data or b"type='get'" in data
        # never answer: the server gives up after ping_timeout
        data = c.read_to_close(timeout=5)
        assert b"<connection-timeout" in data

        # a client that answers stays connected
        live = RawClient(server.port)
        live.login("alice", "secret", resource="live")
        for _ in range(2):
            got = live.read_until(b"</iq>", timeout=5)
            ping_id = got.split(b'id="', 1)[1].split(b'"', 1)[0]
            live.buffer = b""
            live.send(b"<iq type='result' to='localhost' id='" + ping_id + b"'/>")
        live.send(b"<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        assert b'id="p1"' in live.read_until(b"p1", timeout=5)


def test_connections_per_ip_are_capped(tmp_path: Path) -> None:
    with running_server(tmp_path, c2s={"max_connections_per_ip": 2}) as server:
        time.sleep(0.5)  # let the start-up probe connection be forgotten
        first, second = RawClient(server.port), RawClient(server.port)
        first.open_stream()
        second.open_stream()
        third = RawClient(server.port)
        data = third.read_to_close()
        assert b"<policy-violation" in data
        # the first two are unaffected
        first.send(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X-NONE'/>")
        assert b"<invalid-mechanism/>" in first.read_until(b"</failure>")
