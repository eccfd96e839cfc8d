"""Offline message storage (XEP-0160) with delivery delay stamps (XEP-0203).

Storing: the router calls :meth:`OfflineService.store` when the addressee has no
available resource (RFC 6121 §8.5.2.2.1). At most ``limit`` messages are kept per
account and none larger than a client's send queue can take; beyond that ``store``
returns False and the router bounces the message with service-unavailable (§8.5.2).

Delivering: when a resource becomes available with a non-negative priority the presence
module calls :meth:`OfflineService.start`. One task per account (in this service's
nursery) sends the queue in pages that fit the resource's send queue, and deletes a page
from storage only once it was delivered:

- with XEP-0198 enabled on the session: once the client acknowledged every stanza of
  the page (the next page waits for that);
- without it: once the transport wrote the page (to the socket, or into a BOSH response
  body), which is the most a server can know. A connection cut between that write and
  the delete gets the page again at the next login: at least once, never lost.

So a client that stops reading makes the server hold one page, not its whole queue. If
the session ends first, the messages it was sent and never acknowledged stay stored
(:meth:`OfflineService.release` tells stream management to leave those stanzas alone)
and delivery carries on to another available resource of the account, if there is one,
or waits for the next login. Messages that arrive live while a queue is being delivered
may overtake older stored ones; each carries its delay stamp.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Self

import trio
from lxml import etree

from xmppd.jid import JID
from xmppd.router import Router
from xmppd.services.lifecycle import Service, ServiceContext
from xmppd.session import Session
from xmppd.storage import AsyncDatabase
from xmppd.transport.progress import WriteProgress
from xmppd.xml import ns

log = logging.getLogger("xmppd.offline")

DELAY = "{%s}delay" % ns.DELAY
CHATSTATES = "http://jabber.org/protocol/chatstates"
HINTS = "urn:xmpp:hints"
DEFAULT_LIMIT = 500
#: Largest message kept: what a default send queue (1 MiB) can take, less framing room.
DEFAULT_MAX_BYTES = 1_048_576 - 1024
#: Messages per page at most (fewer when XEP-0198 allows fewer unacknowledged stanzas).
PAGE_ROWS = 100
#: Bytes a transport may add around one stanza (BOSH/WebSocket framing), for room checks.
FRAMING_SLACK = 64

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def delay_stamp(moment: datetime) -> str:
    """XEP-0082 DateTime in UTC with a 'Z', as XEP-0203 requires."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += ".%03d" % (moment.microsecond // 1000)
    return text + "Z"


def worth_storing(stanza: etree._Element) -> bool:
    """Skip what nobody wants later: chat-state-only messages and XEP-0334 ``no-store``.

    XEP-0160 §3 and XEP-0085 §5.5 ask servers not to store bare chat states.
    """
    children = [child for child in stanza if isinstance(child.tag, str)]
    if any(child.tag == "{%s}store" % HINTS for child in children):
        return True
    if any(child.tag in ("{%s}no-store" % HINTS, "{%s}no-permanent-store" % HINTS)
           for child in children):  # fmt: skip
        return False
    return any(etree.QName(child).namespace != CHATSTATES for child in children)


class _Delivery:
    """One account's queue being delivered: the resource it goes to, the page in flight."""

    __slots__ = ("again", "changed", "mark", "sent", "settled", "target")

    def __init__(self) -> None:
        #: More was stored (or another resource came online) since the last look.
        self.again = False
        self.target: Session | None = None
        #: (row id, bytes) sent to ``target`` and not deleted yet.
        self.sent: list[tuple[int, bytes]] = []
        #: XEP-0198 send count of the page's last stanza, while its ack is awaited.
        self.mark: int | None = None
        #: The session ended after acknowledging the whole page: it may be deleted.
        self.settled = False
        self.changed = trio.Event()

    def wake(self) -> None:
        """Something the delivery waits for happened (an ack, the session's end)."""
        self.changed.set()

    async def wait(self) -> None:
        await self.changed.wait()
        self.changed = trio.Event()


