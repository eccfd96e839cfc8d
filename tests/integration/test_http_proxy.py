"""The HTTP port behind a reverse proxy, over real sockets: which client address and scheme
a real ``xmppd serve`` believes (``http.trusted_proxies``, ``http.forwarded_header``), and
who may switch to HTTP/2 with ``Upgrade: h2c``.

Connections from 127.0.0.1 play the proxy (``trusted_proxies = ["127.0.0.1"]``) and carry
what the README's nginx block sends (X-Forwarded-For with the client's address appended,
X-Forwarded-Proto set) plus whatever a client may add itself and nginx passes through. A
client that is no proxy connects from 127.0.0.2. What the server believes is observed
through what it lets the client do: SASL mechanisms offered on plain HTTP (the loopback
exemption), the failed-login limiter, phpBB's session IP check, and the address it logs.
"""

from __future__ import annotations

import base64
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.bosh_client import STREAMS, Bosh
from tests.bosh_client import q as bosh_q
from tests.phpbb.fixtures import PhpbbDatabase, phpbb_db  # noqa: F401 - fixture
from tests.slix import run
from tests.ws_client import SASL, WsXmpp, q
from tests.xmppd_process import XmppdProcess, make_server, running_server

pytestmark = pytest.mark.integration

PROXY = ["127.0.0.1"]
OUTSIDER = "127.0.0.2"  # a loopback address that is not a trusted proxy
LISTED = "https://forum.example"


@pytest.fixture
def xff_proxied(tmp_path: Path) -> Iterator[XmppdProcess]:
    """Behind an X-Forwarded-For proxy (the default header family), 2 failures a minute."""
    srv = make_server(
        tmp_path, http={"trusted_proxies": PROXY}, limits={"auth_failures_per_minute": 2}
    )
    srv.add_user("alice", "secret")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the test server's self-signed certificate
    return ctx


async def _ws(
    server: XmppdProcess, headers: dict[str, str], origin: str | None = None, **options: object
) -> WsXmpp:
    if options.get("ssl"):
        url = f"wss://127.0.0.1:{server.https_port}/xmpp-websocket"
    else:
        url = f"ws://127.0.0.1:{server.http_port}/xmpp-websocket"
    return await WsXmpp.connect(url, headers=headers, origin=origin, **options)


async def _mechanisms(
    server: XmppdProcess, headers: dict[str, str], origin: str | None = None, **options: object
) -> list[str]:
    ws = await _ws(server, headers, origin, **options)
    try:
        features = await ws.open()
        return [m.text or "" for m in features.iter(q(SASL, "mechanism"))]
    finally:
        await ws.close()


async def _plain(
    server: XmppdProcess, headers: dict[str, str], user: str, pw: str, **options: object
) -> str:
    """One PLAIN login over a fresh WebSocket: "success" or the failure condition."""
    ws = await _ws(server, headers, **options)
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


async def _bosh_mechanisms(server: XmppdProcess, headers: dict[str, str]) -> list[str]:
    bosh = Bosh(server.http_port)
    bosh.http.headers.update(headers)
    try:
        await bosh.create()
        features = await bosh.expect(lambda e: e.tag == bosh_q("features", STREAMS))
        return [m.text or "" for m in features.iter(bosh_q("mechanism", SASL))]
    finally:
        await bosh.aclose()


