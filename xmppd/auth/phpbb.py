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
  and the stored hash is verified (:mod:`xmppd.auth.phpbb_hashes`).
- Bans (both kinds of login, founders exempt): phpBB 3.3's ``banlist`` rules, as its
  ``session::check_ban()`` applies them: a row bans by user id, by client address or by
  e-mail address (``*`` wildcards, case-insensitive, whole value), ``ban_end`` in the
  past means expired, and any matching ``ban_exclude`` row wins over every ban. phpBB
  itself checks e-mail bans only at registration and profile changes; xmppd applies
  them to every login, so banning an address also locks out members already using it.

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

JID localparts: ``forum_localpart(username)`` is the project-wide
``xmppd.jid.localpart_for_username`` (XEP-0106 escaping, then ``nodeprep``: PRECIS
UsernameCaseMapped, i.e. width mapping, lower case, NFC), so MUC nick sync and this
backend always agree. It depends only on ``username``, so it is the same every login.
It is unique per forum account: the mapping keeps everything phpBB's ``username_clean``
is computed from (case folding and NFKC absorb width and case mapping), so two names
with one localpart have one ``username_clean`` — which phpBB keeps unique. To make that
a guarantee rather than an argument, ``forum_localpart`` re-checks the round trip and
refuses a localpart whose unescaped form does not clean to the member's own name. A
name that cannot become a valid localpart cannot log in (the reason is logged).
Renaming a member in the forum changes their JID.

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
import functools
import hashlib
import ipaddress
import logging
import math
import os
import re
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
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
from xmppd.auth.phpbb_hashes import hash_scheme, verify_phpbb_hash
from xmppd.auth.phpbb_schema import (
    ANONYMOUS,
    USER_FOUNDER,
    USER_IGNORE,
    USER_INACTIVE,
    USER_NORMAL,
    PhpbbTables,
    phpbb_tables,
)
from xmppd.config import PhpbbConfig
from xmppd.jid import JIDError, localpart_for_username, unescape_localpart

log = logging.getLogger("xmppd.auth.phpbb")

T = TypeVar("T")

SID_PATTERN = re.compile(r"[0-9a-f]{32}")
_PHP_TRIM = " \t\n\r\0\x0b"
_MAX_PASSWORD_CHARS = 4096  # phpBB's passwords manager refuses longer input too
_CONTROL = re.compile("[\x00-\x1f\x7f\x80-\x9f]+")
_MULTISPACE = re.compile(" {2,}")
# The entries of phpBB's homograph table (includes/utf/data/confusables.php) whose key
# is an ASCII character still present after case folding. Forum names often contain
# these (O'Brien, "Hey!"), so without them a password login by name would miss.
_ASCII_CONFUSABLES = str.maketrans(
    {"'": "\u02b9", '"': "\u02b9\u02b9", "?": "\u0294", "!": "\u01c3", "|": "\u4e28"}
)
_CONFIG_DEFAULTS = {
    "session_length": 3600,
    "allow_autologin": 1,
    "max_autologin_time": 0,
    "ip_check": 3,
    "browser_check": 1,
}
_REGISTERED_TYPES = (USER_NORMAL, USER_FOUNDER)
_CACHE_MAX_ENTRIES = 4096
_ENGINE_LOG_NAME = "xmppd_phpbb"


def clean_username(name: str) -> str:
    """Approximate phpBB's ``utf8_clean_string()``, which fills ``users.username_clean``.

    Case folding plus NFKC, the ASCII part of phpBB's homograph table, control
    characters removed, runs of spaces collapsed, trimmed. The rest of the homograph
    table (Cyrillic/Greek look-alikes and friends) is deliberately not ported: SID
    logins never need it (the session row names the user and we only compare names
    for that one row), and a password login under a look-alike spelling only fails —
    it can never select a different account, because the lookup is an equality on the
    unique ``username_clean`` plus an exact match on ``username``.
    """
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    folded = folded.translate(_ASCII_CONFUSABLES)
    folded = _CONTROL.sub("", folded)
    folded = _MULTISPACE.sub(" ", folded)
    return folded.strip(_PHP_TRIM)


def forum_localpart(username: str) -> str:
    """The JID localpart of the forum member called ``username`` (see module docstring).

    Raises :class:`JIDError` when the name cannot be a localpart.
    """
    local = localpart_for_username(username)
    if clean_username(unescape_localpart(local)) != clean_username(username):
        raise JIDError("forum name does not survive JID normalisation")
    return local


