"""Issue 13's MUC findings against a real server with slixmpp clients: look-alike and
squatted nicks (7), the archive of a password-protected room (8), per-user memory bounds
(9) and a ``since`` that overflowed (15)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from slixmpp.exceptions import PresenceError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tests.integration.test_muc_slixmpp import MUC_NS, ROOM, MucProcess, _client, muc_server
from tests.slix import IqError, run

pytestmark = pytest.mark.integration

MAM = "urn:xmpp:mam:2"
ARCHIVED_BODY = "/".join(
    f"{{{ns}}}{tag}"
    for ns, tag in (
        (MAM, "result"),
        ("urn:xmpp:forward:0", "forwarded"),
        ("jabber:client", "message"),
        ("jabber:client", "body"),
    )
)
USERS = ("admin", "alice", "bob", "carol", "mallory", "boss")
# Finding 7 (a), exactly: Cyrillic A, Ukrainian i, Greek Alpha, and a capital I.
LOOK_ALIKES = ["\u0410dmin", "Adm\u0456n", "\u0391dmin", "AdmIn"]
PASSWORD_FORM = (
    '<query xmlns="http://jabber.org/protocol/muc#owner"><x xmlns="jabber:x:data" '
    'type="submit"><field var="FORM_TYPE"><value>'
    "http://jabber.org/protocol/muc#roomconfig</value></field>"
    '<field var="muc#roomconfig_passwordprotectedroom"><value>1</value></field>'
    '<field var="muc#roomconfig_roomsecret"><value>open sesame</value></field></x></query>'
)


def _start(tmp: Path, **muc: Any) -> MucProcess:
    srv = muc_server(tmp, {"history_default": 20, **muc}, server={"admins": ["boss@localhost"]})
    for user in USERS:
        srv.add_user(user, "secret")
    srv.start()
    return srv


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MucProcess]:
    srv = _start(tmp_path)
    try:
        yield srv
    finally:
        srv.stop()


async def _try_join(client: Any, nick: str, room: str = ROOM, **kw: Any) -> str:
    """``joined`` or the error condition."""
    try:
        await client.plugin["xep_0045"].join_muc_wait(room, nick, maxstanzas=0, timeout=10, **kw)
    except PresenceError as exc:
        return str(exc.condition)
    return "joined"


async def _iq(client: Any, to: str, payload: str) -> Any:
    iq = client.make_iq_set(ito=to)
    iq.append(ElementTree.fromstring(payload))  # noqa: S314 - the test's own literal
    return await iq.send(timeout=10)


async def _register(client: Any, nick: str) -> str:
    form = (
        '<query xmlns="jabber:iq:register"><x xmlns="jabber:x:data" type="submit">'
        '<field var="FORM_TYPE"><value>http://jabber.org/protocol/muc#register</value></field>'
        f'<field var="muc#register_roomnick"><value>{nick}</value></field></x></query>'
    )
    try:
        await _iq(client, ROOM, form)
    except IqError as exc:
        return str(exc.condition)
    return "registered"


async def _mam(client: Any, fields: dict[str, str] | None = None) -> tuple[str, list[str]]:
    """Query the room's archive: ("result", bodies) or ("error", condition)."""
    form = "".join(
        f'<field var="{k}"><value>{v}</value></field>' for k, v in (fields or {}).items()
    )
    x = f'<x xmlns="jabber:x:data" type="submit">{form}</x>' if form else ""
    found: list[str] = []

    def collect(msg: Any) -> None:
        body = msg.xml.find(ARCHIVED_BODY)
        if body is not None:
            found.append(body.text or "")

    name = f"mam-{id(found)}"
    results = MatchXPath(f"{{jabber:client}}message/{{{MAM}}}result")
    client.register_handler(Callback(name, results, collect))
    try:
        await _iq(client, ROOM, f'<query xmlns="{MAM}" queryid="q1">{x}</query>')
    except IqError as exc:
        return "error", [str(exc.condition)]
    finally:
        client.remove_handler(name)
    return "result", found


async def _leave(client: Any, nick: str, room: str = ROOM) -> None:
    """Leave and wait for the room's answer (slixmpp's leave_muc forgets the room at once)."""
    left = asyncio.get_running_loop().create_future()

    def gone(pres: Any) -> None:
        if not left.done():
            left.set_result(pres)

    client.add_event_handler(f"muc::{room}::got_offline", gone)
    client.send_presence(ptype="unavailable", pto=f"{room}/{nick}")
    try:
        await asyncio.wait_for(left, 10)
    finally:
        client.del_event_handler(f"muc::{room}::got_offline", gone)


