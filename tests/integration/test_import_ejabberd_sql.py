"""``xmppd import ejabberd`` from ejabberd 23.01's own SQL schemas, on real MariaDB and
PostgreSQL: the "new" multi-host schema on MariaDB, the default single-host one on
PostgreSQL, created from Debian's ``/usr/share/ejabberd/sql/`` and filled the way
ejabberd 23.01 writes its rows (``ejabberd_auth_sql``: a plain password, or base64 SCRAM
columns; ``mod_roster_sql``'s letters; ``mod_mam_sql``: a room's rows under its bare JID
with the sender's real JID as ``peer``). Then a real xmppd serves the imported data to
slixmpp clients: the old passwords log in (a SHA-1-only SCRAM account included), a room
join with ``maxstanzas`` and a MAM query return the old messages, in order, with the old
archive ids as stanza-ids; a ban keeps its reason (the owner's ban list shows it); the
archive of a room that no longer exists is kept as xmppd keeps a destroyed room's (a room
made again under its name finds it by MAM). Plus: importing twice, ``--dry-run``,
``--replace``, ``--strict``.
"""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.db_fixtures import Kind, temporary_database
from tests.slix import login, run
from tests.xmppd_process import XmppdProcess, make_server
from xmppd.auth.scram import derive_scram
from xmppd.storage import Database

pytestmark = pytest.mark.integration

SCHEMAS = Path("/usr/share/ejabberd/sql")
OLD, ROOM_HOST = "old.example", "conference.old.example"
MESSAGES = 40
GONE = 2  # archived messages of a room that no longer exists
FIRST_TS = 1_680_000_000_000_000  # microseconds: ejabberd's archive ids


def _schema(kind: Kind, multi_host: bool) -> list[str]:
    name = {"mariadb": "mysql", "postgresql": "pg"}[kind] + (".new" if multi_host else "")
    path = SCHEMAS / f"{name}.sql"
    if not path.is_file():
        pytest.fail(f"{path} is missing: apt-get install ejabberd (see .ci/run)")
    text = "\n".join(
        line for line in path.read_text().splitlines() if not line.lstrip().startswith("--")
    )
    return [s.strip() for s in text.split(";") if s.strip()]


