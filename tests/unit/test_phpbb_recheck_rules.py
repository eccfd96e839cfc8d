"""The re-check's decisions in isolation: forum rows in, verdicts out (no database).

The same rules run against real MariaDB/PostgreSQL forums and a running server in
tests/integration/test_phpbb_recheck.py; here each rule gets its edge cases.
"""

from __future__ import annotations

import itertools
import random
from types import SimpleNamespace
from typing import Any

import pytest

from xmppd.auth.phpbb_bans import ban_trigger
from xmppd.auth.phpbb_recheck import BanIndex, End, Follow, ForumState, decide
from xmppd.auth.phpbb_sessions import ForumLogin
from xmppd.jid import JID
from xmppd.session import Session
from xmppd.transport.sm import ResumptionManager

NOW = 1_700_000_000
CONFIG = {
    "session_length": 3600,
    "allow_autologin": 1,
    "max_autologin_time": 0,
    "ip_check": 3,
    "browser_check": 1,
}
UA = "Mozilla/5.0 Firefox/128.0"
_ids = itertools.count(1)


def member(user_id: int, user_type: int = 0, email: str = "") -> Any:
    return SimpleNamespace(user_id=user_id, user_type=user_type, user_email=email)


def ban_row(**kw: Any) -> Any:
    row = {"ban_userid": 0, "ban_ip": "", "ban_email": "", "ban_end": 0, "ban_exclude": 0} | kw
    return SimpleNamespace(ban_id=next(_ids), **row)


def session_row(sid: str, user_id: int = 2, **kw: Any) -> Any:
    row = {
        "session_start": NOW - 100,
        "session_time": NOW - 10,
        "session_ip": "192.0.2.1",
        "session_browser": UA,
        "session_autologin": 0,
    } | kw
    return SimpleNamespace(session_id=sid, session_user_id=user_id, **row)


def key_row(key_id: str, user_id: int = 2, last_ip: str = "192.0.2.1", last_login: int = 0) -> Any:
    return SimpleNamespace(key_id=key_id, user_id=user_id, last_ip=last_ip, last_login=last_login)


def sid_login(sid: str | None = "a" * 32, **kw: Any) -> ForumLogin:
    fields = {"user_id": 2, "via": "sid", "peer_ip": "192.0.2.1", "browser": UA} | kw
    return ForumLogin(sid=sid, **fields)


def state(
    members: list[Any] = (),  # type: ignore[assignment]
    bans: list[Any] = (),  # type: ignore[assignment]
    sessions: list[Any] = (),  # type: ignore[assignment]
    keys: list[Any] = (),  # type: ignore[assignment]
    **config: int,
) -> ForumState:
    by_user: dict[int, list[Any]] = {}
    for row in sessions:
        by_user.setdefault(row.session_user_id, []).append(row)
    keys_of: dict[int, list[Any]] = {}
    for row in keys:
        keys_of.setdefault(row.user_id, []).append(row)
    return ForumState(
        {m.user_id: m for m in members}, list(bans), by_user, keys_of, CONFIG | config
    )


def one(logins: list[ForumLogin], forum: ForumState, follow: bool = True) -> Any:
    verdicts = decide(logins, forum, NOW, follow)
    assert len(verdicts) <= 1
    return verdicts[0] if verdicts else None


# ------------------------------------------------------------------- the member
@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (None, "deleted"),
        (member(2, user_type=1), "inactive"),
        (member(2, user_type=2), "not-registered"),
    ],
)
def test_member_state_ends_password_logins_too(row: Any, reason: str) -> None:
    login = ForumLogin(user_id=2, via="password", peer_ip="192.0.2.1")
    verdict = one([login], state(members=[row] if row else []))
    assert verdict == End(0, reason, True)
    assert verdict.text