# --------------------------------------------------------------- the header family
def test_client_forwarded_header_is_ignored_behind_an_xff_proxy(
    xff_proxied: XmppdProcess,
) -> None:
    """nginx overwrites X-Forwarded-For's end and passes a client's Forwarded through."""
    srv = xff_proxied

    async def scenario() -> list[str]:
        nginx = {"X-Forwarded-For": "198.51.100.9", "X-Forwarded-Proto": "http"}
        # claiming loopback or HTTPS in Forwarded opens nothing on plain HTTP
        assert await _mechanisms(srv, {**nginx, "Forwarded": "for=127.0.0.1"}) == []
        assert await _mechanisms(srv, {**nginx, "Forwarded": "for=1.2.3.4;proto=https"}) == []
        assert await _bosh_mechanisms(srv, {**nginx, "Forwarded": "for=127.0.0.1"}) == []
        # rotating Forwarded for= values: every failure counts for the one real client
        nginx_https = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
        outcomes = []
        for i in range(5):
            rotated = {**nginx_https, "Forwarded": f"for=198.51.100.{i + 1};proto=https"}
            outcomes.append(await _plain(srv, rotated, f"nobody{i}", "x"))
        outcomes.append(await _plain(srv, nginx_https, "alice", "secret"))
        return outcomes

    outcomes = run(scenario, timeout=60)
    assert outcomes == ["not-authorized"] * 2 + ["temporary-auth-failure"] * 4
    log = srv.log()
    assert "event=auth_failed ip=203.0.113.7 " in log
    assert "ip=192.0.2." not in log and "ip=127.0.0.1 " not in log


def test_client_xff_is_ignored_behind_a_forwarded_proxy(tmp_path: Path) -> None:
    """And the other way round: with forwarded_header = "forwarded", a client's
    X-Forwarded-For / X-Forwarded-Proto mean nothing; RFC 7239 IPv6 with a port works."""
    with running_server(
        tmp_path,
        users=("alice",),
        http={"trusted_proxies": PROXY, "forwarded_header": "forwarded"},
        limits={"auth_failures_per_minute": 2},
    ) as srv:

        async def scenario() -> list[str]:
            proxy = {"Forwarded": "for=198.51.100.9;proto=http"}
            spoof = {"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"}
            assert await _mechanisms(srv, {**proxy, **spoof}) == []
            v6 = {"Forwarded": 'for="[2001:db8::9]:4711";proto=https'}
            assert "PLAIN" in await _mechanisms(srv, v6)
            outcomes = []
            for i in range(4):
                rotated = {**v6, "X-Forwarded-For": f"198.51.100.{i + 1}"}
                outcomes.append(await _plain(srv, rotated, f"nobody{i}", "x"))
            outcomes.append(await _plain(srv, v6, "alice", "secret"))
            # the client's own hops left of the proxy's are never read
            chained = {"Forwarded": 'for=127.0.0.1;proto=https, for="[2001:db8::9]"'}
            assert await _mechanisms(srv, chained) == []
            return outcomes

        outcomes = run(scenario, timeout=60)
        assert outcomes == ["not-authorized"] * 2 + ["temporary-auth-failure"] * 3
        assert "event=auth_failed ip=2001:db8::9 " in srv.log()


# --------------------------------------------------------------- loopback exemption
def test_no_loopback_exemption_through_a_proxy(xff_proxied: XmppdProcess) -> None:
    srv = xff_proxied

    async def scenario() -> None:
        # a remote client through the proxy on plain HTTP claiming to be local: nothing
        for claim in ("127.0.0.1", "::1", "10.0.0.1, 127.0.0.1", "::ffff:127.0.0.1"):
            headers = {"X-Forwarded-For": claim, "X-Forwarded-Proto": "http"}
            assert await _mechanisms(srv, headers) == [], claim
            assert await _bosh_mechanisms(srv, headers) == [], claim
        # the proxy's own address without forwarding headers is still the proxy
        assert await _mechanisms(srv, {}) == []
        # what opens SASL through a proxy is the proxy reporting HTTPS
        https = {"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"}
        assert "PLAIN" in await _mechanisms(srv, https)
        assert "PLAIN" in await _bosh_mechanisms(srv, https)
        # a client on this host that is no proxy keeps the c2s loopback rule
        assert "PLAIN" in await _mechanisms(srv, {}, local_addr=(OUTSIDER, 0))
        # ... unless it carries forwarding headers (an untrusted proxy on this host)
        spoof = {"X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https"}
        assert await _mechanisms(srv, spoof, local_addr=(OUTSIDER, 0)) == []

    run(scenario, timeout=60)