class OfflineService(Service):
    """Implements the router's ``OfflineStore`` on top of storage's offline queue."""

    name = "offline"

    def __init__(
        self,
        router: Router,
        adb: AsyncDatabase,
        limit: int = DEFAULT_LIMIT,
        clock: Clock = utc_now,
        max_message_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.router = router
        self.adb = adb
        self.limit = limit
        self.clock = clock
        self.max_message_bytes = max_message_bytes
        self._deliveries: dict[str, _Delivery] = {}
        self._idle = trio.Event()
        self._idle.set()
        self._nursery: trio.Nursery | None = None

    @classmethod
    def build(cls, ctx: ServiceContext) -> Self:
        """The router's offline store, ``[offline]`` limits; no stored message may be larger
        than a client's queue (c2s, WebSocket, BOSH)."""
        cfg = ctx.config
        queue = min(cfg.c2s.send_queue_bytes, cfg.bosh.max_buffer_bytes)
        service = cls(ctx.router, ctx.adb, cfg.offline.max_messages, max_message_bytes=queue - 1024)
        ctx.router.offline_store = service
        return service

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Host the delivery tasks until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    # ---------------------------------------------------------------- storing
    async def store(self, stanza: etree._Element, to: JID) -> bool:
        """Keep ``stanza`` for ``to``'s next login; False when it cannot be kept."""
        if not worth_storing(stanza):
            return True  # accepted and dropped on purpose: not an error for the sender
        owner = str(to.bare)
        xml = self._stored_form(stanza)
        if len(xml.encode("utf-8")) > self.max_message_bytes:
            log.info("event=offline_too_large owner=%s bytes=%d", owner, len(xml))
            return False
        stored = await self.adb.run(self.adb.db.store_offline, owner, xml, self.limit)
        if not stored:
            log.info("event=offline_full owner=%s limit=%d", owner, self.limit)
            return False
        # The owner may have come online while we were writing (its initial presence
        # started a delivery that already looked): have it look again.
        self.start_for(owner)
        return True

    def _stored_form(self, stanza: etree._Element) -> str:
        """The message with our XEP-0203 delay (once: a redelivered one has it already)."""
        kept = copy.deepcopy(stanza)
        domain = self.router.domain
        if not any(el.get("from") == domain for el in kept.iterchildren(DELAY)):
            delay = etree.SubElement(kept, DELAY, nsmap={None: ns.DELAY})
            delay.set("from", domain)
            delay.set("stamp", delay_stamp(self.clock()))
        return etree.tostring(kept, encoding="unicode")

    # ------------------------------------------------------------- delivering
    def start(self, session: Session) -> None:
        """``session`` became available: deliver the account's queue (to it, preferably)."""
        self.start_for(session.bare_str, prefer=session)

    def start_for(self, owner: str, prefer: Session | None = None) -> None:
        """Deliver ``owner``'s queue to an available resource, unless already under way."""
        delivery = self._deliveries.get(owner)
        if delivery is not None:
            delivery.again = True
            delivery.wake()
            return
        if not (prefer is not None and self._deliverable(prefer)) and self._best(owner) is None:
            return
        if self._nursery is None:
            # a wiring bug: the messages wait in storage rather than take anything down
            log.error("event=offline_service_not_running owner=%s", owner)
            return
        delivery = self._deliveries[owner] = _Delivery()
        if self._idle.is_set():
            self._idle = trio.Event()
        self._nursery.start_soon(self._run, owner, delivery, prefer)

    def release(self, session: Session) -> frozenset[int]:
        """``session`` ends: stop delivering to it.

        Returns ``id()`` of the stanza bytes it was sent from storage and has not
        acknowledged: they are still stored (delivered again later), so whoever handles
        the session's unacknowledged stanzas must skip them.
        """
        delivery = self._deliveries.get(session.bare_str)
        if delivery is None or delivery.target is not session:
            return frozenset()
        sm = session.sm
        if sm is not None and delivery.mark is not None:
            # decided now: once the session hands its queue over, everything looks acked
            delivery.settled = sm.acked_through(delivery.mark)
        delivery.wake()
        return frozenset(id(data) for _, data in delivery.sent)

    async def wait_idle(self) -> None:
        """Until no delivery runs (tests; a shutdown could use it)."""
        while self._deliveries:
            await self._idle.wait()

    def _deliverable(self, session: Session) -> bool:
        return (
            session.available
            and session.priority >= 0
            and session.attached
            and self.router.session_for(session.jid) is session
        )

    def _best(self, owner: str) -> Session | None:
        candidates = [s for s in self.router.resources_of(owner) if self._deliverable(s)]
        return max(candidates, key=lambda s: s.priority, default=None)

    async def _run(self, owner: str, delivery: _Delivery, prefer: Session | None) -> None:
        try:
            while True:
                delivery.again = False
                if prefer is not None and self._deliverable(prefer):
                    target: Session | None = prefer
                else:
                    target = self._best(owner)
                prefer = None
                if target is None:
                    return
                finished = await self._deliver_to(owner, target, delivery)
                if finished and not delivery.again:
                    return
        except Exception:
            # the rows stay stored: delivered (perhaps again) at the next login
            log.exception("event=offline_delivery_failed owner=%s", owner)
        finally:
            if self._deliveries.get(owner) is delivery:
                del self._deliveries[owner]
            if not self._deliveries:
                self._idle.set()

    async def _deliver_to(self, owner: str, target: Session, delivery: _Delivery) -> bool:
        """Page the queue to ``target``; True once it is empty, False if ``target`` went."""
        delivery.target = target
        after = 0
        sent_total = 0
        try:
            while True:
                page = await self._next_page(owner, target, delivery, after)
                if page is None:
                    return False
                if not page:
                    if sent_total:
                        log.info(
                            "event=offline_delivered jid=%s count=%d", target.full_str, sent_total
                        )
                    return True
                if not await self._send_page(target, delivery, page):
                    continue  # the connection went meanwhile: _next_page waits for its fate
                after = page[-1][0]
                await self.adb.run(self.adb.db.delete_offline, owner, [i for i, _ in page])
                delivery.sent = []
                sent_total += len(page)
        finally:
            sm = target.sm
            if sm is not None and sm.on_ack == delivery.wake:
                sm.on_ack = None
            delivery.target = None
            delivery.sent = []

    def _lost(self, target: Session) -> bool:
        return self.router.session_for(target.jid) is not target

    async def _next_page(
        self, owner: str, target: Session, delivery: _Delivery, after: int
    ) -> list[tuple[int, str]] | None:
        """The next page that fits ``target`` right now; None once ``target`` is gone.

        Waits while the session is detached (XEP-0198: until resumed or ended), while
        its stream-management window is full, and while its queue has no room.
        """
        while True:
            if self._lost(target):
                return None
            sm = target.sm
            if sm is not None:
                sm.on_ack = delivery.wake
            progress = _progress(target)
            if not target.attached or (progress is not None and progress.closed):
                await delivery.wait()  # resumed, or ended (release() wakes us)
                continue
            if sm is not None and sm.room() == 0:
                target.request_ack()
                await delivery.wait()
                continue
            limit = progress.limit if progress is not None else self.max_message_bytes
            rows = PAGE_ROWS if sm is None else min(PAGE_ROWS, sm.room())
            page = await self.adb.run(self.adb.db.offline_page, owner, after, rows, limit // 2)
            if not page:
                return page
            size = sum(len(xml.encode("utf-8")) + FRAMING_SLACK for _, xml in page)
            if progress is not None and not await progress.wait_room(size):
                continue
            # Time passed: send only if nothing changed that the checks above rely on.
            if self._lost(target) or not target.attached or target.sm is not sm:
                continue
            if _progress(target) is not progress or (sm is not None and sm.room() < len(page)):
                continue
            return page

    async def _send_page(
        self, target: Session, delivery: _Delivery, page: list[tuple[int, str]]
    ) -> bool:
        """Send ``page`` and wait until it is delivered; False if the connection went first."""
        sm = target.sm
        progress = _progress(target)
        delivery.sent = []
        for row_id, xml in page:
            data = xml.encode("utf-8")
            if not target.send(data):
                return False
            delivery.sent.append((row_id, data))
        if sm is None:
            return progress is None or await progress.wait_written(progress.accepted)
        delivery.mark = mark = sm.sent
        delivery.settled = False
        target.request_ack()
        try:
            while True:
                if self._lost(target):
                    return delivery.settled
                if sm.acked_through(mark):
                    return True
                await delivery.wait()
        finally:
            delivery.mark = None


def _progress(session: Session) -> WriteProgress | None:
    return getattr(session.outbox, "progress", None)
