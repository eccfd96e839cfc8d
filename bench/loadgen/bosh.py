"""BOSH (XEP-0124/0206): session set-up rate, then room round trips with N long-pollers.

Phase 1 sets up `sessions` BOSH sessions, `concurrency` at a time: session creation request,
SASL PLAIN, `xmpp:restart`, resource bind, initial presence — each step a real HTTP/1.1 POST
to `/http-bind` (the load client keeps one or two keep-alive connections per session, as a
browser does). The headline is sessions set up per second over that phase.

Phase 2: every session joins one room (created first by a c2s owner) and then long-polls
continuously (hold=1: one request always held by the server). `senders` of them post a
groupchat message, wait for its echo through their own long poll, pause `interval_s`, and
post again, for `duration` seconds. Round trip = post written -> echo received by the
sender; delivery latency = post written -> received by each of the N long-pollers.

HTTP is spoken with h11 (the sans-IO HTTP/1.1 library hypercorn itself uses), over asyncio
streams; responses are parsed with lxml. Both are far cheaper than a full HTTP client.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import random
import secrets
import time
from dataclasses import dataclass, field

import h11
from lxml import etree

from . import muc, xmpp
from .meter import Meter, percentile
from .target import Target

HEADLINE = ("sessions_per_s", "sessions/s", True)
DEFAULTS = {
    "sessions": 200,
    "concurrency": 50,
    "senders": 5,
    "interval_s": 0.1,
    "duration": 10.0,
    "wait": 30,
    "max_seconds": 120.0,
}
QUICK = {"sessions": 40, "duration": 3.0}

NS_BIND = "http://jabber.org/protocol/httpbind"
NS_XBOSH = "urn:xmpp:xbosh"
NS_CLIENT = "jabber:client"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_STREAM = "http://etherx.jabber.org/streams"
NS_BIND_RES = "urn:ietf:params:xml:ns:xmpp-bind"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
PATH = "/http-bind"


def accounts_needed(params: dict) -> int:
    return int(params["sessions"]) + 1


class BoshError(xmpp.XmppError):
    """The server answered with an HTTP error or a BOSH terminate."""


class HttpClosed(BoshError, ConnectionResetError):
    """The server closed the HTTP connection before or during the response."""


class HttpStatus(BoshError):
    """The server answered with an HTTP status other than 200."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


