"""In-memory harness for routing tests: a real Router, real SQLite storage, fake transports.

``Harness`` wires the router with the roster, presence and offline services on a fresh
SQLite database; ``await h.connect("alice@example.org/phone")`` binds a session whose
outbox captures bytes; ``await client.send("<presence/>")`` stamps ``from`` the way the
transport does and routes it; ``client.take()`` returns (and forgets) what arrived.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from lxml import etree

from xmppd.jid import JID
from xmppd.router import Router
from xmppd.services import offline as offline_mod
from xmppd.services import presence as presence_mod
from xmppd.services import roster as roster_mod
from xmppd.session import Session
from xmppd.storage import AsyncDatabase, Database, RosterItem
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
    """Captures the bytes a session would write; ``accept=False`` simulates a cut-off peer."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed: tuple[str | None, str | None] | None = None
        self.accept = True

    def enqueue(self, data: bytes) -> bool:
        if not self.accept:
            return False
        self.sent.append(data)
        return True

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

    async def send(self, xml: str | etree._Element) -> None:
        """Stamp ``from`` (as the transport does) and route."""
        el = stanza(xml) if isinstance(xml, str) else xml
        el.set("from", self.session.full_str)
        await self.harness.router.route(el, self.session)

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
        self.offline = offline_mod.install(self.router, self.adb)
        self.offline.clock = lambda: self.now
        self.roster = roster_mod.install(self.router, self.adb)
        self.presence = presence_mod.install(self.router, self.adb, self.offline)

    def close(self) -> None:
        self.db.dispose()

    async def connect(self, full_jid: str, *, roster: bool = False, online: bool = False) -> Client:
        """Bind a session; optionally fetch the roster and send initial presence."""
        outbox = FakeOutbox()
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
