"""Does the server give back what a session took? connect/login/join/leave/disconnect cycles.

Starts its own ``xmppd serve`` (loopback ports from ``--port-base``, data under
``bench/run/memory/``, recreated each run), makes one account per worker, then runs
``--cycles`` cycles with ``--concurrency`` workers; cycle *i* uses TCP, WebSocket or BOSH
(``i % 3``): connect, log in (SCRAM-SHA-256 on TCP and WebSocket, PLAIN on BOSH), bind,
initial presence, join the site room ``sax`` (no history), leave it, close the stream.

At each checkpoint (after the first 10 % of cycles, every ``--every`` cycles, at the end)
the workers pause, the server is left idle ``--settle`` seconds (longer than its 5 s
``malloc_trim`` interval), and its VmRSS is read, then again after a full garbage
collection (admin ``memory-trace`` action ``collect``: what is garbage not yet collected
and what is kept alive), with its open file descriptors and session count, and the
tracked objects per type that changed most since the previous checkpoint (``types``).
The verdict compares the end with the 10 % mark. With ``--trace on`` tracemalloc is switched
on in the server at the 10 % mark (admin command ``memory-trace``) and the end snapshot is
compared with the one taken then (``--trace-at N``: at cycle N, once caches are full);
with ``--trace auto`` (default) that happens only when RSS
grew more than 10 %, in an extra traced phase (5 % of the cycles, 300 to 2,000).

Bounded: ``--max-minutes`` stops the cycles early (the report says how many ran); every
wait on the server has a timeout. Loopback only. Results: printed, and as JSON in
``bench/results/memory_cycles-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

from bench.loadgen import bosh, muc, ws, xmpp
from bench.loadgen.meter import rss_kib
from xmppd.admin.client import call
from xmppd.storage.database import Database

REPO = Path(__file__).resolve().parent.parent
ROOM = "sax@conference.localhost"
PASSWORD = "memory-cycles"
TRANSPORTS = ("tcp", "ws", "bosh")

CONFIG = """\
[server]
domain = "localhost"
data_dir = "{data_dir}"
log_level = "WARNING"

[c2s]
bind = "127.0.0.1"
port = {port}
direct_tls_port = 0
require_encryption = false   # loopback only: no TLS cost in the cycle

[limits]
auth_failures_per_minute = 0

[http]
host = "127.0.0.1"
port = {http_port}
tls_port = 0

