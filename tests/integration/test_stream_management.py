"""XEP-0198 against a real ``xmppd serve``: slixmpp's xep_0198 over TCP, raw peers, WebSocket.

The story it checks is the seed's "duplicated/lost messages after the laptop sleeps": a
client whose connection dies gets exactly the stanzas it missed when it resumes — each
once, in order — and when it comes back too late they wait in offline storage instead.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import slixmpp

from tests.raw_client import RawClient
from tests.slix import Client, login, run
from tests.ws_client import BIND, FRAMING, SASL, WsXmpp, q
from tests.xmppd_process import XmppdProcess, make_server

pytestmark = pytest.mark.integration

SM = "urn:xmpp:sm:3"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[XmppdProcess]:
    srv = make_server(tmp_path, sm={"resume_timeout": 3})
    srv.add_user("alice", "secret")
    srv.add_user("bob", "secret")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


async def until(check: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``check`` until truthy (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.05)


def wait_log(server: XmppdProcess, needle: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while needle not in server.log():
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} not in the server log")
        time.sleep(0.05)


async def drain(client: Client, quiet: float = 1.0) -> list[slixmpp.Message]:
    """Messages until none arrived for ``quiet`` seconds."""
    out = []
    while True:
        try:
            out.append(await client.next_message(quiet))
        except TimeoutError:
            return out


async def routed(alice: Client) -> None:
    """A round trip on alice's stream: everything she sent before it was routed."""
    await alice.plugin["xep_0199"].ping("localhost", timeout=5)


def event_future(client: Client, name: str) -> asyncio.Future:
    fut = asyncio.get_running_loop().create_future()

    def done(event: object) -> None:
        if not fut.done():
            fut.set_result(event)

    client.add_event_handler(name, done, disposable=True)
    return fut


async def sm_login(server: XmppdProcess, jid: str) -> Client:
    bob = await login(server, jid, plugins=["xep_0198"])
    await until(lambda: bob.plugin["xep_0198"].sm_id, what="<enabled/>")
    return bob


def test_resume_after_abrupt_disconnect_delivers_each_missed_message_once(
    server: XmppdProcess,
) -> None:
    async def scenario() -> tuple[list[str], bool]:
        bob = await sm_login(server, "bob@localhost/laptop")
        sm = bob.plugin["xep_0198"]
        alice = await login(server, "alice@localhost/desk")
        alice.send_message(mto="bob@localhost/laptop", mbody="before", mtype="chat")
        assert (await bob.next_message())["body"] == "before"
        # acks flow both ways: the server answers bob's <r/> and releases his queue
        sm.request_ack()
        await until(lambda: not sm.unacked_queue, what="server ack")
        assert sm.last_ack > 0
        # The laptop sleeps: bob stops reading; what the server writes now is lost.
        bob.transport.pause_reading()
        for n in (1, 2, 3):
            alice.send_message(mto="bob@localhost/laptop", mbody=f"m{n}", mtype="chat")
        await routed(alice)
        bob.abort()
        await until(
            lambda: "event=session_detached jid=bob@localhost/laptop" in server.log(),
            what="detach",
        )
        for n in (4, 5, 6):  # while the session waits for its client
            alice.send_message(mto="bob@localhost", mbody=f"m{n}", mtype="chat")
        await routed(alice)
        resumed = event_future(bob, "session_resumed")
        bob.connect(host="127.0.0.1", port=server.port)
        await asyncio.wait_for(resumed, 10)
        bodies = [m["body"] for m in await drain(bob)]
        still_bound = bob.boundjid.full == "bob@localhost/laptop"
        await alice.close()
        await bob.close()
        return bodies, still_bound

    bodies, still_bound = run(scenario, timeout=60)
    assert bodies == ["m1", "m2", "m3", "m4", "m5", "m6"]
    assert still_bound
    assert re.search(r"event=sm_resumed jid=bob@localhost/laptop .* resent=\d+", server.log())


