"""Failed-login limits and forum bans over real sockets (issue 13, findings 4 and 12).

The limiter must count guesses against the account the backend resolved, whatever the
spelling; attempts still being checked count too, so concurrent guesses cannot all slip
under the limit; and a forum's IP and e-mail bans apply to every kind of login.

Each connection can come from its own loopback address (Linux routes all of 127/8 to
``lo``), so the per-address limit and the per-account limit are tested apart.
"""

from __future__ import annotations

import base64
import itertools
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from tests.phpbb.fixtures import PhpbbDatabase, phpbb_database
from tests.raw_client import RawClient
from tests.xmppd_process import XmppdProcess, running_server

pytestmark = pytest.mark.integration

SASL_NS = b"urn:ietf:params:xml:ns:xmpp-sasl"
LIMIT = 10  # limits.auth_failures_per_minute, the default
_ANSWER = re.compile(rb"<(success|challenge)\b|<failure[^>]*>\s*<([a-z-]+)")


def addresses(third: int) -> Iterator[str]:
    """Fresh loopback source addresses 127.0.<third>.1, .2, …"""
    return (f"127.0.{third}.{n}" for n in itertools.count(1))


def forum_hash(password: str, rounds: int = 4) -> str:
    made = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds)).decode()
    return "$2y$" + made[4:]


def phpbb_auth(forum: PhpbbDatabase) -> dict[str, object]:
    return {"backend": "phpbb", "phpbb": {"url": forum.url, "table_prefix": forum.prefix}}


def connect(server: XmppdProcess, source: str) -> RawClient:
    client = RawClient(server.port, source=source, timeout=20.0)
    client.open_stream()
    client.buffer = b""
    return client


def auth_element(mechanism: str, payload: bytes) -> bytes:
    token = base64.b64encode(payload)
    return b"<auth xmlns='%s' mechanism='%s'>%s</auth>" % (SASL_NS, mechanism.encode(), token)


def plain(user: str, password: str) -> bytes:
    return auth_element("PLAIN", b"\0" + user.encode() + b"\0" + password.encode())


def scram_first(user: str) -> bytes:
    return auth_element("SCRAM-SHA-256", b"n,,n=" + user.encode() + b",r=fyko+d2lbbFgONRv9qkxdawL")


def answer(client: RawClient, timeout: float = 20.0) -> str:
    """``success``, ``challenge`` or the SASL failure condition the server sent next."""
    deadline = time.monotonic() + timeout
    while True:
        match = _ANSWER.search(client.buffer)
        if match:
            client.buffer = client.buffer[match.end() :]
            return (match.group(1) or match.group(2)).decode()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no SASL answer; got {client.buffer[-300:]!r}")
        client.sock.settimeout(remaining)
        chunk = client.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed without a SASL answer; got {client.buffer!r}")
        client.buffer += chunk


def attempt(server: XmppdProcess, source: str, user: str, password: str) -> str:
    """One PLAIN login on a fresh connection from ``source``; the server's answer."""
    client = connect(server, source)
    try:
        client.send(plain(user, password))
        return answer(client)
    finally:
        client.close()


def concurrently(server: XmppdProcess, logins: list[tuple[str, str, str]]) -> Counter[str]:
    """Open every connection first, then send all the ``<auth/>``s at once."""
    clients = [connect(server, source) for source, _, _ in logins]
    try:
        for client, (_, user, password) in zip(clients, logins, strict=True):
            client.send(plain(user, password))
        return Counter(answer(client) for client in clients)
    finally:
        for client in clients:
            client.close()


# -- finding 4a: the limit follows the account, not the spelling ------------------------


def test_phpbb_limit_is_keyed_on_the_resolved_account(tmp_path: Path) -> None:
    with phpbb_database("mariadb") as forum:
        forum.add_user("alice", password_hash=forum_hash("right pw"))
        # phpBB folds Cyrillic U+0430 to "a" in username_clean: "anna" names her too
        forum.add_user("\u0430nna", username_clean="anna", password_hash=forum_hash("anna pw"))
        with running_server(tmp_path, auth=phpbb_auth(forum)) as server:
            source = addresses(1)
            for _ in range(LIMIT):
                assert attempt(server, next(source), "alice", "wrong") == "not-authorized"
            # other spellings of the same member get no fresh budget
            for name in ("Alice", "ALICE", " alice", "\uff41lice"):
                assert attempt(server, next(source), name, "wrong") == "temporary-auth-failure"
            # control characters are refused before any lookup, right password or not
            for name in ("al\x01ice", "al\x02ice", "al\x7fice", "alice\x85"):
                assert attempt(server, next(source), name, "right pw") == "not-authorized"
            # and the right password under her own name waits like any other guess
            assert attempt(server, next(source), "alice", "right pw") == "temporary-auth-failure"

            # two spellings that clean differently but resolve to one member share a budget
            for _ in range(LIMIT):
                assert attempt(server, next(source), "anna", "wrong") == "not-authorized"
            assert attempt(server, next(source), "\u0430nna", "wrong") == "temporary-auth-failure"
            assert attempt(server, next(source), "\u0430nna", "anna pw") == "temporary-auth-failure"
            log = server.log()
    assert log.count("reason=wrong-password") == 2 * LIMIT  # no guess beyond the limit
    assert log.count("reason=control-characters") == 4
    assert "event=authenticated" not in log


