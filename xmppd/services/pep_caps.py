"""XEP-0115 caps of local resources, as XEP-0163 PEP needs them: who wants which node.

Each available presence may carry ``<c hash node ver/>``. A known ``(hash, ver)`` gives
the resource's features from the cache at once; an unknown one is asked for once
(disco#info to ``node#ver`` of the announcing resource, XEP-0115 §6.2), its answer
verified (§5.4, :func:`xmppd.pubsub.caps.verify`) and only then cached and applied to
every resource that announced it meanwhile. A resource's ``NODE+notify`` features are
the nodes it gets notifications of (XEP-0163 §4 "filtered notifications"); when they
become known (initial presence, or a new ``ver``), the PEP service sends it the last
items (§4.3.2) through the ``on_interests`` callback, run by :meth:`CapsTracker.run`.
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio
from lxml import etree

from xmppd.jid import JID
from xmppd.pubsub.caps import DISCO_INFO, HASHES, CapsCache, CapsError, notify_nodes, verify
from xmppd.pubsub.names import CAPS
from xmppd.router import Router
from xmppd.session import Session
from xmppd.xml import ns

log = logging.getLogger("xmppd.pep.caps")

#: Unknown ``ver``s being asked about at once; beyond, the oldest question is dropped.
MAX_PENDING = 256
#: Seconds after which a question still unanswered is asked again of the next resource
#: announcing that ver (the first may never answer, or have gone).
ASK_AGAIN_AFTER = 20.0
OnInterests = Callable[[Session, frozenset[str]], Awaitable[None]]


@dataclass(slots=True)
class _Question:
    """A disco#info asked about one ver: of whom, when, and who waits for the answer."""

    iq_id: str
    asked: str
    since: float
    waiting: list[str]


class CapsTracker:
    """Each available local resource's ``+notify`` nodes, from its XEP-0115 caps."""

    def __init__(self, router: Router, cache_size: int, on_interests: OnInterests) -> None:
        self.router = router
        self.cache = CapsCache(cache_size)
        self.on_interests = on_interests
        #: full JID -> the (hash, ver) it announced last
        self._ver: dict[str, tuple[str, str]] = {}
        #: full JID -> the nodes it wants notifications of
        self._nodes: dict[str, frozenset[str]] = {}
        #: (hash, ver) -> the open question about it
        self._pending: OrderedDict[tuple[str, str], _Question] = OrderedDict()
        self._send, self._receive = trio.open_memory_channel[tuple[Session, frozenset[str]]](
            MAX_PENDING
        )

    def interests(self, session: Session) -> frozenset[str]:
        return self._nodes.get(session.full_str, frozenset())

    async def presence_changed(self, session: Session, available: bool) -> None:
        """The presence watcher: read ``<c/>``, resolve it, or forget the resource."""
        full = session.full_str
        if not available or session.presence is None:
            self._ver.pop(full, None)
            self._nodes.pop(full, None)
            return
        c = session.presence.find("{%s}c" % CAPS)
        if c is None or c.get("hash") not in HASHES or not c.get("ver") or not c.get("node"):
            # no caps (or only legacy XEP-0115 v1.3 ones): no filtered notifications
            self._ver.pop(full, None)
            self._nodes.pop(full, None)
            return
        key = (c.get("hash", ""), c.get("ver", ""))
        if self._ver.get(full) == key:
            return  # a presence update with the same caps: nothing new
        self._ver[full] = key
        features = self.cache.get(*key)
        if features is not None:
            await self._apply(session, notify_nodes(features))
            return
        self._nodes.pop(full, None)
        self._ask(session, key, c.get("node", ""))

    async def _apply(self, session: Session, nodes: frozenset[str]) -> None:
        self._nodes[session.full_str] = nodes
        await self.on_interests(session, nodes)

    def _ask(self, session: Session, key: tuple[str, str], caps_node: str) -> None:
        """§6.2: disco#info of ``node#ver`` from the resource that announced it."""
        pending = self._pending.get(key)
        now = trio.current_time()
        if pending is not None:
            pending.waiting.append(session.full_str)
            if self._ver.get(pending.asked) == key and now - pending.since < ASK_AGAIN_AFTER:
                return
            self.router.awaiting.pop(pending.iq_id, None)  # gone or silent: ask this one
        iq_id = "caps-" + secrets.token_hex(8)
        iq = etree.Element("{%s}iq" % ns.CLIENT, type="get", id=iq_id, nsmap={None: ns.CLIENT})
        iq.set("from", self.router.domain)
        iq.set("to", session.full_str)
        etree.SubElement(iq, "{%s}query" % DISCO_INFO, nsmap={None: DISCO_INFO},
                         node=f"{caps_node}#{key[1]}")  # fmt: skip
        waiting = pending.waiting if pending is not None else [session.full_str]
        self._pending[key] = _Question(iq_id, session.full_str, now, waiting)
        self.router.awaiting[iq_id] = (session.full_str, lambda reply: self._answered(key, reply))
        while len(self._pending) > MAX_PENDING:
            _old, dropped = self._pending.popitem(last=False)
            self.router.awaiting.pop(dropped.iq_id, None)
        session.send(etree.tostring(iq))
        log.debug("event=caps_asked jid=%s ver=%s", session.full_str, key[1])

    def _answered(self, key: tuple[str, str], reply: etree._Element) -> None:
        """The disco#info answer: verified, cached, applied to every waiting resource."""
        pending = self._pending.pop(key, None)
        if pending is None:
            return
        query = reply.find("{%s}query" % DISCO_INFO)
        if reply.get("type") != "result" or query is None:
            return
        try:
            features = verify(key[0], key[1], query)
        except CapsError as exc:
            log.info("event=caps_unverified from=%s reason=%s", reply.get("from"), exc)
            return
        self.cache.put(key[0], key[1], features)
        nodes = notify_nodes(features)
        log.info("event=caps_verified hash=%s ver=%s notify=%d", key[0], key[1], len(nodes))
        for full in dict.fromkeys(pending.waiting):
            if self._ver.get(full) != key:
                continue  # went away or changed its caps meanwhile
            session = self.router.session_for(JID.parse(full))
            if session is None:
                continue
            self._nodes[full] = nodes
            try:
                self._send.send_nowait((session, nodes))
            except trio.WouldBlock:
                log.info("event=caps_last_items_dropped jid=%s", full)

    async def run(self) -> None:
        """Send last items to resources whose interests a disco#info answer revealed."""
        async with self._receive:
            async for session, nodes in self._receive:
                try:
                    await self.on_interests(session, nodes)
                except Exception:  # one resource's trouble must not end the loop
                    log.exception("event=pep_last_items_failed jid=%s", session.full_str)

    def forget_all(self) -> None:
        for question in self._pending.values():
            self.router.awaiting.pop(question.iq_id, None)
        self._pending.clear()
