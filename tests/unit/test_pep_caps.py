"""The caps tracker of PEP (XEP-0115 §6.2-§6.3 as XEP-0163 uses it), with a real router
and in-memory sessions: one disco#info per unknown ver, verified before it is believed."""

from __future__ import annotations

import base64
import hashlib

from lxml import etree

from tests.unit.routing_helpers import FakeOutbox, parse
from xmppd.jid import JID
from xmppd.router import Router
from xmppd.services.pep_caps import CapsTracker
from xmppd.session import Session

DISCO = "http://jabber.org/protocol/disco#info"
NODE = "http://example.org/client"
FEATURES = [DISCO, "urn:xmpp:avatar:metadata+notify", "urn:xmpp:bookmarks:1+notify"]


class NoAccounts:
    async def user_exists(self, localpart: str) -> bool:
        return True


def ver_of(features: list[str]) -> str:
    s = "client/pc//<" + "".join(f + "<" for f in sorted(features))
    return base64.b64encode(hashlib.sha1(s.encode()).digest()).decode()  # noqa: S324 - XEP-0115


def online(router: Router, full: str, ver: str) -> tuple[Session, FakeOutbox]:
    outbox = FakeOutbox()
    session = Session(JID.parse(full), outbox)
    router.bind(session)
    session.available = True
    session.presence = parse(
        f"<presence xmlns='jabber:client'><c xmlns='http://jabber.org/protocol/caps' "
        f"hash='sha-1' node='{NODE}' ver='{ver}'/></presence>"
    )
    return session, outbox


def answer(router: Router, query: etree._Element, features: list[str]) -> None:
    """The client's disco#info result, routed back as the stream would stamp it."""
    reply = etree.Element("{jabber:client}iq", type="result", id=query.get("id"))
    reply.set("from", query.get("to"))
    reply.set("to", "example.org")
    q = etree.SubElement(reply, "{%s}query" % DISCO, node=query[0].get("node"))
    etree.SubElement(q, "{%s}identity" % DISCO, category="client", type="pc")
    for var in features:
        etree.SubElement(q, "{%s}feature" % DISCO, var=var)
    router._answer_awaited(reply)


async def test_unknown_ver_is_asked_once_verified_and_cached() -> None:
    router = Router("example.org", NoAccounts())
    told: list[tuple[str, frozenset[str]]] = []

    async def on_interests(session: Session, nodes: frozenset[str]) -> None:
        told.append((session.full_str, nodes))

    tracker = CapsTracker(router, 10, on_interests)
    ver = ver_of(FEATURES)
    a, a_out = online(router, "alice@example.org/a", ver)
    b, b_out = online(router, "bob@example.org/b", ver)
    await tracker.presence_changed(a, True)
    await tracker.presence_changed(b, True)  # same ver: waits for the same question
    (query,) = [parse(d) for d in a_out.sent]
    assert query.get("type") == "get" and query[0].get("node") == f"{NODE}#{ver}"
    assert b_out.sent == []
    assert tracker.interests(a) == frozenset()
    answer(router, query, FEATURES)
    wanted = {"urn:xmpp:avatar:metadata", "urn:xmpp:bookmarks:1"}
    assert tracker.interests(a) == wanted and tracker.interests(b) == wanted
    # the last items are sent from the tracker's task; here its queue is read directly
    queued = [tracker._receive.receive_nowait() for _ in range(2)]
    assert {s.full_str for s, _ in queued} == {"alice@example.org/a", "bob@example.org/b"}
    # a third resource with that ver is answered from the cache, without a question
    c, c_out = online(router, "carol@example.org/c", ver)
    await tracker.presence_changed(c, True)
    assert c_out.sent == [] and told == [("carol@example.org/c", frozenset(wanted))]
    await tracker.presence_changed(c, False)
    assert tracker.interests(c) == frozenset()


async def test_a_lying_answer_is_not_believed() -> None:
    router = Router("example.org", NoAccounts())

    async def on_interests(session: Session, nodes: frozenset[str]) -> None:
        raise AssertionError("nothing verified, nothing to send")

    tracker = CapsTracker(router, 10, on_interests)
    ver = ver_of([DISCO])  # announces no +notify, then claims some
    a, a_out = online(router, "alice@example.org/a", ver)
    await tracker.presence_changed(a, True)
    (query,) = [parse(d) for d in a_out.sent]
    answer(router, query, FEATURES)
    assert tracker.interests(a) == frozenset() and len(tracker.cache) == 0


async def test_only_the_asked_resource_may_answer() -> None:
    router = Router("example.org", NoAccounts())

    async def on_interests(session: Session, nodes: frozenset[str]) -> None:
        return None

    tracker = CapsTracker(router, 10, on_interests)
    ver = ver_of(FEATURES)
    a, a_out = online(router, "alice@example.org/a", ver)
    await tracker.presence_changed(a, True)
    (query,) = [parse(d) for d in a_out.sent]
    query.set("to", "mallory@example.org/m")  # an answer from someone else
    answer(router, query, FEATURES)
    assert tracker.interests(a) == frozenset() and len(router.awaiting) == 1
    tracker.forget_all()
    assert router.awaiting == {}


async def test_a_question_whose_resource_left_is_asked_again() -> None:
    router = Router("example.org", NoAccounts())

    async def on_interests(session: Session, nodes: frozenset[str]) -> None:
        return None

    tracker = CapsTracker(router, 10, on_interests)
    ver = ver_of(FEATURES)
    a, a_out = online(router, "alice@example.org/a", ver)
    await tracker.presence_changed(a, True)
    await tracker.presence_changed(a, False)  # gone before answering
    b, b_out = online(router, "bob@example.org/b", ver)
    await tracker.presence_changed(b, True)
    (query,) = [parse(d) for d in b_out.sent]
    assert list(router.awaiting) == [query.get("id")]
    answer(router, query, FEATURES)
    assert tracker.interests(b) == {"urn:xmpp:avatar:metadata", "urn:xmpp:bookmarks:1"}
    assert tracker.interests(a) == frozenset() and len(a_out.sent) == 1
