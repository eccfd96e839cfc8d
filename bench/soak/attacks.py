"""Issue 13's attacks (findings 1-16) replayed one after another WHILE well-behaved
clients chat in the site room. Per attack: the good clients' deliveries (every message
counted), their send-to-receive latency p50/p99, and the server's RSS and descriptors
before, during (peak) and after. Each attack is bounded in count and time, loopback only,
and comes from addresses of its own (127.66.x.y) so the good clients' caps are untouched.
The integration tests named in issue 13's closing note assert each defence; here the
question is what the attack costs everyone else while it runs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .clients import Endpoint, SoakClient
from .ledger import Ledger
from .population import make_clients, pct, wait_ready
from .sampler import open_fds, rss_kib
from .services import PASSWORD, ROOM, Stack, user

NS_BIND = "http://jabber.org/protocol/httpbind"
HEADER = (
    "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
)
Attack = Callable[["Ctx"], Awaitable[dict[str, Any]]]


class Ctx:
    def __init__(self, stack: Stack, victim_base: int) -> None:
        self.stack = stack
        self.c2s = stack.xmppd.port
        self.http = stack.xmppd.http_port
        self.component = stack.xmppd.component_port
        self.victims = victim_base  # accounts soak<victims>... belong to the attacks

    def victim(self, k: int) -> str:
        return user(self.victims + k)


async def _open(port: int, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), 10
    )


async def _read_some(reader: asyncio.StreamReader, until: bytes, limit_s: float) -> bytes:
    data = b""
    with contextlib.suppress(TimeoutError, OSError):
        async with asyncio.timeout(limit_s):
            while until not in data:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                data += chunk
    return data


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.transport.abort()


async def _http_post(
    port: int, source: str, body: str, extra: str = "", limit_s: float = 10.0
) -> tuple[int, bytes]:
    reader, writer = await _open(port, source)
    try:
        raw = body.encode()
        writer.write(
            f"POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\n"
            f"Content-Length: {len(raw)}\r\n{extra}Connection: close\r\n\r\n".encode()
            + raw
        )
        data = await _read_some(reader, b"</body>", limit_s)
        m = re.match(rb"HTTP/1\.1 (\d+)", data)
        return (int(m.group(1)) if m else 0), data
    finally:
        _close(writer)


async def _login(
    port: int, source: str, name: str, password: str, resource: str = "a"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    reader, writer = await _open(port, source)
    writer.write(HEADER.encode())
    await _read_some(reader, b"</stream:features>", 10)
    token = base64.b64encode(f"\0{name}\0{password}".encode()).decode()
    writer.write(
        f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>".encode()
    )
    reply = await _read_some(reader, b">", 10)
    if b"<success" not in reply:
        _close(writer)
        return None
    writer.write(HEADER.encode())
    await _read_some(reader, b"</stream:features>", 10)
    writer.write(
        f"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        f"<resource>{resource}</resource></bind></iq>".encode()
    )
    await _read_some(reader, b"</iq>", 10)
    return reader, writer


# -- the attacks (finding numbers of issue 13) ---------------------------------------------
async def bosh_bad_key(ctx: Ctx) -> dict[str, Any]:
    """#1: sessions with newkey, then the next rid with a wrong or missing key."""
    answered, slowest = 0, 0.0

    async def one(i: int) -> None:
        nonlocal answered, slowest
        src = f"127.66.1.{i % 200 + 1}"
        k1 = hashlib.sha1(b"seed%d" % i, usedforsecurity=False).hexdigest()
        newkey = hashlib.sha1(k1.encode(), usedforsecurity=False).hexdigest()
        _, raw = await _http_post(
            ctx.http,
            src,
            f"<body rid='1000' xmlns='{NS_BIND}' "
            f"to='localhost' wait='20' hold='1' ver='1.6' "
            f"newkey='{newkey}'/>",
        )
        m = re.search(rb"sid=['\"]([^'\"]+)", raw)
        if not m:
            return
        key = "" if i % 2 else " key='bad'"
        t0 = time.monotonic()
        status, _ = await _http_post(
            ctx.http,
            src,
            f"<body rid='1001' sid='{m.group(1).decode()}'{key} xmlns='{NS_BIND}'/>",
            limit_s=25,
        )
        slowest = max(slowest, time.monotonic() - t0)
        answered += status == 200

    await asyncio.gather(*(one(i) for i in range(300)), return_exceptions=True)
    return {"requests": 300, "answered": answered, "slowest_answer_s": round(slowest, 2)}


