"""The slice of phpBB 3.3's schema the auth backend reads, as SQLAlchemy Core tables.

Only the columns xmppd selects are declared; the forum owns the real tables (see
``tests/phpbb/schema_*.sql`` for their full 3.3 shape). Table names carry the forum's
configurable prefix, so the prefix is validated before it goes anywhere near SQL, and
names are rendered unquoted: phpBB creates them unquoted, so PostgreSQL folds them to
lower case and MySQL keeps them as written — exactly what an unquoted name matches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Integer, MetaData, SmallInteger, String, Table

_PREFIX = re.compile(r"[A-Za-z0-9_]*")

# phpBB constants (phpBB/includes/constants.php)
ANONYMOUS = 1
USER_NORMAL = 0
USER_INACTIVE = 1
USER_IGNORE = 2
USER_FOUNDER = 3


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is safe to splice into a table name, else raise ValueError."""
    if not _PREFIX.fullmatch(prefix):
        raise ValueError("phpbb table_prefix may only contain letters, digits and underscores")
    return prefix


@dataclass(frozen=True, slots=True)
class PhpbbTables:
    """Handles on the forum tables xmppd reads (never writes)."""

    metadata: MetaData
    users: Table
    sessions: Table
    sessions_keys: Table
    banlist: Table
    config: Table


def phpbb_tables(prefix: str = "phpbb_") -> PhpbbTables:
    """Declare the tables for a forum whose tables start with ``prefix``."""
    prefix = validate_prefix(prefix)
    md = MetaData()
    users = Table(
        f"{prefix}users",
        md,
        Column("user_id", Integer, primary_key=True),
        Column("user_type", SmallInteger),
        Column("username", String(255)),
        Column("username_clean", String(255)),
        Column("user_password", String(255)),
        Column("user_email", String(100)),
        Column("user_email_hash", BigInteger),
        quote=False,
    )
    sessions = Table(
        f"{prefix}sessions",
        md,
        Column("session_id", String(32), primary_key=True),
        Column("session_user_id", Integer),
        Column("session_start", Integer),
        Column("session_time", Integer),
        Column("session_ip", String(40)),
        Column("session_browser", String(150)),
        Column("session_autologin", SmallInteger),
        quote=False,
    )
    sessions_keys = Table(
        f"{prefix}sessions_keys",
        md,
        Column("key_id", String(32), primary_key=True),
        Column("user_id", Integer, primary_key=True),
        Column("last_ip", String(40)),
        Column("last_login", Integer),
        quote=False,
    )
    banlist = Table(
        f"{prefix}banlist",
        md,
        Column("ban_id", Integer, primary_key=True),
        Column("ban_userid", Integer),
        Column("ban_ip", String(40)),
        Column("ban_email", String(100)),
        Column("ban_start", Integer),
        Column("ban_end", Integer),
        Column("ban_exclude", SmallInteger),
        quote=False,
    )
    config = Table(
        f"{prefix}config",
        md,
        Column("config_name", String(255), primary_key=True),
        Column("config_value", String(255)),
        quote=False,
    )
    return PhpbbTables(md, users, sessions, sessions_keys, banlist, config)
