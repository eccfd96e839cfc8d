"""PhpbbAuthenticator against real phpBB 3.3 tables on MariaDB and PostgreSQL.

Every DB test runs twice (``phpbb_db`` is parametrised); an unreachable database server
fails the test. Hashes are made at test time with the libraries phpBB's formats come
from (bcrypt, argon2-cffi) and, for phpass, a PHP-made vector (see test_phpass.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import bcrypt
import pytest
import trio
from argon2 import PasswordHasher

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # so "tests.phpbb" imports without a conftest
    sys.path.insert(0, str(ROOT))

from tests.phpbb import fixtures  # noqa: E402
from tests.phpbb.fixtures import PhpbbDatabase, phpbb_database  # noqa: E402
from xmppd.auth.base import AuthContext, AuthError  # noqa: E402
from xmppd.auth.phpbb import PhpbbAuthenticator  # noqa: E402
from xmppd.auth.phpbb_bans import ban_address_form, ban_trigger  # noqa: E402
from xmppd.auth.phpbb_names import clean_username  # noqa: E402
from xmppd.auth.phpbb_sessions import browser_matches, ip_matches, session_expired  # noqa: E402
from xmppd.config import PhpbbConfig  # noqa: E402

pytestmark = pytest.mark.integration
phpbb_db = fixtures.phpbb_db  # the fixture, parametrised over MariaDB and PostgreSQL

NOW = 1_700_000_000
CTX = AuthContext(peer_ip="192.0.2.10", transport="bosh", secure=True, user_agent="Mozilla/5.0")
PHPASS_PW, PHPASS_HASH = "pass1234", "$H$9/O41.qQjQNlleivjbckbSNpfS4xgh0"


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def bcrypt_2y(password: str) -> str:
    """A hash as PHP's password_hash(PASSWORD_BCRYPT) stores it: ``$2y$``."""
    made = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
    return "$2y$" + made[4:]


def argon2id(password: str) -> str:
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(password)


@contextlib.asynccontextmanager
async def make_auth(
    db: PhpbbDatabase, clock: Clock | None = None, **overrides: object
) -> AsyncIterator[PhpbbAuthenticator]:
    config = PhpbbConfig(url=db.url, table_prefix=db.prefix, **overrides)  # type: ignore[arg-type]
    auth = PhpbbAuthenticator(config, "example.org", clock=clock or Clock())
    try:
        yield auth
    finally:
        await auth.aclose()


async def condition_of(auth: PhpbbAuthenticator, user: str, secret: str, ctx=CTX) -> str:
    with pytest.raises(AuthError) as info:
        await auth.check_password(user, secret, ctx)
    return info.value.condition


class Gate:
    """Records what the backend claims for the failed-login limits; refuses ``spent``."""

    def __init__(self, spent: tuple[str, ...] = ()) -> None:
        self.claims: list[str] = []
        self.spent = set(spent)

    def claim(self, account: str) -> None:
        self.claims.append(account)
        if account in self.spent:
            raise AuthError("temporary-auth-failure")


def gated(gate: Gate, ctx: AuthContext = CTX) -> AuthContext:
    return dataclasses.replace(ctx, gate=gate)


async def outcome(auth: PhpbbAuthenticator, user: str, secret: str, ctx: AuthContext) -> str:
    try:
        await auth.check_password(user, secret, ctx)
    except AuthError as err:
        return err.condition
    return "ok"


# -- session ids ------------------------------------------------------------------------


async def test_valid_sid_logs_in(phpbb_db: PhpbbDatabase) -> None:
    uid = phpbb_db.add_user("Jane Doe")
    sid = phpbb_db.add_session(uid, session_time=NOW - 100)
    async with make_auth(phpbb_db) as auth:
        identity = await auth.check_password("jane\\20doe", sid, CTX)
    assert identity.localpart == "jane\\20doe"
    assert identity.display_name == "Jane Doe"
    assert identity.user_id == uid


async def test_sid_of_another_user_is_refused(phpbb_db: PhpbbDatabase) -> None:
    jane = phpbb_db.add_user("Jane")
    phpbb_db.add_user("Mallory")
    sid = phpbb_db.add_session(jane, session_time=NOW)
    async with make_auth(phpbb_db) as auth:
        assert await condition_of(auth, "mallory", sid) == "not-authorized"
        assert (await auth.check_password("jane", sid, CTX)).user_id == jane


