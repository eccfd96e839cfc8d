"""phpBB 3.3's ban rules (``banlist``), as its ``session::check_ban()`` applies them.

Bans apply to both kinds of login, founders exempt. A row bans by user id, by client
address or by e-mail address (``*`` wildcards, case-insensitive, whole value),
``ban_end`` in the past means expired, and any matching ``ban_exclude`` row wins over
every ban. phpBB itself checks e-mail bans only at registration and profile changes;
xmppd applies them to every login, so banning an address also locks out members
already using it.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from xmppd.auth.phpbb_schema import PhpbbTables


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


def select_bans(
    conn: sa.Connection, tables: PhpbbTables, user_id: int, now: int
) -> tuple[Any, ...]:
    """Every unexpired ``banlist`` row that could concern ``user_id`` (as phpBB selects
    them: the member's id, and all address and e-mail rows); :func:`ban_trigger` decides."""
    b = tables.banlist
    stmt = sa.select(b.c.ban_userid, b.c.ban_ip, b.c.ban_email, b.c.ban_end, b.c.ban_exclude).where(
        sa.or_(b.c.ban_userid == user_id, b.c.ban_ip != "", b.c.ban_email != ""),
        sa.or_(b.c.ban_end == 0, b.c.ban_end >= now),
    )
    return tuple(conn.execute(stmt).all())
