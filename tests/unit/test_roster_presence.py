"""Roster (RFC 6121 §2), subscriptions (§3), presence (§4) and offline messages (XEP-0160).

Every test drives the real Router with bound sessions whose outboxes capture bytes and a
real SQLite database; the subscription state tables are also checked as pure functions
against RFC 6121 Appendix A.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing
from lxml import etree

from tests.unit.routing_helpers import (
    DOMAIN,
    C,
    Client,
    FakeOutbox,
    Harness,
    R,
    error_condition,
    parse,
    running_harness,
    stanza,
)
from xmppd.jid import JID
from xmppd.services.offline import delay_stamp, worth_storing
from xmppd.services.presence import SubState, inbound_state, outbound_state, parse_priority
from xmppd.services.roster import OwnerLocks, RosterLimits
from xmppd.session import Session
from xmppd.stream.sm import R as ACK_REQUEST
from xmppd.stream.sm import StreamManagement
from xmppd.xml import ns

ALICE = f"alice@{DOMAIN}"
BOB = f"bob@{DOMAIN}"
CAROL = f"carol@{DOMAIN}"
DELAY = "{%s}delay" % ns.DELAY


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_harness(tmp_path) as harness:
        yield harness


def pushes(received: list[etree._Element]) -> list[etree._Element]:
    """The roster items of every roster push in ``received``."""
    return [
        el.find(R + "query")[0]
        for el in received
        if el.tag == C + "iq" and el.get("type") == "set" and el.find(R + "query") is not None
    ]


def presences(received: list[etree._Element], type_: str | None = "*") -> list[etree._Element]:
    out = [el for el in received if el.tag == C + "presence"]
    return out if type_ == "*" else [el for el in out if el.get("type") == type_]


def roster_set(item_xml: str, id_: str = "s1") -> str:
    return f'<iq type="set" id="{id_}"><query xmlns="jabber:iq:roster">{item_xml}</query></iq>'


def reply(received: list[etree._Element], id_: str) -> etree._Element:
    matches = [el for el in received if el.tag == C + "iq" and el.get("id") == id_]
    assert len(matches) == 1, [etree.tostring(el) for el in received]
    return matches[0]


# =============================================================== state tables (App. A)
N, T, F, B = "none", "to", "from", "both"


def st(sub: str, po: bool = False, pi: bool = False) -> SubState:
    return SubState(sub, ask_out=po, pending_in=pi)


# (start state, expected state) for each Appendix A table; states absent from a table
# are "no change".
OUTBOUND = {
    "subscribe": [  # A.2.1
        (st(N), st(N, po=True)), (st(N, pi=True), st(N, po=True, pi=True)),
        (st(F), st(F, po=True)), (st(T), st(T)), (st(T, pi=True), st(T, pi=True)),
        (st(B), st(B)), (st(N, po=True), st(N, po=True)),
    ],
    "unsubscribe": [  # A.2.3
        (st(N, po=True), st(N)), (st(N, po=True, pi=True), st(N, pi=True)),
        (st(T), st(N)), (st(T, pi=True), st(N, pi=True)), (st(F, po=True), st(F)),
        (st(B), st(F)), (st(N), st(N)), (st(F), st(F)),
    ],
    "subscribed": [  # A.2.2
        (st(N, pi=True), st(F)), (st(N, po=True, pi=True), st(F, po=True)),
        (st(T, pi=True), st(B)), (st(F), st(F)), (st(B), st(B)),
    ],
    "unsubscribed": [  # A.2.4
        (st(N, pi=True), st(N)), (st(N, po=True, pi=True), st(N, po=True)),
        (st(T, pi=True), st(T)), (st(F), st(N)), (st(F, po=True), st(N, po=True)),
        (st(B), st(T)), (st(N), st(N)), (st(T), st(T)),
    ],
}  # fmt: skip
INBOUND = {
    "subscribe": [  # A.3.1
        (st(N), st(N, pi=True)), (st(N, po=True), st(N, po=True, pi=True)),
        (st(T), st(T, pi=True)), (st(F), st(F)), (st(F, po=True), st(F, po=True)),
        (st(B), st(B)),
    ],
    "subscribed": [  # A.3.2
        (st(N, po=True), st(T)), (st(N, po=True, pi=True), st(T, pi=True)),
        (st(F, po=True), st(B)), (st(N), st(N)), (st(F), st(F)), (st(T), st(T)),
        (st(B), st(B)),
    ],
    "unsubscribe": [  # A.3.3
        (st(N, pi=True), st(N)), (st(N, po=True, pi=True), st(N, po=True)),
        (st(T, pi=True), st(T)), (st(F), st(N)), (st(F, po=True), st(N, po=True)),
        (st(B), st(T)), (st(N), st(N)), (st(T), st(T)),
    ],
    "unsubscribed": [  # A.3.4
        (st(N, po=True), st(N)), (st(N, po=True, pi=True), st(N, pi=True)),
        (st(T), st(N)), (st(T, pi=True), st(N, pi=True)), (st(B), st(F)),
        (st(F, po=True), st(F)), (st(N), st(N)), (st(F), st(F)),
    ],
}  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "start", "end"), [(k, s, e) for k, rows in OUTBOUND.items() for s, e in rows]
)
def test_outbound_state_table(kind: str, start: SubState, end: SubState) -> None:
    assert outbound_state(kind, start) == end


@pytest.mark.parametrize(
    ("kind", "start", "end"), [(k, s, e) for k, rows in INBOUND.items() for s, e in rows]
)
def test_inbound_state_table(kind: str, start: SubState, end: SubState) -> None:
    assert inbound_state(kind, start) == end


def test_pre_approval_states() -> None:
    approved = outbound_state("subscribed", st(N))
    assert approved == SubState("none", approved=True)
    # a subscribe then needs no decision (§3.4) and the approval is consumed
    assert inbound_state("subscribe", approved) == st(F)
    # "unsubscribed" cancels a pre-approval
    assert outbound_state("unsubscribed", approved) == st(N)


@pytest.mark.parametrize(
    ("xml", "expected"),
    [
        ("<presence/>", 0),
        ("<presence><priority>5</priority></presence>", 5),
        ("<presence><priority> -1 </priority></presence>", -1),
        ("<presence><priority>127</priority></presence>", 127),
        ("<presence><priority>-128</priority></presence>", -128),
        ("<presence><priority>128</priority></presence>", 0),
        ("<presence><priority>high</priority></presence>", 0),
        ("<presence><priority/></presence>", 0),
    ],
)
def test_parse_priority(xml: str, expected: int) -> None:
    assert parse_priority(stanza(xml)) == expected


async def test_owner_locks_are_released() -> None:
    locks = OwnerLocks()
    async with locks.hold("a@x"):
        assert len(locks) == 1
    assert len(locks) == 0


# ===================================================================== roster (§2)
async def test_roster_get_empty_marks_interested(h: Harness) -> None:
    alice = await h.connect(ALICE + "/phone")
    assert not alice.session.interested
    result = await alice.get_roster()
    assert result.get("type") == "result"
    query = result.find(R + "query")
    assert query is not None and query.get("ver") == "0" and len(query) == 0
    assert alice.session.interested


async def test_roster_set_result_push_and_get(h: Harness) -> None:
    alice = await h.connect(ALICE + "/phone", roster=True)
    other = await h.connect(ALICE + "/laptop", roster=True)
    quiet = await h.connect(ALICE + "/bot")  # never asked for the roster
    await alice.send(
        roster_set(f'<item jid="{BOB}" name="Bob"><group>Friends</group><group>Work</group></item>')
    )
    got = alice.take()
    assert reply(got, "s1").get("type") == "result"
    assert len(reply(got, "s1")) == 0
    for client, received in ((alice, got), (other, other.take())):
        push_iqs = [el for el in received if el.get("type") == "set"]
        assert len(push_iqs) == 1
        iq = push_iqs[0]
        assert iq.get("to") == client.jid and iq.get("from") is None and iq.get("id")
        assert iq.find(R + "query").get("ver") == "1"
        item = iq.find(R + "query")[0]
        assert item.get("jid") == BOB and item.get("name") == "Bob"
        assert item.get("subscription") == "none" and item.get("ask") is None
        assert [g.text for g in item] == ["Friends", "Work"]
    assert quiet.take() == []
    result = await alice.get_roster()
    items = result.find(R + "query")
    assert items.get("ver") == "1"
    assert [(i.get("jid"), i.get("name")) for i in items] == [(BOB, "Bob")]


async def test_roster_versioning(h: Harness) -> None:
    alice = await h.connect(ALICE + "/phone", roster=True)
    await alice.send(roster_set(f'<item jid="{BOB}"/>'))
    alice.take()
    await alice.send('<iq type="get" id="v1"><query xmlns="jabber:iq:roster" ver="1"/></iq>')
    same = reply(alice.take(), "v1")
    assert same.get("type") == "result" and len(same) == 0  # XEP-0237 §2.3: no query
    await alice.send('<iq type="get" id="v2"><query xmlns="jabber:iq:roster" ver="0"/></iq>')
    full = reply(alice.take(), "v2").find(R + "query")
    assert full.get("ver") == "1" and [i.get("jid") for i in full] == [BOB]
    await alice.send('<iq type="get" id="v3"><query xmlns="jabber:iq:roster" ver=""/></iq>')
    assert reply(alice.take(), "v3").find(R + "query") is not None


async def test_roster_set_keeps_subscription_and_ignores_client_subscription(h: Harness) -> None:
    alice = await h.connect(ALICE + "/phone", roster=True)
    await alice.send(roster_set(f'<item jid="{BOB}" subscription="both" ask="subscribe"/>'))
    alice.take()
    item = await h.item(ALICE, BOB)
    assert item is not None and item.subscription == "none" and not item.ask_out
    await h.put_item(ALICE, CAROL, "to", ask_out=False)
    await alice.send(roster_set(f'<item jid="{CAROL}" name="C"/>', "s2"))
    push = pushes(alice.take())
    assert push[0].get("subscription") == "to" and push[0].get("name") == "C"
    item = await h.item(ALICE, CAROL)
    assert item is not None and item.subscription == "to" and item.name == "C"


#: 12 groups of 61 characters: each within the limits, the item above 1024 bytes.
WIDE_GROUPS = "".join(f"<group>{n:02d}{'g' * 59}</group>" for n in range(12))
MANY_GROUPS = "".join(f"<group>{n}</group>" for n in range(17))


@pytest.mark.parametrize(
    ("item_xml", "condition"),
    [
        (f'<item jid="{BOB}"/><item jid="{CAROL}"/>', "bad-request"),
        ("", "bad-request"),
        (f'<item jid="{BOB}"><group>G</group><group>G</group></item>', "bad-request"),
        (f'<item jid="{BOB}"><group></group></item>', "not-acceptable"),
        (f'<item jid="{BOB}"><group>{"g" * 65}</group></item>', "not-acceptable"),
        (f'<item jid="{BOB}" name="{"n" * 257}"/>', "not-acceptable"),
        (f'<item jid="{BOB}">{MANY_GROUPS}</item>', "not-acceptable"),
        # each part within its own limit, the whole item above max_item_bytes (1024)
        (f'<item jid="{BOB}" name="{"n" * 256}">{WIDE_GROUPS}</item>', "not-acceptable"),
        ('<item jid="@example.org"/>', "jid-malformed"),
        ("<item name='no jid'/>", "bad-request"),
    ],
)
async def test_roster_set_errors(h: Harness, item_xml: str, condition: str) -> None:
    alice = await h.connect(ALICE + "/phone", roster=True)
    await alice.send(roster_set(item_xml))
    got = alice.take()
    err = reply(got, "s1")
    assert err.get("type") == "error" and error_condition(err) == condition
    assert pushes(got) == []
    version, items = await h.adb.run(h.db.get_roster, ALICE)
    assert (version, items) == (0, [])


async def test_roster_limits_come_from_the_service(h: Harness) -> None:
    h.roster.limits = RosterLimits(max_items=2, max_name_length=5, max_groups=1)
    alice = await h.connect(ALICE + "/phone", roster=True)
    await alice.send(roster_set(f'<item jid="{BOB}" name="Bobby"><group>G</group></item>', "a"))
    await alice.send(roster_set(f'<item jid="{CAROL}" name="Carol!"/>', "b"))
    await alice.send(
        roster_set(f'<item jid="{CAROL}"><group>G</group><group>H</group></item>', "c")
    )
    await alice.send(roster_set(f'<item jid="{CAROL}"/>', "d"))
    await alice.send(roster_set(f'<item jid="dave@{DOMAIN}"/>', "e"))
    await alice.send(roster_set(f'<item jid="{BOB}" name="Bob"/>', "f"))  # changes: fine
    got = alice.take()
    conditions = [error_condition(reply(got, i)) for i in "abcdef"]
    assert conditions == [None, "not-acceptable", "not-acceptable", None, "not-allowed", None]
    err = reply(got, "e").find(C + "error")
    assert err is not None and err.get("type") == "cancel"
    assert "2 items" in (err.findtext("{%s}text" % ns.STANZA_ERRORS) or "")
    assert [i.jid for i in (await h.adb.run(h.db.get_roster, ALICE))[1]] == [BOB, CAROL]


async def test_subscribing_to_a_new_contact_with_a_full_roster_is_refused(h: Harness) -> None:
    h.roster.limits = RosterLimits(max_items=1)
    await h.put_item(ALICE, BOB, "both")
    alice = await h.connect(ALICE + "/phone", roster=True, online=True)
    carol = await h.connect(CAROL + "/pc", roster=True, online=True)
    await alice.send(f'<presence to="{CAROL}" type="subscribe" id="sub"/>')
    [err] = alice.take()
    assert err.get("id") == "sub" and error_condition(err) == "not-allowed"
    assert carol.take() == []  # not routed: nothing changed on either roster
    assert await h.item(ALICE, CAROL) is None and await h.pending(CAROL) == []
    # subscription changes on items already there still work
    await alice.send(f'<presence to="{BOB}" type="unsubscribe"/>')
    item = await h.item(ALICE, BOB)
    assert item is not None and item.subscription == "from"


async def test_roster_too_large_to_send_is_an_error_not_a_cut_off(h: Harness) -> None:
    """A roster stored under larger limits (or before any) would overrun the queue."""
    for n in range(10):  # about 9 KB; these limits allow 2 * 1024 + 4096
        await h.put_item(ALICE, f"c{n}@{DOMAIN}", "none", name="x" * 900)
    h.roster.limits = RosterLimits(max_items=2)
    alice = await h.connect(ALICE + "/phone")
    await alice.send('<iq type="get" id="r"><query xmlns="jabber:iq:roster"/></iq>')
    assert error_condition(reply(alice.take(), "r")) == "resource-constraint"
    assert alice.outbox.closed is None


async def test_roster_of_another_account_is_forbidden(h: Harness) -> None:
    alice = await h.connect(ALICE + "/phone", roster=True)
    await alice.send(
        f'<iq type="set" id="x" to="{BOB}"><query xmlns="jabber:iq:roster">'
        f'<item jid="{CAROL}"/></query></iq>'
    )
    err = reply(alice.take(), "x")
    assert err.get("type") == "error" and error_condition(err) == "forbidden"
    assert await h.item(BOB, CAROL) is None


async def test_roster_remove(h: Harness) -> None:
    alice = await h.connect(ALICE + "/phone", roster=True)
    await alice.send(roster_set(f'<item jid="{BOB}" subscription="remove"/>'))
    err = reply(alice.take(), "s1")
    assert error_condition(err) == "item-not-found"
    await alice.send(roster_set(f'<item jid="{BOB}"/>', "s2"))
    alice.take()
    await alice.send(roster_set(f'<item jid="{BOB}" subscription="remove"/>', "s3"))
    got = alice.take()
    assert reply(got, "s3").get("type") == "result"
    [push] = pushes(got)
    assert push.get("jid") == BOB and push.get("subscription") == "remove"
    assert push.getparent().get("ver") == "2"
    assert await h.item(ALICE, BOB) is None


async def test_roster_remove_cancels_both_directions(h: Harness) -> None:
    """§2.5.2: removing a "both" contact unsubscribes and unsubscribeds them."""
    await h.befriend(ALICE, BOB)
    alice = await h.connect(ALICE + "/phone", roster=True, online=True)
    bob = await h.connect(BOB + "/pc", roster=True, online=True)
    alice.take()
    await alice.send(roster_set(f'<item jid="{BOB}" subscription="remove"/>'))
    got_bob = bob.take()
    kinds = [p.get("type") for p in presences(got_bob)]
    assert "unsubscribe" in kinds and "unsubscribed" in kinds
    unavailable = presences(got_bob, "unavailable")
    assert [p.get("from") for p in unavailable] == [alice.jid]
    assert all(p.get("from") == ALICE for p in presences(got_bob) if p.get("type") != "unavailable")
    assert pushes(got_bob)[-1].get("subscription") == "none"
    item = await h.item(BOB, ALICE)
    assert item is not None and item.subscription == "none"
    assert await h.item(ALICE, BOB) is None


async def test_roster_remove_denies_pending_request(h: Harness) -> None:
    alice = await h.connect(ALICE + "/phone", roster=True, online=True)
    bob = await h.connect(BOB + "/pc", roster=True, online=True)
    await bob.send(roster_set(f'<item jid="{ALICE}"/>'))
    await alice.send(f'<presence to="{BOB}" type="subscribe"/>')
    bob.take()
    assert await h.pending(BOB) == [ALICE]
    await bob.send(roster_set(f'<item jid="{ALICE}" subscription="remove"/>', "s9"))
    assert await h.pending(BOB) == []
    got = alice.take()
    assert [p.get("type") for p in presences(got)] == ["unsubscribed"]
    assert pushes(got)[-1].get("ask") is None


# ========================================================== subscriptions (§3)
async def test_full_subscription_handshake(h: Harness) -> None:
    alice = await h.connect(ALICE + "/phone", roster=True, online=True)
    bob = await h.connect(BOB + "/pc", roster=True, online=True)

    await alice.send(f'<presence to="{BOB}/pc" type="subscribe" id="sub1"/>')
    [push] = pushes(alice.take())
    assert push.get("jid") == BOB and push.get("subscription") == "none"
    assert push.get("ask") == "subscribe"
    [request] = presences(bob.take())
    # §3.1.2: stamped with the bare JID, addressed to the bare JID, id kept
    assert (request.get("type"), request.get("from"), request.get("to")) == (
        "subscribe", ALICE, BOB,
    )  # fmt: skip
    assert request.get("id") == "sub1"
    assert await h.item(BOB, ALICE) is None  # §3.1.3: no item until approved
    assert await h.pending(BOB) == [ALICE]

    await bob.send(f'<presence to="{ALICE}" type="subscribed"/>')
    got_bob = bob.take()
    [bob_push] = pushes(got_bob)
    assert bob_push.get("jid") == ALICE and bob_push.get("subscription") == "from"
    assert await h.pending(BOB) == []
    got_alice = alice.take()
    [approval] = presences(got_alice, "subscribed")
    assert approval.get("from") == BOB
    [alice_push] = pushes(got_alice)
    assert alice_push.get("subscription") == "to" and alice_push.get("ask") is None
    # §3.1.5: Bob's server sends his current presence to the new subscriber
    available = presences(got_alice, None)
    assert [p.get("from") for p in available] == [bob.jid]

    # presence now flows Bob -> Alice, but not Alice -> Bob
    await bob.send("<presence><show>away</show></presence>")
    [update] = presences(alice.take())
    assert update.get("from") == bob.jid and update.findtext(C + "show") == "away"
    assert [p.get("to") for p in presences(bob.take())] == [bob.jid]  # reflection (§4.4.2)
    await alice.send("<presence><show>dnd</show></presence>")
    assert presences(bob.take(), None) == []  # Bob only gets his own reflection, taken above

    # and the other direction makes it "both"
    await bob.send(f'<presence to="{ALICE}" type="subscribe"/>')
    assert presences(alice.take(), "subscribe")[0].get("from") == BOB
    await alice.send(f'<presence to="{BOB}" type="subscribed"/>')
    assert pushes(alice.take())[0].get("subscription") == "both"
    got_bob = bob.take()
    assert pushes(got_bob)[-1].get("subscription") == "both"
    assert [p.get("from") for p in presences(got_bob, None)] == [alice.jid]


async def test_unsubscribe(h: Harness) -> None:
    await h.befriend(ALICE, BOB)
    alice = await h.connect(ALICE + "/phone", roster=True, online=True)
    bob = await h.connect(BOB + "/pc", roster=True, online=True)
    alice.take()
    await alice.send(f'<presence to="{BOB}" type="unsubscribe"/>')
    got_alice = alice.take()
    assert pushes(got_alice)[0].get("subscription") == "from"
    # §3.3.3: Bob's server tells Alice that Bob is now unavailable to her
    assert [p.get("from") for p in presences(got_alice, "unavailable")] == [bob.jid]
    got_bob = bob.take()
    assert presences(got_bob, "unsubscribe")[0].get("from") == ALICE
    assert pushes(got_bob)[0].get("subscription") == "to"
    # Bob still sees Alice, Alice no longer sees Bob
    await bob.send("<presence/>")
    assert presences(alice.take()) == []
    bob.take()
    await alice.send("<presence/>")
    assert [p.get("from") for p in presences(bob.take())] == [alice.jid]


async def test_cancel_subscription_with_unsubscribed(h: Harness) -> None:
    await h.befriend(ALICE, BOB)
    alice = await h.connect(ALICE + "/phone", roster=True, online=True)
    bob = await h.connect(BOB + "/pc", roster=True, online=True)
    alice.take()
    await bob.send(f'<presence to="{ALICE}" type="unsubscribed"/>')
    assert pushes(bob.take())[0].get("subscription") == "to"
    got_alice = alice.take()
    assert presences(got_alice, "unsubscribed")[0].get("from") == BOB
    assert pushes(got_alice)[0].get("subscription") == "from"
    assert [p.get("from") for p in presences(got_alice, "unavailable")] == [bob.jid]


async def test_deny_request(h: Harness) -> None:
    alice = await h.connect(ALICE + "/phone", roster=True, online=True)
    bob = await h.connect(BOB + "/pc", roster=True, online=True)
    await alice.send(f'<presence to="{BOB}" type="subscribe"/>')
    alice.take()
    bob.take()
    await bob.send(f'<presence to="{ALICE}" type="unsubscribed"/>')
    assert pushes(bob.take()) == []  # Bob has no item for Alice
    got = alice.take()
    assert presences(got, "unsubscribed")[0].get("from") == BOB
    assert pushes(got)[0].get("ask") is None
    assert await h.pending(BOB) == []
    item = await h.item(ALICE, BOB)
    assert item is not None and item.subscription == "none" and not item.ask_out


async def test_request_to_offline_contact_is_kept_until_answered(h: Harness) -> None:
    alice = await h.connect(ALICE + "/phone", roster=True, online=True)
    await alice.send(f'<presence to="{BOB}" type="subscribe"><status>hi</status></presence>')
    bob = await h.connect(BOB + "/pc", roster=True)
    assert presences(bob.take()) == []  # connected but not available: not yet
    await bob.go_online()
    [request] = presences(bob.take(), "subscribe")
    assert request.get("from") == ALICE and request.findtext(C + "status") == "hi"
    await bob.end()
    bob2 = await h.connect(BOB + "/tablet", roster=True)
    await bob2.go_online()
    assert len(presences(bob2.take(), "subscribe")) == 1  # still undecided: again
    await bob2.send(f'<presence to="{ALICE}" type="subscribed"/>')
    bob2.take()
    await bob2.end()
    bob3 = await h.connect(BOB + "/tv", roster=True)
    await bob3.go_online()
    assert presences(bob3.take(), "subscribe") == []


async def test_subscription_request_reaches_all_available_resources(h: Harness) -> None:
    alice = await h.connect(ALICE + "/phone", roster=True, online=True)
    bob1 = await h.connect(BOB + "/a", online=True)
    bob2 = await h.connect(BOB + "/b", online=True)
    bob3 = await h.connect(BOB + "/c")  # connected, not available
    await alice.send(f'<presence to="{BOB}" type="subscribe"/>')
    assert len(presences(bob1.take(), "subscribe")) == 1
    assert len(presences(bob2.take(), "subscribe")) == 1
    assert presences(bob3.take()) == []


async def test_subscribe_to_nonexistent_local_user(h: Harness) -> None:
    alice = await h.connect(ALICE + "/phone", roster=True, online=True)
    ghost = f"ghost@{DOMAIN}"
    await alice.send(f'<presence to="{ghost}" type="subscribe"/>')
    got = alice.take()
    assert presences(got, "unsubscribed")[0].get("from") == ghost
    assert [p.get("ask") for p in pushes(got)] == ["subscribe", None]


async def test_subscribe_to_remote_domain_fails_without_state_change(h: Harness) -> None:
    alice = await h.connect(ALICE + "/phone", roster=True, online=True)
    await alice.send('<presence to="romeo@elsewhere.net" type="subscribe" id="r"/>')
    got = alice.take()
    [err] = presences(got, "error")
    assert error_condition(err) == "remote-server-not-found" and err.get("id") == "r"
    assert pushes(got) == []
    assert await h.item(ALICE, "romeo@elsewhere.net") is None


async def test_resubscribe_resynchronises_a_lost_approval(h: Harness) -> None:
    """§3.1.3: Bob already lets Alice see him, so his server answers "subscribed" itself."""
    await h.put_item(ALICE, BOB, "none", ask_out=True)
    await h.put_item(BOB, ALICE, "from")
    alice = await h.connect(ALICE + "/phone", roster=True, online=True)
    bob = await h.connect(BOB + "/pc", roster=True, online=True)
    alice.take()
    await alice.send(f'<presence to="{BOB}" type="subscribe" id="again"/>')
    assert presences(bob.take()) == []  # Bob is not asked again
    got = alice.take()
    [ok] = presences(got, "subscribed")
    assert ok.get("from") == BOB and ok.get("id") == "again"
    assert pushes(got)[-1].get("subscription") == "to"


async def test_subscribe_when_already_subscribed_changes_nothing(h: Harness) -> None:
    await h.befriend(ALICE, BOB)
    alice = await h.connect(ALICE + "/phone", roster=True, online=True)
    bob = await h.connect(BOB + "/pc", roster=True, online=True)
    alice.take()
    await alice.send(f'<presence to="{BOB}" type="subscribe"/>')
    # Bob's server auto-replies; Alice's server drops it as there is nothing pending.
    assert bob.take() == [] and alice.take() == []
    item = await h.item(ALICE, BOB)
    assert item is not None and item.subscription == "both" and not item.ask_out


async def test_pre_approval(h: Harness) -> None:
    alice = await h.connect(ALICE + "/phone", roster=True, online=True)
    bob = await h.connect(BOB + "/pc", roster=True, online=True)
    await bob.send(f'<presence to="{ALICE}" type="subscribed"/>')
    [push] = pushes(bob.take())
    assert push.get("approved") == "true" and push.get("subscription") == "none"
    assert alice.take() == []  # §3.4: not routed
    await alice.send(f'<presence to="{BOB}" type="subscribe"/>')
    got_alice = alice.take()
    assert presences(got_alice, "subscribed")[0].get("from") == BOB
    assert pushes(got_alice)[-1].get("subscription") == "to"
    assert [p.get("from") for p in presences(got_alice, None)] == [bob.jid]
    got_bob = bob.take()
    assert presences(got_bob, "subscribe") == []
    [push] = pushes(got_bob)
    assert push.get("subscription") == "from" and push.get("approved") is None


async def test_unsolicited_subscribed_is_not_delivered(h: Harness) -> None:
    alice = await h.connect(ALICE + "/phone", roster=True, online=True)
    await h.put_item(BOB, ALICE, "from")  # Bob already lets Alice see him
    bob = await h.connect(BOB + "/pc", roster=True, online=True)
    alice.take()  # Bob's initial presence
    await bob.send(f'<presence to="{ALICE}" type="subscribed"/>')
    assert alice.take() == []
    assert pushes(bob.take()) == []


async def test_subscription_stanza_without_to_is_bad_request(h: Harness) -> None:
    alice = await h.connect(ALICE + "/phone", online=True)
    await alice.send('<presence type="subscribe" id="n"/>')
    [err] = alice.take()
    assert err.get("type") == "error" and error_condition(err) == "bad-request"


# ============================================================== presence (§4)
async def test_initial_presence_broadcast(h: Harness) -> None:
    await h.put_item(ALICE, BOB, "from")  # Bob is subscribed to Alice
    await h.put_item(BOB, ALICE, "to")
    await h.put_item(ALICE, CAROL, "to")  # Alice is subscribed to Carol, not vice versa
    await h.put_item(CAROL, ALICE, "from")
    bob = await h.connect(BOB + "/pc", online=True)
    carol = await h.connect(CAROL + "/pc", online=True)
    alice_other = await h.connect(ALICE + "/laptop", online=True)
    alice = await h.connect(ALICE + "/phone")
    bob.take()  # the laptop's initial presence
    await alice.send("<presence><status>hello</status><priority>3</priority></presence>")
    [to_bob] = presences(bob.take())
    assert to_bob.get("from") == alice.jid and to_bob.get("to") == BOB
    assert to_bob.findtext(C + "status") == "hello"
    assert presences(carol.take()) == []
    [to_other] = presences(alice_other.take())
    assert to_other.get("from") == alice.jid and to_other.get("to") == alice_other.jid
    got = presences(alice.take())
    # §4.2.2: reflected to the sender; probes answered: Carol's presence and the
    # other own resource; Bob is not probed (Alice has no "to" for him).
    froms = sorted(p.get("from") for p in got)
    assert froms == sorted([alice.jid, alice_other.jid, carol.jid])
    assert alice.session.available and alice.session.priority == 3


async def test_probe_of_offline_contact_reports_unavailable(h: Harness) -> None:
    await h.put_item(ALICE, BOB, "to")
    await h.put_item(BOB, ALICE, "from")
    alice = await h.connect(ALICE + "/phone")
    await alice.send("<presence/>")
    [unavailable] = presences(alice.take(), "unavailable")
    assert unavailable.get("from") == BOB and unavailable.get("to") == alice.jid


async def test_presence_update_is_not_a_probe(h: Harness) -> None:
    await h.befriend(ALICE, BOB)
    bob = await h.connect(BOB + "/pc", online=True)
    alice = await h.connect(ALICE + "/phone", online=True)
    bob.take()
    await alice.send("<presence><show>away</show></presence>")
    assert [p.get("from") for p in presences(alice.take())] == [alice.jid]  # reflection only
    assert presences(bob.take())[0].findtext(C + "show") == "away"


async def test_unavailable_reaches_subscribers_and_directed_targets(h: Harness) -> None:
    await h.befriend(ALICE, BOB)
    bob = await h.connect(BOB + "/pc", online=True)
    carol = await h.connect(CAROL + "/pc", online=True)
    alice = await h.connect(ALICE + "/phone", online=True)
    await alice.send(f'<presence to="{CAROL}/pc"><show>chat</show></presence>')
    [directed] = presences(carol.take())
    assert directed.get("from") == alice.jid and directed.get("to") == f"{CAROL}/pc"
    bob.take()
    await alice.send('<presence type="unavailable"><status>bye</status></presence>')
    [to_bob] = presences(bob.take())
    assert to_bob.get("type") == "unavailable" and to_bob.findtext(C + "status") == "bye"
    [to_carol] = presences(carol.take())
    assert to_carol.get("type") == "unavailable" and to_carol.get("from") == alice.jid
    assert not alice.session.available and not alice.session.directed_presence
    assert [p.get("type") for p in presences(alice.take())] == ["unavailable"]  # reflection
    # messages to the bare JID no longer go to an unavailable resource
    await bob.send(f'<message to="{ALICE}" type="chat"><body>x</body></message>')
    assert alice.take() == []


async def test_session_end_acts_as_unavailable(h: Harness) -> None:
    await h.befriend(ALICE, BOB)
    bob = await h.connect(BOB + "/pc", online=True)
    carol = await h.connect(CAROL + "/pc", online=True)
    alice = await h.connect(ALICE + "/phone", online=True)
    other = await h.connect(ALICE + "/laptop", online=True)
    await alice.send(f'<presence to="{CAROL}"/>')  # directed to a bare JID
    assert len(presences(carol.take())) == 1
    bob.take()
    other.take()
    await alice.end()
    assert [p.get("type") for p in presences(bob.take())] == ["unavailable"]
    assert [p.get("type") for p in presences(carol.take())] == ["unavailable"]
    assert [(p.get("type"), p.get("from")) for p in presences(other.take())] == [
        ("unavailable", alice.jid)
    ]


async def test_session_end_without_presence_is_silent(h: Harness) -> None:
    await h.befriend(ALICE, BOB)
    bob = await h.connect(BOB + "/pc", online=True)
    alice = await h.connect(ALICE + "/phone")
    await alice.end()
    assert bob.take() == []


async def test_replaced_session_does_not_announce_unavailable(h: Harness) -> None:
    await h.befriend(ALICE, BOB)
    bob = await h.connect(BOB + "/pc", online=True)
    old = await h.connect(ALICE + "/phone", online=True)
    new = await h.connect(ALICE + "/phone", online=True)  # resource conflict: new wins
    bob.take()
    await old.end()
    assert bob.take() == []
    assert h.router.session_for(JID.parse(ALICE + "/phone")) is new.session


async def test_directed_presence_to_bare_jid_of_non_contact(h: Harness) -> None:
    alice = await h.connect(ALICE + "/phone", online=True)
    carol1 = await h.connect(CAROL + "/a", online=True)
    carol2 = await h.connect(CAROL + "/b")  # not available: no broadcast presence for it
    await alice.send(f'<presence to="{CAROL}"/>')
    assert len(presences(carol1.take())) == 1
    assert presences(carol2.take()) == []


async def test_presence_to_full_jid_reaches_connected_resource_only(h: Harness) -> None:
    alice = await h.connect(ALICE + "/phone", online=True)
    carol = await h.connect(CAROL + "/a")
    await alice.send(f'<presence to="{CAROL}/a"/>')
    assert len(presences(carol.take())) == 1
    await alice.send(f'<presence to="{CAROL}/nobody"/>')
    assert alice.take() == [] and carol.take() == []


async def test_client_probe(h: Harness) -> None:
    await h.put_item(BOB, ALICE, "from")
    await h.put_item(ALICE, BOB, "to")
    bob = await h.connect(BOB + "/pc")
    await bob.send("<presence><show>xa</show></presence>")
    alice = await h.connect(ALICE + "/phone", online=True)
    carol = await h.connect(CAROL + "/pc", online=True)
    await alice.send(f'<presence to="{BOB}" type="probe"/>')
    [answer] = presences(alice.take())
    assert answer.get("from") == bob.jid and answer.findtext(C + "show") == "xa"
    await carol.send(f'<presence to="{BOB}" type="probe"/>')
    # §4.3.2: not authorised, so nothing is revealed; the "unsubscribed" Bob's server
    # answers with changes nothing on Carol's roster and so is not delivered (A.3.4).
    assert carol.take() == []


async def test_invalid_presence_type(h: Harness) -> None:
    alice = await h.connect(ALICE + "/phone", online=True)
    await alice.send('<presence type="dance" id="d"/>')
    [err] = alice.take()
    assert err.get("type") == "error" and error_condition(err) == "bad-request"


async def test_presence_authorized_hook(h: Harness) -> None:
    await h.put_item(ALICE, BOB, "from")
    assert await h.presence.presence_authorized(JID.parse(BOB + "/x"), JID.parse(ALICE))
    assert not await h.presence.presence_authorized(JID.parse(CAROL), JID.parse(ALICE))
    assert await h.presence.presence_authorized(JID.parse(ALICE + "/y"), JID.parse(ALICE))


# ================================================ message delivery and offline storage
async def test_bare_jid_message_goes_to_highest_non_negative_priority(h: Harness) -> None:
    bob = await h.connect(BOB + "/pc", online=True)
    high = await h.connect(ALICE + "/high")
    await high.send("<presence><priority>5</priority></presence>")
    low = await h.connect(ALICE + "/low")
    await low.send("<presence><priority>1</priority></presence>")
    neg = await h.connect(ALICE + "/neg")
    await neg.send("<presence><priority>-1</priority></presence>")
    for c in (high, low, neg):
        c.take()
    await bob.send(f'<message to="{ALICE}" type="chat" id="m"><body>hi</body></message>')
    [msg] = high.take()
    assert msg.get("to") == ALICE and msg.get("from") == bob.jid  # 'to' not rewritten
    assert low.take() == [] and neg.take() == []
    # a full JID reaches even the negative-priority resource
    await bob.send(f'<message to="{ALICE}/neg" type="chat"><body>direct</body></message>')
    assert len(neg.take()) == 1


async def test_offline_message_stored_with_delay_and_delivered(h: Harness) -> None:
    bob = await h.connect(BOB + "/pc", online=True)
    await bob.send(f'<message to="{ALICE}" type="chat" id="m1"><body>one</body></message>')
    await bob.send(f'<message to="{ALICE}/gone" id="m2"><body>two</body></message>')
    assert bob.take() == []  # stored, not bounced
    alice = await h.connect(ALICE + "/phone", roster=True)
    assert alice.take() == []  # not before initial presence
    await alice.send("<presence/>")
    messages = alice.take_tag("message")
    assert [m.findtext(C + "body") for m in messages] == ["one", "two"]
    delay = messages[0].find(DELAY)
    assert delay is not None
    assert delay.get("from") == DOMAIN and delay.get("stamp") == "2024-05-06T07:08:09Z"
    assert messages[0].get("from") == bob.jid and messages[0].get("id") == "m1"
    alice2 = await h.connect(ALICE + "/laptop")
    await alice2.send("<presence/>")
    assert alice2.take_tag("message") == []  # delivered once


async def test_offline_not_delivered_to_negative_priority(h: Harness) -> None:
    bob = await h.connect(BOB + "/pc", online=True)
    await bob.send(f'<message to="{ALICE}"><body>wait</body></message>')
    alice = await h.connect(ALICE + "/phone")
    await alice.send("<presence><priority>-5</priority></presence>")
    assert alice.take_tag("message") == []
    await alice.send("<presence><priority>0</priority></presence>")
    assert [m.findtext(C + "body") for m in alice.take_tag("message")] == ["wait"]


async def test_offline_limit_bounces_service_unavailable(h: Harness) -> None:
    h.offline.limit = 2
    bob = await h.connect(BOB + "/pc", online=True)
    for n in range(3):
        await bob.send(f'<message to="{ALICE}" id="m{n}"><body>{n}</body></message>')
    [err] = bob.take()
    assert err.get("id") == "m2" and error_condition(err) == "service-unavailable"


async def test_chat_state_only_messages_are_not_stored(h: Harness) -> None:
    bob = await h.connect(BOB + "/pc", online=True)
    await bob.send(
        f'<message to="{ALICE}" type="chat">'
        '<composing xmlns="http://jabber.org/protocol/chatstates"/></message>'
    )
    assert bob.take() == []
    assert await h.adb.run(h.db.list_offline, ALICE) == []


async def test_message_to_unknown_user_bounces(h: Harness) -> None:
    bob = await h.connect(BOB + "/pc", online=True)
    await bob.send(f'<message to="ghost@{DOMAIN}" id="g"><body>?</body></message>')
    [err] = bob.take()
    assert error_condition(err) == "service-unavailable"


async def store_messages(h: Harness, count: int, size: int) -> list[str]:
    """``count`` chat messages of about ``size`` bytes from bob, stored for alice."""
    bodies = [f"m{n:03d}-" + "x" * size for n in range(count)]
    for body in bodies:
        message = stanza(
            f'<message from="{BOB}/pc" to="{ALICE}" type="chat"><body>{body}</body></message>'
        )
        assert await h.offline.store(message, JID.parse(ALICE))
    return bodies


def bodies_of(client: Client) -> list[str]:
    return [m.findtext(C + "body") or "" for m in client.take_tag("message")]


async def stored_bodies(h: Harness) -> list[str]:
    return [
        parse(xml).findtext(C + "body") or "" for xml in await h.adb.run(h.db.list_offline, ALICE)
    ]


async def test_offline_queue_larger_than_the_send_queue_arrives_whole(h: Harness) -> None:
    """Issue 13 #5: 300 messages of 4 KB overran the queue; now pages wait for the writes."""
    bodies = await store_messages(h, 300, 4000)
    outbox = FakeOutbox(limit=256 * 1024)
    outbox.hold = True  # the peer reads only when the test says so
    alice = await h.connect(ALICE + "/phone", outbox=outbox)
    await alice.send("<presence/>", settle=False)
    received: list[str] = []
    while len(received) < len(bodies):
        await outbox.grown()
        # the queue shrinks from its head, and never by more than was written
        stored = await stored_bodies(h)
        assert stored == bodies[len(bodies) - len(stored) :]
        assert len(bodies) - len(stored) <= len(received)
        received += bodies_of(alice)
        outbox.write()
    await h.settle()
    assert received == bodies
    assert outbox.progress.closed is False and outbox.peak <= 256 * 1024
    assert await stored_bodies(h) == []