def _name_candidates(authcid: str) -> list[str]:
    """The forum names a SASL authcid may mean: the XEP-0106-unescaped form first."""
    candidates: list[str] = []
    try:
        unescaped = unescape_localpart(authcid)
    except (JIDError, ValueError):
        unescaped = authcid
    for name in (unescaped, authcid):
        if name and name not in candidates:
            candidates.append(name)
    return candidates


def _names_user(candidates: Sequence[str], username: str, username_clean: str) -> bool:
    """Whether one of ``candidates`` names the forum member with these names."""
    cleaned = {username_clean, clean_username(username)}
    return any(c == username or clean_username(c) in cleaned for c in candidates)


def ip_matches(session_ip: str, peer_ip: str, ip_check: int) -> bool:
    """phpBB's session IP check: the first ``ip_check`` IPv4 octets must match; for IPv6
    the first ``ip_check + 1`` 16-bit groups (all of them from 4 on); 0 disables it."""
    if ip_check <= 0:
        return True
    try:
        a = ipaddress.ip_address(session_ip.strip())
        b = ipaddress.ip_address(peer_ip.strip())
    except ValueError:
        return session_ip.strip() == peer_ip.strip()
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped:
        a = a.ipv4_mapped
    if isinstance(b, ipaddress.IPv6Address) and b.ipv4_mapped:
        b = b.ipv4_mapped
    if a.version != b.version:
        return False
    if a.version == 4:
        n = min(ip_check, 4)
        return a.packed[:n] == b.packed[:n]
    groups = 8 if ip_check >= 4 else ip_check + 1
    return a.packed[: 2 * groups] == b.packed[: 2 * groups]


def browser_matches(session_browser: str, user_agent: str | None) -> bool:
    """phpBB's browser check: first 149 bytes of the user agent, ASCII-lowercased, trimmed."""

    def norm(value: str) -> bytes:
        return value.encode("utf-8")[:149].lower().strip(_PHP_TRIM.encode())

    return norm(session_browser) == norm(user_agent or "")


def session_expired(
    session_time: int, autologin: bool, now: int, forum_config: dict[str, int]
) -> bool:
    """phpBB's ``session_begin()`` expiry rule for an existing session."""
    if not autologin:
        return session_time < now - (forum_config["session_length"] + 60)
    if not forum_config["allow_autologin"]:
        return True
    max_days = forum_config["max_autologin_time"]
    # phpBB writes "now - 86400 * days + 60": kept as is, so we expire exactly when it does.
    return bool(max_days) and session_time < now - 86400 * max_days + 60


@functools.lru_cache(maxsize=1024)
def _ban_pattern(pattern: str) -> re.Pattern[str]:
    # PHP's preg "/i" without "/u": ASCII case folding, and "." stops at a newline
    regex = ".*?".join(re.escape(part) for part in pattern.split("*"))
    return re.compile(regex, re.IGNORECASE | re.ASCII)


def ban_mask_matches(pattern: str, value: str) -> bool:
    """phpBB ban masks: ``*`` matches anything, compared case-insensitively and whole."""
    return _ban_pattern(pattern).fullmatch(value) is not None


def ban_masks_pattern(masks: Sequence[str]) -> re.Pattern[str]:
    """One pattern whose ``fullmatch`` succeeds where any of ``masks`` would: a one-call
    pre-filter before :func:`ban_mask_matches` runs mask by mask."""
    alternatives = "|".join(f"(?:{_ban_pattern(mask).pattern})" for mask in masks)
    return re.compile(alternatives or "(?!)", re.IGNORECASE | re.ASCII)