def _register_nick(server: MucProcess, nick: str, jid: str) -> None:
    from xmppd.storage.muc import MucStore

    db = server.database()
    try:
        MucStore(db).register_nick(nick, jid)
    finally:
        db.dispose()


async def _say_and_wait(client: Any, text: str) -> None:
    client.send_message(mto=ROOM, mbody=text, mtype="groupchat")
    while True:
        msg = await client.next_message(10)
        if msg["type"] == "groupchat" and msg["body"] == text:
            return


# ----------------------------------------------------------------- 7 look-alikes
def test_look_alikes_of_a_registered_nick_are_refused(server: MucProcess) -> None:
    _register_nick(server, "Admin", "admin@localhost")
    server.restart()  # the registry is loaded at start (and reloaded periodically)

    async def scenario() -> dict[str, Any]:
        mallory = await _client(server, "mallory")
        out: dict[str, Any] = {"join": [await _try_join(mallory, n) for n in LOOK_ALIKES]}
        out["register"] = [await _register(mallory, n) for n in LOOK_ALIKES]
        assert await _try_join(mallory, "Mallory") == "joined"
        errors: asyncio.Queue[Any] = asyncio.Queue()
        mallory.add_event_handler(f"muc::{ROOM}::presence-error", errors.put_nowait)
        mallory.send_presence(pto=f"{ROOM}/\u0391dmin")  # nick change (§7.6)
        out["change"] = (await asyncio.wait_for(errors.get(), 10))["error"]["condition"]
        admin = await _client(server, "admin")
        out["owner"] = await _try_join(admin, "Admin")
        for client in (mallory, admin):
            await client.close()
        return out

    out = run(scenario)
    assert out["join"] == ["conflict"] * 4
    assert out["register"] == ["conflict"] * 4
    assert out["change"] == "conflict"
    assert out["owner"] == "joined"


def test_a_mixed_script_nick_is_refused(server: MucProcess) -> None:
    async def scenario() -> list[str]:
        carol = await _client(server, "carol")
        got = [await _try_join(carol, "C\u0430rol"), await _try_join(carol, "Carol")]
        await carol.close()
        return got

    assert run(scenario) == ["not-acceptable", "joined"]


def test_reservation_beats_a_room_registration_made_before_it(
    server: MucProcess, caplog: pytest.LogCaptureFixture
) -> None:
    async def squat() -> str:
        mallory = await _client(server, "mallory")
        result = await _register(mallory, "Admin")
        await mallory.close()
        return result

    assert run(squat) == "registered"  # nobody had reserved it yet
    server.stop()  # (its registration is written by now)
    with caplog.at_level(logging.INFO, logger="xmppd.muc.storage"):
        _register_nick(server, "Admin", "admin@localhost")  # what `xmppd register-nick` does
    released = [r.getMessage() for r in caplog.records if "muc_nick_released" in r.getMessage()]
    assert len(released) == 1 and "jid=mallory@localhost" in released[0]
    server.start()

    async def after() -> list[str]:
        mallory, admin = await _client(server, "mallory"), await _client(server, "admin")
        got = [await _try_join(mallory, "Admin"), await _try_join(admin, "Admin")]
        for client in (mallory, admin):
            await client.close()
        return got

    assert run(after) == ["conflict", "joined"]


def test_existing_room_registration_of_a_reserved_name_is_released_at_start(
    server: MucProcess,
) -> None:
    """Rows as an older xmppd left them: both registrations, the room's one winning."""
    import sqlalchemy as sa

    from xmppd.storage import muc as store

    db = server.database()
    try:
        with db.transaction() as conn:
            store._set_nick(conn, "sax", "mallory@localhost", "Admin")
            store._set_nick(conn, "", "admin@localhost", "Admin")
    finally:
        db.dispose()
    server.restart()

    async def scenario() -> list[str]:
        mallory, admin = await _client(server, "mallory"), await _client(server, "admin")
        got = [await _try_join(mallory, "Admin"), await _try_join(admin, "Admin")]
        for client in (mallory, admin):
            await client.close()
        return got

    assert run(scenario) == ["conflict", "joined"]
    assert "event=muc_nick_released room=sax nick=Admin jid=mallory@localhost" in server.log()
    server.stop()  # the deletion is written (at the latest) on the way out
    db = server.database()
    try:
        with db.connection() as conn:
            rows = conn.execute(sa.select(store.nicks.c.room, store.nicks.c.jid)).all()
    finally:
        db.dispose()
    assert [tuple(r) for r in rows] == [("", "admin@localhost")]


