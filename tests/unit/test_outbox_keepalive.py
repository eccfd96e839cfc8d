"""The pieces every connection shares: the bounded queue, the outbox, the keepalive."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from xmppd.stream.outqueue import ByteQueue
from xmppd.transport.keepalive import Keepalive, ping_iq
from xmppd.transport.outbox import Outbox


def test_byte_queue_refuses_offers_past_its_limit_but_never_pushes() -> None:
    q = ByteQueue(10)
    assert q.offer(b"12345") and q.offer(b"67890")
    assert not q.offer(b"x") and q.queued == 10
    q.push(b"<close/>")  # the stream's own output
    assert q.queued == 18 and q.take() == [b"12345", b"67890", b"<close/>"]
    assert not q and q.queued == 0


async def test_outbox_drains_in_order_then_stops_after_finish() -> None:
    box = Outbox(100)
    written: list[bytes] = []

    async def write(chunks: list[bytes]) -> None:
        written.append(b"".join(chunks))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(box.drain, write)
        assert box.offer(b"a") and box.offer(b"b")
        await trio.testing.wait_all_tasks_blocked()
        box.finish(b"</stream:stream>")
        assert not box.offer(b"late")
    assert written == [b"ab", b"</stream:stream>"]
    assert box.progress.accepted == box.progress.written == 18


async def test_outbox_cut_drops_everything_and_wakes_whoever_waits() -> None:
    box = Outbox(4)
    assert box.offer(b"1234") and not box.offer(b"5")
    box.cut()
    assert not box and box.closing and box.progress.closed
    assert await box.wait(1.0)  # closed: nothing to wait for


async def test_keepalive_pings_after_the_interval_and_gives_up_after_the_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pings: list[float] = []
    keepalive = Keepalive(10, 5, lambda: pings.append(trio.current_time()))

    async def never() -> bytes:
        await trio.sleep_forever()
        raise AssertionError

    assert await keepalive.receive(never) is None
    assert pings == [pytest.approx(10.0)]
    assert trio.current_time() == pytest.approx(15.0)


async def test_keepalive_poke_pings_now_and_shortens_the_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pings: list[float] = []
    keepalive = Keepalive(60, 5, lambda: pings.append(trio.current_time()))
    result: list[bytes | None] = []

    async def never() -> bytes:
        await trio.sleep_forever()
        raise AssertionError

    async def wait() -> None:
        result.append(await keepalive.receive(never))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.sleep(1)
        keepalive.poke()
        keepalive.poke()  # one ping at a time
    assert result == [None] and pings == [pytest.approx(1.0)]
    assert trio.current_time() == pytest.approx(6.0)


async def test_keepalive_any_data_is_an_answer(autojump_clock: trio.testing.MockClock) -> None:
    keepalive = Keepalive(10, 5, lambda: None)
    send, receive = trio.open_memory_channel[bytes](1)

    async def peer() -> None:
        await trio.sleep(12)  # after the ping, before the timeout
        await send.send(b"<a/>")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(peer)
        assert await keepalive.receive(receive.receive) == b"<a/>"
    assert not keepalive.waiting and trio.current_time() == pytest.approx(12.0)


def test_ping_iq_is_an_xep0199_get() -> None:
    iq = ping_iq("localhost", "alice@localhost/r")
    assert iq.get("type") == "get" and iq.get("id", "").startswith("ping-")
    assert iq.find("{urn:xmpp:ping}ping") is not None
