"""Memory per idle client connection, inside one process: where the bytes are.

``bench/run.py --scenarios idle_rss_1000`` measures the serving process from outside; this
runs the server in-process (no HTTP port, no admin socket), logs ``N`` clients in over
loopback TCP (PLAIN, bind, presence), waits for the parsers to hibernate and then either

- prints the VmRSS growth per connection after ``malloc_trim`` (``--rss``), or
- compares two ``tracemalloc`` snapshots and prints the allocation sites that grew by more
  than 40 bytes per connection (default), most recent frames last.

    .venv/bin/python bench/idle_memory_inproc.py --connections 300
    .venv/bin/python bench/idle_memory_inproc.py --connections 1000 --rss

Run it from two checkouts (each with its own .venv) to compare a change with what it
replaces; figures from this are for finding causes, ``bench/run.py`` gives the verdict.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import functools
import gc
import tempfile
import tracemalloc
from pathlib import Path

import trio

from xmppd.config import load_config
from xmppd.server import build_server, run_server
from xmppd.storage import Database

WARM = 20
HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
)


def vm_rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def _until(stream: trio.SocketStream, marker: bytes, buf: list[bytes]) -> None:
    while marker not in buf[0]:
        data = await stream.receive_some(65536)
        if not data:
            raise RuntimeError("the server closed the stream")
        buf[0] += data
    buf[0] = buf[0][buf[0].index(marker) + len(marker) :]


async def _client(port: int, i: int, keep: list[trio.SocketStream]) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    buf = [b""]
    await stream.send_all(HEADER)
    await _until(stream, b"</stream:features>", buf)
    token = base64.b64encode(f"\0u{i}\0pw".encode()).decode()
    auth = f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
    await stream.send_all(auth.encode())
    await _until(stream, b"<success", buf)
    await stream.send_all(HEADER)
    await _until(stream, b"</stream:features>", buf)
    await stream.send_all(
        b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>"
    )
    await _until(stream, b"</iq>", buf)
    await stream.send_all(b"<presence/>")
    keep.append(stream)


async def measure(connections: int, rss_only: bool, settle: float) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="xmppd-idle-"))
    config = load_config(
        environ={},
        overrides={
            "server": {"domain": "localhost", "data_dir": str(data_dir)},
            "c2s": {"bind": "127.0.0.1", "port": 0, "direct_tls_port": 0,
                    "require_encryption": False, "max_connections_per_ip": 100000},
            "limits": {"auth_failures_per_minute": 0},
            "http": {"enabled": False},
            "admin": {"enabled": False},
        },
    )  # fmt: skip
    total = WARM + connections
    db = Database(config.database_url)
    db.upgrade()
    db.create_users_bulk([(f"u{i}", "pw") for i in range(total)])
    db.dispose()
    server = build_server(config)
    keep: list[trio.SocketStream] = []
    async with trio.open_nursery() as nursery:
        listening = await nursery.start(functools.partial(run_server, server, handle_signals=False))
        port = listening["c2s"]
        async with trio.open_nursery() as clients:  # first allocations, caches, pools
            for i in range(WARM):
                clients.start_soon(_client, port, i, keep)
        await trio.sleep(settle)
        gc.collect()
        rss_before = vm_rss_kib()
        if not rss_only:
            tracemalloc.start(10)
            before = tracemalloc.take_snapshot()
        async with trio.open_nursery() as clients:
            for i in range(WARM, total):
                clients.start_soon(_client, port, i, keep)
        await trio.sleep(settle)  # writers exit, parsers hibernate
        gc.collect()
        if rss_only:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
            grown = (vm_rss_kib() - rss_before) * 1024 / connections
            print(f"VmRSS per idle connection: {grown:.0f} B ({connections} connections)")
        else:
            after = tracemalloc.take_snapshot()
            stats = after.compare_to(before, "traceback")
            live = sum(s.size_diff for s in stats) / connections
            print(f"live Python allocations per idle connection: {live:.0f} B")
            for stat in stats[:30]:
                if stat.size_diff / connections < 40:
                    continue
                frames = " <- ".join(
                    f"{f.filename.rsplit('site-packages/', 1)[-1]}:{f.lineno}"
                    for f in list(stat.traceback)[-3:]
                )
                print(f"{stat.size_diff / connections:7.0f} B  {frames}")
        nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--rss", action="store_true", help="VmRSS growth instead of tracemalloc")
    parser.add_argument("--settle", type=float, default=7.0, help="seconds idle before measuring")
    args = parser.parse_args()
    trio.run(measure, args.connections, args.rss, args.settle)


if __name__ == "__main__":
    main()
