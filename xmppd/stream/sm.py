"""XEP-0198 Stream Management as plain state: counters, the unacked queue, resume tokens.

No trio, no sockets, no clock (``now`` is passed in). Two pieces:

- :class:`StreamManagement` — one per managed session. It survives the connection that
  enabled it: a detached session keeps its state until it is resumed or expires. It counts
  stanzas handled from the client (``inbound``, the ``h`` we report) and keeps the stanzas
  sent to the client that it has not acknowledged yet, as the very ``bytes`` objects the
  router handed the session (a stanza fanned out to many recipients is serialised once
  and shared; nothing here copies it).
- :class:`ResumeRegistry` — resumable sessions by token, and the deadlines of the
  detached ones. A token is unguessable (``secrets``), bound to the authenticated bare
  JID (another user cannot resume it) and compared in constant time.

Counters wrap at 2**32 (XEP-0198 §4). An ``h`` acknowledging more stanzas than were sent
is the peer's bug: :class:`HandledCountTooHigh` (stream error ``undefined-condition``).
"""

from __future__ import annotations

import heapq
import hmac
import secrets
from collections import deque
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from lxml import etree

from xmppd.xml import ns

NS = "urn:xmpp:sm:3"
MOD = 1 << 32

ENABLE = "{%s}enable" % NS
RESUME = "{%s}resume" % NS
REQUEST = "{%s}r" % NS
ANSWER = "{%s}a" % NS

#: ``<r/>``: ask the client how many of our stanzas it has handled.
R = b'<r xmlns="urn:xmpp:sm:3"/>'
FEATURE = b'<sm xmlns="urn:xmpp:sm:3"/>'

#: Token = lookup key + secret; the key finds the entry, the whole token is compared.
_KEY_LEN = 12


class HandledCountTooHigh(Exception):
    """The peer acknowledged stanzas we never sent (XEP-0198 §4)."""

    def __init__(self, h: int, send_count: int) -> None:
        super().__init__(f"acknowledged {h}, but only {send_count} were sent")
        self.h = h
        self.send_count = send_count

    def app_condition(self) -> etree._Element:
        el = etree.Element("{%s}handled-count-too-high" % NS, nsmap={None: NS})
        el.set("h", str(self.h))
        el.set("send-count", str(self.send_count))
        return el


def parse_h(value: str | None) -> int | None:
    """An ``h`` attribute: an unsigned 32-bit integer, else ``None``."""
    if value is None or not value.isdigit() or len(value) > 10:
        return None
    h = int(value)
    return h if h < MOD else None


def new_token() -> str:
    """An unguessable resume id (XEP-0198 §5: the server MUST NOT make it predictable)."""
    return secrets.token_urlsafe(24)