def test_bans_by_user_address_and_email_founders_exempt() -> None:
    bans = [
        ban_row(ban_userid=2),
        ban_row(ban_ip="198.51.100.*"),
        ban_row(ban_email="*@SPAM.example"),
        ban_row(ban_userid=5),
    ]
    forum = state(
        members=[member(2), member(3), member(4, email="x@spam.example"), member(5, 3), member(6)],
        bans=bans,
    )
    logins = [
        ForumLogin(2, "password", "192.0.2.1"),
        ForumLogin(3, "password", "198.51.100.7"),
        ForumLogin(4, "password", "192.0.2.1"),
        ForumLogin(5, "password", "198.51.100.7"),  # founder: exempt from every ban
        ForumLogin(6, "password", "192.0.2.1"),
    ]
    verdicts = decide(logins, forum, NOW, True)
    assert verdicts == [
        End(0, "banned-by-user", True),
        End(1, "banned-by-ip", True),
        End(2, "banned-by-email", True),
    ]


def test_expired_bans_and_exclusions() -> None:
    forum = state(
        members=[member(2), member(3)],
        bans=[
            ban_row(ban_userid=2, ban_end=NOW - 1),
            ban_row(ban_ip="192.0.2.*"),
            ban_row(ban_userid=3, ban_exclude=1),
        ],
    )
    logins = [ForumLogin(2, "password", "192.0.2.1"), ForumLogin(3, "password", "192.0.2.2")]
    assert decide(logins, forum, NOW, True) == [End(0, "banned-by-ip", True)]


def test_ban_index_agrees_with_ban_trigger() -> None:
    """The index only narrows the rows ban_trigger looks at: same answers, every case."""
    rng = random.Random(7)
    addresses = ["192.0.2.1", "192.0.2.77", "198.51.100.4", "2001:db8::1", "::ffff:192.0.2.1", ""]
    emails = ["a@example.org", "B@Spam.example", "c@spam.example.org", ""]
    masks_ip = ["192.0.2.1", "192.0.2.*", "*.4", "2001:DB8::1", "*", "10.*"]
    masks_email = ["a@example.org", "*@spam.example", "*@SPAM.*", "b@*", "*"]
    for _ in range(300):
        rows = []
        for _ in range(rng.randint(0, 6)):
            kind = rng.choice(["user", "ip", "email"])
            rows.append(
                ban_row(
                    ban_userid=rng.choice([2, 3]) if kind == "user" else 0,
                    ban_ip=rng.choice(masks_ip) if kind == "ip" else "",
                    ban_email=rng.choice(masks_email) if kind == "email" else "",
                    ban_end=rng.choice([0, 0, NOW - 5, NOW + 5]),
                    ban_exclude=rng.choice([0, 0, 0, 1]),
                )
            )
        index = BanIndex(rows)
        for user_id, address, email in itertools.product([2, 3], addresses, emails):
            expected = ban_trigger(rows, user_id, address, email, NOW)
            assert index.trigger(user_id, address, email, NOW) == expected, (rows, address, email)


# ------------------------------------------------------------ the forum session
def test_valid_session_gives_no_verdict_and_gone_or_expired_ends() -> None:
    sid = "a" * 32
    members = [member(2)]
    assert one([sid_login(sid)], state(members, sessions=[session_row(sid)])) is None
    assert one([sid_login(sid)], state(members)) == End(0, "session-gone", False)
    stale = session_row(sid, session_time=NOW - 3661)
    assert one([sid_login(sid)], state(members, sessions=[stale])) == End(
        0, "session-expired", False
    )
    # cookie logins stand on a forum session just the same
    cookie = sid_login(sid, via="cookie")
    assert one([cookie], state(members)) == End(0, "session-gone", False)
    # password logins do not
    assert one([ForumLogin(2, "password", "192.0.2.1")], state(members)) is None


def test_autologin_sessions_follow_the_boards_autologin_rules() -> None:
    sid = "a" * 32
    old = session_row(sid, session_time=NOW - 30 * 86400, session_autologin=1)
    members = [member(2)]
    assert one([sid_login(sid)], state(members, sessions=[old])) is None
    disallowed = state(members, sessions=[old], allow_autologin=0)
    assert one([sid_login(sid)], disallowed) == End(0, "session-expired", False)
    too_old = state(members, sessions=[old], max_autologin_time=7)
    assert one([sid_login(sid)], too_old) == End(0, "session-expired", False)


