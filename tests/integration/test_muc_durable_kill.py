"""Durable room messages under ``kill -9`` (issue 15 part 2), on SQLite and PostgreSQL.

The real server runs as a subprocess. Two slixmpp clients send groupchat messages
continuously while the test kills the server with SIGKILL at a random moment; it is
restarted, and again, a few rounds. Then a third client joins (history) and reads the
room's archive (MAM): every message whose echo its sender received is there, exactly
once. Without ``muc.durable`` the echoes of the last archive batch before a kill are
lost (the batch was written after the broadcast), and this test fails.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.db_fixtures import Kind, temporary_database
from tests.slix import Client, login, run
from tests.xmppd_process import XmppdProcess, make_server

ROOM = "sax@conference.localhost"
ROUNDS = 3
SENDERS = ("s1", "s2")
MUC = {
    "history_max": 5000,
    "history_max_bytes": 50_000_000,
    "flood_burst": 100_000,
    "flood_rate": 100_000.0,
}


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[XmppdProcess]:
    kind: Kind = request.param
    with temporary_database(kind) as url:
        overrides: dict[str, Any] = {"muc": MUC}
        if kind != "sqlite":
            overrides["database"] = {"url": url}
        srv = make_server(tmp_path, **overrides)
        for user in (*SENDERS, "checker"):
            srv.add_user(user, "secret")
        try:
            yield srv
        finally:
            srv.stop()


async def _client(server: XmppdProcess, user: str) -> Client:
    c = await login(server, f"{user}@localhost/k", plugins=["xep_0045", "xep_0313", "xep_0059"])
    c.auto_reconnect = False
    return c


async def _round(server: XmppdProcess, tag: str, kill_after: float) -> tuple[list[str], set[str]]:
    """Send until the kill; (sent, echoed) bodies."""
    sent: list[str] = []
    echoed: set[str] = set()
    clients = [await _client(server, user) for user in SENDERS]
    for c, nick in zip(clients, SENDERS, strict=True):
        await c.plugin["xep_0045"].join_muc_wait(ROOM, nick, maxstanzas=0, timeout=10)

        def on_groupchat(msg: Any, nick: str = nick) -> None:
            if msg["from"].resource == nick and msg["body"]:
                echoed.add(msg["body"])

        c.add_event_handler("groupchat_message", on_groupchat)
    stop = asyncio.Event()

    async def send(c: Client, nick: str) -> None:
        i = 0
        while not stop.is_set():
            body = f"{tag}-{nick}-{i}"
            c.send_message(mto=ROOM, mbody=body, mtype="groupchat")
            sent.append(body)
            i += 1
            await asyncio.sleep(0.005)

    tasks = [asyncio.create_task(send(c, n)) for c, n in zip(clients, SENDERS, strict=True)]
    await asyncio.sleep(kill_after)
    assert server.proc is not None
    server.proc.kill()  # SIGKILL: no shutdown, no final flush
    await asyncio.to_thread(server.proc.wait)
    stop.set()
    await asyncio.gather(*tasks)
    await asyncio.sleep(0.3)  # whatever the kernel had delivered is read
    for c in clients:
        c.abort()
    return sent, echoed


async def _check(server: XmppdProcess, total: int) -> tuple[list[str], list[str]]:
    """(join history bodies, MAM bodies), oldest first."""
    c = await _client(server, "checker")
    _p, _s, _o, history = await c.plugin["xep_0045"].join_muc_wait(
        ROOM, "checker", maxstanzas=total + 10, timeout=20
    )
    mam = [
        m["mam_result"]["forwarded"]["stanza"]["body"]
        async for m in c.plugin["xep_0313"].iterate(jid=ROOM, rsm={"max": 250})
    ]
    await c.close()
    return [m["body"] for m in history], mam


def test_every_echoed_message_survives_kill_9_exactly_once(server: XmppdProcess) -> None:
    seed = int(time.time())
    rng = random.Random(seed)
    sent_all: list[str] = []
    echoed_all: set[str] = set()
    per_round: list[tuple[int, int]] = []
    for r in range(ROUNDS):
        server.start()
        sent, echoed = run(lambda r=r: _round(server, f"r{r}", rng.uniform(0.5, 2.0)), 40)
        server.stop()
        assert echoed, f"round {r}: no echo at all (seed {seed})"
        per_round.append((len(sent), len(echoed)))
        sent_all += sent
        echoed_all |= echoed
    server.start()
    history, mam = run(lambda: _check(server, len(sent_all)), 60)

    for name, bodies in (("history", history), ("MAM", mam)):
        counts = collections.Counter(bodies)
        missing = sorted(echoed_all - set(counts))
        dupes = sorted(b for b, n in counts.items() if n > 1)
        assert not missing, f"{name} lost {len(missing)} echoed: {missing[:5]} (seed {seed})"
        assert not dupes, f"{name} has duplicates: {dupes[:5]} (seed {seed})"
        assert set(counts) <= set(sent_all)
    assert history == mam  # the same messages in the same order
    print(f"seed={seed} rounds(sent,echoed)={per_round} archived={len(mam)}")