async def test_unknown_sid_is_refused(phpbb_db: PhpbbDatabase) -> None:
    phpbb_db.add_user("Jane", password_hash=bcrypt_2y("hunter2"))
    async with make_auth(phpbb_db) as auth:
        assert await condition_of(auth, "jane", "0" * 32) == "not-authorized"


async def test_expired_sid_is_refused(phpbb_db: PhpbbDatabase) -> None:
    uid = phpbb_db.add_user("Jane")
    fresh = phpbb_db.add_session(uid, session_time=NOW - 3600)  # within length + 60
    stale = phpbb_db.add_session(uid, session_time=NOW - 3661)
    async with make_auth(phpbb_db) as auth:
        assert (await auth.check_password("jane", fresh, CTX)).user_id == uid
        assert await condition_of(auth, "jane", stale) == "not-authorized"


async def test_autologin_session_outlives_session_length(phpbb_db: PhpbbDatabase) -> None:
    uid = phpbb_db.add_user("Jane")
    sid = phpbb_db.add_session(uid, session_time=NOW - 10 * 86400, autologin=True)
    async with make_auth(phpbb_db) as auth:
        assert (await auth.check_password("jane", sid, CTX)).user_id == uid


async def test_autologin_refused_when_board_disallows_it(phpbb_db: PhpbbDatabase) -> None:
    uid = phpbb_db.add_user("Jane")
    sid = phpbb_db.add_session(uid, session_time=NOW - 10, autologin=True)
    phpbb_db.set_config("allow_autologin", 0)
    async with make_auth(phpbb_db) as auth:
        assert await condition_of(auth, "jane", sid) == "not-authorized"


