"""WriteProgress: the byte positions producers wait on (offline delivery pages)."""

from __future__ import annotations

import trio
import trio.testing

from xmppd.transport.progress import WriteProgress


async def test_wait_written_returns_once_the_mark_is_written() -> None:
    progress = WriteProgress(limit=100)
    progress.accept(30)
    mark = progress.accepted
    progress.accept(20)  # someone else's bytes after ours
    results: list[bool] = []

    async def waiter() -> None:
        results.append(await progress.wait_written(mark))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        progress.wrote(29)
        await trio.testing.wait_all_tasks_blocked()
        assert results == []
        progress.wrote(1)
    assert results == [True]
    assert progress.pending == 20


async def test_wait_room_and_close_wake_the_waiters() -> None:
    progress = WriteProgress(limit=100)
    progress.accept(90)
    results: list[tuple[str, bool]] = []

    async def room() -> None:
        results.append(("room", await progress.wait_room(20)))

    async def written() -> None:
        results.append(("written", await progress.wait_written(90)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(room)
        await trio.testing.wait_all_tasks_blocked()
        progress.wrote(10)  # 80 pending: 20 more fit
        await trio.testing.wait_all_tasks_blocked()
        assert results == [("room", True)]
        nursery.start_soon(written)
        await trio.testing.wait_all_tasks_blocked()
        progress.close()  # the connection went: the rest is never written
    assert results == [("room", True), ("written", False)]
    assert not await progress.wait_room(1)
    assert await progress.wait_written(10)  # what was written stays written


def test_written_never_passes_accepted() -> None:
    progress = WriteProgress(limit=10)
    progress.accept(5)
    progress.wrote(8)
    assert progress.written == 5 and progress.pending == 0
