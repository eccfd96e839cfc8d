"""Storage on SQLite (the embedded default), AsyncDatabase and the internal authenticator.

The storage contract itself lives in ``tests/db_fixtures.py`` and also runs against
PostgreSQL and MariaDB in ``tests/integration/test_storage_databases.py``.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import trio

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # so "tests.db_fixtures" imports without a conftest
    sys.path.insert(0, str(ROOT))

from tests.db_fixtures import FAST, StorageContract, upgraded_database  # noqa: E402
from xmppd.auth import internal  # noqa: E402
from xmppd.auth.base import AuthContext, AuthError, Identity  # noqa: E402
from xmppd.auth.internal import InternalAuthenticator  # noqa: E402
from xmppd.storage import AsyncDatabase, Database, RosterItem  # noqa: E402
from xmppd.storage.engine import normalise_url  # noqa: E402

CTX = AuthContext(peer_ip="127.0.0.1", transport="test")


@pytest.fixture
def db() -> Iterator[Database]:
    with upgraded_database("sqlite") as database:
        yield database


class TestSqliteStorage(StorageContract):
    """The shared contract on a fresh SQLite file."""


# -- engine -----------------------------------------------------------------------------


def test_sqlite_pragmas(db: Database) -> None:
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 15000


def test_in_memory_sqlite_shares_one_database() -> None:
    db = Database("sqlite://")
    try:
        db.upgrade()
        db.create_user("mem", "pw", iterations=FAST)
        # Another thread must see the same in-memory database, not a new empty one.
        found: list[bool] = []
        thread = threading.Thread(target=lambda: found.append(db.user_exists("mem")))
        thread.start()
        thread.join()
        assert found == [True]
    finally:
        db.dispose()


def test_url_normalisation() -> None:
    pg = normalise_url("postgresql://u@h/db")
    assert pg.drivername == "postgresql+psycopg"
    my = normalise_url("mysql://u@h/db")
    assert my.drivername == "mysql+pymysql" and my.query["charset"] == "utf8mb4"
    kept = normalise_url("mysql+pymysql://u@h/db?charset=utf8mb4")
    assert kept.drivername == "mysql+pymysql"
    assert normalise_url("sqlite:///x.db").drivername == "sqlite"


def test_database_file_survives_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    first = Database(url)
    first.upgrade()
    first.create_user("persist", "pw", iterations=FAST)
    first.put_roster_item("persist@h", RosterItem("c@h", groups=("g",)))
    first.dispose()
    second = Database(url)
    try:
        second.upgrade()
        assert second.list_users() == ["persist"]
        assert second.get_roster("persist@h") == (1, [RosterItem("c@h", groups=("g",))])
    finally:
        second.dispose()


def test_passwords_never_logged(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    db.create_user("logged", "Very-Secret-1", iterations=FAST)
    db.set_password("logged", "Very-Secret-2")
    db.create_users_bulk([("bulk", "Very-Secret-3")], iterations=FAST)
    assert "logged" in caplog.text  # events are logged ...
    assert "Very-Secret" not in caplog.text  # ... without the secrets


# -- AsyncDatabase ------------------------------------------------------------------------


async def test_async_database_runs_in_worker_threads(db: Database) -> None:
    adb = AsyncDatabase(db, max_threads=2)
    assert adb.db is db
    main = threading.get_ident()
    active = 0
    peak = 0
    lock = threading.Lock()

    def probe(i: int) -> tuple[int, int]:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        threading.Event().wait(0.02)
        with lock:
            active -= 1
        return i, threading.get_ident()

    results: list[tuple[int, int]] = []

    async def one(i: int) -> None:
        results.append(await adb.run(probe, i))

    async with trio.open_nursery() as nursery:
        for i in range(6):
            nursery.start_soon(one, i)
    assert sorted(i for i, _ in results) == list(range(6))
    assert all(ident != main for _, ident in results)
    assert peak == 2
    assert await adb.run(db.store_offline, "a@b", "<m/>") is True
    assert await adb.run(db.list_offline, "a@b") == ["<m/>"]


# -- InternalAuthenticator ----------------------------------------------------------------


@pytest.fixture
def auth(db: Database) -> InternalAuthenticator:
    db.create_user("Alice", "correct horse", iterations=FAST)
    return InternalAuthenticator(AsyncDatabase(db))


async def test_plain_right_password(auth: InternalAuthenticator) -> None:
    assert auth.name == "internal" and auth.supports_scram()
    identity = await auth.check_password("alice", "correct horse", CTX)
    assert identity == Identity(localpart="alice")
    # The SASL authcid is normalised like a JID localpart.
    assert (await auth.check_password("ALICE", "correct horse", CTX)).localpart == "alice"


async def test_plain_wrong_password_unknown_user_bad_name(auth: InternalAuthenticator) -> None:
    for username, password in [
        ("alice", "correct horsE"),
        ("alice", ""),
        ("nobody", "correct horse"),
        ("bad name", "x"),
        ("", "x"),
        ("a@b", "correct horse"),
    ]:
        with pytest.raises(AuthError) as info:
            await auth.check_password(username, password, CTX)
        assert info.value.condition == "not-authorized"


async def test_scram_credentials(auth: InternalAuthenticator, db: Database) -> None:
    for hash_name in ("sha1", "sha256"):
        found = await auth.scram_credentials("Alice", hash_name)
        assert found is not None
        identity, creds = found
        assert identity.localpart == "alice"
        assert creds == db.get_scram("alice", hash_name)
    assert await auth.scram_credentials("nobody", "sha256") is None
    assert await auth.scram_credentials("no body", "sha256") is None


class Gate:
    """Records the accounts the backend claims for the failed-login limits."""

    def __init__(self, spent: tuple[str, ...] = ()) -> None:
        self.claims: list[str] = []
        self.spent = set(spent)

    def claim(self, account: str) -> None:
        self.claims.append(account)
        if account in self.spent:
            raise AuthError("temporary-auth-failure")


async def test_logins_are_claimed_for_the_localpart_before_pbkdf2(
    auth: InternalAuthenticator, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = internal.verify_password
    monkeypatch.setattr(internal, "verify_password", lambda *a: calls.append(1) or real(*a))
    for name in ("alice", "ALICE", "\uff21lice", "nobody"):
        gate = Gate()
        with pytest.raises(AuthError):
            await auth.check_password(name, "wrong", AuthContext(peer_ip="192.0.2.1", gate=gate))
        assert gate.claims == ["nobody" if name == "nobody" else "alice"]
        gate = Gate()
        await auth.scram_credentials(name, "sha256", AuthContext(peer_ip="192.0.2.1", gate=gate))
        assert gate.claims == ["nobody" if name == "nobody" else "alice"]
    assert len(calls) == 4
    spent = AuthContext(peer_ip="192.0.2.1", gate=Gate(spent=("alice",)))
    for secret in ("correct horse", "wrong"):
        with pytest.raises(AuthError) as info:
            await auth.check_password("Alice", secret, spent)
        assert info.value.condition == "temporary-auth-failure"
    with pytest.raises(AuthError):
        await auth.scram_credentials("alice", "sha256", spent)
    assert len(calls) == 4  # a spent budget never reaches PBKDF2
    gate = Gate()  # a name that is no localpart names no account: nothing to claim
    with pytest.raises(AuthError):
        await auth.check_password("al\x01ice", "correct horse", AuthContext("192.0.2.1", gate=gate))
    assert (
        await auth.scram_credentials("al\x7fice", "sha256", AuthContext("192.0.2.1", gate=gate))
        is None
    )
    assert gate.claims == []


async def test_user_exists(auth: InternalAuthenticator) -> None:
    assert await auth.user_exists("alice")
    assert not await auth.user_exists("nobody")


async def test_pbkdf2_runs_off_the_event_loop(
    auth: InternalAuthenticator, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []
    real = internal.verify_password

    def spy(*args: object) -> bool:
        threads.append(threading.get_ident())
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(internal, "verify_password", spy)
    await auth.check_password("alice", "correct horse", CTX)
    with pytest.raises(AuthError):
        await auth.check_password("nobody", "x", CTX)  # the dummy derivation too
    assert len(threads) == 2
    assert threading.get_ident() not in threads


async def test_repeated_login_skips_pbkdf2_but_wrong_password_does_not(
    auth: InternalAuthenticator, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = internal.verify_password

    def counting(password: str, *args: object) -> bool:
        calls.append("x")
        return real(password, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(internal, "verify_password", counting)
    await auth.check_password("alice", "correct horse", CTX)
    await auth.check_password("alice", "correct horse", CTX)
    assert len(calls) == 1
    with pytest.raises(AuthError):
        await auth.check_password("alice", "wrong", CTX)
    assert len(calls) == 2


async def test_remember_passwords_off_always_derives(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.create_user("rita", "pw", iterations=FAST)
    auth = InternalAuthenticator(AsyncDatabase(db), remember_passwords=False)
    calls: list[int] = []
    real = internal.verify_password
    monkeypatch.setattr(internal, "verify_password", lambda *a: calls.append(1) or real(*a))
    await auth.check_password("rita", "pw", CTX)
    await auth.check_password("rita", "pw", CTX)
    assert len(calls) == 2


async def test_password_change_through_same_database_invalidates_cache(
    auth: InternalAuthenticator, db: Database
) -> None:
    adb = AsyncDatabase(db)
    await auth.check_password("alice", "correct horse", CTX)  # now cached and remembered
    await adb.run(db.set_password, "alice", "battery staple")
    with pytest.raises(AuthError):
        await auth.check_password("alice", "correct horse", CTX)
    assert (await auth.check_password("alice", "battery staple", CTX)).localpart == "alice"
    await adb.run(db.delete_user, "alice")
    with pytest.raises(AuthError):
        await auth.check_password("alice", "battery staple", CTX)
    assert await auth.scram_credentials("alice", "sha256") is None


async def test_change_by_another_process_is_seen_after_ttl(db: Database) -> None:
    now = [1000.0]
    db.create_user("sam", "first", iterations=FAST)
    auth = InternalAuthenticator(AsyncDatabase(db), cache_ttl=30.0, clock=lambda: now[0])
    await auth.check_password("sam", "first", CTX)
    other = Database(db.engine.url.render_as_string(hide_password=False))  # e.g. the CLI
    try:
        other.set_password("sam", "second")
    finally:
        other.dispose()
    # Within the TTL the cached keys still answer ...
    assert (await auth.check_password("sam", "first", CTX)).localpart == "sam"
    now[0] += 31.0
    # ... after it, the database does.
    with pytest.raises(AuthError):
        await auth.check_password("sam", "first", CTX)
    assert (await auth.check_password("sam", "second", CTX)).localpart == "sam"


async def test_cache_is_bounded(db: Database) -> None:
    db.create_users_bulk([(f"u{i}", "pw") for i in range(5)], iterations=FAST)
    auth = InternalAuthenticator(AsyncDatabase(db), cache_size=3)
    for i in range(5):
        assert await auth.scram_credentials(f"u{i}", "sha256") is not None
    assert len(auth._cache._data) == 3
    assert {lp for lp, _ in auth._cache._data} == {"u2", "u3", "u4"}
    await auth.aclose()
    assert len(auth._cache._data) == 0


def test_sqlite_tables_use_no_plaintext_column(db: Database) -> None:
    columns = {c["name"] for c in sa.inspect(db.engine).get_columns("users")}
    assert not any("password" in name for name in columns)
