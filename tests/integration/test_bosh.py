"""BOSH (XEP-0124/0206) against a real ``xmppd serve``: raw HTTP bodies, a slixmpp TCP peer.

Each rule of the issue gets one test: login + room chat, repeated rid (cached answer,
message delivered once), out-of-order rids, rid far outside the window, unknown sid,
wrong namespace, a 2 MiB POST, too many requests in flight, inactivity (the room sees
the user leave), malformed XML, terminate. Each also checks that another BOSH session
on the same server is unaffected.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree

from tests.bosh_client import CLIENT, NS, Bosh, BoshError, q
from tests.raw_client import RawClient
from tests.raw_http import Http
from tests.slix import Client, login, run
from tests.xmppd_process import XmppdProcess, make_server, running_server

pytestmark = pytest.mark.integration

ROOM = "sax@conference.localhost"
INACTIVITY = 3
GAP_GRACE = 1.5
USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XmppdProcess]:
    srv = make_server(
        tmp_path_factory.mktemp("bosh"),
        bosh={"max_inactivity": INACTIVITY, "max_wait": 10, "gap_grace": GAP_GRACE},
    )
    for user in USERS:
        srv.add_user(user, "secret")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


async def chat_to(bosh: Bosh, to: str, text: str, rid: int | None = None) -> bytes:
    return bosh.body(
        f"<message xmlns='{CLIENT}' to='{to}' type='chat'><body>{text}</body></message>", rid
    )


async def bodies(client: Client, seconds: float) -> list[str]:
    """Every chat body ``client`` receives within ``seconds``."""
    got: list[str] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while (left := end - loop.time()) > 0:
        try:
            msg = await client.next_message(left)
        except TimeoutError:
            break
        if msg["body"]:
            got.append(str(msg["body"]))
    return got


async def still_works(server: XmppdProcess, witness: Bosh) -> None:
    """A bystander session answers a server ping: other sessions are unaffected."""
    await witness.send(
        f"<iq xmlns='{CLIENT}' type='get' id='alive' to='localhost'>"
        "<ping xmlns='urn:xmpp:ping'/></iq>"
    )
    iq = await witness.expect(lambda e: e.tag == q("iq") and e.get("id") == "alive")
    assert iq.get("type") == "result"


async def bystander(server: XmppdProcess) -> Bosh:
    witness = Bosh(server.http_port)
    await witness.login("grace", resource=f"w{id(witness)}")
    return witness


def room_presences(client: Client) -> asyncio.Queue[Any]:
    """Presences from the room (slixmpp routes them to muc events, not "presence")."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    client.add_event_handler(f"muc::{ROOM}::presence", queue.put_nowait)
    return queue


async def left(queue: asyncio.Queue[Any], nick: str, timeout: float = 10.0) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            pres = await queue.get()
            if pres["type"] == "unavailable" and pres["from"].resource == nick:
                return pres


def condition_of(raw: bytes) -> tuple[str | None, str | None]:
    el = etree.fromstring(raw)
    return el.get("type"), el.get("condition")


# ------------------------------------------------------------------- happy path
def test_login_room_and_chat_with_slixmpp(server: XmppdProcess) -> None:
    async def scenario() -> None:
        alice = Bosh(server.http_port)
        bob = await login(server, "bob@localhost/desk", plugins=["xep_0045"])
        try:
            created = alice.created
            assert created is None
            jid = await alice.login("alice", resource="browser")
            assert jid == "alice@localhost/browser"
            created = alice.created
            assert created is not None
            assert created.get("wait") == "5" and created.get("hold") == "1"
            assert created.get("requests") == "2" and created.get("ver") == "1.6"
            assert created.get("inactivity") == str(INACTIVITY) and created.get("maxpause")
            assert created.get("{urn:xmpp:xbosh}version") == "1.0" and created.get("authid")
            await bob.plugin["xep_0045"].join_muc_wait(ROOM, "Bob", maxstanzas=0, timeout=10)
            await alice.join(ROOM, "Alice")
            await alice.send(
                f"<message xmlns='{CLIENT}' to='{ROOM}' type='groupchat'>"
                "<body>hello over BOSH &amp; co</body></message>"
            )
            while True:
                msg = await bob.next_message(10)
                if msg["type"] == "groupchat" and msg["body"]:
                    break
            assert msg["body"] == "hello over BOSH & co"
            assert msg["from"].resource == "Alice"
            bob.send_message(mto=ROOM, mbody="hi <bosh>", mtype="groupchat")
            el = await alice.expect(
                lambda e: e.tag == q("message") and e.findtext(q("body")) == "hi <bosh>"
            )
            assert el.get("from") == f"{ROOM}/Bob" and el.get("to") == jid
            # a direct chat both ways
            bob.send_message(mto=jid, mbody="direct", mtype="chat")
            await alice.expect(lambda e: e.findtext(q("body")) == "direct")
            final = await alice.send(type="terminate")
            assert final.get("type") == "terminate"
        finally:
            await bob.close()
            await alice.aclose()

    run(scenario, 60)


