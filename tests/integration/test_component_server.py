"""XEP-0114 against a real ``xmppd serve``: a raw-socket component and slixmpp users."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from tests.raw_client import RawClient
from tests.slix import login, run
from tests.xmppd_process import XmppdProcess, make_server, refusals, running_server
from xmppd.stream.component import handshake_digest

pytestmark = pytest.mark.integration

DOMAIN = "irc.localhost"
SECRET = "irc-s3cret"
OTHER = "web.localhost"


def header(domain: str, xmlns: str = "jabber:component:accept") -> bytes:
    return (
        f"<?xml version='1.0'?><stream:stream xmlns='{xmlns}' "
        f"xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'>"
    ).encode()


def stream_id(data: bytes) -> str:
    m = re.search(rb"<stream:stream [^>]*\bid=[\"']([^\"']+)", data)
    assert m, data
    return m.group(1).decode()


def condition(data: bytes) -> str:
    m = re.search(rb"<stream:error><([a-z-]+) xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"", data)
    assert m, data
    return m.group(1).decode()


def connect(
    server: XmppdProcess, domain: str = DOMAIN, secret: str = SECRET, source: str | None = None
) -> RawClient:
    """A component that completed the handshake (buffer cleared)."""
    raw = RawClient(server.component_port, source=source)
    raw.send(header(domain))
    data = raw.read_until(b">")
    raw.read_until(b"id=")
    data = raw.read_until(b">", timeout=5)
    raw.send(b"<handshake>%s</handshake>" % handshake_digest(stream_id(data), secret).encode())
    assert b"<handshake/>" in raw.read_until(b"<handshake/>"), raw.buffer
    raw.buffer = b""
    return raw


def wait_for(raw: RawClient, pattern: bytes, timeout: float = 5.0) -> re.Match[bytes]:
    deadline = time.monotonic() + timeout
    while True:
        m = re.search(pattern, raw.buffer, re.S)
        if m:
            return m
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{pattern!r} not received; got {raw.buffer[-800:]!r}")
        raw.sock.settimeout(remaining)
        chunk = raw.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed; got {raw.buffer[-800:]!r}")
        raw.buffer += chunk


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XmppdProcess]:
    tmp: Path = tmp_path_factory.mktemp("components")
    secret_file = tmp / "web.secret"
    secret_file.write_text("web-s3cret\n", encoding="utf-8")
    srv = make_server(
        tmp,
        components=[
            {"domain": DOMAIN, "secret": SECRET, "muc_nicks": ["IRC"]},
            {"domain": OTHER, "secret_file": str(secret_file)},
        ],
    )
    srv.add_user("alice", "secret")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_handshake_and_clean_close(server: XmppdProcess) -> None:
    raw = connect(server)
    raw.send(b"</stream:stream>")
    assert raw.read_to_close().endswith(b"</stream:stream>")
    assert f"event=component_connected domain={DOMAIN}" in server.log()
    assert SECRET not in server.log()


def test_secret_from_file(server: XmppdProcess) -> None:
    raw = connect(server, OTHER, "web-s3cret")
    raw.sock.close()


def test_wrong_secret_is_not_authorized(server: XmppdProcess) -> None:
    raw = RawClient(server.component_port)
    raw.send(header(DOMAIN))
    data = raw.read_until(b"id=")
    data = raw.read_until(b">")
    raw.send(b"<handshake>%s</handshake>" % handshake_digest(stream_id(data), "guess").encode())
    out = raw.read_to_close()
    assert condition(out) == "not-authorized"
    assert out.endswith(b"</stream:stream>")


def test_unknown_domain_is_host_unknown(server: XmppdProcess) -> None:
    raw = RawClient(server.component_port)
    raw.send(header("nope.localhost"))
    assert condition(raw.read_to_close()) == "host-unknown"


def test_client_namespace_is_invalid_namespace(server: XmppdProcess) -> None:
    raw = RawClient(server.component_port)
    raw.send(header(DOMAIN, xmlns="jabber:client"))
    assert condition(raw.read_to_close()) == "invalid-namespace"


def test_malformed_xml_is_not_well_formed(server: XmppdProcess) -> None:
    raw = connect(server)
    raw.send(b"<message from='a@irc.localhost' to='alice@localhost'><body>x</bdy></message>")
    assert condition(raw.read_to_close()) == "not-well-formed"
    # the domain is free again: a new connection is accepted
    deadline = time.monotonic() + 5
    while True:
        try:
            connect(server).sock.close()
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_second_connection_gets_conflict_first_keeps_working(server: XmppdProcess) -> None:
    first = connect(server)
    second = RawClient(server.component_port)
    second.send(header(DOMAIN))
    second.read_until(b"id=")
    data = second.read_until(b">")
    second.send(b"<handshake>%s</handshake>" % handshake_digest(stream_id(data), SECRET).encode())
    out = second.read_to_close()
    assert condition(out) == "conflict"
    assert b"<handshake/>" not in out
    # the first one is pinged (a dead one would be noticed) and still routes
    ping = wait_for(first, rb"<iq [^>]*id=\"(ping-[0-9a-f]+)\"[^>]*>")
    assert b'xmlns="jabber:component:accept"' in ping.group(0)
    first.send(b"<iq type='result' from='irc.localhost' to='localhost' id='%s'/>" % ping.group(1))
    first.send(
        b"<iq type='get' id='v1' from='bot@irc.localhost' to='localhost'>"
        b"<query xmlns='jabber:iq:version'/></iq>"
    )
    reply = wait_for(first, rb"<iq [^>]*id=\"v1\".*?</iq>").group(0)
    assert b'type="result"' in reply and b"xmppd" in reply
    first.sock.close()


def test_exchange_with_slixmpp_user(server: XmppdProcess) -> None:
    raw = connect(server)

    async def scenario() -> tuple[str, str, str]:
        alice = await login(server, "alice@localhost/desk")
        raw.send(
            b"<message from='bot@irc.localhost/relay' to='alice@localhost' type='chat'>"
            b"<body>hello &amp; welcome \xc3\xa9</body></message>"
        )
        msg = await alice.next_message()
        alice.send_message(mto="bot@irc.localhost/relay", mbody="hi bot <3", mtype="chat")
        got = await asyncio.to_thread(
            wait_for, raw, rb"<message [^>]*from=\"alice@localhost/desk\".*?</message>"
        )
        await alice.close()
        return str(msg["from"]), msg["body"], got.group(0).decode()

    sender, body, stanza = run(scenario)
    assert sender == "bot@irc.localhost/relay"
    assert body == "hello & welcome é"
    el = etree.fromstring(stanza.encode())
    assert el.tag == "{jabber:component:accept}message"
    assert el.get("to") == "bot@irc.localhost/relay"
    assert el.findtext("{jabber:component:accept}body") == "hi bot <3"
    raw.sock.close()


def test_spoofed_from_is_refused_and_not_routed(server: XmppdProcess) -> None:
    raw = connect(server)

    async def scenario() -> bool:
        alice = await login(server, "alice@localhost/spoof")
        raw.send(
            b"<message from='admin@localhost' to='alice@localhost' type='chat' id='s1'>"
            b"<body>spoof</body></message>"
        )
        err = await asyncio.to_thread(wait_for, raw, rb"<message [^>]*id=\"s1\".*?</message>")
        assert b'type="error"' in err.group(0) and b"<forbidden" in err.group(0)
        # a genuine message after it arrives, the spoofed one never did
        raw.send(
            b"<message from='bot@irc.localhost' to='alice@localhost' type='chat'>"
            b"<body>real</body></message>"
        )
        msg = await alice.next_message()
        await alice.close()
        return msg["body"] == "real"

    assert run(scenario)
    raw.sock.close()


def test_message_to_disconnected_component_bounces(server: XmppdProcess) -> None:
    async def scenario() -> tuple[str, str]:
        alice = await login(server, "alice@localhost/b")
        errors: asyncio.Queue[Any] = asyncio.Queue()
        alice.add_event_handler("message_error", errors.put_nowait)
        alice.send_message(mto=f"someone@{OTHER}", mbody="anyone?", mtype="chat")
        msg = await asyncio.wait_for(errors.get(), 5)
        await alice.close()
        return msg["type"], msg["error"]["condition"]

    assert run(scenario) == ("error", "service-unavailable")


def test_server_disco_lists_connected_component(server: XmppdProcess) -> None:
    raw = connect(server)

    async def scenario() -> set[str]:
        alice = await login(server, "alice@localhost/disco")
        items = await alice.plugin["xep_0030"].get_items(jid="localhost")
        await alice.close()
        return {item[0] for item in items["disco_items"]["items"]}

    jids = run(scenario)
    assert DOMAIN in jids
    assert OTHER not in jids
    raw.sock.close()


def test_subscription_to_a_component_contact_follows_rfc6121(server: XmppdProcess) -> None:
    """The user's roster changes (§3.1.2), the component gets a bare 'from', and its
    'subscribed' and presence come back to the user."""
    raw = connect(server)

    async def scenario() -> tuple[str, str, str, str]:
        alice = await login(server, "alice@localhost/sub")
        alice.send_presence(pto="helper@irc.localhost", ptype="subscribe")
        sub = await asyncio.to_thread(wait_for, raw, rb"<presence [^>]*type=\"subscribe\"[^>]*>")
        raw.send(
            b"<presence type='subscribed' from='helper@irc.localhost' to='alice@localhost'/>"
            b"<presence from='helper@irc.localhost/x' to='alice@localhost'><show>chat</show>"
            b"</presence>"
        )
        pres = await alice.next_presence(
            match=lambda p: p["from"].bare == "helper@irc.localhost" and p["type"] == "chat"
        )
        deadline = asyncio.get_running_loop().time() + 5
        while alice.client_roster["helper@irc.localhost"]["subscription"] != "to":
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        await alice.close()
        return (
            sub.group(0).decode(),
            alice.client_roster["helper@irc.localhost"]["subscription"],
            str(pres["from"]),
            pres["type"],
        )

    sub, subscription, sender, show = run(scenario)
    assert 'from="alice@localhost"' in sub  # the bare JID (§3.1.2)
    assert subscription == "to"
    assert (sender, show) == ("helper@irc.localhost/x", "chat")
    raw.sock.close()


def _attempt(server: XmppdProcess, secret: str) -> str:
    """One handshake with ``secret``: the stream error it ends with."""
    raw = RawClient(server.component_port)
    try:
        raw.send(header(DOMAIN))
        wait_for(raw, rb"<stream:stream [^>]*>")
        try:
            digest = handshake_digest(stream_id(raw.buffer), secret).encode()
            raw.send(b"<handshake>%s</handshake>" % digest)
        except OSError:
            pass  # refused before we could say anything: the error is already here
        return condition(raw.read_to_close())
    finally:
        raw.sock.close()


def test_connection_cap_and_failed_handshakes_are_limited_and_summarised(
    tmp_path: Path,
) -> None:
    """Unauthenticated connections are capped per address; after
    limits.auth_failures_per_minute wrong secrets an address is refused before anything
    is read; the log says so in a few lines, not one per attempt; another address (a
    real bridge) still connects (issue 13 #11)."""
    with running_server(
        tmp_path,
        components=[{"domain": DOMAIN, "secret": SECRET}],
        component_listener={"max_connections_per_ip": 4},
        limits={"auth_failures_per_minute": 10},
    ) as srv:
        idle = [RawClient(srv.component_port) for _ in range(4)]
        for raw in idle:  # each one is admitted and waits for its handshake
            raw.send(header(DOMAIN))
            wait_for(raw, rb"<stream:stream [^>]*>")
        extra = RawClient(srv.component_port)
        assert condition(extra.read_to_close()) == "policy-violation"
        for raw in idle:
            raw.sock.close()

        outcomes = Counter(_attempt(srv, "guess") for _ in range(60))
        assert outcomes == {"not-authorized": 10, "policy-violation": 50}
        during = srv.log().count("listener=component")

        bridge = connect(srv, source="127.0.0.2")  # another address is not locked out
        bridge.sock.close()
    log = srv.log()
    assert during <= 4  # first lines only: per_address, not-authorized, too_many_failures
    assert refusals(log, "component", "not-authorized") == 10
    # (the idle four may still be counted for a moment after closing: per_address then)
    late = refusals(log, "component", "per_address") - 1
    assert refusals(log, "component", "too_many_failures") + late == 50
    assert late <= 4
    assert log.count("listener=component") <= 2 * during  # plus one summary line per kind
