"""XEP-0045 room logic driven without sockets, trio or a database: stanza in, bytes out."""

from __future__ import annotations

import ast
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree

from xmppd.jid import JID
from xmppd.muc.config import MucConfig
from xmppd.muc.history import format_stamp
from xmppd.muc.nicks import NickError, check_nick
from xmppd.muc.room import Out, Room, RoomContext, RoomSettings
from xmppd.xml import ns

SERVICE = "conference.example.org"
ROOM = f"sax@{SERVICE}"
T0 = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
C = "{jabber:client}"
MUC = "http://jabber.org/protocol/muc"
U = "{%s#user}" % MUC
E = "{%s}" % ns.STANZA_ERRORS


def make_room(settings: RoomSettings | None = None, **cfg: object) -> Room:
    counter = itertools.count(1)
    ctx = RoomContext(
        config=MucConfig(**cfg),  # type: ignore[arg-type]
        service=SERVICE,
        site_admins=frozenset({"boss@example.org"}),
        new_id=lambda: f"id{next(counter)}",
    )
    return Room(JID("sax", SERVICE, None), settings or RoomSettings(), ctx)


def el(xml: str, frm: str, to: str) -> etree._Element:
    wrapper = etree.fromstring(f'<w xmlns="jabber:client">{xml}</w>')
    stanza = wrapper[0]
    stanza.set("from", frm)
    stanza.set("to", to)
    return stanza


def parsed(out: Out, full: str | None = None) -> list[etree._Element]:
    return [etree.fromstring(data) for r, data in out.sends if full is None or r.full == full]


def error_of(stanza: etree._Element) -> str | None:
    err = stanza.find(C + "error")
    if err is None:
        return None
    for child in err:
        if child.tag.startswith(E) and not child.tag.endswith("}text"):
            return etree.QName(child).localname
    return None


def codes(stanza: etree._Element) -> set[str]:
    return {s.get("code") for s in stanza.iterfind(f"{U}x/{U}status")}


def item(stanza: etree._Element) -> etree._Element:
    found = stanza.find(f"{U}x/{U}item")
    assert found is not None
    return found


def join(
    room: Room, full: str, nick: str, extra: str = "", now: datetime = T0, show: str = ""
) -> Out:
    xml = f'<presence>{show}<x xmlns="{MUC}">{extra}</x></presence>'
    return room.handle_presence(el(xml, full, f"{ROOM}/{nick}"), JID.parse(full), nick, now)


def say(room: Room, full: str, text: str, now: datetime = T0, extra: str = "") -> Out:
    xml = f'<message type="groupchat" id="m1"><body>{text}</body>{extra}</message>'
    return room.handle_message(el(xml, full, ROOM), JID.parse(full), None, now)


def iq(room: Room, full: str, payload: str, kind: str = "get", nick: str | None = None) -> Out:
    to = ROOM if nick is None else f"{ROOM}/{nick}"
    stanza = el(f'<iq type="{kind}" id="q1">{payload}</iq>', full, to)
    return room.handle_iq(stanza, JID.parse(full), nick, T0)


def bodies(stanzas: list[etree._Element]) -> list[str]:
    return [
        m.findtext(C + "body")
        for m in stanzas
        if m.tag == C + "message" and m.find(C + "body") is not None
    ]