# ----------------------------------------------------------------- 8 MAM
def test_archive_of_a_password_room_is_for_those_inside(server: MucProcess) -> None:
    async def scenario() -> dict[str, Any]:
        boss, alice, carol = [await _client(server, u) for u in ("boss", "alice", "carol")]
        await boss.plugin["xep_0045"].join_muc_wait(ROOM, "Boss", maxstanzas=0, timeout=10)
        await _say_and_wait(boss, "before the password")
        await _iq(boss, ROOM, PASSWORD_FORM)
        await _say_and_wait(boss, "the plans")
        out: dict[str, Any] = {"outsider": await _mam(carol)}
        out["alice_join"] = await _try_join(alice, "Alice", password="open sesame")
        out["alice"] = await _mam(alice)
        for client in (boss, alice, carol):
            await client.close()
        return out

    out = run(scenario)
    assert out["outsider"] == ("error", ["forbidden"])
    assert out["alice_join"] == "joined"
    assert out["alice"] == ("result", ["before the password", "the plans"])


# ----------------------------------------------------------------- 9 bounds
def test_room_creation_is_limited_per_user(tmp_path: Path) -> None:
    srv = _start(tmp_path, max_rooms_per_user=3, room_creations_per_minute=5)
    try:

        async def scenario() -> list[str]:
            alice = await _client(srv, "alice")
            got = [await _try_join(alice, "Alice", f"r{i}@conference.localhost") for i in range(4)]
            for i in range(3):  # leaving empties the temporary room: it is gone
                await _leave(alice, "Alice", f"r{i}@conference.localhost")
                got.append(await _try_join(alice, "Alice", f"s{i}@conference.localhost"))
            boss = await _client(srv, "boss")  # site admins have no limit
            got.append(await _try_join(boss, "Boss", "adm@conference.localhost"))
            for client in (alice, boss):
                await client.close()
            return got

        got = run(scenario, timeout=60)
    finally:
        srv.stop()
    # r0-r2, r3 over three live rooms, s0 and s1 replace two, s2 is the sixth in a minute
    assert got == ["joined"] * 3 + ["not-allowed", "joined", "joined", "resource-constraint"] + [
        "joined"
    ]


def test_room_history_is_bounded_in_bytes(tmp_path: Path) -> None:
    srv = _start(tmp_path, history_max_bytes=50_000, flood_burst=0)
    try:

        async def scenario() -> tuple[list[str], tuple[str, list[str]]]:
            bob, carol = await _client(srv, "bob"), await _client(srv, "carol")
            await bob.plugin["xep_0045"].join_muc_wait(ROOM, "Bob", maxstanzas=0, timeout=10)
            for n in range(10):
                await _say_and_wait(bob, f"{n} " + "x" * 10_000)
            *_, history = await carol.plugin["xep_0045"].join_muc_wait(
                ROOM, "Carol", maxstanzas=100, timeout=10
            )
            archive = await _mam(carol)
            for client in (bob, carol):
                await client.close()
            return [m["body"].split()[0] for m in history], archive

        history, (kind, archived) = run(scenario, timeout=60)
    finally:
        srv.stop()
    assert history == ["8", "9"]  # what 50 kB hold (each message counted twice)
    assert kind == "result" and [b.split()[0] for b in archived] == [str(n) for n in range(10)]


def test_flood_bucket_survives_leaving_and_rejoining(tmp_path: Path) -> None:
    srv = _start(tmp_path, flood_burst=3, flood_rate=0.01)
    try:

        async def scenario() -> list[str]:
            bob = await _client(srv, "bob")
            muc = bob.plugin["xep_0045"]
            errors: asyncio.Queue[Any] = asyncio.Queue()
            bob.add_event_handler("message_error", errors.put_nowait)
            await muc.join_muc_wait(ROOM, "Bob", maxstanzas=0, timeout=10)
            got = []
            for i in range(3):
                await _say_and_wait(bob, f"m{i}")
                got.append("ok")
            bob.send_message(mto=ROOM, mbody="too fast", mtype="groupchat")
            got.append((await asyncio.wait_for(errors.get(), 10))["error"]["condition"])
            await _leave(bob, "Bob")
            await muc.join_muc_wait(ROOM, "Bob", maxstanzas=0, timeout=10)
            bob.send_message(mto=ROOM, mbody="after rejoin", mtype="groupchat")
            got.append((await asyncio.wait_for(errors.get(), 10))["error"]["condition"])
            await bob.close()
            return got

        got = run(scenario)
    finally:
        srv.stop()
    assert got == ["ok", "ok", "ok", "resource-constraint", "resource-constraint"]