def ban_address_form(peer_ip: str) -> str:
    """The client address as phpBB stores and compares it: IPv6 compressed and lower
    case, IPv4-mapped IPv6 as plain IPv4 (phpBB's ``phpbb_ip_normalise``)."""
    text = peer_ip.strip()
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return text
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def ban_trigger(
    bans: Sequence[Any], user_id: int, peer_ip: str, email: str, now: int
) -> str | None:
    """phpBB's ``check_ban()`` for one member: ``user``, ``ip`` or ``email`` when banned.

    Expired rows are skipped; a matching exclusion row wins over any ban, whatever the
    row order. ``peer_ip`` empty means unknown: address bans cannot match then.
    """
    address = ban_address_form(peer_ip) if peer_ip else ""
    trigger: str | None = None
    for ban in bans:
        if ban.ban_end and int(ban.ban_end) < now:
            continue
        by_user = bool(ban.ban_userid) and int(ban.ban_userid) == user_id
        by_ip = bool(ban.ban_ip) and bool(address) and ban_mask_matches(ban.ban_ip, address)
        by_email = bool(ban.ban_email) and ban_mask_matches(ban.ban_email, email or "")
        if not (by_user or by_ip or by_email):
            continue
        if ban.ban_exclude:
            return None
        if trigger is None:
            trigger = "user" if by_user else "ip" if by_ip else "email"
    return trigger


def is_banned(bans: Sequence[Any], user_id: int, peer_ip: str, now: int, email: str = "") -> bool:
    """Whether :func:`ban_trigger` finds a ban for this member."""
    return ban_trigger(bans, user_id, peer_ip, email, now) is not None


def _name_key(candidates: Sequence[str]) -> str:
    """Limiter key for a name before any lookup: what phpBB's ``username_clean`` holds."""
    return "name:" + clean_username(candidates[0])


def _member_key(user_id: int) -> str:
    """Limiter key for a resolved forum member."""
    return f"user:{int(user_id)}"


@dataclass(slots=True, eq=False)
class ForumLogin:
    """How one XMPP session proved it is a forum member, for the periodic re-check.

    ``via`` is ``password``, ``sid`` (a forum session id as the password) or ``cookie``
    (the forum's session cookies, SASL EXTERNAL). For the last two: the forum session
    this login stands on (``sid``; the re-check moves it to another session of the same
    browser when it follows one), that session's browser string, autologin flag and
    start time, and the autologin key found for it. Secrets stay out of ``repr``; the
    object lives in memory only (never stored, never logged).
    """

    user_id: int
    via: str
    peer_ip: str
    sid: str | None = field(default=None, repr=False)
    browser: str = field(default="", repr=False)
    autologin: bool = False
    session_start: int = 0
    key_id: str | None = field(default=None, repr=False)

    @property
    def by_session(self) -> bool:
        """A session-id or cookie login: it ends with its forum session."""
        return self.via != "password"


@dataclass(frozen=True, slots=True)
class _SessionLookup:
    row: Any
    forum_config: dict[str, int]
    bans: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class _UserLookup:
    row: Any
    bans: tuple[Any, ...]


def _connect_args(url: sa.URL, timeout: float) -> dict[str, Any]:
    """Driver-level timeouts and read-only sessions for the drivers we know."""
    backend = url.get_backend_name()
    if backend == "mysql":
        return {
            "connect_timeout": timeout,
            "read_timeout": timeout,
            "write_timeout": timeout,
            "init_command": "SET SESSION TRANSACTION READ ONLY",
        }
    if backend == "postgresql":
        statement_ms = max(1, int(timeout * 1000))
        return {
            # libpq wants whole seconds and treats anything below 2 as 2
            "connect_timeout": max(2, math.ceil(timeout)),
            "options": f"-c statement_timeout={statement_ms} -c default_transaction_read_only=on",
        }
    return {}


