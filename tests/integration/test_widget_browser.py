"""The chat widget in real headless Chromium against a real ``xmppd serve``.

Debian's /usr/bin/chromium is driven by Python playwright (no browser download). The
widget is the built ``xmppd/web/dist`` (``.ci/run`` builds it), served by xmppd itself at
``/chat/`` from a copy that adds forum-like pages (the README's embedding HTML, with the
forum's username and session id filled in as a template would).

The network between page and server runs through playwright, so a test can cut it the way
Wi-Fi loss or a sleeping laptop does: WebSocket connections are closed on both ends and new
ones refused; BOSH requests in flight have their responses thrown away (what the server
sent is lost on the wire) and new ones fail. The page also goes offline (its
online/offline events fire).

Screenshots land in ``test-artifacts/widget/`` (git-ignored); the paths are printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import re
import shutil
import subprocess
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest

from tests.conftest import require_program, unavailable
from tests.slix import login, run
from tests.xmppd_process import XmppdProcess, make_server
from xmppd.web import DIST_DIR, SCRIPT_NAME, build_hint, is_built

pytestmark = pytest.mark.integration

ROOM = "sax@conference.localhost"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "widget"
TRANSPORTS = ["websocket", "bosh"]
PHP_HELPER = DIST_DIR.parent / "php" / "xmppd_chat.php"


# -- set-up ------------------------------------------------------------------------------


def _require_browser() -> str:
    chromium = require_program("chromium", "Debian package chromium")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        unavailable("Python playwright is not installed", "it is in the test extras")
    if not is_built():
        unavailable(build_hint(), ".ci/run must build it")
    return chromium


def _page_html(transport: str, *, user: str, session_id: str, embedded: str = "") -> str:
    """The README's embedding HTML, as a forum template renders it."""
    service = (
        'data-websocket="/xmpp-websocket"' if transport == "websocket" else 'data-bosh="/http-bind"'
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Forum page</title></head>
<body><h1>A forum page</h1>
<div id="chat" data-xmppd-chat {service}
     data-history="/chat/history"
     data-room="{ROOM}" data-domain="localhost"
     data-username="{user}" data-session-id="{session_id}">{embedded}</div>
<script src="/chat/{SCRIPT_NAME}"></script>
</body></html>
"""


def _static_root(tmp: Path) -> Path:
    root = tmp / "static"
    shutil.copytree(DIST_DIR, root)
    for transport in TRANSPORTS:
        (root / f"forum-{transport}.html").write_text(
            _page_html(transport, user="alice", session_id="secret"), encoding="utf-8"
        )
    return root


def _start_server(tmp: Path, *, sm: bool = True) -> XmppdProcess:
    server = make_server(tmp, http={"static_dir": str(_static_root(tmp))}, sm={"enabled": sm})
    for user in ("alice", "bob", "carol"):
        server.add_user(user, "secret")
    server.start()
    return server


def _shot_path(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{name}.png"


async def _screenshot(page: Any, name: str) -> None:
    path = _shot_path(name)
    await page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


# -- the simulated network between page and server --------------------------------------


class Network:
    """Routes the page's BOSH and WebSocket traffic so the test can cut and restore it."""

    def __init__(self) -> None:
        self.up = asyncio.Event()
        self.up.set()
        self.gate = asyncio.Event()  # closed: connections wait (nothing reaches the server)
        self.gate.set()
        self.sockets: list[tuple[Any, Any]] = []
        self.websocket_opened = 0
        self.bosh_requests = 0
        self.intercept = False  # relay WebSocket messages here (to drop some) instead
        self.dead: list[Any] = []  # page sides of sockets gone silent (nothing passes)
        self.drop_from_server: Callable[[str | bytes], bool] | None = None
        self.dropped = 0
        self.log: list[str] = []  # BOSH requests: rid (last digits) and what became of them

    async def install(self, page: Any) -> None:
        await page.route(re.compile(r".*/http-bind$"), self._bosh)
        await page.route_web_socket(re.compile(r".*/xmpp-websocket$"), self._websocket)

    async def _bosh(self, route: Any) -> None:
        self.bosh_requests += 1
        rid = re.search(r"rid=['\"](\d+)", route.request.post_data or "")
        tag = rid.group(1)[-4:] if rid else "?"
        await self.gate.wait()
        if not self.up.is_set():
            self.log.append(f"{tag} refused")
            await route.abort("internetdisconnected")
            return
        try:
            response = await route.fetch(timeout=0)
        except Exception:  # the server closed on us: what a browser sees as a failed request
            self.log.append(f"{tag} reset")
            await route.abort("connectionreset")
            return
        body = (await response.text())[:300]
        if not self.up.is_set():
            self.log.append(f"{tag} LOST {body}")
            await route.abort("internetdisconnected")  # the answer is lost on the wire
            return
        self.log.append(f"{tag} ok {body}")
        await route.fulfill(response=response)

    async def _websocket(self, ws: Any) -> None:
        self.websocket_opened += 1
        await self.gate.wait()
        if not self.up.is_set():
            await ws.close(code=1011, reason="network down")
            return
        server = ws.connect_to_server()
        self.sockets.append((ws, server))
        if self.intercept:
            server.on_message(lambda message: self._from_server(ws, message))
            ws.on_message(lambda message: self._to_server(ws, server, message))

    def _to_server(self, ws: Any, server: Any, message: str | bytes) -> None:
        if ws not in self.dead:
            server.send(message)

    def _from_server(self, ws: Any, message: str | bytes) -> None:
        if ws in self.dead:
            return
        if self.drop_from_server is not None and self.drop_from_server(message):
            self.drop_from_server = None  # lost once, on the wire
            self.dropped += 1
            return
        ws.send(message)

    async def cut(self, context: Any) -> None:
        self.up.clear()
        await context.set_offline(True)
        sockets, self.sockets = self.sockets, []
        for page_side, server_side in sockets:
            for side in (page_side, server_side):
                try:
                    await side.close(code=1011, reason="network down")
                except Exception:  # already closed
                    pass

    def go_silent(self) -> None:
        """The open sockets stop passing anything, without any close (a NAT or Wi-Fi
        access point forgot the connection while the laptop slept)."""
        self.dead.extend(ws for ws, _server in self.sockets)

    async def restore(self, context: Any) -> None:
        await context.set_offline(False)
        self.up.set()


# -- helpers ----------------------------------------------------------------------------


async def _texts(page: Any) -> list[str]:
    return await page.locator("#chat .xc-msg .xc-text").all_inner_texts()


async def _wait_for(
    check: Callable[[], Awaitable[bool]], what: str, page: Any, timeout: float = 20.0
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    await _screenshot(page, "failure")
    state = await page.locator("#chat .xc-state").text_content()
    raise AssertionError(f"timed out waiting for {what}; state {state!r}; {await _texts(page)}")


async def _wait_text(page: Any, text: str, timeout: float = 20.0) -> None:
    async def shown() -> bool:
        return text in await _texts(page)

    await _wait_for(shown, f"message {text!r} in the page", page, timeout)


async def _wait_state(page: Any, state: str, timeout: float = 20.0) -> None:
    async def reached() -> bool:
        return await page.locator("#chat .xc").get_attribute("data-state") == state

    await _wait_for(reached, f"state {state}", page, timeout)


async def _bob(server: XmppdProcess) -> Any:
    bob = await login(server, "bob@localhost/desk", plugins=["xep_0045"])
    await bob.plugin["xep_0045"].join_muc_wait(ROOM, "bob", maxstanzas=0, timeout=10)
    return bob


async def _say(bob: Any, text: str) -> None:
    """Send to the room and wait for the room's echo (it is in the history from then on)."""
    bob.send_message(mto=ROOM, mbody=text, mtype="groupchat")
    while True:
        msg = await bob.next_message(10)
        if msg["type"] == "groupchat" and msg["body"] == text:
            return


async def _from_page(bob: Any, text: str) -> Any:
    while True:
        msg = await bob.next_message(15)
        if msg["type"] == "groupchat" and msg["body"] == text:
            return msg


def _print_problems(message: Any) -> None:
    """Browser console warnings and errors end up in the test's captured output."""
    if message.type in ("warning", "error"):
        print(f"console {message.type}: {message.text}")


async def _abort(route: Any) -> None:
    await route.abort("blockedbyclient")


async def _launch(playwright: Any, chromium: str, **context_args: Any) -> tuple[Any, Any]:
    browser = await playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
    context = await browser.new_context(**context_args)
    # Nothing leaves the machine (Converse's start page links sponsor logos on its website).
    await context.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), _abort)
    return browser, context