async def test_autologin_refused_past_max_autologin_time(phpbb_db: PhpbbDatabase) -> None:
    uid = phpbb_db.add_user("Jane")
    recent = phpbb_db.add_session(uid, session_time=NOW - 86400 // 2, autologin=True)
    old = phpbb_db.add_session(uid, session_time=NOW - 3 * 86400, autologin=True)
    phpbb_db.set_config("max_autologin_time", 2)
    async with make_auth(phpbb_db) as auth:
        assert (await auth.check_password("jane", recent, CTX)).user_id == uid
        assert await condition_of(auth, "jane", old) == "not-authorized"


async def test_guest_bot_and_inactive_are_refused(phpbb_db: PhpbbDatabase) -> None:
    guest_sid = phpbb_db.add_session(1, session_time=NOW)
    bot = phpbb_db.add_user("Googlebot", user_type=2)
    bot_sid = phpbb_db.add_session(bot, session_time=NOW)
    inactive = phpbb_db.add_user("Newbie", user_type=1, password_hash=bcrypt_2y("pw"))
    inactive_sid = phpbb_db.add_session(inactive, session_time=NOW)
    async with make_auth(phpbb_db) as auth:
        assert await condition_of(auth, "anonymous", guest_sid) == "not-authorized"
        assert await condition_of(auth, "googlebot", bot_sid) == "not-authorized"
        assert await condition_of(auth, "newbie", inactive_sid) == "account-disabled"
        assert await condition_of(auth, "newbie", "pw") == "account-disabled"
        assert await condition_of(auth, "newbie", "wrong") == "not-authorized"


async def test_founder_logs_in(phpbb_db: PhpbbDatabase) -> None:
    uid = phpbb_db.add_user("Admin", user_type=3)
    phpbb_db.add_ban(user_id=uid)  # founders are never ban-checked, as in phpBB
    sid = phpbb_db.add_session(uid, session_time=NOW)
    async with make_auth(phpbb_db) as auth:
        assert (await auth.check_password("admin", sid, CTX)).user_id == uid


# -- bans -------------------------------------------------------------------------------


async def test_banned_user_is_refused(phpbb_db: PhpbbDatabase) -> None:
    uid = phpbb_db.add_user("Troll", password_hash=bcrypt_2y("pw"))
    sid = phpbb_db.add_session(uid, session_time=NOW)
    phpbb_db.add_ban(user_id=uid, end=NOW + 3600)
    async with make_auth(phpbb_db) as auth:
        assert await condition_of(auth, "troll", sid) == "account-disabled"
        assert await condition_of(auth, "troll", "pw") == "account-disabled"


async def test_expired_ban_is_ignored(phpbb_db: PhpbbDatabase) -> None:
    uid = phpbb_db.add_user("Reformed", password_hash=bcrypt_2y("pw"))
    sid = phpbb_db.add_session(uid, session_time=NOW)
    phpbb_db.add_ban(user_id=uid, end=NOW - 1)
    async with make_auth(phpbb_db) as auth:
        assert (await auth.check_password("reformed", sid, CTX)).user_id == uid
        assert (await auth.check_password("reformed", "pw", CTX)).user_id == uid


async def test_ban_exclusion_wins(phpbb_db: PhpbbDatabase) -> None:
    uid = phpbb_db.add_user("Lucky")
    sid = phpbb_db.add_session(uid, session_time=NOW)
    phpbb_db.add_ban(ip="192.0.2.*")  # bans CTX's address...
    phpbb_db.add_ban(user_id=uid, exclude=True)  # ...but this user is excluded
    other = phpbb_db.add_user("Unlucky")
    other_sid = phpbb_db.add_session(other, session_time=NOW)
    async with make_auth(phpbb_db) as auth:
        assert (await auth.check_password("lucky", sid, CTX)).user_id == uid
        assert await condition_of(auth, "unlucky", other_sid) == "account-disabled"


async def test_address_bans_apply_to_password_logins(phpbb_db: PhpbbDatabase) -> None:
    uid = phpbb_db.add_user("Roamer", password_hash=bcrypt_2y("pw"))
    sid = phpbb_db.add_session(uid, session_time=NOW)
    phpbb_db.add_ban(ip="192.0.2.*")
    elsewhere = AuthContext(peer_ip="198.51.100.4", user_agent="Mozilla/5.0")
    async with make_auth(phpbb_db) as auth:
        assert await condition_of(auth, "roamer", "pw") == "account-disabled"
        assert await condition_of(auth, "roamer", sid) == "account-disabled"
        assert (await auth.check_password("roamer", "pw", elsewhere)).user_id == uid
        assert await condition_of(auth, "roamer", "wrong") == "not-authorized"  # no ban oracle


async def test_email_bans_with_wildcards(phpbb_db: PhpbbDatabase) -> None:
    spammer = phpbb_db.add_user("Spammer", password_hash=bcrypt_2y("pw"), email="Sp@M.Junk.EXAMPLE")
    spam_sid = phpbb_db.add_session(spammer, session_time=NOW)
    kept = phpbb_db.add_user("Kept", password_hash=bcrypt_2y("pw"), email="kept@junk.example")
    old = phpbb_db.add_user("Old", password_hash=bcrypt_2y("pw"), email="old@gone.example")
    near = phpbb_db.add_user("Near", password_hash=bcrypt_2y("pw"), email="x@junk.example.org")
    phpbb_db.add_ban(email="*@*junk.example")
    phpbb_db.add_ban(email="KEPT@junk.example", exclude=True)
    phpbb_db.add_ban(email="old@gone.example", end=NOW - 1)
    async with make_auth(phpbb_db) as auth:
        assert await condition_of(auth, "spammer", "pw") == "account-disabled"
        assert await condition_of(auth, "spammer", spam_sid) == "account-disabled"
        assert (await auth.check_password("kept", "pw", CTX)).user_id == kept
        assert (await auth.check_password("old", "pw", CTX)).user_id == old
        assert (await auth.check_password("near", "pw", CTX)).user_id == near  # whole match


async def test_ipv6_bans_match_the_normalised_address(phpbb_db: PhpbbDatabase) -> None:
    uid = phpbb_db.add_user("Six", password_hash=bcrypt_2y("pw"))
    phpbb_db.add_ban(ip="2001:db8:1::*")
    phpbb_db.add_ban(ip="203.0.113.9")
    async with make_auth(phpbb_db) as auth:
        for peer in ("2001:DB8:1:0:0::7", "::ffff:203.0.113.9"):
            ctx = AuthContext(peer_ip=peer)
            assert await condition_of(auth, "six", "pw", ctx) == "account-disabled"
        assert (
            await auth.check_password("six", "pw", AuthContext(peer_ip="2001:db8:2::7"))
        ).user_id == uid


def test_ban_rules_in_isolation() -> None:
    def ban(userid=0, ip="", email="", end=0, exclude=0):
        return dataclasses.make_dataclass(
            "Ban", ["ban_userid", "ban_ip", "ban_email", "ban_end", "ban_exclude"]
        )(userid, ip, email, end, exclude)

    assert ban_trigger([ban(userid=5)], 5, "192.0.2.1", "", NOW) == "user"
    assert ban_trigger([ban(ip="192.0.2.1")], 5, "192.0.2.10", "", NOW) is None  # whole value
    assert ban_trigger([ban(ip="192.0.*.1")], 5, "192.0.77.1", "", NOW) == "ip"
    assert ban_trigger([ban(ip="*")], 5, "", "", NOW) is None  # address unknown
    assert ban_trigger([ban(email="*@EXAMPLE.org")], 5, "", "a@example.ORG", NOW) == "email"
    assert ban_trigger([ban(email="a.b@x.org")], 5, "", "aXb@x.org", NOW) is None  # "." literal
    assert ban_trigger([ban(userid=5, end=NOW - 1)], 5, "", "", NOW) is None
    assert ban_trigger([ban(userid=5, end=NOW + 1)], 5, "", "", NOW) == "user"
    excluded = [ban(ip="192.0.2.*"), ban(userid=5, exclude=1)]
    assert ban_trigger(excluded, 5, "192.0.2.3", "", NOW) is None
    assert ban_trigger(excluded[::-1], 5, "192.0.2.3", "", NOW) is None  # order does not matter
    assert ban_trigger(excluded, 6, "192.0.2.3", "", NOW) == "ip"
    stale_exclusion = [ban(userid=5), ban(userid=5, exclude=1, end=NOW - 1)]
    assert ban_trigger(stale_exclusion, 5, "", "", NOW) == "user"
    assert ban_address_form("2001:DB8:0:0::1") == "2001:db8::1"
    assert ban_address_form("::ffff:192.0.2.1") == "192.0.2.1"
    assert ban_address_form("fe80::1%eth0") == "fe80::1"


# -- failed-login limits -------------------------------------------------------------------


async def test_logins_are_claimed_for_the_member_before_the_secret_is_checked(
    phpbb_db: PhpbbDatabase,
) -> None:
    uid = phpbb_db.add_user("Jane Doe", password_hash=bcrypt_2y("pw"))
    sid = phpbb_db.add_session(uid, session_time=NOW)
    member = f"user:{uid}"
    async with make_auth(phpbb_db) as auth:
        for given, secret, expected in (
            ("jane\\20doe", "pw", "ok"),
            ("JANE DOE", sid, "ok"),
            ("JANE DOE", sid, "ok"),  # from the SID cache: still claimed
            ("  Jane   Doe ", "wrong", "not-authorized"),
            ("\uff2aane Doe", "0" * 32, "not-authorized"),  # no such session, then password
        ):
            gate = Gate()
            assert await outcome(auth, given, secret, gated(gate)) == expected
            assert gate.claims == ["name:jane doe", member]
        # a member whose budget is spent is refused before the hash, right password or not
        for secret in ("pw", sid, "wrong"):
            gate = Gate(spent=(member,))
            assert await outcome(auth, "jane doe", secret, gated(gate)) == "temporary-auth-failure"
        gate = Gate()
        assert await outcome(auth, "nobody", "pw", gated(gate)) == "not-authorized"
        assert gate.claims == ["name:nobody"]  # unknown names are limited by name


async def test_homograph_spellings_share_the_members_budget(phpbb_db: PhpbbDatabase) -> None:
    # phpBB folds Cyrillic U+0430 to "a" in username_clean, so "anna" finds her too
    uid = phpbb_db.add_user("\u0430nna", username_clean="anna", password_hash=bcrypt_2y("pw"))
    async with make_auth(phpbb_db) as auth:
        for given in ("anna", "\u0430nna"):
            gate = Gate(spent=(f"user:{uid}",))
            assert await outcome(auth, given, "pw", gated(gate)) == "temporary-auth-failure"
            assert gate.claims[-1] == f"user:{uid}"


async def test_control_characters_are_refused_before_any_query() -> None:
    with socket.socket() as probe:  # a database nobody answers: any query would fail
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/phpbb"
    auth = PhpbbAuthenticator(PhpbbConfig(url=url, query_timeout=1.0), "example.org")
    try:
        for name in ("al\x01ice", "al\x7fice", "alice\x85", "\x00alice", "ali\tce"):
            gate = Gate()
            assert await outcome(auth, name, "pw", gated(gate)) == "not-authorized"
            assert gate.claims == []
        assert await outcome(auth, "alice", "pw", CTX) == "temporary-auth-failure"  # it did try
    finally:
        await auth.aclose()


# -- passwords --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "make_hash", "password"),
    [
        ("bcrypt-2y", bcrypt_2y, "correct horse"),
        ("bcrypt-2a", lambda p: "$2a$" + bcrypt_2y(p)[4:], "s\u00e9cr\u00e9t"),
        ("argon2id", argon2id, "correct horse"),
        ("phpass", lambda p: PHPASS_HASH, PHPASS_PW),
        ("phpbb2-md5", lambda p: "5f4dcc3b5aa765d61d8327deb882cf99", "password"),
    ],
)
async def test_password_hashes(phpbb_db: PhpbbDatabase, scheme, make_hash, password) -> None:
    uid = phpbb_db.add_user("Jane", password_hash=make_hash(password))
    async with make_auth(phpbb_db) as auth:
        identity = await auth.check_password("Jane", password, CTX)
        assert identity.user_id == uid
        assert await condition_of(auth, "Jane", password + "x") == "not-authorized"
        assert await condition_of(auth, "Jane", "") == "not-authorized"


