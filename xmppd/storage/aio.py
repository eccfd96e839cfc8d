"""The trio side of storage: run a blocking :class:`Database` method in a worker thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, TypeVarTuple, Unpack

import trio

from xmppd.metrics import NOT_EXPORTED, Metrics
from xmppd.storage.database import Database

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class AsyncDatabase:
    """``await adb.run(adb.db.get_roster, owner)``; the limiter bounds concurrent queries."""

    def __init__(self, db: Database, max_threads: int = 8) -> None:
        self.db = db
        self.limiter = trio.CapacityLimiter(max_threads)
        #: Times every call (``xmppd_db_query_seconds``); the server puts its own in.
        self.metrics: Metrics = NOT_EXPORTED

    async def run(self, fn: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
        """Call ``fn(*args)`` off the event loop thread."""
        with self.metrics.db_query(fn):
            return await trio.to_thread.run_sync(fn, *args, limiter=self.limiter)
