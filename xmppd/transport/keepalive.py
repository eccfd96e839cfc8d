"""Keepalive: ping a quiet peer (XEP-0199), give up on one that does not answer.

Client connections and component connections keep the same rule. After
``interval`` seconds with nothing read, a ping goes out; any data read afterwards counts
as the answer (a busy peer may answer a stanza before the pong). If nothing at all
arrives within ``timeout`` more seconds, the peer is gone: :meth:`Keepalive.receive`
returns ``None`` and its owner closes the stream with ``connection-timeout``. A ping can
also be asked for at once (:meth:`Keepalive.poke`: a component whose domain is claimed
by a newcomer), which shortens the wait already in progress.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Awaitable, Callable

import trio
from lxml import etree

from xmppd.xml import ns


def ping_iq(sender: str, to: str) -> etree._Element:
    """An ``<iq type='get'><ping/></iq>`` from ``sender`` to ``to`` with a fresh id."""
    iq = etree.Element("{%s}iq" % ns.CLIENT, nsmap={None: ns.CLIENT})
    iq.set("type", "get")
    iq.set("id", "ping-" + secrets.token_hex(4))
    iq.set("from", sender)
    iq.set("to", to)
    etree.SubElement(iq, "{%s}ping" % ns.PING, nsmap={None: ns.PING})
    return iq


def _seconds(value: float) -> float:
    """Zero or less means "never"."""
    return value if value > 0 else math.inf


class Keepalive:
    """When to ping one peer and when to stop waiting for it.

    Two ways to use it: :meth:`receive` wraps a read function (components), or a reader
    loop that must keep its await chain short (client connections: thousands sit idle
    in it, and every coroutine frame is memory) reads under its own cancel scope with
    :meth:`deadline` and calls :meth:`heard` after data and :meth:`expired` after the
    deadline passed.
    """

    __slots__ = ("_answer_by", "_heard_at", "_scope", "interval", "ping", "timeout")

    def __init__(self, interval: float, timeout: float, ping: Callable[[], None]) -> None:
        self.interval = _seconds(interval)
        self.timeout = _seconds(timeout)
        #: Sends one ping (through whatever counts stanzas for the peer).
        self.ping = ping
        #: A ping is out: the trio time by which any data must have arrived.
        self._answer_by: float | None = None
        #: The trio time data last arrived (or the first wait began).
        self._heard_at: float | None = None
        #: The wait in progress, whose deadline :meth:`poke` shortens.
        self._scope: trio.CancelScope | None = None

    @property
    def waiting(self) -> bool:
        """A ping is out and unanswered."""
        return self._answer_by is not None

    def deadline(self) -> float:
        """The trio time by which data must arrive before a ping (or the end) is due."""
        answer_by = self._answer_by
        if answer_by is not None:
            return answer_by
        heard_at = self._heard_at
        if heard_at is None:
            heard_at = self._heard_at = trio.current_time()
        return heard_at + self.interval

    def heard(self) -> None:
        """Data arrived: any data answers a ping, and the quiet interval starts again."""
        self._answer_by = None
        self._heard_at = trio.current_time()

    def expired(self) -> bool:
        """The deadline passed: ping now (False), or True when a ping went unanswered."""
        if self._answer_by is not None:
            return True
        self.poke()
        return False

    def watch(self, scope: trio.CancelScope | None) -> None:
        """The cancel scope of the wait in progress (``None`` when none), for :meth:`poke`."""
        self._scope = scope

    async def receive(self, read: Callable[[], Awaitable[bytes]]) -> bytes | None:
        """The next ``read()``, pinging while the peer is quiet; ``None`` once a ping went
        unanswered for ``timeout`` seconds."""
        while True:
            with trio.CancelScope(deadline=self.deadline()) as scope:
                self._scope = scope
                data = await read()
            self._scope = None
            if not scope.cancelled_caught:
                self.heard()
                return data
            if self.expired():
                return None

    def poke(self) -> None:
        """Ping now unless a ping is already out; the wait in progress ends by its answer."""
        if self._answer_by is not None:
            return
        self._answer_by = trio.current_time() + self.timeout
        self.ping()
        if self._scope is not None:
            self._scope.deadline = self._answer_by
