"""Throwaway phpBB 3.3 databases on MariaDB and PostgreSQL, for any test that needs a forum.

Each use creates a fresh database with a random name, loads ``schema_mysql.sql`` or
``schema_postgres.sql`` (optionally with another table prefix), inserts the rows every
phpBB board has (the guest user, the session config), and drops the database afterwards.

    from tests.phpbb.fixtures import phpbb_db  # noqa: F401 - parametrised over both DBs

    def test_something(phpbb_db):
        uid = phpbb_db.add_user("Jane Doe", password_hash=bcrypt_hash("pw"))
        sid = phpbb_db.add_session(uid, session_time=NOW)

The servers are found at ``XMPPD_TEST_MYSQL_URL`` / ``XMPPD_TEST_PG_URL`` (admin URLs,
defaults: root@127.0.0.1:3306 and postgres@127.0.0.1:5432). An unreachable server FAILS
the test: CI must start both, and a skipped database test would hide that.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
import sqlalchemy as sa

from xmppd.auth.phpbb_names import clean_username
from xmppd.auth.phpbb_schema import validate_prefix

Kind = Literal["mariadb", "postgresql"]
KINDS: tuple[Kind, ...] = ("mariadb", "postgresql")

HERE = Path(__file__).resolve().parent
MYSQL_ADMIN_URL = os.environ.get("XMPPD_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/")
PG_ADMIN_URL = os.environ.get(
    "XMPPD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)

# phpBB's shipped defaults (install/schemas/schema_data.sql) for what session checks read.
DEFAULT_CONFIG = {
    "session_length": "3600",
    "allow_autologin": "1",
    "max_autologin_time": "0",
    "ip_check": "3",
    "browser_check": "1",
    "forwarded_for_check": "0",
}


def schema_statements(kind: Kind, prefix: str = "phpbb_") -> list[str]:
    """The schema file for ``kind`` as single statements, with ``prefix`` applied."""
    name = "schema_mysql.sql" if kind == "mariadb" else "schema_postgres.sql"
    text = (HERE / name).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.startswith("--")]
    body = "\n".join(lines).replace("phpbb_", validate_prefix(prefix))
    statements = []
    current: list[str] = []
    for line in body.splitlines():
        current.append(line)
        if line.rstrip().endswith(";"):
            statement = "\n".join(current).strip().rstrip(";")
            if statement:
                statements.append(statement)
            current = []
    return statements


class PhpbbDatabase:
    """One throwaway forum database and helpers to fill it."""

    def __init__(self, kind: Kind, url: str, engine: sa.Engine, prefix: str) -> None:
        self.kind = kind
        self.url = url
        self.engine = engine
        self.prefix = prefix

    def _table(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def execute(self, sql: str, **params: Any) -> sa.CursorResult[Any]:
        """Run one statement in its own transaction (``{p}`` in ``sql`` is the prefix)."""
        with self.engine.begin() as conn:
            return conn.execute(sa.text(sql.replace("{p}", self.prefix)), params)

    def add_user(
        self,
        username: str,
        *,
        password_hash: str = "",
        user_type: int = 0,
        username_clean: str | None = None,
        email: str = "",
        user_id: int | None = None,
    ) -> int:
        """Insert a member as phpBB's ``user_add()`` would; returns the user_id."""
        params = {
            "user_type": user_type,
            "username": username,
            "username_clean": (
                clean_username(username) if username_clean is None else username_clean
            ),
            "user_password": password_hash,
            "user_email": email,
        }
        cols = (
            "user_type, username, username_clean, user_password, user_email,"
            " user_permissions, user_sig"
        )
        vals = ":user_type, :username, :username_clean, :user_password, :user_email, '', ''"
        if user_id is not None:
            cols, vals = "user_id, " + cols, ":user_id, " + vals
            params["user_id"] = user_id
        table = self._table("users")
        with self.engine.begin() as conn:
            if self.kind == "postgresql":
                sql = f"INSERT INTO {table} ({cols}) VALUES ({vals}) RETURNING user_id"
                return int(conn.execute(sa.text(sql), params).scalar_one())
            result = conn.execute(sa.text(f"INSERT INTO {table} ({cols}) VALUES ({vals})"), params)
            return int(user_id if user_id is not None else result.lastrowid)

    def add_session(
        self,
        user_id: int,
        *,
        session_time: int,
        sid: str | None = None,
        autologin: bool = False,
        ip: str = "127.0.0.1",
        browser: str = "",
    ) -> str:
        """Insert a session row like ``session_create()``; returns the 32-hex session id."""
        sid = sid or secrets.token_hex(16)
        self.execute(
            "INSERT INTO {p}sessions (session_id, session_user_id, session_last_visit,"
            " session_start, session_time, session_ip, session_browser, session_autologin)"
            " VALUES (:sid, :uid, :t, :t, :t, :ip, :browser, :auto)",
            sid=sid,
            uid=user_id,
            t=session_time,
            ip=ip,
            browser=browser,
            auto=1 if autologin else 0,
        )
        return sid

    def add_members(
        self, count: int, *, session_time: int, browser: str = "", first_id: int = 100_000
    ) -> list[tuple[int, str]]:
        """Bulk-insert ``count`` members (``member<N>``, no password), each with one forum
        session; returns their (user_id, session id). For load tests and benchmarks."""
        users = [
            {
                "user_id": first_id + n,
                "username": f"member{n}",
                "user_email": f"member{n}@example.org",
            }
            for n in range(count)
        ]
        sessions = [
            {"sid": secrets.token_hex(16), "uid": user["user_id"], "t": session_time, "b": browser}
            for user in users
        ]
        with self.engine.begin() as conn:
            conn.execute(
                sa.text(
                    f"INSERT INTO {self._table('users')} (user_id, user_type, username,"
                    " username_clean, user_password, user_email, user_permissions, user_sig)"
                    " VALUES (:user_id, 0, :username, :username, '', :user_email, '', '')"
                ),
                users,
            )
            conn.execute(
                sa.text(
                    f"INSERT INTO {self._table('sessions')} (session_id, session_user_id,"
                    " session_last_visit, session_start, session_time, session_ip,"
                    " session_browser, session_autologin)"
                    " VALUES (:sid, :uid, :t, :t, :t, '127.0.0.1', :b, 0)"
                ),
                sessions,
            )
        return [(row["uid"], row["sid"]) for row in sessions]

    def set_config(self, name: str, value: str | int) -> None:
        """Insert or replace one ``config`` row."""
        self.execute("DELETE FROM {p}config WHERE config_name = :n", n=name)
        self.execute(
            "INSERT INTO {p}config (config_name, config_value) VALUES (:n, :v)",
            n=name,
            v=str(value),
        )

    def add_ban(
        self,
        *,
        user_id: int = 0,
        ip: str = "",
        email: str = "",
        end: int = 0,
        exclude: bool = False,
    ) -> None:
        """Insert a ``banlist`` row (``end`` 0 = permanent)."""
        self.execute(
            "INSERT INTO {p}banlist (ban_userid, ban_ip, ban_email, ban_start, ban_end,"
            " ban_exclude, ban_reason, ban_give_reason)"
            " VALUES (:uid, :ip, :email, 0, :end, :ex, '', '')",
            uid=user_id,
            ip=ip,
            email=email,
            end=end,
            ex=1 if exclude else 0,
        )