def test_resume_too_late_fails_and_messages_wait_in_offline_storage(
    server: XmppdProcess,
) -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        bob = await sm_login(server, "bob@localhost/laptop")
        alice = await login(server, "alice@localhost/desk")
        bob.transport.pause_reading()
        alice.send_message(mto="bob@localhost/laptop", mbody="unacked-1", mtype="chat")
        alice.send_message(mto="bob@localhost/laptop", mbody="unacked-2", mtype="normal")
        await routed(alice)
        bob.abort()
        await until(lambda: "event=session_detached jid=bob@localhost/laptop" in server.log())
        alice.send_message(mto="bob@localhost", mbody="while-away", mtype="chat")
        await routed(alice)
        await until(
            lambda: "event=sm_unacked_handled jid=bob@localhost/laptop rerouted=3" in server.log(),
            timeout=15,
            what="expiry (resume_timeout = 3 s)",
        )
        failed = event_future(bob, "sm_failed")
        restarted = event_future(bob, "session_start")
        bob.connect(host="127.0.0.1", port=server.port)
        await asyncio.wait_for(failed, 10)
        await asyncio.wait_for(restarted, 10)
        bob.send_presence()  # initial presence: offline messages come now
        first = [m["body"] for m in await drain(bob)]
        # a polite client acknowledges before it closes; what it never acknowledged
        # would go back to storage (possibly a duplicate, but never a loss)
        bob.plugin["xep_0198"].send_ack()
        await routed(bob)
        await bob.close()
        # and they are gone from storage: a later login gets nothing more
        again = await login(server, "bob@localhost/phone")
        second = [m["body"] for m in await drain(again)]
        await again.close()
        await alice.close()
        return first, second

    first, second = run(scenario, timeout=60)
    assert first == ["unacked-1", "unacked-2", "while-away"]
    assert second == []


# ------------------------------------------------------------------ raw peers
def auth_only(client: RawClient, user: str) -> bytes:
    """PLAIN login and restart, no bind; returns the post-auth features."""
    client.open_stream()
    token = base64.b64encode(f"\0{user}\0secret".encode())
    auth = b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
    client.send(auth + token + b"</auth>")
    client.read_until(b"<success")
    client.buffer = b""
    features = client.open_stream()
    client.buffer = b""
    return features