async def test_offline_delivery_cut_midway_keeps_what_was_not_written(h: Harness) -> None:
    bodies = await store_messages(h, 300, 4000)
    outbox = FakeOutbox(limit=256 * 1024)
    outbox.hold = True
    alice = await h.connect(ALICE + "/phone", outbox=outbox)
    await alice.send("<presence/>", settle=False)
    written: list[str] = []
    while not written:
        await outbox.grown()
        written += bodies_of(alice)
    outbox.write()
    await outbox.grown()
    unwritten = bodies_of(alice)  # queued, never read: the connection drops
    assert written and unwritten and written + unwritten == bodies[: len(written) + len(unwritten)]
    outbox.cut()
    await alice.end()
    await h.settle()
    assert await stored_bodies(h) == bodies[len(written) :]
    again = await h.connect(ALICE + "/laptop")
    await again.send("<presence/>")
    assert bodies_of(again) == bodies[len(written) :]
    assert await stored_bodies(h) == []


async def test_offline_delivery_with_sm_deletes_only_what_was_acknowledged(h: Harness) -> None:
    bodies = await store_messages(h, 150, 100)
    alice = await h.connect(ALICE + "/phone")
    sm = alice.session.sm = StreamManagement(ALICE, max_unacked=500, request_every=1000)
    await alice.send("<presence/>", settle=False)
    first: list[str] = []
    while not first:
        await alice.outbox.grown()
        await trio.testing.wait_all_tasks_blocked()
        asked = alice.outbox.sent[-1] == ACK_REQUEST  # the page ends with a request for an ack
        first += bodies_of(alice)
    assert first == bodies[: len(first)] and len(first) < len(bodies) and asked
    assert await stored_bodies(h) == bodies  # written, not acknowledged: still stored
    sm.ack(sm.sent)  # the client acknowledges the page (and the presence before it)
    second: list[str] = []
    while len(first) + len(second) < len(bodies):
        await alice.outbox.grown()
        second += bodies_of(alice)
    assert first + second == bodies
    assert await stored_bodies(h) == bodies[len(first) :]
    # the session ends with the second page unacknowledged: those stanzas stay stored
    # and stream management must not hand them on a second time
    held = h.offline.release(alice.session)
    offline_unacked = [d for d in sm.unacked() if b"<message" in d]
    assert held == {id(d) for d in offline_unacked} and len(offline_unacked) == len(second)
    await alice.end()
    await h.settle()
    assert await stored_bodies(h) == bodies[len(first) :]


