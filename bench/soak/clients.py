"""A well-behaved chat client for the soak: logs in (PLAIN on loopback), keeps XEP-0198
on TCP and WebSocket, joins the site room, chats at a Poisson rate, and after any cut
resumes its SM session or — if the session is gone — logs in again, rejoins and fetches
what it missed from the room's archive (MAM, after the last stanza-id it saw).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .ledger import BODY, Ledger, Receiver, body
from .links import BoshLink, Link, LinkLost, TcpLink, WsLink
from .services import PASSWORD, ROOM, user

NS_SM = "urn:xmpp:sm:3"
#: Longest wait for one answer (join, archive page) before the session is given up.
STEP_S = 60.0
NS_MAM = "urn:xmpp:mam:2"
_Q = "['\"]"
_ATTR = {
    name: re.compile(rf"\s{name}={_Q}([^'\"]*){_Q}") for name in ("id", "type", "from", "h", "to")
}
_STANZA_ID = re.compile(
    rf"<stanza-id[^>]*\sid={_Q}([^'\"]+){_Q}[^>]*by={_Q}{ROOM}{_Q}"
    rf"|<stanza-id[^>]*by={_Q}{ROOM}{_Q}[^>]*\sid={_Q}([^'\"]+){_Q}"
)
_ANY_STANZA_ID = re.compile(rf"<stanza-id[^>]*\sid={_Q}([^'\"]+){_Q}")
_RESULT_ID = re.compile(rf"<result[^>]*\sid={_Q}([^'\"]+){_Q}")
_LAST = re.compile(r"<last>([^<]+)</last>")
_COMPLETE = re.compile(rf"<fin[^>]*complete={_Q}true{_Q}")
_CHAT = re.compile(r"<body>soak1 (\d+)</body>")
_SELF = re.compile(rf"<status[^>]*code={_Q}110{_Q}")


def attr(element: str, name: str) -> str:
    m = _ATTR[name].search(element[: element.find(">")])
    return m.group(1) if m else ""


def stanza_id(element: str) -> str:
    m = _STANZA_ID.search(element)
    return (m.group(1) or m.group(2)) if m else ""


def account_stanza_id(element: str) -> str:
    """The XEP-0359 id the recipient's archive gave a one-to-one message ('' if none)."""
    m = _ANY_STANZA_ID.search(element)
    return m.group(1) if m else ""


@dataclass
class Endpoint:
    host: str
    c2s_port: int
    http_port: int
    domain: str = "localhost"

    def link(self, kind: str) -> Link:
        if kind == "tcp":
            return TcpLink(self.host, self.c2s_port, self.domain)
        if kind == "websocket":
            return WsLink(f"ws://{self.host}:{self.http_port}/xmpp-websocket", self.domain)
        return BoshLink(self.host, self.http_port, self.domain)