async def test_long_bcrypt_password_uses_first_72_bytes_like_php(phpbb_db) -> None:
    password = "x" * 80
    made = bcrypt.hashpw(password[:72].encode(), bcrypt.gensalt(4)).decode()
    phpbb_db.add_user("Jane", password_hash="$2y$" + made[4:])
    async with make_auth(phpbb_db) as auth:
        assert (await auth.check_password("jane", password, CTX)).display_name == "Jane"


async def test_password_is_trimmed_like_phpbb(phpbb_db: PhpbbDatabase) -> None:
    phpbb_db.add_user("Jane", password_hash=bcrypt_2y("pw"))
    async with make_auth(phpbb_db) as auth:
        assert (await auth.check_password("jane", " pw\n", CTX)).display_name == "Jane"


async def test_unsupported_and_converted_hashes_are_refused(phpbb_db: PhpbbDatabase) -> None:
    phpbb_db.add_user("Converted", password_hash="$CP$5f4dcc3b5aa765d61d8327deb882cf99")
    async with make_auth(phpbb_db) as auth:
        assert await condition_of(auth, "converted", "password") == "not-authorized"


async def test_hex_password_that_is_not_a_sid_still_works(phpbb_db: PhpbbDatabase) -> None:
    secret = "0123456789abcdef0123456789abcdef"
    phpbb_db.add_user("Hexy", password_hash=bcrypt_2y(secret))
    async with make_auth(phpbb_db) as auth:
        assert (await auth.check_password("hexy", secret, CTX)).display_name == "Hexy"