async def test_offline_delivery_to_a_cut_off_session_keeps_everything(h: Harness) -> None:
    bob = await h.connect(BOB + "/pc", online=True)
    await bob.send(f'<message to="{ALICE}"><body>keep</body></message>')
    alice = await h.connect(ALICE + "/phone")
    alice.outbox.accept = False
    alice.outbox.cut()
    await alice.send("<presence/>", settle=False)
    await alice.end()
    await h.settle()
    assert await stored_bodies(h) == ["keep"]


async def test_offline_message_too_large_for_a_send_queue_is_bounced(h: Harness) -> None:
    h.offline.max_message_bytes = 2000
    bob = await h.connect(BOB + "/pc", online=True)
    await bob.send(f'<message to="{ALICE}" id="big"><body>{"x" * 2000}</body></message>')
    await bob.send(f'<message to="{ALICE}" id="small"><body>ok</body></message>')
    [err] = bob.take()
    assert err.get("id") == "big" and error_condition(err) == "service-unavailable"
    assert await stored_bodies(h) == ["ok"]


async def test_redelivery_never_goes_to_a_detached_session(h: Harness) -> None:
    """Issue 13 #6: an ending session's unacknowledged message reaches a live resource,
    or storage once, never another session that is itself waiting for its client."""
    sleeping = await h.connect(ALICE + "/sleeping", online=True)
    sleeping.session.detached_since = 0.0  # what ResumptionManager.detach sets
    message = f'<message from="{BOB}/pc" to="{ALICE}/gone" type="chat"><body>%s</body></message>'
    await h.router.redeliver(stanza(message % "one"), JID.parse(ALICE))
    await h.settle()
    assert sleeping.take() == []
    assert await stored_bodies(h) == ["one"]
    live = await h.connect(ALICE + "/desk")
    await live.send("<presence/>")
    assert bodies_of(live) == ["one"]  # from storage
    await h.router.redeliver(stanza(message % "two"), JID.parse(ALICE))
    assert bodies_of(live) == ["two"] and bodies_of(sleeping) == []
    assert await stored_bodies(h) == []


