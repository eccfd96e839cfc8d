"""Converse.js in headless Chromium, given only the account's domain, against a real xmppd.

Set up as a site would run it: the forum's page (with Converse.js) is on its own origin;
xmppd's HTTPS port answers for the account's domain, ``https://localhost`` (Chromium maps
``localhost:443`` to the test server's HTTPS port, as DNS and a port-443 listener would;
the server's certificate is self-signed, so the context ignores certificate errors), with
``http.public_url = "https://localhost"``. Converse is told nothing but the JID:
``discover_connection_methods`` makes it fetch ``https://localhost/.well-known/host-meta``
(XEP-0156, cross-origin, allowed by its ``Access-Control-Allow-Origin: *``) and connect to
the ``wss://`` URL found there. It then joins the room, uploads a picture through its own
file input (XEP-0363: slot, cross-origin PUT allowed by ``http.cors_origins``, message with
the GET URL), which a slixmpp occupant receives and fetches byte for byte; a moderator
(slixmpp, XEP-0425) then removes that message and the picture leaves Converse's page.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_widget_browser import (
    CONVERSE_DIST,
    ROOM,
    _png,
    _print_problems,
    _require_browser,
    _screenshot,
    _serve_dir,
    require_converse,
)
from tests.slix import login, run
from tests.xmppd_process import make_server

pytestmark = pytest.mark.integration

DOMAIN = "localhost"
PUBLIC = f"https://{DOMAIN}"


def _page() -> str:
    """Converse with the JID and password only: no BOSH or WebSocket URL."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Forum page with Converse.js</title>