def test_internal_backend_limit_is_keyed_on_the_localpart(tmp_path: Path) -> None:
    with running_server(tmp_path, users=("erin",)) as server:
        source = addresses(2)
        for _ in range(LIMIT):
            assert attempt(server, next(source), "erin", "wrong") == "not-authorized"
        for name in ("ERIN", "\uff25rin"):  # nodeprep maps both to "erin"
            assert attempt(server, next(source), name, "secret") == "temporary-auth-failure"
        client = connect(server, next(source))  # SCRAM names the account in client-first
        client.send(scram_first("Erin"))
        assert answer(client) == "temporary-auth-failure"
        client.close()
        assert attempt(server, next(source), "er\x01in", "secret") == "not-authorized"


# -- finding 4b: attempts in flight count -----------------------------------------------


def test_concurrent_guesses_verify_at_most_the_limit(tmp_path: Path) -> None:
    with phpbb_database("mariadb") as forum:
        # a slow hash keeps every guess in flight while the others arrive
        forum.add_user("carol", password_hash=forum_hash("right pw", rounds=10))
        with running_server(tmp_path, auth=phpbb_auth(forum)) as server:
            source = addresses(3)
            one_account = [(next(source), "carol", f"guess{i}") for i in range(40)]
            assert concurrently(server, one_account) == {
                "not-authorized": LIMIT,
                "temporary-auth-failure": 40 - LIMIT,
            }
            one_address = [("127.0.4.1", f"nobody{i}", "guess") for i in range(40)]
            assert concurrently(server, one_address) == {
                "not-authorized": LIMIT,
                "temporary-auth-failure": 40 - LIMIT,
            }
            log = server.log()
    # the backend checked exactly LIMIT secrets per burst (the rest never reached it)
    assert log.count("reason=wrong-password") == LIMIT
    assert log.count("reason=unknown-user") == LIMIT


def test_scram_exchanges_in_flight_hold_the_accounts_budget(tmp_path: Path) -> None:
    with running_server(tmp_path, users=("dave",)) as server:
        source = addresses(5)
        pending = [connect(server, next(source)) for _ in range(LIMIT)]
        try:
            for client in pending:
                client.send(scram_first("dave"))
                assert answer(client) == "challenge"  # stored keys fetched, proof not yet sent
            extra = connect(server, next(source))
            extra.send(scram_first("DAVE"))
            assert answer(extra) == "temporary-auth-failure"
            # an aborted exchange gives its place back at once
            pending[0].send(b"<abort xmlns='%s'/>" % SASL_NS)
            assert answer(pending[0]) == "aborted"
            extra.send(scram_first("dave"))
            assert answer(extra) == "challenge"
            extra.close()
        finally:
            for client in pending:
                client.close()


# -- finding 12: the forum's IP and e-mail bans -------------------------------------------


def test_forum_ip_and_email_bans_refuse_password_and_session_logins(tmp_path: Path) -> None:
    now = int(time.time())
    banned_net, clean_net = "127.0.9.7", "127.0.10.7"
    with phpbb_database("mariadb") as forum:
        pw = forum_hash("pw")

        def member(name: str, email: str = "") -> tuple[str, str, int]:
            uid = forum.add_user(name, password_hash=pw, email=email)
            return name, forum.add_session(uid, session_time=now, ip=banned_net), uid

        wanderer = member("wanderer")
        spammer = member("spammer", "Spammer@JUNK.example")
        trusted = member("trusted", "trusted@junk.example")
        reformed = member("reformed", "reformed@old.example")
        friend = member("friend")
        forum.add_ban(ip="127.0.9.*")
        forum.add_ban(email="*@junk.example")
        forum.add_ban(email="reformed@old.example", end=now - 60)  # expired
        forum.add_ban(email="trusted@junk.example", exclude=True)
        forum.add_ban(user_id=friend[2], exclude=True)
        with running_server(tmp_path, auth=phpbb_auth(forum)) as server:
            for name, sid, _ in (wanderer, spammer, trusted, reformed, friend):
                for secret in ("pw", sid):
                    from_banned = attempt(server, banned_net, name, secret)
                    from_clean = attempt(server, clean_net, name, secret)
                    if name == "wanderer":  # banned by address only
                        assert (from_banned, from_clean) == ("account-disabled", "success")
                    elif name == "spammer":  # banned by e-mail, wherever they are
                        assert (from_banned, from_clean) == ("account-disabled",) * 2
                    elif name == "reformed":  # e-mail ban expired, the IP ban still holds
                        assert (from_banned, from_clean) == ("account-disabled", "success")
                    else:  # an exclusion wins over both
                        assert (from_banned, from_clean) == ("success", "success")
            log = server.log()
    assert log.count("reason=banned") == 8
