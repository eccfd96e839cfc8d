"""What an ended XEP-0198 session's unacknowledged stanzas become: chats and normal
messages are handed on (RFC 6121 §8.5.3.2.1), requests bounced, the rest dropped — and an
archive query's results (XEP-0313) and carbon copies (XEP-0280), meant for that session
alone, are dropped too rather than landing on another resource or in offline storage."""

from __future__ import annotations

from typing import Any

import trio
from lxml import etree

from xmppd.jid import JID
from xmppd.session import Session
from xmppd.transport.sm import ResumptionManager


class Router:
    def __init__(self) -> None:
        self.handed_on: list[tuple[str, str]] = []
        self.bounced: list[str] = []

    async def redeliver(self, el: etree._Element, bare: JID) -> None:
        self.handed_on.append((el.get("id") or "", str(bare)))

    def bounce(self, el: etree._Element, error: Any) -> None:
        self.bounced.append(el.get("id") or "")


class Outbox:
    def send(self, data: bytes) -> bool:
        return True

    def close(self, condition: str | None = None, text: str | None = None) -> None: ...


STANZAS = [
    b"<message id='chat' type='chat' to='alice@localhost/phone'><body>hi</body></message>",
    b"<message id='normal' to='alice@localhost/phone'><body>note</body></message>",
    b"<message id='mam' to='alice@localhost/phone'><result xmlns='urn:xmpp:mam:2' "
    b"queryid='q1' id='x'><forwarded xmlns='urn:xmpp:forward:0'><message type='chat'>"
    b"<body>old</body></message></forwarded></result></message>",
    b"<message id='received' type='chat' from='alice@localhost' to='alice@localhost/phone'>"
    b"<received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
    b"<message type='chat'><body>to the desk</body></message></forwarded></received></message>",
    b"<message id='sent' type='chat' from='alice@localhost' to='alice@localhost/phone'>"
    b"<sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
    b"<message type='chat'><body>from the desk</body></message></forwarded></sent></message>",
    b"<message id='headline' type='headline'><event xmlns='http://jabber.org/protocol/pubsub#event'/></message>",
    b"<iq id='ask' type='get'><ping xmlns='urn:xmpp:ping'/></iq>",
]


def test_only_chats_and_normal_messages_are_handed_on() -> None:
    router = Router()
    manager = ResumptionManager(router, None, None)  # type: ignore[arg-type]
    session = Session(JID("alice", "localhost", "phone"), Outbox())
    trio.run(manager.redeliver, session, STANZAS)
    assert router.handed_on == [("chat", "alice@localhost"), ("normal", "alice@localhost")]
    assert router.bounced == ["ask"]


def test_a_chat_quoting_a_result_in_its_body_is_still_handed_on() -> None:
    """Only a result or carbon element *of the message* counts, not one deeper inside."""
    router = Router()
    manager = ResumptionManager(router, None, None)  # type: ignore[arg-type]
    session = Session(JID("alice", "localhost", "phone"), Outbox())
    nested = (
        b"<message id='deep' type='chat'><x xmlns='urn:example'>"
        b"<result xmlns='urn:xmpp:mam:2'/></x><body>x</body></message>"
    )
    trio.run(manager.redeliver, session, [nested])
    assert router.handed_on == [("deep", "alice@localhost")]
