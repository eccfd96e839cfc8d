"""SASL EXTERNAL from the forum's own session cookies on a same-origin WebSocket.

A page served under the forum's origin cannot read phpBB's HttpOnly ``_sid`` cookie, but
the browser sends it with the WebSocket handshake; xmppd validates it against the real
forum database and offers SASL EXTERNAL for that stream only — never for another site's
page, a wildcard CORS entry, a guest or a session that is not the ``_u`` cookie's.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from tests.phpbb.fixtures import PhpbbDatabase, phpbb_db  # noqa: F401 - fixture
from tests.slix import run
from tests.ws_client import BIND, CLIENT, SASL, WsXmpp, q
from tests.xmppd_process import XmppdProcess, running_server

pytestmark = pytest.mark.integration

LISTED = "https://forum.example"


async def _mechanisms(server: XmppdProcess, origin: str | None, cookie: str) -> list[str]:
    ws = await WsXmpp.connect(
        f"ws://127.0.0.1:{server.http_port}/xmpp-websocket",
        origin=origin,
        headers={"Cookie": cookie} if cookie else None,
    )
    try:
        features = await ws.open()
        return [m.text or "" for m in features.iter(q(SASL, "mechanism"))]
    finally:
        await ws.close()


def test_forum_cookies_give_sasl_external(tmp_path: Path, phpbb_db: PhpbbDatabase) -> None:  # noqa: F811
    now = int(time.time())
    phpbb_db.set_config("cookie_name", "saxforum")
    jane = phpbb_db.add_user("Jane Doe")
    sid = phpbb_db.add_session(jane, session_time=now)
    stale = phpbb_db.add_session(jane, session_time=now - 3 * 3600)
    bob = phpbb_db.add_user("bob")
    bob_sid = phpbb_db.add_session(bob, session_time=now)
    guest_sid = phpbb_db.add_session(1, session_time=now)
    good = f"other=1; saxforum_u={jane}; saxforum_sid={sid}"

    with running_server(
        tmp_path,
        auth={"backend": "phpbb", "phpbb": {"url": phpbb_db.url}},
        http={"phpbb_cookie_auth": True, "cors_origins": [LISTED]},
        limits={"auth_failures_per_minute": 50},
    ) as server:
        same = f"http://127.0.0.1:{server.http_port}"

        async def scenario() -> None:
            assert "EXTERNAL" in await _mechanisms(server, same, good)
            assert "EXTERNAL" in await _mechanisms(server, LISTED, good)
            # another site's page does not even get a WebSocket
            with pytest.raises(InvalidStatus):
                await _mechanisms(server, "https://evil.example", good)
            # not for: no Origin, stale/foreign/guest sessions, the wrong cookie name
            refused = [
                (None, good),
                (same, f"saxforum_u={jane}; saxforum_sid={stale}"),
                (same, f"saxforum_u={jane}; saxforum_sid={bob_sid}"),
                (same, f"saxforum_u=1; saxforum_sid={guest_sid}"),
                (same, f"phpbb3_u={jane}; phpbb3_sid={sid}"),
                (same, ""),
            ]
            for origin, cookie in refused:
                mechs = await _mechanisms(server, origin, cookie)
                assert "EXTERNAL" not in mechs, (origin, cookie)
                assert "PLAIN" in mechs  # the usual logins stay available

            ws = await WsXmpp.connect(
                f"ws://127.0.0.1:{server.http_port}/xmpp-websocket",
                origin=same,
                headers={"Cookie": good},
            )
            try:
                await ws.open()
                await ws.send(f"<auth xmlns='{SASL}' mechanism='EXTERNAL'>=</auth>")
                assert (await ws.recv()).tag == q(SASL, "success")
                await ws.open()
                await ws.send(f"<iq xmlns='{CLIENT}' type='set' id='b'><bind xmlns='{BIND}'/></iq>")
                reply = await ws.recv()
                jid = reply.findtext(f"{q(BIND, 'bind')}/{q(BIND, 'jid')}") or ""
                assert jid.startswith("jane\\20doe@localhost/")
            finally:
                await ws.close()

        run(scenario, timeout=60)
        log = server.log()
        for secret in (sid, stale, bob_sid, guest_sid):
            assert secret not in log


def test_cookie_auth_is_off_by_default(tmp_path: Path, phpbb_db: PhpbbDatabase) -> None:  # noqa: F811
    jane = phpbb_db.add_user("Jane Doe")
    sid = phpbb_db.add_session(jane, session_time=int(time.time()))
    with running_server(
        tmp_path, auth={"backend": "phpbb", "phpbb": {"url": phpbb_db.url}}
    ) as server:
        same = f"http://127.0.0.1:{server.http_port}"
        cookie = f"phpbb3_u={jane}; phpbb3_sid={sid}"
        assert "EXTERNAL" not in run(lambda: _mechanisms(server, same, cookie), timeout=30)
