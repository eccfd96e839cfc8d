"""The HTTP port of a real ``xmppd serve``: health, widget files, public history, CORS,
trusted proxies, HTTP/2 over TLS via ALPN, XEP-0156 host-meta (proxies in depth and h2c:
test_http_proxy.py).

Raw requests go through ``http.client`` (so paths reach the server byte for byte) and
``httpx`` (for HTTP/2); trusted-proxy handling is observed through what the server
lets a WebSocket client do (plaintext SASL, rate limits by the real client address).
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lxml import etree

from tests.slix import login, run
from tests.ws_client import SASL, WsXmpp, q
from tests.xmppd_process import XmppdProcess, make_server

pytestmark = pytest.mark.integration

ROOM = "sax@conference.localhost"
FORUM = "https://forum.example"


def get(
    server: XmppdProcess, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>chat</title>", encoding="utf-8")
    (root / "assets" / "app.js").write_text("export const x = 1;\n", encoding="utf-8")
    (root / "style.css").write_text("body{}", encoding="utf-8")
    (root / ".env").write_text("SECRET=1", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("top secret", encoding="utf-8")
    os.symlink(tmp_path / "secret.txt", root / "link.txt")
    return root


@pytest.fixture
def server(tmp_path: Path, site: Path) -> Iterator[XmppdProcess]:
    (tmp_path / "srv").mkdir()
    srv = make_server(
        tmp_path / "srv",
        http={"static_dir": str(site), "cors_origins": [FORUM], "history_max_age": 7},
    )
    srv.add_user("alice", "secret")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_healthz(server: XmppdProcess) -> None:
    status, headers, body = get(server, "/healthz")
    assert status == 200
    assert headers["content-type"] == "application/json"
    doc = json.loads(body)
    assert doc["status"] == "ok" and doc["domain"] == "localhost"
    assert get(server, "/nowhere")[0] == 404
    assert get(server, "/healthz", method="POST")[0] == 405


def test_static_files_types_cache_and_traversal(server: XmppdProcess) -> None:
    status, headers, body = get(server, "/chat/")
    assert status == 200 and body.startswith(b"<!doctype html>")
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["cache-control"] == "no-cache"
    status, headers, body = get(server, "/chat/assets/app.js")
    assert status == 200 and body == b"export const x = 1;\n"
    assert headers["content-type"] == "text/javascript; charset=utf-8"
    assert "max-age" in headers["cache-control"]
    etag = headers["etag"]
    status, _, body = get(server, "/chat/assets/app.js", {"If-None-Match": etag})
    assert status == 304 and body == b""
    assert get(server, "/chat/style.css")[1]["content-type"] == "text/css; charset=utf-8"
    assert get(server, "/chat")[0] == 301
    for path in (
        "/chat/../secret.txt",
        "/chat/%2e%2e/secret.txt",
        "/chat/assets/..%2f..%2fsecret.txt",
        "/chat/..%5csecret.txt",
        "/chat/.env",
        "/chat/link.txt",
        "/chat/%00index.html",
        "/chat//etc/passwd",
        "/chat/missing.js",
    ):
        status, _, body = get(server, path)
        assert status in (400, 404), path
        assert b"secret" not in body, path


def _fill_rooms(server: XmppdProcess) -> None:
    async def scenario() -> None:
        alice = await login(server, "alice@localhost/r", plugins=["xep_0045"])
        try:
            muc = alice.plugin["xep_0045"]
            await muc.join_muc_wait(ROOM, "Alice", maxstanzas=0, timeout=10)
            for i in range(3):
                alice.send_message(mto=ROOM, mbody=f"line {i} <b>&", mtype="groupchat")
                while True:
                    msg = await alice.next_message(10)
                    if msg["type"] == "groupchat" and msg["body"] == f"line {i} <b>&":
                        break
            hidden = "hidden@conference.localhost"
            await muc.join_muc_wait(hidden, "Alice", maxstanzas=0, timeout=10)
            alice.send_message(mto=hidden, mbody="private words", mtype="groupchat")
            await asyncio.sleep(0.3)
        finally:
            await alice.close()

    run(scenario, timeout=40)


def test_public_history_json_since_limit_cache_and_private_rooms(server: XmppdProcess) -> None:
    _fill_rooms(server)
    status, headers, body = get(server, "/chat/history?room=sax")
    assert status == 200
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert headers["cache-control"] == "public, max-age=7"
    doc = json.loads(body)
    assert doc["room"] == ROOM
    texts = [m["text"] for m in doc["messages"]]
    assert texts == ["line 0 <b>&", "line 1 <b>&", "line 2 <b>&"]
    first = doc["messages"][0]
    assert set(first) == {"stanza_id", "nick", "text", "timestamp"}
    assert first["nick"] == "Alice" and first["timestamp"].endswith("Z")
    ids = [m["stanza_id"] for m in doc["messages"]]
    assert len(set(ids)) == 3
    # since: only newer; limit: the newest N
    since = json.loads(get(server, f"/chat/history?room=sax&since={ids[0]}")[2])
    assert [m["stanza_id"] for m in since["messages"]] == ids[1:] and since["gap"] is False
    limited = json.loads(get(server, "/chat/history?room=sax&limit=1")[2])
    assert [m["stanza_id"] for m in limited["messages"]] == ids[2:]
    unknown = json.loads(get(server, "/chat/history?room=sax&since=nope")[2])
    assert unknown["gap"] is True and len(unknown["messages"]) == 3
    assert get(server, "/chat/history")[0] == 200  # the first public room by default
    assert get(server, "/chat/history?limit=x")[0] == 400
    # ETag revalidation
    status, _, body = get(server, "/chat/history?room=sax", {"If-None-Match": headers["etag"]})
    assert status == 304 and body == b""
    # a room not marked public is never exposed, whether it exists or not
    status, _, body = get(server, "/chat/history?room=hidden")
    assert status == 404 and b"private words" not in body
    assert get(server, "/chat/history?room=nosuchroom")[0] == 404


def test_cors_allow_list(server: XmppdProcess) -> None:
    _, headers, _ = get(server, "/chat/history", {"Origin": FORUM})
    assert headers["access-control-allow-origin"] == FORUM
    assert "origin" in headers["vary"].lower()
    _, headers, _ = get(server, "/chat/history", {"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in headers
    status, headers, _ = get(
        server,
        "/http-bind",
        {"Origin": FORUM, "Access-Control-Request-Method": "POST"},
        method="OPTIONS",
    )
    assert status == 204 and headers["access-control-allow-origin"] == FORUM
    assert "POST" in headers["access-control-allow-methods"]
    status, headers, _ = get(
        server,
        "/http-bind",
        {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        method="OPTIONS",
    )
    assert status == 403 and "access-control-allow-origin" not in headers
    status, _, _ = get(server, "/http-bind", {"Origin": "https://evil.example"}, method="POST")
    assert status == 403


def test_oversized_post_gets_413(server: XmppdProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    try:
        conn.request("POST", "/http-bind", body=b"x" * (2 * 1024 * 1024))
        assert conn.getresponse().status == 413
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may answer and close before the body is sent: also a refusal
    finally:
        conn.close()
    assert get(server, "/healthz")[0] == 200


def test_http2_over_tls(server: XmppdProcess) -> None:
    # the server's self-signed certificate: nothing to verify it against
    with httpx.Client(http2=True, verify=False, timeout=10) as client:  # noqa: S501
        resp = client.get(f"https://127.0.0.1:{server.https_port}/healthz")
        assert resp.status_code == 200 and resp.http_version == "HTTP/2"
        resp = client.get(f"https://127.0.0.1:{server.https_port}/chat/history?room=sax")
        assert resp.status_code == 200 and resp.json()["room"] == ROOM


# --------------------------------------------------------------- trusted proxies
async def _mechanisms(server: XmppdProcess, headers: dict[str, str]) -> list[str]:
    ws = await WsXmpp.connect(f"ws://127.0.0.1:{server.http_port}/xmpp-websocket", headers=headers)
    try:
        features = await ws.open()
        return [m.text or "" for m in features.iter(q(SASL, "mechanism"))]
    finally:
        await ws.close()


async def _plain(server: XmppdProcess, headers: dict[str, str], user: str, pw: str) -> str:
    """Try one PLAIN login; the SASL outcome's tag or failure condition."""
    ws = await WsXmpp.connect(f"ws://127.0.0.1:{server.http_port}/xmpp-websocket", headers=headers)
    try:
        await ws.open()
        token = base64.b64encode(f"\x00{user}\x00{pw}".encode()).decode()
        await ws.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{token}</auth>")
        result = await ws.recv()
        if result.tag == q(SASL, "success"):
            return "success"
        return next(iter(result)).tag.split("}")[1]
    finally:
        await ws.close()