def test_invitations_are_flood_limited(tmp_path: Path) -> None:
    srv = _start(tmp_path, invites_per_minute=3)
    try:

        async def scenario() -> tuple[int, list[str]]:
            bob, carol = await _client(srv, "bob"), await _client(srv, "carol")
            errors: asyncio.Queue[Any] = asyncio.Queue()
            bob.add_event_handler("message_error", errors.put_nowait)
            invited: asyncio.Queue[Any] = asyncio.Queue()
            invitation = f"{{jabber:client}}message/{{{MUC_NS}#user}}x/{{{MUC_NS}#user}}invite"
            carol.register_handler(Callback("invites", MatchXPath(invitation), invited.put_nowait))
            await bob.plugin["xep_0045"].join_muc_wait(ROOM, "Bob", maxstanzas=0, timeout=10)
            for _ in range(5):
                bob.plugin["xep_0045"].invite(ROOM, "carol@localhost", reason="come")
            conditions = [
                (await asyncio.wait_for(errors.get(), 10))["error"]["condition"] for _ in range(2)
            ]
            for _ in range(3):
                await asyncio.wait_for(invited.get(), 10)
            await bob.plugin["xep_0199"].ping(jid="localhost", timeout=10)  # all processed
            await carol.plugin["xep_0199"].ping(jid="localhost", timeout=10)
            extra = invited.qsize()
            for client in (bob, carol):
                await client.close()
            return 3 + extra, conditions

        delivered, conditions = run(scenario)
    finally:
        srv.stop()
    assert delivered == 3
    assert conditions == ["resource-constraint", "resource-constraint"]


# ----------------------------------------------------------------- 15 dates
def test_absurd_since_and_mam_dates_answer_without_a_traceback(server: MucProcess) -> None:
    async def scenario() -> dict[str, Any]:
        alice, bob = await _client(server, "alice"), await _client(server, "bob")
        await bob.plugin["xep_0045"].join_muc_wait(ROOM, "Bob", maxstanzas=0, timeout=10)
        await _say_and_wait(bob, "hello")
        history: asyncio.Queue[Any] = asyncio.Queue()
        alice.add_event_handler("groupchat_message", history.put_nowait)
        pres = alice.make_presence(pto=f"{ROOM}/Alice")
        x = ElementTree.SubElement(pres.xml, f"{{{MUC_NS}}}x")
        ElementTree.SubElement(x, f"{{{MUC_NS}}}history", {"since": "0001-01-01T00:00:00+14:00"})
        pres.send()
        answer = await alice.next_presence(10, match=lambda p: p["from"] == f"{ROOM}/Alice")
        out: dict[str, Any] = {"join": answer["type"]}
        if answer["type"] == "error":
            out["join"] = answer["error"]["condition"]
        else:
            out["history"] = (await asyncio.wait_for(history.get(), 10))["body"]
        out["mam_start"] = await _mam(alice, {"start": "0001-01-01T00:00:00+14:00"})
        out["mam_end"] = await _mam(alice, {"end": "9999-12-31T23:59:59-14:00"})
        out["mam_bad"] = await _mam(alice, {"start": "2024-13-01T00:00:00Z"})
        for client in (alice, bob):
            await client.close()
        return out

    out = run(scenario)
    assert out["join"] == "available"
    assert out["history"] == "hello"
    assert out["mam_start"] == ("result", ["hello"])
    assert out["mam_end"] == ("result", ["hello"])
    assert out["mam_bad"] == ("error", ["bad-request"])
    log = server.log()
    assert "Traceback" not in log and "OverflowError" not in log


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mariadb"])
def test_clamped_dates_are_valid_bounds_in_every_database(kind: str) -> None:
    """The clamped extremes reach the archive query as bounds every database accepts."""
    from datetime import UTC, datetime

    from tests.db_fixtures import upgraded_database
    from xmppd.muc.history import STAMP_MAX, STAMP_MIN
    from xmppd.muc.mam import MamQuery
    from xmppd.storage.muc import MucStore, Write

    with upgraded_database(kind) as db:  # type: ignore[arg-type]
        stamp = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        message = {"room": "sax", "stanza_id": "s1", "stamp": stamp, "nick": "Bob"}
        message |= {"sender": "bob@localhost", "stanza": "<message/>"}
        store = MucStore(db)
        store.write_batch([Write("message", message)])
        query = MamQuery(queryid=None, start=STAMP_MIN, end=STAMP_MAX)
        page = store.query_archive("sax", query)
        assert [m.stanza_id for m in page.messages] == ["s1"]
        assert store.query_archive("sax", MamQuery(queryid=None, end=STAMP_MIN)).count == 0