async def test_message_stored_while_a_delivery_runs_is_delivered_too(h: Harness) -> None:
    bodies = await store_messages(h, 3, 10)
    outbox = FakeOutbox()
    outbox.hold = True
    alice = await h.connect(ALICE + "/phone", outbox=outbox)
    await alice.send("<presence/>", settle=False)
    await outbox.grown()
    late = stanza(f'<message from="{BOB}/pc" to="{ALICE}"><body>late</body></message>')
    assert await h.offline.store(late, JID.parse(ALICE))
    outbox.hold = False
    outbox.write()
    await h.settle()
    assert bodies_of(alice) == [*bodies, "late"]
    assert await stored_bodies(h) == []


def test_delay_stamp_and_storage_rules() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    moment = datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=timezone(timedelta(hours=2)))
    assert delay_stamp(moment) == "2024-01-02T01:04:05.678Z"
    assert delay_stamp(datetime(2024, 1, 2, tzinfo=UTC)) == "2024-01-02T00:00:00Z"
    assert worth_storing(stanza("<message><body>x</body></message>"))
    assert not worth_storing(
        stanza('<message><body>x</body><no-store xmlns="urn:xmpp:hints"/></message>')
    )
    assert worth_storing(
        stanza('<message><active xmlns="http://jabber.org/protocol/chatstates"/>'
               '<store xmlns="urn:xmpp:hints"/></message>')
    )  # fmt: skip


