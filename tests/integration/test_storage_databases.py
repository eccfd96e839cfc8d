"""The storage contract and the internal authenticator on PostgreSQL and MariaDB.

Each test runs once per server, on a fresh ``xmppd_test_<random>`` database that is
dropped afterwards (see ``tests/db_fixtures.py``). An unreachable server fails the test.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # so "tests.db_fixtures" imports without a conftest
    sys.path.insert(0, str(ROOT))

from tests.db_fixtures import (  # noqa: E402
    FAST,
    SERVER_KINDS,
    TABLES,
    StorageContract,
    upgraded_database,
)
from xmppd.auth.base import AuthContext, AuthError  # noqa: E402
from xmppd.auth.internal import InternalAuthenticator  # noqa: E402
from xmppd.storage import AsyncDatabase, Database  # noqa: E402

pytestmark = pytest.mark.integration

CTX = AuthContext(peer_ip="192.0.2.1", transport="test")


@pytest.fixture(params=SERVER_KINDS)
def db(request: pytest.FixtureRequest) -> Iterator[Database]:
    with upgraded_database(request.param) as database:
        yield database


class TestServerStorage(StorageContract):
    """The shared contract, once on MariaDB and once on PostgreSQL."""


def test_dialect_is_the_server_asked_for(db: Database) -> None:
    with db.engine.connect() as conn:
        version = conn.exec_driver_sql("SELECT version()").scalar_one()
    if db.engine.dialect.name == "postgresql":
        assert "PostgreSQL" in version
    else:
        assert "MariaDB" in version


def test_mariadb_tables_are_utf8mb4_bin(db: Database) -> None:
    if db.engine.dialect.name != "mysql":
        assert db.engine.dialect.name == "postgresql"
        return
    with db.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT table_name, table_collation FROM information_schema.tables"
                " WHERE table_schema = DATABASE()"
            )
        ).all()
    collations = {name: collation for name, collation in rows if name in TABLES}
    assert collations == dict.fromkeys(TABLES, "utf8mb4_bin")


async def test_internal_authenticator_plain(db: Database) -> None:
    db.create_user("Zoë", "right one", iterations=FAST)
    auth = InternalAuthenticator(AsyncDatabase(db))
    assert (await auth.check_password("ZOË", "right one", CTX)).localpart == "zoë"
    for username, password in [("zoë", "wrong one"), ("zoe", "right one"), ("x y", "z")]:
        with pytest.raises(AuthError) as info:
            await auth.check_password(username, password, CTX)
        assert info.value.condition == "not-authorized"
    found = await auth.scram_credentials("zoë", "sha1")
    assert found is not None and found[1] == db.get_scram("zoë", "sha1")
    await auth.aclose()