async def test_passwords_can_be_switched_off(phpbb_db: PhpbbDatabase) -> None:
    phpbb_db.add_user("Jane", password_hash=bcrypt_2y("pw"))
    async with make_auth(phpbb_db, accept_passwords=False) as auth:
        assert await condition_of(auth, "jane", "pw") == "not-authorized"


async def test_sids_can_be_switched_off(phpbb_db: PhpbbDatabase) -> None:
    uid = phpbb_db.add_user("Jane")
    sid = phpbb_db.add_session(uid, session_time=NOW)
    async with make_auth(phpbb_db, accept_session_ids=False) as auth:
        assert await condition_of(auth, "jane", sid) == "not-authorized"


# -- names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    ["o\\27brien\\20jr", "O'Brien Jr", "o'brien jr", "O'BRIEN  JR", "O\\27Brien\\20Jr"],
)
async def test_username_forms(phpbb_db: PhpbbDatabase, given: str) -> None:
    # username_clean as phpBB stores it: the apostrophe is a homograph-mapped U+02B9
    uid = phpbb_db.add_user(
        "O'Brien Jr", username_clean="o\u02b9brien jr", password_hash=bcrypt_2y("pw")
    )
    sid = phpbb_db.add_session(uid, session_time=NOW)
    async with make_auth(phpbb_db) as auth:
        by_sid = await auth.check_password(given, sid, CTX)
        by_password = await auth.check_password(given, "pw", CTX)
    assert by_sid == by_password
    assert by_sid.localpart == "o\\27brien\\20jr"
    assert by_sid.display_name == "O'Brien Jr"