def test_rotated_headers_from_an_untrusted_peer_stay_one_address(
    xff_proxied: XmppdProcess,
) -> None:
    srv = xff_proxied

    async def scenario() -> list[str]:
        outcomes = []
        for i in range(4):
            rotated = {
                "X-Forwarded-For": f"198.51.100.{i + 1}",
                "Forwarded": f"for=198.51.100.{i + 1}",
                "X-Real-IP": f"198.51.100.{i + 1}",
            }
            opts = {"local_addr": (OUTSIDER, 0), "ssl": _tls()}
            outcomes.append(await _plain(srv, rotated, f"nobody{i}", "x", **opts))
        opts = {"local_addr": (OUTSIDER, 0), "ssl": _tls()}
        outcomes.append(await _plain(srv, {}, "alice", "secret", **opts))
        # the limit is the outsider's, not the proxy's: the proxy's clients still log in
        ok = {"X-Forwarded-For": "203.0.113.8", "X-Forwarded-Proto": "https"}
        outcomes.append(await _plain(srv, ok, "alice", "secret"))
        return outcomes

    outcomes = run(scenario, timeout=60)
    assert outcomes == ["not-authorized"] * 2 + ["temporary-auth-failure"] * 3 + ["success"]
    log = srv.log()
    assert f"event=auth_failed ip={OUTSIDER} " in log and "ip=198.51.100." not in log


def test_malformed_header_from_the_proxy_falls_back_and_logs_once(
    xff_proxied: XmppdProcess,
) -> None:
    srv = xff_proxied
    garbage = {"X-Forwarded-For": "garbage!!, 1.2.3", "X-Forwarded-Proto": "https"}
    with httpx.Client(timeout=10) as client:
        for _ in range(3):
            resp = client.get(f"http://127.0.0.1:{srv.http_port}/healthz", headers=garbage)
            assert resp.status_code == 200

    async def scenario() -> list[str]:
        # counted as the proxy itself and not trusted to be HTTPS: no SASL on plain HTTP
        return await _mechanisms(srv, garbage)

    assert run(scenario, timeout=30) == []
    log = srv.log()
    assert log.count("event=forwarded_header_malformed") == 1
    assert "peer=127.0.0.1 problem=x-forwarded-for" in log
    assert "garbage" not in log


# --------------------------------------------------------------- phpBB's IP check
def test_phpbb_ip_check_sees_the_proxied_client(tmp_path: Path, phpbb_db: PhpbbDatabase) -> None:  # noqa: F811
    now = int(time.time())
    phpbb_db.set_config("cookie_name", "saxforum")
    jane = phpbb_db.add_user("Jane Doe")
    sid = phpbb_db.add_session(jane, session_time=now, ip="203.0.113.5")
    cookie = {"Cookie": f"saxforum_u={jane}; saxforum_sid={sid}"}
    with running_server(
        tmp_path,
        auth={"backend": "phpbb", "phpbb": {"url": phpbb_db.url, "ip_check": True}},
        http={"trusted_proxies": PROXY, "phpbb_cookie_auth": True, "cors_origins": [LISTED]},
        limits={"auth_failures_per_minute": 50},
    ) as srv:
        attacker = {
            "X-Forwarded-For": "198.51.100.9",
            "X-Forwarded-Proto": "https",
            "Forwarded": "for=203.0.113.5;proto=https",
        }
        owner = {"X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https"}

        async def scenario() -> tuple[str, str, list[str], list[str]]:
            stolen = await _plain(srv, attacker, "jane\\20doe", sid)
            own = await _plain(srv, owner, "jane\\20doe", sid)
            stolen_cookie = await _mechanisms(srv, {**attacker, **cookie}, LISTED)
            own_cookie = await _mechanisms(srv, {**owner, **cookie}, LISTED)
            return stolen, own, stolen_cookie, own_cookie

        stolen, own, stolen_cookie, own_cookie = run(scenario, timeout=60)
        assert stolen == "not-authorized" and own == "success"
        assert "EXTERNAL" not in stolen_cookie and "EXTERNAL" in own_cookie
        log = srv.log()
        assert "reason=session-ip-mismatch" in log and "ip=198.51.100.9" in log
        assert sid not in log


