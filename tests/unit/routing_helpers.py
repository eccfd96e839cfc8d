"""In-memory harness for routing tests: a real Router, real SQLite storage, fake transports.

``Harness`` wires the router with the roster, presence and offline services on a fresh
SQLite database; ``await h.connect("alice@example.org/phone")`` binds a session whose
outbox captures bytes; ``await client.send("<presence/>")`` stamps ``from`` the way the
transport does and routes it (and waits for offline delivery to finish);
``client.take()`` returns (and forgets) what arrived. The offline service delivers from
its own task: use the ``harness`` fixture helper :func:`running_harness`, or call
``await h.start(nursery)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import trio
import trio.testing
from lxml import etree

from xmppd.config import Config
from xmppd.jid import JID
from xmppd.router import Router
from xmppd.services.lifecycle import ServiceContext, build_services
from xmppd.services.offline import OfflineService
from xmppd.services.presence import PresenceManager
from xmppd.services.roster import RosterService
from xmppd.session import Session
from xmppd.storage import AsyncDatabase, Database, RosterItem
from xmppd.transport.progress import WriteProgress
from xmppd.xml import ns

DOMAIN = "example.org"
C = "{%s}" % ns.CLIENT
R = "{%s}" % ns.ROSTER
E = "{%s}" % ns.STANZA_ERRORS
FAST = 64  # PBKDF2 iterations: these tests never log in
FIXED_NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def parse(data: bytes | str) -> etree._Element:
    """Parse one serialised stanza."""
    return etree.fromstring(data.encode() if isinstance(data, str) else data)


def stanza(xml: str) -> etree._Element:
    """A stanza from XML text written without namespaces: ``jabber:client`` is implied."""
    el = parse(xml)
    if el.nsmap.get(None) == ns.CLIENT:
        return el
    wrapper = parse(f'<wrap xmlns="{ns.CLIENT}">{xml}</wrap>')
    return wrapper[0]


def error_condition(el: etree._Element) -> str | None:
    """The defined condition of an error stanza (RFC 6120 §8.3.3), or None."""
    err = el.find(C + "error")
    if err is None:
        return None
    for child in err:
        if child.tag.startswith(E) and not child.tag.endswith("}text"):
            return etree.QName(child).localname
    return None


class FakeOutbox:
    """Captures the bytes a session would write; ``accept=False`` simulates a cut-off peer.

    Bytes count as written at once, unless ``hold`` is set: then they wait in ``held``
    until :meth:`write` (a peer that does not read).
    """

    def __init__(self, limit: int = 1_048_576) -> None:
        self.sent: list[bytes] = []
        self.closed: tuple[str | None, str | None] | None = None
        self.accept = True
        self.hold = False
        self.held = 0
        self.progress = WriteProgress(limit)
        #: The most bytes ever waiting at once (what a real queue would have held).
        self.peak = 0
        self._grew = trio.Event()

    def enqueue(self, data: bytes) -> bool:
        if not self.accept or self.progress.closed:
            return False
        if self.progress.pending + len(data) > self.progress.limit:
            self.cut()
            return False
        self.sent.append(data)
        self.progress.accept(len(data))
        self.peak = max(self.peak, self.progress.pending)
        if self.hold:
            self.held += len(data)
        else:
            self.progress.wrote(len(data))
        self._grew.set()
        return True

    async def grown(self) -> None:
        """Until something more was queued (a hang fails the test after 10 s)."""
        with trio.fail_after(10):
            await self._grew.wait()
        self._grew = trio.Event()

    def write(self) -> None:
        """The peer reads what was held."""
        self.progress.wrote(self.held)
        self.held = 0

    def cut(self) -> None:
        """The connection is gone: nothing more is taken or written."""
        self.progress.close()

    def close(self, condition: str | None = None, text: str | None = None) -> None:
        self.closed = (condition, text)


class DbAccounts:
    """The router's AccountDirectory backed by the users table (off the event loop)."""

    def __init__(self, adb: AsyncDatabase) -> None:
        self.adb = adb

    async def user_exists(self, localpart: str) -> bool:
        return await self.adb.run(self.adb.db.user_exists, localpart)


