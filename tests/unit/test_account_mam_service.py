"""The account archive service on a real router and SQLite: what one message leaves in
each archive, ``roster`` preferences, the batch writer and the hourly retention purge."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import trio
import trio.lowlevel
import trio.testing
from lxml import etree

from tests.db_fixtures import FAST, upgraded_database
from tests.unit.routing_helpers import FakeOutbox
from xmppd.jid import JID
from xmppd.mam.config import MamConfig
from xmppd.mam.prefs import Prefs
from xmppd.mam.query import MamQuery
from xmppd.router import Router
from xmppd.services.account_mam import AccountMamService
from xmppd.services.carbons import CarbonsService
from xmppd.session import Session
from xmppd.storage import AsyncDatabase, Database, RosterItem
from xmppd.storage.account_mam import ArchiveRow

SID = "{urn:xmpp:sid:0}stanza-id"


class Accounts:
    async def user_exists(self, localpart: str) -> bool:
        return localpart in ("alice", "bob")


@pytest.fixture
def db() -> Iterator[Database]:
    with upgraded_database("sqlite") as database:
        for user in ("alice", "bob"):
            database.create_user(user, "pw", iterations=FAST)
        yield database


def setup(
    db: Database, **config: object
) -> tuple[Router, AccountMamService, dict[str, FakeOutbox]]:
    router = Router("example.org", Accounts())
    service = AccountMamService(router, AsyncDatabase(db), MamConfig(**config))  # type: ignore[arg-type]
    router.message_observers.append(service)
    router.message_observers.append(CarbonsService(router))
    outboxes = {}
    for full in ("alice@example.org/a", "bob@example.org/b"):
        outbox = FakeOutbox()
        session = Session(JID.parse(full), outbox)
        session.available = True
        router.bind(session)
        outboxes[full] = outbox
    return router, service, outboxes


async def send(router: Router, sender: str, to: str | None, body: str = "hi") -> None:
    stanza = etree.fromstring(
        f'<message xmlns="jabber:client" from="{sender}" type="chat"><body>{body}</body></message>'
    )
    if to is not None:
        stanza.set("to", to)
    await router.route(stanza, router.session_for(JID.parse(sender)))


def archive(service: AccountMamService, owner: str) -> list[tuple[str, str]]:
    page = service.store.query(owner, MamQuery(None))
    return [
        (m.stanza_id, etree.fromstring(m.xml).findtext("{jabber:client}body"))
        for m in page.messages
    ]


async def test_one_message_in_both_archives_and_to_oneself_once(db: Database) -> None:
    router, service, outboxes = setup(db)
    await send(router, "alice@example.org/a", "bob@example.org", "one")
    await send(router, "alice@example.org/a", None, "note to self")
    assert await service.flush()
    delivered = etree.fromstring(outboxes["bob@example.org/b"].sent[0])
    (sid,) = delivered.findall(SID)
    bob = archive(service, "bob@example.org")
    assert bob == [(sid.get("id"), "one")] and sid.get("by") == "bob@example.org"
    alice = archive(service, "alice@example.org")
    assert [body for _, body in alice] == ["one", "note to self"]
    assert alice[0][0] != bob[0][0]
    with_self = service.store.query("alice@example.org", MamQuery(None, with_="alice@example.org"))
    assert len(with_self.messages) == 1


async def test_roster_preference_asks_the_roster(db: Database) -> None:
    router, service, _ = setup(db, default="roster")
    await send(router, "alice@example.org/a", "bob@example.org", "stranger")
    db.put_roster_item("bob@example.org", RosterItem("alice@example.org", subscription="both"))
    await send(router, "alice@example.org/a", "bob@example.org", "contact")
    assert await service.flush()
    assert [body for _, body in archive(service, "bob@example.org")] == ["contact"]
    assert archive(service, "alice@example.org") == []  # bob is not in alice's roster
    service.prefs["alice@example.org"] = Prefs("roster", frozenset({"bob@example.org"}))
    await send(router, "alice@example.org/a", "bob@example.org", "always bob")
    assert await service.flush()
    assert [body for _, body in archive(service, "alice@example.org")] == ["always bob"]


async def eventually(check: object, seconds: float = 10.0) -> None:
    """Wait (real time: the clock is frozen) until ``check()`` holds; the worker threads
    that write and purge finish on their own."""
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await trio.to_thread.run_sync(time.sleep, 0.005)


def bodies(service: AccountMamService) -> list[str | None]:
    return [body for _, body in archive(service, "bob@example.org")]


async def test_writer_and_hourly_retention(
    db: Database, mock_clock: trio.testing.MockClock
) -> None:
    router, service, _ = setup(db, retention_days=2, flush_interval=0.25)
    old = datetime.now(UTC) - timedelta(days=3)
    xml = '<message xmlns="jabber:client"><body>old</body></message>'

    def old_row(sid: str) -> ArchiveRow:
        return ArchiveRow("bob@example.org", sid, "alice@example.org", "", False, old, xml)

    service.store.write_batch([old_row("old")])
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        await send(router, "alice@example.org/a", "bob@example.org", "new")
        mock_clock.jump(0.3)  # the writer's round, and the first purge
        await eventually(lambda: bodies(service) == ["new"])
        service.store.write_batch([old_row("old2")])
        mock_clock.jump(1800)
        assert service.written == 2  # bob's copy and alice's
        for _ in range(20):  # rounds pass, the hour has not
            mock_clock.jump(0.3)
            await trio.lowlevel.checkpoint()
        assert bodies(service) == ["new", "old"]
        mock_clock.jump(1801)
        await eventually(lambda: bodies(service) == ["new"])
        await send(router, "alice@example.org/a", "bob@example.org", "queued at stop")
        nursery.cancel_scope.cancel()
    assert bodies(service) == ["new", "queued at stop"]


async def test_a_full_queue_with_the_database_down_drops_new_rows_not_messages(
    db: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing writes (no writer runs: the database is down): after ``max_commit_wait``
    the new rows are dropped, delivery goes on, and the warning is not one per message."""
    from xmppd.services import account_mam

    monkeypatch.setattr(account_mam, "MAX_QUEUED_ROWS", 2)
    router, service, outboxes = setup(db, max_commit_wait=0.05)
    await send(router, "alice@example.org/a", "bob@example.org", "kept")  # two rows
    await send(router, "alice@example.org/a", "bob@example.org", "dropped")
    await send(router, "alice@example.org/a", "bob@example.org", "dropped too")
    assert len(outboxes["bob@example.org/b"].sent) == 3  # all delivered
    assert service.dropped == 4
    assert [r.getMessage() for r in caplog.records if "mam_queue_full" in r.getMessage()] == [
        "event=mam_queue_full dropped=2"
    ]
    assert await service.flush()
    assert [body for _, body in archive(service, "bob@example.org")] == ["kept"]