def test_follows_the_newest_valid_session_of_the_same_browser() -> None:
    old, other, newer, newest_expired = "a" * 32, "b" * 32, "c" * 32, "d" * 32
    rows = [
        session_row(other, session_browser="Chrome/126", session_time=NOW),
        session_row(newer, session_browser="  " + UA.upper(), session_time=NOW - 5),
        session_row("e" * 32, session_browser=UA, session_time=NOW - 50),
        session_row(newest_expired, session_browser=UA, session_time=NOW - 4000),
        session_row(old, user_id=9, session_browser=UA),  # another member's session
    ]
    verdict = one([sid_login(old)], state([member(2)], sessions=rows))
    assert verdict == Follow(0, newer, False, NOW - 100, None, old)
    # switched off: the login ends with its own session
    off = one([sid_login(old)], state([member(2)], sessions=rows), follow=False)
    assert off == End(0, "session-gone", False)


def test_autologin_key_written_with_the_session_is_found_once_unambiguous() -> None:
    sid = "a" * 32
    row = session_row(sid, session_autologin=1, session_start=NOW - 100)
    keys = [
        key_row("k1", last_login=NOW - 99),
        key_row("k2", last_ip="203.0.113.9", last_login=NOW - 99),  # another device
        key_row("k3", last_login=NOW - 50),  # written later: another session's
    ]
    login = sid_login(sid, autologin=True, session_start=NOW - 100)
    found = one([login], state([member(2)], sessions=[row], keys=keys))
    assert found == Follow(0, sid, True, NOW - 100, "k1", None)
    # two candidates: none is used
    twice = [*keys, key_row("k4", last_login=NOW - 95)]
    assert one([login], state([member(2)], sessions=[row], keys=twice)) is None


def test_key_keeps_a_garbage_collected_session_until_it_goes() -> None:
    sid = "a" * 32
    login = sid_login(sid, autologin=True, session_start=NOW - 100, key_id="k1")
    keys = [key_row("k1", last_login=NOW - 99)]
    gone = one([login], state([member(2)], keys=keys))
    assert gone == Follow(0, None, True, NOW - 100, "k1", sid)
    on_key = sid_login(None, autologin=True, session_start=NOW - 100, key_id="k1")
    assert one([on_key], state([member(2)], keys=keys)) is None
    assert one([on_key], state([member(2)])) == End(0, "session-gone", False)  # logout
    assert one([on_key], state([member(2)], keys=keys, allow_autologin=0)) == End(
        0, "session-gone", False
    )
    expired = [key_row("k1", last_login=NOW - 8 * 86400)]
    assert one([on_key], state([member(2)], keys=expired, max_autologin_time=7)) == End(
        0, "session-gone", False
    )
    # a new session of the same browser (the key's next page view) is followed
    fresh = session_row("f" * 32, session_autologin=1, session_start=NOW - 1)
    moved = one([on_key], state([member(2)], sessions=[fresh], keys=keys))
    assert moved == Follow(0, "f" * 32, True, NOW - 1, None, None)


def test_member_verdict_comes_before_the_session_one() -> None:
    verdict = one([sid_login("a" * 32)], state([member(2, user_type=1)]))
    assert verdict == End(0, "inactive", True)


# ------------------------------------------------------------------ resumption
class _Outbox:
    def enqueue(self, data: bytes) -> bool:
        return True

    def close(self, condition: str | None = None, text: str | None = None) -> None:
        self.closed = (condition, text)


def test_a_revoked_session_is_never_found_for_resumption() -> None:
    from xmppd.stream.sm import StreamManagement

    manager = ResumptionManager(None, None, None)  # type: ignore[arg-type]
    session = Session(JID("jane", "localhost", "web"), _Outbox())
    session.sm = StreamManagement("jane@localhost", token="T" * 32, max_seconds=60)
    manager.register(session)
    token = session.sm.token
    assert token is not None
    assert manager.lookup(token, "jane@localhost") is session
    session.revoke("banned-by-user", "you are banned from the forum")
    assert session.outbox.closed == ("policy-violation", "you are banned from the forum")  # type: ignore[attr-defined]
    assert manager.lookup(token, "jane@localhost") is None