class Client:
    """One bound resource as a test sees it."""

    def __init__(self, harness: Harness, session: Session, outbox: FakeOutbox) -> None:
        self.harness = harness
        self.session = session
        self.outbox = outbox

    @property
    def jid(self) -> str:
        return self.session.full_str

    async def send(self, xml: str | etree._Element, *, settle: bool = True) -> None:
        """Stamp ``from`` (as the transport does), route, and let offline delivery finish
        (``settle=False`` when a delivery is meant to stay waiting)."""
        el = stanza(xml) if isinstance(xml, str) else xml
        el.set("from", self.session.full_str)
        await self.harness.router.route(el, self.session)
        if settle:
            await self.harness.settle()

    def take(self) -> list[etree._Element]:
        """Everything received since the last call, parsed."""
        out = [parse(data) for data in self.outbox.sent]
        self.outbox.sent.clear()
        return out

    def take_tag(self, local: str) -> list[etree._Element]:
        """Like :meth:`take` but only stanzas of one kind (``presence``, ``iq``, ``message``)."""
        return [el for el in self.take() if el.tag == C + local]

    async def get_roster(self) -> etree._Element:
        """Request the roster (making the resource interested) and return the result."""
        await self.send('<iq type="get" id="r1"><query xmlns="jabber:iq:roster"/></iq>')
        replies = [el for el in self.take() if el.tag == C + "iq" and el.get("id") == "r1"]
        assert len(replies) == 1
        return replies[0]

    async def go_online(self, xml: str = "<presence/>") -> None:
        await self.send(xml)

    async def end(self) -> None:
        """The transport's teardown: unbind, then tell the presence handler."""
        self.harness.router.unbind(self.session)
        self.harness.offline.release(self.session)
        handler = self.harness.router.presence_handler
        if handler is not None:
            await handler.session_ended(self.session)


class Harness:
    """A router with roster, presence and offline services over a real SQLite database."""

    def __init__(self, tmp_path: Path, users: Iterable[str] = ("alice", "bob", "carol")) -> None:
        self.db = Database(f"sqlite:///{tmp_path / 'xmppd.sqlite3'}")
        self.db.upgrade()
        for user in users:
            self.db.create_user(user, "pw", iterations=FAST)
        self.adb = AsyncDatabase(self.db)
        self.router = Router(DOMAIN, DbAccounts(self.adb))
        self.now = FIXED_NOW
        # built as the server builds them, from the default configuration
        ctx = ServiceContext(Config(), self.router, self.adb)
        build_services([OfflineService, RosterService, PresenceManager], ctx)
        self.offline = ctx.need(OfflineService)
        self.offline.clock = lambda: self.now
        self.roster = ctx.need(RosterService)
        self.presence = ctx.need(PresenceManager)

    def close(self) -> None:
        self.db.dispose()

    async def start(self, nursery: trio.Nursery) -> None:
        """Run the offline service's delivery tasks in ``nursery``."""
        await nursery.start(self.offline.run)

    async def settle(self) -> None:
        """Until no offline delivery runs (a hang here fails the test after 10 s)."""
        with trio.fail_after(10):
            await self.offline.wait_idle()
        await trio.testing.wait_all_tasks_blocked()

    async def connect(
        self,
        full_jid: str,
        *,
        roster: bool = False,
        online: bool = False,
        outbox: FakeOutbox | None = None,
    ) -> Client:
        """Bind a session; optionally fetch the roster and send initial presence."""
        outbox = outbox or FakeOutbox()
        session = Session(JID.parse(full_jid), outbox)
        self.router.bind(session)
        client = Client(self, session, outbox)
        if roster:
            await client.get_roster()
        if online:
            await client.go_online()
        client.take()
        return client

    async def put_item(self, owner: str, contact: str, subscription: str, **fields: object) -> None:
        """Write a roster item directly (setting up state, not testing it)."""
        item = RosterItem(jid=contact, subscription=subscription, **fields)  # type: ignore[arg-type]
        await self.adb.run(self.db.put_roster_item, owner, item)

    async def befriend(self, a: str, b: str) -> None:
        """Mutual "both" subscription between two bare JIDs."""
        await self.put_item(a, b, "both")
        await self.put_item(b, a, "both")

    async def item(self, owner: str, contact: str) -> RosterItem | None:
        return await self.adb.run(self.db.get_roster_item, owner, contact)

    async def pending(self, owner: str) -> list[str]:
        """Bare JIDs with a stored inbound subscription request to ``owner``."""
        rows = await self.adb.run(self.db.get_pending_subscriptions, owner)
        return [from_jid for from_jid, _ in rows]


@asynccontextmanager
async def running_harness(
    tmp_path: Path, users: Iterable[str] = ("alice", "bob", "carol")
) -> AsyncIterator[Harness]:
    """A :class:`Harness` whose offline service runs, closed afterwards."""
    harness = Harness(tmp_path, users)
    try:
        async with trio.open_nursery() as nursery:
            await harness.start(nursery)
            yield harness
            nursery.cancel_scope.cancel()
    finally:
        harness.close()