def test_stanzas_sent_without_client_namespace_reach_others_unprefixed(
    server: XmppdProcess,
) -> None:
    """A BOSH client that leaves ``xmlns='jabber:client'`` off its stanzas (allowed: they
    are read as jabber:client) must not make the server relay ``<ns0:message
    xmlns:ns0='jabber:client' xmlns='…httpbind'>`` to the recipient: a TCP peer gets
    the plain ``<message xmlns='jabber:client'>`` every other sender produces."""

    async def scenario() -> bytes:
        alice = Bosh(server.http_port)
        try:
            await alice.login("alice", resource="noxmlns")
            peer = RawClient(server.port)
            try:
                await asyncio.to_thread(peer.login, "dave", "secret", "tcp")
                peer.send(b"<presence/>")
                await alice.send(
                    "<message to='dave@localhost' type='chat'><body>bare &amp; plain</body>"
                    "</message>"
                )
                return await asyncio.to_thread(peer.read_until, b"</message>", 10.0)
            finally:
                peer.close()
        finally:
            await alice.aclose()

    raw = run(scenario, 30)
    m = re.search(rb"<(\w+:)?message[ >].*?</(\w+:)?message>", raw, re.S)
    assert m is not None, raw
    stanza = m.group(0)
    assert stanza.startswith(b'<message xmlns="jabber:client"'), stanza
    assert b"ns0:" not in stanza and b"httpbind" not in stanza
    assert b"<body>bare &amp; plain</body>" in stanza


def test_get_and_other_methods(server: XmppdProcess) -> None:
    r = httpx.get(f"http://127.0.0.1:{server.http_port}/http-bind")
    assert r.status_code == 200 and b"BOSH" in r.content
    r = httpx.put(f"http://127.0.0.1:{server.http_port}/http-bind", content=b"x")
    assert r.status_code == 405 and "POST" in r.headers["allow"]


# ------------------------------------------------------------------- rid rules
def test_repeated_rid_returns_cached_response_and_delivers_once(server: XmppdProcess) -> None:
    async def scenario() -> None:
        alice = Bosh(server.http_port)
        bob = await login(server, "bob@localhost/rid", get_roster=False)
        try:
            jid = await alice.login("alice", resource="rid")
            alice.rid += 1
            data = await chat_to(alice, "bob@localhost/rid", "only once", alice.rid)
            first = await alice.post(data)
            again = await alice.post(data)  # Strophe after a reload / proxy timeout
            assert first[0] == again[0] == 200
            assert again[1] == first[1]  # byte for byte the original response
            assert condition_of(again[1]) == (None, None)
            got = await bodies(bob, 2.0)
            assert got == ["only once"]  # NOT delivered twice
            # and the session goes on
            bob.send_message(mto=jid, mbody="still here", mtype="chat")
            await alice.expect(lambda e: e.findtext(q("body")) == "still here")
        finally:
            await bob.close()
            await alice.aclose()

    run(scenario, 60)


def test_out_of_order_rids_are_processed_in_order(server: XmppdProcess) -> None:
    async def scenario() -> None:
        alice = Bosh(server.http_port)
        bob = await login(server, "bob@localhost/order", get_roster=False)
        try:
            await alice.login("alice", resource="order")
            base = alice.rid
            two = asyncio.create_task(
                alice.post(await chat_to(alice, "bob@localhost/order", "two", base + 2))
            )
            await asyncio.sleep(0.5)  # rid base+2 arrives first and must wait
            assert not two.done()
            assert await bodies(bob, 0.3) == []
            one = await alice.post(await chat_to(alice, "bob@localhost/order", "one", base + 1))
            assert one[0] == 200
            status, _ = await asyncio.wait_for(two, 15)
            assert status == 200
            alice.rid = base + 2
            assert await bodies(bob, 1.5) == ["one", "two"]
        finally:
            await bob.close()
            await alice.aclose()

    run(scenario, 60)