def test_forwarding_headers_trusted_only_from_configured_proxies(tmp_path: Path) -> None:
    srv = make_server(
        tmp_path,
        http={"trusted_proxies": ["127.0.0.1"]},
        limits={"auth_failures_per_minute": 2},
    )
    srv.add_user("alice", "secret")
    srv.start()
    remote = {"X-Forwarded-For": "198.51.100.9, 203.0.113.5"}
    remote_https = {**remote, "X-Forwarded-Proto": "https"}
    try:

        async def scenario() -> None:
            # the proxy says the client is remote and on plain HTTP: no plaintext SASL
            assert await _mechanisms(srv, remote) == []
            # remote but HTTPS at the proxy: allowed
            assert "PLAIN" in await _mechanisms(srv, remote_https)
            # Forwarded is not the configured header (http.forwarded_header): ignored
            assert await _mechanisms(srv, {"Forwarded": "for=203.0.113.5;proto=https"}) == []
            # rate limits count the real client, not the proxy
            for user in ("nobody1", "nobody2"):
                assert await _plain(srv, remote_https, user, "x") == "not-authorized"
            assert await _plain(srv, remote_https, "alice", "secret") == "temporary-auth-failure"
            other = {"X-Forwarded-For": "203.0.113.6", "X-Forwarded-Proto": "https"}
            assert await _plain(srv, other, "alice", "secret") == "success"

        run(scenario, timeout=60)
    finally:
        srv.stop()


