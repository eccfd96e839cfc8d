"""Server memory per idle authenticated connection.

Reads the server's VmRSS, opens N connections (login, bind, initial presence, one ping round
trip so the server has processed everything), waits, reads VmRSS again:
(after - before) / N in KiB. Run on a freshly started server (run.py restarts it first).

Logins use PLAIN by default: with SCRAM against ejabberd's plain password storage, each
c2s process runs PBKDF2 in Erlang and keeps the garbage in its idle heap (about 530 KiB per
connection instead of about 50); the *_scram variants measure that case.
"""

from __future__ import annotations

import asyncio
import time

from . import xmpp
from .meter import Meter, rss_kib
from .target import Target

HEADLINE = ("kib_per_conn", "KiB/conn", False)
DEFAULTS = {"connections": 1000, "concurrency": 100, "settle": 10.0, "mechanism": "PLAIN"}
QUICK = {"connections": 200, "settle": 1.0}
RESTART_BEFORE_EACH = True


def accounts_needed(params: dict) -> int:
    return int(params["connections"])


async def run(target: Target, params: dict) -> dict:
    n = int(params["connections"])
    users = target.users[:n]
    if len(users) < n:
        raise RuntimeError(f"need {n} accounts, have {len(target.users)}")
    mechanism = target.mechanism if params["mechanism"] == "scram" else params["mechanism"]
    sem = asyncio.Semaphore(int(params["concurrency"]))
    clients: list[xmpp.Client] = []
    errors = {"n": 0, "last": ""}

    async def open_one(user: str, password: str) -> None:
        async with sem:
            try:
                client = await xmpp.connect(target.host, target.port, target.domain)
                clients.append(client)
                async with asyncio.timeout(60):
                    await client.login(user, password, mechanism, "idle", presence=True)
                    await client.sync()
                client.on_stanza = _ignore  # drop anything that arrives while idle
            except (OSError, TimeoutError, ValueError, xmpp.XmppError) as exc:
                errors["n"] += 1
                errors["last"] = str(exc)[:200]

    await asyncio.sleep(1.0)
    before = rss_kib(target.pid)
    meter = Meter(target.pid)
    meter.start()
    try:
        t0 = time.perf_counter()
        async with asyncio.timeout(max(120, n / 20)):
            await asyncio.gather(*(open_one(u, p) for u, p in users))
        connect_s = time.perf_counter() - t0
        await asyncio.sleep(float(params["settle"]))
        alive = sum(1 for c in clients if not c.closed)
        after = rss_kib(target.pid)
        meter.stop()
    finally:
        for c in clients:
            c.close()
    return {
        "kib_per_conn": round((after - before) / max(alive, 1), 2),
        "connections": alive,
        "requested": n,
        "mechanism": mechanism,
        "errors": errors["n"],
        "last_error": errors["last"],
        "rss_before_kib": before,
        "rss_after_kib": after,
        "logins_per_s_while_opening": round(n / connect_s, 1),
        **meter.as_dict(),
    }


def _ignore(element: str) -> None:
    return None
