"""Throwaway xmppd databases and the storage contract every backend must meet.

``temporary_database(kind)`` yields the URL of a fresh, empty database: a file under a
temp dir for SQLite, a ``xmppd_test_<random>`` database on the MariaDB/PostgreSQL servers
at ``XMPPD_TEST_MYSQL_URL`` / ``XMPPD_TEST_PG_URL`` (admin URLs; defaults root@127.0.0.1
and postgres@127.0.0.1), dropped afterwards. An unreachable server FAILS the test.

``StorageContract`` holds the tests; a test module subclasses it and provides a ``db``
fixture (an upgraded :class:`xmppd.storage.Database`) for its backend.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Literal

import pytest
import sqlalchemy as sa

from xmppd.auth.scram import derive_scram
from xmppd.storage import (
    Database,
    InvalidValue,
    RosterFull,
    RosterItem,
    StorageError,
    UnknownUser,
    UserExists,
)
from xmppd.storage.pubsub import PubsubStore, StoredItem, TooManyNodes

Kind = Literal["sqlite", "mariadb", "postgresql"]
SERVER_KINDS: tuple[Kind, ...] = ("mariadb", "postgresql")

MYSQL_ADMIN_URL = os.environ.get("XMPPD_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/")
PG_ADMIN_URL = os.environ.get(
    "XMPPD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
TABLES = {
    "users",
    "roster_items",
    "roster_versions",
    "pending_subscriptions",
    "offline_messages",
    "blocklist_items",
    "pubsub_nodes",
    "pubsub_items",
    "vcards",
    "private_xml",
    "mam_messages",
    "mam_prefs",
    "upload_files",
}
FAST = 64  # PBKDF2 iterations for tests that do not care about the cost


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
def temporary_database(kind: Kind) -> Iterator[str]:
    """URL of a fresh empty database of ``kind``, removed on exit."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="xmppd_test_") as tmp:
            yield f"sqlite:///{Path(tmp) / 'xmppd.sqlite3'}"
        return
    name = f"xmppd_test_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine(kind)
    if kind == "mariadb":
        # Deliberately the server's default collation: the tables must bring their own.
        create = f"CREATE DATABASE {name} CHARACTER SET utf8mb4"
        drop = f"DROP DATABASE IF EXISTS {name}"
        url = sa.make_url(MYSQL_ADMIN_URL).set(drivername="mysql+pymysql", database=name)
    else:
        create = f"CREATE DATABASE {name} ENCODING 'UTF8' TEMPLATE template0"
        drop = f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        url = sa.make_url(PG_ADMIN_URL).set(database=name)
    with admin.connect() as conn:
        conn.execute(sa.text(create))
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(drop))
        admin.dispose()


@contextlib.contextmanager
def upgraded_database(kind: Kind) -> Iterator[Database]:
    """A :class:`Database` on a fresh database of ``kind`` with all migrations applied."""
    with temporary_database(kind) as url:
        db = Database(url)
        try:
            db.upgrade()
            yield db
        finally:
            db.dispose()


def verifies(creds: object, password: str, hash_name: str) -> bool:
    """Whether ``password`` derives the stored keys (what a login checks)."""
    derived = derive_scram(password, hash_name, salt=creds.salt, iterations=creds.iterations)  # type: ignore[attr-defined]
    return (derived.stored_key, derived.server_key) == (creds.stored_key, creds.server_key)  # type: ignore[attr-defined]