def test_forwarding_headers_from_untrusted_peer_are_ignored(server: XmppdProcess) -> None:
    async def scenario() -> None:
        # loopback without forwarding headers: the c2s loopback exemption applies
        assert "PLAIN" in await _mechanisms(server, {})
        # a client claiming to be forwarded (or HTTPS) is not believed, and loses the
        # loopback exemption: an untrusted proxy on this host must not open plaintext
        spoof = {"X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https"}
        assert await _mechanisms(server, spoof) == []

    run(scenario, timeout=30)


def test_path_prefix_moves_every_route(tmp_path: Path) -> None:
    srv = make_server(tmp_path, http={"path_prefix": "/xmpp"})
    srv.add_user("alice", "secret")
    srv.start()
    try:
        assert get(srv, "/xmpp/healthz")[0] == 200
        assert get(srv, "/healthz")[0] == 404
        assert get(srv, "/xmppx/healthz")[0] == 404
        status, headers, _ = get(srv, "/xmpp/chat")
        assert status == 301 and headers["location"] == "/xmpp/chat/"
        assert get(srv, "/xmpp/chat/history?room=sax")[0] == 200

        async def scenario() -> str:
            ws = await WsXmpp.connect(f"ws://127.0.0.1:{srv.http_port}/xmpp/xmpp-websocket")
            try:
                return await ws.login("alice", "secret")
            finally:
                await ws.close()

        assert run(scenario, timeout=30) == "alice@localhost/ws"
    finally:
        srv.stop()


# ------------------------------------------------------------ XEP-0156 host-meta
def _xrd_links(body: bytes) -> dict[str, str]:
    ns = "{http://docs.oasis-open.org/ns/xri/xrd-1.0}"
    root = etree.fromstring(body)
    assert root.tag == f"{ns}XRD"
    return {str(link.get("rel")): str(link.get("href")) for link in root.iter(f"{ns}Link")}


def _jrd_links(body: bytes) -> dict[str, str]:
    return {link["rel"]: link["href"] for link in json.loads(body)["links"]}


WS_REL = "urn:xmpp:alt-connections:websocket"
BOSH_REL = "urn:xmpp:alt-connections:xbosh"