def _admin_engine(kind: Kind) -> sa.Engine:
    url = MYSQL_ADMIN_URL if kind == "mariadb" else PG_ADMIN_URL
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        engine.dispose()
        pytest.fail(f"{kind} is not reachable at {url} ({type(exc.orig).__name__}); start it")
    return engine


@contextlib.contextmanager
def phpbb_database(kind: Kind, prefix: str = "phpbb_") -> Iterator[PhpbbDatabase]:
    """Create, fill and finally drop a throwaway phpBB database on ``kind``."""
    name = f"xmppd_phpbb_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine(kind)
    if kind == "mariadb":
        create = f"CREATE DATABASE {name} CHARACTER SET utf8 COLLATE utf8_bin"
        drop = f"DROP DATABASE IF EXISTS {name}"
        url = sa.make_url(MYSQL_ADMIN_URL).set(database=name, query={"charset": "utf8mb4"})
    else:
        create = f"CREATE DATABASE {name} ENCODING 'UTF8' TEMPLATE template0"
        drop = f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        url = sa.make_url(PG_ADMIN_URL).set(database=name)
    with admin.connect() as conn:
        conn.execute(sa.text(create))
    url_text = url.render_as_string(hide_password=False)
    engine = sa.create_engine(url_text, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            for statement in schema_statements(kind, prefix):
                conn.exec_driver_sql(statement)
        db = PhpbbDatabase(kind, url_text, engine, prefix)
        db.add_user("Anonymous", user_type=2, user_id=1)
        if kind == "postgresql":
            db.execute("SELECT setval('{p}users_seq', 1)")
        for key, value in DEFAULT_CONFIG.items():
            db.set_config(key, value)
        yield db
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(drop))
        admin.dispose()


@pytest.fixture(params=KINDS)
def phpbb_db(request: pytest.FixtureRequest) -> Iterator[PhpbbDatabase]:
    """A fresh phpBB database, once on MariaDB and once on PostgreSQL."""
    with phpbb_database(request.param) as db:
        yield db
