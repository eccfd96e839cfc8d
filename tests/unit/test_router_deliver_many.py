"""Router.deliver_many: ready bytes to many full JIDs, and who was not reached."""

from __future__ import annotations

from lxml import etree

from tests.unit.routing_helpers import FakeOutbox
from xmppd.jid import JID
from xmppd.muc.wire import Template, recipient
from xmppd.router import Router
from xmppd.session import Session


class Nobody:
    async def user_exists(self, localpart: str) -> bool:
        return False


class Component:
    """A service taking stanzas for its domain, like a connected XEP-0114 component."""

    keeps_stanza = True

    def __init__(self, accept: bool = True) -> None:
        self.got: list[tuple[str, str]] = []
        self.accept = accept

    async def handle(self, stanza: etree._Element, to: JID, origin: object) -> None:
        pass

    def deliver(self, stanza: etree._Element, to: JID) -> bool:
        self.got.append((stanza.get("to") or "", str(to)))
        return self.accept


def bind(router: Router, full: str) -> FakeOutbox:
    outbox = FakeOutbox()
    router.bind(Session(JID.parse(full), outbox))
    return outbox


def test_copies_reach_sessions_as_is_and_the_unreached_are_listed() -> None:
    router = Router("example.org", Nobody())
    alice, bob = bind(router, "alice@example.org/a"), bind(router, "bob@example.org/b")
    bob.accept = False  # its queue cut it off
    router.ending.add("carol@example.org/leaving")
    bridge = Component()
    router.services["irc.example.org"] = bridge
    router.services["gone.example.org"] = Component(accept=False)
    tpl = Template(etree.fromstring(b'<message xmlns="jabber:client" type="groupchat"/>'))
    to = [
        "alice@example.org/a",
        "bob@example.org/b",
        "carol@example.org/leaving",
        "dave@example.org/x",
        "relay@irc.example.org/r",
        "relay@gone.example.org/r",
        "eve@elsewhere.example/e",
    ]
    rcpts = [recipient(JID.parse(j)) for j in to]
    lost = router.deliver_many([(r, tpl.to(r)) for r in rcpts])
    assert alice.sent == [tpl.to(rcpts[0])]
    assert bridge.got == [("relay@irc.example.org/r", "relay@irc.example.org/r")]
    assert lost == [
        "bob@example.org/b",
        "dave@example.org/x",
        "relay@gone.example.org/r",
        "eve@elsewhere.example/e",
    ]


def test_the_sending_service_is_never_delivered_to() -> None:
    router = Router("example.org", Nobody())
    muc = Component()
    router.services["conference.example.org"] = muc
    rcpt = recipient(JID.parse("room@conference.example.org/nick"))
    tpl = Template(etree.fromstring(b'<presence xmlns="jabber:client"/>'))
    assert router.deliver_many([(rcpt, tpl.to(rcpt))], source=muc) == [rcpt.full]
    assert muc.got == []
