"""XEP-0198 §4: an ``<a h/>`` counts a stanza only once the server handled it.

A client that sends a message and ``<r/>`` in one write used to get the ack before the
router had stored the message offline (the answer was made while parsing): a crash in
between lost a message the sender had been told was handled (issue 15 part 2). Over
trio's in-memory streams with the real connection shell and a slow offline store.
"""

from __future__ import annotations

import trio
from lxml import etree

from tests.unit.test_client_shell import memory, server  # noqa: F401 (fixture)
from xmppd.server import Server


class SlowOffline:
    """An offline store whose commit takes until the test says so."""

    def __init__(self) -> None:
        self.called = trio.Event()
        self.commit = trio.Event()
        self.stored: list[str] = []

    async def store(self, stanza: etree._Element, to: object) -> bool:
        self.called.set()
        await self.commit.wait()
        self.stored.append(stanza.findtext("{jabber:client}body") or "")
        return True

    def release(self, session: object) -> frozenset[int]:
        return frozenset()

    def start(self, session: object) -> None:
        return None

    def start_for(self, owner: str, prefer: object = None) -> None:
        return None


async def test_ack_waits_until_the_offline_message_is_stored(server: Server) -> None:  # noqa: F811
    slow = SlowOffline()
    server.router.offline_store = slow  # type: ignore[assignment]
    h = memory(server)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(h.run)
        await h.peer.login()
        await h.peer.send(b"<enable xmlns='urn:xmpp:sm:3'/>")
        await h.peer.expect(b"/>")
        await h.peer.send(
            b"<message to='bob@localhost' type='chat' id='m'><body>keep me</body></message>"
            b"<r xmlns='urn:xmpp:sm:3'/>"
        )
        await slow.called.wait()
        with trio.move_on_after(0.3):
            await h.peer.expect(b"<a ")
            raise AssertionError("acknowledged before the message was stored")
        slow.commit.set()
        with trio.fail_after(5):
            got = await h.peer.expect(b"/>")
        assert b'<a xmlns="urn:xmpp:sm:3" h="1"/>' in got
        assert slow.stored == ["keep me"]
        nursery.cancel_scope.cancel()
