"""``xmppd export --xep0227 FILE`` on a site that real clients (slixmpp) filled: rosters,
vCards, private storage, an offline message, a configured room with its subject,
affiliations, a registered nick and its archive. The file read back gives the records the
database has, with the room messages under the stanza-ids the clients saw, in order."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from tests.slix import befriend, login, run
from tests.xmppd_process import XmppdProcess, make_server
from xmppd.migrate.model import Kind, Problem
from xmppd.migrate.xep0227 import Xep0227Source
from xmppd.migrate.xmppd_source import XmppdSource

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ROOM = "lobby@conference.localhost"
SID = "{urn:xmpp:sid:0}stanza-id"
CONFIG = (
    '<query xmlns="http://jabber.org/protocol/muc#owner"><x xmlns="jabber:x:data" type="submit">'
    '<field var="FORM_TYPE"><value>http://jabber.org/protocol/muc#roomconfig</value></field>'
    '<field var="muc#roomconfig_roomname"><value>The Lobby</value></field>'
    '<field var="muc#roomconfig_persistentroom"><value>1</value></field>'
    '<field var="muc#roomconfig_membersonly"><value>0</value></field></x></query>'
)
REGISTER = (
    '<query xmlns="jabber:iq:register"><x xmlns="jabber:x:data" type="submit">'
    '<field var="FORM_TYPE"><value>http://jabber.org/protocol/muc#register</value></field>'
    '<field var="muc#register_roomnick"><value>Bobby</value></field></x></query>'
)


def xmppd(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XMPPD_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "xmppd", "--config", str(config), *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


async def _iq(client: Any, payload: str, to: str | None = None) -> Any:
    iq = client.make_iq_set(ito=to)
    iq.append(ElementTree.fromstring(payload))  # noqa: S314 - the test's own literal
    return await iq.send(timeout=10)


async def fill(server: XmppdProcess) -> list[str]:
    """What users do; returns the room's stanza-ids as the clients received them."""
    alice = await login(server, "alice@localhost/desk", plugins=["xep_0045", "xep_0054"])
    bob = await login(server, "bob@localhost/pc", plugins=["xep_0045"])
    await befriend(alice, bob)
    card = alice.plugin["xep_0054"].make_vcard()
    card["FN"] = "Alice Liddell"
    await alice.plugin["xep_0054"].publish_vcard(card)
    await _iq(alice, "<query xmlns='jabber:iq:private'><note xmlns='x:notes'>keep</note></query>")
    bob.send_message(mto="carol@localhost", mbody="for when you are back", mtype="chat")
    muc_a, muc_b = alice.plugin["xep_0045"], bob.plugin["xep_0045"]
    await muc_a.join_muc_wait(ROOM, "Alice", maxstanzas=0, timeout=10)
    await _iq(alice, CONFIG, ROOM)
    subjects: asyncio.Queue[Any] = asyncio.Queue()
    alice.add_event_handler("groupchat_subject", subjects.put_nowait)
    muc_a.set_subject(ROOM, "Welcome all")
    while (await asyncio.wait_for(subjects.get(), 10))["subject"] != "Welcome all":
        pass
    await _iq(bob, REGISTER, ROOM)
    await muc_b.join_muc_wait(ROOM, "Bobby", maxstanzas=0, timeout=10)
    await muc_a.set_affiliation(ROOM, "admin", jid="bob@localhost")
    ids = []
    for i in range(6):
        sender = alice if i % 2 else bob
        sender.send_message(mto=ROOM, mbody=f"line {i}", mtype="groupchat")
        while True:  # the echo to the sender carries the room's stanza-id
            msg = await sender.next_message(10)
            if msg["type"] == "groupchat" and msg["body"] == f"line {i}":
                ids.append(msg.xml.find(SID).get("id"))
                break
    for client in (alice, bob):
        await client.close()
    await asyncio.sleep(0)
    return ids


def test_export_of_a_site_filled_by_clients(tmp_path: Path) -> None:
    server = make_server(tmp_path, muc={"rooms": []})
    for user in ("alice", "bob", "carol"):
        server.add_user(user, "secret")
    server.start()
    try:
        ids = run(lambda: fill(server), timeout=60)
    finally:
        server.stop()  # the room service writes its last batch on the way out
    target = tmp_path / "out" / "site.xml"
    target.parent.mkdir()
    target.write_text("an older export")
    target.chmod(0o644)

    done = xmppd(server.config_path, "export", "--xep0227", str(target))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["site.xml"]  # no temp file left
    assert "3 accounts" in done.stdout and "6 room archive" in done.stdout

    back = Xep0227Source(target)
    db = server.database()
    try:
        source = XmppdSource(db, "localhost", "conference.localhost")
        for kind in Kind:
            got = list(back.read(kind))
            assert not [p for p in got if isinstance(p, Problem)], kind
            assert sorted(got, key=repr) == sorted(source.read(kind), key=repr), kind
    finally:
        db.dispose()
    records = {kind: list(back.read(kind)) for kind in Kind}
    assert [(r.contact, r.subscription) for r in records[Kind.ROSTERS]] == [
        ("bob@localhost", "both"),
        ("alice@localhost", "both"),
    ]
    assert "Alice Liddell" in records[Kind.VCARDS][0].xml
    assert [(p.namespace, p.owner) for p in records[Kind.PRIVATE_XML]] == [
        ("x:notes", "alice@localhost")
    ]
    (offline,) = records[Kind.OFFLINE]
    assert offline.owner == "carol@localhost" and "for when you are back" in offline.stanza
    (room,) = records[Kind.ROOMS]
    assert (room.jid, room.title, room.subject, room.subject_nick) == (
        ROOM, "The Lobby", "Welcome all", "Alice",
    )  # fmt: skip
    assert sorted((a.jid, a.affiliation) for a in records[Kind.AFFILIATIONS]) == [
        ("alice@localhost", "owner"),
        ("bob@localhost", "admin"),
    ]
    assert [(n.room, n.jid, n.nick) for n in records[Kind.NICKS]] == [
        (ROOM, "bob@localhost", "Bobby")
    ]
    archive = records[Kind.ROOM_ARCHIVE]
    assert [m.stanza_id for m in archive] == ids
    assert [m.nick for m in archive] == ["Bobby", "Alice"] * 3
    assert [m.sender for m in archive] == ["bob@localhost", "alice@localhost"] * 3
    text = target.read_text()
    assert "secret" not in text and "<scram-credentials" in text


def test_export_bad_input_changes_nothing(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    server.add_user("alice", "secret")
    missing = xmppd(server.config_path, "export", "--xep0227", str(tmp_path / "nodir" / "x.xml"))
    assert missing.returncode == 2 and "no such directory" in missing.stderr
    assert len(missing.stderr.splitlines()) == 1
    assert not (tmp_path / "nodir").exists()
    directory = xmppd(server.config_path, "export", "--xep0227", str(tmp_path))
    assert directory.returncode == 2 and "is a directory" in directory.stderr
    usage = xmppd(server.config_path, "export")
    assert usage.returncode == 2 and "--xep0227" in usage.stderr
