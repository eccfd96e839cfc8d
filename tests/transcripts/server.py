"""The real xmppd server, in this process, on a fresh data directory and database.

``xmppd serve`` without the signals: ``build_server`` + ``run_server`` on loopback with
port 0, no HTTP listener and no admin socket. Accounts and reserved nicks are written to
the new database before it starts, as ``xmppd user add`` / ``xmppd nick`` would.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from tests.transcripts.script import Client, Nick
from xmppd.config import load_config
from xmppd.server import build_server, run_server
from xmppd.settings import merge
from xmppd.storage import Database
from xmppd.storage.muc import MucStore


def base_config(data_dir: Path) -> dict[str, Any]:
    return {
        "server": {"domain": "localhost", "data_dir": str(data_dir)},
        "c2s": {
            "bind": "127.0.0.1",
            "port": 0,
            "direct_tls_port": 0,
            "require_encryption": True,
            "allow_plain_on_loopback": True,
        },
        "http": {"enabled": False},
        "admin": {"enabled": False},
    }


def _prepare(url: str, clients: Iterable[Client], nicks: Iterable[Nick]) -> None:
    db = Database(url)
    try:
        db.upgrade()
        accounts = {client.localpart: client.password for client in clients}
        for localpart, password in accounts.items():
            db.create_user(localpart, password)
        for nick in nicks:
            MucStore(db).register_nick(nick.nick, nick.jid, nick.room)
    finally:
        db.dispose()


@asynccontextmanager
async def serving(
    data_dir: Path,
    overrides: dict[str, Any],
    clients: Iterable[Client],
    nicks: Iterable[Nick] = (),
) -> AsyncIterator[int]:
    """A running server with ``clients``' accounts; yields the plain c2s port."""
    config = load_config(environ={}, overrides=merge(base_config(data_dir), overrides))
    _prepare(config.database_url, clients, nicks)
    server = build_server(config)
    try:
        async with trio.open_nursery() as nursery:
            listening = await nursery.start(
                functools.partial(run_server, server, handle_signals=False)
            )
            yield listening["c2s"]
            nursery.cancel_scope.cancel()
    finally:
        server.database.dispose()
