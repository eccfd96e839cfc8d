"""XEP-0198 resumption in the trio shell: detached sessions, their expiry, their end.

When a managed, resumable session loses its connection (a laptop sleeps, Wi-Fi drops),
the session stays bound in the router: stanzas for it keep arriving and wait in its
unacked queue (:class:`~xmppd.stream.sm.StreamManagement`, bounded). A ``<resume/>``
within ``max`` seconds moves the session to the new connection, which resends exactly
what the client has not acknowledged. Otherwise the session really ends: unavailable
presence goes out (contacts, rooms) and every unacknowledged message of type chat or
normal is handled as if sent to an unavailable resource (RFC 6121 §8.5.3.2.1 /
XEP-0198 §4): another resource of the account with a live connection, offline storage,
or an error to its sender — never silently dropped, never to another detached session
(which would hold it for a client that may not come back either). Archive results and
carbon copies are the exception: they were for that session alone (``_SESSION_ONLY``).

Each message is handed on once: a stanza fanned out to several resources of the account
is one ``bytes`` object in each of their queues, so an ending session skips those that
another session still holds (the last holder hands it on), and the stanzas offline
delivery sent it are still stored (:meth:`OfflineService.release`). That check runs in
the same synchronous step as the unbinding, so two sessions ending together cannot both
skip, or both hand on, the same message.

Per account, ``sm.max_detached`` sessions may wait for a resume; one more ends the one
detached longest. ``limits.max_resources`` caps the bound resources, detached ones
included: binding one more ends the session detached longest, and with none detached
the bind is refused with ``resource-constraint`` (RFC 6120 §7.6.2.1).

One task serves all detached sessions (it sleeps until the earliest deadline); an idle
connection costs nothing here.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import trio
from lxml import etree

from xmppd.jid import JID
from xmppd.session import Session
from xmppd.stream.framing import with_client_ns
from xmppd.stream.sm import ResumeRegistry
from xmppd.xml import ns
from xmppd.xml.errors import StanzaError

if TYPE_CHECKING:
    from xmppd.config import LimitsConfig, SMConfig
    from xmppd.router import Router

log = logging.getLogger("xmppd.sm")

_MESSAGE = "{%s}message" % ns.CLIENT
_IQ = "{%s}iq" % ns.CLIENT
#: Messages meant for the one session they were sent to, never handed on: an archive
#: query's results (XEP-0313 §4.2: tied to that session's ``queryid``; the archive still
#: has them) and carbon copies (XEP-0280: every resource got its own copy, the message
#: itself reached its recipient). Handed on, another resource would get unasked-for
#: results or a duplicate, and offline storage would fill with them.
_SESSION_ONLY = frozenset(
    {
        "{urn:xmpp:mam:2}result",
        "{urn:xmpp:carbons:2}received",
        "{urn:xmpp:carbons:2}sent",
    }
)
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


class Detached:
    """The outbox of a session without a connection: its unacked queue is the buffer."""

    __slots__ = ("manager", "session")

    def __init__(self, manager: ResumptionManager, session: Session) -> None:
        self.manager = manager
        self.session = session

    def enqueue(self, data: bytes) -> bool:
        return True  # Session.send already kept the stanza in the unacked queue

    def close(self, condition: str | None = None, text: str | None = None) -> None:
        """Replaced by a new bind, or the queue is full: end the session now."""
        self.manager.expire_now(self.session)


class ResumptionManager:
    """All resumable sessions of this process, and the one task that expires them."""

    def __init__(self, router: Router, config: SMConfig, limits: LimitsConfig) -> None:
        self.router = router
        #: ``[sm]`` and ``[limits]``: sections the running configuration reloads in place.
        self.config = config
        self.limits = limits
        self.registry: ResumeRegistry[Session] = ResumeRegistry()
        #: Managed sessions per bare JID that have not handed their queue on yet.
        self._holders: dict[str, set[Session]] = {}
        self._wake = trio.Event()
        self._nursery: trio.Nursery | None = None
        #: Shutting down: sessions end instead of detaching.
        self.closing = False

    # ------------------------------------------------------------ bookkeeping
    def register(self, session: Session) -> None:
        """``session`` enabled stream management (resumable or not)."""
        sm = session.sm
        if sm is None:
            return
        self._holders.setdefault(session.bare_str, set()).add(session)
        if sm.token is not None:
            self.registry.add(sm.token, sm.owner, session)

    def lookup(self, previd: str, owner: str) -> Session | None:
        session = self.registry.lookup(previd, owner)
        if session is not None and session.revoked is not None:
            return None  # ended by the server (forum ban, logout): never revived
        return session

    def ended_h(self, previd: str, owner: str) -> int | None:
        return self.registry.ended_h(previd, owner)

    def detach(self, session: Session) -> None:
        """The connection is gone; keep the session for ``max`` seconds."""
        sm = session.sm
        assert sm is not None and sm.token is not None
        now = trio.current_time()
        session.outbox = Detached(self, session)
        session.detached_since = now
        self.registry.detach(sm.token, now, sm.max)
        self._wake.set()
        log.info(
            "event=session_detached jid=%s unacked=%d timeout=%d",
            session.full_str,
            len(sm),
            sm.max,
        )
        detached = self._detached_of(session.bare_str)
        for old in detached[: max(0, len(detached) - self.config.max_detached)]:
            self.evict(old, "sm.max_detached")

    def _detached_of(self, bare: str) -> list[Session]:
        """The account's detached sessions, the one detached longest first."""
        found = [s for s in self.router.resources_of(bare) if s.detached_since is not None]
        return sorted(found, key=lambda s: s.detached_since or 0.0)

    def make_room(self, jid: JID) -> bool:
        """Before binding ``jid``: stay within ``limits.max_resources`` for its account.

        Ends the sessions detached longest if that is enough; otherwise changes nothing
        and returns False (the bind gets resource-constraint). Binding a resource that
        is already bound replaces it, so that one does not count.
        """
        limit = self.limits.max_resources
        others = [
            s for s in self.router.resources_of(str(jid.bare)) if s.jid.resource != jid.resource
        ]
        excess = len(others) + 1 - limit
        if excess <= 0:
            return True
        detached = self._detached_of(str(jid.bare))
        if len(detached) < excess:
            return False
        for old in detached[:excess]:
            self.evict(old, "limits.max_resources")
        return True

    def evict(self, session: Session, reason: str) -> None:
        """End a detached session now, to make room (its stanzas are handed on)."""
        log.info("event=session_evicted jid=%s reason=%s", session.full_str, reason)
        items = self.release(session)
        if self._nursery is None:
            raise RuntimeError("ResumptionManager.run() is not running")
        self._nursery.start_soon(self.finish, session, items)

    def take_over(self, session: Session, outbox: Any) -> Any:
        """A ``<resume/>`` won: ``outbox`` carries the session now; returns the old one."""
        sm = session.sm
        assert sm is not None and sm.token is not None
        old = session.outbox
        self.registry.attach(sm.token)
        session.outbox = outbox
        session.detached_since = None
        return None if isinstance(old, Detached) else old

    def expire_now(self, session: Session) -> None:
        sm = session.sm
        if sm is None or sm.token is None or not self.registry.is_detached(sm.token):
            return
        self.registry.expire_now(sm.token, trio.current_time())
        self._wake.set()

    # -------------------------------------------------------------------- task
    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                deadline = self.registry.next_deadline()
                with trio.move_on_at(math.inf if deadline is None else deadline):
                    await self._wake.wait()
                self._wake = trio.Event()
                for session in self.registry.expired(trio.current_time()):
                    log.info("event=session_expired jid=%s", session.full_str)
                    nursery.start_soon(self.finish, session, self.release(session))

    def _forget(self, session: Session) -> None:
        sm = session.sm
        if sm is not None and sm.token is not None:
            self.registry.remove(sm.token, final_h=sm.inbound)

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop detaching; end the detached sessions so their stanzas reach storage."""
        self.closing = True
        sessions = self.registry.detached()
        with trio.move_on_after(grace), trio.CancelScope(shield=True):
            for session in sessions:
                self._forget(session)
                await self.end_session(session)

    # --------------------------------------------------------------- the end
    async def end_session(self, session: Session) -> None:
        """Unbind, announce unavailable, and find a home for unacknowledged stanzas."""
        await self.finish(session, self.release(session))

    def release(self, session: Session) -> list[bytes]:
        """The synchronous start of a session's end: unbind it and take its stanzas.

        Returns the unacknowledged stanzas that are this session's to hand on: not those
        another session of the account still holds, nor those still in offline storage.
        Idempotent: a second call returns nothing.
        """
        router = self.router
        self._forget(session)
        if router.unbind(session):
            router.ending.add(session.full_str)
        bare = session.bare_str
        holders = self._holders.get(bare)
        if holders is not None:
            holders.discard(session)
            if not holders:
                del self._holders[bare]
        offline = router.offline_store
        skip = set(offline.release(session)) if offline is not None else set()
        # XEP-0352: what an inactive client was never sent is handed on like the unacked
        # (it came after them); only bodiless chat/normal messages survive redeliver()
        held = session.csi.drain() if session.csi is not None else []
        session.csi = None
        sm = session.sm
        if (sm is None or not len(sm)) and not held:
            return []
        for other in self._holders.get(bare, ()):
            if other.sm is not None:
                skip.update(id(data) for data in other.sm.unacked())
        items = (sm.take_unacked() if sm is not None else []) + held
        kept = [data for data in items if id(data) not in skip]
        if len(kept) != len(items):
            log.info(
                "event=sm_unacked_held_elsewhere jid=%s count=%d",
                session.full_str,
                len(items) - len(kept),
            )
        return kept

    async def finish(self, session: Session, items: list[bytes]) -> None:
        """The rest of a session's end, after :meth:`release`: presence, then stanzas."""
        router = self.router
        handler = router.presence_handler
        try:
            if handler is not None and (session.available or session.directed_presence):
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    try:
                        await handler.session_ended(session)
                    except Exception:
                        log.exception("event=presence_cleanup_failed jid=%s", session.full_str)
        finally:
            router.ending.discard(session.full_str)
        with trio.CancelScope(shield=True):
            if items:
                await self.redeliver(session, items)
            offline = router.offline_store
            if offline is not None:
                # what offline delivery had sent this session is still stored: another
                # available resource of the account gets it now
                offline.start_for(session.bare_str)
        log.info("event=session_ended jid=%s", session.full_str)

    async def redeliver(self, session: Session, items: list[bytes]) -> None:
        """Unacked stanzas of an ended session, as if sent to an unavailable resource."""
        router = self.router
        rerouted = bounced = dropped = 0
        for data in items:
            try:
                el = etree.fromstring(with_client_ns(data), _PARSER)
            except etree.XMLSyntaxError:
                log.error("event=sm_unacked_unparsable jid=%s", session.full_str)
                continue
            kind = el.get("type") or "normal"
            if el.tag == _MESSAGE and kind in ("chat", "normal") and not _session_only(el):
                try:
                    await router.redeliver(el, session.bare)
                    rerouted += 1
                except Exception:
                    # offline storage failed (database down): the sender is told, as
                    # for a live message that could not be stored; never a silent loss
                    log.exception("event=sm_redeliver_failed jid=%s", session.full_str)
                    router.bounce(el, StanzaError("internal-server-error"))
                    bounced += 1
            elif el.tag == _IQ and kind in ("get", "set"):
                router.bounce(el, StanzaError("service-unavailable"))
                bounced += 1
            else:
                # presence, groupchat (the room's history has it), headline, errors,
                # archive results and carbon copies
                dropped += 1
        log.info(
            "event=sm_unacked_handled jid=%s rerouted=%d bounced=%d dropped=%d",
            session.full_str,
            rerouted,
            bounced,
            dropped,
        )


def _session_only(message: etree._Element) -> bool:
    """An archive result or a carbon copy (:data:`_SESSION_ONLY`)."""
    return any(child.tag in _SESSION_ONLY for child in message)