class StreamManagement:
    """Ack state of one managed session; small, because idle sessions keep it."""

    __slots__ = (
        "_acked",
        "_sent",
        "_since_request",
        "_unacked",
        "inbound",
        "max",
        "max_unacked",
        "on_ack",
        "owner",
        "request_every",
        "token",
    )

    def __init__(
        self,
        owner: str,
        *,
        token: str | None = None,
        max_seconds: int = 0,
        request_every: int = 5,
        max_unacked: int = 500,
    ) -> None:
        #: Bare JID of the authenticated user: only it may resume.
        self.owner = owner
        #: Resume id; ``None`` when the client did not ask for resumption.
        self.token = token
        #: Seconds a detached session is kept (the ``max`` we advertised).
        self.max = max_seconds
        self.request_every = request_every
        self.max_unacked = max_unacked
        #: Stanzas handled from the client, mod 2**32: the ``h`` we report.
        self.inbound = 0
        self._sent = 0
        self._acked = 0
        self._since_request = 0
        # Created on first use and dropped when empty: idle sessions keep no deque.
        self._unacked: deque[bytes] | None = None
        #: Called after every ``<a/>`` the client sends (and the ``h`` of a ``<resume/>``),
        #: for a producer waiting until what it sent is acknowledged.
        self.on_ack: Callable[[], None] | None = None

    @property
    def resumable(self) -> bool:
        return self.token is not None

    @property
    def sent(self) -> int:
        """Stanzas sent to the client, mod 2**32."""
        return self._sent

    @property
    def acked(self) -> int:
        """The client's last ``h``."""
        return self._acked

    def unacked(self) -> list[bytes]:
        """Stanzas sent and not acknowledged yet, oldest first."""
        return list(self._unacked) if self._unacked else []

    def __len__(self) -> int:
        return len(self._unacked) if self._unacked else 0

    def handled(self) -> None:
        """One stanza from the client was accepted for processing."""
        self.inbound = (self.inbound + 1) % MOD

    def answer(self) -> bytes:
        """``<a h/>`` for a client's ``<r/>``."""
        return b'<a xmlns="urn:xmpp:sm:3" h="%d"/>' % self.inbound

    def record(self, data: bytes) -> bool | None:
        """Remember one stanza sent to the client (the bytes, not a copy).

        Returns whether an ``<r/>`` should follow it. Past ``max_unacked`` the stanza is
        still kept (:attr:`over_limit`: the caller ends the session, which re-delivers
        the queue, so the stanzas racing that end are not lost); at twice the limit it
        is refused with ``None`` so memory stays bounded whatever happens.
        """
        queue = self._unacked
        if queue is None:
            queue = self._unacked = deque()
        elif len(queue) >= 2 * self.max_unacked:
            return None
        queue.append(data)
        self._sent = (self._sent + 1) % MOD
        self._since_request += 1
        if self.request_every and self._since_request >= self.request_every:
            self._since_request = 0
            return True
        return False

    @property
    def over_limit(self) -> bool:
        """The client stopped acknowledging (or is gone for too long): end the session."""
        return len(self) >= self.max_unacked

    def room(self) -> int:
        """Stanzas that can still be sent before :attr:`over_limit`."""
        return max(0, self.max_unacked - 1 - len(self))

    def acked_through(self, count: int) -> bool:
        """Whether the stanzas up to send count ``count`` (a past :attr:`sent`) are acked.

        The queue is in send order, so they are once fewer stanzas wait than were sent
        after them.
        """
        return len(self) <= (self._sent - count) % MOD

    def request_pending(self) -> bool:
        """Stanzas were sent since the last ``<r/>``: worth asking on idle."""
        return self._since_request > 0

    def requested(self) -> None:
        """An ``<r/>`` went out (on idle): count from here."""
        self._since_request = 0

    def ack(self, h: int) -> int:
        """Apply the client's ``h``; returns how many stanzas it released.

        An ``h`` that acknowledges more than is outstanding raises
        :class:`HandledCountTooHigh` and changes nothing.
        """
        count = (h - self._acked) % MOD
        outstanding = len(self)
        if count > outstanding:
            raise HandledCountTooHigh(h, self._sent)
        queue = self._unacked
        if queue is not None:
            for _ in range(count):
                queue.popleft()
            if not queue:
                self._unacked = None
        self._acked = h
        if self.on_ack is not None:
            self.on_ack()
        return count

    def take_unacked(self) -> list[bytes]:
        """Hand over everything unacknowledged (the session is ending)."""
        items = self.unacked()
        self._unacked = None
        self._acked = self._sent
        return items

    def enabled_element(self, location: str | None = None) -> bytes:
        """``<enabled/>``: the resume id and ``max`` only when resumable."""
        el = etree.Element("{%s}enabled" % NS, nsmap={None: NS})
        if self.token is not None:
            el.set("id", self.token)
            el.set("resume", "true")
            el.set("max", str(self.max))
            if location:
                el.set("location", location)
        return etree.tostring(el)

    def resumed_element(self) -> bytes:
        el = etree.Element("{%s}resumed" % NS, nsmap={None: NS})
        el.set("previd", self.token or "")
        el.set("h", str(self.inbound))
        return etree.tostring(el)


def failed_element(condition: str, h: int | None = None, text: str | None = None) -> bytes:
    """``<failed/>`` with a stanza error condition (XEP-0198 §3, §5)."""
    el = etree.Element("{%s}failed" % NS, nsmap={None: NS})
    if h is not None:
        el.set("h", str(h))
    etree.SubElement(el, "{%s}%s" % (ns.STANZA_ERRORS, condition), nsmap={None: ns.STANZA_ERRORS})
    if text:
        t = etree.SubElement(el, "{%s}text" % ns.STANZA_ERRORS, nsmap={None: ns.STANZA_ERRORS})
        t.text = text
    return etree.tostring(el)


