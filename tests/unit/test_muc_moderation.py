"""XEP-0425 moderation and XEP-0424 retraction in a room, without sockets or a database."""

from __future__ import annotations

from datetime import timedelta

from lxml import etree

from tests.unit.test_muc_room import (
    ROOM,
    T0,
    C,
    error_of,
    iq,
    join,
    make_room,
    parsed,
    say,
)
from xmppd.http.history import HistoryFeed
from xmppd.jid import JID
from xmppd.muc import moderation as M
from xmppd.muc.history import HistoryEntry, HistoryRequest
from xmppd.muc.room import Out, Room, RoomSettings

BOSS = "boss@example.org/desk"  # a site admin: owner, so moderator
ANN = "ann@example.org/pc"
BOB = "bob@example.org/pc"
RETRACT = "{%s}" % M.RETRACT
MODERATE = "{%s}" % M.MODERATE
SID = "{urn:xmpp:sid:0}"


def room_with_three(**cfg: object) -> Room:
    room = make_room(RoomSettings(persistent=True), **cfg)
    for full, nick in ((BOSS, "boss"), (ANN, "ann"), (BOB, "bob")):
        join(room, full, nick)
    return room


def stanza_id(out_stanza: etree._Element) -> str:
    sid = out_stanza.find(SID + "stanza-id")
    assert sid is not None
    return sid.get("id") or ""


def posted(room: Room, full: str, text: str, extra: str = "") -> str:
    out = say(room, full, text, extra=extra)
    return stanza_id(parsed(out, full)[0])


def moderate(room: Room, target: str, reason: str = "spam", full: str = BOSS) -> Out:
    why = f"<reason>{reason}</reason>" if reason else ""
    payload = (
        f'<moderate xmlns="{M.MODERATE}" id="{target}">'
        f'<retract xmlns="{M.RETRACT}"/>{why}</moderate>'
    )
    return iq(room, full, payload, kind="set")


def retract(room: Room, full: str, target: str) -> Out:
    xml = (
        f'<message type="groupchat" id="r1"><retract xmlns="{M.RETRACT}" id="{target}"/>'
        "<body>/me retracted a previous message</body></message>"
    )
    wrapper = etree.fromstring(f'<w xmlns="jabber:client">{xml}</w>')
    stanza = wrapper[0]
    stanza.set("from", full)
    stanza.set("to", ROOM)
    return room.handle_message(stanza, JID.parse(full), None, T0 + timedelta(seconds=5))


def test_moderator_retracts_everyone_gets_both_forms_and_the_ring_keeps_a_tombstone() -> None:
    room = room_with_three()
    target = posted(room, ANN, "buy pills")
    out = moderate(room, target, "spam")
    result = [s for s in parsed(out, BOSS) if s.tag == C + "iq"]
    assert result and result[0].get("type") == "result" and result[0].get("id") == "q1"
    for full in (BOSS, ANN, BOB):
        [msg] = [s for s in parsed(out, full) if s.tag == C + "message"]
        assert msg.get("from") == ROOM
        r = msg.find(RETRACT + "retract")
        assert r is not None and r.get("id") == target
        mod = r.find(MODERATE + "moderated")
        assert mod is not None and mod.get("by") == f"{ROOM}/boss"
        occ = mod.find("{urn:xmpp:occupant-id:0}occupant-id")
        assert occ is not None and occ.get("id") == room.occupant_id("boss@example.org")
        assert r.findtext(RETRACT + "reason") == "spam"
        legacy = msg.find("{urn:xmpp:fasten:0}apply-to")
        assert legacy is not None and legacy.get("id") == target
        assert legacy.find("{%s}moderated/{%s}retract" % (M.MODERATE0, M.RETRACT0)) is not None
    entry = room.history.find(target)
    assert entry is not None and b"buy pills" not in entry.xml
    stone = etree.fromstring(entry.xml)
    retracted = stone.find(RETRACT + "retracted")
    assert retracted is not None and retracted.find(MODERATE + "moderated") is not None
    assert stone.find(C + "body") is None
    assert out.retractions == [(target, entry.xml, "boss@example.org")]
    # a joiner's history: the tombstone, never the text
    chosen = room.history.select(HistoryRequest(), 20, T0, ROOM)
    assert all(b"buy pills" not in e.join_copy(ROOM)[0] + e.join_copy(ROOM)[1] for e in chosen)


def test_legacy_request_gets_a_result_too() -> None:
    room = room_with_three()
    target = posted(room, ANN, "old client spam")
    payload = (
        f'<apply-to xmlns="urn:xmpp:fasten:0" id="{target}"><moderate xmlns="{M.MODERATE0}">'
        f'<retract xmlns="{M.RETRACT0}"/><reason>x</reason></moderate></apply-to>'
    )
    out = iq(room, BOSS, payload, kind="set")
    assert [s.get("type") for s in parsed(out, BOSS) if s.tag == C + "iq"] == ["result"]
    assert b"old client spam" not in room.history.find(target).xml


def test_participant_may_not_moderate_and_nothing_changes() -> None:
    room = room_with_three()
    target = posted(room, ANN, "fine words")
    out = moderate(room, target, full=BOB)
    [reply] = parsed(out, BOB)
    assert error_of(reply) == "forbidden"
    assert not out.retractions and len(out.sends) == 1
    assert b"fine words" in room.history.find(target).xml


