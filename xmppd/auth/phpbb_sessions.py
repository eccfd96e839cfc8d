"""phpBB's rules for a forum session, and the record of how a chat session logged in.

A session id login (and the periodic re-check, :mod:`xmppd.auth.phpbb_recheck`) applies
them as phpBB does for a page view: expiry by ``session_length`` and the autologin
settings, the ``ip_check`` address prefix and the ``browser_check`` user agent.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from xmppd.auth.phpbb_names import PHP_TRIM

#: The forum settings the session rules read, and phpBB's defaults for them.
FORUM_CONFIG_DEFAULTS = {
    "session_length": 3600,
    "allow_autologin": 1,
    "max_autologin_time": 0,
    "ip_check": 3,
    "browser_check": 1,
}


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
        return value.encode("utf-8")[:149].lower().strip(PHP_TRIM.encode())

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