[component_listener]
host = "127.0.0.1"
port = {component_port}
"""


@dataclass
class Run:
    """Counters shared by the workers, and the checkpoints taken."""

    total: int
    stop_at: int = 0
    issued: int = 0
    done: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TRANSPORTS, 0))
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TRANSPORTS, 0))
    last_error: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TRANSPORTS, 0.0))
    checkpoints: list[dict] = field(default_factory=list)

    def ticket(self) -> int | None:
        if self.issued >= self.stop_at:
            return None
        self.issued += 1
        return self.issued - 1


async def cycle_tcp(port: int, user: str, nick: str) -> None:
    client = await xmpp.connect("127.0.0.1", port, "localhost")
    try:
        await client.login(user, PASSWORD, "SCRAM-SHA-256", nick, presence=True)
        await muc.join(client, ROOM, nick, wait_subject=False)
        client.send(f"<presence to='{ROOM}/{nick}' type='unavailable'/>")
        await client.recv_until(
            lambda e: (
                e.startswith("<presence")
                and muc.attr_from(e) == f"{ROOM}/{nick}"
                and xmpp.attr_type(e) == "unavailable"
            )
        )
        await client.close_gracefully()
    finally:
        client.close()


async def cycle_ws(http_port: int, user: str, nick: str) -> None:
    client = await ws.open_ws("127.0.0.1", http_port, "localhost")
    try:
        await client.login(user, PASSWORD, "SCRAM-SHA-256", nick)
        await client.join(ROOM, nick)
        await client.leave(ROOM, nick)
        await client.close()
    finally:
        await client.ws.close()


async def cycle_bosh(http_port: int, user: str, nick: str) -> None:
    session = bosh.BoshSession("127.0.0.1", http_port, "localhost", wait=1)
    try:
        await session.login(user, PASSWORD, nick)
        await session.join(ROOM, nick)
        await session.send(
            f"<presence xmlns='{bosh.NS_CLIENT}' to='{ROOM}/{nick}' type='unavailable'/>"
        )
        gone = f"{{{bosh.NS_CLIENT}}}presence"
        while not any(
            el.tag == gone and el.get("from") == f"{ROOM}/{nick}" for el in session.inbox
        ):
            await session.send()
    finally:
        await session.terminate()


async def worker(run: Run, k: int, port: int, http_port: int) -> None:
    user = f"mem{k}"
    while (i := run.ticket()) is not None:
        kind = TRANSPORTS[i % 3]
        nick = f"m{k}-{i}"
        began = time.perf_counter()
        try:
            async with asyncio.timeout(30):
                if kind == "tcp":
                    await cycle_tcp(port, user, nick)
                elif kind == "ws":
                    await cycle_ws(http_port, user, nick)
                else:
                    await cycle_bosh(http_port, user, nick)
            run.done[kind] += 1
            run.seconds[kind] += time.perf_counter() - began
        except Exception as exc:
            run.errors[kind] += 1
            run.last_error[kind] = f"{type(exc).__name__}: {exc}"[:300]


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def admin(sock: Path, command: str, **args: object) -> dict:
    doc = call(sock, command, dict(args), timeout=60)
    if not doc.get("ok"):
        raise RuntimeError(f"admin {command}: {doc.get('message')}")
    return doc["result"]


async def checkpoint(run: Run, pid: int, sock: Path, settle: float, t0: float) -> dict:
    await asyncio.sleep(settle)
    stats = admin(sock, "stats")
    rss_lazy = rss_kib(pid)
    collected = admin(sock, "memory-trace", action="collect")
    point = {
        "cycles": sum(run.done.values()),
        "issued": run.issued,
        "elapsed_s": round(time.monotonic() - t0, 1),
        "rss_kib": rss_kib(pid),  # after a full collection and trim
        "rss_before_gc_kib": rss_lazy,
        "gc_freed": collected["freed"],
        "gc_tracked": collected["tracked"],
        "fds": fds(pid),
        "sessions": stats.get("sessions"),
        "errors": sum(run.errors.values()),
        # tracked objects per type, the change since the previous checkpoint
        "type_growth": admin(sock, "memory-trace", action="types", top=8)["types"],
    }
    run.checkpoints.append(point)
    print(
        f"  cycles={point['issued']:>7} rss={point['rss_kib']:>7} KiB "
        f"(before gc {rss_lazy}, freed {collected['freed']}, tracked {collected['tracked']}) "
        f"fds={point['fds']:>4} "
        f"sessions={point['sessions']} errors={point['errors']} t={point['elapsed_s']} s",
        flush=True,
    )
    if len(run.checkpoints) > 1:
        grown = ", ".join(f"{t['type']} {t['change']:+d}" for t in point["type_growth"][:5])
        print(f"    tracked objects by type since the last checkpoint: {grown}", flush=True)
    return point


async def phase(run: Run, upto: int, concurrency: int, port: int, http_port: int) -> None:
    run.stop_at = upto
    await asyncio.gather(*(worker(run, k, port, http_port) for k in range(concurrency)))


def trace_diff(before: Path, after: Path, top: int) -> list[str]:
    """The allocation sites that grew most between two dumped snapshots."""
    noise = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<*>")]
    old = tracemalloc.Snapshot.load(str(before)).filter_traces(noise)
    new = tracemalloc.Snapshot.load(str(after)).filter_traces(noise)
    lines = []
    for stat in new.compare_to(old, "traceback")[:top]:
        innermost = list(reversed(stat.traceback))[:6]  # tracemalloc keeps oldest first
        frames = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in innermost)
        lines.append(f"{stat.size_diff / 1024:+10.1f} KiB {stat.count_diff:+7d} blocks  {frames}")
    return lines


def start_server(data_dir: Path, ports: dict[str, int]) -> subprocess.Popen[bytes]:
    config = data_dir / "xmppd.toml"
    config.write_text(CONFIG.format(data_dir=data_dir, **ports))
    for name, port in ports.items():
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                raise SystemExit(f"port {port} ({name}) is taken: choose another --port-base")
    log = (data_dir / "xmppd.log").open("ab")
    proc = subprocess.Popen(
        [str(REPO / ".venv/bin/xmppd"), "serve", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"xmppd exited early; see {data_dir / 'xmppd.log'}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", ports["port"])) == 0:
                return proc
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("xmppd did not start within 60 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def main_async(args: argparse.Namespace) -> dict:
    data_dir = (REPO / "bench/run/memory").absolute()
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True, mode=0o700)
    base = args.port_base
    ports = {"port": base, "http_port": base + 1, "component_port": base + 2}
    db = Database(f"sqlite:///{data_dir / 'xmppd.sqlite3'}")
    db.upgrade()
    db.create_users_bulk([(f"mem{k}", PASSWORD) for k in range(args.concurrency)])
    db.dispose()
    proc = start_server(data_dir, ports)
    sock = data_dir / "admin.sock"
    run = Run(total=args.cycles)
    t0 = time.monotonic()
    deadline = t0 + 60 * args.max_minutes
    first = max(1, args.cycles // 10)
    marks = sorted({first, *range(args.every, args.cycles, args.every), args.cycles})
    if args.trace_at:
        marks = sorted({*marks, args.trace_at})
    traced: list[Path] = []
    result: dict = {}
    try:
        print(f"xmppd pid {proc.pid}; {args.cycles} cycles, {args.concurrency} workers", flush=True)
        await checkpoint(run, proc.pid, sock, 2.0, t0)
        for mark in marks:
            if time.monotonic() > deadline:
                print(f"  --max-minutes reached after {run.issued} cycles", flush=True)
                break
            task = asyncio.create_task(
                phase(run, mark, args.concurrency, ports["port"], ports["http_port"])
            )
            while not task.done():
                await asyncio.wait({task}, timeout=1.0)
                if time.monotonic() > deadline:
                    run.stop_at = run.issued  # the workers finish their cycle and stop
            await task
            await checkpoint(run, proc.pid, sock, args.settle, t0)
            if mark == (args.trace_at or first) and args.trace == "on":
                admin(sock, "memory-trace", action="start", frames=args.frames)
                traced.append(Path(admin(sock, "memory-trace", action="snapshot")["path"]))
        # the 10 % mark, or (cut short by --max-minutes) the checkpoint nearest 10 % of
        # the cycles that ran
        tenth = first if run.issued >= args.cycles else run.issued // 10
        base_point = next(p for p in run.checkpoints if p["issued"] >= tenth)
        end = run.checkpoints[-1]
        ratio = end["rss_kib"] / base_point["rss_kib"]
        busy = end["elapsed_s"] - args.settle * (len(run.checkpoints) - 1)
        result = {
            "cycles_requested": args.cycles,
            "cycles_run": run.issued,
            "cycles_ok": dict(run.done),
            "errors": dict(run.errors),
            "last_error": run.last_error,
            "cycles_per_s": round(run.issued / max(busy, 1e-9), 1),
            "mean_cycle_ms": {
                kind: round(1000 * run.seconds[kind] / max(1, run.done[kind]), 1)
                for kind in TRANSPORTS
            },
            "rss_first_10pct_kib": base_point["rss_kib"],
            "rss_end_kib": end["rss_kib"],
            "ratio": round(ratio, 4),
            "within_10pct": ratio <= 1.10,
            "checkpoints": run.checkpoints,
        }
        if args.trace == "auto" and ratio > 1.10:
            extra = min(2000, max(300, run.issued // 20))  # tracing slows it several times
            print(f"  RSS grew {ratio:.3f}x: {extra} more cycles with tracemalloc", flush=True)
            admin(sock, "memory-trace", action="start", frames=args.frames)
            traced.append(Path(admin(sock, "memory-trace", action="snapshot")["path"]))
            run.total += extra
            await phase(
                run, run.issued + extra, args.concurrency, ports["port"], ports["http_port"]
            )
            await checkpoint(run, proc.pid, sock, args.settle, t0)
        if traced:
            traced.append(Path(admin(sock, "memory-trace", action="snapshot")["path"]))
            result["tracemalloc_top"] = trace_diff(traced[0], traced[-1], args.top)
        log = (data_dir / "xmppd.log").read_text(errors="replace")
        result["log_errors"] = log.count(" level=ERROR ") + log.count("Traceback")
    finally:
        stop_server(proc)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=24)
    parser.add_argument("--every", type=int, default=10_000, help="checkpoint interval")
    parser.add_argument("--settle", type=float, default=7.0, help="idle seconds per checkpoint")
    parser.add_argument("--max-minutes", type=float, default=20.0)
    parser.add_argument("--port-base", type=int, default=31400)
    parser.add_argument("--trace", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--frames", type=int, default=8, help="tracemalloc frames per trace")
    parser.add_argument(
        "--trace-at", type=int, default=0, help="with --trace on: start at this cycle (10 %%)"
    )
    parser.add_argument("--top", type=int, default=25, help="growing sites to print")
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    print(json.dumps({k: v for k, v in result.items() if k != "checkpoints"}, indent=2))
    out = REPO / "bench/results" / f"memory_cycles-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), **result}, indent=2))
    print(f"written to {out}")
    with contextlib.suppress(KeyError):
        sys.exit(0 if result["within_10pct"] else 1)


if __name__ == "__main__":
    main()