def test_unknown_id_in_a_temporary_room_is_item_not_found_and_persistent_asks_archive() -> None:
    temp = make_room(RoomSettings(persistent=False))
    join(temp, BOSS, "boss")
    [reply] = parsed(moderate(temp, "nope"), BOSS)
    assert error_of(reply) == "item-not-found"
    room = room_with_three()
    out = moderate(room, "older-than-ring")
    assert out.lookup is not None and out.lookup.target == "older-than-ring" and not out.sends
    [reply] = parsed(room.retract_found(out.lookup, None, T0), BOSS)
    assert error_of(reply) == "item-not-found"


def test_archive_only_message_is_finished_from_the_lookup() -> None:
    room = room_with_three()
    xml = (
        f'<message xmlns="jabber:client" type="groupchat" from="{ROOM}/ann" id="x">'
        f'<body>ancient</body><stanza-id xmlns="urn:xmpp:sid:0" id="old1" by="{ROOM}"/></message>'
    )
    out = retract(room, ANN, "old1")
    assert out.lookup is not None and out.lookup.author == "ann@example.org"
    found = HistoryEntry("old1", T0, "ann", "ann@example.org", xml.encode())
    done = room.retract_found(out.lookup, found, T0)
    [(sid, stone, actor)] = done.retractions
    assert (
        sid == "old1"
        and actor == "ann@example.org"
        and b"ancient" not in stone
        and b"retracted" in stone
    )
    for full in (BOSS, ANN, BOB):
        [msg] = parsed(done, full)
        assert msg.find(RETRACT + "retract").get("id") == "old1"


def test_author_retracts_own_by_stanza_id_and_origin_id() -> None:
    room = room_with_three()
    target = posted(room, ANN, "typo")
    out = retract(room, ANN, target)
    relayed = parsed(out, BOB)
    assert len(relayed) == 1 and relayed[0].get("from") == f"{ROOM}/ann"
    assert relayed[0].find("{urn:xmpp:occupant-id:0}occupant-id") is not None
    stone = etree.fromstring(room.history.find(target).xml)
    assert stone.find(C + "body") is None
    assert stone.find(RETRACT + "retracted").get("id") == "r1"  # the retraction's id (§5)
    assert out.archive and out.archive[0].stanza_id == stanza_id(relayed[0])  # kept (§6)
    origin = '<origin-id xmlns="urn:xmpp:sid:0" id="client-42"/>'
    second = posted(room, ANN, "oops", extra=origin)
    retract(room, ANN, "client-42")
    assert b"oops" not in room.history.find(second).xml


def test_retracting_someone_elses_message_is_forbidden_and_not_relayed() -> None:
    room = room_with_three()
    target = posted(room, ANN, "mine")
    out = retract(room, BOB, target)
    [reply] = parsed(out)
    assert error_of(reply) == "forbidden" and not out.retractions and not out.archive
    assert b"mine" in room.history.find(target).xml
    # the nick is not the author: ann leaves, bob takes her nick, still forbidden
    again = retract(room, BOB, target)
    assert error_of(parsed(again)[0]) == "forbidden"


def test_twice_is_item_not_found_and_long_reason_is_bad_request() -> None:
    room = room_with_three(retraction_reason_max=10)
    target = posted(room, ANN, "spam")
    [reply] = [s for s in parsed(moderate(room, target, "x" * 11), BOSS)]
    assert error_of(reply) == "bad-request"
    moderate(room, target, "short")
    [reply] = [s for s in parsed(moderate(room, target), BOSS) if s.tag == C + "iq"]
    assert error_of(reply) == "item-not-found"


def test_disco_features_follow_the_switch() -> None:
    assert {M.MODERATE, M.MODERATE0, M.RETRACT}.issubset(room_with_three().features())
    off = room_with_three(moderation=False)
    assert M.MODERATE not in off.features()
    target = posted(off, ANN, "stays")
    [reply] = parsed(moderate(off, target), BOSS)
    assert error_of(reply) == "service-unavailable"


def test_chat_history_feed_drops_the_retracted_message_and_the_retraction() -> None:
    room = room_with_three()
    room.settings.public = True
    keep = posted(room, BOB, "hello")
    target = posted(room, ANN, "bad words")

    class Muc:
        rooms = {"sax": room}

    feed = HistoryFeed(Muc(), ["sax"], 50)
    assert b"bad words" in feed.answer("room=sax").body
    retract(room, ANN, target)
    body = feed.answer("room=sax").body
    assert b"bad words" not in body and b"retracted" not in body and keep.encode() in body


def test_ring_replacement_keeps_the_byte_bound_and_changes_the_version() -> None:
    from xmppd.muc.history import HistoryRing

    ring = HistoryRing(10, max_bytes=400)
    for n in range(3):
        ring.append(HistoryEntry(f"s{n}", T0, "ann", "a@x", b"<message>%d</message>" % n))
    version = ring.version
    ring.replace(ring.find("s2"), b"<message>" + b"x" * 150 + b"</message>")
    assert ring.version == version + 1
    assert ring.bytes <= 400 and ring.bytes == sum(2 * len(e.xml) for e in ring)
    assert [e.stanza_id for e in ring] == ["s1", "s2"]  # the oldest made room
    assert ring.find("s0") is None and ring.find("s2") is not None