# -- the widget ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("transport", "sm"),
    [("websocket", True), ("websocket", False), ("bosh", True)],
    ids=["websocket-resume", "websocket-rejoin", "bosh"],
)
def test_widget_history_live_and_reconnect(tmp_path: Path, transport: str, sm: bool) -> None:
    """WebSocket with XEP-0198 resumes the session after the cut; without it (sm off) the
    widget rejoins with <history since=…> and drops what it shows already; BOSH relies on
    its rid window or logs in again and rejoins the same way."""
    chromium = _require_browser()
    from playwright.async_api import async_playwright

    server = _start_server(tmp_path, sm=sm)
    try:
        url = f"http://127.0.0.1:{server.http_port}/chat/forum-{transport}.html"
        name = transport if transport == "bosh" else f"{transport}-{'resume' if sm else 'rejoin'}"

        async def scenario() -> dict[str, Any]:
            out: dict[str, Any] = {}
            bob = await _bob(server)
            async with async_playwright() as pw:
                browser, context = await _launch(pw, chromium)
                try:
                    page = await context.new_page()
                    errors: list[str] = []
                    page.on("pageerror", lambda exc: errors.append(str(exc)))
                    page.on("console", _print_problems)
                    for i in (1, 2, 3):
                        await _say(bob, f"history {i} <b>&amp;</b>")

                    # 1. History first, while the XMPP transport is held back entirely.
                    net = Network()
                    net.gate.clear()
                    await net.install(page)
                    await page.goto(url)
                    await _wait_text(page, "history 3 <b>&</b>")
                    out["before_connect"] = await _texts(page)
                    out["state_before"] = await page.locator("#chat .xc").get_attribute(
                        "data-state"
                    )
                    out["bold_elements"] = await page.locator("#chat .xc-msg b").count()
                    await _screenshot(page, f"{name}-1-history-before-connect")
                    net.gate.set()
                    await _wait_state(page, "online")

                    # 2. Live: the join history is not shown again, bob's line appears.
                    await _say(bob, "live 1")
                    await _wait_text(page, "live 1")
                    out["after_join"] = await _texts(page)
                    occupants = page.locator("#chat .xc-occupants li")
                    out["occupants"] = await occupants.all_inner_texts()

                    # 3. Typed in the page (Enter) reaches bob.
                    await page.fill("#chat .xc-send input", "from the page")
                    await page.press("#chat .xc-send input", "Enter")
                    msg = await _from_page(bob, "from the page")
                    out["page_sender"] = str(msg["from"])
                    await _wait_text(page, "from the page")
                    await _screenshot(page, f"{name}-2-live")

                    # 4. A blip: the page goes offline and back while its connection lives on.
                    await context.set_offline(True)
                    await _wait_for(
                        lambda: _state_is_not(page, "online"), "the page to notice", page
                    )
                    await context.set_offline(False)
                    await _wait_state(page, "online")

                    # 5. Network cut; bob talks meanwhile; network back.
                    await net.cut(context)
                    await _wait_for(
                        lambda: _state_is_not(page, "online"), "the page to notice", page
                    )
                    for i in (1, 2, 3):
                        await _say(bob, f"during cut {i}")
                    await asyncio.sleep(1.5)  # some reconnect attempts fail meanwhile
                    await _screenshot(page, f"{name}-3-offline")
                    await net.restore(context)
                    await _wait_text(page, "during cut 3", timeout=40)
                    await _wait_state(page, "online")
                    await _say(bob, "after cut")
                    await _wait_text(page, "after cut")
                    out["final"] = await _texts(page)
                    print("\n".join(net.log))  # BOSH requests, shown when the test fails
                    out["how"] = await page.locator("#chat .xc-state").get_attribute("title")
                    print(f"reconnected: {out['how']}")
                    await _screenshot(page, f"{name}-4-after-reconnect")

                    # 6. Phone width stays readable.
                    await page.set_viewport_size({"width": 360, "height": 740})
                    await _screenshot(page, f"{name}-5-phone")
                    out["phone_overflow"] = await page.evaluate(
                        "document.documentElement.scrollWidth - window.innerWidth"
                    )
                    out["errors"] = errors
                finally:
                    await browser.close()
            await bob.close()
            return out

        out = run(scenario, timeout=150)
    finally:
        server.stop()

    history = [f"history {i} <b>&</b>" for i in (1, 2, 3)]
    assert out["before_connect"] == history
    assert out["state_before"] != "online"
    assert out["bold_elements"] == 0  # text, never markup
    assert out["after_join"] == [*history, "live 1"]
    assert "bob" in out["occupants"] and "alice" in out["occupants"]
    assert out["page_sender"] == f"{ROOM}/alice"
    expected = [
        *history,
        "live 1",
        "from the page",
        *(f"during cut {i}" for i in (1, 2, 3)),
        "after cut",
    ]
    if transport == "bosh":
        # Strophe handles a BOSH response as soon as it completes: when the network comes
        # back, the retried request whose answer was lost (replayed by xmppd from its rid
        # cache) can complete after the next one, so lines of the cut may show out of order.
        assert sorted(out["final"]) == sorted(expected)
        assert out["final"][:5] == expected[:5] and out["final"][-1] == "after cut"
    else:
        assert out["final"] == expected
    if transport == "websocket":
        assert out["how"] == ("WebSocket, resumed" if sm else "WebSocket")
    assert out["phone_overflow"] <= 0
    assert out["errors"] == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_widget_reload_continues_the_session(tmp_path: Path, transport: str) -> None:
    """A page reload (the forum's next page) continues the same XMPP session: BOSH through
    Strophe's session restore, WebSocket through XEP-0198 resumption; either way the page
    shows each message once and the occupant list again."""
    chromium = _require_browser()
    from playwright.async_api import async_playwright

    server = _start_server(tmp_path)
    try:
        url = f"http://127.0.0.1:{server.http_port}/chat/forum-{transport}.html"

        async def scenario() -> dict[str, Any]:
            bob = await _bob(server)
            left: list[str] = []
            bob.add_event_handler(
                f"muc::{ROOM}::presence",
                lambda p: left.append(p["from"].resource) if p["type"] == "unavailable" else None,
            )
            async with async_playwright() as pw:
                browser, context = await _launch(pw, chromium)
                try:
                    page = await context.new_page()
                    page.on("console", _print_problems)
                    net = Network()  # only to log BOSH requests when the test fails
                    await net.install(page)
                    await page.goto(url)
                    await _wait_state(page, "online")
                    first = await page.locator("#chat .xc-state").get_attribute("title")
                    await _say(bob, "before reload")
                    await _wait_text(page, "before reload")
                    await page.reload()
                    try:
                        await _wait_state(page, "online")
                    finally:
                        print("\n".join(net.log))
                    await _say(bob, "after reload")
                    await _wait_text(page, "after reload")
                    await _screenshot(page, f"reload-{transport}")
                    occupants = page.locator("#chat .xc-occupants li")
                    return {
                        "first": first,
                        "how": await page.locator("#chat .xc-state").get_attribute("title"),
                        "texts": await _texts(page),
                        "occupants": await occupants.all_inner_texts(),
                        "left": left,
                    }
                finally:
                    await browser.close()
                    await bob.close()

        out = run(scenario, timeout=90)
    finally:
        server.stop()
    name = "BOSH" if transport == "bosh" else "WebSocket"
    assert out["first"] == name
    continued = "session restored" if transport == "bosh" else "resumed"
    assert out["how"] == f"{name}, {continued}"
    assert out["texts"] == ["before reload", "after reload"]
    assert sorted(out["occupants"]) == ["alice", "bob"]
    assert "alice" not in out["left"]  # the same session: alice never left the room