def _rows(multi_host: bool) -> dict[str, list[dict[str, Any]]]:
    """What ejabberd 23.01 would have written for a small site."""
    sha1 = derive_scram("bob's old password", "sha1", iterations=4096)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    rows: dict[str, list[dict[str, Any]]] = {
        "users": [
            {"username": "alice", "password": "alice's old password", "serverkey": "",
             "salt": "", "iterationcount": 0},
            {"username": "bob", "password": b64(sha1.stored_key), "serverkey": b64(sha1.server_key),
             "salt": b64(sha1.salt), "iterationcount": 4096},
        ],
        "rosterusers": [
            {"username": "alice", "jid": f"bob@{OLD}", "nick": "Bob", "subscription": "B",
             "ask": "N", "askmessage": "", "server": "N", "subscribe": "", "type": "item"},
            {"username": "bob", "jid": f"alice@{OLD}", "nick": "", "subscription": "B",
             "ask": "N", "askmessage": "", "server": "N", "subscribe": "", "type": "item"},
            {"username": "alice", "jid": "dave@elsewhere.example", "nick": "",
             "subscription": "N", "ask": "I", "askmessage": "let me in", "server": "N",
             "subscribe": "", "type": "item"},
        ],
        "rostergroups": [{"username": "alice", "jid": f"bob@{OLD}", "grp": "Friends"}],
        "spool": [{"username": "alice", "xml": (
            f'<message xmlns="jabber:client" from="bob@{OLD}/pc" to="alice@{OLD}" type="chat">'
            f'<body>while you were out</body><delay xmlns="urn:xmpp:delay" from="{OLD}" '
            'stamp="2023-05-01T10:00:00.000000Z">Offline Storage</delay></message>')}],
        "vcard": [{"username": "alice",
                   "vcard": '<vCard xmlns="vcard-temp"><FN>Alice</FN></vCard>'}],
        "private_storage": [{"username": "alice", "namespace": "storage:bookmarks", "data": (
            f'<storage xmlns="storage:bookmarks"><conference jid="lobby@{ROOM_HOST}" '
            'autojoin="true"/></storage>')}],
        "muc_room": [{"name": "lobby", "host": ROOM_HOST, "opts": (
            '[{title,<<"Lobby">>},{persistent,true},{public,true},{members_only,false},'
            f'{{affiliations,[{{{{<<"alice">>,<<"{OLD}">>,<<>>}},{{owner,<<>>}}}},'
            f'{{{{<<"carol">>,<<"{OLD}">>,<<>>}},{{outcast,<<"spam, twice">>}}}}]}}]')}],
        "muc_registered": [
            {"jid": f"alice@{OLD}", "host": ROOM_HOST, "nick": "Alice"},
            {"jid": f"bob@{OLD}", "host": ROOM_HOST, "nick": "alice"},  # collides
        ],
        "archive": [],
    }  # fmt: skip
    for i in range(MESSAGES):
        who = ("alice", "Alice") if i % 2 == 0 else ("bob", "Bob")
        rows["archive"].append({
            "username": f"lobby@{ROOM_HOST}", "timestamp": FIRST_TS + i * 1_000_000,
            "peer": f"{who[0]}@{OLD}/phone", "bare_peer": f"{who[0]}@{OLD}", "kind": "groupchat",
            "nick": who[1], "txt": f"line {i}", "xml": (
                f'<message xmlns="jabber:client" from="{who[0]}@{OLD}/phone" '
                f'to="lobby@{ROOM_HOST}" type="groupchat" id="m{i}">'
                f"<body>line {i}</body></message>"),
        })  # fmt: skip
    for i in range(GONE):  # the room "old" was destroyed; ejabberd kept its archive
        rows["archive"].append({
            "username": f"old@{ROOM_HOST}", "timestamp": FIRST_TS + 100 + i,
            "peer": f"bob@{OLD}/phone", "bare_peer": f"bob@{OLD}", "kind": "groupchat",
            "nick": "Bob", "txt": f"old {i}", "xml": (
                f'<message xmlns="jabber:client" from="bob@{OLD}/phone" to="old@{ROOM_HOST}" '
                f'type="groupchat" id="o{i}"><body>old {i}</body></message>'),
        })  # fmt: skip
    rows["archive"].append({
        "username": "alice", "timestamp": FIRST_TS + 5, "peer": f"bob@{OLD}/pc",
        "bare_peer": f"bob@{OLD}", "kind": "chat", "nick": "", "txt": "hi", "xml": (
            f'<message xmlns="jabber:client" from="bob@{OLD}/pc" to="alice@{OLD}/phone" '
            'type="chat"><body>hi alice</body></message>'),
    })  # fmt: skip
    rows["archive"].append({  # a subject change: ejabberd archives it, xmppd's rooms do not
        "username": f"lobby@{ROOM_HOST}", "timestamp": FIRST_TS + 3, "peer": f"alice@{OLD}/x",
        "bare_peer": f"alice@{OLD}", "kind": "groupchat", "nick": "Alice", "txt": "", "xml": (
            f'<message xmlns="jabber:client" from="alice@{OLD}/x" to="lobby@{ROOM_HOST}" '
            'type="groupchat"><subject>Welcome</subject></message>'),
    })  # fmt: skip
    rows["archive"].append({
        "username": f"lobby@{ROOM_HOST}", "timestamp": FIRST_TS + 7, "peer": f"bob@{OLD}/x",
        "bare_peer": f"bob@{OLD}", "kind": "groupchat", "nick": "Bob", "txt": "", "xml": "<broken",
    })  # fmt: skip
    if multi_host:
        for items in rows.values():
            for row in items:
                row["server_host"] = OLD
    return rows