async def _drip(port: int, source: str, head: bytes, seconds: float) -> bool:
    """Send ``head`` then one byte every 2 s; True if the server kept the connection."""
    try:
        reader, writer = await _open(port, source)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(head)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(2)
            if reader.at_eof():
                return False
            writer.write(b"x")
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                if not await asyncio.wait_for(reader.read(1024), 0.01) and reader.at_eof():
                    return False
        return not reader.at_eof()
    except OSError:
        return False
    finally:
        _close(writer)


async def http_slowloris(ctx: Ctx) -> dict[str, Any]:
    """#2: 3 addresses x 100 connections dripping a BOSH body (cap 64 per address)."""
    head = (
        b"POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n"
        b"Content-Type: text/xml\r\n\r\n<body "
    )
    kept = await asyncio.gather(
        *(_drip(ctx.http, f"127.66.2.{i % 3 + 1}", head, 40) for i in range(300))
    )
    return {"connections": 300, "held_for_40s": sum(kept)}


async def c2s_slowloris(ctx: Ctx) -> dict[str, Any]:
    """Held-up defence: 3 addresses x 100 c2s connections dripping a stream header."""
    kept = await asyncio.gather(
        *(_drip(ctx.c2s, f"127.66.3.{i % 3 + 1}", b"<?xml ", 40) for i in range(300))
    )
    return {"connections": 300, "held_for_40s": sum(kept)}