# --------------------------------------------------------------- h2c
H2C_REQUEST = (
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
)
BARE_H2C = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: h2c\r\n"


def _status_lines(
    port: int, request: bytes, source: str = "127.0.0.1", tls: bool = False, repeat: int = 1
) -> list[bytes]:
    """Send ``request`` (headers without the final blank line) ``repeat`` times on one
    connection; the status line of each answer. A 101 ends the exchange."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    sock: socket.socket = _tls().wrap_socket(raw) if tls else raw
    lines: list[bytes] = []
    buffer = b""
    try:
        for _ in range(repeat):
            sock.sendall(request + b"\r\n")
            while b"\r\n\r\n" not in buffer:
                chunk = sock.recv(65536)
                if not chunk:
                    return lines
                buffer += chunk
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            lines.append(head.split(b"\r\n", 1)[0])
            if b" 101 " in lines[-1]:
                return lines
            length = next(
                int(h.split(b":", 1)[1])
                for h in head.split(b"\r\n")[1:]
                if h.lower().startswith(b"content-length:")
            )
            while len(buffer) < length:
                buffer += sock.recv(65536)
            buffer = buffer[length:]
        return lines
    finally:
        sock.close()


def test_h2c_is_off_by_default(xff_proxied: XmppdProcess) -> None:
    srv = xff_proxied
    ok = b"HTTP/1.1 200 "
    for request in (H2C_REQUEST, BARE_H2C):
        # from the proxy, from a direct client, on TLS: the request is served as HTTP/1.1
        # and the connection stays HTTP/1.1 for the next request
        assert [line[:13] for line in _status_lines(srv.http_port, request, repeat=2)] == [ok] * 2
        direct = _status_lines(srv.http_port, request, source=OUTSIDER)
        assert [line[:13] for line in direct] == [ok]
        tls = _status_lines(srv.https_port, request, tls=True)
        assert [line[:13] for line in tls] == [ok]
    # prior-knowledge HTTP/2 on the plain port is refused too; h2 over TLS is untouched
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        assert client.get(f"http://127.0.0.1:{srv.http_port}/healthz").status_code == 505
    with httpx.Client(http2=True, verify=False, timeout=10) as client:  # noqa: S501
        resp = client.get(f"https://127.0.0.1:{srv.https_port}/healthz")
        assert resp.status_code == 200 and resp.http_version == "HTTP/2"


def test_h2c_when_on_never_through_a_proxy(tmp_path: Path) -> None:
    with running_server(tmp_path, http={"h2c": True, "trusted_proxies": PROXY}) as srv:
        port = srv.http_port
        # a direct client may upgrade, and use prior knowledge
        assert _status_lines(port, H2C_REQUEST, source=OUTSIDER)[0].startswith(b"HTTP/1.1 101 ")
        with httpx.Client(http1=False, http2=True, timeout=10) as client:
            resp = client.get(f"http://127.0.0.1:{port}/healthz")
            assert resp.status_code == 200 and resp.http_version == "HTTP/2"
        # not from the trusted proxy, not with forwarding headers, not over TLS
        via_proxy = _status_lines(port, H2C_REQUEST)
        forwarded = _status_lines(
            port, H2C_REQUEST + b"X-Forwarded-For: 203.0.113.5\r\n", source=OUTSIDER
        )
        tls = _status_lines(srv.https_port, H2C_REQUEST, source=OUTSIDER, tls=True)
        for lines in (via_proxy, forwarded, tls):
            assert [line[:13] for line in lines] == [b"HTTP/1.1 200 "]
