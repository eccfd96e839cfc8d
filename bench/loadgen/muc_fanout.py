"""MUC fan-out: N occupants in one room, S senders each keeping W groupchat messages in flight.

All N clients join a fresh room (no history). Each sender posts groupchat messages whose body
is "<sender index> <send time>" (perf_counter of this process); when the room reflects one
of its own messages back to it, the sender posts the next one, so each sender keeps W
messages in flight. Every occupant (senders included) counts the groupchat messages it
receives during the measured window: delivered stanzas/s is that total over the wall time.
Send-to-receive latency is sampled at a subset of the occupants (every k-th one).

After the join the sockets leave asyncio and the stanza parser: asyncio stops reading them
and a plain epoll loop (blocking this process for warm-up + duration + drain) reads each
socket and counts on the raw bytes (count of `<body>`; a regex for the timestamps only at the
sampled occupants). With 1 message in flight every delivered stanza is a read of its own, and
asyncio's per-read cost (~15 us) made the client the bottleneck at N=200; the epoll loop
costs a fraction of that. The client's CPU is reported next to the figure.
"""

from __future__ import annotations

import asyncio
import os
import re
import select
import time

from . import muc, xmpp
from .meter import Meter, percentile
from .target import Target

HEADLINE = ("stanzas_per_s", "stanzas/s", True)
DEFAULTS = {
    "occupants": 200,
    "senders": 4,
    "window": 5,
    "duration": 10.0,
    "warmup": 1.0,
    "sampled": 20,  # occupants that record latency (spread evenly over the room)
    "join_concurrency": 20,
}
QUICK = {"duration": 2.0, "warmup": 0.5}
# Leaving a room of 200 makes every server send ~40k unavailable presences after the run;
# a restart keeps that out of the next repetition.
RESTART_BEFORE_EACH = True

_STAMP = re.compile(rb"<body>\d+ ([0-9.]+)</body>")
_END = b"</message>"
_MAX_REST = 1 << 20


class Counter:
    """Counts groupchat bodies in the raw byte stream of one occupant."""

    def __init__(
        self, fd: int, shared: dict, latencies: list[float] | None, own: bytes | None
    ) -> None:
        self.fd = fd
        self.shared = shared
        self.latencies = latencies
        self.own = own  # b"<body>3 " for sender 3, None for plain occupants
        self.on_own = None
        self.rest = b""
        self.received = 0

    def feed(self, data: bytes) -> None:
        # Work on whole stanzas: up to the last complete </message>; the rest waits for more.
        buf = self.rest + data if self.rest else data
        end = buf.rfind(_END)
        if end < 0:
            self.rest = buf if len(buf) < _MAX_REST else b""
            return
        end += len(_END)
        self.rest = buf[end:]
        n = buf.count(b"<body>", 0, end)
        shared = self.shared
        if buf.find(b"error", 0, end) >= 0:
            errs = buf.count(b"type='error'", 0, end) + buf.count(b'type="error"', 0, end)
            shared["errors"] += errs
            if errs and shared["first_error"] is None:
                i = buf.find(b"error", 0, end)
                shared["first_error"] = buf[max(0, i - 300) : i + 300].decode("utf-8", "replace")
        if shared["measuring"]:
            self.received += n
            if self.latencies is not None:
                now = time.perf_counter()
                self.latencies.extend(now - float(t) for t in _STAMP.findall(buf, 0, end))
            if shared["sample"] is None and n:
                shared["sample"] = buf[: buf.find(_END) + len(_END)].decode("utf-8", "replace")
        if self.own is not None:
            mine = buf.count(self.own, 0, end)
            if mine:
                self.on_own(mine)


def pump(counters: list[Counter], shared: dict, meter: Meter, warmup: float, duration: float):
    """The measured phase, synchronously: epoll over all sockets, bounded by the clock."""
    ep = select.epoll()
    by_fd = {c.fd: c for c in counters}
    pending: dict[int, bytes] = shared["pending"]
    try:
        for fd in by_fd:
            ep.register(fd, select.EPOLLIN)
        for c in counters:
            if c.on_own is not None:
                c.on_own(shared["window"])
        perf = time.perf_counter
        t_measure = perf() + warmup
        t_stop = t_measure + duration
        t_end = t_stop + 0.5  # let in-flight messages land
        read = os.read
        reads = 0
        while True:
            now = perf()
            if not shared["measuring"] and not shared["stop"] and now >= t_measure:
                shared["measuring"] = True
                meter.start()
                reads = 0
            elif shared["measuring"] and now >= t_stop:
                shared["measuring"] = False
                meter.stop()
                shared["stop"] = True
                shared["reads"] = reads
            elif now >= t_end:
                break
            for fd, _ in ep.poll(0.05):
                reads += 1
                try:
                    data = read(fd, 262144)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    ep.unregister(fd)
                    shared["lost"] += 1
                    continue
                by_fd[fd].feed(data)
            if pending:
                for fd, data in list(pending.items()):
                    del pending[fd]
                    write_all(fd, data, pending)
    finally:
        ep.close()