async def test_roster_get_reply_has_no_client_facing_pending_state(h: Harness) -> None:
    """Pending inbound requests never show in the roster (§2.1.2.5 'none' + no ask)."""
    alice = await h.connect(ALICE + "/phone", roster=True, online=True)
    await h.put_item(BOB, ALICE, "none")
    await alice.send(f'<presence to="{BOB}" type="subscribe"/>')
    bob = await h.connect(BOB + "/pc")
    result = await bob.get_roster()
    [item] = list(result.find(R + "query"))
    assert item.get("subscription") == "none" and item.get("ask") is None


async def test_presence_watchers_hear_available_updates_and_unavailable(h: Harness) -> None:
    heard: list[tuple[str, bool, str | None]] = []

    async def watcher(session: Session, available: bool) -> None:
        status = session.presence.findtext(C + "status") if session.presence is not None else None
        heard.append((session.full_str, available, status))

    async def broken(_session: Session, _available: bool) -> None:
        raise RuntimeError("a watcher's bug")

    h.presence.watch(broken)
    h.presence.watch(watcher)
    alice = await h.connect(f"{ALICE}/desk")
    await alice.go_online()
    await alice.send("<presence><status>away</status></presence>")
    await alice.send("<presence type='unavailable'/>")
    await alice.send("<presence type='unavailable'/>")  # not available: nobody told again
    bob = await h.connect(f"{BOB}/b", online=True)
    await bob.end()  # the stream ends without unavailable presence (§4.5.2)
    assert heard == [
        (f"{ALICE}/desk", True, None),
        (f"{ALICE}/desk", True, "away"),
        (f"{ALICE}/desk", False, None),
        (f"{BOB}/b", True, None),
        (f"{BOB}/b", False, None),
    ]


async def test_subscription_watchers_hear_from_gained_and_lost(h: Harness) -> None:
    heard: list[tuple[str, str, bool]] = []

    async def watcher(owner: str, peer: str, shared: bool) -> None:
        heard.append((owner, peer, shared))

    h.presence.watch_subscriptions(watcher)
    alice = await h.connect(f"{ALICE}/a", roster=True, online=True)
    bob = await h.connect(f"{BOB}/b", roster=True, online=True)
    await alice.send(f"<presence to='{BOB}' type='subscribe'/>")
    await bob.send(f"<presence to='{ALICE}' type='subscribed'/>")  # bob shares with alice
    await bob.send(f"<presence to='{ALICE}' type='unsubscribed'/>")  # and stops
    assert heard == [(BOB, ALICE, True), (BOB, ALICE, False)]
