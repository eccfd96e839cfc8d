"""§7.2.6 password-protected rooms and §7.13/§8.6 voice requests, without sockets."""

from __future__ import annotations

from datetime import timedelta

from lxml import etree

from tests.unit.test_muc_room import (
    ROOM,
    T0,
    C,
    el,
    error_of,
    iq,
    item,
    join,
    make_room,
    parsed,
)
from xmppd.jid import JID
from xmppd.muc.room import Room, RoomSettings

D = "{jabber:x:data}"
OWNER = "boss@example.org/desk"  # a site admin: owner of every room
REQUEST = "http://jabber.org/protocol/muc#request"


def _feature_vars(room: Room) -> set[str]:
    return set(room.features())


def test_room_with_password_refuses_a_join_without_it() -> None:
    room = make_room(RoomSettings(password="hunter2"))
    out = join(room, "alice@example.org/a", "alice")
    [reply] = parsed(out)
    assert reply.get("type") == "error"
    assert error_of(reply) == "not-authorized"
    assert reply.find(C + "error").get("type") == "auth"
    assert not room.occupants


def test_room_with_password_refuses_a_wrong_password_and_admits_the_right_one() -> None:
    room = make_room(RoomSettings(password="hunter2"))
    wrong = parsed(join(room, "alice@example.org/a", "alice", "<password>hunter3</password>"))
    assert error_of(wrong[-1]) == "not-authorized"
    ok = parsed(join(room, "alice@example.org/a", "alice", "<password>hunter2</password>"))
    assert any(s.tag == C + "presence" and s.get("type") is None for s in ok)
    assert "alice" in {o.nick for o in room.occupants.values()}


def test_owner_enters_a_password_room_without_the_password() -> None:
    room = make_room(RoomSettings(password="hunter2"))
    out = parsed(join(room, OWNER, "boss"))
    assert all(s.get("type") != "error" for s in out)


def test_disco_and_config_form_show_password_protection() -> None:
    room = make_room()
    assert "muc_unsecured" in _feature_vars(room)
    form = (
        '<query xmlns="http://jabber.org/protocol/muc#owner"><x xmlns="jabber:x:data" '
        'type="submit"><field var="FORM_TYPE"><value>'
        "http://jabber.org/protocol/muc#roomconfig</value></field>"
        '<field var="muc#roomconfig_passwordprotectedroom"><value>1</value></field>'
        '<field var="muc#roomconfig_roomsecret"><value>s3cret</value></field></x></query>'
    )
    join(room, OWNER, "boss")
    [result, *_] = parsed(iq(room, OWNER, form, kind="set"), OWNER)
    assert result.get("type") == "result"
    assert room.settings.password == "s3cret"
    assert "muc_passwordprotected" in _feature_vars(room)
    assert "muc_unsecured" not in _feature_vars(room)
    # the password survives a restart (room settings JSON)
    assert RoomSettings.from_json(room.settings.to_json()).password == "s3cret"
    got = parsed(iq(room, OWNER, '<query xmlns="http://jabber.org/protocol/muc#owner"/>'), OWNER)
    fields = {f.get("var"): f for f in got[0].iter(D + "field")}
    assert fields["muc#roomconfig_passwordprotectedroom"].findtext(D + "value") == "1"
    # protected without a secret is refused, and nothing changes
    bad = form.replace("<value>s3cret</value>", "<value></value>")
    room.settings.password = ""
    [err] = parsed(iq(room, OWNER, bad, kind="set"), OWNER)
    assert error_of(err) == "not-acceptable"


def _request(room: Room, full: str, extra: str = "", now=T0) -> list[etree._Element]:
    xml = (
        f'<message><x xmlns="jabber:x:data" type="submit"><field var="FORM_TYPE">'
        f"<value>{REQUEST}</value></field>{extra}</x></message>"
    )
    out = room.handle_message(el(xml, full, ROOM), JID.parse(full), None, now)
    return parsed(out)


def _moderated_room() -> Room:
    room = make_room(RoomSettings(moderated=True))
    join(room, OWNER, "boss")
    join(room, "vic@example.org/v", "vic")
    return room


def test_voice_request_reaches_moderators_as_an_approval_form() -> None:
    room = _moderated_room()
    vic = next(o for o in room.occupants.values() if o.nick == "vic")
    assert vic.role == "visitor"
    role_field = '<field var="muc#role" type="list-single"><value>participant</value></field>'
    sent = _request(room, "vic@example.org/v", role_field)
    assert [s.get("to") for s in sent] == [OWNER]
    [msg] = sent
    assert msg.get("from") == ROOM
    form = msg.find(D + "x")
    assert form.get("type") == "form"
    values = {f.get("var"): f.findtext(D + "value") for f in form.iter(D + "field")}
    assert values["FORM_TYPE"] == REQUEST
    assert values["muc#roomnick"] == "vic"
    assert values["muc#jid"] == "vic@example.org/v"
    assert values["muc#request_allow"] == "false"
    # asking again at once is refused instead of spamming the moderators
    again = _request(room, "vic@example.org/v", role_field, now=T0 + timedelta(seconds=5))
    assert [error_of(s) for s in again] == ["resource-constraint"]


def test_moderator_approval_grants_voice_and_everyone_sees_it() -> None:
    room = _moderated_room()
    _request(room, "vic@example.org/v")
    approve = (
        '<field var="muc#role"><value>participant</value></field>'
        '<field var="muc#roomnick"><value>vic</value></field>'
        '<field var="muc#request_allow"><value>true</value></field>'
    )
    sent = _request(room, OWNER, approve)
    presences = [s for s in sent if s.tag == C + "presence"]
    assert {p.get("to") for p in presences} == {OWNER, "vic@example.org/v"}
    assert all(item(p).get("role") == "participant" for p in presences)
    assert next(o for o in room.occupants.values() if o.nick == "vic").role == "participant"


def test_voice_request_errors() -> None:
    room = _moderated_room()
    # a participant already has voice
    join(room, "pat@example.org/p", "pat")
    room.occupants[
        next(k for k, o in room.occupants.items() if o.nick == "pat")
    ].role = "participant"
    assert [error_of(s) for s in _request(room, "pat@example.org/p")] == ["not-acceptable"]
    # a non-occupant cannot ask
    assert [error_of(s) for s in _request(room, "zed@example.org/z")] == ["not-acceptable"]
    # a non-moderator cannot approve: it is treated as its own (refused) request
    approve = (
        '<field var="muc#roomnick"><value>vic</value></field>'
        '<field var="muc#request_allow"><value>true</value></field>'
    )
    assert [error_of(s) for s in _request(room, "pat@example.org/p", approve)] == ["not-acceptable"]
    assert next(o for o in room.occupants.values() if o.nick == "vic").role == "visitor"
