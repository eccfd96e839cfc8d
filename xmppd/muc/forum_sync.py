"""Keep the nick registry in step with the forum while serving (``muc.sync_nicks_interval``).

The same work as ``xmppd sync-nicks``, run at start-up and then periodically, so a member
who registers on the forum has their name reserved in the chat without anyone running a
cron job. Database work runs in worker threads; a failure is logged and retried at the next
interval, never fatal to the server.
"""

from __future__ import annotations

import logging

import trio

from xmppd.auth.phpbb_members import forum_members
from xmppd.config import Config
from xmppd.storage import Database
from xmppd.storage.muc import MucStore

log = logging.getLogger("xmppd.muc.forum_sync")


def sync_once(config: Config, db: Database, prune: bool | None = None) -> tuple[int, str]:
    """One blocking sync (``prune`` defaults to ``muc.sync_nicks_prune``); (members, summary)."""
    members = forum_members(config.auth.phpbb, config.server.domain)
    prune = config.muc.sync_nicks_prune if prune is None else prune
    result = MucStore(db).sync_nicks(members, prune=prune)
    summary = (
        f"added={result.added} changed={result.changed} removed={result.removed}"
        f" skipped={result.skipped} released={result.released}"
    )
    return len(members), summary


async def sync_nicks_periodically(config: Config, db: Database) -> None:
    """Run forever (when enabled): sync, sleep ``sync_nicks_interval``, repeat."""
    interval = config.muc.sync_nicks_interval
    if interval <= 0 or config.auth.backend != "phpbb" or not config.muc.enabled:
        return
    while True:
        try:
            count, summary = await trio.to_thread.run_sync(sync_once, config, db)
            log.info("event=nicks_synced members=%d %s", count, summary)
        except Exception:
            log.exception("event=nick_sync_failed retry_in=%s", interval)
        await trio.sleep(interval)