# ----------------------------------------------------------------------- purity
def test_room_module_imports_no_trio_socket_or_database() -> None:
    root = Path(__file__).resolve().parents[2] / "xmppd" / "muc"
    for name in (
        "room.py",
        "core.py",
        "stanzas.py",
        "out.py",
        "roomconfig.py",
        "presence.py",
        "messages.py",
        "voice.py",
        "iq_relay.py",
        "admin.py",
        "owner.py",
        "registration.py",
        "disco.py",
        "archive.py",
        "history.py",
        "nicks.py",
        "roles.py",
        "forms.py",
        "occupant.py",
        "wire.py",
        "mam.py",
    ):
        tree = ast.parse((root / name).read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
        banned = {"trio", "socket", "sqlalchemy", "asyncio", "xmppd.storage", "xmppd.storage.muc"}
        assert not (imported & banned), (name, imported & banned)


# ------------------------------------------------------------------------ joins
def test_join_order_presences_then_self_then_history_then_subject() -> None:
    room = make_room()
    room.subject = "Welcome"
    join(room, "alice@example.org/a", "Alice")
    say(room, "alice@example.org/a", "one", T0)
    say(room, "alice@example.org/a", "two", T0 + timedelta(seconds=1))
    out = join(room, "bob@example.org/b", "Bob", now=T0 + timedelta(seconds=5))
    mine = parsed(out, "bob@example.org/b")
    kinds = [(s.tag.split("}")[1], s.get("from")) for s in mine]
    assert kinds == [
        ("presence", f"{ROOM}/Alice"),
        ("presence", f"{ROOM}/Bob"),
        ("message", f"{ROOM}/Alice"),
        ("message", f"{ROOM}/Alice"),
        ("message", ROOM),  # the subject
    ]
    assert codes(mine[0]) == set()
    assert item(mine[0]).get("jid") == "alice@example.org/a"  # non-anonymous
    assert codes(mine[1]) == {"110", "100"}
    assert item(mine[1]).get("role") == "participant"
    assert bodies(mine[2:4]) == ["one", "two"]
    delay = mine[2].find("{urn:xmpp:delay}delay")
    assert delay.get("from") == ROOM and delay.get("stamp") == format_stamp(T0)
    assert mine[2].find("{urn:xmpp:sid:0}stanza-id").get("by") == ROOM
    assert mine[4].findtext(C + "subject") == "Welcome"
    assert mine[4].get("from") == ROOM
    assert all(s.get("to") == "bob@example.org/b" for s in mine)
    # Alice learns of Bob, without status 110.
    theirs = parsed(out, "alice@example.org/a")
    assert len(theirs) == 1 and theirs[0].get("from") == f"{ROOM}/Bob"
    assert codes(theirs[0]) == set()


def test_empty_subject_is_still_sent_last() -> None:
    room = make_room()
    mine = parsed(join(room, "alice@example.org/a", "Alice"))
    assert mine[-1].tag == C + "message" and mine[-1].findtext(C + "subject") == ""


def test_semi_anonymous_room_hides_real_jids_from_participants() -> None:
    room = make_room(RoomSettings(whois="moderators"))
    room.affiliations["mod@example.org"] = "admin"
    join(room, "mod@example.org/m", "Mod")
    out = join(room, "bob@example.org/b", "Bob")
    bob_view = parsed(out, "bob@example.org/b")
    assert item(bob_view[0]).get("jid") is None
    assert "100" not in codes(bob_view[1])
    mod_view = parsed(out, "mod@example.org/m")
    assert item(mod_view[0]).get("jid") == "bob@example.org/b"


def test_join_without_nick_is_jid_malformed() -> None:
    room = make_room()
    stanza = el(f'<presence><x xmlns="{MUC}"/></presence>', "alice@example.org/a", ROOM)
    out = room.handle_presence(stanza, JID.parse("alice@example.org/a"), None, T0)
    (reply,) = parsed(out)
    assert reply.get("type") == "error" and error_of(reply) == "jid-malformed"
    assert not room.occupants


@pytest.mark.parametrize(
    ("nick", "condition"),
    [(" Alice", "not-acceptable"), ("Alice ", "not-acceptable"), ("x" * 49, "not-acceptable")],
)
def test_bad_nick_is_refused(nick: str, condition: str) -> None:
    room = make_room()
    (reply,) = parsed(join(room, "alice@example.org/a", nick))
    assert error_of(reply) == condition
    assert not room.occupants


@pytest.mark.parametrize("nick", ["a\u200bdmin", "ad\u202emin", "a\u2066b", "bad\x07", "\u3164"])
def test_invisible_and_control_characters_are_refused(nick: str) -> None:
    with pytest.raises(NickError):
        check_nick(nick, 48)


def test_nick_in_use_by_someone_else_conflicts_case_and_width_insensitively() -> None:
    room = make_room()
    join(room, "alice@example.org/a", "Alice")
    for variant in ("Alice", "ALICE", "\uff21lice"):
        (reply,) = parsed(join(room, "mallory@example.org/m", variant))
        assert error_of(reply) == "conflict", variant
    assert list(room.occupants) == ["alice"]


def test_two_resources_of_one_user_share_a_nick() -> None:
    room = make_room()
    join(room, "alice@example.org/phone", "Alice")
    join(room, "bob@example.org/b", "Bob")
    out = join(room, "alice@example.org/desk", "Alice")
    assert not [s for s in parsed(out) if s.get("type") == "error"]
    assert parsed(out, "bob@example.org/b") == []  # no second "Alice joined"
    out = say(room, "bob@example.org/b", "hi")
    assert {r.full for r, _ in out.sends} == {
        "alice@example.org/phone",
        "alice@example.org/desk",
        "bob@example.org/b",
    }
    # One resource leaving keeps the nick in the room.
    leave = room.handle_presence(
        el('<presence type="unavailable"/>', "alice@example.org/phone", f"{ROOM}/Alice"),
        JID.parse("alice@example.org/phone"),
        "Alice",
        T0,
    )
    assert [r.full for r, _ in leave.sends] == ["alice@example.org/phone"]
    assert "alice" in room.occupants


def test_rejoin_from_joined_full_jid_is_a_full_resync() -> None:
    room = make_room()
    join(room, "alice@example.org/a", "Alice")
    join(room, "bob@example.org/b", "Bob")
    say(room, "alice@example.org/a", "earlier")
    out = join(room, "bob@example.org/b", "Bob")
    mine = parsed(out, "bob@example.org/b")
    assert [s.tag for s in mine] == [C + "presence", C + "presence", C + "message", C + "message"]
    assert "110" in codes(mine[1])
    assert bodies(mine) == ["earlier"]
    assert parsed(out, "alice@example.org/a") == []


def test_presence_without_muc_x_from_non_occupant_gets_a_kick() -> None:
    room = make_room()
    stanza = el("<presence/>", "alice@example.org/a", f"{ROOM}/Alice")
    out = room.handle_presence(stanza, JID.parse("alice@example.org/a"), "Alice", T0)
    (reply,) = parsed(out)
    assert reply.get("type") == "unavailable" and codes(reply) == {"110", "307"}
    assert not room.occupants


def test_leave_and_presence_update_and_nick_change() -> None:
    room = make_room()
    join(room, "alice@example.org/a", "Alice")
    join(room, "bob@example.org/b", "Bob")
    upd = room.handle_presence(
        el("<presence><show>away</show></presence>", "bob@example.org/b", f"{ROOM}/Bob"),
        JID.parse("bob@example.org/b"),
        "Bob",
        T0,
    )
    (seen,) = parsed(upd, "alice@example.org/a")
    assert seen.findtext(C + "show") == "away"
    (own,) = parsed(upd, "bob@example.org/b")
    assert "110" in codes(own)

    change = room.handle_presence(
        el("<presence/>", "bob@example.org/b", f"{ROOM}/Robert"),
        JID.parse("bob@example.org/b"),
        "Robert",
        T0,
    )
    gone, back = parsed(change, "alice@example.org/a")
    assert gone.get("type") == "unavailable" and codes(gone) == {"303"}
    assert item(gone).get("nick") == "Robert" and gone.get("from") == f"{ROOM}/Bob"
    assert back.get("type") is None and back.get("from") == f"{ROOM}/Robert"
    own_gone, own_back = parsed(change, "bob@example.org/b")
    assert codes(own_gone) == {"303", "110"} and "110" in codes(own_back)

    bye = room.handle_presence(
        el(
            '<presence type="unavailable"><status>bye</status></presence>',
            "bob@example.org/b",
            f"{ROOM}/Robert",
        ),
        JID.parse("bob@example.org/b"),
        "Robert",
        T0,
    )
    (left,) = parsed(bye, "alice@example.org/a")
    assert left.get("type") == "unavailable" and left.findtext(C + "status") == "bye"
    (own_left,) = parsed(bye, "bob@example.org/b")
    assert codes(own_left) == {"110"}
    assert list(room.occupants) == ["alice"]


def test_nick_change_to_taken_nick_conflicts() -> None:
    room = make_room()
    join(room, "alice@example.org/a", "Alice")
    join(room, "bob@example.org/b", "Bob")
    out = room.handle_presence(
        el("<presence/>", "bob@example.org/b", f"{ROOM}/alice"),
        JID.parse("bob@example.org/b"),
        "alice",
        T0,
    )
    (reply,) = parsed(out)
    assert error_of(reply) == "conflict"
    assert room.occupants["bob"].nick == "Bob"


# --------------------------------------------------------------------- messages
def test_groupchat_fan_out_is_one_serialisation_with_room_stanza_id() -> None:
    room = make_room()
    for user in ("alice", "bob", "carol"):
        join(room, f"{user}@example.org/r", user.title())
    forged = (
        f'<stanza-id xmlns="urn:xmpp:sid:0" by="{ROOM}" id="forged"/>'
        '<stanza-id xmlns="urn:xmpp:sid:0" by="alice@example.org" id="own"/>'
        '<occupant-id xmlns="urn:xmpp:occupant-id:0" id="fake"/>'
    )
    out = say(room, "alice@example.org/r", "hello &lt;&amp;&gt;", extra=forged)
    assert len(out.sends) == 3
    copies = [data.replace(r.to_attr, b"") for r, data in out.sends]
    assert copies[0] == copies[1] == copies[2]  # only `to` differs
    msg = etree.fromstring(out.sends[1][1])
    assert msg.get("from") == f"{ROOM}/Alice" and msg.get("to") == "bob@example.org/r"
    assert msg.get("id") == "m1" and msg.findtext(C + "body") == "hello <&>"
    ids = [(s.get("by"), s.get("id")) for s in msg.iterfind("{urn:xmpp:sid:0}stanza-id")]
    assert ids == [("alice@example.org", "own"), (ROOM, "id1")]
    occ_ids = [o.get("id") for o in msg.iterfind("{urn:xmpp:occupant-id:0}occupant-id")]
    assert occ_ids == [room.occupants["alice"].occupant_id] and "fake" not in occ_ids
    assert [e.stanza_id for e in out.archive] == ["id1"]
    assert len(room.history) == 1


def test_occupant_id_is_stable_per_user_and_differs_between_users() -> None:
    room = make_room()
    join(room, "alice@example.org/a", "Alice")
    first = room.occupants["alice"].occupant_id
    room.handle_presence(
        el('<presence type="unavailable"/>', "alice@example.org/a", f"{ROOM}/Alice"),
        JID.parse("alice@example.org/a"),
        "Alice",
        T0,
    )
    join(room, "alice@example.org/b", "Ally")
    join(room, "bob@example.org/b", "Bob")
    assert room.occupants["ally"].occupant_id == first
    assert room.occupants["bob"].occupant_id != first


def test_chat_states_are_relayed_but_not_stored() -> None:
    room = make_room()
    join(room, "alice@example.org/a", "Alice")
    xml = '<message type="groupchat"><composing xmlns="http://jabber.org/protocol/chatstates"/></message>'
    out = room.handle_message(
        el(xml, "alice@example.org/a", ROOM), JID.parse("alice@example.org/a"), None, T0
    )
    assert len(out.sends) == 1 and not out.archive and len(room.history) == 0


def test_groupchat_from_non_occupant_is_not_acceptable() -> None:
    room = make_room()
    out = say(room, "mallory@example.org/m", "spam")
    (reply,) = parsed(out)
    assert error_of(reply) == "not-acceptable" and not out.archive


@pytest.mark.parametrize("kind", ["chat", "normal", "headline"])
def test_non_groupchat_message_to_room_is_bad_request(kind: str) -> None:
    room = make_room()
    join(room, "alice@example.org/a", "Alice")
    stanza = el(f'<message type="{kind}"><body>x</body></message>', "alice@example.org/a", ROOM)
    out = room.handle_message(stanza, JID.parse("alice@example.org/a"), None, T0)
    (reply,) = parsed(out)
    assert error_of(reply) == "bad-request" and not room.history.entries


def test_private_messages() -> None:
    room = make_room()
    join(room, "alice@example.org/a", "Alice")
    join(room, "bob@example.org/b", "Bob")
    alice = JID.parse("alice@example.org/a")
    pm = el('<message type="chat"><body>psst</body></message>', str(alice), f"{ROOM}/bob")
    out = room.handle_message(pm, alice, "bob", T0)
    ((got, rcpts),) = out.private  # the service delivers it through the router
    assert [r.full for r in rcpts] == ["bob@example.org/b"] and not out.sends
    assert got.get("from") == f"{ROOM}/Alice" and got.findtext(C + "body") == "psst"
    assert got.find(f"{U}x") is not None and not out.archive
    bad = el('<message type="groupchat"><body>x</body></message>', str(alice), f"{ROOM}/Bob")
    assert error_of(parsed(room.handle_message(bad, alice, "Bob", T0))[0]) == "bad-request"
    nobody = el('<message type="chat"><body>x</body></message>', str(alice), f"{ROOM}/Zed")
    assert error_of(parsed(room.handle_message(nobody, alice, "Zed", T0))[0]) == "item-not-found"


def test_flood_limit_answers_with_an_error_not_silence() -> None:
    room = make_room(flood_burst=3, flood_rate=1.0)
    join(room, "alice@example.org/a", "Alice")
    results = [say(room, "alice@example.org/a", f"m{i}", T0) for i in range(4)]
    assert all(len(o.archive) == 1 for o in results[:3])
    (reply,) = parsed(results[3])
    assert error_of(reply) == "resource-constraint" and not results[3].archive
    later = say(room, "alice@example.org/a", "ok again", T0 + timedelta(seconds=2))
    assert len(later.archive) == 1


def test_subject_change_needs_permission() -> None:
    room = make_room()
    room.affiliations["mod@example.org"] = "admin"
    join(room, "mod@example.org/m", "Mod")
    join(room, "bob@example.org/b", "Bob")
    bob = JID.parse("bob@example.org/b")
    stanza = el('<message type="groupchat"><subject>mine</subject></message>', str(bob), ROOM)
    (reply,) = parsed(room.handle_message(stanza, bob, None, T0))
    assert error_of(reply) == "forbidden" and room.subject == ""
    mod = JID.parse("mod@example.org/m")
    stanza = el('<message type="groupchat"><subject>Topic</subject></message>', str(mod), ROOM)
    out = room.handle_message(stanza, mod, None, T0)
    assert room.subject == "Topic" and out.save_room
    assert {s.findtext(C + "subject") for s in parsed(out)} == {"Topic"}
    carol = parsed(join(room, "carol@example.org/c", "Carol"), "carol@example.org/c")
    assert carol[-1].findtext(C + "subject") == "Topic"


# ---------------------------------------------------------------------- history
def _room_with_history(n: int) -> Room:
    room = make_room(history_default=20)
    join(room, "alice@example.org/a", "Alice")
    for i in range(n):
        say(room, "alice@example.org/a", f"m{i}", T0 + timedelta(minutes=i))
    return room


def _history(room: Room, extra: str, now: datetime) -> list[str]:
    return bodies(parsed(join(room, "bob@example.org/b", "Bob", extra=extra, now=now)))


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("", [f"m{i}" for i in range(10, 30)]),  # default 20
        ('<history maxstanzas="3"/>', ["m27", "m28", "m29"]),
        ('<history maxstanzas="0"/>', []),
        ('<history maxchars="0"/>', []),
        ('<history maxstanzas="1000000"/>', [f"m{i}" for i in range(30)]),
        ('<history seconds="149"/>', ["m28", "m29"]),
        ('<history since="2024-05-06T07:35:09Z"/>', ["m27", "m28", "m29"]),
        ('<history since="2024-05-06T07:35:09Z" maxstanzas="2"/>', ["m28", "m29"]),
        ('<history since="2099-01-01T00:00:00Z"/>', []),
    ],
)
def test_history_selection(extra: str, expected: list[str]) -> None:
    room = _room_with_history(30)
    room.history.entries = type(room.history.entries)(room.history.entries, maxlen=200)
    now = T0 + timedelta(minutes=29, seconds=30)
    assert _history(room, extra, now) == expected