def test_rid_far_outside_window_is_item_not_found(server: XmppdProcess) -> None:
    async def scenario() -> None:
        alice = Bosh(server.http_port)
        witness = await bystander(server)
        try:
            await alice.login("alice", resource="far")
            status, raw = await alice.post(alice.body(rid=alice.rid + 10_000))
            assert status == 200 and condition_of(raw) == ("terminate", "item-not-found")
            # the session is gone: even the right rid now gets item-not-found
            status, raw = await alice.post(alice.body())
            assert condition_of(raw) == ("terminate", "item-not-found")
            await still_works(server, witness)
        finally:
            await alice.aclose()
            await witness.aclose()

    run(scenario, 60)


def test_unknown_sid_is_item_not_found(server: XmppdProcess) -> None:
    async def scenario() -> None:
        witness = await bystander(server)
        stranger = Bosh(server.http_port)
        try:
            stranger.sid = "no-such-session"
            status, raw = await stranger.post(stranger.body())
            assert status == 200 and condition_of(raw) == ("terminate", "item-not-found")
            stranger.sid = witness.sid[:-1] + ("A" if witness.sid[-1] != "A" else "B")
            status, raw = await stranger.post(stranger.body(rid=witness.rid + 1))
            assert condition_of(raw) == ("terminate", "item-not-found")
            await still_works(server, witness)
        finally:
            await stranger.aclose()
            await witness.aclose()

    run(scenario, 60)


def test_too_many_requests_in_flight_is_policy_violation(server: XmppdProcess) -> None:
    async def scenario() -> None:
        alice = Bosh(server.http_port)
        witness = await bystander(server)
        try:
            await alice.login("alice", resource="busy")
            base = alice.rid
            poll = asyncio.create_task(alice.post(alice.body(rid=base + 1)))
            await asyncio.sleep(0.3)
            # base+1 is held: sending base+4 says base+2 and base+3 are in flight too,
            # 4 open at once, more than requests=2 (no gap here that a lost request explains)
            status, raw = await alice.post(alice.body(rid=base + 4))
            assert status == 200 and condition_of(raw) == ("terminate", "policy-violation")
            _, held = await asyncio.wait_for(poll, 10)
            assert condition_of(held)[0] == "terminate"
            await still_works(server, witness)
        finally:
            await alice.aclose()
            await witness.aclose()

    run(scenario, 60)


# ------------------------------------------------------------------ bad input
def test_wrong_body_namespace_is_bad_request(server: XmppdProcess) -> None:
    async def scenario() -> None:
        alice = Bosh(server.http_port)
        try:
            status, raw = await alice.post(
                b"<body xmlns='urn:not:httpbind' rid='12345' to='localhost' wait='5' hold='1'/>"
            )
            assert status == 200 and condition_of(raw) == ("terminate", "bad-request")
            status, raw = await alice.post(b"not xml at all")
            assert condition_of(raw) == ("terminate", "bad-request")
            status, raw = await alice.post(
                f"<body xmlns='{NS}' to='localhost' wait='5' hold='1'/>".encode()  # no rid
            )
            assert condition_of(raw) == ("terminate", "bad-request")
            status, raw = await alice.post(
                f"<body xmlns='{NS}' rid='5' to='elsewhere.example' ver='1.6'/>".encode()
            )
            assert condition_of(raw) == ("terminate", "host-unknown")
        finally:
            await alice.aclose()

    run(scenario, 60)


def test_two_mib_post_is_refused(server: XmppdProcess) -> None:
    async def scenario() -> None:
        witness = await bystander(server)
        try:
            big = "x" * (2 * 1024 * 1024)
            data = witness.body(f"<message xmlns='{CLIENT}' to='bob@localhost'><body>{big}</body>")
            try:  # on its own connection: the server closes it after refusing
                async with httpx.AsyncClient(timeout=30) as other:
                    status = (
                        await other.post(witness.url, content=data + b"</message>")
                    ).status_code
            except httpx.TransportError:
                status = 413  # answered and closed before the body was sent: also a refusal
            assert status == 413
            await still_works(server, witness)  # the same session is untouched
        finally:
            await witness.aclose()

    run(scenario, 60)


