"""c2s logins/s: W concurrent workers each doing full logins in a loop.

One login = TCP connect, stream, SASL (SCRAM or PLAIN), stream restart, resource bind,
close. Counted when the bind result arrives inside the measurement window.
"""

from __future__ import annotations

import asyncio
import itertools
import time

from . import scram, xmpp
from .meter import Meter, percentile
from .target import Target

HEADLINE = ("logins_per_s", "logins/s", True)
DEFAULTS = {
    "mechanism": "scram",
    "workers": 50,
    "duration": 10.0,
    "warmup": 1.0,
    "pool": 200,
    "graceful_close": False,  # True: wait for the server's stream end (adds its close latency)
    "fixed_resource": False,
}
QUICK = {"duration": 2.0, "warmup": 0.5}


def accounts_needed(params: dict) -> int:
    return int(params["pool"])


async def run(target: Target, params: dict) -> dict:
    mechanism = target.mechanism if params["mechanism"] == "scram" else params["mechanism"]
    workers = int(params["workers"])
    fixed_resource = str(params["fixed_resource"]).lower() in ("1", "true", "yes")
    graceful = str(params["graceful_close"]).lower() in ("1", "true", "yes")
    pool = target.users[: int(params["pool"])]
    counter = itertools.count()
    state = {"measuring": False, "stop": False, "ok": 0, "errors": 0, "last_error": ""}
    latencies: list[float] = []

    async def worker(w: int) -> None:
        mine = pool[w % len(pool) :: workers] or pool
        i = 0
        while not state["stop"]:
            user, password = mine[i % len(mine)]
            i += 1
            t0 = time.perf_counter()
            client = None
            try:
                client = await xmpp.connect(target.host, target.port, target.domain)
                async with asyncio.timeout(30):
                    resource = f"w{w}" if fixed_resource else f"l{next(counter)}"
                    await client.login(user, password, mechanism, resource)
                if state["measuring"]:
                    state["ok"] += 1
                    latencies.append(time.perf_counter() - t0)
                if graceful:
                    await client.close_gracefully()
            except (OSError, TimeoutError, ValueError, xmpp.XmppError) as exc:
                state["errors"] += 1
                state["last_error"] = str(exc)[:200]
                await asyncio.sleep(0.05)
            finally:
                if client is not None:
                    client.close()

    before = dict(scram.stats)
    meter = Meter(target.pid)
    tasks = [asyncio.create_task(worker(w)) for w in range(workers)]
    try:
        await asyncio.sleep(float(params["warmup"]))
        state["measuring"] = True
        state["errors"] = 0
        meter.start()
        await asyncio.sleep(float(params["duration"]))
        state["measuring"] = False
        meter.stop()
        state["stop"] = True
        async with asyncio.timeout(35):
            await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
    latencies.sort()
    return {
        "logins_per_s": round(state["ok"] / meter.wall, 1),
        "logins": state["ok"],
        "per_server_cpu_s": round(state["ok"] / max(meter.server_cpu_s, 1e-9), 1),
        "mechanism": mechanism,
        "workers": workers,
        "errors": state["errors"],
        "last_error": state["last_error"],
        "p50_ms": round(1000 * percentile(latencies, 50), 2),
        "p99_ms": round(1000 * percentile(latencies, 99), 2),
        "client_pbkdf2": scram.stats["pbkdf2"] - before["pbkdf2"],
        "client_key_cache_hits": scram.stats["cache_hits"] - before["cache_hits"],
        **meter.as_dict(),
    }