def test_history_maxchars_counts_whole_stanzas() -> None:
    room = _room_with_history(5)
    size = room.history.entries[-1].join_copy(ROOM)[2]
    assert _history(room, f'<history maxchars="{2 * size + 1}"/>', T0) == ["m3", "m4"]


@pytest.mark.parametrize(
    "extra",
    [
        '<history maxstanzas="-1"/>',
        '<history maxchars="lots"/>',
        '<history since="yesterday"/>',
        '<history since="2024-05-06T07:35:09"/>',
        '<history seconds="-5"/>',
    ],
)
def test_absurd_history_values_are_bad_request(extra: str) -> None:
    room = _room_with_history(3)
    (reply,) = parsed(join(room, "bob@example.org/b", "Bob", extra=extra))
    assert reply.get("type") == "error" and error_of(reply) == "bad-request"
    assert "bob" not in room.occupants


# -------------------------------------------------------------- roles/affiliations
def _admin_set(room: Room, full: str, items: str) -> Out:
    return iq(room, full, f'<query xmlns="{MUC}#admin">{items}</query>', "set")


def test_kick_by_moderator_and_refusals() -> None:
    room = make_room()
    room.affiliations["mod@example.org"] = "admin"
    join(room, "mod@example.org/m", "Mod")
    join(room, "bob@example.org/b", "Bob")
    join(room, "carol@example.org/c", "Carol")
    # A participant cannot kick: forbidden, as he is no moderator (XEP-0045 §8).
    (reply,) = parsed(_admin_set(room, "bob@example.org/b", '<item nick="Carol" role="none"/>'))
    assert error_of(reply) == "forbidden" and "carol" in room.occupants
    # Nobody kicks an admin.
    (reply,) = parsed(_admin_set(room, "mod@example.org/m", '<item nick="Mod" role="none"/>'))
    assert error_of(reply) == "not-allowed"
    out = _admin_set(
        room,
        "mod@example.org/m",
        '<item nick="Carol" role="none"><reason>calm down</reason></item>',
    )
    (kicked,) = parsed(out, "carol@example.org/c")
    assert kicked.get("type") == "unavailable" and codes(kicked) == {"307", "110"}
    assert item(kicked).findtext(U + "reason") == "calm down"
    (seen,) = parsed(out, "bob@example.org/b")
    assert codes(seen) == {"307"}
    assert [s.get("type") for s in parsed(out, "mod@example.org/m")] == ["unavailable", "result"]
    assert "carol" not in room.occupants
    # A kicked user may come back.
    back = parsed(join(room, "carol@example.org/c", "Carol"), "carol@example.org/c")
    assert "110" in codes(back[-2])


