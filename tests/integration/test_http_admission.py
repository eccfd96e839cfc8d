"""Admission and timeouts on the HTTP port, with real sockets against ``xmppd serve``.

One address at its cap is refused before anything is read while another address logs in
(127.0.0.2: loopback answers for all of 127/8); a body or headers dripped in byte by byte
are cut after their timeout; hundreds of concurrent WebSocket handshakes get no more than
the cap, also when they come through a trusted proxy; and with a small file-descriptor
limit the server refuses connections past its total instead of running out of
descriptors (issue 13, findings 2 and 10).
"""

from __future__ import annotations

import asyncio
import selectors
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from tests.bosh_client import Bosh
from tests.raw_client import RawClient
from tests.raw_http import Http, connect, is_closed, refused_status, request
from tests.slix import run
from tests.ws_client import WsXmpp
from tests.xmppd_process import XmppdProcess, make_server, refusals, running_server

pytestmark = pytest.mark.integration

CAP = 12
OTHER = "127.0.0.2"


def wait_until_admitted(server: XmppdProcess, source: str = "127.0.0.1") -> Http:
    """A new connection from ``source`` once earlier ones were given back (closing is
    asynchronous on the server's side)."""
    deadline = time.monotonic() + 10
    while True:
        http = Http(server.http_port, source)
        try:
            if http.exchange("GET", "/healthz").status == 200:
                return http
        except (ConnectionError, OSError):
            pass
        http.close()
        assert time.monotonic() < deadline, "the address never got its connections back"
        time.sleep(0.1)


def readable(socks: list[socket.socket], at_least: int, timeout: float = 10) -> list[socket.socket]:
    """The sockets the server wrote to or closed, once at least ``at_least`` are (or
    ``timeout`` passed), after a moment for stragglers."""
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        ready: set[socket.socket] = set()
        while len(ready) < at_least and time.monotonic() < deadline:
            ready |= {key.fileobj for key, _ in selector.select(0.1)}  # type: ignore[misc]
        time.sleep(0.5)
        ready |= {key.fileobj for key, _ in selector.select(0)}  # type: ignore[misc]
    return [sock for sock in socks if sock in ready]


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[XmppdProcess]:
    with running_server(
        tmp_path, users=("alice", "bob"), c2s={"max_connections_per_ip": CAP}
    ) as server:
        yield server


def test_one_address_at_its_cap_is_refused_before_reading_others_are_served(
    capped: XmppdProcess,
) -> None:
    held = [wait_until_admitted(capped)]
    try:
        while len(held) < CAP:  # each one served a request: it is admitted and kept alive
            http = Http(capped.http_port)
            assert http.exchange("GET", "/healthz").status == 200
            held.append(http)
        # one more from the same address: refused at once, its request never read
        extra = connect(capped.http_port)
        assert refused_status(extra) in (429, None)
        extra.close()
        # the count is shared with c2s: that address is full there too
        c2s = RawClient(capped.port)
        assert b"<policy-violation" in c2s.read_to_close()

        # another address is served normally meanwhile: HTTP, a BOSH login, a c2s login
        assert Http(capped.http_port, OTHER).exchange("GET", "/healthz").status == 200

        async def bosh_login() -> str:
            bosh = Bosh(capped.http_port, local_address=OTHER)
            try:
                return await bosh.login("bob", resource="other")
            finally:
                await bosh.aclose()

        assert run(bosh_login, 30).startswith("bob@localhost/")
        other = RawClient(capped.port, source=OTHER)
        other.login("alice", "secret")
        other.sock.close()
    finally:
        for http in held:
            http.close()
    wait_until_admitted(capped).close()  # closing gave the address its connections back
    assert refusals(capped.log(), "http", "per_address") >= 1


def test_dripped_body_and_headers_are_cut_after_their_timeouts(tmp_path: Path) -> None:
    read_timeout, keep_alive = 2.0, 3.0
    with running_server(
        tmp_path, http={"read_timeout": read_timeout, "keep_alive_timeout": keep_alive}
    ) as server:
        # a BOSH POST announcing 300 bytes, dripped one byte every 0.3 s (90 s in all)
        sock = connect(server.http_port)
        sock.sendall(request("POST", "/http-bind", b"<bo", length=300))
        started = time.monotonic()
        answer = b""
        sock.settimeout(0.3)
        while time.monotonic() - started < read_timeout + 8:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                try:
                    sock.sendall(b"d")
                except OSError:
                    break  # closed under us
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
        took = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert read_timeout - 0.5 <= took <= read_timeout + 5
        assert is_closed(sock, 5)  # and the connection is gone with it

        # request headers dripped in: cut after keep_alive_timeout
        sock = connect(server.http_port)
        started = time.monotonic()
        closed = False
        for byte in b"GET /healthz HTTP/1.1\r\nx-slow: " + b"a" * 200:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            if is_closed(sock, 0.2):
                closed = True
                break
        assert closed
        assert keep_alive - 0.5 <= time.monotonic() - started <= keep_alive + 5

        # a TLS handshake never started: cut after read_timeout
        tls = socket.create_connection(("127.0.0.1", server.https_port))
        started = time.monotonic()
        assert is_closed(tls, read_timeout + 5)
        assert time.monotonic() - started >= read_timeout - 0.5
        tls.close()

        # nothing of this disturbed a normal client
        assert Http(server.http_port).exchange("GET", "/healthz").status == 200


