"""XEP-0114 components as MUC occupants: the ``muc_nicks`` allowance, registered nicks,
and groupchat like any occupant (room logic only, no sockets)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from lxml import etree

from xmppd.jid import JID
from xmppd.muc.config import MucConfig
from xmppd.muc.nicks import nick_key, nick_matches
from xmppd.muc.room import Out, Room, RoomContext, RoomSettings
from xmppd.xml import ns

SERVICE = "conference.example.org"
ROOM = f"sax@{SERVICE}"
T0 = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
C = "{jabber:client}"
MUC = "http://jabber.org/protocol/muc"
BOT = "relay@irc.example.org/bot"


def make_room() -> Room:
    ctx = RoomContext(config=MucConfig(), service=SERVICE)
    ctx.component_nicks["irc.example.org"] = ("IRC", "irc-*")
    ctx.component_nicks["quiet.example.org"] = ()
    return Room(JID("sax", SERVICE, None), RoomSettings(), ctx)


def join(room: Room, full: str, nick: str) -> Out:
    p = etree.fromstring(f'<presence xmlns="jabber:client"><x xmlns="{MUC}"/></presence>')
    p.set("from", full)
    p.set("to", f"{ROOM}/{nick}")
    return room.handle_presence(p, JID.parse(full), nick, T0)


def error_of(out: Out, full: str) -> tuple[str, str] | None:
    for rcpt, data in out.sends:
        el = etree.fromstring(data)
        err = el.find(C + "error")
        if rcpt.full == full and err is not None:
            cond = next(c for c in err if not c.tag.endswith("}text"))
            return etree.QName(cond).localname, err.findtext("{%s}text" % ns.STANZA_ERRORS) or ""
    return None


@pytest.mark.parametrize(
    ("patterns", "nick", "ok"),
    [
        (("IRC",), "IRC", True),
        (("IRC",), "irc", True),  # the same nick (PRECIS case mapping)
        (("IRC",), "IRCbot", False),
        (("irc-*",), "IRC-alice", True),
        (("irc-*",), "alice", False),
        ((), "anything", False),
    ],
)
def test_nick_matches(patterns: tuple[str, ...], nick: str, ok: bool) -> None:
    assert nick_matches(nick_key(nick), patterns) is ok


def test_component_joins_with_an_allowed_nick() -> None:
    room = make_room()
    out = join(room, BOT, "IRC")
    assert error_of(out, BOT) is None
    assert nick_key("IRC") in room.occupants
    assert room.by_real[BOT].bare == "relay@irc.example.org"


def test_component_refused_outside_its_allowance() -> None:
    room = make_room()
    cond, text = error_of(join(room, BOT, "alice"), BOT)  # type: ignore[misc]
    assert cond == "not-acceptable"
    assert "IRC, irc-*" in text
    assert not room.occupants


def test_component_without_allowance_cannot_join() -> None:
    room = make_room()
    full = "bot@quiet.example.org/x"
    assert error_of(join(room, full, "IRC"), full) == (
        "not-acceptable",
        "this component may only use the nicknames none",
    )


def test_component_never_takes_a_registered_nick() -> None:
    room = make_room()
    room.ctx.nicks.add("", "IRC-alice", "alice@example.org")
    cond, _ = error_of(join(room, BOT, "irc-ALICE"), BOT)  # type: ignore[misc]
    assert cond == "conflict"


def test_component_nick_change_is_checked_too() -> None:
    room = make_room()
    join(room, BOT, "IRC")
    out = join(room, BOT, "mallory")  # a presence under another nick = a nick change
    assert error_of(out, BOT)[0] == "not-acceptable"  # type: ignore[index]
    assert nick_key("IRC") in room.occupants


def test_users_are_not_restricted_by_component_allowances() -> None:
    room = make_room()
    full = "alice@example.org/web"
    assert error_of(join(room, full, "IRC-fan"), full) is None


def test_component_groupchat_fans_out_with_stanza_id() -> None:
    room = make_room()
    join(room, BOT, "IRC")
    join(room, "alice@example.org/web", "alice")
    msg = etree.fromstring(
        '<message xmlns="jabber:client" type="groupchat"><body>&lt;bob&gt; hi</body></message>'
    )
    msg.set("from", BOT)
    msg.set("to", ROOM)
    out = room.handle_message(msg, JID.parse(BOT), None, T0)
    got = {r.full: etree.fromstring(d) for r, d in out.sends}
    assert set(got) == {BOT, "alice@example.org/web"}
    alice_copy = got["alice@example.org/web"]
    assert alice_copy.get("from") == f"{ROOM}/IRC"
    assert alice_copy.findtext(C + "body") == "<bob> hi"
    assert alice_copy.find("{urn:xmpp:sid:0}stanza-id").get("by") == ROOM  # type: ignore[union-attr]
    assert len(out.archive) == 1 and out.archive[0].nick == "IRC"