def test_ban_then_rejoin_is_forbidden_and_lists() -> None:
    room = make_room()
    join(room, "boss@example.org/x", "Boss")  # site admin: owner everywhere
    join(room, "bob@example.org/b", "Bob")
    assert (
        item(parsed(join(room, "boss@example.org/y", "Boss"), "boss@example.org/y")[1]).get(
            "affiliation"
        )
        == "owner"
    )
    out = _admin_set(
        room, "boss@example.org/x", '<item jid="bob@example.org" affiliation="outcast"/>'
    )
    (banned,) = parsed(out, "bob@example.org/b")
    assert codes(banned) == {"301", "110"}
    assert out.affiliations == [("bob@example.org", "outcast")]
    (reply,) = parsed(join(room, "bob@example.org/other", "Bobby"))
    assert error_of(reply) == "forbidden"
    listing = parsed(
        iq(
            room,
            "boss@example.org/x",
            f'<query xmlns="{MUC}#admin"><item affiliation="outcast"/></query>',
        )
    )
    jids = [i.get("jid") for i in listing[0].iter("{%s#admin}item" % MUC)]
    assert jids == ["bob@example.org"]
    # Non-admins may not see the list.
    join(room, "carol@example.org/c", "Carol")
    (reply,) = parsed(
        iq(
            room,
            "carol@example.org/c",
            f'<query xmlns="{MUC}#admin"><item affiliation="outcast"/></query>',
        )
    )
    assert error_of(reply) == "forbidden"


