"""Join latency of a room with history: join presence sent -> subject message received.

An owner creates a fresh room, sets a subject and posts `history` groupchat messages (each
waited for, so the room has stored them). Then `joins` joins are made one after the other,
each under a fresh nick from one of `clients` logged-in connections in turn, with a plain
`<x xmlns='http://jabber.org/protocol/muc'/>` (the server's default history: 20 messages on
all three). The latency runs from writing the join presence to receiving the subject message
that ends the join sequence (own presence 110, then history, then subject); the number of
history messages received is checked. Each joiner leaves (and its unavailable self-presence
is awaited) before the next join, so every join meets the same room: the owner plus the
joiner.
"""

from __future__ import annotations

import asyncio
import secrets
import time

from . import muc, xmpp
from .meter import Meter, percentile
from .target import Target

HEADLINE = ("p50_ms", "ms", False)
DEFAULTS = {"joins": 200, "warmup_joins": 5, "history": 20, "clients": 10, "max_seconds": 120.0}
QUICK = {"joins": 50}


def accounts_needed(params: dict) -> int:
    return 1 + int(params["clients"])


async def _leave(client: xmpp.Client, room: str, nick: str) -> None:
    full = f"{room}/{nick}"
    client.send(f"<presence to='{full}' type='unavailable'/>")
    await client.recv_until(
        lambda e: (
            e.startswith("<presence")
            and muc.attr_from(e) == full
            and xmpp.attr_type(e) == "unavailable"
        )
    )


async def run(target: Target, params: dict) -> dict:
    joins, history = int(params["joins"]), int(params["history"])
    n_clients = int(params["clients"])
    room = muc.new_room(target)
    clients: list[xmpp.Client] = []
    latencies: list[float] = []
    history_seen: list[int] = []
    perf = time.perf_counter
    tag = secrets.token_hex(2)
    try:
        clients = await muc.login_all(target, target.users[: 1 + n_clients], "join")
        owner, joiners = clients[0], clients[1:]
        async with asyncio.timeout(60):
            created = await muc.create_room(owner, room, "owner")
            owner.send(
                f"<message to='{room}' type='groupchat' id='subj'><subject>bench {tag}</subject>"
                "</message>"
            )
            await owner.recv_until(lambda e: e.startswith("<message") and "<subject>bench" in e)
            for k in range(history):
                owner.send(
                    f"<message to='{room}' type='groupchat' id='h{k}'>"
                    f"<body>history message {k} of {history}</body></message>"
                )
                await owner.recv_until(
                    lambda e, k=k: e.startswith("<message") and f"message {k} of" in e
                )
            await owner.sync()
        owner.on_stanza = lambda e: None  # the joins' presence broadcasts: not read

        meter = Meter(target.pid)
        meter.start()  # restarted after the warm-up joins
        deadline = time.monotonic() + float(params["max_seconds"])
        warmup = int(params["warmup_joins"])
        for j in range(warmup + joins):
            if time.monotonic() > deadline:
                break
            if j == warmup:
                meter.start()
            client = joiners[j % len(joiners)]
            nick = f"j{tag}-{j}"
            t0 = perf()
            res = await muc.join(client, room, nick, history=None, limit_s=10)
            if j >= warmup:
                latencies.append(perf() - t0)
                history_seen.append(res["history"])
            async with asyncio.timeout(10):
                await _leave(client, room, nick)
        meter.stop()
    finally:
        for c in clients:
            c.close()
    raw = list(latencies)
    latencies.sort()
    return {
        "p50_ms": round(1000 * percentile(latencies, 50), 3),
        "p99_ms": round(1000 * percentile(latencies, 99), 3),
        "mean_ms": round(1000 * sum(raw) / max(1, len(raw)), 3),
        "max_ms": round(1000 * latencies[-1], 3) if latencies else None,
        "joins": len(raw),
        "history_posted": history,
        "history_min": min(history_seen, default=0),
        "history_max": max(history_seen, default=0),
        "errors": sum(1 for h in history_seen if h != min(history, 20)),
        "room": room,
        "room_unlocked": bool(created.get("unlocked")),
        **meter.as_dict(),
    }