class PhpbbAuthenticator:
    """The phpbb backend (see module docstring); implements ``xmppd.auth.base.Authenticator``."""

    name = "phpbb"

    def __init__(
        self, config: PhpbbConfig, domain: str, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.domain = domain
        self._clock = clock
        self._timeout = config.query_timeout
        self._tables: PhpbbTables = phpbb_tables(config.table_prefix)
        url = sa.make_url(config.url)
        pool: dict[str, Any] = {}
        pool_size, overflow = 5, 5
        if url.get_backend_name() in ("mysql", "postgresql"):
            pool = {
                "pool_size": pool_size,
                "max_overflow": overflow,
                "pool_timeout": config.query_timeout,
                "pool_recycle": 1800,
                "pool_pre_ping": True,
            }
        # Rows and bound parameters hold SIDs and hashes: this engine never logs them,
        # whatever level the application gives "sqlalchemy.engine".
        logging.getLogger(f"sqlalchemy.engine.Engine.{_ENGINE_LOG_NAME}").setLevel(logging.WARNING)
        logging.getLogger(f"sqlalchemy.pool.impl.QueuePool.{_ENGINE_LOG_NAME}").setLevel(
            logging.WARNING
        )
        self._engine = sa.create_engine(
            url,
            connect_args=_connect_args(url, config.query_timeout),
            hide_parameters=True,
            logging_name=_ENGINE_LOG_NAME,
            pool_logging_name=_ENGINE_LOG_NAME,
            **pool,
        )
        self._db_limiter = trio.CapacityLimiter(pool_size + overflow)
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
        await trio.to_thread.run_sync(self._engine.dispose)

    async def check_password(self, username: str, password: str, ctx: AuthContext) -> Identity:
        """Authenticate ``username`` with a forum SID or the forum password."""
        if _CONTROL.search(username):
            self._fail("control-characters", username, ctx)
        candidates = _name_candidates(username)
        if not candidates or not password:
            self._fail("empty-credentials", username, ctx)
        claim_account(ctx, _name_key(candidates))
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
        lookup = await self._db(self._lookup_user_sync, _name_candidates(localpart), False)
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
            with self._engine.connect() as conn:
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
            lambda row: _names_user(candidates, row.username, row.username_clean),
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
        claim_account(ctx, _member_key(uid))
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
        with self._engine.connect() as conn:
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
            claim_account(ctx, _member_key(identity.user_id))
            # every session gets its own record, with this connection's address
            login = dataclasses.replace(identity.login, via=via, peer_ip=ctx.peer_ip)
            return dataclasses.replace(identity, login=login)
        lookup = await self._db(self._lookup_session_sync, sid)
        if lookup is None:
            return None
        row, forum_config = lookup.row, lookup.forum_config
        if not owns(row):
            self._fail("session-of-other-user", authcid, ctx, row.user_id)
        claim_account(ctx, _member_key(row.user_id))
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
        with self._engine.connect() as conn:
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
            c.c.config_name.in_(sorted(_CONFIG_DEFAULTS))
        )
        values = dict(_CONFIG_DEFAULTS)
        for name, value in conn.execute(stmt):
            try:
                values[name] = int(str(value).strip() or 0)
            except ValueError:
                log.warning("phpbb config value is not a number name=%s", name)
        self._forum_config = (now + self.config.cache_seconds, values)
        return values

    def _bans_sync(self, conn: sa.Connection, user_id: int) -> tuple[Any, ...]:
        """Every unexpired ``banlist`` row that could concern ``user_id`` (as phpBB selects
        them: the member's id, and all address and e-mail rows); :func:`ban_trigger` decides."""
        b = self._tables.banlist
        now = int(self._clock())
        stmt = sa.select(
            b.c.ban_userid, b.c.ban_ip, b.c.ban_email, b.c.ban_end, b.c.ban_exclude
        ).where(
            sa.or_(b.c.ban_userid == user_id, b.c.ban_ip != "", b.c.ban_email != ""),
            sa.or_(b.c.ban_end == 0, b.c.ban_end >= now),
        )
        return tuple(conn.execute(stmt).all())

    # -- password ---------------------------------------------------------------------

    async def _check_forum_password(
        self, authcid: str, candidates: list[str], password: str, ctx: AuthContext
    ) -> Identity:
        password = password.strip(_PHP_TRIM)  # phpBB trims before hashing and checking
        if not password or len(password) > _MAX_PASSWORD_CHARS:
            self._fail("unusable-password", authcid, ctx)
        lookup = await self._db(self._lookup_user_sync, candidates, True)
        if lookup is not None:
            claim_account(ctx, _member_key(lookup.row.user_id))
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
        with self._engine.connect() as conn:
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
        """Run blocking SQL in a worker thread, bounded by ``query_timeout``."""
        with trio.move_on_after(self._timeout):
            try:
                return await trio.to_thread.run_sync(
                    fn, *args, limiter=self._db_limiter, abandon_on_cancel=True
                )
            except (sa.exc.SQLAlchemyError, OSError) as exc:
                # the engine hides bound parameters, and only the class name is logged
                log.warning("phpbb database error error=%s", type(exc).__name__)
                raise AuthError("temporary-auth-failure") from None
            except Exception:  # a bug here must not take the stream down with it
                log.exception("phpbb backend error")
                raise AuthError("temporary-auth-failure") from None
        log.warning("phpbb database timeout seconds=%s", self._timeout)
        raise AuthError("temporary-auth-failure")

    @staticmethod
    def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > _CACHE_MAX_ENTRIES:
            cache.popitem(last=False)