def test_voice_in_moderated_room() -> None:
    room = make_room(RoomSettings(moderated=True))
    room.affiliations["mod@example.org"] = "admin"
    join(room, "mod@example.org/m", "Mod")
    join(room, "vis@example.org/v", "Vis")
    assert room.occupants["vis"].role == "visitor"
    (reply,) = parsed(say(room, "vis@example.org/v", "hello?"))
    assert error_of(reply) == "forbidden"
    out = _admin_set(room, "mod@example.org/m", '<item nick="Vis" role="participant"/>')
    assert item(parsed(out, "vis@example.org/v")[0]).get("role") == "participant"
    assert len(say(room, "vis@example.org/v", "thanks").archive) == 1


def test_only_admins_grant_moderator() -> None:
    room = make_room()
    join(room, "bob@example.org/b", "Bob")
    join(room, "carol@example.org/c", "Carol")
    room.occupants["bob"].role = "moderator"  # an unaffiliated moderator
    (reply,) = parsed(
        _admin_set(room, "bob@example.org/b", '<item nick="Carol" role="moderator"/>')
    )
    assert error_of(reply) == "not-allowed"


# ---------------------------------------------------------------- registered nicks
def test_registered_nick_belongs_to_its_owner() -> None:
    room = make_room()
    room.ctx.nicks.add("", "Alice", "alice@example.org")
    for variant in ("Alice", "alice", "\uff41lice"):
        (reply,) = parsed(join(room, "mallory@example.org/m", variant))
        assert error_of(reply) == "conflict"
    out = join(room, "alice@example.org/a", "ALICE")
    assert "110" in codes(parsed(out)[0])


