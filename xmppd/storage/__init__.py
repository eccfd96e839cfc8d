"""Persistent state: accounts, rosters, subscriptions, offline messages, MUC (:mod:`.muc`).

Nothing outside this package touches the engine. Sync code uses :class:`Database`;
trio code wraps it in :class:`AsyncDatabase` so queries run in worker threads.
"""

from xmppd.storage.aio import AsyncDatabase
from xmppd.storage.database import Database
from xmppd.storage.types import (
    InvalidValue,
    RosterFull,
    RosterItem,
    StorageError,
    UnknownUser,
    UserExists,
)

__all__ = [
    "AsyncDatabase",
    "Database",
    "InvalidValue",
    "RosterFull",
    "RosterItem",
    "StorageError",
    "UnknownUser",
    "UserExists",
]
