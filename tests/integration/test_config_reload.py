"""Reloading the configuration of a running ``xmppd serve`` (SIGHUP; ``xmppd reload`` calls
the same ``Server.reload``): what applies at once and to whom, what needs a restart, and
what is refused. Connections made before a reload are checked to keep working.

Certificates are made here (``write_pair``): each has its own common name, so the name a
client sees in its handshake tells which pair the server used.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from cryptography import x509
from cryptography.x509.oid import NameOID
from lxml import etree

from tests.certs import write_pair
from tests.raw_client import RawClient
from tests.raw_http import Http
from tests.slix import run
from tests.ws_client import SASL, WsXmpp, q
from tests.xmppd_process import XmppdProcess, free_port, make_server, running_server
from xmppd.stream.component import handshake_digest

pytestmark = pytest.mark.integration

MUC = "http://jabber.org/protocol/muc"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
LISTED = "https://forum.example"


# ----------------------------------------------------------------------- helpers
def _client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the name is what the test reads, not trust
    return ctx


def common_name(sock: Any) -> str:
    """The CN of the certificate the server presented on ``sock``."""
    der = sock.getpeercert(binary_form=True)
    cert = x509.load_der_x509_certificate(der)
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def direct_tls(srv: XmppdProcess) -> RawClient:
    raw = RawClient(srv.tls_port)
    raw.sock = _client_tls().wrap_socket(raw.sock, server_hostname="localhost")
    return raw


def starttls(srv: XmppdProcess) -> RawClient:
    raw = RawClient(srv.port)
    raw.open_stream()
    raw.starttls()
    return raw


def https(srv: XmppdProcess) -> Http:
    http = Http(srv.https_port)
    http.sock = _client_tls().wrap_socket(http.sock, server_hostname="localhost")
    return http


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


def iq(raw: RawClient, xml: str, iq_id: str) -> etree._Element:
    """Send an iq and return the answer with the same id."""
    raw.send(xml.encode())
    m = wait_for(raw, rb'<iq [^>]*id="' + iq_id.encode() + rb'"[^>]*?(/>|>.*?</iq>)')
    return etree.fromstring(m.group(0))


def ping(raw: RawClient, iq_id: str = "ping") -> str:
    """An XEP-0199 ping to the server over ``raw``: the answer's type."""
    answer = iq(
        raw, f"<iq type='get' id='{iq_id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>", iq_id
    )
    return str(answer.get("type"))


def disco_info(raw: RawClient, room: str, iq_id: str) -> etree._Element:
    to = f"{room}@conference.localhost"
    return iq(
        raw, f"<iq type='get' id='{iq_id}' to='{to}'><query xmlns='{DISCO_INFO}'/></iq>", iq_id
    )


def login(srv: XmppdProcess, user: str = "alice", resource: str = "raw", **kw: Any) -> RawClient:
    raw = RawClient(srv.port, **kw)
    raw.login(f"{user}", "secret", resource)
    return raw


