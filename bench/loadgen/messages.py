"""1:1 chat messages/s: K pairs of logged-in clients bouncing messages to each other.

Each client starts with W messages in flight to its partner; every message received is
answered with a new one, so each pair keeps 2*W messages in flight. The body carries the
send time (perf_counter of this process), so latency = receive time - body.
"""

from __future__ import annotations

import asyncio
import re
import time

from . import xmpp
from .meter import Meter, percentile
from .target import Target

HEADLINE = ("messages_per_s", "msg/s", True)
DEFAULTS = {"pairs": 50, "window": 5, "duration": 10.0, "warmup": 1.0}
QUICK = {"pairs": 20, "duration": 2.0, "warmup": 0.5}

_BODY = re.compile(r"<body>([^<]*)</body>")


def accounts_needed(params: dict) -> int:
    return 2 * int(params["pairs"])


async def run(target: Target, params: dict) -> dict:
    pairs, window = int(params["pairs"]), int(params["window"])
    users = target.users[: 2 * pairs]
    state = {"measuring": False, "stop": False, "delivered": 0, "errors": 0}
    latencies: list[float] = []
    clients: list[xmpp.Client] = []
    perf = time.perf_counter

    async def login(user: str, password: str) -> xmpp.Client:
        client = await xmpp.connect(target.host, target.port, target.domain)
        async with asyncio.timeout(30):
            await client.login(user, password, target.mechanism, "msg", presence=True)
            await client.sync()
        return client

    sem = asyncio.Semaphore(50)

    async def guarded(user: str, password: str) -> xmpp.Client:
        async with sem:
            return await login(user, password)

    try:
        clients = list(await asyncio.gather(*(guarded(u, p) for u, p in users)))

        def make_handler(me: xmpp.Client, partner_jid: str):
            head = f"<message to='{partner_jid}' type='chat'><body>"

            def handler(element: str) -> None:
                if not element.startswith("<message"):
                    return
                now = perf()
                m = _BODY.search(element)
                if m is None or "type='error'" in element or 'type="error"' in element:
                    state["errors"] += 1
                    return
                if state["measuring"]:
                    state["delivered"] += 1
                    latencies.append(now - float(m.group(1)))
                if not state["stop"]:
                    me.send(f"{head}{perf():.6f}</body></message>")

            return handler

        for i in range(0, len(clients), 2):
            a, b = clients[i], clients[i + 1]
            a.on_stanza = make_handler(a, b.jid)
            b.on_stanza = make_handler(b, a.jid)
        for i in range(0, len(clients), 2):
            a, b = clients[i], clients[i + 1]
            for _ in range(window):
                a.send(f"<message to='{b.jid}' type='chat'><body>{perf():.6f}</body></message>")
                b.send(f"<message to='{a.jid}' type='chat'><body>{perf():.6f}</body></message>")
        meter = Meter(target.pid)
        await asyncio.sleep(float(params["warmup"]))
        state["measuring"] = True
        meter.start()
        await asyncio.sleep(float(params["duration"]))
        state["measuring"] = False
        meter.stop()
        state["stop"] = True
        await asyncio.sleep(0.5)  # let in-flight messages land before closing
    finally:
        for c in clients:
            c.close()
    latencies.sort()
    return {
        "messages_per_s": round(state["delivered"] / meter.wall, 1),
        "delivered": state["delivered"],
        "per_server_cpu_s": round(state["delivered"] / max(meter.server_cpu_s, 1e-9), 1),
        "pairs": pairs,
        "in_flight": 2 * window * pairs,
        "errors": state["errors"],
        "p50_ms": round(1000 * percentile(latencies, 50), 2),
        "p99_ms": round(1000 * percentile(latencies, 99), 2),
        **meter.as_dict(),
    }
