"""phpBB 3.x as xmppd's account source: log in with a forum session id or forum password.

The chat widget runs inside a forum page, so it can hand the server the page's session
id (SID) instead of a password; desktop clients use the forum password. Both are checked
in-process against the forum's own tables, with phpBB's own rules:

- SID: one primary-key read of ``sessions`` joined to ``users``; the session must belong
  to the named user, be a registered account (not the guest, not a bot), not be expired
  by ``session_length`` / autologin rules, and the user must not be banned. Optionally
  the session's IP prefix and browser must match, as phpBB's ``ip_check`` and
  ``browser_check`` do for page views.
- Password: the user row is found as phpBB's login form finds it (``username_clean``),
  and the stored hash is verified (:mod:`xmppd.auth.phpbb_hashes`); names:
  :mod:`xmppd.auth.phpbb_names`; session rules: :mod:`xmppd.auth.phpbb_sessions`.
- Bans (both kinds of login, founders exempt): phpBB 3.3's ``banlist`` rules
  (:mod:`xmppd.auth.phpbb_bans`).

Failed-login limits (:mod:`xmppd.auth.ratelimit`): a name with control characters is
refused before anything else (phpBB's ``username_clean`` drops them, so they would
only be more spellings of one member). Then the attempt is claimed for its cleaned
name, before any query, and for the member's user id as soon as a row names one,
before the secret is checked: every spelling that reaches a member shares one budget.

Only SELECTs are issued (the connection is also put in read-only mode where the driver
allows), all through SQLAlchemy Core with bound parameters, in worker threads behind a
capacity limiter and a timeout, so a slow forum database degrades into
``temporary-auth-failure`` instead of a stuck server. Secrets never reach logs: SIDs
and passwords are not logged, and the engine hides bound parameters in its errors.

Failure conditions (RFC 6120 §6.5): a wrong or unknown credential is always
``not-authorized`` and the log line (info level) says why. ``account-disabled`` is
answered only *after* the credential was proven right, for an inactive or banned
member — telling the owner of a valid secret that the account is disabled leaks
nothing to anyone else, and saves them a confused retry loop.

JID localparts: :func:`~xmppd.auth.phpbb_names.forum_localpart`, unique per forum account
(see there why).

Caching: positive SID checks are remembered for ``cache_seconds`` (keyed by a keyed
hash of authcid, SID and, when those checks are on, IP and user agent), so the storm of
logins a page load causes costs one query. The price: a forum logout or a new ban takes
up to ``cache_seconds`` to reach new chat logins — except where the periodic re-check
(:mod:`xmppd.auth.phpbb_recheck`) already ended a session for it: it drops the cached
entries of that member or forum session (:meth:`PhpbbAuthenticator.forget`). Failures
are never cached (the stream shell's failed-login limits throttle those). The forum's
session settings are cached for the same time.

Connected sessions: every login leaves a :class:`ForumLogin` on its session (how it
logged in; a SID only in memory), which the periodic re-check reads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import sqlalchemy as sa
import trio

from xmppd.auth.base import (
    AuthContext,
    AuthError,
    Identity,
    ScramCredentials,
    ScramHash,
    claim_account,
)
from xmppd.auth.phpbb_bans import ban_trigger, select_bans
from xmppd.auth.phpbb_db import ForumDatabase
from xmppd.auth.phpbb_hashes import hash_scheme, verify_phpbb_hash
from xmppd.auth.phpbb_names import (
    CONTROL,
    PHP_TRIM,
    clean_username,
    forum_localpart,
    member_key,
    name_candidates,
    name_key,
    names_user,
)
from xmppd.auth.phpbb_schema import (
    ANONYMOUS,
    USER_FOUNDER,
    USER_IGNORE,
    USER_INACTIVE,
    USER_NORMAL,
    PhpbbTables,
    phpbb_tables,
)
from xmppd.auth.phpbb_sessions import (
    FORUM_CONFIG_DEFAULTS,
    ForumLogin,
    browser_matches,
    ip_matches,
    session_expired,
)
from xmppd.config import PhpbbConfig
from xmppd.jid import JIDError

log = logging.getLogger("xmppd.auth.phpbb")

T = TypeVar("T")

SID_PATTERN = re.compile(r"[0-9a-f]{32}")
_MAX_PASSWORD_CHARS = 4096  # phpBB's passwords manager refuses longer input too
_REGISTERED_TYPES = (USER_NORMAL, USER_FOUNDER)
_CACHE_MAX_ENTRIES = 4096


@dataclass(frozen=True, slots=True)
class _SessionLookup:
    row: Any
    forum_config: dict[str, int]
    bans: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class _UserLookup:
    row: Any
    bans: tuple[Any, ...]


class PhpbbAuthenticator:
    """The phpbb backend (see module docstring); implements ``xmppd.auth.base.Authenticator``."""

    name = "phpbb"

    def __init__(
        self, config: PhpbbConfig, domain: str, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.domain = domain
        self._clock = clock
        self._tables: PhpbbTables = phpbb_tables(config.table_prefix)
        self._forum = ForumDatabase(config)
        self._hash_limiter = trio.CapacityLimiter(max(1, min(4, os.cpu_count() or 1)))
        self._cache_key = os.urandom(32)
        # value: (expiry, identity); identity.login is the ForumLogin each hit copies
        self._sid_cache: OrderedDict[bytes, tuple[float, Identity]] = OrderedDict()
        self._exists_cache: OrderedDict[str, tuple[float, bool]] = OrderedDict()
        self._forum_config: tuple[float, dict[str, int]] | None = None
        self._cookie_name: tuple[float, str] | None = None
        self._dummy_hash: str | None = None

    # -- protocol ---------------------------------------------------------------------

    def supports_scram(self) -> bool:
        """phpBB stores bcrypt/argon2 hashes and SIDs, nothing SCRAM can use."""
        return False

    async def scram_credentials(
        self, username: str, hash_name: ScramHash
    ) -> tuple[Identity, ScramCredentials] | None:
        """Never any: SCRAM is not offered with this backend."""
        return None

    async def aclose(self) -> None:
        """Close the pooled forum database connections."""
        await self._forum.aclose()

    async def check_password(self, username: str, password: str, ctx: AuthContext) -> Identity:
        """Authenticate ``username`` with a forum SID or the forum password."""
        if CONTROL.search(username):
            self._fail("control-characters", username, ctx)
        candidates = name_candidates(username)
        if not candidates or not password:
            self._fail("empty-credentials", username, ctx)
        claim_account(ctx, name_key(candidates))
        if self.config.accept_session_ids and SID_PATTERN.fullmatch(password):
            identity = await self._check_sid(username, candidates, password, ctx)
            if identity is not None:
                return identity
        if self.config.accept_passwords:
            return await self._check_forum_password(username, candidates, password, ctx)
        self._fail("no-such-session", username, ctx)

    async def user_exists(self, localpart: str) -> bool:
        """Whether ``localpart`` is the JID localpart of a forum member (bots excluded)."""
        now = self._clock()
        cached = self._exists_cache.get(localpart)
        if cached is not None and cached[0] > now:
            return cached[1]
        lookup = await self._db(self._lookup_user_sync, name_candidates(localpart), False)
        exists = False
        if lookup is not None:
            row = lookup.row
            if row.user_id != ANONYMOUS and row.user_type != USER_IGNORE:
                try:
                    exists = forum_localpart(row.username) == localpart
                except JIDError:
                    exists = False
        self._remember(self._exists_cache, localpart, (now + self.config.cache_seconds, exists))
        return exists

    # -- live sessions (xmppd.auth.phpbb_recheck) ---------------------------------------

    @property
    def tables(self) -> PhpbbTables:
        """The forum tables, with the configured prefix."""
        return self._tables

    async def read(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run ``fn(connection)`` in a worker thread on the forum database, with the
        limits logins have (``query_timeout``; failures raise ``temporary-auth-failure``)."""

        def call() -> T:
            with self._forum.engine.connect() as conn:
                return fn(conn)

        return await self._db(call)

    def forget(self, user_ids: Collection[int], sids: Collection[str]) -> int:
        """Drop cached SID checks of these members or forum sessions (the re-check ended
        their sessions), so that a banned member's or logged-out SID cannot log in again
        from the cache. Returns how many entries went."""
        stale = [
            key
            for key, (_, identity) in self._sid_cache.items()
            if identity.user_id in user_ids
            or (isinstance(identity.login, ForumLogin) and identity.login.sid in sids)
        ]
        for key in stale:
            del self._sid_cache[key]
        return len(stale)

    # -- SID --------------------------------------------------------------------------

    def _sid_cache_key(self, authcid: str, sid: str, ctx: AuthContext) -> bytes:
        parts = [authcid, sid]
        if self.config.ip_check:
            parts.append(ctx.peer_ip)
        if self.config.browser_check:
            parts.append(ctx.user_agent or "")
        data = "\0".join(parts).encode("utf-8", "surrogatepass")
        return hashlib.blake2b(data, key=self._cache_key, digest_size=32).digest()

    async def _check_sid(
        self, authcid: str, candidates: list[str], sid: str, ctx: AuthContext
    ) -> Identity | None:
        """Identity for a valid SID; ``None`` if no such session (maybe it is a password)."""
        return await self._session_identity(
            authcid,
            sid,
            ctx,
            lambda row: names_user(candidates, row.username, row.username_clean),
            via="sid",
        )

    async def check_session_cookie(self, user_id: str, sid: str, ctx: AuthContext) -> Identity:
        """The forum's ``<cookie_name>_u`` / ``_sid`` cookie pair, read server-side.

        Same rules as a SID login (owner, expiry, IP/browser checks, bans); the session
        must belong to the user id of the ``_u`` cookie. Raises :class:`AuthError`.
        """
        label = f"cookie:{user_id[:20]}"
        if not user_id.isdigit() or not SID_PATTERN.fullmatch(sid):
            self._fail("malformed-cookie", label, ctx)
        uid = int(user_id)
        claim_account(ctx, member_key(uid))
        identity = await self._session_identity(
            label, sid, ctx, lambda row: row.user_id == uid, via="cookie"
        )
        if identity is None:
            self._fail("no-such-session", label, ctx)
        return identity

    async def cookie_name(self) -> str:
        """phpBB's ``cookie_name`` setting (default ``phpbb3``), cached for ``cache_seconds``."""
        now = self._clock()
        cached = self._cookie_name
        if cached is not None and cached[0] > now:
            return cached[1]
        name = await self._db(self._cookie_name_sync) or "phpbb3"
        self._cookie_name = (now + self.config.cache_seconds, name)
        return name

    def _cookie_name_sync(self) -> str:
        c = self._tables.config
        stmt = sa.select(c.c.config_value).where(c.c.config_name == "cookie_name")
        with self._forum.engine.connect() as conn:
            value = conn.execute(stmt).scalar()
        return str(value or "").strip()

    async def _session_identity(
        self, authcid: str, sid: str, ctx: AuthContext, owns: Callable[[Any], bool], via: str
    ) -> Identity | None:
        """Identity for a valid session ``sid`` owned (``owns(row)``) by the claimant."""
        now = self._clock()
        key = self._sid_cache_key(authcid, sid, ctx)
        cached = self._sid_cache.get(key)
        if cached is not None and cached[0] > now:
            identity = cached[1]
            assert identity.user_id is not None and isinstance(identity.login, ForumLogin)
            claim_account(ctx, member_key(identity.user_id))
            # every session gets its own record, with this connection's address
            login = dataclasses.replace(identity.login, via=via, peer_ip=ctx.peer_ip)
            return dataclasses.replace(identity, login=login)
        lookup = await self._db(self._lookup_session_sync, sid)
        if lookup is None:
            return None
        row, forum_config = lookup.row, lookup.forum_config
        if not owns(row):
            self._fail("session-of-other-user", authcid, ctx, row.user_id)
        claim_account(ctx, member_key(row.user_id))
        if row.user_id == ANONYMOUS or row.user_type == USER_IGNORE:
            self._fail("guest-or-bot-session", authcid, ctx, row.user_id)
        if session_expired(
            int(row.session_time), bool(row.session_autologin), int(now), forum_config
        ):
            self._fail("session-expired", authcid, ctx, row.user_id)
        if self.config.ip_check and not ip_matches(
            row.session_ip or "", ctx.peer_ip, forum_config["ip_check"]
        ):
            self._fail("session-ip-mismatch", authcid, ctx, row.user_id)
        if (
            self.config.browser_check
            and forum_config["browser_check"]
            and not browser_matches(row.session_browser or "", ctx.user_agent)
        ):
            self._fail("session-browser-mismatch", authcid, ctx, row.user_id)
        login = ForumLogin(
            user_id=int(row.user_id),
            via=via,
            peer_ip=ctx.peer_ip,
            sid=sid,
            browser=row.session_browser or "",
            autologin=bool(row.session_autologin),
            session_start=int(row.session_start or 0),
        )
        identity = self._identity(row, authcid, ctx, login, now=int(now), bans=lookup.bans)
        self._remember(self._sid_cache, key, (now + self.config.cache_seconds, identity))
        return dataclasses.replace(identity, login=dataclasses.replace(login))

    def _lookup_session_sync(self, sid: str) -> _SessionLookup | None:
        s, u = self._tables.sessions, self._tables.users
        stmt = (
            sa.select(
                s.c.session_time,
                s.c.session_start,
                s.c.session_ip,
                s.c.session_browser,
                s.c.session_autologin,
                u.c.user_id,
                u.c.user_type,
                u.c.username,
                u.c.username_clean,
                u.c.user_email,
            )
            .select_from(s.join(u, u.c.user_id == s.c.session_user_id))
            .where(s.c.session_id == sid)
        )
        with self._forum.engine.connect() as conn:
            row = conn.execute(stmt).first()
            if row is None:
                return None
            forum_config = self.forum_config_sync(conn)
            bans = self._bans_sync(conn, row.user_id) if row.user_type != USER_FOUNDER else ()
        return _SessionLookup(row, forum_config, bans)

    def forum_config_sync(self, conn: sa.Connection) -> dict[str, int]:
        """The forum settings session rules depend on, cached for ``cache_seconds``."""
        now = self._clock()
        cached = self._forum_config
        if cached is not None and cached[0] > now:
            return cached[1]
        c = self._tables.config
        stmt = sa.select(c.c.config_name, c.c.config_value).where(
            c.c.config_name.in_(sorted(FORUM_CONFIG_DEFAULTS))
        )
        values = dict(FORUM_CONFIG_DEFAULTS)
        for name, value in conn.execute(stmt):
            try:
                values[name] = int(str(value).strip() or 0)
            except ValueError:
                log.warning("phpbb config value is not a number name=%s", name)
        self._forum_config = (now + self.config.cache_seconds, values)
        return values

    def _bans_sync(self, conn: sa.Connection, user_id: int) -> tuple[Any, ...]:
        return select_bans(conn, self._tables, user_id, int(self._clock()))

    # -- password ---------------------------------------------------------------------

    async def _check_forum_password(
        self, authcid: str, candidates: list[str], password: str, ctx: AuthContext
    ) -> Identity:
        password = password.strip(PHP_TRIM)  # phpBB trims before hashing and checking
        if not password or len(password) > _MAX_PASSWORD_CHARS:
            self._fail("unusable-password", authcid, ctx)
        lookup = await self._db(self._lookup_user_sync, candidates, True)
        if lookup is not None:
            claim_account(ctx, member_key(lookup.row.user_id))
        if lookup is None or lookup.row.user_id == ANONYMOUS or lookup.row.user_type == USER_IGNORE:
            await self._verify_hash(password, await self._get_dummy_hash())
            reason = "unknown-user" if lookup is None else "guest-or-bot-account"
            self._fail(reason, authcid, ctx, None if lookup is None else lookup.row.user_id)
        row = lookup.row
        stored = row.user_password or ""
        scheme = hash_scheme(stored)
        if scheme == "unsupported":
            self._fail("unsupported-hash-scheme", authcid, ctx, row.user_id)
        if not await self._verify_hash(password, stored):
            self._fail("wrong-password", authcid, ctx, row.user_id)
        login = ForumLogin(user_id=int(row.user_id), via="password", peer_ip=ctx.peer_ip)
        return self._identity(
            row,
            authcid,
            ctx,
            login,
            now=int(self._clock()),
            bans=lookup.bans,
            how=f"password/{scheme}",
        )

    def _lookup_user_sync(self, candidates: list[str], with_bans: bool) -> _UserLookup | None:
        u = self._tables.users
        cleaned = [clean_username(c) for c in candidates]
        conditions = [u.c.username.in_(candidates)]
        if any(cleaned):
            conditions.append(u.c.username_clean.in_(sorted({c for c in cleaned if c})))
        stmt = (
            sa.select(
                u.c.user_id,
                u.c.user_type,
                u.c.username,
                u.c.username_clean,
                u.c.user_password,
                u.c.user_email,
            )
            .where(sa.or_(*conditions))
            .limit(8)
        )
        with self._forum.engine.connect() as conn:
            rows = conn.execute(stmt).all()
            row = self._pick_user(rows, candidates, cleaned)
            if row is None:
                return None
            bans: tuple[Any, ...] = ()
            if with_bans and row.user_type != USER_FOUNDER:
                bans = self._bans_sync(conn, row.user_id)
        return _UserLookup(row, bans)

    @staticmethod
    def _pick_user(rows: Sequence[Any], candidates: list[str], cleaned: list[str]) -> Any:
        """Candidate order wins; for each, an exact ``username`` beats a ``username_clean`` hit."""
        for name, clean in zip(candidates, cleaned, strict=True):
            for row in rows:
                if row.username == name:
                    return row
            for row in rows:
                if clean and row.username_clean == clean:
                    return row
        return None

    async def _verify_hash(self, password: str, stored: str) -> bool:
        return await trio.to_thread.run_sync(
            verify_phpbb_hash, password, stored, limiter=self._hash_limiter
        )

    async def _get_dummy_hash(self) -> str:
        """A bcrypt hash to burn time on for unknown users, so timing does not tell."""
        if self._dummy_hash is None:
            import bcrypt

            def make() -> str:
                return bcrypt.hashpw(os.urandom(16), bcrypt.gensalt(10)).decode("ascii")

            self._dummy_hash = await trio.to_thread.run_sync(make, limiter=self._hash_limiter)
        return self._dummy_hash

    # -- shared -----------------------------------------------------------------------

    def _identity(
        self,
        row: Any,
        authcid: str,
        ctx: AuthContext,
        login: ForumLogin,
        *,
        now: int,
        bans: Sequence[Any],
        how: str = "",
    ) -> Identity:
        """Final account checks after the secret was proven right, then the Identity."""
        if row.user_type == USER_INACTIVE:
            self._fail("inactive-account", authcid, ctx, row.user_id, "account-disabled")
        if row.user_type not in _REGISTERED_TYPES:
            self._fail("not-a-registered-account", authcid, ctx, row.user_id)
        if row.user_type != USER_FOUNDER:
            trigger = ban_trigger(bans, int(row.user_id), ctx.peer_ip, row.user_email or "", now)
            if trigger is not None:
                self._fail(f"banned-by-{trigger}", authcid, ctx, row.user_id, "account-disabled")
        try:
            localpart = forum_localpart(row.username)
        except JIDError:
            self._fail("name-not-a-localpart", authcid, ctx, row.user_id)
        log.info(
            "phpbb auth ok user_id=%s localpart=%s via=%s transport=%s ip=%s",
            row.user_id,
            localpart,
            how or login.via,
            ctx.transport,
            ctx.peer_ip,
        )
        return Identity(
            localpart=localpart, display_name=row.username, user_id=int(row.user_id), login=login
        )

    def _fail(
        self,
        reason: str,
        authcid: str,
        ctx: AuthContext,
        user_id: int | None = None,
        condition: str = "not-authorized",
    ) -> NoReturn:
        """Log why (never the secret) and raise the condition the client gets to see."""
        log.info(
            "phpbb auth failed reason=%s authcid=%r user_id=%s transport=%s ip=%s",
            reason,
            authcid[:64],
            user_id,
            ctx.transport,
            ctx.peer_ip,
        )
        raise AuthError(condition)

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._forum.run(fn, *args)

    @staticmethod
    def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > _CACHE_MAX_ENTRIES:
            cache.popitem(last=False)
