"""Forum membership changes reach live sessions: the periodic re-check of phpBB members.

With ``auth.backend = "phpbb"``, every ``auth.phpbb.recheck_interval`` seconds the
connected members are checked against the forum again, with the rules a login uses
(:mod:`xmppd.auth.phpbb`); a member who fails loses the session with a
``policy-violation`` stream error whose text says why, and the session is marked
revoked (:meth:`xmppd.session.Session.revoke`): it is not kept for XEP-0198 resumption
and a ``<resume/>`` with its token fails with ``item-not-found``; a BOSH restore (the
same ``sid``) gets a terminate body. The cached check of its SID is dropped too.

Rooms see an ordinary exit: the session ended, so the server sends the rooms the
member's unavailable presence (RFC 6121 §4.6.3) and each room announces it as any
leave — no status 307 (a kick: a moderator's act in that room, with an actor) and no
333 (the room removing an occupant whose client answered with an error). Neither
happened, and the room has no say in a forum ban; the reason goes to the member only,
in the stream error, not to everyone in the room.

Every login (a :class:`~xmppd.auth.phpbb_sessions.ForumLogin` on the session) is checked for:

- the member: deleted (no ``users`` row), deactivated (``user_type`` inactive), no
  longer a registered account (e.g. turned into a bot), banned (phpBB 3.3's
  ``check_ban`` rules, :func:`~xmppd.auth.phpbb_bans.ban_trigger`, with the session's own
  client address; founders exempt). This ends every login of the member, password
  logins too.
- session-id and cookie logins, the forum session too: its ``sessions`` row must still
  exist and not be expired by phpBB's ``session_begin`` rules
  (:func:`~xmppd.auth.phpbb_sessions.session_expired`: ``session_length``, and for autologin
  sessions ``allow_autologin`` / ``max_autologin_time``). A logout deletes the row.

*Another valid forum session for that browser* (``recheck_follow_browser``, on by
default) keeps a session-id login alive when its own forum session is gone or expired.
Precisely, at a re-check one of these holds:

1. a ``sessions`` row of the same member (``session_user_id``), whose browser string
   matches the one of the session the login stood on as phpBB's browser check compares
   them (:func:`~xmppd.auth.phpbb_sessions.browser_matches`: first 149 bytes, ASCII lower case,
   trimmed), and which is not expired by the rules above. The newest such row (by
   ``session_time``) becomes the session the login stands on from then on: logging out
   of *that* one ends the chat session.
2. the session was an autologin ("remember me") session whose row is gone, and the
   autologin key phpBB wrote together with it is still in ``sessions_keys``, the board
   still allows autologin and the key is not older than ``max_autologin_time`` days. That
   is the state after phpBB's garbage collection removed an idle session: the browser
   is still logged in (its next page view makes a new session from the key), whereas a
   logout deletes the key with the session. The key "written together with" a session
   is the one ``sessions_keys`` row of the member with ``last_ip`` equal to the
   session's ``session_ip`` and ``last_login`` at most 10 s after its
   ``session_start`` (phpBB writes both in one request); it is found at the first
   re-check that sees the session, and if several keys match, none is used.

With the option off, a session-id login ends exactly when its own forum session does.

Cost: one round issues a fixed number of batched SELECTs per 1,000 connected members
(members, their user bans, their sessions, their autologin keys) plus one for the
address and e-mail bans — never one query per member. 1,000 ids per ``IN`` list keeps
every statement small (a few KB of SQL, an index lookup per id) and far below
PostgreSQL's 65,535 bound parameters and MariaDB's ``max_allowed_packet``; bigger lists
would save a few round trips and nothing measurable. The queries and the decisions run
in a worker thread; the event loop only lists the sessions and applies the verdicts
(``bench/phpbb_recheck.py`` measures it). A failing or slow forum database skips the
round (logged): sessions are never ended because the forum could not be asked.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

import sqlalchemy as sa
import trio

from xmppd.auth.base import AuthError
from xmppd.auth.phpbb import PhpbbAuthenticator
from xmppd.auth.phpbb_bans import ban_address_form, ban_mask_matches, ban_masks_pattern, ban_trigger
from xmppd.auth.phpbb_schema import (
    ANONYMOUS,
    USER_FOUNDER,
    USER_INACTIVE,
    USER_NORMAL,
    PhpbbTables,
)
from xmppd.auth.phpbb_sessions import ForumLogin, browser_matches, session_expired
from xmppd.services.lifecycle import Service, ServiceContext

if TYPE_CHECKING:
    from xmppd.router import Router
    from xmppd.session import Session

log = logging.getLogger("xmppd.auth.phpbb")

#: Ids per ``IN`` list (see the module docstring for why 1,000).
CHUNK = 1000
#: Seconds between a session's ``session_start`` and its key's ``last_login``.
KEY_LINK_WINDOW = 10

#: The stream error text each reason gives the client.
TEXTS = {
    "deleted": "your forum account was deleted",
    "inactive": "your forum account was deactivated",
    "not-registered": "you are no longer a registered forum member",
    "banned": "you are banned from the forum",
    "session-gone": "your forum session ended (logged out)",
    "session-expired": "your forum session expired",
}
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
#: Connected clients keep their address: parse each one once, not every round.
_address_form = functools.lru_cache(maxsize=65536)(ban_address_form)


@dataclass(frozen=True, slots=True)
class End:
    """End the login at ``index``; ``member``: the account is at fault, not the session."""

    index: int
    reason: str
    member: bool

    @property
    def text(self) -> str:
        return TEXTS["banned" if self.reason.startswith("banned") else self.reason]


@dataclass(frozen=True, slots=True)
class Follow:
    """The login at ``index`` now stands on another forum session (or only on its key)."""

    index: int
    sid: str | None
    autologin: bool
    session_start: int
    key_id: str | None
    #: The forum session id it no longer stands on (its cached checks are dropped).
    retired: str | None


Verdict = End | Follow


@dataclass(frozen=True, slots=True)
class ForumState:
    """What one round read from the forum, by member id."""

    members: dict[int, Any]
    bans: list[Any]
    sessions: dict[int, list[Any]]
    keys: dict[int, list[Any]]
    config: dict[str, int]


@dataclass(frozen=True, slots=True)
class RoundStats:
    """One round, for the log and the benchmark."""

    logins: int
    ended: int
    followed: int
    #: Event-loop seconds: listing the sessions and applying the verdicts.
    loop_seconds: float
    #: Wall seconds of the worker (queries and decisions).
    worker_seconds: float


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield list(ids[start : start + CHUNK])


# ------------------------------------------------------------------ worker thread
def fetch_state(
    conn: sa.Connection,
    tables: PhpbbTables,
    logins: Sequence[ForumLogin],
    now: int,
    forum_config: dict[str, int],
    follow: bool,
) -> ForumState:
    """Read everything one round needs for ``logins``, in batched queries."""
    users, banlist = tables.users, tables.banlist
    sessions, keys = tables.sessions, tables.sessions_keys
    member_ids = sorted({login.user_id for login in logins})
    session_ids = sorted({login.user_id for login in logins if login.by_session})
    key_ids = sorted(
        {login.user_id for login in logins if login.by_session and login.autologin}
        if follow
        else ()
    )
    ban_cols = (
        banlist.c.ban_id,
        banlist.c.ban_userid,
        banlist.c.ban_ip,
        banlist.c.ban_email,
        banlist.c.ban_end,
        banlist.c.ban_exclude,
    )
    unexpired = sa.or_(banlist.c.ban_end == 0, banlist.c.ban_end >= now)
    members: dict[int, Any] = {}
    bans: list[Any] = []
    for chunk in _chunks(member_ids):
        stmt = sa.select(users.c.user_id, users.c.user_type, users.c.user_email).where(
            users.c.user_id.in_(chunk)
        )
        members.update((int(row.user_id), row) for row in conn.execute(stmt))
        bans.extend(
            conn.execute(sa.select(*ban_cols).where(banlist.c.ban_userid.in_(chunk), unexpired))
        )
    bans.extend(
        conn.execute(
            sa.select(*ban_cols).where(
                sa.or_(banlist.c.ban_ip != "", banlist.c.ban_email != ""), unexpired
            )
        )
    )
    by_member: dict[int, list[Any]] = defaultdict(list)
    for chunk in _chunks(session_ids):
        stmt = sa.select(
            sessions.c.session_id,
            sessions.c.session_user_id,
            sessions.c.session_start,
            sessions.c.session_time,
            sessions.c.session_ip,
            sessions.c.session_browser,
            sessions.c.session_autologin,
        ).where(sessions.c.session_user_id.in_(chunk))
        for row in conn.execute(stmt):
            by_member[int(row.session_user_id)].append(row)
    keys_of: dict[int, list[Any]] = defaultdict(list)
    for chunk in _chunks(key_ids):
        stmt = sa.select(keys.c.key_id, keys.c.user_id, keys.c.last_ip, keys.c.last_login).where(
            keys.c.user_id.in_(chunk)
        )
        for row in conn.execute(stmt):
            keys_of[int(row.user_id)].append(row)
    return ForumState(members, bans, dict(by_member), dict(keys_of), forum_config)


class BanIndex:
    """The round's ban rows, indexed so that each login looks only at rows that could
    match it; :func:`~xmppd.auth.phpbb_bans.ban_trigger` still decides on those rows.

    Masks without ``*`` are dictionary keys (phpBB compares them whole and ASCII
    case-insensitively, which is equality after ASCII lower-casing); masks with ``*``
    are tried once per distinct address or e-mail in the round.
    """

    def __init__(self, rows: Sequence[Any]) -> None:
        self._by_user: dict[int, list[Any]] = defaultdict(list)
        self._ip_exact: dict[str, list[Any]] = defaultdict(list)
        self._email_exact: dict[str, list[Any]] = defaultdict(list)
        self._ip_wild: list[Any] = []
        self._email_wild: list[Any] = []
        seen: set[int] = set()
        for row in rows:
            if row.ban_id in seen:
                continue
            seen.add(row.ban_id)
            if row.ban_userid:
                self._by_user[int(row.ban_userid)].append(row)
            if row.ban_ip:
                self._file(row, row.ban_ip, self._ip_exact, self._ip_wild)
            if row.ban_email:
                self._file(row, row.ban_email, self._email_exact, self._email_wild)
        self._ip_any = ban_masks_pattern([row.ban_ip for row in self._ip_wild])
        self._email_any = ban_masks_pattern([row.ban_email for row in self._email_wild])
        self._ip_memo: dict[str, list[Any]] = {}
        self._email_memo: dict[str, list[Any]] = {}

    @staticmethod
    def _file(row: Any, mask: str, exact: dict[str, list[Any]], wild: list[Any]) -> None:
        if "*" in mask:
            wild.append(row)
        else:
            exact[mask.translate(_ASCII_LOWER)].append(row)

    @staticmethod
    def _matching(
        value: str,
        field: str,
        exact: dict[str, list[Any]],
        wild: tuple[list[Any], re.Pattern[str]],
        memo: dict[str, list[Any]],
    ) -> list[Any]:
        found = memo.get(value)
        if found is None:
            found = list(exact.get(value.translate(_ASCII_LOWER), ()))
            rows, any_mask = wild
            if rows and any_mask.fullmatch(value) is not None:
                found.extend(row for row in rows if ban_mask_matches(getattr(row, field), value))
            memo[value] = found
        return found

    def trigger(self, user_id: int, peer_ip: str, email: str, now: int) -> str | None:
        """``user``, ``ip`` or ``email`` if this member at this address is banned."""
        rows = list(self._by_user.get(user_id, ()))
        if peer_ip:  # an unknown address matches no address ban (as in ban_trigger)
            address = _address_form(peer_ip)
            wild = (self._ip_wild, self._ip_any)
            rows += self._matching(address, "ban_ip", self._ip_exact, wild, self._ip_memo)
        wild = (self._email_wild, self._email_any)
        rows += self._matching(email or "", "ban_email", self._email_exact, wild, self._email_memo)
        if not rows:
            return None
        unique = {row.ban_id: row for row in rows}
        ordered = [unique[ban_id] for ban_id in sorted(unique)]
        return ban_trigger(ordered, user_id, peer_ip, email or "", now)


def _member_reason(login: ForumLogin, member: Any, bans: BanIndex, now: int) -> str | None:
    if member is None or login.user_id == ANONYMOUS:
        return "deleted"
    if member.user_type == USER_INACTIVE:
        return "inactive"
    if member.user_type not in (USER_NORMAL, USER_FOUNDER):
        return "not-registered"
    if member.user_type != USER_FOUNDER:
        trigger = bans.trigger(login.user_id, login.peer_ip, member.user_email or "", now)
        if trigger is not None:
            return f"banned-by-{trigger}"
    return None


def _valid(row: Any, now: int, config: dict[str, int]) -> bool:
    return not session_expired(int(row.session_time), bool(row.session_autologin), now, config)


def _key_written_with(session: Any, keys: Sequence[Any]) -> str | None:
    """The autologin key phpBB wrote in the request that created ``session`` (if one)."""
    start = int(session.session_start or 0)
    found = [
        key.key_id
        for key in keys
        if (key.last_ip or "") == (session.session_ip or "")
        and 0 <= int(key.last_login or 0) - start <= KEY_LINK_WINDOW
    ]
    return found[0] if len(found) == 1 else None


def _key_valid(key_id: str, keys: Sequence[Any], now: int, config: dict[str, int]) -> bool:
    """phpBB would still log this browser in with the key ``key_id``."""
    if not config["allow_autologin"]:
        return False
    max_days = config["max_autologin_time"]
    for key in keys:
        if key.key_id == key_id:
            return not (max_days and int(key.last_login or 0) < now - 86400 * max_days)
    return False


def _session_verdict(
    index: int, login: ForumLogin, state: ForumState, now: int, follow: bool
) -> Verdict | None:
    """The forum-session half of the check, for a session-id or cookie login."""
    config = state.config
    rows = state.sessions.get(login.user_id, ())
    current = None
    if login.sid is not None:
        current = next((row for row in rows if row.session_id == login.sid), None)
    if current is not None and _valid(current, now, config):
        if follow and current.session_autologin and login.key_id is None:
            key_id = _key_written_with(current, state.keys.get(login.user_id, ()))
            if key_id is not None:
                return Follow(index, login.sid, True, login.session_start, key_id, None)
        return None
    if follow:
        same_browser = [
            row
            for row in rows
            if row.session_id != login.sid
            and browser_matches(row.session_browser or "", login.browser)
            and _valid(row, now, config)
        ]
        if same_browser:
            row = max(same_browser, key=lambda r: (int(r.session_time), r.session_id))
            return Follow(
                index,
                row.session_id,
                bool(row.session_autologin),
                int(row.session_start or 0),
                None,
                login.sid,
            )
        keys = state.keys.get(login.user_id, ())
        key_id = login.key_id
        if current is None and key_id is not None and _key_valid(key_id, keys, now, config):
            if login.sid is None:
                return None  # already standing on the key alone
            return Follow(index, None, True, login.session_start, login.key_id, login.sid)
    return End(index, "session-expired" if current is not None else "session-gone", False)


def decide(
    logins: Sequence[ForumLogin], state: ForumState, now: int, follow: bool
) -> list[Verdict]:
    """The verdicts for ``logins`` (by index); logins that stand as they are get none."""
    bans = BanIndex(state.bans)
    verdicts: list[Verdict] = []
    for index, login in enumerate(logins):
        reason = _member_reason(login, state.members.get(login.user_id), bans, now)
        if reason is not None:
            verdicts.append(End(index, reason, True))
        elif login.by_session:
            verdict = _session_verdict(index, login, state, now, follow)
            if verdict is not None:
                verdicts.append(verdict)
    return verdicts


def recheck_sync(
    conn: sa.Connection,
    auth: PhpbbAuthenticator,
    logins: Sequence[ForumLogin],
    now: int,
    follow: bool,
) -> list[Verdict]:
    """One round's queries and decisions (worker thread; ``logins`` are only read)."""
    config = auth.forum_config_sync(conn)
    state = fetch_state(conn, auth.tables, logins, now, config, follow)
    return decide(logins, state, now, follow)