async def test_a_full_queue_with_a_slow_database_slows_the_sender_and_loses_nothing(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer slower than the chat: senders wait for room (backpressure), no row is lost."""
    from xmppd.services import account_mam

    monkeypatch.setattr(account_mam, "MAX_QUEUED_ROWS", 2)
    router, service, outboxes = setup(db, batch_size=2, flush_interval=0.01)
    write_batch = service.store.write_batch

    def slow_write(rows: list[ArchiveRow]) -> None:
        time.sleep(0.02)
        write_batch(rows)

    monkeypatch.setattr(service.store, "write_batch", slow_write)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        for n in range(6):
            await send(router, "alice@example.org/a", "bob@example.org", f"m{n}")
        assert await service.flush()
        nursery.cancel_scope.cancel()
    assert service.dropped == 0
    assert len(outboxes["bob@example.org/b"].sent) == 6
    bodies = [body for _, body in archive(service, "bob@example.org")]
    assert bodies == [f"m{n}" for n in range(6)]
    assert len(archive(service, "alice@example.org")) == 6


async def test_a_full_queue_while_writes_fail_drops_at_once(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's last batch failed (the database is down): a sender meeting a full
    queue is not held for ``max_commit_wait``; its message is delivered, its rows dropped."""
    from xmppd.services import account_mam

    monkeypatch.setattr(account_mam, "MAX_QUEUED_ROWS", 2)
    router, service, outboxes = setup(db, max_commit_wait=300)

    def down(rows: list[ArchiveRow]) -> None:
        raise ConnectionError("database is down")

    monkeypatch.setattr(service.store, "write_batch", down)
    await send(router, "alice@example.org/a", "bob@example.org", "queued")
    assert not await service.flush()
    with trio.fail_after(5):
        await send(router, "alice@example.org/a", "bob@example.org", "dropped")
    assert len(outboxes["bob@example.org/b"].sent) == 2
    assert service.dropped == 2
