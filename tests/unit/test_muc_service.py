"""The MUC service through a real Router and SQLite, with in-memory sessions (no sockets)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import trio
from lxml import etree

from tests.unit.routing_helpers import C, Client, Harness, error_condition, running_harness
from xmppd.muc.config import MucConfig
from xmppd.muc.service import MucService, install
from xmppd.storage.muc import MucStore

SERVICE = "conference.example.org"
ROOM = f"sax@{SERVICE}"
MUC = "http://jabber.org/protocol/muc"
U = "{%s#user}" % MUC


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_harness(tmp_path, users=("alice", "bob", "carol", "boss")) as harness:
        yield harness


def start(h: Harness, **cfg: object) -> MucService:
    svc = install(
        h.router, h.adb, MucConfig(**cfg), site_admins=["boss@example.org"], clock=lambda: h.now
    )  # type: ignore[arg-type]
    assert svc is not None
    return svc


async def join(client: Client, nick: str, room: str = ROOM, extra: str = "") -> list:
    await client.send(f'<presence to="{room}/{nick}"><x xmlns="{MUC}">{extra}</x></presence>')
    return client.take()


async def say(client: Client, text: str, room: str = ROOM) -> None:
    await client.send(f'<message to="{room}" type="groupchat"><body>{text}</body></message>')


def bodies(stanzas: list[etree._Element]) -> list[str]:
    return [s.findtext(C + "body") for s in stanzas if s.find(C + "body") is not None]


async def test_service_is_a_disco_item_and_answers_disco(h: Harness) -> None:
    start(h)
    assert h.router.disco_items[SERVICE] == "Chatrooms"
    alice = await h.connect("alice@example.org/a")
    await alice.send(
        f'<iq to="{SERVICE}" type="get" id="i"><query xmlns="{"http://jabber.org/protocol/disco#info"}"/></iq>'
    )
    (reply,) = alice.take()
    ident = reply.find(".//{http://jabber.org/protocol/disco#info}identity")
    assert (ident.get("category"), ident.get("type")) == ("conference", "text")
    await alice.send(
        f'<iq to="{SERVICE}" type="get" id="j"><query xmlns="http://jabber.org/protocol/disco#items"/></iq>'
    )
    (reply,) = alice.take()
    items = [i.get("jid") for i in reply.iter("{http://jabber.org/protocol/disco#items}item")]
    assert items == [ROOM]


async def test_configured_room_exists_and_zero_width_nick_is_refused(h: Harness) -> None:
    start(h)
    alice = await h.connect("alice@example.org/a")
    got = await join(alice, "Alice")
    assert "110" in {s.get("code") for s in got[0].iter(U + "status")}
    mallory = await h.connect("bob@example.org/b")
    (reply,) = await join(mallory, "Al\u200bice")
    assert reply.get("type") == "error" and error_condition(reply) == "jid-malformed"


async def test_history_and_archive_survive_a_restart(h: Harness) -> None:
    svc = start(h)
    alice = await h.connect("alice@example.org/a")
    await join(alice, "Alice")
    for i in range(25):
        h.now += timedelta(seconds=1)
        await say(alice, f"m{i}")
    alice.take()
    assert await svc.flush()
    rows = await h.adb.run(MucStore(h.db).load_recent, "sax", 100)
    assert [r[0] for r in rows] == [e.stanza_id for e in svc.rooms["sax"].history]

    # A new process: a fresh service over the same database.
    h.router.services.clear()
    svc2 = start(h)
    assert len(svc2.rooms["sax"].history) == 25
    bob = await h.connect("bob@example.org/b")
    got = await join(bob, "Bob")
    history = [s for s in got if s.find(C + "body") is not None]
    assert bodies(history) == [f"m{i}" for i in range(5, 25)]
    assert all(s.find("{urn:xmpp:delay}delay").get("from") == ROOM for s in history)
    stanza_ids = [s.find("{urn:xmpp:sid:0}stanza-id").get("id") for s in history]
    assert stanza_ids == [r[0] for r in rows[5:]]

    # MAM: the last page of 10, then the page before it.
    q = (
        '<iq to="{room}" type="set" id="mam1"><query xmlns="urn:xmpp:mam:2" queryid="q">'
        '<set xmlns="http://jabber.org/protocol/rsm"><max>10</max>{nav}</set></query></iq>'
    )
    await bob.send(q.format(room=ROOM, nav="<before/>"))
    got = bob.take()
    results = [s for s in got if s.tag == C + "message"]
    fwd = [r.find(".//{urn:xmpp:forward:0}forwarded/" + C + "message") for r in results]
    assert bodies(fwd) == [f"m{i}" for i in range(15, 25)]
    fin = got[-1].find("{urn:xmpp:mam:2}fin")
    assert got[-1].get("type") == "result" and fin.get("complete") is None
    first = fin.findtext(".//{http://jabber.org/protocol/rsm}first")
    assert first == rows[15][0]
    await bob.send(q.format(room=ROOM, nav=f"<before>{first}</before>"))
    got = bob.take()
    fwd = [r.find(".//{urn:xmpp:forward:0}forwarded/" + C + "message") for r in got[:-1]]
    assert bodies(fwd) == [f"m{i}" for i in range(5, 15)]
    await bob.send(q.format(room=ROOM, nav="<after>nope</after>"))
    (err,) = bob.take()
    assert error_condition(err) == "item-not-found"


async def test_background_task_batches_and_flushes_on_cancel(h: Harness) -> None:
    svc = start(h, archive_flush_interval=30.0, archive_batch_size=1000, durable=False)
    alice = await h.connect("alice@example.org/a")
    await join(alice, "Alice")
    async with trio.open_nursery() as nursery:
        await nursery.start(svc.run)
        for i in range(5):
            await say(alice, f"m{i}")
        await trio.sleep(0.05)
        assert await h.adb.run(MucStore(h.db).load_recent, "sax", 10) == []  # not yet: batched
        nursery.cancel_scope.cancel()
    rows = await h.adb.run(MucStore(h.db).load_recent, "sax", 10)
    assert [r[2] for r in rows] == ["Alice"] * 5


async def test_user_created_room_is_locked_until_instant_config(h: Harness) -> None:
    start(h)
    alice = await h.connect("alice@example.org/a")
    got = await join(alice, "Alice", room=f"new@{SERVICE}")
    assert {"201", "110"} <= {s.get("code") for s in got[0].iter(U + "status")}
    bob = await h.connect("bob@example.org/b")
    (reply,) = await join(bob, "Bob", room=f"new@{SERVICE}")
    assert error_condition(reply) == "item-not-found"
    await alice.send(
        f'<iq to="new@{SERVICE}" type="set" id="c"><query xmlns="{MUC}#owner">'
        '<x xmlns="jabber:x:data" type="submit"/></query></iq>'
    )
    assert [s.get("type") for s in alice.take() if s.tag == C + "iq"] == ["result"]
    got = await join(bob, "Bob", room=f"new@{SERVICE}")
    assert "110" in {s.get("code") for s in got[1].iter(U + "status")}
    # A message to a room that does not exist.
    await bob.send(f'<message to="nothing@{SERVICE}" type="groupchat"><body>x</body></message>')
    (err,) = bob.take()
    assert error_condition(err) == "item-not-found"


async def test_room_creation_can_be_disabled(h: Harness) -> None:
    start(h, allow_room_creation=False)
    alice = await h.connect("alice@example.org/a")
    (reply,) = await join(alice, "Alice", room=f"new@{SERVICE}")
    assert error_condition(reply) == "not-allowed"


async def test_vanished_session_is_removed_with_333(h: Harness) -> None:
    svc = start(h)
    alice = await h.connect("alice@example.org/a")
    bob = await h.connect("bob@example.org/b")
    await join(alice, "Alice")
    await join(bob, "Bob")
    alice.take()
    h.router.unbind(alice.session)  # gone without unavailable presence
    await say(bob, "anyone?")
    assert await svc.flush()  # durable: the fan-out follows the commit
    got = bob.take()
    gone = [s for s in got if s.tag == C + "presence"]
    assert gone and gone[0].get("from") == f"{ROOM}/Alice"
    assert "333" in {s.get("code") for s in gone[0].iter(U + "status")}
    assert "alice" not in svc.rooms["sax"].occupants


async def test_a_session_that_is_ending_is_not_lost_before_its_presence(h: Harness) -> None:
    """Unbound but still ending (its unavailable presence is on its way): no 333."""
    svc = start(h)
    alice = await h.connect("alice@example.org/a")
    bob = await h.connect("bob@example.org/b")
    await join(alice, "Alice")
    await join(bob, "Bob")
    alice.take()
    h.router.unbind(alice.session)
    h.router.ending.add(alice.session.full_str)
    await say(bob, "anyone?")
    assert await svc.flush()
    assert not [s for s in bob.take() if s.tag == C + "presence"]
    assert "alice" in svc.rooms["sax"].occupants
    h.router.ending.discard(alice.session.full_str)
    await say(bob, "anyone now?")
    assert await svc.flush()
    gone = [s for s in bob.take() if s.tag == C + "presence"]
    assert gone and "333" in {s.get("code") for s in gone[0].iter(U + "status")}


async def test_cli_nick_registry_functions_and_reload(h: Harness) -> None:
    store = MucStore(h.db)
    store.register_nick("Alice", "alice@example.org/ignored")
    with pytest.raises(ValueError, match="nickname"):
        store.register_nick(" Alice", "bob@example.org")
    result = store.sync_nicks(
        [("Bob", "bob@example.org"), ("Carol", "carol@example.org"), ("CAROL", "x@example.org"),
         ("bad\u200b", "y@example.org")],
    )  # fmt: skip
    assert (result.added, result.skipped) == (2, 2)
    again = store.sync_nicks([("Bob", "bob@example.org"), ("Carol", "carol@example.org")])
    assert (again.added, again.changed) == (0, 0)
    pruned = store.sync_nicks([("Bob", "bob@example.org")], prune=True)
    assert pruned.removed == 2
    assert sorted(store.load_nicks()) == [("", "Bob", "bob@example.org")]
    assert store.unregister_nick("BOB") is True
    assert store.unregister_nick("Bob") is False

    store.register_nick("Alice", "alice@example.org")
    start(h)
    bob = await h.connect("bob@example.org/b")
    (reply,) = await join(bob, "alice")
    assert error_condition(reply) == "conflict"