def resume_timeout(requested: str | None, limit: int) -> int:
    """The ``max`` to grant: what the client asked for, capped by configuration."""
    if requested is not None and requested.isdigit() and len(requested) <= 10:
        return max(1, min(int(requested), limit))
    return limit


T = TypeVar("T")


class _Entry(Generic[T]):
    __slots__ = ("expires", "owner", "token", "value")

    def __init__(self, token: str, owner: str, value: T) -> None:
        self.token = token
        self.owner = owner
        self.value = value
        #: Deadline while detached; ``None`` while a connection carries the session.
        self.expires: float | None = None


class ResumeRegistry(Generic[T]):
    """Resumable sessions by token, plus expiry of the detached ones (time passed in).

    Also remembers, for a while, the final ``h`` of sessions that ended, so a late
    ``<resume/>`` fails with ``h`` and the client knows which of its stanzas arrived.
    """

    __slots__ = ("_deadlines", "_ended", "_ended_order", "_entries", "ended_keep")

    def __init__(self, ended_keep: int = 1024) -> None:
        self._entries: dict[str, _Entry[T]] = {}
        self._deadlines: list[tuple[float, str]] = []
        self._ended: dict[str, tuple[str, str, int]] = {}
        self._ended_order: deque[str] = deque()
        self.ended_keep = ended_keep

    @staticmethod
    def _key(token: str) -> str:
        return token[:_KEY_LEN]

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, token: str) -> bool:
        entry = self._entries.get(self._key(token))
        return entry is not None and hmac.compare_digest(entry.token, token)

    def add(self, token: str, owner: str, value: T) -> None:
        self._entries[self._key(token)] = _Entry(token, owner, value)

    def lookup(self, token: str, owner: str) -> T | None:
        """The session behind ``token`` if ``owner`` (a bare JID) may resume it."""
        entry = self._entries.get(self._key(token))
        if entry is None or not hmac.compare_digest(entry.token.encode(), token.encode()):
            return None
        if entry.owner != owner:
            return None
        return entry.value

    def ended_h(self, token: str, owner: str) -> int | None:
        """The final inbound ``h`` of a session that ended recently, for ``<failed h/>``."""
        found = self._ended.get(self._key(token))
        if found is None:
            return None
        full, who, h = found
        if who != owner or not hmac.compare_digest(full.encode(), token.encode()):
            return None
        return h

    def detach(self, token: str, now: float, timeout: float) -> None:
        entry = self._entries.get(self._key(token))
        if entry is None:
            return
        entry.expires = now + timeout
        heapq.heappush(self._deadlines, (entry.expires, self._key(token)))

    def attach(self, token: str) -> None:
        entry = self._entries.get(self._key(token))
        if entry is not None:
            entry.expires = None

    def expire_now(self, token: str, now: float) -> None:
        self.detach(token, now, 0.0)

    def is_detached(self, token: str) -> bool:
        entry = self._entries.get(self._key(token))
        return entry is not None and entry.expires is not None

    def remove(self, token: str, final_h: int | None = None) -> None:
        """Forget ``token`` (resumed elsewhere, or the session ended with ``final_h``)."""
        key = self._key(token)
        entry = self._entries.pop(key, None)
        if entry is None or final_h is None:
            return
        self._ended[key] = (entry.token, entry.owner, final_h)
        self._ended_order.append(key)
        while len(self._ended_order) > self.ended_keep:
            self._ended.pop(self._ended_order.popleft(), None)

    def next_deadline(self) -> float | None:
        """When the earliest detached session expires (stale heap entries skipped)."""
        heap = self._deadlines
        while heap:
            when, key = heap[0]
            entry = self._entries.get(key)
            if entry is not None and entry.expires == when:
                return when
            heapq.heappop(heap)
        return None

    def expired(self, now: float) -> Iterator[T]:
        """Detached sessions whose time is up (they stay registered until ``remove``)."""
        heap = self._deadlines
        due: list[T] = []
        while heap and heap[0][0] <= now:
            when, key = heapq.heappop(heap)
            entry = self._entries.get(key)
            if entry is not None and entry.expires == when:
                entry.expires = None  # handed out once
                due.append(entry.value)
        return iter(due)

    def detached(self) -> list[T]:
        return [e.value for e in self._entries.values() if e.expires is not None]
