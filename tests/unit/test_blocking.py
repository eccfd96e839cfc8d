"""XEP-0191 blocking (xmppd.services.blocking) on the router over a real SQLite database:
item matching, the iqs and their pushes, what is screened both ways, bad input, storage.

Over real sockets with slixmpp: tests/integration/test_blocking_slixmpp.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.unit.routing_helpers import C, Client, Harness, error_condition, running_harness
from xmppd.config import Config
from xmppd.jid import JID
from xmppd.services import blocking
from xmppd.services.blocking import BlockingService, candidates, item_matches
from xmppd.services.lifecycle import ServiceContext
from xmppd.storage.blocking import BlockStore

NS = "urn:xmpp:blocking"
B = "{%s}" % NS


def block(*jids: str, tag: str = "block", id_: str = "b1") -> str:
    items = "".join(f'<item jid="{j}"/>' for j in jids)
    return f'<iq type="set" id="{id_}"><{tag} xmlns="{NS}">{items}</{tag}></iq>'


def install(h: Harness) -> BlockingService:
    return BlockingService.build(ServiceContext(Config(), h.router, h.adb))


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_harness(tmp_path) as harness:
        yield harness


# ------------------------------------------------------------------- matching
@pytest.mark.parametrize(
    ("item", "other", "covered"),
    [
        ("bob@example.org", "bob@example.org/phone", True),
        ("bob@example.org", "bob@example.org", True),
        ("bob@example.org/phone", "bob@example.org/phone", True),
        ("bob@example.org/phone", "bob@example.org/desk", False),
        ("bob@example.org/phone", "bob@example.org", False),
        ("example.net", "anyone@example.net/x", True),
        ("example.net", "example.net", True),
        ("example.net/bot", "example.net/bot", True),
        ("example.net/bot", "eve@example.net/bot", True),  # the 3rd of the four checks
        ("example.net/bot", "eve@example.net/other", False),
        ("example.net", "bob@example.org", False),
        ("sax@conference.example.org/Mallory", "sax@conference.example.org/Mallory", True),
        ("sax@conference.example.org/Mallory", "sax@conference.example.org/Alice", False),
    ],
)
def test_items_match_as_xep_0016_says(item: str, other: str, covered: bool) -> None:
    assert item_matches(item, JID.parse(other)) is covered


def test_candidates_hold_no_duplicates() -> None:
    assert candidates(JID.parse("example.net")) == ("example.net",)


# ------------------------------------------------------------------ the iqs
async def test_list_block_push_and_unblock(h: Harness) -> None:
    svc = install(h)
    alice = await h.connect("alice@example.org/desk")
    phone = await h.connect("alice@example.org/phone")
    quiet = await h.connect("alice@example.org/quiet")
    for client in (alice, phone):
        await client.send(f'<iq type="get" id="l1"><blocklist xmlns="{NS}"/></iq>')
        (reply,) = client.take()
        assert reply.get("type") == "result" and len(reply.find(B + "blocklist")) == 0
    await alice.send(block("Bob@Example.org", "example.net", "bob@example.org"))
    result, push = alice.take()  # the answer, then the push (the asker asked for the list)
    assert result.get("type") == "result" and result.get("id") == "b1"
    assert push.get("type") == "set" and push.get("to") == "alice@example.org/desk"
    assert [i.get("jid") for i in push.iter(B + "item")] == ["bob@example.org", "example.net"]
    (push,) = phone.take()
    assert push.find(B + "block") is not None
    assert quiet.take() == []  # never asked for the list: no pushes
    assert svc.lists == {"alice@example.org": {"bob@example.org", "example.net"}}

    await alice.send(block("example.net", tag="unblock", id_="u1"))
    _, push = alice.take()
    assert push.find(B + "unblock") is not None
    assert svc.lists == {"alice@example.org": {"bob@example.org"}}
    await alice.send(block(tag="unblock", id_="u2"))  # no items: everything
    _, push = alice.take()
    assert len(push.find(B + "unblock")) == 0
    assert svc.lists == {}
    assert await h.adb.run(BlockStore(h.db).load_all) == {}


async def test_bad_requests_store_nothing(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = install(h)
    alice = await h.connect("alice@example.org/a", online=True)

    async def condition(xml: str) -> str | None:
        await alice.send(xml)
        (reply,) = alice.take()
        return error_condition(reply)

    assert await condition(block()) == "bad-request"
    assert await condition(block("a@b@c")) == "jid-malformed"
    assert await condition(block("x" * 300 + "@example.org/" + "r" * 100)) == "not-acceptable"
    assert await condition(f'<iq type="set" id="x"><blocklist xmlns="{NS}"/></iq>') == (
        "bad-request"
    )
    monkeypatch.setattr(blocking, "MAX_ITEMS", 2)
    assert await condition(block("a@example.net", "b@example.net", "c@example.net")) == (
        "policy-violation"
    )
    # another user's list is not reachable: the iq to bob is not run on bob's behalf
    await alice.send(f'<iq type="get" id="o" to="bob@example.org"><blocklist xmlns="{NS}"/></iq>')
    (reply,) = alice.take()
    assert error_condition(reply) == "service-unavailable"
    assert svc.lists == {} and await h.adb.run(BlockStore(h.db).load_all) == {}


# --------------------------------------------------------------- screening
async def _pair(h: Harness) -> tuple[Client, Client]:
    install(h)
    alice = await h.connect("alice@example.org/a", online=True)
    bob = await h.connect("bob@example.org/b", online=True)
    await alice.send(block("bob@example.org"))
    alice.take()
    return alice, bob


async def test_a_blocked_jid_gets_service_unavailable_and_the_blocker_not_acceptable(
    h: Harness,
) -> None:
    alice, bob = await _pair(h)
    await bob.send('<message to="alice@example.org" type="chat" id="m1"><body>hi</body></message>')
    (err,) = bob.take()
    assert error_condition(err) == "service-unavailable" and err.get("from") == "alice@example.org"
    version = '<query xmlns="jabber:iq:version"/>'
    await bob.send(f'<iq to="alice@example.org/a" type="get" id="v">{version}</iq>')
    (err,) = bob.take()
    assert error_condition(err) == "service-unavailable"
    await bob.send('<presence to="alice@example.org" type="subscribe"/>')
    assert bob.take() == [] and alice.take() == []
    assert await h.pending("alice@example.org") == []  # nothing stored either

    await alice.send('<message to="bob@example.org/b" id="m2"><body>hi</body></message>')
    (err,) = alice.take()
    assert error_condition(err) == "not-acceptable"
    assert err.find(f"{C}error/{{urn:xmpp:blocking:errors}}blocked") is not None
    await alice.send('<presence to="bob@example.org/b"/>')
    assert alice.take() == [] and bob.take() == []


async def test_presence_is_cut_both_ways_and_restored(h: Harness) -> None:
    await h.befriend("alice@example.org", "bob@example.org")
    install(h)
    alice = await h.connect("alice@example.org/a", online=True)
    bob = await h.connect("bob@example.org/b", online=True)
    alice.take()  # bob's presence
    await alice.send(block("bob@example.org"))
    alice_got = alice.take()
    (gone,) = bob.take()
    assert gone.tag == C + "presence" and gone.get("type") == "unavailable"
    assert gone.get("from") == "alice@example.org/a"
    assert [p.get("type") for p in alice_got if p.tag == C + "presence"] == ["unavailable"]

    def from_(client: Client, who: str) -> list[tuple[str | None, str | None]]:
        got = [p for p in client.take() if p.get("from", "").startswith(who)]
        return [(p.get("from"), p.findtext(C + "status")) for p in got]

    await alice.send("<presence><status>away</status></presence>")
    await bob.send("<presence><status>here</status></presence>")
    assert from_(bob, "alice") == [] and from_(alice, "bob") == []
    late = await h.connect("bob@example.org/late")
    await late.send("<presence/>")  # its probes are screened too
    assert from_(late, "alice") == [] and from_(alice, "bob") == []

    bob.take()
    await alice.send(block("bob@example.org", tag="unblock", id_="u"))
    assert sorted(from_(alice, "bob")) == [
        ("bob@example.org/b", "here"),
        ("bob@example.org/late", None),
    ]
    assert from_(bob, "alice") == [("alice@example.org/a", "away")]


async def test_the_lists_survive_a_restart(h: Harness) -> None:
    install(h)
    alice = await h.connect("alice@example.org/a", online=True)
    await alice.send(block("bob@example.org/phone", "example.net"))
    again = BlockingService.build(ServiceContext(Config(), h.router, h.adb))
    assert again.lists == {"alice@example.org": {"bob@example.org/phone", "example.net"}}
    assert again.blocks("alice@example.org", JID.parse("eve@example.net"))
    assert not again.blocks("alice@example.org", JID.parse("bob@example.org/desk"))
    await h.adb.run(h.db.delete_user, "alice")
    assert await h.adb.run(BlockStore(h.db).load_all) == {}