def test_enforce_registered_nick_names_the_allowed_nick() -> None:
    room = make_room(enforce_registered_nick=True)
    room.ctx.nicks.add("", "Alice", "alice@example.org")
    (reply,) = parsed(join(room, "alice@example.org/a", "Someone"))
    assert error_of(reply) == "not-acceptable"
    assert "Alice" in reply.find(C + "error").findtext(E + "text")
    assert not room.occupants
    join(room, "alice@example.org/a", "alice")
    assert "alice" in room.occupants


def test_roomuser_item_disco_and_in_band_registration() -> None:
    room = make_room()
    q = f'<query xmlns="{ns.DISCO_INFO}" node="x-roomuser-item"/>'
    (reply,) = parsed(iq(room, "bob@example.org/b", q))
    assert reply.find(f"{{{ns.DISCO_INFO}}}query/{{{ns.DISCO_INFO}}}identity") is None
    (form,) = parsed(iq(room, "bob@example.org/b", '<query xmlns="jabber:iq:register"/>'))
    assert form.find(".//{jabber:x:data}field[@var='muc#register_roomnick']") is not None
    submit = (
        '<query xmlns="jabber:iq:register"><x xmlns="jabber:x:data" type="submit">'
        '<field var="FORM_TYPE"><value>http://jabber.org/protocol/muc#register</value></field>'
        '<field var="muc#register_roomnick"><value>Bobby</value></field></x></query>'
    )
    out = iq(room, "bob@example.org/b", submit, "set")
    assert parsed(out)[0].get("type") == "result"
    assert out.nick_changes == [("sax", "bob@example.org", "Bobby")]
    (reply,) = parsed(iq(room, "bob@example.org/b", q))
    ident = reply.find(f"{{{ns.DISCO_INFO}}}query/{{{ns.DISCO_INFO}}}identity")
    assert ident.get("name") == "Bobby"
    (reply,) = parsed(iq(room, "mallory@example.org/m", submit, "set"))
    assert error_of(reply) == "conflict"
    (reply,) = parsed(join(room, "mallory@example.org/m", "bobby"))
    assert error_of(reply) == "conflict"


