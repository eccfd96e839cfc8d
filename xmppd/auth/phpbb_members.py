"""List the forum's members, for reserving their usernames as MUC nicks (``sync-nicks``).

The seed's ejabberd setup ran a cron script over the forum database calling a patched
``ejabberdctl``; here one read-only query gives every member who can log in, and the MUC
registry is updated from it in one transaction.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from xmppd.auth.phpbb_names import forum_localpart
from xmppd.auth.phpbb_schema import ANONYMOUS, USER_FOUNDER, USER_NORMAL, phpbb_tables
from xmppd.config import PhpbbConfig
from xmppd.jid import JIDError

log = logging.getLogger("xmppd.auth.phpbb")


def forum_members(config: PhpbbConfig, domain: str) -> list[tuple[str, str]]:
    """``(username, bare JID)`` of every active member (normal users and founders).

    Members whose name cannot be a JID localpart are skipped and logged: they cannot
    log in either, so there is nothing to protect.
    """
    tables = phpbb_tables(config.table_prefix)
    users = tables.users
    engine = sa.create_engine(config.url, hide_parameters=True)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(users.c.username)
                .where(
                    users.c.user_id != ANONYMOUS,
                    users.c.user_type.in_((USER_NORMAL, USER_FOUNDER)),
                )
                # oldest accounts first: of two look-alike names, the older one is kept
                .order_by(users.c.user_id)
            ).all()
    finally:
        engine.dispose()
    members: list[tuple[str, str]] = []
    for (username,) in rows:
        try:
            members.append((username, f"{forum_localpart(username)}@{domain}"))
        except JIDError:
            log.info("event=member_skipped reason=not_a_localpart user_chars=%d", len(username))
    return members