async def test_distinct_members_get_distinct_localparts(phpbb_db: PhpbbDatabase) -> None:
    names = ["Jane Doe", "jane_doe", "Jane.Doe", "J\u00e4ne Doe", "Jane@Doe"]
    for name in names:
        phpbb_db.add_user(name, password_hash=bcrypt_2y("pw"))
    async with make_auth(phpbb_db) as auth:
        parts = [(await auth.check_password(n, "pw", CTX)).localpart for n in names]
        again = [(await auth.check_password(p, "pw", CTX)).localpart for p in parts]
    assert len(set(parts)) == len(names)
    assert again == parts  # logging in with the localpart gives the same account back


async def test_user_exists(phpbb_db: PhpbbDatabase) -> None:
    phpbb_db.add_user("Jane Doe")
    phpbb_db.add_user("Googlebot", user_type=2)
    async with make_auth(phpbb_db) as auth:
        assert await auth.user_exists("jane\\20doe")
        assert not await auth.user_exists("nobody")
        assert not await auth.user_exists("googlebot")
        assert not await auth.user_exists("anonymous")


async def test_custom_table_prefix() -> None:
    with phpbb_database("postgresql", prefix="forum_") as db:
        uid = db.add_user("Jane")
        sid = db.add_session(uid, session_time=NOW)
        async with make_auth(db) as auth:
            assert (await auth.check_password("jane", sid, CTX)).user_id == uid


def test_table_prefix_is_validated() -> None:
    with pytest.raises(ValueError):
        PhpbbAuthenticator(
            PhpbbConfig(url="postgresql+psycopg://x@127.0.0.1/x", table_prefix="x; DROP"), "e.org"
        )


# -- optional phpBB checks ----------------------------------------------------------------


async def test_ip_and_browser_checks(phpbb_db: PhpbbDatabase) -> None:
    uid = phpbb_db.add_user("Jane")
    sid = phpbb_db.add_session(uid, session_time=NOW, ip="192.0.2.77", browser="Mozilla/5.0")
    elsewhere = AuthContext(peer_ip="198.51.100.1", user_agent="Mozilla/5.0")
    other_browser = AuthContext(peer_ip="192.0.2.10", user_agent="curl/8")
    async with make_auth(phpbb_db, ip_check=True, browser_check=True) as auth:
        assert (await auth.check_password("jane", sid, CTX)).user_id == uid
        assert await condition_of(auth, "jane", sid, elsewhere) == "not-authorized"
        assert await condition_of(auth, "jane", sid, other_browser) == "not-authorized"
    async with make_auth(phpbb_db) as auth:  # both off by default
        assert (await auth.check_password("jane", sid, elsewhere)).user_id == uid