def test_malformed_xml_inside_a_body(server: XmppdProcess) -> None:
    async def scenario() -> None:
        alice = Bosh(server.http_port)
        bob = await login(server, "bob@localhost/mal", plugins=["xep_0045"])
        witness = await bystander(server)
        try:
            await alice.login("alice", resource="mal")
            room = room_presences(bob)
            await bob.plugin["xep_0045"].join_muc_wait(ROOM, "BobM", maxstanzas=0, timeout=10)
            await alice.join(ROOM, "AliceM")
            broken = alice.body(f"<message xmlns='{CLIENT}' to='{ROOM}'><body>oops</message>")
            status, raw = await alice.post(broken)
            assert status == 200 and condition_of(raw) == ("terminate", "bad-request")
            # the session that sent it is over: the room sees Alice leave
            assert (await left(room, "AliceM"))["type"] == "unavailable"
            await still_works(server, witness)
        finally:
            await bob.close()
            await alice.aclose()
            await witness.aclose()

    run(scenario, 60)


# ------------------------------------------------------- inactivity, terminate
def test_client_that_never_polls_again_is_dropped(server: XmppdProcess) -> None:
    async def scenario() -> None:
        alice = Bosh(server.http_port)
        bob = await login(server, "bob@localhost/idle", plugins=["xep_0045"])
        witness: Bosh | None = None
        try:
            await alice.login("alice", resource="idle")
            room = room_presences(bob)
            await bob.plugin["xep_0045"].join_muc_wait(ROOM, "BobI", maxstanzas=0, timeout=10)
            await alice.join(ROOM, "AliceI")
            # the last request got its answer; alice's browser tab is gone
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            assert (await left(room, "AliceI", INACTIVITY + 10))["type"] == "unavailable"
            assert loop.time() - t0 > INACTIVITY - 1  # not before the inactivity period
            _status, raw = await alice.post(alice.body())
            assert condition_of(raw) == ("terminate", "item-not-found")
            witness = await bystander(server)  # (one made earlier would idle out too)
            await still_works(server, witness)
        finally:
            await bob.close()
            await alice.aclose()
            if witness is not None:
                await witness.aclose()

    run(scenario, 60)


def test_long_poll_keeps_session_alive_and_wait_gives_empty_body(server: XmppdProcess) -> None:
    async def scenario() -> None:
        alice = Bosh(server.http_port)
        try:
            await alice.create(wait=2)
            loop = asyncio.get_running_loop()
            for _ in range(3):  # 6 s > inactivity: held requests keep it alive
                t0 = loop.time()
                el = await alice.send()
                assert len(el) == 0 and el.get("type") is None
                assert 1.5 < loop.time() - t0 < 5
        finally:
            await alice.aclose()

    run(scenario, 60)


def test_terminate_sends_final_stanzas_and_ends_session(server: XmppdProcess) -> None:
    async def scenario() -> None:
        alice = Bosh(server.http_port)
        bob = await login(server, "bob@localhost/term", plugins=["xep_0045"])
        try:
            await alice.login("alice", resource="term")
            room = room_presences(bob)
            await bob.plugin["xep_0045"].join_muc_wait(ROOM, "BobT", maxstanzas=0, timeout=10)
            await alice.join(ROOM, "AliceT")
            final = await alice.send(
                f"<message xmlns='{CLIENT}' to='bob@localhost/term' type='chat'>"
                "<body>bye</body></message>",
                type="terminate",
            )
            assert final.get("type") == "terminate" and final.get("condition") is None
            assert (await bodies(bob, 2.0)) == ["bye"]
            assert (await left(room, "AliceT"))["type"] == "unavailable"
            with pytest.raises(BoshError):
                await alice.send()
        finally:
            await bob.close()
            await alice.aclose()

    run(scenario, 60)