def test_widget_drops_a_moderated_and_a_retracted_message(tmp_path: Path) -> None:
    """A moderator retracts a line (XEP-0425) and an author its own (XEP-0424): both
    disappear from the page live, and after a reload neither /chat/history nor the join
    history brings them back (tombstones and retractions are never shown)."""
    chromium = _require_browser()
    from playwright.async_api import async_playwright
    from slixmpp import JID

    server = make_server(
        tmp_path,
        http={"static_dir": str(_static_root(tmp_path))},
        server={"admins": ["carol@localhost"]},
    )
    for user in ("alice", "bob", "carol"):
        server.add_user(user, "secret")
    server.start()
    try:
        url = f"http://127.0.0.1:{server.http_port}/chat/forum-websocket.html"

        async def scenario() -> dict[str, Any]:
            out: dict[str, Any] = {}
            bob = await login(server, "bob@localhost/desk", plugins=["xep_0045", "xep_0424"])
            await bob.plugin["xep_0045"].join_muc_wait(ROOM, "bob", maxstanzas=0, timeout=10)
            carol = await login(server, "carol@localhost/mod", plugins=["xep_0045", "xep_0425"])
            await carol.plugin["xep_0045"].join_muc_wait(ROOM, "carol", maxstanzas=0, timeout=10)
            async with async_playwright() as pw:
                browser, context = await _launch(pw, chromium)
                try:
                    page = await context.new_page()
                    errors: list[str] = []
                    page.on("pageerror", lambda exc: errors.append(str(exc)))
                    page.on("console", _print_problems)
                    await page.goto(url)
                    await _wait_state(page, "online")
                    ids = {}
                    for text in ("first line", "buy pills now", "my typo", "last line"):
                        bob.send_message(mto=ROOM, mbody=text, mtype="groupchat")
                        while True:
                            msg = await bob.next_message(10)
                            if msg["type"] == "groupchat" and msg["body"] == text:
                                ids[text] = msg.xml.find("{urn:xmpp:sid:0}stanza-id").get("id")
                                break
                    await _wait_text(page, "last line")
                    out["before"] = await _texts(page)
                    await carol.plugin["xep_0425"].moderate(
                        JID(ROOM), ids["buy pills now"], reason="spam", timeout=10
                    )
                    bob.plugin["xep_0424"].send_retraction(
                        JID(ROOM), ids["my typo"], mtype="groupchat"
                    )

                    async def both_gone() -> bool:
                        texts = await _texts(page)
                        return "buy pills now" not in texts and "my typo" not in texts

                    await _wait_for(both_gone, "the retracted lines to go", page)
                    out["live"] = await _texts(page)
                    await _screenshot(page, "moderation-live")
                    await page.reload()
                    await _wait_state(page, "online")
                    await _say(bob, "after reload")
                    await _wait_text(page, "after reload")
                    out["reloaded"] = await _texts(page)
                    out["errors"] = errors
                finally:
                    await browser.close()
                    await bob.close()
                    await carol.close()
            return out

        out = run(scenario, timeout=90)
    finally:
        server.stop()
    assert out["before"] == ["first line", "buy pills now", "my typo", "last line"]
    assert out["live"] == ["first line", "last line"]
    assert out["reloaded"] == ["first line", "last line", "after reload"]
    assert out["errors"] == []