@pytest.fixture(params=[("mariadb", True), ("postgresql", False)], ids=["mariadb-new", "pg-old"])
def ejabberd_db(request: pytest.FixtureRequest) -> Iterator[tuple[str, bool]]:
    kind, multi_host = request.param
    with temporary_database(kind) as url:
        engine = sa.create_engine(url, poolclass=sa.NullPool)
        with engine.begin() as conn:
            for statement in _schema(kind, multi_host):
                conn.exec_driver_sql(statement)
            for table, items in _rows(multi_host).items():
                for row in items:
                    cols = ", ".join(row)
                    marks = ", ".join(f":{c}" for c in row)
                    conn.execute(sa.text(f"INSERT INTO {table} ({cols}) VALUES ({marks})"), row)
        engine.dispose()
        yield url, multi_host


def _import(server: XmppdProcess, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "xmppd", "import", "ejabberd", url, "--config",
            str(server.config_path), "--map-domain", f"{OLD}=localhost", *extra]  # fmt: skip
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def _count(db: Database, table: str) -> int:
    with db.connection() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_import_an_ejabberd_database(ejabberd_db: tuple[str, bool], tmp_path: Path) -> None:
    url, multi_host = ejabberd_db
    server = make_server(tmp_path)
    host = [] if multi_host else ["--host", OLD]
    db = server.database()
    try:
        dry = _import(server, url, "--dry-run", *host)
        assert dry.returncode == 0, dry.stderr
        assert re.search(r"room archive\s+read\s+44 .* left out\s+1\n", dry.stdout), dry.stdout
        assert "archives of 1 room(s) that do not exist, kept as a destroyed room's (2 " \
            "messages): old" in dry.stdout  # fmt: skip
        assert _count(db, "users") == 0 and _count(db, "muc_messages") == 0  # nothing written
        assert "alice's old password" not in dry.stdout + dry.stderr

        strict = _import(server, url, "--strict", *host)
        assert strict.returncode == 2, strict.stdout + strict.stderr
        assert "nothing was written" in strict.stderr and _count(db, "users") == 0

        done = _import(server, url, *host)
        assert done.returncode == 0, done.stderr
        out = done.stdout
        assert "alice's old password" not in out + done.stderr
        assert "not well-formed" in out and "collides with 'Alice'" in out  # listed, not fatal
        assert _count(db, "users") == 2 and _count(db, "muc_messages") == MESSAGES + GONE
        assert _count(db, "roster_items") == 2 and _count(db, "pending_subscriptions") == 1
        assert _count(db, "offline_messages") == 1 and _count(db, "mam_messages") == 1
        assert _count(db, "vcards") == 1 and _count(db, "private_xml") == 1
        with db.connection() as conn:
            nicks = set(conn.execute(sa.text("SELECT room, nick, jid FROM muc_nicks")))
            groups = conn.execute(sa.text("SELECT groups_json FROM roster_items WHERE "
                                          "owner = 'alice@localhost'")).scalar_one()  # fmt: skip
            bookmark = conn.execute(sa.text("SELECT xml FROM private_xml")).scalar_one()
        assert nicks == {("", "Alice", "alice@localhost")} and groups == '["Friends"]'
        with db.connection() as conn:
            room = conn.execute(sa.text("SELECT name, settings_json FROM muc_rooms")).one()
            affs = set(conn.execute(sa.text(
                "SELECT room, jid, affiliation, reason FROM muc_affiliations")))  # fmt: skip
        assert room.name == "lobby" and '"title": "Lobby"' in room.settings_json
        assert affs == {("lobby", "alice@localhost", "owner", ""),
                        ("lobby", "carol@localhost", "outcast", "spam, twice")}  # fmt: skip
        assert 'jid="lobby@conference.localhost"' in bookmark  # --map-domain inside XML

        again = _import(server, url, *host)  # idempotent
        assert again.returncode == 0 and _count(db, "muc_messages") == MESSAGES + GONE
        assert _count(db, "users") == 2 and _count(db, "offline_messages") == 1
        replaced = _import(server, url, "--replace", *host)
        assert replaced.returncode == 0 and re.search(
            r"room archive .* replaced\s+42", replaced.stdout
        )
        assert _count(db, "muc_messages") == MESSAGES + GONE
    finally:
        db.dispose()

    server.start()
    try:
        busy = _import(server, url, *host)  # never under a running server
        assert busy.returncode == 1 and "xmppd is running" in busy.stderr
        run(lambda: _clients(server), 60)
    finally:
        server.stop()


