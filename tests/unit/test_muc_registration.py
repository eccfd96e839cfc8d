"""Registering with a room makes a member (XEP-0045 §7.10); unregistering takes back only
the membership the registration gave. Pure room logic first, then the service with its
database (persisted, restored, and lapsing with a registration removed by the CLI)."""

from __future__ import annotations

from pathlib import Path

from tests.unit.routing_helpers import Harness
from tests.unit.test_muc_room import ROOM, C, codes, iq, item, join, make_room, parsed
from xmppd.muc.config import MucConfig
from xmppd.muc.room import Room, RoomSettings
from xmppd.muc.service import MucService, install
from xmppd.storage.muc import MucStore

BOB, CAROL = "bob@example.org/b", "carol@example.org/c"
BOSS = "boss@example.org/x"  # a site admin: owner of every room
SUBMIT = (
    '<query xmlns="jabber:iq:register"><x xmlns="jabber:x:data" type="submit">'
    '<field var="FORM_TYPE"><value>http://jabber.org/protocol/muc#register</value></field>'
    '<field var="muc#register_roomnick"><value>{nick}</value></field></x></query>'
)
REMOVE = '<query xmlns="jabber:iq:register"><remove/></query>'
ADMIN_Q = "http://jabber.org/protocol/muc#admin"


def register(room: Room, full: str, nick: str):  # type: ignore[no-untyped-def]
    return iq(room, full, SUBMIT.format(nick=nick), "set")


def member_list(room: Room) -> list[str]:
    q = f'<query xmlns="{ADMIN_Q}"><item affiliation="member"/></query>'
    (reply,) = parsed(iq(room, BOSS, q))
    return [i.get("jid") for i in reply.iter(f"{{{ADMIN_Q}}}item")]


def test_registering_makes_a_member_shown_at_the_next_join_and_in_the_member_list() -> None:
    room = make_room()
    out = register(room, BOB, "Bobby")
    (reply,) = parsed(out)  # not in the room: only the answer
    assert reply.get("type") == "result"
    assert out.affiliations == [("bob@example.org", "member")]
    assert room.affiliation("bob@example.org") == "member"
    assert member_list(room) == ["bob@example.org"]
    self_presence = parsed(join(room, BOB, "Bobby"), BOB)[0]
    assert item(self_presence).get("affiliation") == "member"
    assert "110" in codes(self_presence)


def test_an_occupant_who_registers_is_shown_as_member_at_once() -> None:
    room = make_room()
    join(room, CAROL, "Carol")
    join(room, BOB, "Bob")
    out = register(room, BOB, "Bob")
    to_bob, to_carol = parsed(out, BOB), parsed(out, CAROL)
    assert [s.tag for s in to_bob] == [C + "presence", C + "iq"]  # presence, then the answer
    assert item(to_bob[0]).get("affiliation") == "member" and "110" in codes(to_bob[0])
    assert to_bob[1].get("type") == "result"
    (seen,) = to_carol
    assert item(seen).get("affiliation") == "member" and item(seen).get("role") == "participant"
    assert seen.get("from") == f"{ROOM}/Bob"


def test_unregistering_takes_back_the_membership_registration_gave() -> None:
    room = make_room()
    join(room, BOB, "Bob")
    register(room, BOB, "Bob")
    register(room, BOB, "Bobby")  # a new nick: still the same membership
    out = iq(room, BOB, REMOVE, "set")
    presence, answer = parsed(out, BOB)
    assert item(presence).get("affiliation") == "none" and answer.get("type") == "result"
    assert out.affiliations == [("bob@example.org", "none")]
    assert out.nick_changes == [("sax", "bob@example.org", None)]
    assert room.affiliation("bob@example.org") == "none" and member_list(room) == []
    assert not room.registered_members


