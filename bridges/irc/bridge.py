"""The trio shell: one IRC connection (rotated, backed off) and one XMPP component, glued.

Everything that decides something lives in the sans-IO modules (client, muc, relay,
text, flood, state); this file owns sockets, timers and tasks only.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import random
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import trio
from lxml import etree

from bridges.component import Backoff, ComponentClient
from bridges.irc import client as ic
from bridges.irc import muc
from bridges.irc import state as st
from bridges.irc.config import BridgeConfig
from bridges.irc.flood import BoundedQueue, TokenBucket
from bridges.irc.protocol import LineBuffer, LineError, make, parse
from bridges.irc.relay import Formatter
from bridges.irc.text import privmsg_budget

log = logging.getLogger("bridges.irc")

#: Ends the current IRC connection with a reason (for the log).
Finish = Callable[[str], Awaitable[None]]


def reconnect_delay(floor: float, initial: float, maximum: float, failures: int) -> float:
    """floor + full jitter over the exponential step: never below the ghost-reap floor,
    never in lock-step with other clients (no reconnect storm)."""
    step = min(maximum, initial * (2 ** min(failures, 30)))
    return floor + random.uniform(0, step)


def content_key(nick: str, body: str) -> str:
    """Dedup key for a room without XEP-0359 stanza-ids (rooms without an archive on
    other servers): the same nick saying the same text again within the rejoin overlap
    counts as the same message; xmppd always stamps ids, so this is only a fallback."""
    digest = hashlib.sha256(f"{nick}\0{body}".encode()).hexdigest()[:24]
    return "~" + digest


class IrcBridge:
    def __init__(self, cfg: BridgeConfig) -> None:
        self.cfg = cfg
        self.fmt = Formatter(cfg.relay.nick_protection, cfg.irc.max_lines)
        self.state_path = Path(cfg.xmpp.state_file) if cfg.xmpp.state_file else None
        self.state = st.load(self.state_path, cfg.xmpp.dedup_size)
        self._state_changed = trio.Event()
        # IRC side
        self.irc: ic.IrcClient | None = None
        self._irc_stream: trio.abc.Stream | None = None
        self.irc_ready = False  # registered and in the channel
        self.irc_nick = cfg.irc.nick
        self.irc_queue: BoundedQueue[str] = BoundedQueue(cfg.irc.queue_size)
        self._irc_wake = trio.Event()
        self.irc_connections = 0
        # XMPP side
        self.joined = False
        self.occupants: set[str] = set()
        self.room_queue: BoundedQueue[str] = BoundedQueue(cfg.xmpp.queue_size)
        self._room_wake = trio.Event()
        self._sent: OrderedDict[str, str] = OrderedDict()
        self._pings: dict[str, float] = {}
        self._ids = itertools.count(1)
        self._rejoin_at: float | None = None
        self._last_ping = 0.0
        self.component = ComponentClient(
            host=cfg.xmpp.host,
            port=cfg.xmpp.port,
            domain=cfg.xmpp.domain,
            secret=cfg.xmpp.secret,
            on_stanza=self._on_stanza,
            on_connected=self._on_xmpp_connected,
            queue_size=cfg.xmpp.queue_size,
            backoff=Backoff(initial=cfg.xmpp.reconnect_initial, maximum=cfg.xmpp.reconnect_max),
        )

    # ================================================================== running
    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.component.run)
                nursery.start_soon(self._irc_loop)
                nursery.start_soon(self._room_sender)
                nursery.start_soon(self._room_watchdog)
                nursery.start_soon(self._state_saver)
                task_status.started()
        finally:
            st.save(self.state_path, self.state)

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}-{random.getrandbits(32):08x}"

    # ================================================================== IRC side
    async def _irc_loop(self) -> None:
        servers = self.cfg.server_list()
        icfg = self.cfg.irc
        failures = 0
        for attempt in itertools.count():
            host, port = servers[attempt % len(servers)]
            registered = await self._irc_session(host, port)
            failures = 0 if registered else failures + 1
            delay = reconnect_delay(
                icfg.reconnect_floor, icfg.reconnect_initial, icfg.reconnect_max, failures
            )
            log.info("event=irc_reconnect_wait seconds=%.2f failures=%d", delay, failures)
            await trio.sleep(delay)

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if not self.cfg.irc.tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    async def _irc_session(self, host: str, port: int) -> bool:
        """One connection from connect to close; True if it got as far as 001."""
        icfg = self.cfg.irc
        log.info("event=irc_connecting host=%s port=%d tls=%s", host, port, icfg.tls)
        try:
            with trio.fail_after(icfg.connect_timeout):
                if icfg.tls:
                    stream: trio.abc.Stream = await trio.open_ssl_over_tcp_stream(
                        host, port, ssl_context=self._ssl_context(), https_compatible=True
                    )
                    await stream.do_handshake()  # type: ignore[attr-defined]
                else:
                    stream = await trio.open_tcp_stream(host, port)
        except (OSError, trio.TooSlowError, trio.BrokenResourceError, ssl.SSLError) as exc:
            log.warning("event=irc_connect_failed host=%s port=%d error=%r", host, port, exc)
            return False
        self.irc_connections += 1
        settings = ic.ClientSettings(
            nick=icfg.nick,
            fallback_nicks=list(icfg.fallback_nicks),
            username=icfg.username,
            realname=icfg.realname,
            password=icfg.password,
            sasl_username=icfg.sasl_username,
            sasl_password=icfg.sasl_password,
            channels=[(icfg.channel, icfg.channel_key)],
            ping_interval=icfg.ping_interval,
            ping_timeout=icfg.ping_timeout,
            nick_reclaim_interval=icfg.nick_reclaim_interval,
            register_timeout=icfg.register_timeout,
        )
        client = ic.IrcClient(settings, trio.current_time())
        self.irc = client
        self._irc_stream = stream
        client.connection_made()
        bucket = TokenBucket(icfg.flood_burst, icfg.flood_rate, trio.current_time())
        reason = "closed"
        try:
            async with trio.open_nursery() as nursery:
                done = trio.Event()

                async def finish(why: str) -> None:
                    nonlocal reason
                    reason = why
                    done.set()

                nursery.start_soon(self._irc_reader, stream, client, finish)
                nursery.start_soon(self._irc_writer, stream, client, bucket, finish)
                nursery.start_soon(self._irc_ticker, client, finish)
                self._wake_irc()
                await done.wait()
                nursery.cancel_scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, ssl.SSLError) as exc:
            reason = repr(exc)
        finally:
            self.irc = None
            self._irc_stream = None
            self.irc_ready = False
            # never a graceful TLS close: a peer that stopped reading must not hang us
            await trio.aclose_forcefully(stream)
        log.warning(
            "event=irc_disconnected host=%s port=%d reason=%s registered=%s",
            host,
            port,
            reason,
            client.registered,
        )
        return client.registered

    async def _irc_reader(
        self, stream: trio.abc.Stream, client: ic.IrcClient, finish: Finish
    ) -> None:
        buf = LineBuffer()
        while True:
            try:
                data = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                await finish(f"read failed {exc!r}")
                return
            if not data:
                why = f"server closed mid-line ({buf.pending} bytes)" if buf.pending else "eof"
                await finish(why)
                return
            before = buf.dropped
            for raw in buf.feed(data):
                try:
                    line = parse(raw)
                except LineError:
                    log.info("event=irc_bad_line bytes=%d", len(raw))
                    continue
                try:
                    client.receive(line, trio.current_time())
                    self._handle_irc_events(client)
                except Exception:  # a bug on one odd line must not take the bridge down
                    log.exception("event=irc_line_failed command=%s", line.command)
            if buf.dropped > before:
                log.warning("event=irc_line_too_long dropped=%d", buf.dropped - before)
            self._wake_irc()
            if client.finished:
                await finish("server error")
                return

    async def _irc_ticker(self, client: ic.IrcClient, finish: Finish) -> None:
        while True:
            delay = client.tick(trio.current_time())
            self._handle_irc_events(client)
            self._wake_irc()
            if client.finished:
                await finish("lag check failed" if client.registered else "registration timeout")
                return
            await trio.sleep(min(delay, 1.0))

    def _wake_irc(self) -> None:
        self._irc_wake.set()

    async def _irc_writer(
        self, stream: trio.abc.Stream, client: ic.IrcClient, bucket: TokenBucket, finish: Finish
    ) -> None:
        channel = self.cfg.irc.channel
        pending: list[bytes] = []
        while True:
            pending.extend(client.take_output())
            line: bytes | None = None
            if pending:
                line = pending.pop(0)
            elif self.irc_ready and len(self.irc_queue):
                text = self.irc_queue.pop()
                line = make("PRIVMSG", channel, text)
            elif self.irc_ready and self.irc_queue.dropped:
                n = self.irc_queue.take_dropped()
                line = make("PRIVMSG", channel, f"(flood control: {n} lines dropped)")
            if line is None:
                self._irc_wake = trio.Event()
                await self._irc_wake.wait()
                continue
            wait = bucket.wait_time(trio.current_time())
            if wait > 0:
                await trio.sleep(wait)
            bucket.take(trio.current_time())
            try:
                await stream.send_all(line)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                await finish(f"write failed {exc!r}")
                return

    def _handle_irc_events(self, client: ic.IrcClient) -> None:
        channel = self.cfg.irc.channel.casefold()
        relay_joins = self.cfg.relay.joins_parts
        for ev in client.take_events():
            if isinstance(ev, ic.Registered):
                self.irc_nick = ev.nick
                log.info(
                    "event=irc_registered nick=%s caps=%s", ev.nick, sorted(client.caps_enabled)
                )
            elif isinstance(ev, ic.ChannelJoined):
                if ev.channel.casefold() == channel:
                    self.irc_ready = True
                    log.info("event=irc_channel_joined channel=%s", ev.channel)
            elif isinstance(ev, ic.Message):
                if ev.target.casefold() != channel:
                    continue
                body = self.fmt.irc_message(ev.nick, ev.text, ev.action)
                if body is not None:
                    self._to_room(body)
            elif isinstance(ev, ic.Kicked):
                if ev.nick.casefold() == client.nick.casefold():
                    self.irc_ready = False
                    log.warning("event=irc_kicked channel=%s by=%s", ev.channel, ev.by)
                elif relay_joins and ev.channel.casefold() == channel:
                    self._to_room(self.fmt.irc_kick(ev.nick, ev.by, ev.reason))
            elif isinstance(ev, ic.Joined):
                if relay_joins and ev.channel.casefold() == channel:
                    self._to_room(self.fmt.irc_join(ev.nick, ev.channel))
            elif isinstance(ev, ic.Parted):
                if relay_joins and ev.channel.casefold() == channel:
                    self._to_room(self.fmt.irc_part(ev.nick, ev.channel, ev.reason))
            elif isinstance(ev, ic.Quit):
                if relay_joins:
                    self._to_room(self.fmt.irc_quit(ev.nick, ev.reason))
            elif isinstance(ev, ic.NickChanged):
                if relay_joins:
                    self._to_room(self.fmt.irc_nick(ev.old, ev.new))
            elif isinstance(ev, ic.ServerError):
                log.warning("event=irc_server_error reason=%s", ev.reason)
            elif isinstance(ev, ic.Notice):
                log.warning("event=%s detail=%s", ev.event, ev.detail)

    def _to_irc(self, lines: list[str]) -> None:
        refused = sum(0 if self.irc_queue.put(text) else 1 for text in lines)
        if refused:
            log.warning(
                "event=irc_queue_overflow dropped=%d queued=%d", refused, len(self.irc_queue)
            )
        self._wake_irc()

    # ================================================================== XMPP side
    async def _on_xmpp_connected(self) -> None:
        self.joined = False
        self._rejoin_at = None
        self._pings.clear()
        self.occupants.clear()
        await self.component.send_now(self._join_presence())
        log.info("event=xmpp_connected room=%s", self.cfg.xmpp.room)

    def _join_presence(self) -> etree._Element:
        x = self.cfg.xmpp
        return muc.join_presence(
            self.cfg.occupant_jid,
            self.cfg.bot_jid,
            self.state.since(x.history_overlap, datetime.now(UTC), x.history_max_age),
            x.history_maxstanzas,
        )

    def _rejoin(self, why: str, delay: float = 0.0) -> None:
        self.joined = False
        self._rejoin_at = trio.current_time() + delay
        log.warning("event=muc_rejoin reason=%s delay=%.1f", why, delay)
        self._room_wake.set()

    async def _on_stanza(self, stanza: etree._Element) -> None:
        ev = muc.classify(stanza, self.cfg.xmpp.room, self.cfg.xmpp.nick, set(self._pings))
        if ev is None:
            return
        relay_joins = self.cfg.relay.joins_parts
        if isinstance(ev, muc.RoomMessage):
            self._room_message(ev)
        elif isinstance(ev, muc.SelfJoined):
            if not self.joined:
                log.info("event=muc_joined room=%s nick=%s", self.cfg.xmpp.room, ev.nick)
            self.joined = True
            self._rejoin_at = None
            self._room_wake.set()
        elif isinstance(ev, muc.OccupantJoined):
            fresh = ev.nick not in self.occupants
            self.occupants.add(ev.nick)
            if fresh and self.joined and relay_joins:
                self._to_irc([self.fmt.room_join(ev.nick)])
        elif isinstance(ev, muc.OccupantLeft):
            if ev.nick in self.occupants:
                self.occupants.discard(ev.nick)
                if self.joined and relay_joins:
                    self._to_irc([self.fmt.room_part(ev.nick)])
        elif isinstance(ev, muc.SelfRemoved):
            self.occupants.clear()
            codes = ",".join(sorted(ev.codes)) or ev.error
            if "301" in ev.codes:
                self.joined = False
                log.error("event=muc_banned room=%s", self.cfg.xmpp.room)
            elif "307" in ev.codes or ev.error:
                self._rejoin(f"removed codes={codes}", self.cfg.xmpp.kick_rejoin_delay)
            else:
                self._rejoin(f"removed codes={codes}")
        elif isinstance(ev, muc.PingResult):
            self._pings.pop(ev.iq_id, None)
            if not ev.joined:
                self._rejoin(f"self-ping failed condition={ev.condition}")
        elif isinstance(ev, muc.MessageError):
            body = self._sent.pop(ev.msg_id, None)
            log.warning("event=muc_message_error condition=%s", ev.condition)
            if body is not None and ev.condition in ("not-acceptable", "resource-constraint"):
                self.room_queue.put_front(body)
            if ev.condition == "not-acceptable":
                self._rejoin("message refused: not an occupant")
        elif isinstance(ev, muc.PingRequest):
            self.component.send(muc.ping_reply(ev.iq))

    def _room_message(self, ev: muc.RoomMessage) -> None:
        stamp = ev.stamp or datetime.now(UTC)
        key = ev.stanza_id or content_key(ev.nick, ev.body)
        if ev.nick == self.cfg.xmpp.nick:
            self.state.record(key, stamp)  # our own echo: never back to IRC
        elif self.state.seen(key):
            log.debug("event=muc_duplicate_skipped id=%s", key)
            return
        else:
            nick = self.irc.nick if self.irc is not None else self.irc_nick  # after a reclaim
            budget = privmsg_budget(nick, self.cfg.irc.channel)
            self._to_irc(self.fmt.room_message(ev.nick, ev.body, budget))
            self.state.record(key, stamp)
        self._state_changed.set()

    def _to_room(self, body: str) -> None:
        if not self.room_queue.put(body):
            log.warning("event=room_queue_overflow dropped=%d", self.room_queue.dropped)
        self._room_wake.set()

    async def _room_sender(self) -> None:
        x = self.cfg.xmpp
        bucket = TokenBucket(x.room_burst, x.room_rate, trio.current_time())
        while True:
            now = trio.current_time()
            if self._rejoin_at is not None and now >= self._rejoin_at and self.component.connected:
                self._rejoin_at = None
                self.component.send(self._join_presence())
            if self.joined and self.component.connected and len(self.room_queue):
                wait = bucket.wait_time(now)
                if wait > 0:
                    await trio.sleep(wait)
                    continue
                if self.room_queue.dropped:
                    n = self.room_queue.take_dropped()
                    self.room_queue.put_front(f"(bridge queue full: {n} IRC messages dropped)")
                bucket.take(now)
                body = self.room_queue.pop()
                msg_id = self._new_id("irc")
                self._sent[msg_id] = body
                while len(self._sent) > 200:
                    self._sent.popitem(last=False)
                self.component.send(muc.groupchat(x.room, self.cfg.bot_jid, body, msg_id))
                continue
            self._room_wake = trio.Event()
            timeout = 1.0
            if self._rejoin_at is not None:
                timeout = max(0.01, min(timeout, self._rejoin_at - now))
            with trio.move_on_after(timeout):
                await self._room_wake.wait()

    async def _room_watchdog(self) -> None:
        """XEP-0410 self-ping: the only way to notice we were silently dropped from the
        room (server restart without a 333, a lost presence)."""
        x = self.cfg.xmpp
        while True:
            await trio.sleep(min(x.self_ping_interval, x.self_ping_timeout) / 2)
            now = trio.current_time()
            for sent in list(self._pings.values()):
                if now - sent >= x.self_ping_timeout:
                    self._pings.clear()
                    self._rejoin("self-ping timed out")
                    break
            if not (self.joined and self.component.connected) or self._pings:
                continue
            if now - self._last_ping >= x.self_ping_interval:
                self._last_ping = now
                iq_id = self._new_id("ping")
                self._pings[iq_id] = now
                self.component.send(muc.self_ping(self.cfg.occupant_jid, self.cfg.bot_jid, iq_id))

    async def _state_saver(self) -> None:
        while True:
            await self._state_changed.wait()
            self._state_changed = trio.Event()
            text = self.state.to_json()  # serialised here: the loop owns the state
            await trio.to_thread.run_sync(st.save_text, self.state_path, text)
            await trio.sleep(0.2)

    async def shutdown(self) -> None:
        """Clean stop: QUIT on IRC, flush and close the component stream, save state."""
        st.save(self.state_path, self.state)
        stream = self._irc_stream
        if stream is not None:
            with trio.move_on_after(2):
                try:
                    await stream.send_all(make("QUIT", "bridge shutting down"))
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
        with trio.move_on_after(5):
            await self.component.aclose()
