"""The webridge service: UNIX datagrams in, groupchat messages out (the trio shell).

Flow: socket -> :func:`events.parse_datagram` -> :func:`events.render` -> ``pending``
(bounded, oldest dropped with a logged count) -> paced sender -> component client.

Delivery across an xmppd restart: a message leaves ``pending`` for ``inflight`` when it is
handed to the component client and leaves ``inflight`` when the room reflects it back
(every occupant, the sender too, receives each groupchat message). After a reconnect the
bot rejoins asking for as much history as it has unconfirmed messages; those found in the
history (by message id) reached the room, the others are sent again, ahead of anything
newer. So each event appears once, in order, even when the connection dies mid-write.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import secrets
import socket
from collections import OrderedDict, deque
from typing import Any

import trio
from lxml import etree

from bridges.component import Backoff, ComponentClient
from bridges.webridge import dgram, room
from bridges.webridge.config import Config
from bridges.webridge.events import MAX_DATAGRAM, BadDatagram, parse_datagram, render
from bridges.webridge.pacing import TokenBucket

log = logging.getLogger("bridges.webridge")

#: Seconds to wait for the room's answer to a join (self-presence, then history).
JOIN_TIMEOUT = 10.0
#: A refused message is re-queued at most this many times.
MAX_ATTEMPTS = 3
#: Unconfirmed messages remembered (beyond it the oldest is forgotten as delivered).
MAX_INFLIGHT = 500
#: Most history messages asked for when looking for unconfirmed messages after a rejoin.
HISTORY_WINDOW = 1000
#: Seconds between two log lines about queue drops.
DROP_LOG_INTERVAL = 5.0


def _seq(stanza_id: str) -> int:
    """Our ids end in a sequence number (``wb-<run>-<n>``): the order of submission."""
    return int(stanza_id.rsplit("-", 1)[1])


class Webridge:
    """One bridge: a socket, a component connection and one room occupancy."""

    def __init__(self, config: Config, secret: str | None = None) -> None:
        self.config = config
        x = config.xmpp
        self.room, self.jid = x.room, config.jid
        self.nick = x.nick
        self.client = ComponentClient(
            host=x.host,
            port=x.port,
            domain=x.domain,
            secret=config.read_secret() if secret is None else secret,
            on_stanza=self._on_stanza,
            on_connected=self._on_connected,
            queue_size=max(config.messages.queue_size, 10),
            backoff=Backoff(initial=x.reconnect_initial, maximum=x.reconnect_max),
        )
        #: (id, text, earlier attempts) waiting to be posted, oldest first.
        self.pending: deque[tuple[str, str, int]] = deque()
        #: id -> (text, attempts, when sent): handed to the client, not yet seen back from
        #: the room.
        self.inflight: OrderedDict[str, tuple[str, int, float]] = OrderedDict()
        self.joined = False
        self.dropped = 0
        self.posted = 0
        self._dropped_unlogged = 0
        self._drop_logged_at = -math.inf
        self._changed = trio.Event()
        self._join_state: trio.Event | None = None
        self._history_done: trio.Event | None = None
        self._history_ids: set[str] = set()
        self._join_error = ""
        self._rejoin_at = math.inf
        self._recovering = False
        self._ids = (f"wb-{secrets.token_hex(4)}-{n}" for n in itertools.count(1))
        m = config.messages
        #: One pace for everything posted (new messages and re-sends).
        self._bucket = TokenBucket(m.burst, m.rate, 0.0)
        self._sock: socket.socket | None = None
        self._inode = 0

    # ------------------------------------------------------------------ input
    def handle_datagram(self, data: bytes, truncated: bool = False) -> None:
        """Validate, render and queue one datagram; bad ones are logged and dropped."""
        try:
            if truncated:
                raise BadDatagram("oversized", f">= {MAX_DATAGRAM} bytes")
            event = parse_datagram(data)
            m = self.config.messages
            text = render(event, max_length=m.max_length, field_max_length=m.field_max_length)
        except BadDatagram as exc:
            log.warning(
                "event=datagram_dropped reason=%s bytes=%d detail=%r",
                exc.reason,
                len(data),
                exc.detail,
            )
            return
        log.debug("event=datagram type=%s bytes=%d", event.type, len(data))
        self.submit(text)

    def submit(self, text: str) -> None:
        """Queue a message for the room; when full the oldest waiting one is dropped."""
        while len(self.pending) >= self.config.messages.queue_size:
            self.pending.popleft()
            self.dropped += 1
            self._dropped_unlogged += 1
        self._log_drops()
        self.pending.append((next(self._ids), text, 0))
        self._notify()

    def _log_drops(self, force: bool = False) -> None:
        now = trio.current_time()
        if self._dropped_unlogged and (force or now - self._drop_logged_at >= DROP_LOG_INTERVAL):
            log.warning(
                "event=queue_overflow dropped=%d total_dropped=%d queue_size=%d",
                self._dropped_unlogged,
                self.dropped,
                self.config.messages.queue_size,
            )
            self._dropped_unlogged = 0
            self._drop_logged_at = now

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # --------------------------------------------------------------- the room
    async def _on_connected(self) -> None:
        """Join (before the client flushes its queue), then re-send what was lost."""
        self.joined = False
        await self._enter_room()

    async def _enter_room(self) -> None:
        """Join and recover; new messages wait meanwhile so re-sends go out first."""
        self._recovering = True
        try:
            if await self._join():
                await self._recover()
        finally:
            self._recovering = False
            self._notify()

    async def _recover(self) -> None:
        """After a (re)join: re-send unconfirmed messages the room's history lacks.

        The newest inflight messages may still sit in the client's queue (written after
        this returns, by the client itself); the older unconfirmed ones go now, first.
        """
        still_queued = self.client.queued
        unconfirmed = list(self.inflight.items())
        older = unconfirmed[: max(0, len(unconfirmed) - still_queued)]
        resent = 0
        for stanza_id, (text, attempts, _sent) in older:
            if stanza_id in self._history_ids:
                self.inflight.pop(stanza_id, None)
                continue
            await self._paced()  # the room's flood limit applies to re-sends too
            await self.client.send_now(room.groupchat(self.room, self.jid, text, stanza_id))
            self.inflight[stanza_id] = (text, attempts, trio.current_time())
            resent += 1
        if older:
            log.info("event=room_rejoined confirmed=%d resent=%d", len(older) - resent, resent)

    async def _join(self) -> bool:
        """Send the join presence, wait for the self-presence and the history."""
        self._join_state = trio.Event()
        self._history_done = trio.Event()
        self._history_ids = set()
        self._join_error = ""
        history = seconds = 0
        if self.inflight:
            # our unconfirmed messages, and whatever others said in between
            history = HISTORY_WINDOW
            oldest = min(sent for _, _, sent in self.inflight.values())
            seconds = math.ceil(trio.current_time() - oldest) + 10
        await self.client.send_now(
            room.join_presence(self.room, self.nick, self.jid, history, seconds)
        )
        with trio.move_on_after(JOIN_TIMEOUT):
            await self._join_state.wait()
            if self.joined:
                await self._history_done.wait()
        if self.joined:
            log.info("event=room_joined room=%s nick=%s", self.room, self.nick)
            self._log_drops(force=True)  # what the outage cost, before delivery resumes
            self._rejoin_at = math.inf
            self._notify()
            return True
        log.warning(
            "event=room_join_failed room=%s nick=%s condition=%s",
            self.room,
            self.nick,
            self._join_error or "timeout",
        )
        self._rejoin_at = trio.current_time() + self.config.xmpp.rejoin_interval
        return False

    async def _on_stanza(self, stanza: etree._Element) -> None:
        signal = room.classify(stanza, self.room, self.nick)
        if isinstance(signal, room.Joined):
            self.joined = True
            self.nick = signal.nick
            if self._join_state is not None:
                self._join_state.set()
        elif isinstance(signal, room.JoinFailed):
            self.joined = False
            self._join_error = signal.condition
            if self._join_state is not None:
                self._join_state.set()
        elif isinstance(signal, room.Subject):
            if self._history_done is not None:
                self._history_done.set()
        elif isinstance(signal, room.Reflected):
            if self.inflight.pop(signal.stanza_id, None) is not None:
                self.posted += 1
            self._history_ids.add(signal.stanza_id)
        elif isinstance(signal, room.Left):
            log.warning("event=room_left room=%s codes=%s", self.room, ",".join(signal.codes))
            self.joined = False
            self._rejoin_at = trio.current_time() + 2.0
            self._notify()
        elif isinstance(signal, room.Rejected):
            self._rejected(signal)

    def _rejected(self, signal: room.Rejected) -> None:
        item = self.inflight.pop(signal.stanza_id, None)
        log.warning("event=message_rejected id=%s condition=%s", signal.stanza_id, signal.condition)
        if signal.condition == "not-acceptable":  # the room no longer has us
            self.joined = False
            self._rejoin_at = trio.current_time()
            self._notify()
        if item is None:
            return
        text, attempts, _sent = item
        retry = signal.condition in ("not-acceptable", "resource-constraint")
        if retry and attempts + 1 < MAX_ATTEMPTS:
            self._requeue((signal.stanza_id, text, attempts + 1))
            self._notify()
        else:
            log.warning("event=message_given_up id=%s attempts=%d", signal.stanza_id, attempts + 1)

    def _requeue(self, item: tuple[str, str, int]) -> None:
        """Put a refused message back among the waiting ones, in its original order
        (several bounces come back oldest first; each must not jump ahead of the others)."""
        seq = _seq(item[0])
        index = len(self.pending)
        while index > 0 and _seq(self.pending[index - 1][0]) > seq:
            index -= 1
        self.pending.insert(index, item)

    # --------------------------------------------------------------- tasks
    async def _sender(self) -> None:
        """Pending -> client, only while joined, paced below the room's flood limit."""
        while True:
            if not self.pending:
                await self._changed.wait()
                continue
            if not self.client.connected:
                await self.client.wait_connected()
                continue
            if not self.joined or self._recovering:
                await self._changed.wait()
                continue
            delay = self._bucket.wait_time(trio.current_time())
            if delay > 0:
                await trio.sleep(delay)
                continue  # the state may have changed while we waited
            self._bucket.take()
            stanza_id, text, attempts = self.pending.popleft()
            self.inflight[stanza_id] = (text, attempts, trio.current_time())
            while len(self.inflight) > MAX_INFLIGHT:
                self.inflight.popitem(last=False)
            self.client.send(room.groupchat(self.room, self.jid, text, stanza_id))

    async def _paced(self) -> None:
        """Wait for and take a token of the shared bucket."""
        delay = self._bucket.wait_time(trio.current_time())
        if delay > 0:
            await trio.sleep(delay)  # exactly long enough for one token
            self._bucket.wait_time(trio.current_time())
        self._bucket.take()

    async def _rejoiner(self) -> None:
        """Join again after a refusal or a kick (never more often than the interval)."""
        while True:
            await trio.sleep(0.5)
            if self.client.connected and not self.joined and trio.current_time() >= self._rejoin_at:
                try:
                    await self._enter_room()
                except ConnectionError:
                    pass

    async def _reader(self, sock: socket.socket) -> None:
        tsock = trio.socket.from_stdlib_socket(sock)
        while True:
            try:
                data, _anc, flags, _addr = await tsock.recvmsg(MAX_DATAGRAM)
            except OSError as exc:  # e.g. ENOBUFS under memory pressure: keep reading
                log.warning("event=socket_read_failed error=%s", exc.strerror)
                await trio.sleep(0.1)
                continue
            self.handle_datagram(data, truncated=bool(flags & socket.MSG_TRUNC))

    def open_socket(self) -> None:
        """Bind the datagram socket (raises :class:`dgram.SocketError`/``OSError``)."""
        if self._sock is None:
            s = self.config.socket
            self._sock, self._inode = dgram.bind(s.path, self.config.socket_mode, s.group)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Bind the socket (unless :meth:`open_socket` did), connect, serve until cancelled."""
        self.open_socket()
        assert self._sock is not None
        sock, path = self._sock, self.config.socket.path
        log.info(
            "event=webridge_started socket=%s mode=%s room=%s nick=%s pid=%d",
            path,
            oct(self.config.socket_mode),
            self.room,
            self.nick,
            os.getpid(),
        )
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.client.run)
                nursery.start_soon(self._reader, sock)
                nursery.start_soon(self._sender)
                nursery.start_soon(self._rejoiner)
                task_status.started()
        finally:
            dgram.unlink_if_ours(path, self._inode)
            sock.close()
            self._sock = None
            self._log_drops(force=True)
            if self.pending or self.inflight:
                log.warning(
                    "event=webridge_stopped_unsent pending=%d unconfirmed=%d",
                    len(self.pending),
                    len(self.inflight),
                )

    async def aclose(self) -> None:
        """Leave cleanly: flush the client's queue and close the stream."""
        await self.client.aclose()
