"""Affiliation reasons (XEP-0045 §9.1-§9.3): kept with the affiliation, listed with it,
bounded, persisted across a restart of the service (pure room, then the service on SQLite).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from lxml import etree

from tests.unit.routing_helpers import C, Harness, running_harness
from tests.unit.test_muc_room import MUC, _admin_set, error_of, iq, join, make_room, parsed
from tests.unit.test_muc_service import ROOM as SERVICE_ROOM
from tests.unit.test_muc_service import join as service_join
from tests.unit.test_muc_service import start
from xmppd.muc.roles import REASON_MAX
from xmppd.muc.room import Room
from xmppd.storage.models import muc_affiliations
from xmppd.xml.errors import StanzaError

A = "{%s#admin}" % MUC
BOSS = "boss@example.org/x"  # a site admin: owner of every room


def listed(room: Room, affiliation: str) -> dict[str, str | None]:
    """The §9.2/§9.5 list the owner gets: JID -> its <reason/> (None: no reason)."""
    q = f'<query xmlns="{MUC}#admin"><item affiliation="{affiliation}"/></query>'
    (reply,) = parsed(iq(room, BOSS, q))
    assert reply.get("type") == "result"
    return {i.get("jid"): i.findtext(A + "reason") for i in reply.iter(A + "item")}


def item(jid: str, affiliation: str, reason: str | None = None) -> str:
    body = "" if reason is None else f"<reason>{reason}</reason>"
    return f'<item jid="{jid}" affiliation="{affiliation}">{body}</item>'


def test_a_ban_and_a_membership_list_their_reasons() -> None:
    room = make_room()
    join(room, BOSS, "Boss")
    out = _admin_set(
        room, BOSS, item("bob@example.org", "outcast", "Treason") + item("eve.example", "outcast")
    )
    assert [s.get("type") for s in parsed(out, BOSS) if s.tag == C + "iq"] == ["result"]
    _admin_set(room, BOSS, item("carol@example.org", "member", " Plays the sax \n"))
    assert listed(room, "outcast") == {"bob@example.org": "Treason", "eve.example": None}
    assert listed(room, "member") == {"carol@example.org": "Plays the sax"}  # trimmed
    assert room.affiliation_reasons == {
        "bob@example.org": "Treason",
        "carol@example.org": "Plays the sax",
    }


def test_a_later_change_replaces_the_reason() -> None:
    room = make_room()
    join(room, BOSS, "Boss")
    _admin_set(room, BOSS, item("bob@example.org", "outcast", "Treason"))
    _admin_set(room, BOSS, item("bob@example.org", "outcast", "Worse"))
    assert listed(room, "outcast") == {"bob@example.org": "Worse"}
    _admin_set(room, BOSS, item("bob@example.org", "member"))  # no reason given: none kept
    assert listed(room, "member") == {"bob@example.org": None}
    _admin_set(room, BOSS, item("bob@example.org", "outcast", "   "))  # blank: none
    assert listed(room, "outcast") == {"bob@example.org": None}
    _admin_set(room, BOSS, item("bob@example.org", "outcast", "Again"))
    _admin_set(room, BOSS, item("bob@example.org", "none"))  # §9.2 unban
    assert listed(room, "outcast") == {} and room.affiliation_reasons == {}
    # an owner's configuration form changes the admin list without reasons
    _admin_set(room, BOSS, item("dave@example.org", "member", "Helps"))
    form = (f'<query xmlns="{MUC}#owner"><x xmlns="jabber:x:data" type="submit">'
            '<field var="muc#roomconfig_roomadmins"><value>dave@example.org</value></field>'
            "</x></query>")  # fmt: skip
    iq(room, BOSS, form, "set")
    assert listed(room, "admin") == {"dave@example.org": None}


def test_a_reason_too_long_is_refused_and_nothing_changes() -> None:
    room = make_room()
    join(room, BOSS, "Boss")
    join(room, "bob@example.org/b", "Bob")
    longest = "é" * REASON_MAX
    _admin_set(room, BOSS, item("carol@example.org", "outcast", longest))
    assert listed(room, "outcast") == {"carol@example.org": longest}
    out = _admin_set(
        room,
        BOSS,
        item("bob@example.org", "outcast", "ok") + item("dave@example.org", "member", "x" * 501),
    )
    (reply,) = parsed(out)
    assert error_of(reply) == "bad-request" and "500" in etree.tostring(reply).decode()
    assert out.affiliations == [] and "bob" in room.occupants  # all or nothing
    assert listed(room, "outcast") == {"carol@example.org": longest}
    # a kick's reason is not stored, and not bounded by this limit
    kick = _admin_set(room, BOSS, '<item nick="Bob" role="none"><reason>' + "k" * 600
                      + "</reason></item>")  # fmt: skip
    assert [s.get("type") for s in parsed(kick, BOSS) if s.tag == C + "iq"] == ["result"]


def test_the_service_administrator_gives_reasons_too() -> None:
    room = make_room()
    out = room.set_affiliation_as_service("bob@example.org", "outcast", "spam")
    assert out.affiliations == [("bob@example.org", "outcast")]
    assert listed(room, "outcast") == {"bob@example.org": "spam"}
    with pytest.raises(StanzaError) as info:
        room.set_affiliation_as_service("eve@example.org", "outcast", "s" * (REASON_MAX + 1))
    assert info.value.condition == "bad-request"
    assert "eve@example.org" not in room.affiliations


# --------------------------------------------------------------- the service, stored
@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_harness(tmp_path, users=("alice", "bob", "boss")) as harness:
        yield harness


async def test_reasons_are_stored_and_listed_after_a_restart(h: Harness) -> None:
    svc = start(h)
    boss = await h.connect("boss@example.org/x")
    await service_join(boss, "Boss")
    admin = (
        f'<iq to="{SERVICE_ROOM}" type="set" id="b"><query xmlns="{MUC}#admin">{{}}</query></iq>'
    )
    await boss.send(admin.format(item("bob@example.org", "outcast", "Treason &amp; plots")))
    await boss.send(admin.format(item("alice@example.org", "member", "Sax player")))
    await boss.send(admin.format(item("alice@example.org", "member")))  # replaced: none
    await boss.send(admin.format(item("carol@example.org", "member", "Drums")))
    boss.take()
    assert await svc.flush()
    with h.db.connection() as conn:
        rows = conn.execute(
            sa.select(muc_affiliations.c.jid, muc_affiliations.c.reason).order_by("jid")
        ).all()
    assert [tuple(r) for r in rows] == [("alice@example.org", ""),
                                        ("bob@example.org", "Treason & plots"),
                                        ("carol@example.org", "Drums")]  # fmt: skip

    h.router.services.clear()  # a new process over the same database
    start(h)
    await boss.send(
        f'<iq to="{SERVICE_ROOM}" type="get" id="l1"><query xmlns="{MUC}#admin">'
        '<item affiliation="outcast"/><item affiliation="member"/></query></iq>'
    )
    (reply,) = boss.take()
    got = [(i.get("affiliation"), i.get("jid"), i.findtext(A + "reason"))
           for i in reply.iter(A + "item")]  # fmt: skip
    assert got == [("outcast", "bob@example.org", "Treason & plots"),
                   ("member", "alice@example.org", None),
                   ("member", "carol@example.org", "Drums")]  # fmt: skip
