"""Message moderation (XEP-0425) and retraction (XEP-0424) in a room, over real sockets with
slixmpp's own xep_0425/xep_0424 plugins (both at the spec versions xmppd implements):
everyone gets the retraction, and the text is gone from the join history, MAM and
``/chat/history`` — also for a message older than the room's memory."""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tests.integration.test_muc_abuse_slixmpp import MAM, _iq
from tests.integration.test_muc_slixmpp import ROOM, MucProcess, muc_server
from tests.slix import IqError, login, run

pytestmark = pytest.mark.integration

RETRACT = "urn:xmpp:message-retract:1"
MODERATE = "urn:xmpp:message-moderate:1"
SID = "{urn:xmpp:sid:0}stanza-id"
PLUGINS = ["xep_0045", "xep_0359", "xep_0421", "xep_0424", "xep_0425"]


def _start(tmp: Path, **muc: Any) -> MucProcess:
    srv = muc_server(tmp, {"history_default": 20, **muc}, server={"admins": ["boss@localhost"]})
    for user in ("alice", "bob", "carol", "dave", "boss"):
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


def _history_json(server: MucProcess) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    try:
        conn.request("GET", "/chat/history?room=sax")
        return conn.getresponse().read().decode("utf-8")
    finally:
        conn.close()


async def _joined(server: MucProcess, user: str, nick: str) -> tuple[Any, asyncio.Queue[Any]]:
    """A client in the room, and a queue of the retractions it receives."""
    client = await login(server, f"{user}@localhost/r", plugins=PLUGINS)
    retractions: asyncio.Queue[Any] = asyncio.Queue()
    client.add_event_handler("message_retract", retractions.put_nowait)
    await client.plugin["xep_0045"].join_muc_wait(ROOM, nick, maxstanzas=0, timeout=10)
    return client, retractions


async def _say(client: Any, text: str) -> str:
    """Send a groupchat line, return the room's stanza-id from its reflection."""
    client.send_message(mto=ROOM, mbody=text, mtype="groupchat")
    while True:
        msg = await client.next_message(10)
        if msg["type"] == "groupchat" and msg["body"] == text:
            return msg.xml.find(SID).get("id")


async def _mam_xml(client: Any) -> list[str]:
    """Every forwarded message of the room's archive, serialised."""
    found: list[str] = []
    name = f"mam-{id(found)}"
    client.register_handler(
        Callback(
            name,
            MatchXPath(f"{{jabber:client}}message/{{{MAM}}}result"),
            lambda msg: found.append(str(msg)),
        )
    )
    try:
        await _iq(client, ROOM, f'<query xmlns="{MAM}" queryid="q"/>')
    finally:
        client.remove_handler(name)
    return found


def test_moderator_retracts_everywhere_at_once(server: MucProcess) -> None:
    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        boss, boss_r = await _joined(server, "boss", "Boss")
        others = [await _joined(server, u, u.title()) for u in ("alice", "bob", "carol")]
        alice = others[0][0]
        info = await boss.plugin["xep_0030"].get_info(jid=ROOM, timeout=10)
        out["features"] = set(info["disco_info"]["features"])
        await _say(alice, "keep this line")
        bad = await _say(alice, "buy cheap pills at spam.example")
        await asyncio.sleep(0.2)
        await boss.plugin["xep_0425"].moderate(JID(ROOM), bad, reason="spam", timeout=10)
        out["got"] = []
        for _client, queue in [(boss, boss_r), *others]:
            msg = await asyncio.wait_for(queue.get(), 10)
            out["got"].append(
                (
                    msg["retract"]["id"],
                    msg["retract"]["moderated"]["by"],
                    msg["from"],
                    msg.xml.find(
                        f"{{{RETRACT}}}retract/{{{MODERATE}}}moderated/"
                        "{urn:xmpp:occupant-id:0}occupant-id"
                    )
                    is not None,
                )
            )
        dave = await login(server, "dave@localhost/r", plugins=PLUGINS)
        history: list[str] = []  # every delayed message, with or without a body
        delayed = MatchXPath("{jabber:client}message/{urn:xmpp:delay}delay")
        dave.register_handler(Callback("history", delayed, lambda m: history.append(str(m))))
        await dave.plugin["xep_0045"].join_muc_wait(ROOM, "Dave", timeout=10)
        out["history"] = history
        out["mam"] = await _mam_xml(dave)
        out["bad"] = bad
        for client in (boss, dave, *(c for c, _ in others)):
            await client.close()
        return out

    out = run(scenario, timeout=60)
    assert {MODERATE, "urn:xmpp:message-moderate:0", RETRACT} <= out["features"]
    assert out["got"] == [(out["bad"], f"{ROOM}/Boss", ROOM, True)] * 4
    assert any("keep this line" in m for m in out["history"])
    assert not any("spam.example" in m for m in out["history"])
    assert any(out["bad"] in m and "retracted" in m for m in out["history"])
    assert not any("spam.example" in m for m in out["mam"])
    tombstones = [m for m in out["mam"] if f'id="{out["bad"]}"' in m and "retracted" in m]
    assert len(tombstones) == 1 and "moderated" in tombstones[0]
    feed = _history_json(server)
    assert "keep this line" in feed and "spam.example" not in feed and out["bad"] not in feed