async def _try_open(
    port: int, source: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    try:
        return await _open(port, source)
    except (OSError, TimeoutError):
        return None


async def _still_open(reader: asyncio.StreamReader) -> bool:
    """False once the server closed it (refused after accept, or timed out)."""
    with contextlib.suppress(TimeoutError, OSError):
        if not await asyncio.wait_for(reader.read(65536), 0.05) and reader.at_eof():
            return False
    return not reader.at_eof()


async def connection_flood(ctx: Ctx) -> dict[str, Any]:
    """#2: 2,000 connections from one address to HTTP and 2,000 to c2s, held 10 s."""
    out: dict[str, Any] = {}
    for name, port in (("http", ctx.http), ("c2s", ctx.c2s)):
        opened = await asyncio.gather(*(_try_open(port, "127.66.4.1") for _ in range(2000)))
        conns = [c for c in opened if c is not None]
        await asyncio.sleep(10)
        alive = await asyncio.gather(*(_still_open(r) for r, _ in conns))
        out[name] = {"connected": len(conns), "still_open_after_10s": sum(alive)}
        for _, w in conns:
            _close(w)
    return out


async def login_limiter(ctx: Ctx) -> dict[str, Any]:
    """#4: 40 simultaneous bad PLAIN logins for one account, plus control-character and
    case variants of its name; then the right password from elsewhere must still work."""
    name = ctx.victim(0)
    variants = (
        [name] * 40 + [name[:2] + chr(c) + name[2:] for c in range(1, 11)] + [name.upper()] * 10
    )

    async def bad(i: int, n: str) -> bool:
        try:
            ok = await _login(ctx.c2s, f"127.66.5.{i % 50 + 1}", n, "wrong")
        except (OSError, TimeoutError):
            return False
        if ok:
            _close(ok[1])
        return ok is not None

    got = await asyncio.gather(*(bad(i, n) for i, n in enumerate(variants)))
    return {"bad_logins": len(variants), "accepted": sum(got)}


async def forwarded_spoof(ctx: Ctx) -> dict[str, Any]:
    """#3/#4: 25 bad BOSH logins for one account from one address, each claiming another
    client address in X-Forwarded-For/Forwarded (no trusted proxy configured): the
    failed-login limit must hold (answers other than not-authorized past it)."""
    name = ctx.victim(8)
    answers: dict[str, int] = {}
    token = base64.b64encode(f"\0{name}\0wrong".encode()).decode()
    for i in range(25):
        extra = f"X-Forwarded-For: 10.0.{i}.1\r\nForwarded: for=10.1.{i}.1\r\n"
        _, raw = await _http_post(
            ctx.http,
            "127.66.6.1",
            f"<body rid='1' xmlns='{NS_BIND}' to='localhost' wait='5' hold='1' ver='1.6'/>",
            extra,
        )
        m = re.search(rb"sid=['\"]([^'\"]+)", raw)
        if not m:
            answers["no_session"] = answers.get("no_session", 0) + 1
            continue
        _, raw = await _http_post(
            ctx.http,
            "127.66.6.1",
            f"<body rid='2' sid='{m.group(1).decode()}' xmlns='{NS_BIND}'><auth "
            f"xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth></body>",
            extra,
        )
        cond = re.search(rb"<failure[^>]*>\s*<([a-z-]+)", raw)
        key = cond.group(1).decode() if cond else "other"
        answers[key] = answers.get(key, 0) + 1
    return {"bad_logins": 25, "answers": answers}


async def websocket_handshakes(ctx: Ctx) -> dict[str, Any]:
    """#10: 200 concurrent WebSocket handshakes from one address (cap 64)."""
    upgraded = 0
    writers = []

    async def one(i: int) -> None:
        nonlocal upgraded
        try:
            reader, writer = await _open(ctx.http, "127.66.7.1")
        except (OSError, TimeoutError):
            return
        writers.append(writer)
        key = base64.b64encode(b"%016d" % i).decode()
        writer.write(
            f"GET /xmpp-websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: xmpp\r\n\r\n".encode()
        )
        data = await _read_some(reader, b"\r\n\r\n", 10)
        upgraded += data.startswith(b"HTTP/1.1 101")

    await asyncio.gather(*(one(i) for i in range(200)))
    await asyncio.sleep(5)
    for w in writers:
        _close(w)
    return {"handshakes": 200, "upgraded": upgraded}


async def bosh_unauthenticated(ctx: Ctx) -> dict[str, Any]:
    """#10: 100 BOSH sessions that never authenticate, kept by empty polls past the
    negotiation deadline (c2s.handshake_timeout)."""
    deadline = ctx.stack.handshake_timeout + 5

    async def one(i: int) -> bool:
        src = f"127.66.8.{i % 50 + 1}"
        _, raw = await _http_post(
            ctx.http,
            src,
            f"<body rid='10' xmlns='{NS_BIND}' to='localhost' wait='5' hold='1' ver='1.6'/>",
        )
        m = re.search(rb"sid=['\"]([^'\"]+)", raw)
        if not m:
            return False
        sid, rid, t0 = m.group(1).decode(), 11, time.monotonic()
        while time.monotonic() - t0 < deadline:
            _, raw = await _http_post(
                ctx.http, src, f"<body rid='{rid}' sid='{sid}' xmlns='{NS_BIND}'/>"
            )
            rid += 1
            if b"terminate" in raw:
                return False
        return True

    alive = await asyncio.gather(*(one(i) for i in range(100)), return_exceptions=True)
    return {"sessions": 100, "alive_past_deadline": sum(a is True for a in alive)}


async def detached_sessions(ctx: Ctx) -> dict[str, Any]:
    """#6: one account opens 50 SM sessions and drops them all (detached), then 300
    messages are sent to it."""
    name = ctx.victim(1)
    for i in range(50):
        try:
            conn = await _login(ctx.c2s, f"127.66.9.{i % 20 + 1}", name, PASSWORD, f"r{i}")
        except (OSError, TimeoutError):
            continue
        if conn is None:
            continue
        reader, writer = conn
        writer.write(b"<enable xmlns='urn:xmpp:sm:3' resume='true'/><presence/>")
        await _read_some(reader, b"enabled", 5)
        _close(writer)
    sender = await _login(ctx.c2s, "127.66.9.100", ctx.victim(2), PASSWORD)
    if sender is None:
        return {"error": "sender login failed"}
    _, writer = sender
    body = "x" * 200
    for i in range(300):
        writer.write(
            f"<message type='chat' to='{name}@localhost' id='d{i}'><body>{i} {body}"
            "</body></message>".encode()
        )
        await writer.drain()
    await asyncio.sleep(10)
    _close(writer)
    return {"detached": 50, "messages": 300}


async def offline_flood(ctx: Ctx) -> dict[str, Any]:
    """#5: 300 messages of 4 KB to an offline account, then it logs in: how many arrive."""
    name = ctx.victim(3)
    sender = await _login(ctx.c2s, "127.66.10.1", ctx.victim(4), PASSWORD)
    if sender is None:
        return {"error": "sender login failed"}
    _, writer = sender
    pad = "y" * 4000
    for i in range(300):
        writer.write(
            f"<message type='chat' to='{name}@localhost' id='o{i}'><body>off{i}x {pad}"
            "</body></message>".encode()
        )
        await writer.drain()
    await asyncio.sleep(3)
    _close(writer)
    conn = await _login(ctx.c2s, "127.66.10.2", name, PASSWORD)
    if conn is None:
        return {"error": "victim login failed"}
    reader, writer = conn
    writer.write(b"<presence/>")
    data = await _read_some(reader, b"off299x", 30)
    _close(writer)
    got = len(set(re.findall(rb"off(\d+)x", data)))
    return {"sent": 300, "delivered_on_login": got}


async def room_abuse(ctx: Ctx) -> dict[str, Any]:
    """#9: one user asks for 100 new rooms, then posts 50 x 200 KB into one of them."""
    out: dict[str, Any] = {"room_requests": 100, "rooms_joined_or_created": 0}
    conn = await _login(ctx.c2s, "127.66.11.1", ctx.victim(5), PASSWORD)
    if conn is None:
        return {"error": "login failed"}
    reader, writer = conn
    try:
        for i in range(100):
            writer.write(
                f"<presence to='abuse{i}@conference.localhost/x'>"
                "<x xmlns='http://jabber.org/protocol/muc'/></presence>".encode()
            )
            data = await _read_some(reader, b"</presence>", 5)
            if not data:
                out["closed_after_requests"] = i + 1
                break
            out["rooms_joined_or_created"] += b"type='error'" not in data and (
                b'type="error"' not in data
            )
    except OSError as exc:
        out["closed_by_server"] = f"{type(exc).__name__} after {i + 1} requests"
    finally:
        _close(writer)
    conn = await _login(ctx.c2s, "127.66.11.2", ctx.victim(5), PASSWORD, "big")
    if conn is None:
        return {**out, "error": "second login failed"}
    reader, writer = conn
    big = "z" * 200_000
    sent = 0
    try:
        writer.write(
            b"<presence to='abuse0@conference.localhost/y'>"
            b"<x xmlns='http://jabber.org/protocol/muc'/></presence>"
        )
        await _read_some(reader, b"110", 5)
        for i in range(50):
            writer.write(
                f"<message type='groupchat' to='abuse0@conference.localhost'>"
                f"<body>{i}{big}</body></message>".encode()
            )
            await writer.drain()
            sent += 1
        await asyncio.sleep(3)
    except OSError as exc:
        out["big_closed_by_server"] = type(exc).__name__
    finally:
        _close(writer)
    return {**out, "big_messages_sent": sent}


async def roster_flood(ctx: Ctx) -> dict[str, Any]:
    """#13: 20 roster items with 1 KB group names (refused), then 600 valid ones (the
    per-account cap is 500), then a roster fetch that must fit the send queue."""
    conn = await _login(ctx.c2s, "127.66.12.1", ctx.victim(6), PASSWORD)
    if conn is None:
        return {"error": "login failed"}
    reader, writer = conn
    items = [("h" * 1000, i) for i in range(20)] + [("g" * 60, i) for i in range(20, 620)]
    for group, i in items:
        writer.write(
            f"<iq type='set' id='r{i}'><query xmlns='jabber:iq:roster'><item "
            f"jid='c{i}@example.org'><group>{group}</group></item></query></iq>".encode()
        )
        await writer.drain()
    sets = await _read_some(reader, b'id="r619"', 30)
    writer.write(b"<iq type='get' id='fetch'><query xmlns='jabber:iq:roster'/></iq>")
    data = await _read_some(reader, b"</query></iq>", 30)
    _close(writer)
    ok = re.findall(rb'<iq[^>]*type="result"[^>]*id="r(\d+)"', sets)
    return {
        "items_sent": len(items),
        "accepted_long_groups": sum(int(i) < 20 for i in ok),
        "accepted_valid": sum(int(i) >= 20 for i in ok),
        "fetch_items": data.count(b"<item "),
        "fetch_bytes": len(data),
    }


async def component_flood(ctx: Ctx) -> dict[str, Any]:
    """#11: 1,000 wrong-secret component handshakes from one address."""
    answered = 0

    async def one(i: int) -> None:
        nonlocal answered
        try:
            reader, writer = await _open(ctx.component, "127.66.13.1")
        except (OSError, TimeoutError):
            return
        try:
            writer.write(
                b"<stream:stream xmlns='jabber:component:accept' xmlns:stream="
                b"'http://etherx.jabber.org/streams' to='irc.localhost'>"
            )
            await _read_some(reader, b">", 5)
            writer.write(b"<handshake>%040x</handshake>" % i)
            data = await _read_some(reader, b"not-authorized", 5)
            answered += b"not-authorized" in data
        finally:
            _close(writer)

    for start in range(0, 1000, 100):
        await asyncio.gather(*(one(i) for i in range(start, start + 100)))
    return {"handshakes": 1000, "answered_not_authorized": answered}


async def probes(ctx: Ctx) -> dict[str, Any]:
    """#14 content=, #15 absurd history dates, #8 MAM of a password room: answered
    correctly and nothing else disturbed."""
    status, raw = await _http_post(
        ctx.http,
        "127.66.14.1",
        f"<body rid='1' xmlns='{NS_BIND}' "
        "to='localhost' wait='5' hold='1' ver='1.6' "
        "content='text/html'/>",
    )
    ctype = re.search(rb"(?i)content-type: ([^\r\n]+)", raw)
    conn = await _login(ctx.c2s, "127.66.14.2", ctx.victim(7), PASSWORD)
    history = b""
    if conn is not None:
        reader, writer = conn
        writer.write(
            f"<presence to='{ROOM}/probe7'><x xmlns='http://jabber.org/protocol/muc'>"
            "<history since='0001-01-01T00:00:00+14:00'/></x></presence>".encode()
        )
        history = await _read_some(reader, b"110", 10)
        _close(writer)
    return {
        "bosh_status": status,
        "bosh_content_type": ctype.group(1).decode() if ctype else None,
        "history_since_year_1_joined": b"110" in history,
        "history_internal_error": b"internal-server-error" in history,
    }


ATTACKS: list[tuple[str, str, Attack]] = [
    ("bosh_bad_key", "#1", bosh_bad_key),
    ("http_slowloris", "#2", http_slowloris),
    ("c2s_slowloris", "held-up", c2s_slowloris),
    ("connection_flood", "#2", connection_flood),
    ("forwarded_spoof", "#3", forwarded_spoof),
    ("login_limiter", "#4", login_limiter),
    ("offline_flood", "#5", offline_flood),
    ("detached_sessions", "#6", detached_sessions),
    ("room_abuse", "#9", room_abuse),
    ("websocket_handshakes", "#10", websocket_handshakes),
    ("bosh_unauthenticated", "#10", bosh_unauthenticated),
    ("component_flood", "#11", component_flood),
    ("roster_flood", "#13", roster_flood),
    ("probes", "#8/#14/#15", probes),
]


def _server(ctx: Ctx) -> tuple[int | None, int | None]:
    pid = ctx.stack.xmppd_pid()
    return (rss_kib(pid), open_fds(pid)) if pid else (None, None)


async def replay(args: Any, stack: Stack) -> dict[str, Any]:
    ledger = Ledger()
    endpoint = Endpoint("127.0.0.1", stack.xmppd.port, stack.xmppd.http_port)
    good = make_clients(args.clients, endpoint, ledger, room_share=1.0)
    stop, quiet = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(c.run(stop, quiet, args.interval, 0.0)) for c in good]
    await wait_ready(good, 1.0, 120)
    await asyncio.sleep(10)
    ctx = Ctx(stack, args.clients)
    only = set(args.only.split(",")) if getattr(args, "only", "") else None
    results = []
    for name, finding, attack in ATTACKS:
        if only and name not in only:
            continue
        rss0, fds0 = _server(ctx)
        first = len(ledger.sent_at)
        ledger.latencies = []
        ledger.latencies_by_kind = {}
        retries0 = _bosh_retries(good)
        peak = [rss0 or 0, fds0 or 0]

        async def watch(peak: list[int] = peak) -> None:
            while True:
                await asyncio.sleep(1)
                r, f = _server(ctx)
                peak[0], peak[1] = max(peak[0], r or 0), max(peak[1], f or 0)

        watcher = asyncio.create_task(watch())
        t0 = time.monotonic()
        try:
            detail = await asyncio.wait_for(attack(ctx), 120)
        except Exception as exc:  # the attack's own failure is reported, the replay goes on
            detail = {"error": f"{type(exc).__name__}: {exc}"}
        took = time.monotonic() - t0
        watcher.cancel()
        last = len(ledger.sent_at)
        lat = list(ledger.latencies)
        by_kind = {kind: list(values) for kind, values in ledger.latencies_by_kind.items()}
        await asyncio.sleep(args.settle)  # deliveries in flight arrive; the server settles
        rss1, fds1 = _server(ctx)
        delivery: dict[str, int] = {}
        for c in good:
            for k, v in ledger.count(c.rx, first, last).items():
                delivery[k] = delivery.get(k, 0) + v
        row = {
            "attack": name,
            "finding": finding,
            "took_s": round(took, 1),
            "detail": detail,
            "good_clients_ready": sum(c.ready.is_set() for c in good),
            "delivery": delivery,
            "latency_ms": {
                "p50": _ms(pct(lat, 50)),
                "p99": _ms(pct(lat, 99)),
                "max": _ms(max(lat, default=None)),
                "samples": len(lat),
                "p99_by_transport": {
                    kind: _ms(pct(values, 99)) for kind, values in by_kind.items()
                },
            },
            "good_bosh_requests_retried": _bosh_retries(good) - retries0,
            "rss_kib": {"before": rss0, "peak": peak[0], "after": rss1},
            "fds": {"before": fds0, "peak": peak[1], "after": fds1},
        }
        results.append(row)
        print(f"[attack] {row}", flush=True)
    quiet.set()
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "kind": "attacks",
        "parameters": vars(args),
        "attacks": results,
        "not_replayed": {
            "#7": "nick look-alikes: correctness, no load (unit/integration tests)",
            "#12": "phpBB bans: needs the phpBB backend",
            "#16": "file modes: no load",
        },
    }


def _bosh_retries(clients: list[SoakClient]) -> int:
    """BOSH requests the good clients sent again because their connection failed."""
    return sum(getattr(c.link, "retries", 0) for c in clients)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)