def test_widget_repeats_a_join_whose_answer_was_lost(tmp_path: Path) -> None:
    """The room's answer to the join (with our self-presence) is lost on the wire, as when
    a reload aborts the BOSH request it travelled on: the widget joins again and the room
    re-syncs it, instead of staying at "Joining" forever."""
    chromium = _require_browser()
    from playwright.async_api import async_playwright

    server = _start_server(tmp_path, sm=False)
    try:
        url = f"http://127.0.0.1:{server.http_port}/chat/forum-websocket.html"

        async def scenario() -> dict[str, Any]:
            bob = await _bob(server)
            await _say(bob, "before the join")
            async with async_playwright() as pw:
                browser, context = await _launch(pw, chromium)
                try:
                    page = await context.new_page()
                    page.on("console", _print_problems)
                    net = Network()
                    net.intercept = True
                    net.drop_from_server = lambda m: (
                        "code='110'" in str(m) or 'code="110"' in str(m)
                    )
                    await net.install(page)
                    await page.goto(url)
                    await _wait_state(page, "online", timeout=30)
                    await _say(bob, "after the join")
                    await _wait_text(page, "after the join")
                    return {
                        "dropped": net.dropped,
                        "texts": await _texts(page),
                        "occupants": await page.locator("#chat .xc-occupants li").all_inner_texts(),
                    }
                finally:
                    await browser.close()
                    await bob.close()

        out = run(scenario, timeout=90)
    finally:
        server.stop()
    assert out["dropped"] == 1
    assert out["texts"] == ["before the join", "after the join"]
    assert sorted(out["occupants"]) == ["alice", "bob"]


