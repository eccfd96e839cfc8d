"""Offline message storage (XEP-0160) with delivery delay stamps (XEP-0203).

The router asks :meth:`OfflineService.store` to keep a message when the addressee has
no available resource (RFC 6121 §8.5.2.2.1); the presence module calls
:meth:`OfflineService.deliver` when a resource becomes available with a non-negative
priority. A per-account limit keeps one flooded account from filling the database: a
full queue makes ``store`` return False and the router bounces the message.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from lxml import etree

from xmppd.jid import JID
from xmppd.router import Router
from xmppd.session import Session
from xmppd.storage import AsyncDatabase
from xmppd.xml import ns

log = logging.getLogger("xmppd.offline")

DELAY = "{%s}delay" % ns.DELAY
CHATSTATES = "http://jabber.org/protocol/chatstates"
HINTS = "urn:xmpp:hints"
DEFAULT_LIMIT = 500

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


class OfflineService:
    """Implements the router's ``OfflineStore`` on top of storage's offline queue."""

    def __init__(
        self,
        router: Router,
        adb: AsyncDatabase,
        limit: int = DEFAULT_LIMIT,
        clock: Clock = utc_now,
    ) -> None:
        self.router = router
        self.adb = adb
        self.limit = limit
        self.clock = clock

    async def store(self, stanza: etree._Element, to: JID) -> bool:
        """Keep ``stanza`` for ``to``'s next login; False when the queue is full."""
        if not worth_storing(stanza):
            return True  # accepted and dropped on purpose: not an error for the sender
        kept = copy.deepcopy(stanza)
        delay = etree.SubElement(kept, DELAY, nsmap={None: ns.DELAY})
        delay.set("from", self.router.domain)
        delay.set("stamp", delay_stamp(self.clock()))
        xml = etree.tostring(kept, encoding="unicode")
        owner = str(to.bare)
        stored = await self.adb.run(self.adb.db.store_offline, owner, xml, self.limit)
        if not stored:
            log.info("event=offline_full owner=%s limit=%d", owner, self.limit)
            return False
        # The owner may have come online while we were writing (its initial presence
        # popped the queue before our row landed): hand it over now, or it would wait
        # for the next login. pop_offline is atomic, so nothing is delivered twice.
        online = [s for s in self.router.resources_of(owner) if s.available and s.priority >= 0]
        if online:
            await self.deliver(max(online, key=lambda s: s.priority))
        return True

    async def deliver(self, session: Session) -> int:
        """Send every queued message to ``session``; returns how many were sent.

        Messages a session could not take (it was cut off meanwhile) go back to storage.
        """
        if self.router.session_for(session.jid) is not session:
            return 0
        messages = await self.adb.run(self.adb.db.pop_offline, session.bare_str)
        for index, xml in enumerate(messages):
            if not session.send(xml.encode("utf-8")):
                rest = messages[index:]
                for item in rest:
                    await self.adb.run(
                        self.adb.db.store_offline, session.bare_str, item, self.limit + len(rest)
                    )
                log.info("event=offline_requeued owner=%s count=%d", session.bare_str, len(rest))
                return index
        if messages:
            log.info("event=offline_delivered jid=%s count=%d", session.full_str, len(messages))
        return len(messages)


def install(router: Router, adb: AsyncDatabase, limit: int = DEFAULT_LIMIT) -> OfflineService:
    """Make an :class:`OfflineService` the router's offline store."""
    service = OfflineService(router, adb, limit)
    router.offline_store = service
    return service
