"""Issue 13 (#5, #6, #13) against a real ``xmppd serve``: what one account can make the
server store, hold and send, and that nothing a user is owed gets lost on the way.

- #5 offline storage: a queue larger than a client's send queue arrives whole, in pages,
  on TCP, WebSocket and BOSH; with XEP-0198 a page is deleted only once acknowledged, so
  a connection cut midway leaves exactly the unacknowledged messages stored.
- #6 stream-management redelivery: detached sessions per account and resources per
  account are capped; a message fanned out to several detached sessions is stored once.
- #13 rosters: items beyond the limits are refused with the RFC 6121 §2.3.3 errors and
  a full roster still fits the send queue.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from tests.bosh_client import Bosh
from tests.bosh_client import q as bq
from tests.raw_client import RawClient
from tests.slix import run
from tests.ws_client import WsXmpp, q
from tests.xmppd_process import XmppdProcess, running_server

pytestmark = pytest.mark.integration

SM = "urn:xmpp:sm:3"
R_TAG = b'<r xmlns="urn:xmpp:sm:3"/>'
BODY = re.compile(rb"<body>(m\d{3})-")
STANZA_START = re.compile(rb"<(?:message|presence|iq)[ >]")


def until(check: Callable[[], object], timeout: float = 20.0, what: str = "") -> None:
    """Poll ``check`` until truthy (the server's state is read from its log or database)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.05)


def make_bodies(count: int, size: int) -> list[str]:
    return [f"m{n:03d}-" + "x" * size for n in range(count)]


def ids(bodies: list[str]) -> list[str]:
    return [b[:4] for b in bodies]


def fill_offline(server: XmppdProcess, to: str, bodies: list[str]) -> None:
    """alice sends ``bodies`` to ``to`` (offline); returns once all were routed."""
    alice = RawClient(server.port)
    try:
        alice.login("alice", "secret", resource="filler")
        alice.sock.settimeout(60)
        for n, body in enumerate(bodies):
            alice.send(
                f"<message to='{to}' type='chat' id='m{n}'><body>{body}</body></message>".encode()
            )
        alice.send(b"<iq type='get' id='done' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        data = alice.read_until(b'id="done"', timeout=60)
        assert b'type="error"' not in data, data[-500:]
    finally:
        alice.close()


def stored(server: XmppdProcess, owner: str = "bob@localhost") -> list[str]:
    """The ids of the messages stored for ``owner``, straight from the database."""
    db = server.database()
    try:
        return [m.decode() for xml in db.list_offline(owner) for m in BODY.findall(xml.encode())]
    finally:
        db.dispose()


def received_ids(data: bytes) -> list[str]:
    return [m.decode() for m in BODY.findall(data)]


def read_match(client: RawClient, pattern: bytes, timeout: float = 30.0) -> re.Match[bytes]:
    """Read until ``pattern`` matches the buffer (``read_until`` takes a plain marker)."""
    deadline = time.monotonic() + timeout
    regex = re.compile(pattern, re.S)
    while (found := regex.search(client.buffer)) is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{pattern!r} not received; got {client.buffer[-300:]!r}")
        client.sock.settimeout(remaining)
        chunk = client.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before {pattern!r}")
        client.buffer += chunk
    return found


def last_message(client: RawClient, last: str) -> bytes:
    """Everything up to the end of the message whose body starts with ``last``."""
    read_match(client, rb"<body>" + last.encode() + rb"-[^<]*</body>.*?</message>")
    return client.buffer


def read_page(client: RawClient) -> bytes:
    """Up to the ``<r/>`` that follows a message: one page of offline delivery."""
    read_match(client, rb"</message>(?:(?!<message).)*" + re.escape(R_TAG))
    return client.buffer


def iq_reply(client: RawClient, iq_id: str) -> etree._Element:
    found = read_match(client, rb'<iq[^>]* id="' + iq_id.encode() + rb'"(?:[^>]*/>|.*?</iq>)')
    return etree.fromstring(found.group(0))


def error_condition(el: etree._Element) -> str | None:
    if el.get("type") != "error":
        return None
    error = el.find("{jabber:client}error")
    assert error is not None
    return etree.QName(error[0]).localname


def enable_sm(client: RawClient, resume: bool = False) -> str | None:
    attr = " resume='true'" if resume else ""
    client.send(f"<enable xmlns='{SM}'{attr}/>".encode())
    data = client.read_until(b"<enabled")
    data = client.read_until(b"/>")
    found = re.search(rb'<enabled[^>]* id="([^"]+)"', data)
    client.buffer = b""
    return found.group(1).decode() if found else None


# ========================================================= #5: offline delivery
def test_offline_queue_larger_than_the_send_queue_arrives_whole_over_tcp(
    tmp_path: Path,
) -> None:
    """300 messages of 4 KB (more than the 1 MiB queue): all arrive once, none stay."""
    bodies = make_bodies(300, 4000)
    with running_server(tmp_path, users=("alice", "bob")) as server:
        fill_offline(server, "bob@localhost", bodies)
        assert stored(server) == ids(bodies)
        bob = RawClient(server.port, timeout=30)
        try:
            bob.login("bob", "secret", resource="pc")
            bob.send(b"<presence/>")
            data = last_message(bob, "m299")
        finally:
            bob.close()
        assert received_ids(data) == ids(bodies)
        until(lambda: stored(server) == [], what="the delivered messages leave storage")
        assert "slow_reader_disconnected" not in server.log()


def test_eight_large_offline_messages_arrive_over_tcp(tmp_path: Path) -> None:
    """Eight of 250 KB (2 MB in all) used to wipe the queue; two per page now."""
    bodies = make_bodies(8, 250_000)
    with running_server(tmp_path, users=("alice", "bob")) as server:
        fill_offline(server, "bob@localhost", bodies)
        bob = RawClient(server.port, timeout=30)
        try:
            bob.login("bob", "secret", resource="pc")
            bob.send(b"<presence/>")
            data = last_message(bob, "m007")
        finally:
            bob.close()
        assert received_ids(data) == ids(bodies)
        until(lambda: stored(server) == [], what="the delivered messages leave storage")


def test_cut_midway_with_sm_keeps_exactly_the_unacknowledged_messages(tmp_path: Path) -> None:
    bodies = make_bodies(300, 4000)
    # request_every=1000: the only <r/> is the one closing each page
    with running_server(tmp_path, users=("alice", "bob"), sm={"request_every": 1000}) as server:
        fill_offline(server, "bob@localhost", bodies)
        bob = RawClient(server.port, timeout=30)
        try:
            bob.login("bob", "secret", resource="phone")
            enable_sm(bob)
            bob.send(b"<presence/>")
            first = read_page(bob)
            page1 = received_ids(first)
            assert 0 < len(page1) < len(bodies) and page1 == ids(bodies)[: len(page1)]
            # nothing is deleted before the client acknowledges it
            assert stored(server) == ids(bodies)
            handled = len(STANZA_START.findall(first))
            bob.buffer = b""
            bob.send(f"<a xmlns='{SM}' h='{handled}'/>".encode())
            second = read_page(bob)
            page2 = received_ids(second)
            assert page1 + page2 == ids(bodies)[: len(page1) + len(page2)] and page2
            until(lambda: stored(server) == ids(bodies)[len(page1) :], what="page 1 deleted")
        finally:
            bob.sock.close()  # the second page is never acknowledged
        until(lambda: "event=session_ended jid=bob@localhost/phone" in server.log())
        # the unacknowledged page is still stored once: not handed on a second time
        assert stored(server) == ids(bodies)[len(page1) :]
        again = RawClient(server.port, timeout=30)
        try:
            again.login("bob", "secret", resource="laptop")
            again.send(b"<presence/>")
            rest = last_message(again, "m299")
        finally:
            again.close()
        assert received_ids(rest) == ids(bodies)[len(page1) :]
        until(lambda: stored(server) == [], what="the delivered messages leave storage")


def test_offline_queue_arrives_whole_over_websocket(tmp_path: Path) -> None:
    bodies = make_bodies(300, 4000)
    with running_server(tmp_path, users=("alice", "bob")) as server:
        fill_offline(server, "bob@localhost", bodies)

        async def scenario() -> list[str]:
            bob = await WsXmpp.connect(f"ws://127.0.0.1:{server.http_port}/xmpp-websocket")
            await bob.login("bob", "secret", resource="tab")
            await bob.send("<presence xmlns='jabber:client'/>")
            got: list[str] = []
            while len(got) < len(bodies):
                el = await bob.recv(timeout=30)
                if el.tag == q("jabber:client", "message"):
                    got.append((el.findtext(q("jabber:client", "body")) or "")[:4])
            await bob.close()
            return got

        assert run(scenario, timeout=90) == ids(bodies)
        until(lambda: stored(server) == [], what="the delivered messages leave storage")


def test_offline_queue_arrives_whole_over_bosh(tmp_path: Path) -> None:
    bodies = make_bodies(300, 4000)
    with running_server(tmp_path, users=("alice", "bob")) as server:
        fill_offline(server, "bob@localhost", bodies)

        async def scenario() -> list[str]:
            bob = Bosh(server.http_port)
            await bob.login("bob", resource="web")
            await bob.send("<presence xmlns='jabber:client'/>")
            got: list[str] = []
            while len(got) < len(bodies):
                for el in bob.inbox:
                    if el.tag == bq("message"):
                        got.append((el.findtext(bq("body")) or "")[:4])
                bob.inbox.clear()
                if len(got) < len(bodies):
                    await bob.send()
            await bob.send(type="terminate")
            await bob.aclose()
            return got

        assert run(scenario, timeout=90) == ids(bodies)
        until(lambda: stored(server) == [], what="the delivered messages leave storage")
        assert "slow_reader_disconnected" not in server.log()


# ===================================================== #6: detached sessions
def detach(server: XmppdProcess, resource: str) -> str:
    """A resumable, available session of bob whose connection then drops; its token."""
    client = RawClient(server.port)
    client.login("bob", "secret", resource=resource)
    token = enable_sm(client, resume=True)
    assert token
    client.send(b"<presence/>")
    client.read_until(b"<presence")
    client.sock.close()
    until(
        lambda: f"event=session_detached jid=bob@localhost/{resource} " in server.log(),
        what=f"{resource} detached",
    )
    return token


def rerouted(log: str) -> int:
    return sum(int(n) for n in re.findall(r"event=sm_unacked_handled jid=\S+ rerouted=(\d+)", log))


def test_fifty_detached_sessions_store_each_message_once(tmp_path: Path) -> None:
    """The cascade: 50 detached sessions each holding every message used to re-route it
    into each other and store up to 50 copies; now 4 wait at most and one stores it."""
    with running_server(tmp_path, users=("alice", "bob"), sm={"resume_timeout": 4}) as server:
        for n in range(50):
            detach(server, f"r{n:02d}")
        log = server.log()
        assert log.count("event=session_evicted jid=bob@localhost/") == 46
        assert "reason=sm.max_detached" in log
        bodies = make_bodies(20, 100)
        started = time.monotonic()
        fill_offline(server, "bob@localhost", bodies)  # bob's detached sessions take them
        for n in range(46, 50):
            until(
                lambda n=n: f"event=session_ended jid=bob@localhost/r{n:02d}" in server.log(),
                what=f"r{n:02d} expired",
            )
        until(lambda: len(stored(server)) >= 20, what="the messages are stored")
        elapsed = time.monotonic() - started
        assert stored(server) == ids(bodies)  # once each, in order
        assert rerouted(server.log()) == 20
        assert elapsed < 30


def test_binding_past_the_resource_limit(tmp_path: Path) -> None:
    """The oldest detached session makes room; with none detached: resource-constraint."""
    overrides = {"limits": {"max_resources": 3}, "sm": {"max_detached": 2}}
    with running_server(tmp_path, users=("alice", "bob"), **overrides) as server:
        live = [RawClient(server.port) for _ in range(3)]
        try:
            live[0].login("bob", "secret", resource="live0")
            token = detach(server, "gone")
            live[1].login("bob", "secret", resource="live1")
            # three bound (one detached): a fourth ends the detached one
            live[2].login("bob", "secret", resource="live2")
            until(lambda: "event=session_evicted jid=bob@localhost/gone" in server.log())
            assert "reason=limits.max_resources" in server.log()
            # three live resources: the next bind is refused, and the stream stays usable
            extra = RawClient(server.port)
            try:
                extra.open_stream()
                token_b64 = base64.b64encode(b"\0bob\0secret")
                extra.send(
                    b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                    + token_b64
                    + b"</auth>"
                )
                extra.read_until(b"<success")
                extra.buffer = b""
                extra.open_stream()
                extra.buffer = b""
                extra.send(
                    b"<iq type='set' id='b2'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                    b"<resource>extra</resource></bind></iq>"
                )
                el = iq_reply(extra, "b2")
                assert error_condition(el) == "resource-constraint"
                error = el.find("{jabber:client}error")
                assert error is not None and error.get("type") == "wait"
                # a resume of the evicted session fails; the account's live ones are intact
                extra.buffer = b""
                extra.send(f"<resume xmlns='{SM}' previd='{token}' h='0'/>".encode())
                assert b"<item-not-found" in extra.read_until(b"</failed>")
            finally:
                extra.close()
            live[0].send(b"<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
            assert iq_reply(live[0], "p").get("type") == "result"
        finally:
            for client in live:
                client.close()


def test_detached_sessions_per_account_are_capped(tmp_path: Path) -> None:
    with running_server(tmp_path, users=("alice", "bob"), sm={"max_detached": 2}) as server:
        first = detach(server, "d1")
        detach(server, "d2")
        detach(server, "d3")  # a third one ends the one detached longest
        until(
            lambda: (
                "event=session_evicted jid=bob@localhost/d1 reason=sm.max_detached" in server.log()
            )
        )
        assert "event=session_evicted jid=bob@localhost/d2" not in server.log()
        late = RawClient(server.port)
        try:
            late.open_stream()
            late.send(
                b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                + base64.b64encode(b"\0bob\0secret")
                + b"</auth>"
            )
            late.read_until(b"<success")
            late.buffer = b""
            late.open_stream()
            late.buffer = b""
            late.send(f"<resume xmlns='{SM}' previd='{first}' h='0'/>".encode())
            assert b"<item-not-found" in late.read_until(b"</failed>")
        finally:
            late.close()


# ============================================================== #13: rosters
ROSTER_SERVER = {
    "c2s": {"send_queue_bytes": 262_144},
    "bosh": {"max_buffer_bytes": 262_144},
    "roster": {"max_items": 100},
}


def roster_set(n: int, item: str) -> bytes:
    return (
        f"<iq type='set' id='s{n}'><query xmlns='jabber:iq:roster'>{item}</query></iq>"
    ).encode()


def test_roster_limits_and_a_full_roster_fetch(tmp_path: Path) -> None:
    """100 items of about 1 KB fill the roster; the 101st, an item with too many or too
    long groups or names, are refused; the whole roster still arrives in one result."""
    groups = "".join(f"<group>{g}{'g' * 60}</group>" for g in "abcdef")
    with running_server(tmp_path, users=("bob",), **ROSTER_SERVER) as server:
        bob = RawClient(server.port, timeout=30)
        try:
            bob.login("bob", "secret", resource="pc")
            for n in range(100):
                name = f"{n:03d}" + "n" * 250
                bob.send(roster_set(n, f"<item jid='c{n}@localhost' name='{name}'>{groups}</item>"))
            bob.send(roster_set(100, "<item jid='c100@localhost'/>"))
            many = "".join(f"<group>g{n}</group>" for n in range(17))
            bob.send(roster_set(101, f"<item jid='c0@localhost'>{many}</item>"))
            bob.send(roster_set(102, f"<item jid='c0@localhost'><group>{'g' * 65}</group></item>"))
            bob.send(roster_set(103, f"<item jid='c0@localhost' name='{'n' * 257}'/>"))
            replies = [iq_reply(bob, f"s{n}") for n in range(104)]
            assert [error_condition(el) for el in replies[:100]] == [None] * 100
            assert error_condition(replies[100]) == "not-allowed"
            assert [error_condition(el) for el in replies[101:]] == ["not-acceptable"] * 3
            bob.buffer = b""
            bob.send(b"<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>")
            roster = iq_reply(bob, "r1")
            size = len(bob.buffer)
            bob.send(b"<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
            assert iq_reply(bob, "p").get("type") == "result"  # still connected
        finally:
            bob.close()
        assert len(roster.findall(".//{jabber:iq:roster}item")) == 100 and size > 75_000
        assert "slow_reader_disconnected" not in server.log()