def test_widget_notices_a_silently_dead_connection(tmp_path: Path) -> None:
    """After sleep the socket can be dead without any close event. On the next network or
    visibility change the widget pings, gets no answer, reconnects (XEP-0198 resumes) and
    shows what was said meanwhile, once."""
    chromium = _require_browser()
    from playwright.async_api import async_playwright

    server = _start_server(tmp_path)
    try:
        url = f"http://127.0.0.1:{server.http_port}/chat/forum-websocket.html"

        async def scenario() -> dict[str, Any]:
            bob = await _bob(server)
            async with async_playwright() as pw:
                browser, context = await _launch(pw, chromium)
                try:
                    page = await context.new_page()
                    page.on("console", _print_problems)
                    net = Network()
                    net.intercept = True
                    await net.install(page)
                    await page.goto(url)
                    await _wait_state(page, "online")
                    await _say(bob, "before sleep")
                    await _wait_text(page, "before sleep")
                    net.go_silent()
                    await _say(bob, "while asleep")
                    await asyncio.sleep(0.5)
                    hidden = await _texts(page)
                    # Waking up: the browser reports the network (or the tab) as back.
                    await page.evaluate("window.dispatchEvent(new Event('online'))")
                    await _wait_text(page, "while asleep", timeout=40)
                    await _wait_state(page, "online")
                    await _say(bob, "awake")
                    await _wait_text(page, "awake")
                    return {
                        "hidden": hidden,
                        "texts": await _texts(page),
                        "how": await page.locator("#chat .xc-state").get_attribute("title"),
                        "sockets": net.websocket_opened,
                    }
                finally:
                    await browser.close()
                    await bob.close()

        out = run(scenario, timeout=90)
    finally:
        server.stop()
    assert out["hidden"] == ["before sleep"]  # the dead socket really passed nothing
    assert out["texts"] == ["before sleep", "while asleep", "awake"]
    assert out["sockets"] == 2
    assert out["how"] == "WebSocket, resumed"


async def _state_is_not(page: Any, state: str) -> bool:
    return await page.locator("#chat .xc").get_attribute("data-state") != state


def test_widget_shows_history_embedded_by_php(tmp_path: Path) -> None:
    """The forum's PHP (xmppd/web/php/xmppd_chat.php, run by php-cli) embeds /chat/history
    into the page: it shows without any request, legacy entities are decoded once, markup
    and a "</script>" in a message stay text, and joining later does not repeat it."""
    chromium = _require_browser()
    php = require_program("php", "Debian package php-cli")
    from playwright.async_api import async_playwright

    nasty = "new topic &quot;A &amp;amp; B&quot; <img src=x onerror=alert(1)></script><b>x</b>"
    server = _start_server(tmp_path)
    try:

        async def post() -> None:
            bob = await login(server, "bob@localhost/desk", plugins=["xep_0045"])
            await bob.plugin["xep_0045"].join_muc_wait(ROOM, "webridge", maxstanzas=0)
            await _say(bob, nasty)
            await bob.close()

        run(post, timeout=30)
        snippet = (
            f"require '{PHP_HELPER}'; "
            f"echo xmppd_chat_history('http://127.0.0.1:{server.http_port}/chat/history');"
        )
        rendered = subprocess.run(
            [php, "-r", snippet], capture_output=True, text=True, timeout=30, check=True
        ).stdout
        assert rendered.startswith('<script type="application/json"')
        page_html = _page_html("websocket", user="alice", session_id="secret", embedded=rendered)
        static = Path(server.overrides["http"]["static_dir"])
        (static / "embedded.html").write_text(page_html, encoding="utf-8")
        url = f"http://127.0.0.1:{server.http_port}/chat/embedded.html"

        async def scenario() -> dict[str, Any]:
            async with async_playwright() as pw:
                browser, context = await _launch(pw, chromium)
                try:
                    page = await context.new_page()
                    fetched: list[str] = []
                    page.on(
                        "request",
                        lambda req: fetched.append(req.url) if "/chat/history" in req.url else None,
                    )
                    dialogs: list[str] = []
                    page.on("dialog", lambda d: dialogs.append(d.message))
                    net = Network()
                    net.gate.clear()  # XMPP held back: only the embedded JSON can show
                    await net.install(page)
                    await page.goto(url)
                    await page.locator("#chat .xc-msg").first.wait_for(timeout=10000)
                    before = await _texts(page)
                    net.gate.set()
                    await _wait_state(page, "online")
                    await asyncio.sleep(1)  # the join history has arrived by now
                    await _screenshot(page, "embedded-history")
                    return {
                        "before": before,
                        "nicks": await page.locator("#chat .xc-nick").all_inner_texts(),
                        "texts": await _texts(page),
                        "markup": await page.locator("#chat .xc-log img, #chat .xc-log b").count(),
                        "fetched": fetched,
                        "dialogs": dialogs,
                    }
                finally:
                    await browser.close()

        out = run(scenario, timeout=60)
    finally:
        server.stop()
    shown = 'new topic "A &amp; B" <img src=x onerror=alert(1)></script><b>x</b>'
    assert out["before"] == [shown]
    assert out["texts"] == [shown]
    assert out["nicks"] == ["webridge"]
    assert out["markup"] == 0 and out["dialogs"] == []
    assert out["fetched"] == []


