"""A connected, resource-bound entity, independent of the transport that carries it.

The router only ever hands a session *bytes*: a stanza fanned out to many recipients is
serialised once (DESIGN.md data flow), so nothing here copies trees per recipient.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from lxml import etree

from xmppd.jid import JID
from xmppd.stream.csi import HeldQueue
from xmppd.stream.sm import R, StreamManagement

#: Where sessions that no server counts (tests) count their stanzas.
UNCOUNTED: list[int] = [0] * 256


class Outbox(Protocol):
    """What a transport offers a session: a bounded, non-blocking send."""

    def enqueue(self, data: bytes) -> bool:
        """Queue ``data`` for the peer; ``False`` if the peer is too slow and was cut off."""
        ...

    def close(self, condition: str | None = None, text: str | None = None) -> None:
        """End the stream (with a stream error when ``condition`` is given)."""
        ...


class Session:
    """A bound client resource (or, later, a BOSH/WebSocket one: same object)."""

    __slots__ = (
        "ack_barriers",
        "available",
        "bare",
        "bare_str",
        "blocklist_requested",
        "carbons",
        "csi",
        "detached_since",
        "directed_presence",
        "full_str",
        "interested",
        "ip",
        "jid",
        "login",
        "outbox",
        "presence",
        "priority",
        "revoked",
        "sent",
        "since",
        "sm",
        "transport",
    )

    def __init__(
        self,
        jid: JID,
        outbox: Outbox,
        transport: str = "tcp",
        ip: str = "",
        since: float | None = None,
    ) -> None:
        self.jid = jid
        self.bare = jid.bare
        self.bare_str = str(self.bare)
        self.full_str = str(jid)
        self.outbox = outbox
        self.transport = transport
        #: The client's address (of the connection carrying it now, after a resumption).
        self.ip = ip
        #: When the resource was bound (UNIX time): ``xmppd sessions`` shows it.
        self.since = time.time() if since is None else since
        #: Sent initial presence and not yet unavailable (RFC 6121 §4.2).
        self.available = False
        #: Requested the roster: receives roster pushes and subscription requests.
        self.interested = False
        #: Asked for its blocklist: receives blocklist pushes (XEP-0191 §3.2).
        self.blocklist_requested = False
        #: Enabled message carbons (XEP-0280 §4): gets copies of the account's other
        #: conversations.
        self.carbons = False
        #: XEP-0352: while the client says it is inactive, what it need not get yet
        #: (:mod:`xmppd.stream.csi`); None while active, so that path costs one test.
        self.csi: HeldQueue | None = None
        self.priority = 0
        #: Last available presence broadcast, serialised, for probes and new resources.
        self.presence: etree._Element | None = None
        #: Full JIDs this session sent directed presence to (RFC 6121 §4.6).
        self.directed_presence: set[str] = set()
        #: XEP-0198 state once the client enabled stream management.
        self.sm: StreamManagement | None = None
        #: When its connection dropped (trio time) while it waits for ``<resume/>``; None
        #: while a connection carries it.
        self.detached_since: float | None = None
        #: How the client authenticated (``Identity.login``): what a backend re-checks.
        self.login: object | None = None
        #: Why the server ended this session for good (a forum ban, a logout): such a
        #: session is never kept for XEP-0198 resumption, nor resumed.
        self.revoked: str | None = None
        #: Stanzas sent, by the first byte of their name: the server's counts once bound
        #: (``xmppd.metrics``); a plain list, as this runs once per recipient.
        self.sent = UNCOUNTED
        #: XEP-0198: what must be durable before the client is told its stanzas were
        #: received (``<a/>``): one wait per service, the newest replacing the older
        #: (:meth:`AccountMamService.routed`); None while there is nothing to wait for.
        self.ack_barriers: dict[object, Callable[[], Awaitable[None]]] | None = None

    @property
    def attached(self) -> bool:
        """A connection carries it (it is not a detached XEP-0198 session)."""
        return self.detached_since is None

    def send(self, data: bytes) -> bool:
        """Queue serialised stanza bytes for this session (or hold them, XEP-0352).

        A held stanza is not sent yet: XEP-0198 counts it only when it goes out (on
        ``<active/>``, at the held queue's bound, or before an urgent stanza).

        With stream management the bytes are also kept until the client acknowledges
        them: if the connection drops, they are resent on resumption or, when the session
        ends, delivered elsewhere or stored (never silently lost). So once recorded, the
        stanza is this session's responsibility and ``send`` reports success.
        """
        if self.csi is not None:
            return self._offer(data)
        self.sent[data[1]] += 1
        sm = self.sm
        if sm is None:
            return self.outbox.enqueue(data)
        request = sm.record(data)
        if request is None:
            self.outbox.close("policy-violation", "too many unacknowledged stanzas")
            return False
        if sm.over_limit:
            # The client stopped acknowledging: end the stream (and the session, which
            # re-delivers what it holds) rather than grow memory.
            self.outbox.close("policy-violation", "too many unacknowledged stanzas")
            return True
        if self.outbox.enqueue(data) and request:
            self.outbox.enqueue(R)
        return True

    def _offer(self, data: bytes) -> bool:
        """Inactive: hold ``data``, or send what was held and then it (in order)."""
        csi = self.csi
        assert csi is not None
        out = csi.offer(data)
        if out is None:
            return True
        self.csi = None  # send() itself, without the check
        try:
            ok = True
            for item in out:
                ok = self.send(item) and ok
            return ok
        finally:
            self.csi = csi

    def set_inactive(self, queue: HeldQueue) -> None:
        """XEP-0352 ``<inactive/>``: hold what can wait in ``queue`` from now on."""
        if self.csi is None:
            self.csi = queue

    def set_active(self) -> int:
        """XEP-0352 ``<active/>`` (or a resumption, §5.2): send what was held, in order."""
        csi, self.csi = self.csi, None
        if csi is None:
            return 0
        held = csi.drain()
        for data in held:
            self.send(data)
        return len(held)

    def request_ack(self) -> None:
        """XEP-0198: ask for an ``<a/>`` now if stanzas went out since the last request."""
        sm = self.sm
        if sm is not None and sm.request_pending():
            sm.requested()
            self.outbox.enqueue(R)

    def send_stanza(self, stanza: etree._Element) -> bool:
        return self.send(etree.tostring(stanza))

    def close(self, condition: str | None = None, text: str | None = None) -> None:
        self.outbox.close(condition, text)

    def revoke(self, reason: str, text: str) -> None:
        """End the session for good: ``policy-violation`` naming why, no resumption."""
        self.revoked = reason
        self.outbox.close("policy-violation", text)

    def __repr__(self) -> str:
        return f"<Session {self.full_str}>"