def write_all(fd: int, data: bytes, pending: dict[int, bytes]) -> None:
    """Write what the socket takes now; keep the rest (in order) for the next loop turn."""
    if fd in pending:
        pending[fd] += data
        return
    try:
        sent = os.write(fd, data)
    except BlockingIOError:
        sent = 0
    if sent < len(data):
        pending[fd] = data[sent:]


def accounts_needed(params: dict) -> int:
    return int(params["occupants"])


async def run(target: Target, params: dict) -> dict:
    n, senders, window = int(params["occupants"]), int(params["senders"]), int(params["window"])
    senders = min(senders, n)
    room = muc.new_room(target)
    shared = {
        "measuring": False,
        "stop": False,
        "errors": 0,
        "lost": 0,
        "first_error": None,
        "sample": None,
        "posted": 0,
        "window": window,
        "pending": {},
    }
    latencies: list[float] = []
    counters: list[Counter] = []
    clients: list[xmpp.Client] = []
    perf = time.perf_counter
    join_t: dict[str, float] = {}
    try:
        t0 = perf()
        clients = await muc.login_all(target, target.users[:n], "muc")
        join_t["login_s"] = perf() - t0
        t0 = perf()
        created = await muc.create_room(clients[0], room, "o0")
        sem = asyncio.Semaphore(int(params["join_concurrency"]))

        async def join(i: int) -> None:
            async with sem:
                await muc.join(clients[i], room, f"o{i}", wait_subject=False, limit_s=60)

        await asyncio.gather(*(join(i) for i in range(1, n)))
        join_t["join_s"] = perf() - t0
        # Presence broadcasts of the last joins may still be on their way to earlier
        # occupants: a round trip on every connection, then a short settle.
        async with asyncio.timeout(60):
            await asyncio.gather(*(c.sync("settle") for c in clients))
        await asyncio.sleep(0.3)

        step = max(1, n // max(1, int(params["sampled"])))
        for i, c in enumerate(clients):
            assert c.transport is not None
            c.transport.pause_reading()  # from here on the epoll loop reads the socket
            sampled = i % step == 0
            own = f"<body>{i} ".encode() if i < senders else None
            fd = c.transport.get_extra_info("socket").fileno()
            counters.append(Counter(fd, shared, latencies if sampled else None, own))

        def make_sender(i: int, fd: int):
            head = f"<message to='{room}' type='groupchat'><body>{i} ".encode()
            tail = b"</body></message>"
            pending = shared["pending"]

            def post(k: int) -> None:
                if shared["stop"]:
                    return
                if shared["measuring"]:
                    shared["posted"] += k
                write_all(
                    fd, b"".join(head + f"{perf():.6f}".encode() + tail for _ in range(k)), pending
                )

            return post

        for i in range(senders):
            counters[i].on_own = make_sender(i, counters[i].fd)
        meter = Meter(target.pid)
        pump(counters, shared, meter, float(params["warmup"]), float(params["duration"]))
    finally:
        shared["stop"] = True
        for c in clients:
            c.close()
    delivered = sum(c.received for c in counters)
    per_occupant = sorted(c.received for c in counters)
    latencies.sort()
    return {
        "stanzas_per_s": round(delivered / meter.wall, 1),
        "delivered": delivered,
        "posted": shared["posted"],
        "posted_per_s": round(shared["posted"] / meter.wall, 1),
        # delivered / (posted x N): about 1 (messages in flight at the window edges aside)
        "delivery_ratio": round(delivered / max(1, shared["posted"] * n), 4),
        "per_server_cpu_s": round(delivered / max(meter.server_cpu_s, 1e-9), 1),
        "occupants": n,
        "senders": senders,
        "window": window,
        "in_flight": senders * window,
        "min_per_occupant": per_occupant[0] if per_occupant else 0,
        "max_per_occupant": per_occupant[-1] if per_occupant else 0,
        "errors": shared["errors"],
        "first_error": shared["first_error"],
        "connections_lost": shared["lost"],
        "latency_samples": len(latencies),
        # socket reads by the client in the window per delivered stanza (< 1: several a read)
        "reads_per_stanza": round(shared.get("reads", 0) / max(1, delivered), 3),
        "p50_ms": round(1000 * percentile(latencies, 50), 2),
        "p99_ms": round(1000 * percentile(latencies, 99), 2),
        "room": room,
        "sample_stanza": shared["sample"],
        "room_unlocked": bool(created.get("unlocked")),
        "login_s": round(join_t["login_s"], 2),
        "join_s": round(join_t["join_s"], 2),
        **meter.as_dict(),
    }