def test_widget_shows_nicks_as_written_and_decodes_only_bodies(tmp_path: Path) -> None:
    """Issue 13 finding 7 (b): a nick is never entity-decoded. "&#65;dmin" must not show as
    "Admin", and "&#8238;"/"&#8203;" must not turn into the bidi override and zero-width
    space the server refuses in nicks: all show literally, in the log and the occupant
    list. A message body's legacy entities are still decoded once (README)."""
    chromium = _require_browser()
    from playwright.async_api import async_playwright

    spoof, bidi = "&#65;dmin", "x&#8238;y&#8203;z"
    server = _start_server(tmp_path)
    try:

        async def scenario() -> dict[str, Any]:
            bob = await login(server, "bob@localhost/desk", plugins=["xep_0045"])
            await bob.plugin["xep_0045"].join_muc_wait(ROOM, spoof, maxstanzas=0, timeout=10)
            carol = await login(server, "carol@localhost/desk", plugins=["xep_0045"])
            await carol.plugin["xep_0045"].join_muc_wait(ROOM, bidi, maxstanzas=0, timeout=10)
            await _say(bob, "from history: A &amp; B")
            url = f"http://127.0.0.1:{server.http_port}/chat/forum-websocket.html"
            async with async_playwright() as pw:
                browser, context = await _launch(pw, chromium)
                try:
                    page = await context.new_page()
                    page.on("console", _print_problems)
                    await page.goto(url)
                    await _wait_state(page, "online")
                    await _say(carol, "live: C &amp; D")
                    await _wait_text(page, "live: C & D")
                    occupants = page.locator("#chat .xc-occupants li")

                    async def listed() -> bool:
                        return await occupants.count() == 3  # alice, bob, carol

                    await _wait_for(listed, "three occupants", page)
                    await _screenshot(page, "nicks-as-written")
                    return {
                        "nicks": await page.locator("#chat .xc-nick").all_inner_texts(),
                        "texts": await _texts(page),
                        "occupants": sorted(await occupants.all_text_contents()),
                    }
                finally:
                    await browser.close()
                    for client in (bob, carol):
                        await client.close()

        out = run(scenario, timeout=60)
    finally:
        server.stop()
    assert out["nicks"] == [spoof, bidi]
    assert out["texts"] == ["from history: A & B", "live: C & D"]
    assert out["occupants"] == sorted(["alice", spoof, bidi])


def _png(width: int, height: int) -> bytes:
    """A real (grey) PNG of that size, made here."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _history_only_page() -> str:
    """A page with the room's history and the upload URL, and no XMPP endpoint."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>History</title></head>
<body><div id="chat" data-xmppd-chat data-history="/chat/history" data-upload="/upload/"
     data-room="{ROOM}" data-domain="localhost"></div>