def test_pause_outlasts_inactivity(server: XmppdProcess) -> None:
    async def scenario() -> None:
        alice = Bosh(server.http_port)
        try:
            created = await alice.create(wait=2)
            assert int(created.get("maxpause") or 0) >= 10
            base = alice.rid
            held = asyncio.create_task(alice.post(alice.body(rid=base + 1)))
            await asyncio.sleep(0.3)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            status, raw = await alice.post(alice.body(rid=base + 2, pause="10"))
            assert status == 200 and len(etree.fromstring(raw)) == 0
            assert (await asyncio.wait_for(held, 5))[0] == 200
            assert loop.time() - t0 < 2  # every waiting request answered at once
            await asyncio.sleep(INACTIVITY + 2)  # past inactivity, within the pause
            alice.rid = base + 2
            el = await alice.send()
            assert el.get("type") is None  # the session lived through the pause
        finally:
            await alice.aclose()

    run(scenario, 60)


def test_acks_and_report_of_a_lost_response(server: XmppdProcess) -> None:
    async def scenario() -> None:
        alice = Bosh(server.http_port)
        try:
            created = await alice.create(wait=1, ack="1")
            assert created.get("ack") == str(alice.rid)  # the creation request's rid
            lost = alice.rid + 1
            await alice.send()  # answered (empty) after wait=1; pretend it never arrived
            await asyncio.sleep(2.5)
            status, raw = await alice.post(alice.body(rid=lost + 1, ack=str(lost - 1)))
            el = etree.fromstring(raw)
            assert status == 200 and el.get("report") == str(lost)
            assert int(el.get("time") or 0) >= 2000
            status, again = await alice.post(alice.body(rid=lost))  # so the client resends
            assert status == 200 and condition_of(again) == (None, None)
        finally:
            await alice.aclose()

    run(scenario, 60)


def ping(iq_id: str) -> str:
    return (
        f"<iq xmlns='{CLIENT}' type='get' id='{iq_id}' to='localhost'>"
        "<ping xmlns='urn:xmpp:ping'/></iq>"
    )


def test_request_lost_before_it_was_sent_does_not_end_or_stall_the_session(
    server: XmppdProcess,
) -> None:
    """A reload aborts a request the browser never sent; Strophe's restored page carries
    on with the next rids. The session goes on: no policy-violation, no stall."""

    async def scenario() -> None:
        alice = Bosh(server.http_port)
        witness = await bystander(server)
        try:
            await alice.login("erin", resource="reload")
            lost = alice.rid + 1  # built by the old page, never sent
            # the restored page: its rid is held back by the gap…
            first = asyncio.create_task(alice.post(alice.body(ping("p1"), rid=lost + 1)))
            await asyncio.sleep(0.3)
            assert not first.done()
            # …and its next request shows the client has moved past the gap
            status, raw = await alice.post(alice.body(ping("p2"), rid=lost + 2))
            status1, raw1 = await asyncio.wait_for(first, 10)
            assert (status, status1) == (200, 200)
            got = [*etree.fromstring(raw1), *etree.fromstring(raw)]
            assert condition_of(raw1) == (None, None) and condition_of(raw) == (None, None)
            alice.rid = lost + 2
            alice.inbox.extend(got)
            for iq_id in ("p1", "p2"):
                iq = await alice.expect(lambda e, i=iq_id: e.tag == q("iq") and e.get("id") == i)
                assert iq.get("type") == "result"
            # a gap nobody moves past is given up after gap_grace: no stall
            lost = alice.rid + 1
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            status, raw = await alice.post(alice.body(ping("p3"), rid=lost + 1))
            waited = loop.time() - t0
            assert status == 200 and condition_of(raw) == (None, None)
            assert GAP_GRACE - 0.1 <= waited < GAP_GRACE + 2.5
            assert [e.get("id") for e in etree.fromstring(raw)] == ["p3"]
            alice.rid = lost + 1
            await still_works(server, alice)
            await still_works(server, witness)
        finally:
            await alice.aclose()
            await witness.aclose()

    run(scenario, 60)


