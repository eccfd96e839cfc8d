"""A real Debian XMPP client against a real ``xmppd serve``: go-sendxmpp (Go, go-xmpp).

go-sendxmpp logs in, sends one message and disconnects; bob listens with slixmpp. Its
flags: ``-j host:port`` (server), ``-u``/``-p`` (account), ``-n`` (accept the server's
self-signed certificate), ``-t`` (direct TLS instead of STARTTLS), message on stdin.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_program
from tests.slix import login, run
from tests.xmppd_process import XmppdProcess, make_server

pytestmark = pytest.mark.integration

# Non-ASCII on purpose: accents, CJK, an emoji outside the BMP, XML-special characters.
BODY = 'Grüße aus Zürich — 你好 🐧 <b>&amp;</b> "quoted"'


def go_sendxmpp(
    server: XmppdProcess,
    home: Path,
    *args: str,
    password: str = "secret",
    body: str = BODY,
    direct_tls: bool = False,
) -> subprocess.CompletedProcess[bytes]:
    exe = require_program("go-sendxmpp", "apt-get install -y go-sendxmpp")
    port = server.tls_port if direct_tls else server.port
    cmd = [exe, "-u", "alice@localhost", "-p", password, "-j", f"127.0.0.1:{port}", "-n"]
    if direct_tls:
        cmd.append("-t")
    home.mkdir(parents=True, exist_ok=True)
    # A private HOME: no user config file (~/.config/go-sendxmpp) can change the run.
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return subprocess.run(
        [*cmd, "--timeout", "10", *args],
        input=body.encode("utf-8"),
        capture_output=True,
        timeout=30,
        env=env,
        check=False,
    )


@pytest.fixture
def tls_only_server(tmp_path: Path) -> Iterator[XmppdProcess]:
    """Like ``xmppd_server`` but loopback gets no exemption: credentials need TLS."""
    (tmp_path / "srv").mkdir()
    server = make_server(tmp_path / "srv", c2s={"allow_plain_on_loopback": False})
    server.add_user("alice", "secret")
    server.add_user("bob", "secret")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct-tls"])
def test_go_sendxmpp_message_reaches_slixmpp(
    tls_only_server: XmppdProcess, tmp_path: Path, direct_tls: bool
) -> None:
    server = tls_only_server

    async def scenario() -> str:
        bob = await login(server, "bob@localhost/desk")
        try:
            result = await asyncio.to_thread(
                go_sendxmpp, server, tmp_path / "home", "bob@localhost", direct_tls=direct_tls
            )
            assert result.returncode == 0, result.stderr.decode(errors="replace")
            while True:
                msg = await bob.next_message(timeout=10)
                if msg["body"]:
                    assert msg["from"].bare == "alice@localhost"
                    return str(msg["body"])
        finally:
            await bob.close()

    assert run(scenario) == BODY
    # It really negotiated TLS (the plain port refuses credentials before STARTTLS here).
    assert "event=authenticated user=alice" in server.log()


def test_go_sendxmpp_wrong_password_fails(tls_only_server: XmppdProcess, tmp_path: Path) -> None:
    result = go_sendxmpp(
        tls_only_server, tmp_path / "home", "bob@localhost", password="not-the-password"
    )
    assert result.returncode != 0
    assert b"not-authorized" in result.stderr
    assert "not-the-password" not in tls_only_server.log()
