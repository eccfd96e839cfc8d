"""The room's own actions for ``xmppd say|subject|room-ban|room-unban|destroy-room``:
pure room logic, stanza-level checks of what occupants receive (XEP-0045)."""

from __future__ import annotations

import pytest

from tests.unit.test_muc_room import (
    ROOM,
    T0,
    C,
    U,
    codes,
    item,
    join,
    make_room,
    parsed,
)
from xmppd.muc.room import MUC_USER
from xmppd.xml.errors import StanzaError

ALICE, BOB = "alice@example.org/a", "bob@example.org/b"


def two_occupants():  # type: ignore[no-untyped-def]
    room = make_room()
    join(room, ALICE, "Alice")
    join(room, BOB, "Bob")
    return room


def test_say_comes_from_the_room_to_everyone_and_is_archived() -> None:
    room = two_occupants()
    out = room.say("Maintenance at 20:00", T0)
    got = parsed(out)
    assert [m.get("to") for m in got] == [ALICE, BOB]
    for m in got:
        assert m.tag == C + "message" and m.get("type") == "groupchat"
        assert m.get("from") == ROOM  # the room itself, no nick
        assert m.findtext(C + "body") == "Maintenance at 20:00"
        sid = m.find("{urn:xmpp:sid:0}stanza-id")
        assert sid is not None and sid.get("by") == ROOM
    assert len(out.archive) == 1 and out.archive[0].nick == ""
    assert len(room.history) == 1
    # a later joiner gets it as history, with a delay
    history = [
        m
        for m in parsed(join(room, "carol@example.org/c", "Carol"))
        if m.find(C + "body") is not None
    ]
    assert [m.findtext(C + "body") for m in history] == ["Maintenance at 20:00"]


def test_subject_as_the_room() -> None:
    room = two_occupants()
    out = room.set_subject_as_room("New topic")
    got = parsed(out)
    assert [(m.get("to"), m.get("from"), m.findtext(C + "subject")) for m in got] == [
        (ALICE, ROOM, "New topic"),
        (BOB, ROOM, "New topic"),
    ]
    assert room.subject == "New topic" and room.subject_nick == ""
    assert out.save_room is True


def test_ban_evicts_with_301_and_keeps_out() -> None:
    room = two_occupants()
    out = room.set_affiliation_as_service("bob@example.org", "outcast", "spam")
    to_bob = [p for p in parsed(out, BOB)]
    to_alice = [p for p in parsed(out, ALICE)]
    assert len(to_bob) == 1 and len(to_alice) == 1
    assert to_bob[0].get("type") == "unavailable" and codes(to_bob[0]) == {"301", "110"}
    assert codes(to_alice[0]) == {"301"}
    assert item(to_alice[0]).get("affiliation") == "outcast"
    assert item(to_alice[0]).findtext(f"{U}reason") == "spam"
    assert item(to_alice[0]).find(f"{U}actor") is None  # the service, not an occupant
    assert out.affiliations == [("bob@example.org", "outcast")]
    assert list(room.occupants) == ["alice"]
    refused = parsed(join(room, "bob@example.org/other", "Bobby"), "bob@example.org/other")
    assert refused[0].get("type") == "error"
    unban = room.set_affiliation_as_service("bob@example.org", "none", None)
    assert unban.affiliations == [("bob@example.org", "none")]
    assert "bob@example.org" not in room.affiliations


def test_service_affiliation_changes_keep_the_xep_rules() -> None:
    room = make_room()
    with pytest.raises(StanzaError) as err:
        room.set_affiliation_as_service("boss@example.org", "outcast", None)
    assert err.value.condition == "not-allowed"  # site admins always own the room
    with pytest.raises(StanzaError) as err:
        room.set_affiliation_as_service("x@example.org", "emperor", None)
    assert err.value.condition == "bad-request"


def test_destroy_tells_every_occupant() -> None:
    room = two_occupants()
    out = room.destroy("moving to another room")
    got = parsed(out)
    assert sorted(p.get("to") for p in got) == [ALICE, BOB]
    for p in got:
        assert p.get("type") == "unavailable"
        destroy = p.find(f"{{{MUC_USER}}}x/{{{MUC_USER}}}destroy")
        assert destroy is not None
        assert destroy.findtext(f"{{{MUC_USER}}}reason") == "moving to another room"
        assert item(p).get("affiliation") == "none" and item(p).get("role") == "none"
    assert out.gone is True and not room.occupants