# --------------------------------------------------------------------- event loop
class Rechecker:
    """The trio side: list the forum logins of bound sessions, apply the verdicts.

    The :class:`ForumLogin` objects go to the worker as they are: only :meth:`apply`
    writes them, and it runs after the worker returned (rounds never overlap).
    """

    def __init__(
        self,
        router: Router,
        auth: PhpbbAuthenticator,
        *,
        follow_browser: bool = True,
        clock: Any = time.time,
    ) -> None:
        self.router = router
        self.auth = auth
        self.follow_browser = follow_browser
        self._clock = clock

    def snapshot(self) -> list[tuple[Session, ForumLogin]]:
        """Every bound session (detached ones included) with a forum login."""
        pairs = []
        for resources in self.router.sessions.values():
            for session in resources.values():
                login = session.login
                if type(login) is ForumLogin and session.revoked is None:
                    pairs.append((session, login))
        return pairs

    async def round(self) -> RoundStats | None:
        """Check every connected member once; ``None`` when the forum could not be asked."""
        started = time.perf_counter()
        pairs = self.snapshot()
        logins = [login for _, login in pairs]
        listed = time.perf_counter()
        if not pairs:
            return RoundStats(0, 0, 0, listed - started, 0.0)
        call = functools.partial(
            recheck_sync,
            auth=self.auth,
            logins=logins,
            now=int(self._clock()),
            follow=self.follow_browser,
        )
        try:
            verdicts = await self.auth.read(call)
        except AuthError:
            log.warning("event=phpbb_recheck_skipped logins=%d", len(pairs))
            return None
        answered = time.perf_counter()
        ended, followed = self.apply(pairs, verdicts)
        done = time.perf_counter()
        stats = RoundStats(
            len(pairs), ended, followed, (listed - started) + (done - answered), answered - listed
        )
        log.debug(
            "event=phpbb_recheck logins=%d ended=%d followed=%d loop_ms=%.1f worker_ms=%.1f",
            stats.logins,
            ended,
            followed,
            stats.loop_seconds * 1000,
            stats.worker_seconds * 1000,
        )
        return stats

    def apply(
        self, pairs: Sequence[tuple[Session, ForumLogin]], verdicts: Sequence[Verdict]
    ) -> tuple[int, int]:
        """End or re-point the logins the worker judged; returns (ended, followed)."""
        ended = followed = 0
        users: set[int] = set()
        sids: set[str] = set()
        for verdict in verdicts:
            session, login = pairs[verdict.index]
            if isinstance(verdict, Follow):
                if session.login is login:
                    self._follow(session, login, verdict, sids)
                    followed += 1
                continue
            if session.revoked is not None:
                continue
            if not verdict.member and session.login is not login:
                continue  # re-authenticated meanwhile (XEP-0198 resume): judge that next round
            if verdict.member:
                users.add(login.user_id)
            elif login.sid is not None:
                sids.add(login.sid)
            log.info(
                "event=phpbb_session_revoked jid=%s user_id=%d reason=%s via=%s transport=%s",
                session.full_str,
                login.user_id,
                verdict.reason,
                login.via,
                session.transport,
            )
            session.revoke(verdict.reason, verdict.text)
            ended += 1
        if users or sids:
            self.auth.forget(users, sids)
        return ended, followed

    @staticmethod
    def _follow(session: Session, login: ForumLogin, verdict: Follow, sids: set[str]) -> None:
        if verdict.retired is not None:
            sids.add(verdict.retired)
        moved = verdict.sid != login.sid
        linked = verdict.key_id is not None and verdict.key_id != login.key_id
        login.sid = verdict.sid
        login.autologin = verdict.autologin
        login.session_start = verdict.session_start
        login.key_id = verdict.key_id
        if moved:
            log.info(
                "event=phpbb_session_followed jid=%s user_id=%d on=%s",
                session.full_str,
                login.user_id,
                "autologin-key" if verdict.sid is None else "browser-session",
            )
        elif linked:
            log.info(
                "event=phpbb_autologin_key_found jid=%s user_id=%d", session.full_str, login.user_id
            )

    async def run(self, interval: float, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """A round every ``interval`` seconds (a slow round delays the next, never stacks)."""
        task_status.started()
        next_at = trio.current_time() + interval
        while True:
            await trio.sleep_until(next_at)
            try:
                await self.round()
            except Exception:  # a bug here must not take the server down
                log.exception("event=phpbb_recheck_failed")
            next_at += interval
            now = trio.current_time()
            if next_at <= now:
                next_at = now + interval


class PhpbbRecheck(Service):
    """The re-check as a service of the server: on when it authenticates against phpBB and
    ``auth.phpbb.recheck_interval`` is positive."""

    name = "phpbb_recheck"

    def __init__(self, rechecker: Rechecker, interval: float) -> None:
        self.rechecker = rechecker
        self.interval = interval

    @classmethod
    def build(cls, ctx: ServiceContext) -> Self | None:
        config = ctx.config.auth.phpbb
        auth = ctx.authenticator
        if not isinstance(auth, PhpbbAuthenticator) or config.recheck_interval <= 0:
            return None
        rechecker = Rechecker(ctx.router, auth, follow_browser=config.recheck_follow_browser)
        return cls(rechecker, config.recheck_interval)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await self.rechecker.run(self.interval, task_status=task_status)
