"""Engine construction: the per-backend settings the rest of storage relies on.

SQLite gets WAL (readers never block the writer), a busy timeout, case-sensitive LIKE and
foreign keys. pysqlite's own transaction handling is switched off and we emit BEGIN
ourselves, so a connection marked ``xmppd_write`` starts with BEGIN IMMEDIATE: a deferred
transaction that reads and then writes can fail with SQLITE_BUSY without waiting, while
IMMEDIATE takes the write lock up front and honours the busy timeout.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from xmppd.private_files import private_sqlite

WRITE_OPTION = "xmppd_write"

_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}


def normalise_url(url: str) -> sa.URL:
    """Pick the drivers xmppd ships with when the URL names none; force utf8mb4 on MariaDB."""
    parsed = sa.make_url(url)
    if parsed.drivername in _DRIVERS:
        parsed = parsed.set(drivername=_DRIVERS[parsed.drivername])
    if parsed.get_backend_name() in ("mysql", "mariadb") and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.execute("PRAGMA case_sensitive_like=ON")
    finally:
        cursor.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    write = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def create_engine(url: str) -> sa.Engine:
    """A pooled engine for ``url`` with the settings above."""
    parsed = normalise_url(url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False}
        if parsed.database in (None, "", ":memory:"):
            # One shared connection, or every pooled connection would see its own empty DB.
            kwargs["poolclass"] = sa.StaticPool
        else:
            private_sqlite(parsed.database)
        engine = sa.create_engine(parsed, **kwargs)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if backend in ("mysql", "mariadb"):
        kwargs["pool_recycle"] = 3600  # below MariaDB's wait_timeout default
    return sa.create_engine(parsed, **kwargs)
