"""Issue 13's MUC findings on the pure room logic: look-alike nicks and squatting (7), the
archive behind a room password (8), per-user bounds (9) and absurd dates (15)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.db_fixtures import upgraded_database
from tests.unit.routing_helpers import Client, Harness, error_condition
from tests.unit.test_muc_room import (
    MUC,
    ROOM,
    T0,
    C,
    E,
    U,
    bodies,
    codes,
    el,
    error_of,
    iq,
    join,
    make_room,
    parsed,
    say,
)
from xmppd.jid import JID
from xmppd.muc import mam as mam_mod
from xmppd.muc.config import MucConfig
from xmppd.muc.history import STAMP_MAX, STAMP_MIN, HistoryEntry, HistoryRing, parse_stamp
from xmppd.muc.limits import Buckets
from xmppd.muc.nicks import NickRegistry, is_mixed_script, look_alike, nick_skeletons
from xmppd.muc.room import RoomSettings
from xmppd.muc.service import install
from xmppd.storage import Database
from xmppd.storage import muc as store
from xmppd.storage.muc import MucStore

ADMIN = "admin@example.org"
SVC = "conference.example.org"
MALLORY = "mallory@example.org/m"

# The look-alikes of finding 7 (a): Cyrillic A, Ukrainian i, Greek Alpha, and a capital I.
LOOK_ALIKES = ["\u0410dmin", "Adm\u0456n", "\u0391dmin", "AdmIn"]


# ------------------------------------------------------------- 7 (a) look-alikes
@pytest.mark.parametrize("nick", [*LOOK_ALIKES, "ADM\u0406N", "\u0410DMIN"])
def test_look_alikes_share_a_skeleton_with_the_name(nick: str) -> None:
    assert look_alike(nick, "Admin")


@pytest.mark.parametrize(
    ("a", "b"), [("BiII", "Bill"), ("Mclntosh", "McIntosh"), ("Adrnin", "Admin")]
)
def test_capital_i_and_small_l_and_rn_m_look_alike(a: str, b: str) -> None:
    assert look_alike(a, b)


@pytest.mark.parametrize(("a", "b"), [("Admin", "Adman"), ("Jürgen", "Jurgen"), ("Bob", "Rob")])
def test_different_names_do_not_look_alike(a: str, b: str) -> None:
    assert not look_alike(a, b)


def test_skeletons_are_two_at_most_and_case_insensitive_one_is_shared() -> None:
    assert len(nick_skeletons("Admin")) == 2
    assert nick_skeletons("admin") & nick_skeletons("ADMIN")


@pytest.mark.parametrize(
    ("nick", "mixed"),
    [
        ("Jürgen", False),
        ("Bob_2", False),
        ("Jane Doe", False),
        ("O'Brien", False),
        ("Bob \U0001f389", False),
        ("\u5c71\u7530Taro", False),  # Han + Latin: Japanese
        ("\ud55c\uad6d\uc5b4abc", False),  # Hangul + Latin: Korean
        ("\u0412\u043e\u0432\u0430", False),  # all Cyrillic
        ("\u0410dmin", True),  # Cyrillic + Latin
        ("\u0391lpha", True),  # Greek + Latin
        ("\u13aadmin", True),  # Cherokee + Latin
        ("\u0661\u06623", True),  # Arabic-Indic digits with an ASCII one
    ],
)
def test_mixed_script_is_tr39_highly_restrictive(nick: str, mixed: bool) -> None:
    assert is_mixed_script(nick) is mixed


@pytest.mark.parametrize("nick", LOOK_ALIKES)
def test_look_alike_of_a_registered_nick_cannot_join(nick: str) -> None:
    room = make_room()
    room.ctx.nicks.add("", "Admin", ADMIN)
    (reply,) = parsed(join(room, MALLORY, nick))
    assert error_of(reply) == "conflict"
    assert not room.occupants


def test_owner_joins_under_the_registered_name_and_look_alikes_stay_out() -> None:
    room = make_room()
    room.ctx.nicks.add("", "Admin", ADMIN)
    assert "110" in codes(parsed(join(room, f"{ADMIN}/a", "Admin"))[0])
    (reply,) = parsed(join(room, MALLORY, "\u0410dmin"))
    assert error_of(reply) == "conflict"


def test_nick_change_to_a_look_alike_is_refused() -> None:
    room = make_room()
    room.ctx.nicks.add("", "Admin", ADMIN)
    join(room, MALLORY, "Mallory")
    stanza = el("<presence/>", MALLORY, f"{ROOM}/Adm\u0456n")
    (reply,) = parsed(room.handle_presence(stanza, JID.parse(MALLORY), "Adm\u0456n", T0))
    assert error_of(reply) == "conflict"
    assert [o.nick for o in room.occupants.values()] == ["Mallory"]


def _register(room: object, full: str, nick: str) -> list:
    submit = (
        '<query xmlns="jabber:iq:register"><x xmlns="jabber:x:data" type="submit">'
        '<field var="FORM_TYPE"><value>http://jabber.org/protocol/muc#register</value></field>'
        f'<field var="muc#register_roomnick"><value>{nick}</value></field></x></query>'
    )
    return parsed(iq(room, full, submit, "set"))  # type: ignore[arg-type]


@pytest.mark.parametrize("nick", ["Admin", *LOOK_ALIKES])
def test_registering_someone_elses_name_or_a_look_alike_is_refused(nick: str) -> None:
    room = make_room()
    room.ctx.nicks.add("", "Admin", ADMIN)
    (reply,) = _register(room, MALLORY, nick)
    assert error_of(reply) == "conflict"
    assert room.ctx.nicks.room_registration("sax", "mallory@example.org") is None


def test_look_alike_of_an_occupant_is_refused_and_the_same_user_may_rejoin() -> None:
    room = make_room()
    join(room, "bob@example.org/b", "Bill")
    (reply,) = parsed(join(room, MALLORY, "BiII"))
    assert error_of(reply) == "conflict"
    out = join(room, "bob@example.org/phone", "Bill")  # a second resource: no conflict
    assert not [s for s in parsed(out) if s.get("type") == "error"]


def test_mixed_script_nick_refused_unless_allowed_or_registered_to_its_user() -> None:
    nick = "Vlad\u0412\u043b\u0430\u0434"  # Latin + Cyrillic
    (reply,) = parsed(join(make_room(), MALLORY, nick))
    assert error_of(reply) == "not-acceptable"
    assert "writing systems" in reply.find(C + "error").findtext(E + "text")
    room = make_room(allow_mixed_script_nicks=True)
    assert "110" in codes(parsed(join(room, MALLORY, nick))[0])
    room = make_room()
    room.ctx.nicks.add("", nick, "vlad@example.org")  # a forum member's own name
    assert "110" in codes(parsed(join(room, "vlad@example.org/v", nick))[0])


# ------------------------------------------------------------- 7 (c) squatting
def test_service_wide_reservation_beats_an_earlier_room_registration() -> None:
    registry = NickRegistry()
    released = registry.replace_all(
        [
            ("sax", "Admin", "mallory@example.org"),  # squatted in the room first
            ("sax", "Adm\u0456n", "eve@example.org"),  # a look-alike squat
            ("sax", "Admin2", "mallory2@example.org"),  # unrelated: kept
            ("", "Admin", ADMIN),  # then reserved service-wide (a forum member)
            ("sax", "Admin", ADMIN),  # the owner's own room registration: kept
        ]
    )
    assert sorted(r.jid for r in released) == ["eve@example.org", "mallory@example.org"]
    assert registry.conflict("sax", "Admin", "mallory@example.org") is not None
    assert registry.conflict("sax", "Admin", ADMIN) is None
    assert registry.nick_of("sax", "mallory2@example.org") == "Admin2"
    assert registry.reserved_for_other(released[0]).jid == ADMIN  # type: ignore[union-attr]


def test_room_with_both_registrations_gives_the_name_to_the_site_wide_owner() -> None:
    room = make_room()
    room.ctx.nicks.replace_all([("sax", "Admin", "mallory@example.org"), ("", "Admin", ADMIN)])
    (reply,) = parsed(join(room, MALLORY, "Admin"))
    assert error_of(reply) == "conflict"
    assert "110" in codes(parsed(join(room, f"{ADMIN}/a", "Admin"))[0])


def test_older_look_alike_registrations_keep_working_for_their_owners() -> None:
    registry = NickRegistry()
    registry.replace_all([("", "Admin", ADMIN), ("", "\u0410dmin", "ivan@example.org")])
    assert registry.conflict("", "\u0410dmin", "ivan@example.org") is None
    assert registry.conflict("", "Admin", ADMIN) is None
    assert registry.conflict("", "Adm\u0456n", "eve@example.org") is not None


# ------------------------------------------------------------- 8 MAM access
MAM_QUERY = f'<query xmlns="{mam_mod.MAM}" queryid="q"/>'


def test_archive_of_a_password_room_needs_to_be_in_it() -> None:
    room = make_room(RoomSettings(password="open sesame"))
    join(room, "alice@example.org/a", "Alice", "<password>open sesame</password>")
    say(room, "alice@example.org/a", "secret plans")
    out = iq(room, "carol@example.org/c", MAM_QUERY, "set")
    (reply,) = parsed(out)
    assert error_of(reply) == "forbidden" and out.mam is None
    out = iq(room, "alice@example.org/other", MAM_QUERY, "set")  # her other resource too
    assert out.mam is not None
    out = iq(room, "boss@example.org/b", MAM_QUERY, "set")  # site admin: exempt from passwords
    assert out.mam is not None


def test_archive_follows_members_only_bans_and_the_configuration_lock() -> None:
    room = make_room(RoomSettings(members_only=True))
    room.affiliations["bob@example.org"] = "member"
    (reply,) = parsed(iq(room, "carol@example.org/c", MAM_QUERY, "set"))
    assert error_of(reply) == "registration-required"
    assert iq(room, "bob@example.org/b", MAM_QUERY, "set").mam is not None
    room = make_room()
    room.affiliations["mallory@example.org"] = "outcast"
    (reply,) = parsed(iq(room, MALLORY, MAM_QUERY, "set"))
    assert error_of(reply) == "forbidden"
    room = make_room(RoomSettings(locked=True))
    (reply,) = parsed(iq(room, "carol@example.org/c", MAM_QUERY, "get"))
    assert error_of(reply) == "item-not-found"


def test_open_to_anyone_is_what_the_public_http_history_serves() -> None:
    assert make_room().open_to_anyone()
    for settings in (
        RoomSettings(password="x"),
        RoomSettings(members_only=True),
        RoomSettings(locked=True),
    ):
        assert not make_room(settings).open_to_anyone()


# ------------------------------------------------------------- 9 per-user bounds
def _leave(room: object, full: str, nick: str) -> None:
    stanza = el('<presence type="unavailable"/>', full, f"{ROOM}/{nick}")
    room.handle_presence(stanza, JID.parse(full), nick, T0)  # type: ignore[attr-defined]


def test_flood_bucket_survives_leaving_and_rejoining() -> None:
    room = make_room(flood_burst=3, flood_rate=0.01)
    join(room, "bob@example.org/b", "Bob")
    for i in range(3):
        assert bodies(parsed(say(room, "bob@example.org/b", f"m{i}"))) == [f"m{i}"]
    (err,) = parsed(say(room, "bob@example.org/b", "too fast"))
    assert error_of(err) == "resource-constraint"
    _leave(room, "bob@example.org/b", "Bob")
    join(room, "bob@example.org/b", "Bob")
    (err,) = parsed(say(room, "bob@example.org/b", "after rejoin"))
    assert error_of(err) == "resource-constraint"
    join(room, "bob@example.org/other", "Bob")  # nor by a second resource
    (err,) = parsed(say(room, "bob@example.org/other", "other resource"))
    assert error_of(err) == "resource-constraint"
    later = T0 + timedelta(seconds=200)  # 0.01/s: two tokens back
    assert set(bodies(parsed(say(room, "bob@example.org/b", "later", now=later)))) == {"later"}


def _invite(room: object, full: str, *to: str) -> list:
    """Errors sent back, then the invitations handed to the router."""
    invites = "".join(f'<invite to="{t}"/>' for t in to)
    xml = f'<message><x xmlns="{MUC}#user">{invites}</x></message>'
    out = room.handle_message(el(xml, full, ROOM), JID.parse(full), None, T0)  # type: ignore[attr-defined]
    return parsed(out) + out.routed


def test_invitations_are_flood_limited_per_user() -> None:
    room = make_room(invites_per_minute=3)
    join(room, "bob@example.org/b", "Bob")
    assert len(_invite(room, "bob@example.org/b", "x@example.org", "y@example.org")) == 2
    (err,) = _invite(room, "bob@example.org/b", "z@example.org", "w@example.org")
    assert error_of(err) == "resource-constraint"  # two asked, one left: none sent
    _leave(room, "bob@example.org/b", "Bob")
    join(room, "bob@example.org/b", "Bob")
    (sent,) = _invite(room, "bob@example.org/b", "z@example.org")
    assert sent.get("to") == "z@example.org" and sent.get("from") == ROOM
    assert sent.find(f"{U}x/{U}invite").get("from") == "bob@example.org"
    (err,) = _invite(room, "bob@example.org/b", "w@example.org")
    assert error_of(err) == "resource-constraint"


def test_buckets_forget_full_keys_and_stay_bounded() -> None:
    buckets = Buckets(2, 1.0, max_keys=3)
    assert buckets.take("a", 0.0) and buckets.take("a", 0.0) and not buckets.take("a", 0.0)
    assert buckets.retry_after("a", 0.0) == pytest.approx(1.0)
    for key in "bcde":
        buckets.take(key, 0.0)
    assert len(buckets) <= 3
    buckets.take("f", 100.0)  # everything refilled long ago: swept
    assert len(buckets) <= 2
    assert Buckets(0, 0.0).take("x", 0.0)  # burst 0: no limit


def _entry(n: int, size: int) -> HistoryEntry:
    body = ("x" * size).encode()
    xml = b'<message xmlns="jabber:client" type="groupchat"><body>' + body + b"</body></message>"
    return HistoryEntry(f"id{n}", T0, "nick", "a@example.org", xml)


def test_history_ring_is_bounded_in_bytes_as_well_as_count() -> None:
    ring = HistoryRing(100, max_bytes=50_000)
    for n in range(10):
        assert ring.append(_entry(n, 10_000))
    assert [e.stanza_id for e in ring] == ["id8", "id9"]  # 2 x 2 x ~10 kB fit in 50 kB
    assert ring.bytes <= 50_000
    assert not ring.append(_entry(99, 30_000))  # alone above the budget: not kept
    assert [e.stanza_id for e in ring] == ["id8", "id9"]
    ring = HistoryRing(3)
    for n in range(5):
        ring.append(_entry(n, 10))
    assert [e.stanza_id for e in ring] == ["id2", "id3", "id4"]


def test_room_history_keeps_within_its_byte_budget() -> None:
    room = make_room(history_max_bytes=50_000, flood_burst=0)
    join(room, "bob@example.org/b", "Bob")
    for n in range(10):
        say(room, "bob@example.org/b", f"{n}" + "x" * 10_000)
    assert len(room.history) == 2 and room.history.bytes <= 50_000
    out = join(room, "carol@example.org/c", "Carol", '<history maxstanzas="100"/>')
    assert [b[0] for b in bodies(parsed(out, "carol@example.org/c"))] == ["8", "9"]


# ------------------------------------------------------------- 15 dates
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0001-01-01T00:00:00+14:00", STAMP_MIN),
        ("0001-01-01T00:00:00Z", STAMP_MIN),
        ("9999-12-31T23:59:59-14:00", STAMP_MAX),
        ("2024-05-06T07:08:09.1234567Z", datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)),
        ("2024-05-06T07:08:09+02:00", datetime(2024, 5, 6, 5, 8, 9, tzinfo=UTC)),
    ],
)
def test_extreme_dates_are_clamped(text: str, expected: datetime) -> None:
    assert parse_stamp(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2024-02-30T00:00:00Z",
        "2024-W01-1T00:00:00Z",
        "2024-05-06T24:00:00Z",
        "2024-05-06T07:08:09+24:00",
        "2024-05-06T07:08:09",
        "yesterday",
        "9" * 5000,
    ],
)
def test_malformed_dates_are_value_errors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_stamp(text)


def test_history_since_year_one_in_plus_14_joins_with_all_history() -> None:
    room = make_room()
    join(room, "bob@example.org/b", "Bob")
    say(room, "bob@example.org/b", "hello")
    out = join(room, "carol@example.org/c", "Carol", '<history since="0001-01-01T00:00:00+14:00"/>')
    assert bodies(parsed(out, "carol@example.org/c")) == ["hello"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("start", "0001-01-01T00:00:00+14:00"), ("end", "9999-12-31T23:59:59-14:00")],
)
def test_mam_form_dates_are_clamped(field: str, value: str) -> None:
    form = (
        f'<query xmlns="{mam_mod.MAM}"><x xmlns="jabber:x:data" type="submit">'
        f'<field var="FORM_TYPE"><value>{mam_mod.MAM}</value></field>'
        f'<field var="{field}"><value>{value}</value></field></x></query>'
    )
    req = mam_mod.parse_query(el(form, "a@example.org/a", ROOM), 50, ROOM)
    assert getattr(req, field) in (STAMP_MIN, STAMP_MAX)


def test_mam_form_with_a_bad_date_is_bad_request() -> None:
    form = (
        f'<query xmlns="{mam_mod.MAM}"><x xmlns="jabber:x:data" type="submit">'
        '<field var="start"><value>2024-13-01T00:00:00Z</value></field></x></query>'
    )
    room = make_room()
    (reply,) = parsed(iq(room, "bob@example.org/b", form, "set"))
    assert error_of(reply) == "bad-request"


# ------------------------------------------------------------- the CLI's registry writes
@pytest.fixture
def db() -> Iterator[Database]:
    with upgraded_database("sqlite") as database:
        yield database


def _rows(db: Database) -> list[tuple[str, str, str]]:
    return sorted(MucStore(db).load_nicks())


def test_register_nick_refuses_a_look_alike_and_a_room_copy_of_a_reservation(
    db: Database,
) -> None:
    MucStore(db).register_nick("Admin", ADMIN)
    for nick, room in (("\u0410dmin", ""), ("Adm\u0456n", "sax"), ("Admin", "sax")):
        with pytest.raises(ValueError, match="looks like 'Admin'"):
            MucStore(db).register_nick(nick, "mallory@example.org", room=room)
    MucStore(db).register_nick("Admin", "boss@example.org")  # the exact nick: admin's override
    assert _rows(db) == [("", "Admin", "boss@example.org")]


def test_reserving_a_name_releases_room_registrations_of_it(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    MucStore(db).register_nick("Adm\u0456n", "mallory@example.org", room="sax")
    MucStore(db).register_nick("Bob", "bob@example.org", room="sax")
    with caplog.at_level(logging.INFO, logger="xmppd.muc.storage"):
        result = MucStore(db).sync_nicks([("Admin", ADMIN)])
    assert result.released == 1
    assert _rows(db) == [("", "Admin", ADMIN), ("sax", "Bob", "bob@example.org")]
    assert "event=muc_nick_released room=sax" in caplog.text
    assert "jid=mallory@example.org reserved_for=admin@example.org" in caplog.text


def test_sync_keeps_one_of_two_look_alike_forum_names(db: Database) -> None:
    pairs = [("Admin", ADMIN), ("\u0410dmin", "ivan@example.org")]
    result = MucStore(db).sync_nicks(pairs)
    assert (result.added, result.skipped) == (1, 1)
    assert _rows(db) == [("", "Admin", ADMIN)]
    # Who holds a name keeps it, whatever order the forum lists its members in.
    again = MucStore(db).sync_nicks(list(reversed(pairs)))
    assert (again.added, again.changed, again.skipped) == (0, 0, 1)
    assert _rows(db) == [("", "Admin", ADMIN)]


# ------------------------------------------------------------- the service: room creation
async def test_room_creation_limits(tmp_path: Path) -> None:
    h = Harness(tmp_path, users=("alice", "bob", "boss"))
    try:
        svc = install(
            h.router,
            h.adb,
            MucConfig(max_rooms=3, max_rooms_per_user=5, room_creations_per_minute=2),
            site_admins=["boss@example.org"],
            clock=lambda: h.now,
        )
        assert svc is not None and len(svc.rooms) == 1  # the configured "sax"

        async def create(client: Client, name: str) -> str | None:
            await client.send(f'<presence to="{name}@{SVC}/N"><x xmlns="{MUC}"/></presence>')
            (reply, *_) = client.take()
            return error_condition(reply) if reply.get("type") == "error" else None

        alice, bob = await h.connect("alice@example.org/a"), await h.connect("bob@example.org/b")
        assert [await create(alice, n) for n in ("a1", "a2", "a3")] == [
            None,
            None,
            "resource-constraint",  # two a minute
        ]
        assert await create(bob, "b1") == "resource-constraint"  # three rooms: full
        assert svc.rooms["a1"].settings.creator == "alice@example.org"
        boss = await h.connect("boss@example.org/x")
        assert await create(boss, "admins") is None  # site admins: no limit
        h.now += timedelta(minutes=1)
        assert await create(alice, "a4") == "resource-constraint"  # still full
    finally:
        h.close()


def test_a_manual_reservation_outside_the_forum_still_releases_room_squats(
    db: Database,
) -> None:
    MucStore(db).register_nick("SAX", "sax@webridge.example.org")  # the bot's nick, by hand
    with db.transaction() as conn:  # a squat an older xmppd let through (Cyrillic A)
        store._set_nick(conn, "sax", "mallory@example.org", "S\u0410X")
    assert MucStore(db).sync_nicks([("Admin", ADMIN)]).released == 1
    assert _rows(db) == [("", "Admin", ADMIN), ("", "SAX", "sax@webridge.example.org")]
    MucStore(db).register_nick("SAX2", "mallory@example.org", room="sax")
    assert MucStore(db).sync_nicks([("Admin", ADMIN)], prune=True).released == 0
    assert ("sax", "SAX2", "mallory@example.org") in _rows(db)