def test_author_retracts_own_others_cannot(server: MucProcess) -> None:
    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        alice, _ = await _joined(server, "alice", "Alice")
        bob, bob_r = await _joined(server, "bob", "Bob")
        mine = await _say(alice, "a typo I regret")
        theirs = await _say(bob, "bob's words")
        alice.plugin["xep_0424"].send_retraction(JID(ROOM), mine, mtype="groupchat")
        msg = await asyncio.wait_for(bob_r.get(), 10)
        out["seen"] = (msg["retract"]["id"], str(msg["from"]))
        # Alice tries Bob's message: an error to her, nothing to Bob
        errors: asyncio.Queue[Any] = asyncio.Queue()
        alice.add_event_handler("message_error", errors.put_nowait)
        alice.plugin["xep_0424"].send_retraction(JID(ROOM), theirs, mtype="groupchat")
        out["other"] = (await asyncio.wait_for(errors.get(), 10))["error"]["condition"]
        try:
            await alice.plugin["xep_0425"].moderate(JID(ROOM), theirs, timeout=10)
        except IqError as exc:
            out["moderate"] = exc.condition
        boss, _ = await _joined(server, "boss", "Boss")
        try:
            await boss.plugin["xep_0425"].moderate(JID(ROOM), "no-such-id", timeout=10)
        except IqError as exc:
            out["unknown"] = exc.condition
        await asyncio.sleep(0.3)
        out["bob_extra"] = bob_r.qsize()
        for client in (alice, bob, boss):
            await client.close()
        return out

    out = run(scenario, timeout=60)
    assert out["seen"][1] == f"{ROOM}/Alice"
    assert out["other"] == "forbidden"
    assert out["moderate"] == "forbidden"
    assert out["unknown"] == "item-not-found"
    assert out["bob_extra"] == 0
    feed = _history_json(server)
    assert "a typo I regret" not in feed and "bob's words" in feed
    assert "retracted a previous message" not in feed  # the fallback body is no chat line


def test_retract_a_message_only_in_the_database(tmp_path: Path) -> None:
    srv = _start(tmp_path, history_max=3, history_default=3)
    try:

        async def scenario() -> dict[str, Any]:
            boss, _ = await _joined(srv, "boss", "Boss")
            alice, alice_r = await _joined(srv, "alice", "Alice")
            old = await _say(alice, "ancient secret")
            # as Converse.js does: its own origin-id, by which it later retracts
            mine = alice.make_message(mto=ROOM, mbody="my old typo", mtype="groupchat")
            mine["origin_id"]["id"] = "alice-origin-1"
            mine.send()
            for i in range(4):
                await _say(alice, f"filler {i}")
            await boss.plugin["xep_0425"].moderate(JID(ROOM), old, reason="old", timeout=10)
            seen = [(await asyncio.wait_for(alice_r.get(), 10))["retract"]["id"]]
            alice.plugin["xep_0424"].send_retraction(JID(ROOM), "alice-origin-1", "groupchat")
            seen.append((await asyncio.wait_for(alice_r.get(), 10))["retract"]["id"])
            await asyncio.sleep(0.5)  # the archive is written in batches
            mam = await _mam_xml(alice)
            for client in (boss, alice):
                await client.close()
            return {"old": old, "seen": seen, "mam": mam}

        out = run(scenario, timeout=60)
        assert out["seen"] == [out["old"], "alice-origin-1"]
        assert not any("ancient secret" in m or "my old typo" in m for m in out["mam"])
        assert any(out["old"] in m and "retracted" in m for m in out["mam"])
        assert sum("<retracted " in m for m in out["mam"]) == 2
        srv.restart()  # the ring is loaded from the archive: the tombstone again
        db = srv.database()
        try:
            from xmppd.storage.muc import MucStore

            row = MucStore(db).find_message("sax", out["old"])
        finally:
            db.dispose()
        assert row is not None and "ancient secret" not in row[4] and "retracted" in row[4]
        assert json.loads(_history_json(srv))["messages"][0]["text"] == "filler 3"
    finally:
        srv.stop()