<link rel="stylesheet" href="/dist/converse.min.css">
<script type="module" src="/dist/converse.min.js"></script></head>
<body><script type="module">
converse.initialize({{
    discover_connection_methods: true,
    assets_path: '/dist/',
    jid: 'carol@{DOMAIN}', password: 'secret', auto_login: true,
    auto_join_rooms: ['{ROOM}'], nickname: 'carol',
    view_mode: 'fullscreen', persistent_store: 'sessionStorage',
    i18n: 'en', play_sounds: false, show_desktop_notifications: false,
    loglevel: 'info',
}});
</script></body></html>
"""


async def _abort(route: Any) -> None:
    await route.abort("blockedbyclient")


def test_converse_discovers_the_server_uploads_a_picture_and_sees_it_moderated(
    tmp_path: Path,
) -> None:
    chromium = _require_browser()
    require_converse()
    from playwright.async_api import async_playwright
    from slixmpp import JID

    picture = _png(64, 48)
    picture_file = tmp_path / "holiday.png"
    picture_file.write_bytes(picture)
    site = tmp_path / "site"
    site.mkdir()
    (site / "dist").symlink_to(CONVERSE_DIST / "dist", target_is_directory=True)
    (site / "index.html").write_text(_page(), encoding="utf-8")
    with _serve_dir(site) as site_port:
        origin = f"http://127.0.0.1:{site_port}"
        (tmp_path / "xmppd").mkdir()
        server = make_server(
            tmp_path / "xmppd",
            http={"cors_origins": [origin], "public_url": PUBLIC},
            server={"admins": ["boss@localhost"]},
        )
        for user in ("bob", "carol", "boss"):
            server.add_user(user, "secret")
        server.start()
        https = f"https://127.0.0.1:{server.https_port}"
        try:

            async def scenario() -> dict[str, Any]:
                bob = await login(server, "bob@localhost/desk", plugins=["xep_0045"])
                await bob.plugin["xep_0045"].join_muc_wait(ROOM, "bob", maxstanzas=0, timeout=10)
                boss = await login(server, "boss@localhost/mod", plugins=["xep_0045", "xep_0425"])
                await boss.plugin["xep_0045"].join_muc_wait(ROOM, "boss", maxstanzas=0, timeout=10)
                requests: list[str] = []
                joined = asyncio.get_running_loop().create_future()

                def on_presence(pres: Any) -> None:
                    if pres["from"].resource == "carol" and pres["type"] != "unavailable":
                        if not joined.done():
                            joined.set_result(str(pres["muc"]["jid"]))

                bob.add_event_handler(f"muc::{ROOM}::presence", on_presence)
                async with async_playwright() as pw:
                    browser = await pw.chromium.launch(
                        executable_path=chromium,
                        args=[
                            "--no-sandbox",
                            f"--host-resolver-rules=MAP {DOMAIN}:443 127.0.0.1:{server.https_port}",
                        ],
                    )
                    try:
                        context = await browser.new_context(ignore_https_errors=True)
                        # Nothing leaves the machine.
                        await context.route(
                            re.compile(r"^https?://(?!127\.0\.0\.1[:/]|localhost[:/])"), _abort
                        )
                        page = await context.new_page()
                        errors: list[str] = []
                        page.on("pageerror", lambda exc: errors.append(str(exc)))
                        page.on("console", _print_problems)
                        page.on("request", lambda r: requests.append(f"{r.method} {r.url}"))
                        page.on("websocket", lambda ws: requests.append(f"WS {ws.url}"))
                        await page.goto(f"{origin}/index.html")
                        muc = page.locator("converse-muc")
                        try:
                            await asyncio.wait_for(joined, 30)
                        except TimeoutError:
                            await _screenshot(page, "converse-discovery-failure")
                            print("\n".join(requests))
                            raise
                        # Joined: bob's line shows in carol's room view.
                        bob.send_message(mto=ROOM, mbody="hello Converse", mtype="groupchat")
                        await page.get_by_text("hello Converse").first.wait_for(timeout=30000)

                        # Upload through Converse's own file input.
                        got = asyncio.get_running_loop().create_future()

                        def on_message(msg: Any) -> None:
                            if msg["type"] == "groupchat" and msg["from"].resource == "carol":
                                if not got.done():
                                    got.set_result(msg)

                        bob.add_event_handler("groupchat_message", on_message)
                        file_input = muc.locator("input[type=file]").first
                        await file_input.set_input_files(str(picture_file))
                        msg = await asyncio.wait_for(got, 30)
                        url = str(msg["body"]).strip()
                        oob = msg.xml.find("{jabber:x:oob}x/{jabber:x:oob}url")
                        sid = msg.xml.find("{urn:xmpp:sid:0}stanza-id").get("id")
                        image = muc.locator(f'img[src="{url}"]')
                        await image.first.wait_for(timeout=20000)
                        # attached first, decoded a moment later: wait for the picture itself
                        handle = await image.first.element_handle()
                        await page.wait_for_function(
                            "e => e.complete && e.naturalWidth > 0", arg=handle, timeout=20000
                        )
                        loaded = await image.first.evaluate("e => e.naturalWidth")
                        await _screenshot(page, "converse-discovered-upload")

                        # A moderator removes it; the picture leaves Converse's page.
                        await boss.plugin["xep_0425"].moderate(
                            JID(ROOM), sid, reason="not here", timeout=10
                        )
                        await image.first.wait_for(state="detached", timeout=20000)
                        notice = muc.get_by_text("boss has removed a message")
                        await notice.first.wait_for(timeout=10000)
                        await _screenshot(page, "converse-upload-moderated")
                        return {
                            "url": url,
                            "oob": oob.text if oob is not None else None,
                            "loaded": loaded,
                            "after": await image.count(),
                            "notice": await notice.count(),
                            "reason": await muc.get_by_text("not here").count(),
                            "hello": await page.get_by_text("hello Converse").count(),
                            "requests": requests,
                            "errors": errors,
                        }
                    finally:
                        await browser.close()
                        await bob.close()
                        await boss.close()

            out = run(scenario, timeout=120)
            # The occupant's client fetches the GET URL (the same host, as DNS would map it;
            # the test server's certificate is self-signed).
            get_url = out["url"].replace(PUBLIC, https, 1)
            fetched = httpx.get(get_url, verify=False, timeout=10)  # noqa: S501
        finally:
            server.stop()
    requests = out["requests"]
    print("\n".join(requests))
    # Discovery went through host-meta, and the WebSocket named there was used.
    assert f"GET {PUBLIC}/.well-known/host-meta" in requests
    assert f"WS wss://{DOMAIN}/xmpp-websocket" in requests
    assert not any("http-bind" in r for r in requests)
    assert out["url"].startswith(f"{PUBLIC}/upload/") and out["url"].endswith("/holiday.png")
    assert any(r.startswith("PUT ") and "/upload/" in r for r in requests)
    assert out["oob"] in (None, out["url"])
    assert out["loaded"] == 64
    assert fetched.status_code == 200 and fetched.content == picture
    assert fetched.headers["content-type"] == "image/png"
    assert out["after"] == 0 and out["hello"] >= 1
    assert out["notice"] == 1 and out["reason"] == 1  # Converse's tombstone, with the reason
    assert out["errors"] == []
