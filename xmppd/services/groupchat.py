"""The multi-user chat service (XEP-0045, :mod:`xmppd.muc`) in the server's lifecycle.

Built from ``[muc]`` (switched off by ``muc.enabled = false``) with the server's admins as
room admins; its run hosts the room archive writer and, on a phpBB forum, the periodic
sync of forum usernames into reserved nicks.
"""

from __future__ import annotations

from typing import Any, Self

import trio

from xmppd.config import Config
from xmppd.muc.forum_sync import sync_nicks_periodically
from xmppd.muc.service import MucService, install
from xmppd.services.lifecycle import Service, ServiceContext
from xmppd.storage import Database


class GroupchatService(Service):
    """Holds the :class:`~xmppd.muc.service.MucService` (``muc``) while the server runs."""

    name = "muc"

    def __init__(self, muc: MucService, config: Config, database: Database) -> None:
        self.muc = muc
        self._config = config
        self._database = database

    @classmethod
    def build(cls, ctx: ServiceContext) -> Self | None:
        config = ctx.config
        muc = install(ctx.router, ctx.adb, config.muc, config.server.admins)
        return None if muc is None else cls(muc, config, ctx.adb.db)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.muc.run)
            nursery.start_soon(sync_nicks_periodically, self._config, self._database)
            task_status.started()