def test_a_membership_an_admin_gave_survives_unregistering() -> None:
    room = make_room()
    grant = f'<query xmlns="{ADMIN_Q}"><item affiliation="member" jid="bob@example.org"/></query>'
    # given before registering: registration adds nothing
    iq(room, BOSS, grant, "set")
    out = register(room, BOB, "Bob")
    assert out.affiliations == [] and not room.registered_members
    iq(room, BOB, REMOVE, "set")
    assert room.affiliation("bob@example.org") == "member"
    # given (again) after registering: the admin's decision now, unregistering keeps it
    register(room, CAROL, "Carol")
    assert room.registered_members == {"carol@example.org"}
    iq(room, BOSS, grant.replace("bob@", "carol@"), "set")
    assert not room.registered_members
    out = iq(room, CAROL, REMOVE, "set")
    assert out.affiliations == [] and room.affiliation("carol@example.org") == "member"


def test_owners_and_admins_keep_their_affiliation() -> None:
    room = make_room()
    room.affiliations["bob@example.org"] = "admin"
    assert register(room, BOB, "Bob").affiliations == []
    assert register(room, BOSS, "Boss").affiliations == []  # a site admin: owner already
    iq(room, BOB, REMOVE, "set")
    assert room.affiliation("bob@example.org") == "admin"


def test_registering_in_a_members_only_room_reserves_the_nick_but_admits_nobody() -> None:
    room = make_room(RoomSettings(members_only=True))
    out = register(room, BOB, "Bob")
    assert parsed(out)[0].get("type") == "result"
    assert out.nick_changes == [("sax", "bob@example.org", "Bob")]
    assert out.affiliations == [] and room.affiliation("bob@example.org") == "none"
    (refused,) = parsed(join(room, BOB, "Bob"))
    assert refused.get("type") == "error"


def test_a_registration_removed_elsewhere_takes_its_membership_along() -> None:
    room = make_room()
    register(room, BOB, "Bob")
    register(room, CAROL, "Carol")
    room.ctx.nicks.remove_jid("sax", "bob@example.org")  # e.g. `xmppd unregister-nick`
    out = room.drop_lapsed_memberships()
    assert out.affiliations == [("bob@example.org", "none")]
    assert room.registered_members == {"carol@example.org"}
    assert room.drop_lapsed_memberships().affiliations == []


# ------------------------------------------------------------------- the service
async def test_the_membership_is_stored_restored_and_lapses_with_its_registration(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, users=("alice", "bob"))
    try:
        svc = install(h.router, h.adb, MucConfig(), site_admins=["alice@example.org"])
        assert svc is not None
        bob = await h.connect("bob@example.org/b")
        await bob.send(f'<iq type="set" id="r1" to="{ROOM}">{SUBMIT.format(nick="Bobby")}</iq>')
        assert [s.get("type") for s in bob.take()] == ["result"]
        alice = await h.connect("alice@example.org/a")
        carol = '<item affiliation="member" jid="carol@example.org"/>'
        grant = f'<query xmlns="{ADMIN_Q}">{carol}</query>'
        await alice.send(f'<iq type="set" id="g1" to="{ROOM}">{grant}</iq>')
        assert [s.get("type") for s in alice.take()] == ["result"]
        assert await svc.flush()

        again = MucService(h.router, h.adb, MucConfig())
        again.load()
        room = again.rooms["sax"]
        assert room.affiliations["bob@example.org"] == "member"
        assert room.affiliations["carol@example.org"] == "member"
        assert room.registered_members == {"bob@example.org"}

        # the CLI removes the registration: the membership it gave goes with it
        assert MucStore(h.db).unregister_nick("Bobby", room="sax")
        await again.reload_nicks()
        assert "bob@example.org" not in room.affiliations and not room.registered_members
        assert await again.flush()
        stored = {r.name: r for r in MucStore(h.db).load_rooms()}["sax"]
        assert stored.affiliations == {"carol@example.org": "member"}
        assert stored.registered_members == set()
    finally:
        h.close()