def test_host_meta_announces_working_endpoints(server: XmppdProcess) -> None:
    port = server.http_port
    expected = {
        WS_REL: f"ws://127.0.0.1:{port}/xmpp-websocket",
        BOSH_REL: f"http://127.0.0.1:{port}/http-bind",
    }
    # any origin may read it (it is public), not only http.cors_origins
    status, headers, body = get(server, "/.well-known/host-meta", {"Origin": "https://x.example"})
    assert status == 200 and headers["content-type"].startswith("application/xrd+xml")
    assert headers["access-control-allow-origin"] == "*"
    assert _xrd_links(body) == expected
    status, headers, body = get(server, "/.well-known/host-meta.json")
    assert status == 200 and headers["content-type"] == "application/json"
    assert headers["access-control-allow-origin"] == "*"
    assert _jrd_links(body) == expected
    assert get(server, "/.well-known/host-meta", method="HEAD")[2] == b""
    assert get(server, "/.well-known/host-meta", method="POST")[0] == 405
    # a client's own forwarding headers are not believed (no trusted proxy): still http
    spoof = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}
    assert _jrd_links(get(server, "/.well-known/host-meta.json", spoof)[2]) == expected
    # a Host that is no host name is never echoed into the document
    status, _, body = get(server, "/.well-known/host-meta", {"Host": "evil.example/x"})
    assert status == 400 and b"evil" not in body

    # over TLS (HTTP/2): secure URLs on the port the client used
    with httpx.Client(http2=True, verify=False, timeout=10) as client:  # noqa: S501
        resp = client.get(f"https://127.0.0.1:{server.https_port}/.well-known/host-meta.json")
        assert resp.status_code == 200 and resp.http_version == "HTTP/2"
        assert _jrd_links(resp.content) == {
            WS_REL: f"wss://127.0.0.1:{server.https_port}/xmpp-websocket",
            BOSH_REL: f"https://127.0.0.1:{server.https_port}/http-bind",
        }

    # the announced WebSocket URL is where a client logs in
    async def scenario() -> str:
        ws = await WsXmpp.connect(expected[WS_REL])
        try:
            return await ws.login("alice", "secret")
        finally:
            await ws.close()

    assert run(scenario, timeout=30) == "alice@localhost/ws"
    # and the BOSH URL answers BOSH
    with httpx.Client(timeout=10) as client:
        resp = client.post(
            expected[BOSH_REL],
            content=(
                "<body xmlns='http://jabber.org/protocol/httpbind' rid='1' to='localhost' "
                "wait='1' hold='1' ver='1.6' xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0'/>"
            ),
        )
        assert resp.status_code == 200 and b"sid=" in resp.content


def test_host_meta_behind_a_trusted_proxy_with_a_prefix(tmp_path: Path) -> None:
    srv = make_server(
        tmp_path, http={"trusted_proxies": ["127.0.0.1"], "path_prefix": "/xmpp", "bosh": False}
    )
    srv.start()
    try:
        proxied = {
            "Host": "forum.example",
            "X-Forwarded-For": "203.0.113.5",
            "X-Forwarded-Proto": "https",
        }
        # at the root of the host (RFC 8615), not below the prefix; BOSH is off: not listed
        status, _, body = get(srv, "/.well-known/host-meta.json", proxied)
        assert status == 200
        assert _jrd_links(body) == {WS_REL: "wss://forum.example/xmpp/xmpp-websocket"}
        assert get(srv, "/xmpp/.well-known/host-meta.json", proxied)[0] == 404
        plain = {**proxied, "X-Forwarded-Proto": "http"}
        _, _, body = get(srv, "/.well-known/host-meta", plain)
        assert _xrd_links(body) == {WS_REL: "ws://forum.example/xmpp/xmpp-websocket"}
    finally:
        srv.stop()


def test_host_meta_uses_the_public_url(tmp_path: Path) -> None:
    srv = make_server(tmp_path, http={"public_url": "https://chat.example/x", "websocket": False})
    srv.start()
    try:
        status, _, body = get(srv, "/.well-known/host-meta.json", {"Host": "127.0.0.1"})
        assert status == 200
        assert _jrd_links(body) == {BOSH_REL: "https://chat.example/x/http-bind"}
    finally:
        srv.stop()