def test_phpbb_rules_in_isolation() -> None:
    assert ip_matches("10.1.2.3", "10.1.2.99", 3)
    assert not ip_matches("10.1.2.3", "10.1.3.3", 3)
    assert ip_matches("10.1.2.3", "99.1.2.3", 0)
    assert ip_matches("2001:db8:1:2::1", "2001:DB8:1:2:ffff::9", 3)
    assert not ip_matches("2001:db8:1:2::1", "2001:db8:1:3::1", 3)
    assert not ip_matches("10.1.2.3", "2001:db8::1", 3)
    assert ip_matches("::ffff:10.1.2.3", "10.1.2.4", 3)
    assert browser_matches("Mozilla/5.0 (X11)", "mozilla/5.0 (x11)  ")
    assert browser_matches("a" * 149 + "b", "A" * 149 + "c")
    cfg = {"session_length": 3600, "allow_autologin": 1, "max_autologin_time": 0}
    assert not session_expired(NOW - 3660, False, NOW, cfg)
    assert session_expired(NOW - 3661, False, NOW, cfg)
    assert not session_expired(0, True, NOW, cfg)
    assert clean_username("  Jane \u00a0\u00a0DOE\x07 ") == "jane doe"
    assert clean_username("\uff2aane") == "jane"  # fullwidth J, as NFKC does


# -- caching, failures, secrecy ---------------------------------------------------------


async def test_positive_sid_cache(phpbb_db: PhpbbDatabase) -> None:
    uid = phpbb_db.add_user("Jane")
    sid = phpbb_db.add_session(uid, session_time=NOW)
    clock = Clock()
    async with make_auth(phpbb_db, clock, cache_seconds=30) as auth:
        assert (await auth.check_password("jane", sid, CTX)).user_id == uid
        phpbb_db.execute("DELETE FROM {p}sessions")
        clock.now += 10
        assert (await auth.check_password("jane", sid, CTX)).user_id == uid  # from cache
        assert await condition_of(auth, "mallory", sid) == "not-authorized"  # key has the user
        clock.now += 25
        assert await condition_of(auth, "jane", sid) == "not-authorized"  # cache expired


async def test_unreachable_database_is_a_temporary_failure() -> None:
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for url in (
        f"mysql+pymysql://root@127.0.0.1:{port}/phpbb",
        f"postgresql+psycopg://postgres@127.0.0.1:{port}/phpbb",
    ):
        auth = PhpbbAuthenticator(PhpbbConfig(url=url, query_timeout=1.0), "example.org")
        try:
            for secret in ("0" * 32, "a password"):
                with pytest.raises(AuthError) as info:
                    await auth.check_password("jane", secret, CTX)
                assert info.value.condition == "temporary-auth-failure"
        finally:
            await auth.aclose()


async def test_silent_database_times_out() -> None:
    """A server that accepts and never answers: the login must give up at query_timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    try:
        for url in (
            f"mysql+pymysql://root@127.0.0.1:{port}/phpbb",
            f"postgresql+psycopg://postgres@127.0.0.1:{port}/phpbb",
        ):
            auth = PhpbbAuthenticator(PhpbbConfig(url=url, query_timeout=0.5), "example.org")
            started = time.monotonic()
            with pytest.raises(AuthError) as info:
                await auth.check_password("jane", "0" * 32, CTX)
            elapsed = time.monotonic() - started
            assert info.value.condition == "temporary-auth-failure"
            assert elapsed < 1.5
            with trio.move_on_after(5):
                await auth.aclose()
    finally:
        listener.close()


async def test_secrets_never_reach_the_logs(
    phpbb_db: PhpbbDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    uid = phpbb_db.add_user("Jane", password_hash=bcrypt_2y("s3cret-pw"))
    sid = phpbb_db.add_session(uid, session_time=NOW)
    expired = phpbb_db.add_session(uid, session_time=NOW - 99999)
    caplog.set_level(logging.DEBUG)  # everything, including SQLAlchemy's statement log
    logging.getLogger("sqlalchemy.engine").setLevel(logging.DEBUG)
    try:
        async with make_auth(phpbb_db) as auth:
            await auth.check_password("jane", sid, CTX)
            for user, secret in (("mallory", sid), ("jane", expired), ("jane", "wrong-pw")):
                with pytest.raises(AuthError):
                    await auth.check_password(user, secret, CTX)
            await auth.check_password("jane", "s3cret-pw", CTX)
    finally:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    text = caplog.text
    assert "phpbb auth ok" in text and "phpbb auth failed" in text  # logging did happen
    for secret in (sid, expired, "s3cret-pw", "wrong-pw"):
        assert secret not in text