# -------------------------------------------------------------------- iq & disco
def test_self_ping() -> None:
    room = make_room()
    join(room, "alice@example.org/a", "Alice")
    (reply,) = parsed(
        iq(room, "alice@example.org/a", '<ping xmlns="urn:xmpp:ping"/>', nick="Alice")
    )
    assert reply.get("type") == "result" and reply.get("from") == f"{ROOM}/Alice"
    (reply,) = parsed(
        iq(room, "ghost@example.org/g", '<ping xmlns="urn:xmpp:ping"/>', nick="Alice")
    )
    assert error_of(reply) == "not-acceptable"


def test_iq_between_occupants_is_relayed_and_answered() -> None:
    room = make_room()
    join(room, "alice@example.org/a", "Alice")
    join(room, "bob@example.org/b", "Bob")
    out = iq(room, "alice@example.org/a", '<query xmlns="jabber:iq:version"/>', nick="Bob")
    (fwd,) = parsed(out, "bob@example.org/b")
    assert fwd.get("from") == f"{ROOM}/Alice" and fwd.get("id") != "q1"
    answer = el(f'<iq type="result" id="{fwd.get("id")}"/>', "bob@example.org/b", f"{ROOM}/Alice")
    back = room.handle_iq(answer, JID.parse("bob@example.org/b"), "Alice", T0)
    (got,) = parsed(back, "alice@example.org/a")
    assert got.get("id") == "q1" and got.get("from") == f"{ROOM}/Bob"


def test_disco_info_of_room() -> None:
    room = make_room(RoomSettings(title="Saxophone", description="the site chat"))
    room.subject = "Jazz"
    (reply,) = parsed(iq(room, "anyone@example.org/x", f'<query xmlns="{ns.DISCO_INFO}"/>'))
    q = reply.find(f"{{{ns.DISCO_INFO}}}query")
    ident = q.find(f"{{{ns.DISCO_INFO}}}identity")
    assert (ident.get("category"), ident.get("type"), ident.get("name")) == (
        "conference",
        "text",
        "Saxophone",
    )
    feats = {f.get("var") for f in q.iterfind(f"{{{ns.DISCO_INFO}}}feature")}
    for needed in (
        MUC,
        "muc_persistent",
        "muc_public",
        "muc_open",
        "muc_nonanonymous",
        "urn:xmpp:mam:2",
        "urn:xmpp:sid:0",
        "urn:xmpp:occupant-id:0",
        f"{MUC}#self-ping-optimization",
        "jabber:iq:register",
    ):
        assert needed in feats
    fields = {
        f.get("var"): f.findtext("{jabber:x:data}value") for f in q.iter("{jabber:x:data}field")
    }
    assert fields["FORM_TYPE"] == f"{MUC}#roominfo"
    assert fields["muc#roominfo_subject"] == "Jazz"
    assert fields["muc#roominfo_description"] == "the site chat"


