"""One set of bookmarks for XEP-0048 (private XML) and XEP-0402 (PEP) clients.

XEP-0411 (the old ``urn:xmpp:bookmarks-conversion:0``) is Deprecated and converted only
to XEP-0048's own PEP node; XEP-0402 superseded it, and its §5.3 "Compatibility" is what
this does, advertised as ``urn:xmpp:bookmarks:1#compat`` on the account:

- **private XML to PEP**: after a client stores ``<storage xmlns='storage:bookmarks'>``
  (XEP-0049), each new or changed conference is published to ``urn:xmpp:bookmarks:1``
  (item id = room JID) and each one gone is retracted, so PEP clients with ``+notify``
  are told; unchanged items are left alone (§5.3.2's SHOULD NOT). A conference without a
  valid room ``jid`` is not converted (XEP-0048 makes it REQUIRED); the set itself is
  stored as sent (XEP-0049 does not look inside). A node created here is ``whitelist``
  (owner only, XEP-0223) with ``persist_items``; an existing node that is not
  ``whitelist`` is not written (XEP-0411 §5: private data only where only the user can
  read it). At most ``[pep] max_items`` items; more are left out, logged.
- **PEP to private XML**: after a client publishes or retracts a bookmark item, the
  storage element is rebuilt from all the node's items (§5.3.1: each ``jid`` = item id),
  keeping the ``<url/>`` bookmarks the old storage had, within the
  ``[private_storage]`` quota.

No loops: each side writes the other through the hooks' ``tell=False`` paths.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Self

from lxml import etree

from xmppd.pubsub import bookmarks
from xmppd.pubsub.bookmarks import NODE, STORAGE_NS, Conference
from xmppd.services.basic import BasicServices
from xmppd.services.lifecycle import Service, ServiceContext
from xmppd.services.pep import PepService
from xmppd.services.presence import PresenceManager
from xmppd.services.private_storage import PrivateStorageService
from xmppd.services.vcard import parse_stored, serialise
from xmppd.session import Session
from xmppd.xml.errors import StanzaError

log = logging.getLogger("xmppd.bookmark_sync")

#: Accounts remembered as checked at their first presence (LRU), see ``resource_available``.
CHECKED_SIZE = 10_000


class BookmarkSync(Service):
    """Keeps XEP-0048 private XML and XEP-0402 PEP bookmarks one (module docstring)."""

    name = "bookmark_sync"
    needs = (BasicServices, PresenceManager, PepService, PrivateStorageService)

    def __init__(self, pep: PepService, private: PrivateStorageService) -> None:
        self.pep = pep
        self.private = private
        self.checked: OrderedDict[str, None] = OrderedDict()

    @classmethod
    def build(cls, ctx: ServiceContext) -> Self | None:
        """Hook private XML sets and PEP publishes; None unless both services run and
        ``[private_storage] bookmarks_conversion`` is true."""
        pep, private = ctx.get(PepService), ctx.get(PrivateStorageService)
        if pep is None or private is None or not ctx.config.private_storage.bookmarks_conversion:
            return None
        sync = cls(pep, private)
        private.on_set(sync.private_set)
        pep.on_publish(sync.published)
        ctx.need(PresenceManager).watch(sync.resource_available)
        disco = ctx.need(BasicServices).disco
        disco.account_features = disco.account_features | {bookmarks.COMPAT_FEATURE}
        return sync

    async def _pep_items(self, owner: str) -> dict[str, tuple[Conference, etree._Element]]:
        found: dict[str, tuple[Conference, etree._Element]] = {}
        for item_id, payload in await self.pep.items_of(owner, NODE):
            try:
                element = parse_stored(payload)
            except etree.XMLSyntaxError:
                continue
            conf = bookmarks.from_item(item_id, element)
            if conf is not None:
                found[conf.jid] = (conf, element)
        return found

    async def resource_available(self, session: Session, available: bool) -> None:
        """XEP-0411 §4: bookmarks kept only in private XML (stored before the conversion
        ran) are copied to PEP at the account's first available presence since start-up,
        so PEP-only clients see them."""
        owner = session.bare_str
        if not available or owner in self.checked:
            return
        self.checked[owner] = None
        while len(self.checked) > CHECKED_SIZE:
            self.checked.popitem(last=False)
        if await self.pep.items_of(owner, NODE):
            return
        stored = await self.private.read(owner, STORAGE_NS)
        if stored is not None:
            await self.private_set(owner, STORAGE_NS, stored)

    # ------------------------------------------------- private XML to PEP
    async def private_set(self, owner: str, namespace: str, xml: str) -> None:
        """§5.3.2: a replaced XEP-0048 list becomes per-item publishes and retractions."""
        if namespace != STORAGE_NS:
            return
        wanted: list[Conference] = []
        skipped = 0
        for storage in parse_stored(f"<x>{xml}</x>"):
            if storage.tag == "{%s}storage" % STORAGE_NS:
                found, bad = bookmarks.from_storage(storage)
                wanted.extend(c for c in found if c.jid not in {w.jid for w in wanted})
                skipped += bad
        limit = self.pep.config.max_items
        if len(wanted) > limit:
            skipped += len(wanted) - limit
            wanted = wanted[:limit]
        current = await self._pep_items(owner)
        changes = bookmarks.diff({j: c for j, (c, _el) in current.items()}, wanted)
        try:
            for conf in changes.publish:
                previous = current.get(conf.jid, (None, None))[1]
                payload = bookmarks.item_payload(conf, previous)
                options = dict(bookmarks.NODE_OPTIONS, max_items=limit)
                await self.pep.publish_for(owner, NODE, conf.jid, payload, options)
            for jid in changes.retract:
                await self.pep.retract_for(owner, NODE, jid)
        except StanzaError as err:
            log.info(
                "event=bookmarks_not_converted owner=%s way=private_to_pep reason=%s",
                owner, err.condition,
            )  # fmt: skip
            return
        log.info(
            "event=bookmarks_converted owner=%s way=private_to_pep published=%d retracted=%d"
            " skipped=%d",
            owner, len(changes.publish), len(changes.retract), skipped,
            extra={"owner": owner},
        )  # fmt: skip

    # ------------------------------------------------- PEP to private XML
    async def published(self, owner: str, node: str, item_id: str, payload: str | None) -> None:
        """§5.3.1: after a bookmark item changes, the storage list is all the items."""
        if node != NODE:
            return
        conferences = [conf for conf, _el in (await self._pep_items(owner)).values()]
        stored = await self.private.read(owner, STORAGE_NS)
        previous = None
        if stored is not None:
            for el in parse_stored(f"<x>{stored}</x>"):
                if el.tag == "{%s}storage" % STORAGE_NS:
                    previous = el
                    break
        storage = bookmarks.to_storage(conferences, previous)
        try:
            await self.private.store_for(owner, STORAGE_NS, serialise(storage), tell=False)
        except StanzaError:
            log.info(
                "event=bookmarks_not_converted owner=%s way=pep_to_private reason=quota", owner
            )
            return
        log.info(
            "event=bookmarks_converted owner=%s way=pep_to_private conferences=%d",
            owner, len(conferences),
            extra={"owner": owner},
        )  # fmt: skip