# component helpers (XEP-0114 on a raw socket)
def component_header(domain: str) -> bytes:
    return (
        "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
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


def component_started(srv: XmppdProcess, domain: str) -> RawClient:
    """A component connection that sent its header and got the server's (with its id)."""
    raw = RawClient(srv.component_port)
    raw.send(component_header(domain))
    wait_for(raw, rb"<stream:stream [^>]*>")
    return raw


def handshake(raw: RawClient, secret: str) -> bytes:
    digest = handshake_digest(stream_id(raw.buffer), secret).encode()
    raw.send(b"<handshake>%s</handshake>" % digest)
    return wait_for(raw, rb"<handshake/>|</stream:stream>").group(0)


def component(srv: XmppdProcess, domain: str, secret: str) -> RawClient:
    """A component that completed its handshake (buffer cleared)."""
    raw = component_started(srv, domain)
    assert handshake(raw, secret) == b"<handshake/>", raw.buffer
    raw.buffer = b""
    return raw


def refused_with(srv: XmppdProcess, domain: str, secret: str) -> str:
    """The stream error a new component connection for ``domain`` ends with."""
    raw = component_started(srv, domain)
    try:
        try:
            digest = handshake_digest(stream_id(raw.buffer), secret).encode()
            raw.send(b"<handshake>%s</handshake>" % digest)
        except OSError:
            pass  # refused at the header: the error is already here
        return condition(raw.read_to_close())
    finally:
        raw.close()


# ----------------------------------------------------------------------- TLS
@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """Certificate and key files where an ACME client would renew them in place."""
    live = tmp_path / "live"
    live.mkdir()
    cert, key = live / "fullchain.pem", live / "privkey.pem"
    write_pair(cert, key, "before.example")
    return cert, key


def test_a_renewed_certificate_is_what_new_handshakes_see_on_every_tls_port(
    tmp_path: Path, pair: tuple[Path, Path]
) -> None:
    """5223 (direct TLS), 5222 (STARTTLS) and the HTTPS port all present the renewed pair
    after a reload; connections made before keep working on the pair they had."""
    cert, key = pair
    with running_server(
        tmp_path, users=("alice",), tls={"cert": str(cert), "key": str(key)}
    ) as srv:
        old_direct = direct_tls(srv)
        old_direct.login("alice", "secret", "direct")
        old_starttls = starttls(srv)
        old_starttls.login("alice", "secret", "starttls")
        old_https = https(srv)
        assert old_https.exchange("GET", "/healthz").status == 200
        for sock in (old_direct.sock, old_starttls.sock, old_https.sock):
            assert common_name(sock) == "before.example"

        write_pair(cert, key, "after.example")  # renewed under the same names
        line = srv.reload()
        assert "event=reload_done" in line and "applied=tls.certificate" in line, line
        assert "subject='CN=after.example'" in srv.log()

        new_direct = direct_tls(srv)
        new_starttls = starttls(srv)
        new_https = https(srv)
        assert common_name(new_direct.sock) == "after.example"
        assert common_name(new_starttls.sock) == "after.example"
        assert common_name(new_https.sock) == "after.example"
        new_direct.login("alice", "secret", "direct2")
        assert ping(new_direct) == "result"
        assert new_https.exchange("GET", "/healthz").status == 200

        assert ping(old_direct) == "result"
        assert ping(old_starttls) == "result"
        assert old_https.exchange("GET", "/healthz").status == 200
        for c in (old_direct, old_starttls, new_direct, new_starttls):
            c.close()
        old_https.close()
        new_https.close()


def test_a_pair_that_does_not_load_is_refused_and_the_old_one_stays(
    tmp_path: Path, pair: tuple[Path, Path]
) -> None:
    """A certificate renewed without its key (the key file still holds the old key) is
    refused naming tls.key; handshakes keep the pair in force; logins still work."""
    cert, key = pair
    with running_server(
        tmp_path, users=("alice",), tls={"cert": str(cert), "key": str(key)}
    ) as srv:
        write_pair(cert, tmp_path / "live" / "newkey.pem", "mismatch.example")
        line = srv.reload()
        assert "event=reload_refused" in line and "tls.key:" in line, line
        assert "is not the key of the certificate" in line

        srv.edit_config(lambda d: d["tls"].update(key=str(tmp_path / "nowhere.pem")))
        line = srv.reload()
        assert "event=reload_refused" in line and "tls.key: cannot read" in line, line

        raw = direct_tls(srv)
        assert common_name(raw.sock) == "before.example"
        raw.login("alice", "secret")
        assert ping(raw) == "result"
        raw.close()
        http = https(srv)
        assert common_name(http.sock) == "before.example"
        http.close()


# ----------------------------------------------------------------------- log level
def test_a_log_level_change_takes_effect(tmp_path: Path) -> None:
    with running_server(tmp_path, users=("alice",)) as srv:
        login(srv, resource="a").close()
        assert "event=authenticated user=alice" in srv.log()

        srv.edit_config(lambda d: d["server"].update(log_level="WARNING"))
        line = srv.reload()  # said at the more verbose of the two levels
        assert "applied=server.log_level" in line, line
        quiet = len(srv.log())
        raw = login(srv, resource="b")
        assert ping(raw) == "result"
        raw.close()
        assert "event=authenticated" not in srv.log()[quiet:]

        srv.edit_config(lambda d: d["server"].update(log_level="DEBUG"))
        assert "applied=server.log_level" in srv.reload()
        loud = len(srv.log())
        login(srv, resource="c").close()
        assert "event=authenticated user=alice" in srv.log()[loud:]


# ----------------------------------------------------------------------- limits
def test_a_lowered_per_ip_cap_applies_to_new_connections_only(tmp_path: Path) -> None:
    source = "127.0.0.3"
    with running_server(tmp_path, users=("alice",), c2s={"max_connections_per_ip": 4}) as srv:
        old = [login(srv, resource=f"r{i}", source=source) for i in range(3)]

        srv.edit_config(lambda d: d["c2s"].update(max_connections_per_ip=2))
        line = srv.reload()
        assert "applied=c2s.max_connections_per_ip" in line, line
        assert "key=c2s.max_connections_per_ip change='4 -> 2'" in srv.log()

        for i, raw in enumerate(old):  # three above the new cap, all still served
            assert ping(raw, f"p{i}") == "result"
        extra = RawClient(srv.port, source=source)
        assert b"<policy-violation" in extra.read_to_close()
        other = login(srv, resource="elsewhere", source="127.0.0.4")  # another address
        assert ping(other) == "result"

        srv.edit_config(lambda d: d["c2s"].update(max_connections_per_ip=10))
        srv.reload()
        again = login(srv, resource="again", source=source)
        assert ping(again) == "result"
        for raw in [*old, other, again]:
            raw.close()


# ----------------------------------------------------------------------- rooms
def test_rooms_added_and_changed_by_a_reload(tmp_path: Path) -> None:
    """A new [[muc.rooms]] entry is a room at once; a changed one has its new settings,
    its occupants stay (and are told, status 104)."""
    rooms = [{"name": "sax", "title": "Sax"}]
    with running_server(tmp_path, users=("alice",), muc={"rooms": rooms}) as srv:
        raw = login(srv)
        raw.send(
            f"<presence to='sax@conference.localhost/Alice'><x xmlns='{MUC}'/></presence>".encode()
        )
        wait_for(raw, rb'<status code="110"/>')
        assert disco_info(raw, "lobby", "l1").get("type") == "error"

        srv.edit_config(
            lambda d: d["muc"].update(
                rooms=[
                    {"name": "sax", "title": "Sax lounge", "moderated": True},
                    {"name": "lobby", "title": "Lobby"},
                ]
            )
        )
        line = srv.reload()
        assert "applied=muc.rooms" in line, line
        assert "key=muc.rooms change='added lobby; reconfigured sax'" in srv.log()

        wait_for(raw, rb'<status code="104"/>')
        raw.send(
            b"<message to='sax@conference.localhost' type='groupchat'>"
            b"<body>still here</body></message>"
        )
        wait_for(raw, rb"<body>still here</body>")  # still an occupant, still has voice

        info = disco_info(raw, "sax", "s1")
        identity = info.find(f".//{{{DISCO_INFO}}}identity")
        assert identity is not None and identity.get("name") == "Sax lounge"
        features = {f.get("var") for f in info.iter(f"{{{DISCO_INFO}}}feature")}
        assert "muc_moderated" in features
        lobby = disco_info(raw, "lobby", "l2")
        assert lobby.get("type") == "result"
        lobby_identity = lobby.find(f".//{{{DISCO_INFO}}}identity")
        assert lobby_identity is not None and lobby_identity.get("name") == "Lobby"
        raw.close()


# ----------------------------------------------------------------------- components
def test_components_removed_rekeyed_and_added(tmp_path: Path) -> None:
    """Removed: cut (host-gone), its room occupant leaves, refused afterwards; re-keyed:
    cut (reset), the old secret refused, the new one accepted; added: accepted."""
    comps = [
        {"domain": "irc.localhost", "secret": "irc-1", "muc_nicks": ["IRC"]},
        {"domain": "web.localhost", "secret": "web-1"},
    ]
    with running_server(tmp_path, users=("alice",), components=comps) as srv:
        alice = login(srv)
        alice.send(
            f"<presence to='sax@conference.localhost/alice'><x xmlns='{MUC}'/></presence>".encode()
        )
        wait_for(alice, rb'<status code="110"/>')
        irc = component(srv, "irc.localhost", "irc-1")
        irc.send(
            b"<presence from='bot@irc.localhost/relay' to='sax@conference.localhost/IRC'>"
            + f"<x xmlns='{MUC}'/></presence>".encode()
        )
        wait_for(irc, rb'<status code="110"/>')
        wait_for(alice, rb'<presence [^>]*from="sax@conference.localhost/IRC"')
        alice.buffer = b""
        web = component(srv, "web.localhost", "web-1")
        racer = component_started(srv, "web.localhost")  # handshake still to come

        srv.edit_config(
            lambda d: d.update(
                components=[
                    {"domain": "web.localhost", "secret": "web-2"},
                    {"domain": "new.localhost", "secret": "new-1"},
                ]
            )
        )
        line = srv.reload()
        assert "applied=components" in line, line
        assert (
            "key=components change='added new.localhost; removed irc.localhost; "
            "re-keyed web.localhost'" in srv.log()
        )
        assert "web-2" not in srv.log() and "web-1" not in srv.log()  # no secret logged

        assert condition(irc.read_to_close()) == "host-gone"  # removed: cut
        wait_for(alice, rb'<presence [^>]*from="sax@conference.localhost/IRC"[^>]*unavailable')
        assert condition(web.read_to_close()) == "reset"  # re-keyed: must reconnect
        # a handshake begun before the change proves the old secret: not any more
        assert handshake(racer, "web-1") == b"</stream:stream>"
        assert condition(racer.buffer) == "not-authorized"
        racer.close()

        assert refused_with(srv, "irc.localhost", "irc-1") == "host-unknown"
        assert refused_with(srv, "web.localhost", "web-1") == "not-authorized"
        web2 = component(srv, "web.localhost", "web-2")
        new = component(srv, "new.localhost", "new-1")
        for raw in (alice, irc, web, web2, new):
            raw.close()


def test_the_first_component_added_by_a_reload_can_connect(tmp_path: Path) -> None:
    """With no [[components]] at start nothing listens; a reload that adds one binds the
    component listener."""
    with running_server(tmp_path) as srv:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", srv.component_port), timeout=2).close()
        srv.edit_config(lambda d: d.update(components=[{"domain": "irc.localhost", "secret": "s"}]))
        assert "applied=components" in srv.reload()
        component(srv, "irc.localhost", "s").close()


# ----------------------------------------------------------------------- HTTP
async def _mechanisms(srv: XmppdProcess, headers: dict[str, str]) -> list[str]:
    ws = await WsXmpp.connect(f"ws://127.0.0.1:{srv.http_port}/xmpp-websocket", headers=headers)
    try:
        features = await ws.open()
        return [m.text or "" for m in features.iter(q(SASL, "mechanism"))]
    finally:
        await ws.close()


def test_cors_origins_and_trusted_proxies_apply_to_the_next_request(tmp_path: Path) -> None:
    proxy = "127.0.0.5"
    with running_server(tmp_path, c2s={"max_connections_per_ip": 2}) as srv:
        forwarded = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
        held = [Http(srv.http_port, source=proxy) for _ in range(2)]
        for http in held:
            assert http.exchange("GET", "/healthz").status == 200
        with httpx.Client(base_url=f"http://127.0.0.1:{srv.http_port}") as client:
            preflight = client.options("/http-bind", headers={"Origin": LISTED})
            assert preflight.status_code == 403
            # forwarding headers from an untrusted peer: no HTTPS, no SASL on plain HTTP
            assert run(lambda: _mechanisms(srv, forwarded)) == []
            assert Http(srv.http_port, source=proxy).exchange("GET", "/healthz").status == 429

            srv.edit_config(
                lambda d: d["http"].update(
                    cors_origins=[LISTED], trusted_proxies=["127.0.0.1", proxy]
                )
            )
            line = srv.reload()
            assert "applied=http.cors_origins,http.trusted_proxies" in line, line

            preflight = client.options("/http-bind", headers={"Origin": LISTED})
            assert preflight.status_code == 204
            assert preflight.headers["access-control-allow-origin"] == LISTED
        # the proxy's word is taken now: the client used HTTPS, SASL is offered
        assert "PLAIN" in run(lambda: _mechanisms(srv, forwarded))
        # and a trusted proxy's connections count against the total only
        third = Http(srv.http_port, source=proxy)
        assert third.exchange("GET", "/healthz").status == 200
        for http in [*held, third]:
            http.close()


# ----------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: d["c2s"].update(port="lots"), "c2s.port: expected a number, got 'lots'"),
        (
            lambda d: d["c2s"].update(max_conections_per_ip=1),
            "c2s.max_conections_per_ip: unknown key (did you mean max_connections_per_ip?)",
        ),
        (
            lambda d: d.setdefault("limits", {}).update(ipv6_prefix=7),
            "limits.ipv6_prefix: must be between",
        ),
    ],
    ids=["bad type", "unknown key", "impossible value"],
)
def test_an_invalid_configuration_is_refused_and_the_old_one_keeps_running(
    tmp_path: Path, change: Any, named: str
) -> None:
    with running_server(tmp_path, users=("alice",), c2s={"max_connections_per_ip": 4}) as srv:
        before = login(srv, resource="before")

        def edit(d: dict[str, Any]) -> None:  # valid live changes next to the broken one
            d["server"]["log_level"] = "WARNING"
            d["c2s"]["max_connections_per_ip"] = 1
            change(d)

        srv.edit_config(edit)
        line = srv.reload()
        assert "event=reload_refused" in line and named in line, line
        assert "level=ERROR" in srv.log()

        # the old values hold: INFO still logs logins, 4 connections per address still pass
        after = len(srv.log())
        clients = [login(srv, resource=f"after{i}") for i in range(2)]
        assert all(ping(raw) == "result" for raw in clients)
        assert srv.log()[after:].count("event=authenticated user=alice") == 2
        assert ping(before) == "result"
        for raw in [before, *clients]:
            raw.close()


