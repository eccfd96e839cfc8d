"""The HTTP layer's own cost: hypercorn (trio worker) answering an empty ASGI app.

BOSH spends one HTTP request per long-poll cycle, so no BOSH figure can beat what the HTTP
server alone costs per request. This measures that floor on this machine, the way the BOSH
scenario loads a server: hypercorn pinned to core 1 serving an app that answers every POST
with a fixed 49-byte ``<body/>`` at once; 50 keep-alive HTTP/1.1 connections from core 0
(the bench's own h11 client, ``bench.loadgen.bosh.HttpClient``) posting back to back.

    .venv/bin/python bench/http_floor.py            # 3 runs of 5 s, median printed

Prints requests/s and the server's CPU microseconds per request. Compare the latter with the
BOSH scenario's server CPU seconds / deliveries: the difference is what xmppd's BOSH layer
adds on top of the HTTP server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.loadgen.bosh import HttpClient  # noqa: E402
from bench.loadgen.meter import server_cpu  # noqa: E402

PORT = 39280
SERVER_CORE, CLIENT_CORE = 1, 0

_APP = r"""
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

BODY = b"<body xmlns='http://jabber.org/protocol/httpbind'/>"
HEADERS = [(b"content-type", b"text/xml; charset=utf-8"), (b"content-length", b"%d" % len(BODY))]

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})

config = Config()
config.bind = ["127.0.0.1:@PORT@"]
config.accesslog = None
trio.run(serve, app, config)
"""

_REQUEST = b"<body rid='1' sid='x' xmlns='http://jabber.org/protocol/httpbind'/>"


async def _load(pid: int, connections: int, seconds: float) -> tuple[float, float]:
    """Requests/s and server CPU µs per request over ``seconds`` after a 1 s warm-up."""
    done = 0
    stop = False

    async def worker() -> None:
        nonlocal done
        http = HttpClient("127.0.0.1", PORT)
        while not stop:
            await http.post(_REQUEST)
            done += 1

    tasks = [asyncio.create_task(worker()) for _ in range(connections)]
    await asyncio.sleep(1.0)
    n0, c0, t0 = done, server_cpu(pid), time.perf_counter()
    await asyncio.sleep(seconds)
    n1, c1, t1 = done, server_cpu(pid), time.perf_counter()
    stop = True
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    count = max(1, n1 - n0)
    return count / (t1 - t0), 1e6 * (c1 - c0) / count


async def _wait_for_port() -> None:
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", PORT)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise RuntimeError("hypercorn did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    os.sched_setaffinity(0, {CLIENT_CORE})
    app = _APP.replace("@PORT@", str(PORT))
    server = subprocess.Popen(
        ["taskset", "-c", str(SERVER_CORE), sys.executable, "-c", app],
        start_new_session=True,
    )
    try:
        asyncio.run(_wait_for_port())
        rates, costs = [], []
        for k in range(args.runs):
            rate, cost = asyncio.run(_load(server.pid, args.connections, args.seconds))
            rates.append(rate)
            costs.append(cost)
            print(f"run {k + 1}: {rate:,.0f} requests/s, server {cost:.0f} µs CPU per request")
        print(
            f"median: {statistics.median(rates):,.0f} requests/s, "
            f"{statistics.median(costs):.0f} µs server CPU per request "
            f"(hypercorn, empty ASGI app, {args.connections} keep-alive connections)"
        )
    finally:
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