async def _handshakes(url: str, count: int, headers: dict[str, str] | None) -> tuple[list, int]:
    """``count`` concurrent WebSocket handshakes: the open ones, and how many were refused
    with an HTTP status (the rest of the refusals were connections closed at once)."""

    async def one() -> WsXmpp | int | None:
        try:
            return await WsXmpp.connect(url, headers=headers)
        except InvalidStatus as err:
            return err.response.status_code
        except (InvalidHandshake, ConnectionClosed, OSError, TimeoutError):
            return None

    results = await asyncio.gather(*(one() for _ in range(count)))
    opened = [r for r in results if isinstance(r, WsXmpp)]
    statuses = [r for r in results if isinstance(r, int)]
    assert set(statuses) <= {429}, statuses
    return opened, len(statuses)


@pytest.mark.parametrize("via_proxy", [False, True], ids=["direct", "trusted-proxy"])
def test_concurrent_websocket_handshakes_get_no_more_than_the_cap(
    tmp_path: Path, via_proxy: bool
) -> None:
    """200 handshakes at once from one client: at most the cap open, the rest refused,
    and every one that opened works. Through a trusted proxy the proxy's connections are
    not capped per address, so the WebSocket's own count (checked and counted in one
    step, before any await) is what holds."""
    http = {"trusted_proxies": ["127.0.0.1"]} if via_proxy else {}
    headers = {"x-forwarded-for": "203.0.113.9"} if via_proxy else None
    with running_server(tmp_path, c2s={"max_connections_per_ip": CAP}, http=http) as server:
        wait_until_admitted(server).close()  # the start-up probe is forgotten
        url = f"ws://127.0.0.1:{server.http_port}/xmpp-websocket"

        async def scenario() -> tuple[int, int, int]:
            opened, refused_with_status = await _handshakes(url, 200, headers)
            try:
                working = 0
                for ws in opened:
                    await ws.open()
                    working += 1
            finally:
                await asyncio.gather(*(ws.close() for ws in opened))
            return len(opened), working, refused_with_status

        opened, working, refused_with_status = run(scenario, 60)
        assert 1 <= opened <= CAP
        assert working == opened
        if via_proxy:
            assert opened == CAP and refused_with_status == 200 - CAP
            assert refusals(server.log(), "websocket", "per_address", "203.0.113.9") >= 1
        wait_until_admitted(server).close()


def test_total_cap_keeps_the_server_below_its_file_descriptor_limit(tmp_path: Path) -> None:
    """With 256 descriptors the total is derived as 128: 300 connections from one address
    (no per-address cap here) get 128 admitted and the rest refused at once; accept never
    fails with EMFILE, and once they close a normal login works."""
    server = make_server(tmp_path, c2s={"max_connections_per_ip": 1000})
    server.add_user("alice", "secret")
    server.nofile = 256
    server.start()
    socks: list[socket.socket] = []
    try:
        assert "event=admission per_address=1000 total=128 nofile=256" in server.log()
        for _ in range(300):
            socks.append(connect(server.http_port))
        answered = readable(socks, at_least=300 - 128)  # the admitted ones wait for a request
        for sock in answered:
            assert refused_status(sock) in (503, None)
        refused = len(answered)
        assert 300 - 128 <= refused <= 300 - 100
        for sock in socks:
            sock.close()
        socks.clear()
        wait_until_admitted(server).close()
        client = RawClient(server.port)
        client.login("alice", "secret")
        client.sock.close()
    finally:
        for sock in socks:
            sock.close()
        server.stop()
    log = server.log()
    assert "EMFILE" not in log and "Too many open files" not in log
    assert refusals(log, "http", "total") >= refused  # a line, then a summary (at stop)


def test_tls_port_refuses_at_the_cap_without_a_handshake(capped: XmppdProcess) -> None:
    held = [wait_until_admitted(capped)]
    try:
        while len(held) < CAP:
            http = Http(capped.http_port)
            assert http.exchange("GET", "/healthz").status == 200
            held.append(http)
        raw = socket.create_connection(("127.0.0.1", capped.https_port))
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with pytest.raises((ssl.SSLError, OSError)):
            ctx.wrap_socket(raw, server_hostname="localhost")
        raw.close()
    finally:
        for http in held:
            http.close()