@dataclass
class Stats:
    logins: int = 0
    login_failures: int = 0
    resumed: int = 0
    resume_failed: int = 0
    rejoins: int = 0
    mam_pages: int = 0
    sent: int = 0
    chats_sent: int = 0
    chats_received: int = 0
    cuts: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class SoakClient:
    def __init__(
        self, idx: int, kind: str, in_room: bool, endpoint: Endpoint, ledger: Ledger, source: str
    ) -> None:
        self.idx, self.kind, self.in_room = idx, kind, in_room
        self.endpoint, self.ledger, self.source = endpoint, ledger, source
        self.user = user(idx)
        self.nick = f"n{idx}"
        self.rx = Receiver()
        self.stats = Stats()
        self.link: Link | None = None
        self.ready = asyncio.Event()  # logged in, in the room, caught up
        self.phase = "new"  # where the client is (diagnostics for clients not ready)
        self.sm_id = ""
        self.h_in = 0
        self.h_out = 0  # our stanzas since <enable/> (XEP-0198 §4)
        self.unacked: collections.deque[tuple[int, str, int]] = collections.deque()
        self.last_sid = ""  # where the next archive catch-up starts
        self._catching_up = False
        self._live_sid = ""
        self._iq: dict[str, asyncio.Future[str]] = {}
        self._mam_pending: dict[str, list[tuple[str, int]]] = {}
        self._n = 0
        self.peers: Callable[[], int] | None = None
        self.on_groupchat: Callable[[int, int], None] | None = None

    # -- life --------------------------------------------------------------------------
    async def run(
        self, stop: asyncio.Event, quiet: asyncio.Event, mean_interval: float, chat_share: float
    ) -> None:
        """Stay connected until ``stop``; chat while connected, until ``quiet``."""
        chatter = asyncio.create_task(self._chat(quiet, mean_interval, chat_share))
        delay = 0.0
        try:
            while not stop.is_set():
                if delay:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    if stop.is_set():
                        break
                try:
                    await self._session(stop)
                    delay = random.uniform(0.5, 3.0)
                except Exception as exc:  # any failure: count it, back off, reconnect
                    self._error(type(exc).__name__)
                    delay = min(30.0, max(1.0, delay * 2)) * random.uniform(0.5, 1.5)
                finally:
                    self.ready.clear()
                    if self.link is not None:
                        self.link.close()
                    for fut in self._iq.values():
                        if not fut.done():
                            fut.cancel()
                    self._iq.clear()
        finally:
            chatter.cancel()
            if self.link is not None:
                self.link.close()

    def _error(self, what: str) -> None:
        self.stats.errors[what] = self.stats.errors.get(what, 0) + 1

    async def _session(self, stop: asyncio.Event) -> None:
        link = self.endpoint.link(self.kind)
        self.link = link
        self.phase = "login"
        async with asyncio.timeout(90):
            features = await link.open(self.source)
            token = base64.b64encode(f"\0{self.user}\0{PASSWORD}".encode()).decode()
            link.send(
                f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
            )
            reply = await link.recv_until("<success", "<failure")
            if reply.startswith("<failure"):
                self.stats.login_failures += 1
                raise LinkLost("SASL failure")
            features = await link.restart()
            resumed = False
            if self.sm_id and link.sm and NS_SM in features:
                link.send(f"<resume xmlns='{NS_SM}' h='{self.h_in}' previd='{self.sm_id}'/>")
                reply = await link.recv_until("<resumed", "<failed")
                resumed = reply.startswith("<resumed")
                if resumed:
                    self.stats.resumed += 1
                    self._resend(link, int(attr(reply, "h") or 0))
                else:
                    self.stats.resume_failed += 1
                    self.sm_id = ""
            if not resumed:
                await self._bind(link, features)
            self.stats.logins += 1
        reader = asyncio.create_task(self._read(link))
        try:
            if not resumed:
                await self._join_and_catch_up(link)
            elif self._catching_up:  # resumed, but an earlier catch-up was cut short
                await self._catch_up(link)
            self.ready.set()
            self.phase = "ready"
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if reader.done():
                reader.result()
        finally:
            reader.cancel()

    async def _bind(self, link: Link, features: str) -> None:
        link.send(
            "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            "<resource>soak</resource></bind></iq>"
        )
        reply = await link.recv_until("<iq")
        if attr(reply, "type") != "result":
            raise LinkLost(f"bind failed: {reply[:200]}")
        self.h_in = 0
        self.sm_id = ""
        if link.sm and NS_SM in features:
            link.send(f"<enable xmlns='{NS_SM}' resume='true'/>")
            reply = await link.recv_until("<enabled", "<failed")
            if reply.startswith("<enabled"):
                self.sm_id = attr(reply, "id")
        self.h_out = 0
        self.unacked.clear()
        self._stanza(link, "<presence/>")

    async def _join_and_catch_up(self, link: Link) -> None:
        if not self.in_room:
            return
        self.stats.rejoins += 1
        if self.rx.joined_at:  # a rejoin: the archive fills the gap (see _catch_up)
            self._catching_up, self._live_sid = True, ""
        fut = asyncio.get_running_loop().create_future()
        self._iq["join"] = fut
        self._stanza(
            link,
            f"<presence to='{ROOM}/{self.nick}'><x xmlns='http://jabber.org/protocol/muc'>"
            "<history maxstanzas='0'/></x></presence>",
        )
        self.phase = "join"
        async with asyncio.timeout(STEP_S):
            reply = await fut
        if attr(reply, "type") == "error":
            raise LinkLost(f"join refused: {reply[:200]}")
        if not self.rx.joined_at:
            self.rx.joined_at = time.monotonic()
            return
        await self._catch_up(link)

    async def _catch_up(self, link: Link) -> None:
        """Archive pages after the last stanza-id seen, until complete.

        Live messages arriving meanwhile (from the join on: ``_catching_up`` is set
        before the join is sent) must not move the resume point past the gap: were this
        session cut mid-way, the next one would start after them and never fetch the
        rest of the gap."""
        await self._page_archive(link)  # cut mid-way: the gap stays open for the next session
        self._catching_up = False
        if self._live_sid:
            self.last_sid = self._live_sid

    async def _page_archive(self, link: Link) -> None:
        after = self.last_sid
        while True:
            self._n += 1
            qid = f"mam{self._n}"
            rsm = f"<after>{after}</after>" if after else ""
            fut = asyncio.get_running_loop().create_future()
            self._iq[qid] = fut
            self._mam_pending[qid] = []
            self._stanza(
                link,
                f"<iq type='set' id='{qid}' to='{ROOM}'><query xmlns='{NS_MAM}' "
                f"queryid='{qid}'><set xmlns='http://jabber.org/protocol/rsm'>"
                f"<max>250</max>{rsm}</set></query></iq>",
            )
            self.phase = f"mam page {self.stats.mam_pages + 1} after {after or '-'}"
            async with asyncio.timeout(STEP_S):
                reply = await fut
            results = self._mam_pending.pop(qid, [])
            self.stats.mam_pages += 1
            if attr(reply, "type") != "result":
                raise LinkLost(f"MAM failed: {reply[:300]}")
            for archive_id, serial in results:
                if serial >= 0:
                    self.rx.got_archived(serial)
                self.last_sid = archive_id
            m = _LAST.search(reply)
            if _COMPLETE.search(reply) or not m or not results:
                return
            after = m.group(1)

    # -- input -------------------------------------------------------------------------
    async def _read(self, link: Link) -> None:
        while True:
            element = await link.recv()
            if element.startswith(("<stream:error", "</stream:stream>", "<close")):
                raise LinkLost(element[:120])
            if element.startswith("<r ") or element.startswith("<r/"):
                link.send(f"<a xmlns='{NS_SM}' h='{self.h_in}'/>")
                continue
            if element.startswith("<a "):
                self._acked(int(attr(element, "h") or 0))
                continue
            if element.startswith(("<enabled", "<resumed", "<failed")):
                continue
            self.h_in = (self.h_in + 1) & 0xFFFFFFFF
            if element.startswith("<message"):
                self._message(element)
            elif element.startswith("<presence"):
                self._presence(element)
            elif element.startswith("<iq"):
                self._iq_in(element, link)

    def _message(self, element: str) -> None:
        if "<result" in element and NS_MAM in element:
            m = _RESULT_ID.search(element)
            b = BODY.search(element)
            qid = re.search(rf"queryid={_Q}([^'\"]+){_Q}", element)
            if m and qid and qid.group(1) in self._mam_pending:
                serial = int(b.group(1)) if b else -1  # -1: a bridge's or other message
                self._mam_pending[qid.group(1)].append((m.group(1), serial))
            return
        b = BODY.search(element)
        if b is None:
            m = _CHAT.search(element)
            if m:
                self.ledger.chat_received(int(m.group(1)), account_stanza_id(element))
                self.stats.chats_received += 1
            return
        if attr(element, "type") != "groupchat":
            return
        serial, sender = int(b.group(1)), int(b.group(2))
        sid = stanza_id(element)
        if sid and self._catching_up:
            self._live_sid = sid  # newer than the gap being paged: applied once it is closed
        elif sid:
            self.last_sid = sid
        self.rx.got_live(serial)
        self.ledger.latency(serial, self.idx, self.kind)
        if sender == self.idx and attr(element, "from") == f"{ROOM}/{self.nick}":
            self.ledger.echoed(serial)
        if self.on_groupchat is not None:
            self.on_groupchat(serial, self.idx)

    def _presence(self, element: str) -> None:
        if attr(element, "from") == f"{ROOM}/{self.nick}" and "join" in self._iq:
            if _SELF.search(element) or attr(element, "type") == "error":
                fut = self._iq.pop("join")
                if not fut.done():
                    fut.set_result(element)

    def _iq_in(self, element: str, link: Link) -> None:
        ident, kind = attr(element, "id"), attr(element, "type")
        if kind in ("result", "error"):
            fut = self._iq.pop(ident, None)
            if fut is not None and not fut.done():
                fut.set_result(element)
        elif kind in ("get", "set"):
            self._stanza(
                link,
                f"<iq type='error' id='{ident}' to='{attr(element, 'from')}'>"
                "<error type='cancel'><service-unavailable "
                "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
            )

    # -- output ------------------------------------------------------------------------
    async def _chat(self, stop: asyncio.Event, mean: float, chat_share: float) -> None:
        await asyncio.sleep(random.uniform(0, mean))
        while not stop.is_set():
            await asyncio.sleep(random.expovariate(1.0 / mean))
            link = self.link
            if link is None or not self.ready.is_set() or stop.is_set():
                continue
            if self.in_room:
                self.send_room(link)
            if self.peers is not None and random.random() < chat_share:
                peer = random.randrange(self.peers())
                chat = self.ledger.new_chat(peer)
                self._stanza(
                    link,
                    f"<message type='chat' to='{user(peer)}@{self.endpoint.domain}' id='c{chat}'>"
                    f"<body>soak1 {chat}</body></message>",
                    chat,
                )
                if self.sm_id:
                    link.send(f"<r xmlns='{NS_SM}'/>")
                self.stats.chats_sent += 1

    def send_room(self, link: Link) -> None:
        serial = self.ledger.new(self.idx)
        self._stanza(
            link,
            f"<message type='groupchat' to='{ROOM}' id='g{serial}'>"
            f"<body>{body(serial, self.idx)}</body></message>",
        )
        self.stats.sent += 1

    # -- XEP-0198 on our side: what the server has acknowledged ------------------------
    def _stanza(self, link: Link, xml: str, chat: int = -1) -> None:
        """Send a stanza, remembered until the server acknowledges it (SM), or — on
        BOSH — until the HTTP request carrying it is answered."""
        if isinstance(link, BoshLink):
            on_ack = None if chat < 0 else (lambda: self.ledger.chat_acked(chat))
            link.send(xml, on_ack)
            return
        link.send(xml)
        if self.sm_id:
            self.h_out += 1
            self.unacked.append((self.h_out, xml, chat))

    def _acked(self, h: int) -> None:
        while self.unacked and self.unacked[0][0] <= h:
            _, _, chat = self.unacked.popleft()
            if chat >= 0:
                self.ledger.chat_acked(chat)

    def _resend(self, link: Link, h: int) -> None:
        """After <resumed h=…/>: what the server got is acknowledged, the rest sent again."""
        self._acked(h)
        pending = list(self.unacked)
        self.unacked.clear()
        self.h_out = h
        for _, xml, chat in pending:
            self._stanza(link, xml, chat)

    # -- faults ------------------------------------------------------------------------
    def cut(self) -> bool:
        if self.link is None or not self.ready.is_set():
            return False
        self.stats.cuts += 1
        self.link.cut_mid_stanza()
        return True
