"""Forum membership changes reach live sessions (issue 10 part 2), against a real server.

A member is logged in to a running ``xmppd serve`` over TCP (forum session id as the
password), WebSocket (the forum's cookies, SASL EXTERNAL), BOSH (session id) and a TCP
connection that went to sleep (XEP-0198 detached), all in the room; another member
watches the room. Then the forum bans, deactivates or deletes the member, or the forum
session is logged out, in the real phpBB 3.3 schema on MariaDB and PostgreSQL: every
session ends with ``policy-violation`` naming why within ``recheck_interval`` + 2 s, the
room sees each one leave, and neither XEP-0198 resumption, BOSH session restore nor the
cached session id brings any of it back.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import trio
from lxml import etree

from tests.bosh_client import Bosh, BoshError
from tests.bosh_client import q as bq
from tests.phpbb.fixtures import PhpbbDatabase, phpbb_db  # noqa: F401 - fixture
from tests.raw_client import RawClient
from tests.slix import run
from tests.ws_client import BIND, CLIENT, SASL, STREAMS, WsXmpp, q, stream_error
from tests.xmppd_process import XmppdProcess, running_server
from xmppd.auth.phpbb import PhpbbAuthenticator
from xmppd.auth.phpbb_recheck import End, recheck_sync
from xmppd.auth.phpbb_sessions import ForumLogin
from xmppd.config import PhpbbConfig

pytestmark = pytest.mark.integration

INTERVAL = 1.0
BOUND = INTERVAL + 2.0  # the acceptance bound: recheck_interval + 2 s
SM = "urn:xmpp:sm:3"
MUC = "http://jabber.org/protocol/muc"
MUC_USER = "http://jabber.org/protocol/muc#user"
ROOM = "sax@conference.localhost"
COOKIE = "saxforum"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def server_config(db: PhpbbDatabase, **phpbb: object) -> dict[str, Any]:
    return {
        "auth": {
            "backend": "phpbb",
            "phpbb": {
                "url": db.url,
                "recheck_interval": INTERVAL,
                "cache_seconds": 300,  # a cached SID must not outlive the re-check's verdict
                **phpbb,
            },
        },
        "sm": {"resume_timeout": 120},
        "http": {"phpbb_cookie_auth": True},
        "limits": {"auth_failures_per_minute": 100},
    }


# ---------------------------------------------------------------- TCP (raw socket)
def plain(user: str, secret: str) -> bytes:
    token = base64.b64encode(f"\0{user}\0{secret}".encode())
    return b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + token + b"</auth>"


def tcp_auth(server: XmppdProcess, user: str, secret: str, source: str | None = None) -> RawClient:
    """PLAIN login and stream restart, not bound yet."""
    client = RawClient(server.port, source=source)
    client.open_stream()
    client.send(plain(user, secret))
    client.read_until(b"</success>")
    client.buffer = b""
    client.open_stream()
    client.buffer = b""
    return client


def tcp_refused(server: XmppdProcess, user: str, secret: str) -> bytes:
    """The SASL failure a login gets (asserts it is one)."""
    client = RawClient(server.port)
    try:
        client.open_stream()
        client.send(plain(user, secret))
        got = client.read_until(b"</failure>")
        assert b"<success" not in got
        return got[got.index(b"<failure") :]
    finally:
        client.close()


def tcp_session(
    server: XmppdProcess, user: str, secret: str, resource: str, source: str | None = None
) -> tuple[RawClient, str]:
    """Bound, stream management on (resumable), in the room as ``resource``: (client, token)."""
    client = tcp_auth(server, user, secret, source)
    client.send(
        b"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>"
        + resource.encode()
        + b"</resource></bind></iq>"
    )
    client.read_until(b"</iq>")
    client.buffer = b""
    client.send(f"<enable xmlns='{SM}' resume='true'/>".encode())
    data = client.read_until(b"<enabled")
    data = client.read_until(b"/>")
    found = re.search(rb'<enabled[^>]* id="([^"]+)"', data)
    assert found, data
    client.buffer = b""
    client.send(
        f"<presence to='{ROOM}/{resource}'><x xmlns='{MUC}'><history maxstanzas='0'/></x>"
        "</presence>".encode()
    )
    client.read_until(b'code="110"')
    client.buffer = b""
    return client, found.group(1).decode()


def tcp_alive(client: RawClient) -> bool:
    """An XEP-0198 request answered: the session still serves this connection."""
    client.buffer = b""
    client.send(f"<r xmlns='{SM}'/>".encode())
    return b"<a " in client.read_until(b"<a ", timeout=10)


def tcp_resume_fails(server: XmppdProcess, user: str, secret: str, token: str) -> None:
    client = tcp_auth(server, user, secret)
    try:
        client.send(f"<resume xmlns='{SM}' previd='{token}' h='0'/>".encode())
        reply = client.read_until(b"</failed>")
        assert b"<item-not-found" in reply and b"<resumed" not in reply, reply
    finally:
        client.close()


async def tcp_stream_error(client: RawClient, started: float) -> tuple[float, str, str]:
    """(seconds after ``started``, condition, text) of the stream error that ends it."""
    data = await asyncio.to_thread(client.read_to_close, 30.0)
    elapsed = time.monotonic() - started
    found = re.search(rb"<stream:error>(.*?)</stream:error>", data, re.S)
    assert found, data[-500:]
    error = etree.fromstring(
        b"<e xmlns:stream='http://etherx.jabber.org/streams'>" + found.group(0) + b"</e>"
    )[0]
    return elapsed, _condition(error), _text(error)


def _condition(error: etree._Element) -> str:
    names = [etree.QName(c).localname for c in error if etree.QName(c).localname != "text"]
    return names[0] if names else ""


def _text(error: etree._Element) -> str:
    return next((c.text or "" for c in error if etree.QName(c).localname == "text"), "")


# -------------------------------------------------------------- WebSocket (cookies)
async def ws_session(server: XmppdProcess, user_id: int, sid: str, nick: str) -> tuple[WsXmpp, str]:
    """A WebSocket logged in with the forum's cookies (SASL EXTERNAL), managed, in the room."""
    ws = await WsXmpp.connect(
        f"ws://127.0.0.1:{server.http_port}/xmpp-websocket",
        origin=f"http://127.0.0.1:{server.http_port}",
        headers={"Cookie": f"{COOKIE}_u={user_id}; {COOKIE}_sid={sid}", "User-Agent": BROWSER},
    )
    features = await ws.open()
    assert "EXTERNAL" in [m.text for m in features.iter(q(SASL, "mechanism"))]
    await ws.send(f"<auth xmlns='{SASL}' mechanism='EXTERNAL'>=</auth>")
    assert (await ws.recv()).tag == q(SASL, "success")
    await ws.open()
    await ws.send(
        f"<iq xmlns='{CLIENT}' type='set' id='b'><bind xmlns='{BIND}'>"
        f"<resource>{nick}</resource></bind></iq>"
    )
    assert (await ws.recv()).get("type") == "result"
    await ws.send(f"<enable xmlns='{SM}' resume='true'/>")
    token = (await ws.recv_until(q(SM, "enabled"))).get("id") or ""
    await ws.send(
        f"<presence xmlns='{CLIENT}' to='{ROOM}/{nick}'>"
        f"<x xmlns='{MUC}'><history maxstanzas='0'/></x></presence>"
    )
    while True:
        el = await ws.recv()
        if (
            el.tag == q(CLIENT, "presence")
            and el.find(f".//{{{MUC_USER}}}status[@code='110']") is not None
        ):
            return ws, token


