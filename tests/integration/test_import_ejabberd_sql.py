"""``xmppd import ejabberd`` from ejabberd 23.01's own SQL schemas, on real MariaDB and
PostgreSQL: the "new" multi-host schema on MariaDB, the default single-host one on
PostgreSQL, created from Debian's ``/usr/share/ejabberd/sql/`` and filled the way
ejabberd 23.01 writes its rows (``ejabberd_auth_sql``: a plain password, or base64 SCRAM
columns; ``mod_roster_sql``'s letters; ``mod_mam_sql``: a room's rows under its bare JID
with the sender's real JID as ``peer``). Then a real xmppd serves the imported data to
slixmpp clients: the old passwords log in (a SHA-1-only SCRAM account included), a room
join with ``maxstanzas`` and a MAM query return the old messages, in order, with the old
archive ids as stanza-ids. Plus: importing twice, ``--dry-run``, ``--replace``, ``--strict``.
"""

from __future__ import annotations

import base64
import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.db_fixtures import Kind, temporary_database
from tests.slix import login, run
from tests.xmppd_process import XmppdProcess, make_server
from xmppd.auth.scram import derive_scram
from xmppd.muc.roomconfig import RoomSettings
from xmppd.storage import Database
from xmppd.storage.muc import MucStore, Write

pytestmark = pytest.mark.integration

SCHEMAS = Path("/usr/share/ejabberd/sql")
OLD, ROOM_HOST = "old.example", "conference.old.example"
MESSAGES = 40
FIRST_TS = 1_680_000_000_000_000  # microseconds: ejabberd's archive ids
ROOMS_READER = importlib.util.find_spec("xmppd.migrate.ejabberd_rooms") is not None


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
            f'{{affiliations,[{{{{<<"alice">>,<<"{OLD}">>,<<>>}},{{owner,<<>>}}}}]}}]')}],
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
    rows["archive"].append({
        "username": "alice", "timestamp": FIRST_TS + 5, "peer": f"bob@{OLD}/pc",
        "bare_peer": f"bob@{OLD}", "kind": "chat", "nick": "", "txt": "hi", "xml": (
            f'<message xmlns="jabber:client" from="bob@{OLD}/pc" to="alice@{OLD}/phone" '
            'type="chat"><body>hi alice</body></message>'),
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


def _prepare_room(server: XmppdProcess) -> None:
    """Without the room-options reader (another branch), the room is made as xmppd's
    service makes it, so its archive has a room to land in."""
    if ROOMS_READER:
        return
    db = server.database()
    try:
        db.upgrade()
        values = {"name": "lobby", "settings_json": RoomSettings(title="Lobby").to_json(),
                  "subject": "", "subject_nick": ""}  # fmt: skip
        MucStore(db).write_batch([Write("room", values)])
    finally:
        db.dispose()


def test_import_an_ejabberd_database(ejabberd_db: tuple[str, bool], tmp_path: Path) -> None:
    url, multi_host = ejabberd_db
    server = make_server(tmp_path)
    _prepare_room(server)
    host = [] if multi_host else ["--host", OLD]
    db = server.database()
    try:
        dry = _import(server, url, "--dry-run", *host)
        assert dry.returncode == 0, dry.stderr
        assert re.search(r"room archive\s+read\s+41", dry.stdout), dry.stdout
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
        assert _count(db, "users") == 2 and _count(db, "muc_messages") == MESSAGES
        assert _count(db, "roster_items") == 2 and _count(db, "pending_subscriptions") == 1
        assert _count(db, "offline_messages") == 1 and _count(db, "mam_messages") == 1
        assert _count(db, "vcards") == 1 and _count(db, "private_xml") == 1
        with db.connection() as conn:
            nicks = set(conn.execute(sa.text("SELECT room, nick, jid FROM muc_nicks")))
            groups = conn.execute(sa.text("SELECT groups_json FROM roster_items WHERE "
                                          "owner = 'alice@localhost'")).scalar_one()  # fmt: skip
            bookmark = conn.execute(sa.text("SELECT xml FROM private_xml")).scalar_one()
        assert nicks == {("", "Alice", "alice@localhost")} and groups == '["Friends"]'
        assert 'jid="lobby@conference.localhost"' in bookmark  # --map-domain inside XML

        again = _import(server, url, *host)  # idempotent
        assert again.returncode == 0 and _count(db, "muc_messages") == MESSAGES
        assert _count(db, "users") == 2 and _count(db, "offline_messages") == 1
        replaced = _import(server, url, "--replace", *host)
        assert replaced.returncode == 0 and re.search(
            r"room archive .* replaced\s+40", replaced.stdout
        )
        assert _count(db, "muc_messages") == MESSAGES
    finally:
        db.dispose()

    server.start()
    try:
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
    finally:
        await alice.close()