async def _clients(server: XmppdProcess) -> None:
    room = "lobby@conference.localhost"
    ids = [str(FIRST_TS + i * 1_000_000) for i in range(MESSAGES)]
    bob = await login(server, "bob@localhost", "bob's old password")  # SCRAM-SHA-1 keys only
    await bob.close()
    alice = await login(
        server, "alice@localhost", "alice's old password", plugins=["xep_0045", "xep_0313"]
    )
    try:
        roster = alice.client_roster
        assert roster["bob@localhost"]["subscription"] == "both"
        _p, _s, _o, history = await alice.plugin["xep_0045"].join_muc_wait(
            room, "Alice", maxstanzas=5, timeout=15
        )
        got = [(m.xml.find("{urn:xmpp:sid:0}stanza-id").get("id"), m["body"]) for m in history]
        assert got == [(ids[i], f"line {i}") for i in range(MESSAGES - 5, MESSAGES)]
        assert all(str(m["from"]).startswith(room + "/") for m in history)
        mam = [
            (r["mam_result"]["id"], r["mam_result"]["forwarded"]["stanza"]["body"])
            async for r in alice.plugin["xep_0313"].iterate(jid=room, rsm={"max": 15})
        ]
        assert mam == [(ids[i], f"line {i}") for i in range(MESSAGES)]
        bans = await alice.plugin["xep_0045"].get_affiliation_list(room, "outcast")
        assert bans == ["carol@localhost"]
        await _the_ban_list_shows_the_reason(alice, room)
        await _a_room_made_again_finds_its_old_archive(alice)
    finally:
        await alice.close()


async def _the_ban_list_shows_the_reason(alice: Any, room: str) -> None:
    """XEP-0045 §9.2: the ban list an owner gets names why (slixmpp keeps only JIDs)."""
    admin = "http://jabber.org/protocol/muc#admin"
    iq = alice.make_iq_get(ito=room)
    query = ET.SubElement(iq.xml, f"{{{admin}}}query")
    ET.SubElement(query, f"{{{admin}}}item", affiliation="outcast")
    reply = await iq.send(timeout=10)
    items = reply.xml.findall(f"{{{admin}}}query/{{{admin}}}item")
    assert [(i.get("jid"), i.findtext(f"{{{admin}}}reason")) for i in items] == [
        ("carol@localhost", "spam, twice")
    ]


async def _a_room_made_again_finds_its_old_archive(alice: Any) -> None:
    old = "old@conference.localhost"
    await alice.plugin["xep_0045"].join_muc_wait(old, "Alice", maxstanzas=0, timeout=15)
    form = alice.plugin["xep_0004"].make_form(ftype="submit")  # §10.1.2 instant room
    await alice.plugin["xep_0045"].set_room_config(old, form, timeout=10)
    mam = [
        (r["mam_result"]["id"], r["mam_result"]["forwarded"]["stanza"]["body"])
        async for r in alice.plugin["xep_0313"].iterate(jid=old, rsm={"max": 15})
    ]
    assert mam == [(str(FIRST_TS + 100 + i), f"old {i}") for i in range(GONE)]