async def ws_stream_error(ws: WsXmpp, started: float) -> tuple[float, str, str]:
    while True:
        el = await ws.recv(timeout=30)
        if stream_error(el) is not None:
            return time.monotonic() - started, stream_error(el) or "", _text(el)


# ----------------------------------------------------------------------- BOSH
async def bosh_session(server: XmppdProcess, user: str, sid: str, nick: str) -> tuple[Bosh, str]:
    bosh = Bosh(server.http_port)
    await bosh.login(user, sid, resource=nick)
    await bosh.send(f"<enable xmlns='{SM}' resume='true'/>")
    token = (await bosh.expect(lambda e: e.tag == bq("enabled", SM))).get("id") or ""
    await bosh.join(ROOM, nick)
    bosh.inbox.clear()
    return bosh, token


async def bosh_stream_error(bosh: Bosh, started: float) -> tuple[float, str, str]:
    """Long-poll until the session is terminated; the stream error it carried."""
    terminated = ""
    while not terminated:
        try:
            await bosh.send()
        except BoshError as exc:
            terminated = str(exc)
    elapsed = time.monotonic() - started
    assert "remote-stream-error" in terminated, terminated
    error = next(el for el in bosh.inbox if el.tag == bq("error", STREAMS))
    return elapsed, _condition(error), _text(error)