<script src="/chat/{SCRIPT_NAME}"></script></body></html>
"""


async def _upload(client: Any, name: str, body: bytes, ctype: str) -> str:
    """XEP-0363 as a client does it: a slot from upload.localhost, then the PUT; the GET URL."""
    ns = "urn:xmpp:http:upload:0"
    iq = client.make_iq_get(ito="upload.localhost")
    iq.append(
        ElementTree.Element(
            f"{{{ns}}}request", filename=name, size=str(len(body)), **{"content-type": ctype}
        )
    )
    result = await iq.send(timeout=5)
    put = result.xml.find(f"{{{ns}}}slot/{{{ns}}}put").get("url")
    get = result.xml.find(f"{{{ns}}}slot/{{{ns}}}get").get("url")
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.put(put, content=body, headers={"content-type": ctype})
    assert answer.status_code == 201
    return str(get)


def test_widget_shows_uploaded_pictures_inline_and_other_links_as_links(tmp_path: Path) -> None:
    """A picture shared with XEP-0363 (its GET URL as the body, or XEP-0066 <x><url>) shows
    as an <img> bounded in size; an uploaded HTML page, a picture elsewhere and any other
    URL stay links; markup in a body stays text."""
    chromium = _require_browser()
    from playwright.async_api import async_playwright

    server = _start_server(tmp_path)
    try:

        async def scenario() -> dict[str, Any]:
            bob = await _bob(server)
            big = await _upload(bob, "chat é.png", _png(1600, 1200), "image/png")
            page_url = await _upload(bob, "page.html", b"<script>alert(1)</script>", "text/html")
            small = await _upload(bob, "small.png", _png(40, 30), "image/png")
            await _say(bob, big)
            url = f"http://127.0.0.1:{server.http_port}/chat/forum-websocket.html"
            async with async_playwright() as pw:
                browser, context = await _launch(pw, chromium)
                try:
                    page = await context.new_page()
                    page.on("console", _print_problems)
                    dialogs: list[str] = []
                    page.on("dialog", lambda d: dialogs.append(d.message))
                    await page.goto(url)
                    await _wait_state(page, "online")
                    await _say(bob, page_url)
                    await _say(bob, "elsewhere: https://example.org/cat.png")
                    await _say(bob, "<img src=x onerror=alert(1)>")
                    msg = bob.make_message(mto=ROOM, mbody="the small one", mtype="groupchat")
                    oob = ElementTree.SubElement(msg.xml, "{jabber:x:oob}x")
                    ElementTree.SubElement(oob, "{jabber:x:oob}url").text = small
                    msg.send()
                    await _wait_text(page, "the small one")
                    images = page.locator("#chat .xc-msg img.xc-img")

                    async def loaded() -> bool:
                        return await images.count() == 2 and all(
                            await images.evaluate_all(
                                "els => els.map(e => e.complete && e.naturalWidth > 0)"
                            )
                        )

                    await _wait_for(loaded, "two pictures loaded", page)
                    await _screenshot(page, "uploaded-pictures")
                    # The same from /chat/history alone (its items carry the oob URL), on a
                    # page that names the upload URL itself and never connects.
                    (tmp_path / "static" / "history-only.html").write_text(
                        _history_only_page(), encoding="utf-8"
                    )
                    later = await context.new_page()
                    await later.goto(f"http://127.0.0.1:{server.http_port}/chat/history-only.html")
                    again = later.locator("#chat .xc-msg img.xc-img")

                    async def shown_again() -> bool:
                        return await again.count() == 2

                    await _wait_for(shown_again, "two pictures from the history", later)
                    return {
                        "history_srcs": await again.evaluate_all("els => els.map(e => e.src)"),
                        "srcs": await images.evaluate_all("els => els.map(e => e.src)"),
                        "alts": await images.evaluate_all("els => els.map(e => e.alt)"),
                        "boxes": [await images.nth(i).bounding_box() for i in range(2)],
                        "links": await page.locator("#chat .xc-text a").evaluate_all(
                            "els => els.map(e => [e.href, e.rel, e.target])"
                        ),
                        "texts": await _texts(page),
                        "markup": await page.locator("#chat .xc-text img, #chat script").count(),
                        "dialogs": dialogs,
                    }
                finally:
                    await browser.close()
                    await bob.close()

        out = run(scenario, timeout=90)
    finally:
        server.stop()
    assert len(out["srcs"]) == 2 and out["srcs"][0].endswith("/chat_%C3%A9.png")
    assert out["history_srcs"] == out["srcs"]
    assert out["srcs"][1].endswith("/small.png")
    assert out["alts"] == ["Picture: chat_é.png", "Picture: small.png"]
    big_box, small_box = out["boxes"]
    assert big_box["width"] <= 320 and big_box["height"] <= 240  # bounded, 4:3 kept
    assert abs(big_box["width"] / big_box["height"] - 4 / 3) < 0.05
    assert (small_box["width"], small_box["height"]) == (42, 32)  # its own size + the border
    hrefs = [link[0] for link in out["links"]]
    assert hrefs[0].endswith("/page.html") and hrefs[1] == "https://example.org/cat.png"
    assert all(rel == "noopener noreferrer nofollow ugc" for _, rel, _ in out["links"])
    assert "<img src=x onerror=alert(1)>" in out["texts"] and "the small one" in out["texts"]
    assert out["markup"] == 0 and out["dialogs"] == []


# -- a third-party browser client ----------------------------------------------------------

CONVERSE_DIST = Path(__file__).resolve().parents[1] / "browser" / "node_modules" / "converse.js"


def require_converse() -> None:
    """Converse.js from tests/browser's npm packages; fail in CI, skip elsewhere."""
    if not (CONVERSE_DIST / "dist" / "converse.min.js").is_file():
        unavailable("Converse.js is not installed: npm ci in tests/browser", ".ci/run does it")


def _converse_page(transport: str, http_port: int) -> str:
    if transport == "websocket":
        service = f"websocket_url: 'ws://127.0.0.1:{http_port}/xmpp-websocket',"
    else:
        service = f"bosh_service_url: 'http://127.0.0.1:{http_port}/http-bind',"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Converse.js against xmppd</title>