class StorageContract:
    """Behaviour every backend must show; subclasses provide the ``db`` fixture."""

    # -- schema --------------------------------------------------------------------

    def test_upgrade_created_all_tables(self, db: Database) -> None:
        names = set(sa.inspect(db.engine).get_table_names())
        assert names >= TABLES | {"alembic_version"}

    def test_upgrade_twice_is_a_noop(self, db: Database) -> None:
        db.create_user("keep", "pw", iterations=FAST)
        db.upgrade()
        with db.engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
        assert versions == [("0011",)]
        assert db.user_exists("keep")

    def test_models_match_migrations(self, db: Database) -> None:
        from alembic.autogenerate import compare_metadata
        from alembic.migration import MigrationContext

        from xmppd.storage.models import metadata

        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, metadata)
        assert diff == []

    # -- users ---------------------------------------------------------------------

    def test_create_user_stores_only_scram_keys(self, db: Database) -> None:
        db.create_user("Alice", "s3cret-pass", iterations=FAST)
        assert db.user_exists("alice")
        assert not db.user_exists("Alice")  # lookups take normalised localparts
        assert db.list_users() == ["alice"]
        for hash_name in ("sha1", "sha256"):
            creds = db.get_scram("alice", hash_name)
            assert creds is not None
            assert creds.iterations == FAST
            assert verifies(creds, "s3cret-pass", hash_name)
            assert not verifies(creds, "s3cret-pasS", hash_name)
        sha1, sha256 = db.get_scram("alice", "sha1"), db.get_scram("alice", "sha256")
        assert sha1 is not None and sha256 is not None
        assert sha1.salt != sha256.salt
        assert len(sha1.stored_key) == 20 and len(sha256.stored_key) == 32
        with db.engine.connect() as conn:
            row = conn.execute(sa.text("SELECT * FROM users")).one()
        for value in row:
            if isinstance(value, bytes | bytearray | memoryview):
                assert b"s3cret" not in bytes(value)
            else:
                assert "s3cret" not in str(value)

    def test_duplicate_user_is_refused(self, db: Database) -> None:
        db.create_user("bob", "one", iterations=FAST)
        with pytest.raises(UserExists):
            db.create_user("BOB", "two", iterations=FAST)
        creds = db.get_scram("bob", "sha256")
        assert creds is not None and verifies(creds, "one", "sha256")

    def test_bad_localpart_is_refused(self, db: Database) -> None:
        for bad in ("", "a b", "x@y", "a/b", "😀", "x" * 300):
            with pytest.raises(InvalidValue):
                db.create_user(bad, "pw", iterations=FAST)
        assert issubclass(InvalidValue, StorageError)
        assert db.list_users() == []

    def test_unicode_localparts_are_distinct(self, db: Database) -> None:
        names = ["é", "e", "straße", "strasse", "дмитрий", "日本語", "𠀋x", "σίσυφος"]
        for name in names:
            db.create_user(name, f"pw-{name}", iterations=FAST)
        assert sorted(db.list_users()) == sorted(names)
        for name in names:
            creds = db.get_scram(name, "sha256")
            assert creds is not None and verifies(creds, f"pw-{name}", "sha256")

    def test_get_scram_unknown_and_bad_hash(self, db: Database) -> None:
        assert db.get_scram("nobody", "sha256") is None
        db.create_user("carol", "pw", iterations=FAST)
        with pytest.raises(InvalidValue):
            db.get_scram("carol", "md5")

    def test_set_password(self, db: Database) -> None:
        seen: list[str] = []
        db.add_user_listener(seen.append)
        db.create_user("dave", "old", iterations=FAST)
        db.set_password("Dave", "new")
        creds = db.get_scram("dave", "sha256")
        assert creds is not None
        assert verifies(creds, "new", "sha256") and not verifies(creds, "old", "sha256")
        assert creds.iterations == FAST
        sha1 = db.get_scram("dave", "sha1")
        assert sha1 is not None and verifies(sha1, "new", "sha1")
        assert seen == ["dave"]
        with pytest.raises(UnknownUser):
            db.set_password("nobody", "x")

    def test_delete_user_removes_their_data_only(self, db: Database) -> None:
        db.create_user("eve", "pw", iterations=FAST)
        db.create_user("eve2", "pw", iterations=FAST)
        db.put_roster_item("eve@example.org", RosterItem("frank@example.net"))
        db.put_roster_item("eve2@example.org", RosterItem("eve@example.org"))
        db.put_roster_item("frank@example.org", RosterItem("eve@example.org"))
        db.add_pending_subscription("eve@example.org", "x@y", "<presence/>")
        db.add_pending_subscription("eve2@example.org", "x@y", "<presence/>")
        assert db.store_offline("eve@example.org", "<message/>")
        assert db.store_offline("eve2@example.org", "<message id='2'/>")
        pep = PubsubStore(db)
        for owner in ("eve@example.org", "eve2@example.org"):
            item = StoredItem("current", "<avatar xmlns='urn:x'/>", datetime(2026, 1, 1))
            pep.publish(owner, "n", item, owner, create_config="{}", max_items=1, max_nodes=5)
        version_before = db.get_roster("eve@example.org")[0]

        assert db.delete_user("Eve") is True
        assert db.list_users() == ["eve2"]
        version, items = db.get_roster("eve@example.org")
        assert items == [] and version > version_before
        assert db.get_pending_subscriptions("eve@example.org") == []
        assert db.list_offline("eve@example.org") == []
        # Other owners, including those with eve as a contact, are untouched.
        assert [i.jid for i in db.get_roster("eve2@example.org")[1]] == ["eve@example.org"]
        assert [i.jid for i in db.get_roster("frank@example.org")[1]] == ["eve@example.org"]
        assert db.get_pending_subscriptions("eve2@example.org") == [("x@y", "<presence/>")]
        assert db.list_offline("eve2@example.org") == ["<message id='2'/>"]
        assert pep.nodes("eve@example.org") == [] and pep.items("eve@example.org", "n") is None
        assert [i.item_id for i in pep.items("eve2@example.org", "n") or []] == ["current"]
        assert db.delete_user("eve") is False

    def test_create_users_bulk_is_one_transaction(self, db: Database) -> None:
        items = [(f"user{i}", f"pw{i}") for i in range(20)]
        assert db.create_users_bulk(items, iterations=FAST) == 20
        assert len(db.list_users()) == 20
        creds = db.get_scram("user7", "sha256")
        assert creds is not None and verifies(creds, "pw7", "sha256")
        with pytest.raises(UserExists):
            db.create_users_bulk([("new1", "a"), ("user3", "b")], iterations=FAST)
        assert not db.user_exists("new1")
        assert db.create_users_bulk([]) == 0

    # -- roster --------------------------------------------------------------------

    def test_roster_upsert_and_versions(self, db: Database) -> None:
        owner = "gina@example.org"
        assert db.get_roster(owner) == (0, [])
        assert db.get_roster_item(owner, "hal@example.net") is None
        v1 = db.put_roster_item(owner, RosterItem("hal@example.net", groups=("Friends",)))
        assert v1 == 1
        v2 = db.put_roster_item(owner, RosterItem("ida@example.net", name="Ida", ask_out=True))
        assert v2 == 2
        updated = RosterItem(
            "hal@example.net",
            name="Hal ✓",
            subscription="both",
            pending_in=True,
            approved=True,
            groups=("Work", "Ωmega", "Work"),
        )
        assert db.put_roster_item(owner, updated) == 3
        version, items = db.get_roster(owner)
        assert version == 3
        assert items == [
            RosterItem("hal@example.net", "Hal ✓", "both", False, True, True, ("Work", "Ωmega")),
            RosterItem("ida@example.net", "Ida", "none", True, False, False, ()),
        ]
        assert db.get_roster_item(owner, "ida@example.net") == items[1]
        assert db.delete_roster_item(owner, "ida@example.net") == 4
        assert db.delete_roster_item(owner, "ida@example.net") is None
        assert db.get_roster(owner)[0] == 4
        assert db.get_roster("other@example.org") == (0, [])

    def test_roster_rejects_bad_values(self, db: Database) -> None:
        with pytest.raises(InvalidValue):
            db.put_roster_item("a@b", RosterItem("c@d", subscription="maybe"))
        with pytest.raises(InvalidValue):
            db.put_roster_item("a@b", RosterItem("c@" + "d" * 400))
        assert db.get_roster("a@b") == (0, [])

    def test_roster_holds_longest_jids(self, db: Database) -> None:
        owner = "o" * 255 + "@" + "d" * 127
        contact = "ü" * 255 + "@" + "e" * 127
        assert db.put_roster_item(owner, RosterItem(contact, name="n" * 1023)) == 1
        assert db.get_roster_item(owner, contact) == RosterItem(contact, name="n" * 1023)

    def test_roster_limit_refuses_new_items_only(self, db: Database) -> None:
        owner = "rhea@example.org"
        for i in range(3):
            db.put_roster_item(owner, RosterItem(f"c{i}@example.net"), max_items=3)
        with pytest.raises(RosterFull):
            db.put_roster_item(owner, RosterItem("c3@example.net"), max_items=3)
        # an existing item can still change, and another owner is not affected
        db.put_roster_item(owner, RosterItem("c1@example.net", name="One"), max_items=3)
        db.put_roster_item("sam@example.org", RosterItem("c3@example.net"), max_items=3)
        assert db.count_roster(owner) == 3
        assert db.get_roster_item(owner, "c1@example.net") == RosterItem("c1@example.net", "One")
        assert db.get_roster_item(owner, "c3@example.net") is None

    def test_roster_is_case_and_accent_sensitive(self, db: Database) -> None:
        db.put_roster_item("a@x", RosterItem("e@x"))
        db.put_roster_item("a@x", RosterItem("é@x"))
        db.put_roster_item("a@x", RosterItem("E@x"))
        assert [i.jid for i in db.get_roster("a@x")[1]] == ["e@x", "é@x", "E@x"]

    def test_concurrent_roster_writes_get_distinct_versions(self, db: Database) -> None:
        owner = "busy@example.org"

        def put(i: int) -> int:
            return db.put_roster_item(owner, RosterItem(f"c{i}@example.net"))

        with ThreadPoolExecutor(max_workers=4) as pool:
            versions = list(pool.map(put, range(24)))
        assert sorted(versions) == list(range(1, 25))
        assert db.get_roster(owner)[0] == 24

    # -- PEP (pubsub) ---------------------------------------------------------------

    def test_pubsub_nodes_and_items(self, db: Database) -> None:
        store = PubsubStore(db)
        at = datetime(2026, 12, 6, 12, 0, 0)
        owner, node = "alice@example.org", "ünï/cødé ✓ " + "x" * 200

        def put(item_id: str, payload: str = "<p xmlns='urn:x'/>", keep: int = 3) -> bool:
            return store.publish(owner, node, StoredItem(item_id, payload, at), owner + "/r",
                                 create_config="{}", max_items=keep, max_nodes=2)  # fmt: skip

        assert put("1") is True and put("2") is False
        for item_id in ("3", "4"):
            put(item_id)
        assert [i.item_id for i in store.items(owner, node) or []] == ["2", "3", "4"]
        put("2", "<q xmlns='urn:x'>again</q>")  # the same id: replaced, and now the newest
        assert [i.item_id for i in store.items(owner, node, last=2) or []] == ["4", "2"]
        assert [i.item_id for i in store.items(owner, node, ids=["3", "9"]) or []] == ["3"]
        assert store.items(owner, "nope") is None
        store.publish(owner, "empty", None, owner, create_config="{}", max_items=1, max_nodes=2)
        with pytest.raises(TooManyNodes):
            store.create(owner, "third", "{}", max_nodes=2)
        last = store.last_items([owner, "bob@example.org"])
        assert [(o, n.name, i.item_id, i.payload) for o, n, i in last] == [
            (owner, node, "2", "<q xmlns='urn:x'>again</q>")
        ]
        assert store.retract(owner, node, "2") is True and store.retract(owner, node, "2") is False
        assert store.configure(owner, node, '{"max_items": 1}', 1) is True
        assert [i.item_id for i in store.items(owner, node) or []] == ["4"]
        assert store.purge(owner, node) and store.items(owner, node) == []
        assert store.delete(owner, node) and store.node(owner, node) is None
        assert [n.name for n in store.nodes(owner)] == ["empty"]
        # names differing only in trailing spaces are different nodes and items everywhere
        # (MariaDB's collations would compare them equal)
        for name in ("pad", "pad  "):
            store.publish(owner, name, StoredItem(name, f"<{name.strip()} xmlns='urn:x'/>", at),
                          owner, create_config="{}", max_items=5, max_nodes=5)  # fmt: skip
        assert [[i.item_id for i in store.items(owner, n) or []] for n in ("pad", "pad  ")] == [
            ["pad"],
            ["pad  "],
        ]

    # -- pending subscriptions -----------------------------------------------------

    def test_pending_subscriptions(self, db: Database) -> None:
        owner = "jo@example.org"
        db.add_pending_subscription(owner, "kim@example.net", "<presence type='subscribe'/>")
        db.add_pending_subscription(owner, "lee@example.net", "<presence id='l'/>")
        db.add_pending_subscription(owner, "kim@example.net", "<presence id='k2'/>")
        db.add_pending_subscription("someone@example.org", "kim@example.net", "<x/>")
        pending = db.get_pending_subscriptions(owner)
        assert sorted(pending) == [
            ("kim@example.net", "<presence id='k2'/>"),
            ("lee@example.net", "<presence id='l'/>"),
        ]
        db.remove_pending_subscription(owner, "kim@example.net")
        db.remove_pending_subscription(owner, "nobody@example.net")
        assert db.get_pending_subscriptions(owner) == [("lee@example.net", "<presence id='l'/>")]
        assert db.get_pending_subscriptions("someone@example.org") == [("kim@example.net", "<x/>")]

    # -- offline messages ----------------------------------------------------------

    def test_offline_pages_in_order_and_deletes_only_what_it_is_told(self, db: Database) -> None:
        owner = "max@example.org"
        stanzas = [f"<message id='{i}'><body>héllo 😀 {i}</body></message>" for i in range(5)]
        for stanza in stanzas:
            assert db.store_offline(owner, stanza)
        assert db.store_offline("other@example.org", "<message/>")
        page = db.offline_page(owner, 0, 3, 1_000_000)
        assert [xml for _, xml in page] == stanzas[:3]
        ids = [row_id for row_id, _ in page]
        assert ids == sorted(ids)
        rest = db.offline_page(owner, ids[-1], 10, 1_000_000)
        assert [xml for _, xml in rest] == stanzas[3:]
        # reading deletes nothing; deleting takes exactly the rows named, of that owner only
        assert db.list_offline(owner) == stanzas
        assert db.delete_offline("other@example.org", ids) == 0
        assert db.delete_offline(owner, ids[:2]) == 2
        assert db.list_offline(owner) == stanzas[2:]
        assert [xml for _, xml in db.offline_page(owner, 0, 10, 1_000_000)] == stanzas[2:]
        assert db.delete_offline(owner, []) == 0
        assert db.list_offline("other@example.org") == ["<message/>"]

    def test_offline_page_fits_its_byte_budget(self, db: Database) -> None:
        owner = "olga@example.org"
        # 100 characters, 200 UTF-8 bytes each (plus the tags): the budget counts bytes
        stanzas = [f"<m id='{i}'>" + "ж" * 100 + "</m>" for i in range(4)]
        for stanza in stanzas:
            db.store_offline(owner, stanza)
        size = len(stanzas[0].encode())
        page = db.offline_page(owner, 0, 10, 2 * size + size // 2)
        assert [xml for _, xml in page] == stanzas[:2]
        # the first message comes even when it alone is over the budget
        assert [xml for _, xml in db.offline_page(owner, 0, 10, 10)] == stanzas[:1]
        assert db.offline_page("nobody@example.org", 0, 10, 10) == []

    def test_offline_queue_limit(self, db: Database) -> None:
        owner = "ned@example.org"
        assert all(db.store_offline(owner, f"<m id='{i}'/>", limit=3) for i in range(3))
        assert db.store_offline(owner, "<m id='overflow'/>", limit=3) is False
        assert db.store_offline("oz@example.org", "<m/>", limit=3) is True
        assert db.list_offline(owner) == ["<m id='0'/>", "<m id='1'/>", "<m id='2'/>"]
        first = db.offline_page(owner, 0, 1, 1000)[0][0]
        db.delete_offline(owner, [first])
        assert db.store_offline(owner, "<m id='again'/>", limit=3) is True

    def test_offline_holds_a_large_stanza(self, db: Database) -> None:
        big = "<message><body>" + "ж" * 200_000 + "</body></message>"
        assert db.store_offline("pat@example.org", big)
        assert db.offline_page("pat@example.org", 0, 5, 10) == [
            (db.offline_page("pat@example.org", 0, 1, 1)[0][0], big)
        ]

    # -- vCards and private XML (migration 0006) -----------------------------------

    def test_vcards_replace_and_go_with_the_account(self, db: Database) -> None:
        from xmppd.storage.vcard import VcardStore

        store = VcardStore(db)
        db.create_user("vera", "pw", iterations=FAST)
        db.create_user("vera2", "pw", iterations=FAST)
        assert store.get("vera@example.org") is None
        store.put("vera@example.org", "<vCard xmlns='vcard-temp'><FN>V</FN></vCard>")
        big = "<vCard xmlns='vcard-temp'><FN>" + "ж" * 100_000 + "</FN></vCard>"
        store.put("vera@example.org", big)
        store.put("vera2@example.org", "<vCard xmlns='vcard-temp'/>")
        assert store.get("vera@example.org") == big
        db.delete_user("vera")
        assert store.get("vera@example.org") is None
        assert store.get("vera2@example.org") == "<vCard xmlns='vcard-temp'/>"
        assert store.delete("vera2@example.org") is True
        assert store.delete("vera2@example.org") is False

    def test_private_xml_per_namespace_with_quota(self, db: Database) -> None:
        from xmppd.storage.private_xml import PrivateXmlStore, Quota, QuotaExceeded

        store = PrivateXmlStore(db)
        quota = Quota(max_item_size=100, max_total_size=150, max_items=2)
        owner = "pia@example.org"
        db.create_user("pia", "pw", iterations=FAST)
        store.put(owner, "x:a", "<a xmlns='x:a'>ä</a>", quota)
        store.put(owner, "x:a", "<a xmlns='x:a'>" + "1" * 60 + "</a>", quota)  # replaces
        assert store.get(owner, "x:a") == "<a xmlns='x:a'>" + "1" * 60 + "</a>"
        assert store.get(owner, "x:b") is None
        assert store.get("other@example.org", "x:a") is None
        with pytest.raises(QuotaExceeded):  # one item over max_item_size (bytes, not chars)
            store.put(owner, "x:b", "<b xmlns='x:b'>" + "ж" * 40 + "</b>", quota)
        with pytest.raises(QuotaExceeded):  # the account's total
            store.put(owner, "x:b", "<b xmlns='x:b'>" + "2" * 70 + "</b>", quota)
        store.put(owner, "x:b", "<b xmlns='x:b'/>", quota)
        with pytest.raises(QuotaExceeded):  # a third namespace
            store.put(owner, "x:c", "<c xmlns='x:c'/>", quota)
        assert store.get(owner, "x:c") is None
        assert store.total(owner) == len("<a xmlns='x:a'>" + "1" * 60 + "</a><b xmlns='x:b'/>")
        db.delete_user("pia")
        assert store.total(owner) == 0

    # -- the accounts' archive (migration 0007) ------------------------------------

    def test_account_archive_round_trip(self, db: Database) -> None:
        from datetime import UTC, datetime, timedelta

        from xmppd.mam.query import MamQuery
        from xmppd.storage.account_mam import AccountArchiveStore, ArchiveRow

        store = AccountArchiveStore(db)
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        big = "<message><body>" + "ж" * 200_000 + "</body></message>"
        rows = [
            ArchiveRow(
                "ann@example.org",
                f"s{i}",
                "bo@example.org",
                "r" * 1023,
                i == 1,
                t0 + timedelta(seconds=i),
                big if i == 2 else f"<m i='{i}'/>",
            )
            for i in range(4)
        ]
        store.write_batch(rows)
        page = store.query("ann@example.org", MamQuery(None, after="s0", max=2))
        assert [(m.stanza_id, m.stamp) for m in page.messages] == [
            ("s1", t0 + timedelta(seconds=1)),
            ("s2", t0 + timedelta(seconds=2)),
        ]
        assert page.messages[1].xml == big and page.complete is False
        assert (
            store.query("ann@example.org", MamQuery(None, with_="bo@example.org/x")).messages == []
        )
        assert store.purge_before(t0 + timedelta(seconds=2)) == 2

    def test_account_archive_prefs_hold_the_most_jids(self, db: Database) -> None:
        from xmppd.mam.prefs import Prefs
        from xmppd.storage.account_mam import AccountArchiveStore

        store = AccountArchiveStore(db)
        many = frozenset(f"{'u' * 250}{i:03d}@{'d' * 120}.org" for i in range(500))
        store.save_prefs("ann@example.org", Prefs("roster", many, many))
        assert store.load_prefs()["ann@example.org"] == Prefs("roster", many, many)

    # -- XEP-0363 upload slots (xmppd.storage.upload) ------------------------------------

    def test_upload_quota_counts_files_and_open_slots_and_expiry_finds_both(
        self, db: Database
    ) -> None:
        from datetime import timedelta

        from xmppd.storage.models import utcnow
        from xmppd.storage.upload import UploadRow, UploadStore

        store = UploadStore(db)
        now = utcnow().replace(microsecond=0)
        cutoff = now - timedelta(minutes=5)

        def row(
            file_id: str, size: int, created: datetime, owner: str = "u@example.org"
        ) -> UploadRow:
            return UploadRow(file_id, owner, "é.png", size, "image/png", "h" * 64, created, None)

        assert store.grant(row("a" * 24, 600, now), 1000, cutoff) is None
        assert store.grant(row("b" * 24, 500, now), 1000, cutoff) == 600  # over the quota
        assert store.grant(row("c" * 24, 500, now, "v@example.org"), 1000, cutoff) is None
        assert store.grant(row("d" * 24, 900, now - timedelta(hours=1)), 0, cutoff) is None
        assert store.used("u@example.org", cutoff) == 600  # d's slot is no longer open
        assert store.mark_stored("a" * 24, now) and not store.mark_stored("a" * 24, now)
        got = store.get("a" * 24)
        assert got is not None and got.stored_at == now and got.filename == "é.png"
        assert store.get("z" * 24) is None
        assert store.expired(cutoff, None) == ["d" * 24]
        assert sorted(store.expired(cutoff, now + timedelta(seconds=1))) == ["a" * 24, "d" * 24]
        store.delete(["a" * 24, "d" * 24])
        assert store.used("u@example.org", cutoff) == 0
        assert store.used("v@example.org", cutoff) == 500

    def test_deleting_an_account_stops_its_uploads_and_the_sweep_finds_them(
        self, db: Database
    ) -> None:
        from datetime import timedelta

        from xmppd.storage.models import utcnow
        from xmppd.storage.upload import UploadRow, UploadStore

        store = UploadStore(db)
        now = utcnow().replace(microsecond=0)
        for file_id, owner in (("e" * 24, "eve@example.org"), ("f" * 24, "eve2@example.org")):
            row = UploadRow(file_id, owner, "a.png", 10, "image/png", "h" * 64, now, None)
            assert store.grant(row, 0, now) is None
            assert store.mark_stored(file_id, now)
        db.create_user("eve", "pw", iterations=FAST)
        assert db.delete_user("eve")
        gone = store.get("e" * 24)
        assert gone is not None and gone.stored_at is None  # no longer served
        assert store.expired(now - timedelta(minutes=5), None) == ["e" * 24]
        kept = store.get("f" * 24)
        assert kept is not None and kept.stored_at == now

    # -- room archive: retraction (XEP-0424/0425) ---------------------------------------

    def test_muc_retraction_leaves_only_the_tombstone(self, db: Database) -> None:
        from datetime import UTC, datetime

        from xmppd.muc.mam import MamQuery
        from xmppd.storage.muc import MucStore, Write

        store = MucStore(db)
        when = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
        rows = [
            Write("message", {"room": "sax", "stanza_id": sid, "stamp": when, "nick": "ann",
                              "sender": "ann@localhost", "stanza": f"<message>{text}</message>",
                              "origin_id": origin})
            for sid, text, origin in (("s1", "secret words", None), ("s2", "other", "o2"))
        ]  # fmt: skip
        stone = '<message><retracted xmlns="urn:xmpp:message-retract:1"/></message>'
        tombstone = Write("retract", {"room": "sax", "stanza_id": "s1", "stanza": stone})
        store.write_batch([*rows, tombstone])  # the insert and its retraction in one batch
        found = store.find_message("sax", "s1")
        assert found is not None and found[0] == "s1" and found[3] == "ann@localhost"
        assert found[4] == stone and found[1] == when
        assert store.find_message("sax", "nope") is None
        assert store.find_message("other", "s1") is None
        # an author's own origin-id (XEP-0424), only with the author's JID
        assert store.find_message("sax", "o2") is None
        assert store.find_message("sax", "o2", "bob@localhost") is None
        by_origin = store.find_message("sax", "o2", "ann@localhost")
        assert by_origin is not None and by_origin[0] == "s2"
        assert [r[5] for r in store.load_recent("sax", 5)] == ["", "o2"]
        page = store.query_archive("sax", MamQuery(queryid=None))
        assert [m.xml for m in page.messages] == [stone, "<message>other</message>"]

    def test_muc_affiliation_reasons_are_kept_whole(self, db: Database) -> None:
        from xmppd.muc.roles import REASON_MAX
        from xmppd.storage.muc import MucStore, Write

        store = MucStore(db)
        longest = "é€😀" * (REASON_MAX // 3) + "x" * (REASON_MAX % 3)  # 4-byte UTF-8 too
        writes = [
            Write("room", {"name": "sax", "settings_json": "{}", "subject": "",
                           "subject_nick": ""}),
            Write("affiliation", {"room": "sax", "jid": "bob@example.org",
                                  "affiliation": "outcast", "reason": longest}),
            Write("affiliation", {"room": "sax", "jid": "eve.example", "affiliation": "outcast"}),
            Write("affiliation", {"room": "sax", "jid": "ann@example.org",
                                  "affiliation": "member", "reason": "first"}),
            Write("affiliation", {"room": "sax", "jid": "ann@example.org",
                                  "affiliation": "member", "reason": "second"}),
        ]  # fmt: skip
        store.write_batch(writes)
        (room,) = store.load_rooms()
        assert len(longest) == REASON_MAX
        assert room.reasons == {"bob@example.org": longest, "ann@example.org": "second"}
        assert room.affiliations["eve.example"] == "outcast"