async def bosh_restore_fails(bosh: Bosh) -> str:
    """Strophe's session restore: the same sid, the next rid. Returns the condition."""
    status, raw = await bosh.post(bosh.body(rid=bosh.rid + 1))
    assert status == 200, status
    el = etree.fromstring(raw)
    assert el.get("type") == "terminate", raw
    assert not [c for c in el if c.tag == bq("message")]
    return el.get("condition") or ""


# ------------------------------------------------------------------ the observer
class Observer:
    """Another member in the room, over WebSocket: records who leaves and how."""

    def __init__(self, ws: WsXmpp) -> None:
        self.ws = ws
        self.left: dict[str, etree._Element] = {}

    @classmethod
    async def join(cls, server: XmppdProcess, user: str, password: str) -> Observer:
        ws = await WsXmpp.connect(f"ws://127.0.0.1:{server.http_port}/xmpp-websocket")
        await ws.login(user, password, resource="watch")
        await ws.send(
            f"<presence xmlns='{CLIENT}' to='{ROOM}/{user}'>"
            f"<x xmlns='{MUC}'><history maxstanzas='0'/></x></presence>"
        )
        while True:
            el = await ws.recv()
            if el.get("from") == f"{ROOM}/{user}":
                return cls(ws)

    async def wait_left(self, nicks: set[str], timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while not nicks <= set(self.left):
                el = await self.ws.recv(timeout)
                if el.tag == q(CLIENT, "presence") and el.get("type") == "unavailable":
                    self.left[(el.get("from") or "").split("/", 1)[1]] = el

    async def alive(self) -> bool:
        await self.ws.send(
            f"<iq xmlns='{CLIENT}' type='get' id='p' to='localhost'>"
            "<ping xmlns='urn:xmpp:ping'/></iq>"
        )
        while True:
            el = await self.ws.recv()
            if el.tag == q(CLIENT, "iq") and el.get("id") == "p":
                return el.get("type") == "result"


def status_codes(presence: etree._Element) -> set[str]:
    return {s.get("code") or "" for s in presence.iter(f"{{{MUC_USER}}}status")}


# ------------------------------------------------------------------- the forum
def ban(db: PhpbbDatabase, uid: int, sid: str) -> None:
    db.add_ban(user_id=uid)


def deactivate(db: PhpbbDatabase, uid: int, sid: str) -> None:
    db.execute("UPDATE {p}users SET user_type = 1 WHERE user_id = :u", u=uid)


def delete_member(db: PhpbbDatabase, uid: int, sid: str) -> None:
    # phpBB's user_delete() leaves the session rows to the garbage collector
    db.execute("DELETE FROM {p}users WHERE user_id = :u", u=uid)


def logout(db: PhpbbDatabase, uid: int, sid: str) -> None:
    db.execute("DELETE FROM {p}sessions WHERE session_id = :s", s=sid)


ACTIONS: dict[str, tuple[Callable[[PhpbbDatabase, int, str], None], str, str]] = {
    # action: (change in the forum, stream error text, what a new SID login gets)
    "ban": (ban, "you are banned from the forum", "account-disabled"),
    "deactivate": (deactivate, "your forum account was deactivated", "account-disabled"),
    "delete": (delete_member, "your forum account was deleted", "not-authorized"),
    "logout": (logout, "your forum session ended (logged out)", "not-authorized"),
}


def _bcrypt(password: str) -> str:
    import bcrypt

    made = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
    return "$2y$" + made[4:]


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_forum_change_ends_every_session_of_the_member(
    tmp_path: Path,
    phpbb_db: PhpbbDatabase,  # noqa: F811
    action: str,
) -> None:
    change, text, relogin = ACTIONS[action]
    now = int(time.time())
    phpbb_db.set_config("cookie_name", COOKIE)
    jane = phpbb_db.add_user("jane", password_hash=_bcrypt("jane pw"))
    sid = phpbb_db.add_session(jane, session_time=now, browser=BROWSER)
    phpbb_db.add_user("bob", password_hash=_bcrypt("bob pw"))

    with running_server(tmp_path, **server_config(phpbb_db)) as server:
        # the sleeper: a laptop that went to sleep, its session waiting for a <resume/>
        sleeper, sleeper_token = tcp_session(server, "jane", sid, "sleeper")
        sleeper.close()
        deadline = time.monotonic() + 10
        while "event=session_detached jid=jane@localhost/sleeper" not in server.log():
            assert time.monotonic() < deadline, "the sleeper was never detached"
            time.sleep(0.05)
        tcp, tcp_token = tcp_session(server, "jane", sid, "tcp")
        by_password, _ = tcp_session(server, "jane", "jane pw", "desk")

        async def scenario() -> dict[str, Any]:
            observer = await Observer.join(server, "bob", "bob pw")
            ws, ws_token = await ws_session(server, jane, sid, "ws")
            bosh, bosh_token = await bosh_session(server, "jane", sid, "bosh")
            change(phpbb_db, jane, sid)
            started = time.monotonic()
            got = await asyncio.gather(
                tcp_stream_error(tcp, started),
                ws_stream_error(ws, started),
                bosh_stream_error(bosh, started),
            )
            member_action = action != "logout"
            nicks = {"sleeper", "tcp", "ws", "bosh"} | ({"desk"} if member_action else set())
            await observer.wait_left(nicks)
            restored = await bosh_restore_fails(bosh)
            await bosh.aclose()
            await ws.close()
            alive = await observer.alive()
            await observer.ws.close()
            return {
                "errors": got,
                "left": observer.left,
                "restored": restored,
                "alive": alive,
                "tokens": (ws_token, bosh_token),
            }

        result = run(scenario, timeout=90)
        for elapsed, condition, said in result["errors"]:
            assert condition == "policy-violation"
            assert said == text
            assert elapsed <= BOUND, f"stream error after {elapsed:.2f} s (bound {BOUND} s)"
        for nick, presence in result["left"].items():
            # an ordinary exit: the server ended the session, no moderator kicked anyone
            assert status_codes(presence).isdisjoint({"307", "333"}), nick
            item = presence.find(f".//{{{MUC_USER}}}item")
            assert item is not None and item.get("role") == "none", nick
        assert result["restored"] in ("remote-stream-error", "item-not-found")
        assert result["alive"]  # the other member was never touched

        # none of it comes back: not from the session-id cache, not by resumption
        assert f"<{relogin}" in tcp_refused(server, "jane", sid).decode()
        if action == "logout":
            assert tcp_alive(by_password)  # a password login does not hang on a forum session
            for token in (tcp_token, sleeper_token, *result["tokens"]):
                tcp_resume_fails(server, "jane", "jane pw", token)
            by_password.close()
        else:
            assert b"policy-violation" in by_password.read_to_close(10)
            assert f"<{relogin}" in tcp_refused(server, "jane", "jane pw").decode()
        tcp.close()
        log = server.log()
        assert sid not in log
        assert log.count("event=phpbb_session_revoked") == (4 if action == "logout" else 5)


# ------------------------------------------------------- forum sessions, in detail
def wait_log(server: XmppdProcess, pattern: str, timeout: float = 15.0, count: int = 1) -> None:
    """Until ``pattern`` (a regex) occurs ``count`` times in the server log."""
    deadline = time.monotonic() + timeout
    while len(re.findall(pattern, server.log())) < count:
        assert time.monotonic() < deadline, f"{pattern!r} x{count} not in the log"
        time.sleep(0.05)


def stream_error_of(client: RawClient) -> str:
    """The text of the stream error that ends ``client`` (asserts policy-violation)."""
    _, condition, text = run(lambda: tcp_stream_error(client, time.monotonic()))
    assert condition == "policy-violation"
    return text


def add_key(db: PhpbbDatabase, uid: int, last_login: int, ip: str = "127.0.0.1") -> str:
    """An autologin key row as phpBB's ``set_login_key()`` writes it; returns key_id."""
    key_id = secrets.token_hex(16)
    db.execute(
        "INSERT INTO {p}sessions_keys (key_id, user_id, last_ip, last_login)"
        " VALUES (:k, :u, :ip, :t)",
        k=key_id,
        u=uid,
        ip=ip,
        t=last_login,
    )
    return key_id


def test_session_id_login_follows_its_browser_to_a_new_forum_session(
    tmp_path: Path,
    phpbb_db: PhpbbDatabase,  # noqa: F811
) -> None:
    now = int(time.time())
    jane = phpbb_db.add_user("jane")
    first = phpbb_db.add_session(jane, session_time=now, browser=BROWSER)
    phpbb_db.add_session(jane, session_time=now, browser="Chrome/126")  # another browser
    with running_server(tmp_path, **server_config(phpbb_db)) as server:
        client, _ = tcp_session(server, "jane", first, "web")
        # the same browser got a new forum session (phpBB compares the first 149 bytes,
        # case-insensitively, trimmed); then the first one was logged out
        second = phpbb_db.add_session(jane, session_time=now, browser=BROWSER.upper() + "  ")
        logout(phpbb_db, jane, first)
        wait_log(
            server, r"event=phpbb_session_followed jid=jane@localhost/web .* on=browser-session"
        )
        assert tcp_alive(client)
        assert b"<not-authorized" in tcp_refused(server, "jane", first)  # not from the cache
        # logging out of the session it follows now ends it; Chrome's session does not count
        logout(phpbb_db, jane, second)
        assert stream_error_of(client) == "your forum session ended (logged out)"
        client.close()
        assert first not in server.log() and second not in server.log()


def test_following_the_browser_can_be_switched_off(
    tmp_path: Path,
    phpbb_db: PhpbbDatabase,  # noqa: F811
) -> None:
    now = int(time.time())
    jane = phpbb_db.add_user("jane")
    first = phpbb_db.add_session(jane, session_time=now, browser=BROWSER)
    phpbb_db.add_session(jane, session_time=now, browser=BROWSER)
    config = server_config(phpbb_db, recheck_follow_browser=False)
    with running_server(tmp_path, **config) as server:
        client, _ = tcp_session(server, "jane", first, "web")
        logout(phpbb_db, jane, first)
        assert stream_error_of(client) == "your forum session ended (logged out)"
        client.close()


def test_autologin_key_keeps_a_garbage_collected_session_until_logout(
    tmp_path: Path,
    phpbb_db: PhpbbDatabase,  # noqa: F811
) -> None:
    now = int(time.time())
    jane = phpbb_db.add_user("jane")
    sid = phpbb_db.add_session(jane, session_time=now, browser=BROWSER, autologin=True)
    key = add_key(phpbb_db, jane, now + 1)  # written in the request that made the session
    add_key(phpbb_db, jane, now, ip="192.0.2.7")  # "remember me" on another device
    with running_server(tmp_path, **server_config(phpbb_db)) as server:
        client, _ = tcp_session(server, "jane", sid, "web")
        wait_log(server, r"event=phpbb_autologin_key_found jid=jane@localhost/web ")
        # phpBB's garbage collection drops the idle session row, keeps the key
        logout(phpbb_db, jane, sid)
        wait_log(server, r"event=phpbb_session_followed jid=jane@localhost/web .* on=autologin-key")
        assert tcp_alive(client)
        # the next page view logs the browser in with its key: key rotated, new session
        later = now + 5
        new_key = secrets.token_hex(16)
        phpbb_db.execute(
            "UPDATE {p}sessions_keys SET key_id = :n, last_login = :t WHERE key_id = :k",
            n=new_key,
            t=later,
            k=key,
        )
        new_sid = phpbb_db.add_session(jane, session_time=later, browser=BROWSER, autologin=True)
        wait_log(
            server, r"event=phpbb_session_followed jid=jane@localhost/web .* on=browser-session"
        )
        wait_log(server, r"event=phpbb_autologin_key_found jid=jane@localhost/web ", count=2)
        assert tcp_alive(client)
        # logout deletes the session and its key: nothing keeps the chat session
        logout(phpbb_db, jane, new_sid)
        phpbb_db.execute("DELETE FROM {p}sessions_keys WHERE key_id = :k", k=new_key)
        assert stream_error_of(client) == "your forum session ended (logged out)"
        client.close()


def test_forum_session_expired_by_the_forums_rules(
    tmp_path: Path,
    phpbb_db: PhpbbDatabase,  # noqa: F811
) -> None:
    now = int(time.time())
    jane = phpbb_db.add_user("jane")
    bob = phpbb_db.add_user("bob")
    # valid for a while yet: session_length 3600 (+60 s phpBB allows)
    sid = phpbb_db.add_session(jane, session_time=now - 3000, browser=BROWSER)
    remembered = phpbb_db.add_session(bob, session_time=now - 7 * 86400, autologin=True)
    config = server_config(phpbb_db, cache_seconds=1)  # the forum's settings, re-read each second
    with running_server(tmp_path, **config) as server:
        jane_client, _ = tcp_session(server, "jane", sid, "web")
        bob_client, _ = tcp_session(server, "bob", remembered, "phone")
        # no page view for longer than session_length
        phpbb_db.execute(
            "UPDATE {p}sessions SET session_time = :t WHERE session_id = :s", t=now - 3700, s=sid
        )
        assert stream_error_of(jane_client) == "your forum session expired"
        assert tcp_alive(bob_client)  # autologin sessions outlive session_length…
        phpbb_db.set_config("allow_autologin", 0)  # …unless the board stops allowing them
        assert stream_error_of(bob_client) == "your forum session expired"
        jane_client.close()
        bob_client.close()


def test_address_and_email_bans_exclusions_and_founders(
    tmp_path: Path,
    phpbb_db: PhpbbDatabase,  # noqa: F811
) -> None:
    users = {
        "jane": phpbb_db.add_user("jane", password_hash=_bcrypt("pw")),
        "carol": phpbb_db.add_user(
            "carol", password_hash=_bcrypt("pw"), email="carol@spam.example"
        ),
        "dave": phpbb_db.add_user("dave", password_hash=_bcrypt("pw")),
        "boss": phpbb_db.add_user("boss", password_hash=_bcrypt("pw"), user_type=3),
        "bob": phpbb_db.add_user("bob", password_hash=_bcrypt("pw")),
    }
    sources = {"jane": "127.0.0.2", "dave": "127.0.0.2", "boss": "127.0.0.2"}
    with running_server(tmp_path, **server_config(phpbb_db)) as server:
        clients = {
            name: tcp_session(server, name, "pw", name, source=sources.get(name))[0]
            for name in users
        }
        # exclusions first: a round may run between any two of these statements
        phpbb_db.add_ban(user_id=users["dave"], exclude=True)
        phpbb_db.add_ban(email="*@SPAM.example")
        phpbb_db.add_ban(user_id=users["boss"])
        phpbb_db.add_ban(ip="127.*.2")  # last: its round saw every row above
        assert stream_error_of(clients["jane"]) == "you are banned from the forum"
        assert stream_error_of(clients["carol"]) == "you are banned from the forum"
        for name in ("dave", "boss", "bob"):  # excluded, founder, another address
            assert tcp_alive(clients[name]), name
        for client in clients.values():
            client.close()
        log = server.log()
        assert re.search(
            r"event=phpbb_session_revoked jid=jane@localhost/jane .*reason=banned-by-ip", log
        )
        assert re.search(r"jid=carol@localhost/carol .*reason=banned-by-email", log)


def test_unreadable_forum_skips_the_round_and_ends_nobody(
    tmp_path: Path,
    phpbb_db: PhpbbDatabase,  # noqa: F811
) -> None:
    now = int(time.time())
    jane = phpbb_db.add_user("jane")
    sid = phpbb_db.add_session(jane, session_time=now, browser=BROWSER)
    with running_server(tmp_path, **server_config(phpbb_db)) as server:
        client, _ = tcp_session(server, "jane", sid, "web")
        phpbb_db.execute("ALTER TABLE {p}users RENAME TO {p}users_away")
        wait_log(server, r"event=phpbb_recheck_skipped logins=1", count=2)
        assert tcp_alive(client)  # the forum could not be asked: nobody is thrown out
        phpbb_db.execute("ALTER TABLE {p}users_away RENAME TO {p}users")
        phpbb_db.add_ban(user_id=jane)
        assert stream_error_of(client) == "you are banned from the forum"
        client.close()


# --------------------------------------------------------------- the query shape
def test_one_round_reads_thousands_of_members_in_a_few_batched_queries(
    phpbb_db: PhpbbDatabase,  # noqa: F811
) -> None:
    now = int(time.time())
    members = phpbb_db.add_members(2500, session_time=now, browser=BROWSER)
    phpbb_db.add_ban(user_id=members[7][0])
    phpbb_db.add_ban(ip="198.51.100.*")
    logins = [ForumLogin(uid, "sid", "192.0.2.1", sid=sid, browser=BROWSER) for uid, sid in members]
    logins[9].peer_ip = "198.51.100.20"
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    async def one_round() -> list[Any]:
        auth = PhpbbAuthenticator(PhpbbConfig(url=phpbb_db.url), "localhost")
        try:
            call = functools.partial(recheck_sync, auth=auth, logins=logins, now=now, follow=True)
            return await auth.read(call)
        finally:
            await auth.aclose()

    sa.event.listen(sa.Engine, "before_cursor_execute", count)
    try:
        verdicts = trio.run(one_round)
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", count)
    assert verdicts == [End(7, "banned-by-user", True), End(9, "banned-by-ip", True)]
    reads = [s for s in statements if "sessions" in s or "users" in s or "banlist" in s]
    # per 1,000 members: the members, their user bans, their sessions; plus one query
    # for the address and e-mail bans — never one per member
    assert len(reads) == 3 * 3 + 1, reads