class HttpClient:
    """One keep-alive HTTP/1.1 connection (h11), one request at a time; ``source``: the
    local address to connect from (bench/soak gives each client its own)."""

    def __init__(self, host: str, port: int, source: str | None = None) -> None:
        self.host, self.port, self.source = host, port, source
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.conn = h11.Connection(h11.CLIENT)

    async def _open(self) -> None:
        self.close()
        local = (self.source, 0) if self.source else None
        self.reader, self.writer = await asyncio.open_connection(
            self.host, self.port, local_addr=local
        )
        self.conn = h11.Connection(h11.CLIENT)

    async def post(self, body: bytes, target: str = PATH) -> bytes:
        if self.writer is None or self.conn.our_state is not h11.IDLE:
            await self._open()
        assert self.reader is not None and self.writer is not None
        headers = [
            ("Host", f"{self.host}:{self.port}"),
            ("Content-Type", "text/xml; charset=utf-8"),
            ("Content-Length", str(len(body))),
        ]
        out = self.conn.send(h11.Request(method="POST", target=target, headers=headers))
        out += self.conn.send(h11.Data(data=body)) + self.conn.send(h11.EndOfMessage())
        self.writer.write(out)
        status, chunks = 0, []
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                data = await self.reader.read(65536)
                if not data:
                    self.close()
                    raise HttpClosed("HTTP connection closed by the server")
                self.conn.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                self.close()
                raise HttpClosed("HTTP connection closed mid-response")
        if self.conn.our_state is h11.MUST_CLOSE or self.conn.their_state is h11.MUST_CLOSE:
            self.close()
        else:
            self.conn.start_next_cycle()
        if status != 200:
            raise HttpStatus(status, f"HTTP {status}: {b''.join(chunks)[:200]!r}")
        return b"".join(chunks)

    def abort(self) -> None:
        """Drop the connection at once (no FIN handshake): a client cut mid-request."""
        if self.writer is not None:
            self.writer.transport.abort()
        self.reader = self.writer = None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class BoshSession:
    """A BOSH client session: rid bookkeeping, two HTTP connections, an inbox of stanzas."""

    host: str
    port: int
    domain: str
    wait: int
    sid: str = ""
    rid: int = field(default_factory=lambda: random.randint(1 << 20, 1 << 40))
    jid: str = ""
    inbox: list[etree._Element] = field(default_factory=list)
    idle: list[HttpClient] = field(default_factory=list)
    #: the body of this session's own message in flight (phase 2), to spot its echo
    pending: str = ""

    def _body(self, payload: str = "", **attrs: str) -> bytes:
        self.rid += 1
        extra = "".join(f" {k}='{v}'" for k, v in attrs.items())
        sid = f" sid='{self.sid}'" if self.sid else ""
        return (
            f"<body rid='{self.rid}'{sid} xmlns='{NS_BIND}' xmlns:xmpp='{NS_XBOSH}'{extra}>"
            f"{payload}</body>"
        ).encode()

    async def _post(self, data: bytes) -> etree._Element:
        http = self.idle.pop() if self.idle else HttpClient(self.host, self.port)
        try:
            raw = await http.post(data)
        except BaseException:
            http.close()
            raise
        self.idle.append(http)
        body = etree.fromstring(raw)
        if body.get("type") == "terminate":
            raise BoshError(f"terminated: {body.get('condition')}")
        self.inbox.extend(body)
        return body

    async def create(self) -> None:
        body = await self._post(
            self._body(
                to=self.domain,
                wait=str(self.wait),
                hold="1",
                ver="1.6",
                content="text/xml; charset=utf-8",
                **{"xml:lang": "en", "xmpp:version": "1.0"},
            )
        )
        self.sid = body.get("sid") or ""
        if not self.sid:
            raise BoshError("no sid in the session creation response")

    async def send(self, payload: str = "", **attrs: str) -> None:
        await self._post(self._body(payload, **attrs))

    async def expect(self, tag: str, limit_s: float = 30.0) -> etree._Element:
        """Poll (empty bodies) until an element with ``tag`` is in the inbox; take it."""
        async with asyncio.timeout(limit_s):
            while True:
                for i, el in enumerate(self.inbox):
                    if el.tag == tag:
                        del self.inbox[i]
                        return el
                await self.send()

    async def login(self, user: str, password: str, resource: str) -> None:
        await self.create()
        await self.expect(f"{{{NS_STREAM}}}features")
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        await self.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{token}</auth>")
        result = await self._sasl_result()
        if result != "success":
            raise BoshError(f"SASL {result}")
        self.inbox.clear()
        await self.send(to=self.domain, **{"xml:lang": "en", "xmpp:restart": "true"})
        await self.expect(f"{{{NS_STREAM}}}features")
        await self.send(
            f"<iq type='set' id='bind' xmlns='{NS_CLIENT}'><bind xmlns='{NS_BIND_RES}'>"
            f"<resource>{resource}</resource></bind></iq>"
        )
        iq = await self.expect(f"{{{NS_CLIENT}}}iq")
        self.jid = iq.findtext(f".//{{{NS_BIND_RES}}}jid") or ""
        if iq.get("type") != "result" or not self.jid:
            raise BoshError("bind failed")
        await self.send(f"<presence xmlns='{NS_CLIENT}'/>")

    async def _sasl_result(self) -> str:
        async with asyncio.timeout(30):
            while True:
                for el in self.inbox:
                    if el.tag in (f"{{{NS_SASL}}}success", f"{{{NS_SASL}}}failure"):
                        return etree.QName(el).localname
                await self.send()

    async def join(self, room: str, nick: str) -> None:
        await self.send(
            f"<presence xmlns='{NS_CLIENT}' to='{room}/{nick}'>"
            f"<x xmlns='{muc.NS_MUC}'><history maxstanzas='0'/></x></presence>"
        )
        async with asyncio.timeout(60):
            while True:
                for el in self.inbox:
                    if el.tag == f"{{{NS_CLIENT}}}presence" and el.get("from") == f"{room}/{nick}":
                        if el.get("type") == "error":
                            raise BoshError("MUC join refused")
                        codes = {s.get("code") for s in el.iter(f"{{{NS_MUC_USER}}}status")}
                        if "110" in codes:
                            self.inbox.clear()
                            return
                await self.send()

    async def terminate(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self._post(self._body(type="terminate"))
        for http in self.idle:
            http.close()


async def run(target: Target, params: dict) -> dict:
    if not target.http_port:
        raise RuntimeError(f"{target.name}: no HTTP port known for BOSH")
    n = int(params["sessions"])
    sessions: list[BoshSession] = []
    owner: xmpp.Client | None = None
    perf = time.perf_counter
    errors = 0
    try:
        # -- phase 1: set-up rate ------------------------------------------------------
        sem = asyncio.Semaphore(int(params["concurrency"]))
        setup_times: list[float] = []

        async def set_up(i: int) -> BoshSession | None:
            nonlocal errors
            user, password = target.users[1 + i]
            s = BoshSession(target.host, target.http_port, target.domain, int(params["wait"]))
            async with sem:
                t0 = perf()
                try:
                    async with asyncio.timeout(60):
                        await s.login(user, password, "bosh")
                except (OSError, BoshError, TimeoutError, etree.XMLSyntaxError):
                    errors += 1
                    return None
                setup_times.append(perf() - t0)
            return s

        meter = Meter(target.pid)
        meter.start()
        made = await asyncio.gather(*(set_up(i) for i in range(n)))
        meter.stop()
        setup = meter.as_dict()
        sessions = [s for s in made if s is not None]
        rate = len(sessions) / max(1e-9, meter.wall)
        if len(sessions) < n // 2:
            raise BoshError(f"only {len(sessions)} of {n} BOSH sessions could be set up")

        # -- phase 2: N long-pollers in one room --------------------------------------
        room = muc.new_room(target)
        owner = await xmpp.connect(target.host, target.port, target.domain)
        o_user, o_pass = target.users[0]
        async with asyncio.timeout(30):
            await owner.login(o_user, o_pass, target.mechanism, "owner", presence=True)
            await muc.create_room(owner, room, "owner")
        owner.on_stanza = lambda e: None
        tag = secrets.token_hex(2)
        join_sem = asyncio.Semaphore(20)

        async def join(k: int, s: BoshSession) -> None:
            async with join_sem:
                await s.join(room, f"b{tag}-{k}")

        await asyncio.gather(*(join(k, s) for k, s in enumerate(sessions)))

        sent_at: dict[str, float] = {}
        delivery: list[float] = []
        round_trips: list[float] = []
        echo: dict[str, asyncio.Event] = {}
        stop = asyncio.Event()

        def take(s: BoshSession) -> None:
            now = perf()
            for el in s.inbox:
                if el.tag != f"{{{NS_CLIENT}}}message":
                    continue
                body = el.findtext(f"{{{NS_CLIENT}}}body") or ""
                t0 = sent_at.get(body)
                if t0 is not None:
                    delivery.append(now - t0)
                    if body == s.pending:
                        echo[body].set()
            s.inbox.clear()

        async def long_poll(s: BoshSession) -> None:
            while not stop.is_set():
                try:
                    await s.send()
                except (OSError, BoshError, etree.XMLSyntaxError):
                    nonlocal errors
                    errors += 1
                    return
                take(s)

        async def sender(s: BoshSession, k: int) -> None:
            counter = itertools.count()
            while not stop.is_set():
                body = f"rt {tag} {k} {next(counter)}"
                ev = echo[body] = asyncio.Event()
                s.pending = body
                sent_at[body] = t0 = perf()
                await s.send(
                    f"<message xmlns='{NS_CLIENT}' to='{room}' type='groupchat'>"
                    f"<body>{body}</body></message>"
                )
                take(s)
                try:
                    async with asyncio.timeout(10):
                        await ev.wait()
                except TimeoutError:
                    continue
                round_trips.append(perf() - t0)
                await asyncio.sleep(float(params["interval_s"]))

        pollers = [asyncio.create_task(long_poll(s)) for s in sessions]
        await asyncio.sleep(0.5)
        meter2 = Meter(target.pid)
        meter2.start()
        senders = [
            asyncio.create_task(sender(s, k))
            for k, s in enumerate(sessions[: int(params["senders"])])
        ]
        await asyncio.sleep(float(params["duration"]))
        stop.set()
        for t in senders:
            t.cancel()
        meter2.stop()
        # the held requests return within `wait`; do not wait for them: cancel
        for t in pollers:
            t.cancel()
        await asyncio.gather(*pollers, *senders, return_exceptions=True)
    finally:
        if owner is not None:
            owner.close()
        await asyncio.gather(*(s.terminate() for s in sessions), return_exceptions=True)
    setup_times.sort()
    delivery.sort()
    round_trips.sort()
    return {
        "sessions_per_s": round(rate, 1),
        "sessions": len(sessions),
        "setup_p50_ms": round(1000 * percentile(setup_times, 50), 2),
        # the details table's p50/p99 columns: the senders' message round trips
        "p50_ms": round(1000 * percentile(round_trips, 50), 2),
        "p99_ms": round(1000 * percentile(round_trips, 99), 2),
        "round_trips": len(round_trips),
        "delivery_p50_ms": round(1000 * percentile(delivery, 50), 2),
        "delivery_p99_ms": round(1000 * percentile(delivery, 99), 2),
        "deliveries": len(delivery),
        "errors": errors,
        "setup_client_cpu_pct": setup["client_cpu_pct"],
        "setup_server_cpu_pct": setup["server_cpu_pct"],
        **meter2.as_dict(),
    }