<link rel="stylesheet" href="/dist/converse.min.css">
<script type="module" src="/dist/converse.min.js"></script></head>
<body><script type="module">
converse.initialize({{
    {service}
    assets_path: '/dist/',
    discover_connection_methods: false,
    jid: 'carol@localhost', password: 'secret', auto_login: true,
    auto_join_rooms: ['{ROOM}'], nickname: 'carol',
    view_mode: 'fullscreen', persistent_store: 'sessionStorage',
    i18n: 'en', play_sounds: false, show_desktop_notifications: false,
    loglevel: 'info',
}});
</script></body></html>
"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _serve_dir(root: Path) -> Iterator[int]:
    """Serve ``root`` (the test page + Converse's dist) on a free loopback port."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_converse_js_logs_in_and_joins_the_room(tmp_path: Path, transport: str) -> None:
    """An unmodified Converse.js (npm converse.js, tests/browser) logs in and joins the room."""
    chromium = _require_browser()
    require_converse()
    from playwright.async_api import async_playwright

    site = tmp_path / "site"
    site.mkdir()
    (site / "dist").symlink_to(CONVERSE_DIST / "dist", target_is_directory=True)
    with _serve_dir(site) as site_port:
        origin = f"http://127.0.0.1:{site_port}"
        (tmp_path / "xmppd").mkdir()
        server = make_server(tmp_path / "xmppd", http={"cors_origins": [origin]})
        for user in ("bob", "carol"):
            server.add_user(user, "secret")
        server.start()
        try:
            (site / "index.html").write_text(
                _converse_page(transport, server.http_port), encoding="utf-8"
            )

            async def scenario() -> dict[str, Any]:
                bob = await _bob(server)
                joined = asyncio.get_running_loop().create_future()

                def on_presence(pres: Any) -> None:
                    if pres["from"].resource == "carol" and pres["type"] != "unavailable":
                        if not joined.done():
                            joined.set_result(str(pres["muc"]["jid"]))

                bob.add_event_handler(f"muc::{ROOM}::presence", on_presence)
                async with async_playwright() as pw:
                    browser, context = await _launch(pw, chromium)
                    try:
                        page = await context.new_page()
                        errors: list[str] = []
                        page.on("pageerror", lambda exc: errors.append(str(exc)))
                        page.on("console", _print_problems)
                        await page.goto(f"{origin}/index.html")
                        try:
                            real_jid = await asyncio.wait_for(joined, 30)
                        except TimeoutError:
                            await _screenshot(page, f"converse-{transport}-failure")
                            raise
                        await _say(bob, "hello Converse")
                        await page.get_by_text("hello Converse").first.wait_for(timeout=20000)
                        await _screenshot(page, f"converse-{transport}")
                        carol_said = asyncio.get_running_loop().create_future()

                        def on_message(msg: Any) -> None:
                            if msg["type"] == "groupchat" and msg["from"].resource == "carol":
                                if not carol_said.done():
                                    carol_said.set_result(msg["body"])

                        bob.add_event_handler("groupchat_message", on_message)
                        box = page.locator("converse-muc textarea").first
                        await box.fill("hello from Converse")
                        await box.press("Enter")
                        said = await asyncio.wait_for(carol_said, 20)
                        return {"jid": real_jid, "said": said, "errors": errors}
                    finally:
                        await browser.close()
                        await bob.close()

            out = run(scenario, timeout=120)
        finally:
            server.stop()
    assert out["jid"].startswith("carol@localhost/")
    assert out["said"] == "hello from Converse"


def test_converse_js_shows_a_moderated_message_as_removed(tmp_path: Path) -> None:
    """An unmodified Converse.js understands the room's XEP-0425 announcement: the
    moderated line's text leaves the page (Converse shows a removal notice instead)."""
    chromium = _require_browser()
    require_converse()
    from playwright.async_api import async_playwright
    from slixmpp import JID

    site = tmp_path / "site"
    site.mkdir()
    (site / "dist").symlink_to(CONVERSE_DIST / "dist", target_is_directory=True)
    with _serve_dir(site) as site_port:
        origin = f"http://127.0.0.1:{site_port}"
        (tmp_path / "xmppd").mkdir()
        server = make_server(
            tmp_path / "xmppd",
            http={"cors_origins": [origin]},
            server={"admins": ["boss@localhost"]},
        )
        for user in ("bob", "carol", "boss"):
            server.add_user(user, "secret")
        server.start()
        try:
            (site / "index.html").write_text(
                _converse_page("websocket", server.http_port), encoding="utf-8"
            )

            async def scenario() -> dict[str, Any]:
                bob = await _bob(server)
                boss = await login(server, "boss@localhost/mod", plugins=["xep_0045", "xep_0425"])
                await boss.plugin["xep_0045"].join_muc_wait(ROOM, "boss", maxstanzas=0, timeout=10)
                async with async_playwright() as pw:
                    browser, context = await _launch(pw, chromium)
                    try:
                        page = await context.new_page()
                        errors: list[str] = []
                        page.on("pageerror", lambda exc: errors.append(str(exc)))
                        page.on("console", _print_problems)
                        await page.goto(f"{origin}/index.html")
                        await _say(bob, "hello Converse")
                        await page.get_by_text("hello Converse").first.wait_for(timeout=30000)
                        bob.send_message(mto=ROOM, mbody="buy pills now", mtype="groupchat")
                        while True:
                            msg = await bob.next_message(10)
                            if msg["type"] == "groupchat" and msg["body"] == "buy pills now":
                                spam = msg.xml.find("{urn:xmpp:sid:0}stanza-id").get("id")
                                break
                        await page.get_by_text("buy pills now").first.wait_for(timeout=20000)
                        await boss.plugin["xep_0425"].moderate(
                            JID(ROOM), spam, reason="spam", timeout=10
                        )
                        gone = page.get_by_text("buy pills now")
                        await gone.first.wait_for(state="detached", timeout=20000)
                        await _screenshot(page, "converse-moderated")
                        return {
                            "still": await gone.count(),
                            "hello": await page.get_by_text("hello Converse").count(),
                            "errors": errors,
                        }
                    finally:
                        await browser.close()
                        await bob.close()
                        await boss.close()

            out = run(scenario, timeout=120)
        finally:
            server.stop()
    assert out["still"] == 0
    assert out["hello"] >= 1


def test_chat_without_a_built_widget_says_how_to_build_it(tmp_path: Path) -> None:
    """/chat/ on a server whose widget was never built: a 404 that says what to run."""
    empty = tmp_path / "not-built"
    empty.mkdir()
    (tmp_path / "srv").mkdir()
    server = make_server(tmp_path / "srv", http={"static_dir": str(empty)})
    server.start()
    try:
        base = f"http://127.0.0.1:{server.http_port}"
        page = httpx.get(f"{base}/chat/", timeout=10)
        other = httpx.get(f"{base}/chat/nothing.js", timeout=10)
    finally:
        server.stop()
    assert page.status_code == 404
    assert "npm ci && node build.mjs" in page.text
    assert other.status_code == 404 and "npm" not in other.text