def test_a_changed_port_needs_a_restart_and_is_not_applied(tmp_path: Path) -> None:
    with running_server(tmp_path, users=("alice",)) as srv:
        new_port = free_port()
        srv.edit_config(lambda d: d["c2s"].update(port=new_port, max_connections_per_ip=5))
        line = srv.reload()
        assert "needs_restart=c2s.port" in line and "applied=c2s.max_connections_per_ip" in line
        assert "event=reload_needs_restart keys=c2s.port" in srv.log()

        raw = login(srv)  # still on the old port
        assert ping(raw) == "result"
        raw.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", new_port), timeout=2).close()


# ----------------------------------------------------------------------- the report
async def test_server_reload_returns_what_changed_applied_and_needs_a_restart(
    tmp_path: Path,
) -> None:
    """What ``xmppd reload`` hands back: the report of ``Server.reload()``."""
    from xmppd.config import ConfigError, load_config
    from xmppd.server import build_server, run_server

    proc = make_server(tmp_path)
    server = build_server(load_config(proc.config_path, environ={}))
    server.config_path = str(proc.config_path)
    root = logging.getLogger()
    level = root.level
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: run_server(
                    server, task_status=task_status, handle_signals=False
                )
            )
            report = await server.reload()
            assert (report.changed, report.applied, report.needs_restart) == ([], [], [])

            proc.edit_config(
                lambda d: (
                    d["c2s"].update(direct_tls_port=free_port(), max_connections_per_ip=7),
                    d["http"].update(cors_origins=[LISTED]),
                )
            )
            report = await server.reload()
            assert report.changed == [
                "c2s.direct_tls_port", "c2s.max_connections_per_ip", "http.cors_origins"
            ]  # fmt: skip
            assert report.applied == ["c2s.max_connections_per_ip", "http.cors_origins"]
            assert report.needs_restart == ["c2s.direct_tls_port"]
            assert "c2s.max_connections_per_ip: 64 -> 7" in report.details
            assert server.admission.per_address == 7
            assert server.config.c2s.direct_tls_port == proc.tls_port  # not applied

            proc.edit_config(lambda d: d["c2s"].update(max_connections_per_ip="x"))
            with pytest.raises(ConfigError, match=r"^c2s\.max_connections_per_ip: "):
                await server.reload()
            assert server.admission.per_address == 7
            nursery.cancel_scope.cancel()
    finally:
        root.setLevel(level)
