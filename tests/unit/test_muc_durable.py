"""Durable room messages (issue 15 part 2): committed before anyone sees them.

The pure bookkeeping (:mod:`xmppd.muc.durable`) and the service through a real Router and
SQLite with in-memory sessions; the kill -9 proof over sockets is
``tests/integration/test_muc_durable_kill.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.unit.routing_helpers import C, Harness, error_condition, running_harness
from tests.unit.test_muc_service import ROOM, SERVICE, bodies, join, say, start
from xmppd.muc.durable import CommitGate, Held, WriteQueue
from xmppd.muc.out import Out
from xmppd.storage.muc import MucStore, Write


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_harness(tmp_path, users=("alice", "bob")) as harness:
        yield harness


def _held(room: str, seq: int, deadline: float = 10.0, writes: Any = ()) -> Held:
    entries = [object()] if writes else []
    return Held(room, seq, Out(), deadline, list(writes), entries)  # type: ignore[arg-type]


def test_gate_releases_each_room_in_order_once_its_writes_are_committed() -> None:
    gate = CommitGate()
    a1, b1, a2 = _held("a", 1), _held("b", 2), _held("a", 0)  # a2: a presence, no writes
    for held in (a1, b1, a2):
        gate.hold(held)
    assert a2.seq == 1  # queued behind a1: never overtakes it
    assert gate.release(1) == []  # write 1 not committed yet
    assert gate.release(2) == [a1, a2]
    assert gate.busy("b") and not gate.busy("a")
    assert gate.release(3) == [b1] and len(gate) == 0


def test_queue_low_counts_the_batch_in_flight_and_failures_go_back_in_order() -> None:
    q = WriteQueue()
    added = q.add([Write("message", {}), Write("message", {}), Write("message", {})])
    assert [seq for seq, _ in added] == [1, 2, 3] and q.low() == 1
    batch = q.take(2)
    assert q.low() == 1 and len(q) == 1  # in flight still counts
    q.done(batch, ok=False)
    assert [seq for seq, _ in q.items] == [1, 2, 3]
    q.done(q.take(2), ok=True)
    assert q.low() == 3
    q.done(q.take(5), ok=True)
    assert q.low() == 4 and len(q) == 0


def test_only_queued_writes_past_the_deadline_are_taken_back() -> None:
    q, gate = WriteQueue(), CommitGate()
    first = q.add([Write("message", {})])
    second = q.add([Write("message", {})])
    gate.hold(_held("a", 1, deadline=1.0, writes=first))
    gate.hold(_held("b", 2, deadline=1.0, writes=second))
    inflight = q.take(1)  # the first is being committed: it cannot be taken back
    assert q.expire(gate, now=0.5) == []
    (gone,) = q.expire(gate, now=1.5)
    assert gone.room == "b" and len(q) == 0 and gate.busy("a") and not gate.busy("b")
    q.done(inflight, ok=True)
    assert [h.room for h in gate.release(q.low())] == ["a"]


async def test_nobody_sees_a_message_before_its_commit(h: Harness) -> None:
    svc = start(h)
    alice = await h.connect("alice@example.org/a")
    bob = await h.connect("bob@example.org/b")
    await join(alice, "Alice")
    await join(bob, "Bob")
    alice.take()
    await say(alice, "hello")
    assert bodies(alice.take()) == [] and bodies(bob.take()) == []
    assert await h.adb.run(MucStore(h.db).load_recent, "sax", 10) == []
    assert len(svc.rooms["sax"].history) == 1  # decided on acceptance
    assert await svc.flush()
    rows = await h.adb.run(MucStore(h.db).load_recent, "sax", 10)
    assert [r[0] for r in rows] == [e.stanza_id for e in svc.rooms["sax"].history]
    assert bodies(alice.take()) == ["hello"] and bodies(bob.take()) == ["hello"]


async def test_group_commit_keeps_each_rooms_order_across_batches(h: Harness) -> None:
    svc = start(h, archive_batch_size=2)
    alice = await h.connect("alice@example.org/a")
    bob = await h.connect("bob@example.org/b")
    await join(alice, "Alice")
    await join(alice, "Alice", room=f"other@{SERVICE}")
    alice.take()
    await alice.send(
        f'<iq to="other@{SERVICE}" type="set" id="c"><query xmlns="http://jabber.org/protocol/muc#owner">'
        '<x xmlns="jabber:x:data" type="submit"><field var="muc#roomconfig_persistentroom">'
        "<value>1</value></field></x></query></iq>"
    )
    assert await svc.flush()
    alice.take()
    batches: list[int] = []
    write = svc.store.write_batch
    svc.store.write_batch = lambda batch: (batches.append(len(batch)), write(batch))[1]  # type: ignore[method-assign]
    for i in range(5):
        await say(alice, f"m{i}")
        await say(alice, f"o{i}", room=f"other@{SERVICE}")
    await join(bob, "Bob")  # the join waits behind the room's messages
    assert bob.take() == []
    assert await svc.flush()
    assert batches == [2, 2, 2, 2, 2]  # bounded batches, one transaction each
    got = bob.take()
    history = [s for s in got if s.find(C + "body") is not None]
    assert bodies(history) == [f"m{i}" for i in range(5)]
    got_alice = alice.take()
    assert [b for b in bodies(got_alice) if b.startswith("m")] == [f"m{i}" for i in range(5)]
    assert [b for b in bodies(got_alice) if b.startswith("o")] == [f"o{i}" for i in range(5)]


async def test_database_down_the_sender_gets_an_error_and_nothing_is_kept(h: Harness) -> None:
    svc = start(h, max_commit_wait=0.2)
    alice = await h.connect("alice@example.org/a")
    bob = await h.connect("bob@example.org/b")
    await join(alice, "Alice")
    await join(bob, "Bob")
    alice.take()
    bob.take()

    def down(batch: object) -> None:
        raise OSError("database unreachable")

    write = svc.store.write_batch
    svc.store.write_batch = down  # type: ignore[method-assign]
    await alice.send(f'<message to="{ROOM}" type="groupchat" id="m1"><body>lost?</body></message>')
    assert not await svc.flush()
    svc._expire(trio.current_time() + 1.0)
    (err,) = alice.take()
    assert err.get("type") == "error" and err.get("id") == "m1" and err.get("from") == ROOM
    assert error_condition(err) == "resource-constraint"
    assert err.find(C + "error").get("type") == "wait"
    assert bob.take() == [] and len(svc.rooms["sax"].history) == 0
    svc.store.write_batch = write  # type: ignore[method-assign]
    assert await svc.flush() and svc.queue_depth == 0
    assert await h.adb.run(MucStore(h.db).load_recent, "sax", 10) == []
    got = await join(bob, "Bob")  # rejoin (a nick change is fine too): no history of it
    assert bodies(got) == []


async def test_expiry_runs_in_the_background_task(h: Harness) -> None:
    svc = start(h, max_commit_wait=0.1)
    alice = await h.connect("alice@example.org/a")
    await join(alice, "Alice")
    alice.take()

    def slow(batch: object) -> None:
        raise TimeoutError("database too slow")

    svc.store.write_batch = slow  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        await nursery.start(svc.run)
        await say(alice, "x")
        await trio.sleep(0.5)
        got = alice.take()
        nursery.cancel_scope.cancel()
    assert [error_condition(s) for s in got] == ["resource-constraint"]


async def test_non_persistent_rooms_and_durable_off_do_not_wait(h: Harness) -> None:
    svc = start(h)
    alice = await h.connect("alice@example.org/a")
    await join(alice, "Alice", room=f"temp@{SERVICE}")
    await alice.send(
        f'<iq to="temp@{SERVICE}" type="set" id="c"><query xmlns="http://jabber.org/protocol/muc#owner">'
        '<x xmlns="jabber:x:data" type="submit"/></query></iq>'
    )
    alice.take()
    await say(alice, "quick", room=f"temp@{SERVICE}")
    assert bodies(alice.take()) == ["quick"]
    assert svc.queue_depth == 0
    h.router.services.clear()
    svc2 = start(h, durable=False)
    await join(alice, "Alice2")
    alice.take()
    await say(alice, "batched")
    assert bodies(alice.take()) == ["batched"] and svc2.queue_depth == 1


def test_max_commit_wait_is_bounded() -> None:
    from xmppd.muc.config import MucConfig
    from xmppd.settings import ConfigError

    MucConfig(max_commit_wait=5.0).validate()
    for bad in (0.0, -1.0, 301.0):
        with pytest.raises(ConfigError, match="max_commit_wait"):
            MucConfig(max_commit_wait=bad).validate()