def enable(client: RawClient) -> str:
    client.send(b"<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
    data = client.read_until(b"<enabled")
    data = client.read_until(b"/>")
    found = re.search(rb'<enabled[^>]* id="([^"]+)"', data)
    assert found, data
    client.buffer = b""
    return found.group(1).decode()


def test_sm_is_advertised_after_auth(server: XmppdProcess) -> None:
    c = RawClient(server.port)
    try:
        before = c.open_stream()
        assert SM.encode() not in before
        c.buffer = b""
        c.close()
        c = RawClient(server.port)
        after = auth_only(c, "bob")
        assert b'<sm xmlns="urn:xmpp:sm:3"/>' in after
    finally:
        c.close()


def test_foreign_unknown_and_ended_tokens_fail_with_item_not_found(server: XmppdProcess) -> None:
    bob = RawClient(server.port)
    bob.login("bob", "secret", resource="laptop")
    token = enable(bob)
    try:
        # alice presents bob's token: it is not hers
        alice = RawClient(server.port)
        auth_only(alice, "alice")
        alice.send(f"<resume xmlns='urn:xmpp:sm:3' previd='{token}' h='0'/>".encode())
        reply = alice.read_until(b"</failed>")
        assert b"<item-not-found" in reply and b"<resumed" not in reply
        alice.buffer = b""
        # a made-up token fails the same way, and binding is still possible after it
        alice.send(
            b"<resume xmlns='urn:xmpp:sm:3' previd='AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' h='0'/>"
        )
        assert b"<item-not-found" in alice.read_until(b"</failed>")
        alice.buffer = b""
        alice.send(b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        assert b'type="result"' in alice.read_until(b"</iq>")
        alice.close()
        # bob's session was not touched
        bob.send(b"<r xmlns='urn:xmpp:sm:3'/>")
        assert b'<a xmlns="urn:xmpp:sm:3" h="0"/>' in bob.read_until(b"<a ")  # fmt: skip
        # bob ends his stream cleanly: the session is over, its token with it
        bob.send(b"</stream:stream>")
        bob.read_to_close()
    finally:
        bob.close()
    wait_log(server, "event=session_ended jid=bob@localhost/laptop")
    late = RawClient(server.port)
    try:
        auth_only(late, "bob")
        late.send(f"<resume xmlns='urn:xmpp:sm:3' previd='{token}' h='0'/>".encode())
        reply = late.read_until(b"</failed>")
        assert b"<item-not-found" in reply and b"<resumed" not in reply
    finally:
        late.close()
    assert token not in server.log()  # resume ids are secrets: never logged


def test_resume_while_old_connection_looks_alive_takes_over_with_conflict(
    server: XmppdProcess,
) -> None:
    old = RawClient(server.port)
    old.login("bob", "secret", resource="laptop")
    token = enable(old)
    new = RawClient(server.port)
    try:
        auth_only(new, "bob")
        new.send(f"<resume xmlns='urn:xmpp:sm:3' previd='{token}' h='0'/>".encode())
        reply = new.read_until(b"<resumed")
        reply = new.read_until(b"/>")
        assert f'previd="{token}"'.encode() in reply and b'h="0"' in reply
        assert b"<conflict" in old.read_to_close()
        # the resumed stream is the session: it answers acks, and a second resume by the
        # same user (the laptop sleeps again) takes over once more
        new.buffer = b""
        new.send(b"<r xmlns='urn:xmpp:sm:3'/>")
        assert b'h="0"' in new.read_until(b"<a ")
        third = RawClient(server.port)
        auth_only(third, "bob")
        third.send(f"<resume xmlns='urn:xmpp:sm:3' previd='{token}' h='0'/>".encode())
        assert b"<resumed" in third.read_until(b"<resumed")
        assert b"<conflict" in new.read_to_close()
        third.close()
    finally:
        old.close()
        new.close()


def test_ack_for_more_than_was_sent_is_a_stream_error(server: XmppdProcess) -> None:
    c = RawClient(server.port)
    try:
        c.login("bob", "secret")
        enable(c)
        c.send(b"<a xmlns='urn:xmpp:sm:3' h='7'/>")
        data = c.read_to_close()
        assert b"<undefined-condition" in data
        assert b"handled-count-too-high" in data and b'h="7"' in data
        assert b'send-count="0"' in data
    finally:
        c.close()
    # a broken peer's stream error is not a crash
    assert "connection_crashed" not in server.log()


# ------------------------------------------------------------------- WebSocket
def test_websocket_resume_gets_the_missed_stanzas_once(server: XmppdProcess) -> None:
    url = f"ws://127.0.0.1:{server.http_port}/xmpp-websocket"

    async def ws_auth(ws: WsXmpp, user: str) -> None:
        await ws.open()
        token = base64.b64encode(f"\x00{user}\x00secret".encode()).decode()
        await ws.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{token}</auth>")
        assert (await ws.recv()).tag == q(SASL, "success")
        features = await ws.open()
        assert features.find(q(SM, "sm")) is not None

    async def scenario() -> list[str]:
        bob = await WsXmpp.connect(url)
        await ws_auth(bob, "bob")
        await bob.send(
            f"<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='{BIND}'>"
            "<resource>tab</resource></bind></iq>"
        )
        assert (await bob.recv()).get("type") == "result"
        await bob.send(f"<enable xmlns='{SM}' resume='true'/>")
        enabled = await bob.recv()
        assert enabled.tag == q(SM, "enabled"), enabled
        token = enabled.get("id")
        alice = await login(server, "alice@localhost/desk")
        for n in (1, 2, 3):
            alice.send_message(mto="bob@localhost/tab", mbody=f"w{n}", mtype="chat")
        await routed(alice)
        bob.ws.transport.abort()  # the network goes away; nothing was acknowledged
        await until(lambda: "event=session_detached jid=bob@localhost/tab" in server.log())
        alice.send_message(mto="bob@localhost/tab", mbody="w4", mtype="chat")
        await routed(alice)
        again = await WsXmpp.connect(url)
        await ws_auth(again, "bob")
        await again.send(f"<resume xmlns='{SM}' previd='{token}' h='0'/>")
        resumed = await again.recv()
        assert resumed.tag == q(SM, "resumed") and resumed.get("h") == "0", resumed
        bodies = []
        while True:  # the resent stanzas, then the server's <r/>
            el = await again.recv()
            if el.tag == q(SM, "r"):
                break
            if el.tag == "{jabber:client}message":
                bodies.append(el.findtext("{jabber:client}body"))
        await again.send(f"<a xmlns='{SM}' h='{len(bodies)}'/>")
        await again.send(f"<close xmlns='{FRAMING}'/>")
        await again.close()
        await alice.close()
        return bodies

    assert run(scenario, timeout=60) == ["w1", "w2", "w3", "w4"]


def test_client_that_never_acks_is_cut_off_and_nothing_is_lost(tmp_path: Path) -> None:
    srv = make_server(tmp_path, sm={"max_unacked": 3, "request_every": 100})
    srv.add_user("alice", "secret")
    srv.add_user("bob", "secret")
    srv.start()
    try:
        bob = RawClient(srv.port)
        bob.login("bob", "secret", resource="stuck")
        enable(bob)

        async def scenario() -> list[str]:
            alice = await login(srv, "alice@localhost/desk")
            for n in range(1, 6):
                alice.send_message(mto="bob@localhost/stuck", mbody=f"s{n}", mtype="chat")
            await routed(alice)
            # The cut comes with the 4th unacked stanza; whether the 5th is still queued
            # for the session (rerouted=5) or finds it gone (rerouted=4, then offline
            # directly) depends on the machine's load. Either way none may be lost.
            await until(
                lambda: "event=sm_unacked_handled jid=bob@localhost/stuck rerouted=" in srv.log(),
                what="the session's end",
            )
            again = await login(srv, "bob@localhost/fresh")
            bodies = [m["body"] for m in await drain(again)]
            await again.close()
            await alice.close()
            return bodies

        bodies = run(scenario, timeout=60)
        assert b"<policy-violation" in bob.read_to_close()
        assert bodies == ["s1", "s2", "s3", "s4", "s5"]
    finally:
        bob.close()
        srv.stop()


def test_new_bind_of_the_same_resource_replaces_the_detached_session(
    server: XmppdProcess,
) -> None:
    old = RawClient(server.port)
    old.login("bob", "secret", resource="laptop")
    token = enable(old)
    old.sock.close()  # gone without a word
    wait_log(server, "event=session_detached jid=bob@localhost/laptop")

    async def scenario() -> list[str]:
        alice = await login(server, "alice@localhost/desk")
        alice.send_message(mto="bob@localhost/laptop", mbody="kept", mtype="chat")
        await routed(alice)
        bob = await login(server, "bob@localhost/laptop")  # binds afresh, no resume
        bodies = [m["body"] for m in await drain(bob)]
        await bob.close()
        await alice.close()
        return bodies

    assert run(scenario, timeout=60) == ["kept"]
    wait_log(server, "event=session_expired jid=bob@localhost/laptop")
    late = RawClient(server.port)
    try:
        auth_only(late, "bob")
        late.send(f"<resume xmlns='urn:xmpp:sm:3' previd='{token}' h='0'/>".encode())
        assert b"<item-not-found" in late.read_until(b"</failed>")
    finally:
        late.close()


# ------------------------------------------------------------------------ BOSH
def test_bosh_session_that_stopped_polling_is_resumed_by_a_new_one(tmp_path: Path) -> None:
    from tests.bosh_client import SASL as BOSH_SASL
    from tests.bosh_client import STREAMS, Bosh
    from tests.bosh_client import q as bq

    srv = make_server(tmp_path, bosh={"max_inactivity": 2, "max_wait": 5})
    srv.add_user("alice", "secret")
    srv.add_user("bob", "secret")
    srv.start()

    def sm_el(name: str) -> Callable[[object], bool]:
        return lambda e: e.tag == bq(name, SM)  # type: ignore[attr-defined]

    async def scenario() -> tuple[str | None, list[str]]:
        first = Bosh(srv.http_port)
        await first.login("bob", resource="web")
        await first.send(f"<enable xmlns='{SM}' resume='true'/>")
        token = (await first.expect(sm_el("enabled"))).get("id")
        alice = await login(srv, "alice@localhost/desk")
        for n in (1, 2):  # buffered for a client that no longer polls
            alice.send_message(mto="bob@localhost/web", mbody=f"b{n}", mtype="chat")
        await routed(alice)
        await first.aclose()
        await until(
            lambda: "event=session_detached jid=bob@localhost/web" in srv.log(),
            what="BOSH inactivity",
        )
        alice.send_message(mto="bob@localhost/web", mbody="b3", mtype="chat")
        await routed(alice)
        second = Bosh(srv.http_port)
        await second.create()
        await second.expect(lambda e: e.tag == bq("features", STREAMS))
        auth = base64.b64encode(b"\0bob\0secret").decode()
        await second.send(f"<auth xmlns='{BOSH_SASL}' mechanism='PLAIN'>{auth}</auth>")
        await second.expect(lambda e: e.tag == bq("success", BOSH_SASL))
        await second.send(to="localhost", xml__lang="en", xmpp__restart="true")
        features = await second.expect(lambda e: e.tag == bq("features", STREAMS))
        assert features.find(bq("sm", SM)) is not None
        await second.send(f"<resume xmlns='{SM}' previd='{token}' h='0'/>")
        resumed = await second.expect(sm_el("resumed"))
        await second.expect(sm_el("r"))  # the server asks after resending
        bodies = [
            el.findtext(bq("body")) or ""
            for el in second.inbox
            if el.tag == bq("message")  # type: ignore[attr-defined]
        ]
        await second.send(f"<a xmlns='{SM}' h='{len(bodies)}'/>", type="terminate")
        await second.aclose()
        await alice.close()
        return resumed.get("previd"), bodies

    try:
        previd, bodies = run(scenario, timeout=60)
    finally:
        srv.stop()
    assert previd and bodies == ["b1", "b2", "b3"]


def test_server_restart_keeps_a_detached_sessions_messages(server: XmppdProcess) -> None:
    bob = RawClient(server.port)
    bob.login("bob", "secret", resource="laptop")
    enable(bob)

    async def send(bodies: list[str]) -> None:
        alice = await login(server, "alice@localhost/desk")
        for body in bodies:
            alice.send_message(mto="bob@localhost/laptop", mbody=body, mtype="chat")
        await routed(alice)
        await alice.close()

    run(lambda: send(["unread"]), timeout=30)  # written to bob, never acknowledged
    bob.sock.close()
    wait_log(server, "event=session_detached jid=bob@localhost/laptop")
    run(lambda: send(["while-detached"]), timeout=30)
    server.restart()  # SIGTERM: detached sessions end before the process exits

    async def fetch() -> list[str]:
        again = await login(server, "bob@localhost/phone")
        bodies = [m["body"] for m in await drain(again)]
        await again.close()
        return bodies

    assert run(fetch, timeout=30) == ["unread", "while-detached"]