def test_owner_config_and_destroy() -> None:
    room = make_room()
    room.affiliations["own@example.org"] = "owner"
    join(room, "own@example.org/o", "Own")
    join(room, "bob@example.org/b", "Bob")
    (reply,) = parsed(iq(room, "bob@example.org/b", f'<query xmlns="{MUC}#owner"/>'))
    assert error_of(reply) == "forbidden"
    (form,) = parsed(iq(room, "own@example.org/o", f'<query xmlns="{MUC}#owner"/>'))
    assert form.find(".//{jabber:x:data}field[@var='muc#roomconfig_whois']") is not None
    submit = (
        f'<query xmlns="{MUC}#owner"><x xmlns="jabber:x:data" type="submit">'
        '<field var="muc#roomconfig_roomname"><value>New title</value></field>'
        '<field var="muc#roomconfig_whois"><value>moderators</value></field></x></query>'
    )
    out = iq(room, "own@example.org/o", submit, "set")
    assert room.settings.title == "New title" and room.settings.whois == "moderators"
    assert out.save_room
    notice = [s for s in parsed(out, "bob@example.org/b") if s.tag == C + "message"]
    assert codes(notice[0]) == {"104", "173"}
    out = iq(
        room,
        "own@example.org/o",
        f'<query xmlns="{MUC}#owner"><destroy jid="x@{SERVICE}">'
        "<reason>moving</reason></destroy></query>",
        "set",
    )
    (gone,) = parsed(out, "bob@example.org/b")
    assert gone.find(f"{U}x/{U}destroy").get("jid") == f"x@{SERVICE}"
    assert out.gone and not room.occupants


def test_locked_new_room_refuses_others_until_configured() -> None:
    room = make_room(RoomSettings(persistent=False, locked=True))
    room.affiliations["own@example.org"] = "owner"
    out = room.join_as_creator(
        el(f'<presence><x xmlns="{MUC}"/></presence>', "own@example.org/o", f"{ROOM}/Own"),
        JID.parse("own@example.org/o"),
        "Own",
        T0,
    )
    assert {"201", "110"} <= codes(parsed(out)[0])
    (reply,) = parsed(join(room, "bob@example.org/b", "Bob"))
    assert error_of(reply) == "item-not-found"
    instant = f'<query xmlns="{MUC}#owner"><x xmlns="jabber:x:data" type="submit"/></query>'
    iq(room, "own@example.org/o", instant, "set")
    assert not room.settings.locked
    assert "110" in codes(parsed(join(room, "bob@example.org/b", "Bob"), "bob@example.org/b")[1])
    # A temporary room disappears with its last occupant.
    for full, nick in (("bob@example.org/b", "Bob"), ("own@example.org/o", "Own")):
        out = room.handle_presence(
            el('<presence type="unavailable"/>', full, f"{ROOM}/{nick}"), JID.parse(full), nick, T0
        )
    assert out.gone


def test_mam_request_is_validated_before_the_service_runs_it() -> None:
    room = make_room()
    q = (
        '<query xmlns="urn:xmpp:mam:2" queryid="f"><set xmlns="http://jabber.org/protocol/rsm">'
        "<max>5</max><before/></set></query>"
    )
    out = iq(room, "anyone@example.org/x", q, "set")
    assert out.mam is not None and out.mam.query.max == 5 and out.mam.query.before == ""
    bad = (
        '<query xmlns="urn:xmpp:mam:2"><x xmlns="jabber:x:data" type="submit">'
        '<field var="start"><value>soon</value></field></x></query>'
    )
    (reply,) = parsed(iq(room, "anyone@example.org/x", bad, "set"))
    assert error_of(reply) == "bad-request"
    room.affiliations["bad@example.org"] = "outcast"
    (reply,) = parsed(iq(room, "bad@example.org/x", q, "set"))
    assert error_of(reply) == "forbidden"