# ----------------------------------------------------- terminal answers, deadlines
def sha1(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


@pytest.mark.parametrize("key", ["bad", None], ids=["wrong-key", "missing-key"])
def test_wrong_or_missing_key_is_answered_at_once_and_the_connection_serves_on(
    server: XmppdProcess, key: str | None
) -> None:
    """A request that ends its session gets its terminate body at once, so does the one
    still held; the connection is not held and serves the next request (issue 13 #1)."""
    k1 = "seed-key"
    k2 = sha1(k1)
    http = Http(server.http_port)

    async def scenario() -> tuple[bytes, bytes, float, bytes]:
        bosh = Bosh(server.http_port)
        try:
            await bosh.create(wait=10, newkey=sha1(k2))
            held = asyncio.create_task(bosh.post(bosh.body(rid=bosh.rid + 1, key=k2)))
            await asyncio.sleep(0.3)  # the good request is held (wait=10): nothing to say yet
            assert not held.done()
            attrs = {} if key is None else {"key": key}
            started = time.monotonic()
            bad = bosh.body(rid=bosh.rid + 2, **attrs)
            response = await asyncio.to_thread(http.exchange, "POST", "/http-bind", bad, 8.0)
            assert response.status == 200
            _status, held_raw = await asyncio.wait_for(held, 8)
            took = time.monotonic() - started
            # the same connection goes on serving: nothing was left reading or waiting on it
            assert (await asyncio.to_thread(http.exchange, "GET", "/healthz")).status == 200
            later = bosh.body(rid=bosh.rid + 3, key=k1)
            gone = await asyncio.to_thread(http.exchange, "POST", "/http-bind", later)
            return response.body, held_raw, took, gone.body
        finally:
            await bosh.aclose()

    try:
        raw, held_raw, took, gone = run(scenario, 30)
    finally:
        http.close()
    assert condition_of(raw) == ("terminate", "item-not-found")
    assert condition_of(held_raw) == ("terminate", "item-not-found")
    assert took < 5  # at once, not after 'wait' (10 s), let alone never
    assert condition_of(gone) == ("terminate", "item-not-found")  # the session is gone


def test_content_attribute_is_never_the_response_type(server: XmppdProcess) -> None:
    """``content='text/html'`` is not served as HTML, and CR/LF in it is no 500 (#14)."""

    async def scenario() -> list[tuple[int, str, list[str]]]:
        got = []
        for content in ("text/html; charset=utf-8", "text/xml&#13;&#10;x-injected: 1"):
            bosh = Bosh(server.http_port)
            try:
                body = bosh.body(rid=bosh.rid, to="localhost", wait="5", hold="1", ver="1.6")
                body = body.replace(b"<body ", f"<body content='{content}' ".encode(), 1)
                resp = await bosh.http.post(bosh.url, content=body)
                got.append((resp.status_code, resp.headers["content-type"], list(resp.headers)))
                bosh.sid = etree.fromstring(resp.content).get("sid") or ""
                bosh.rid += 1
                await bosh.post(bosh.body(rid=bosh.rid, type="terminate"))
            finally:
                await bosh.aclose()
        return got

    for status, content_type, headers in run(scenario, 30):
        assert status == 200
        assert content_type == "text/xml; charset=utf-8"
        assert "x-injected" not in headers


def test_unauthenticated_session_is_closed_at_the_negotiation_deadline(tmp_path: Path) -> None:
    """Empty polls do not keep a session that never logs in: it ends after
    ``c2s.handshake_timeout`` like TCP and WebSocket streams (#10); a bound one lives on."""
    deadline = 3
    with running_server(
        tmp_path, users=("alice",), c2s={"handshake_timeout": deadline}, bosh={"max_wait": 2}
    ) as srv:

        async def scenario() -> tuple[bytes, float]:
            idle, bound = Bosh(srv.http_port), Bosh(srv.http_port)
            try:
                await bound.login("alice", resource="bound")
                started = time.monotonic()
                await idle.create(wait=1)
                while True:  # an empty poll a second, as a client left on its login page does
                    idle.rid += 1
                    _status, raw = await idle.post(idle.body(rid=idle.rid))
                    if etree.fromstring(raw).get("type") == "terminate":
                        break
                took = time.monotonic() - started
                await still_works(srv, bound)
                return raw, took
            finally:
                await idle.aclose()
                await bound.aclose()

        raw, took = run(scenario, 30)
        assert condition_of(raw) == ("terminate", "remote-stream-error")
        assert b"connection-timeout" in raw
        assert deadline - 0.5 <= took <= deadline + 6
