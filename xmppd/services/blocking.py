"""XEP-0191 blocking command: each account's blocklist, and the router keeping to it.

A client asks for its blocklist (``<blocklist/>``), blocks JIDs (``<block>``) and
unblocks some or all of them (``<unblock>``, no items: all). Each change is stored
(:class:`~xmppd.storage.blocking.BlockStore`), then pushed to every resource of the
account that has asked for the list (§3.2-§3.4), including the one that made it.

An item names a domain, a bare JID or a full JID (and ``domain/resource``), matched as
XEP-0016 §2.1 says: ``user@domain`` covers every resource of that user, ``domain``
everyone there (:func:`item_matches`). The lists live in memory; the router asks
:meth:`BlockingService.blocks` about every stanza between a local account and anyone
else (``Router.screen``), so that, once blocked, a JID's stanzas do not reach the
account — its messages and iq requests are answered ``service-unavailable``, as if the
account were offline, and its presence is dropped — and the account's own stanzas do not
reach it (``not-acceptable`` with ``<blocked xmlns='urn:xmpp:blocking:errors'/>`` for
messages and iq requests, presence dropped). Presence the server makes (broadcasts,
probes, subscription handling) and a room's fan-out are screened the same way, so a room
occupant (``room@service/nick``) can be blocked too.

Blocking a contact who sees the account's presence ends it with ``unavailable`` from each
available resource (§3.3); unblocking one sends the account's current presence again, and
the contact's to the account's resources, as the roster subscriptions allow (§3.4).
An account blocks at most :data:`MAX_ITEMS` JIDs, each at most :data:`JID_MAX` characters
(``policy-violation`` / ``not-acceptable`` beyond: nothing is stored).
"""

from __future__ import annotations

import logging
import secrets
from typing import Self

from lxml import etree

from xmppd.jid import JID, JIDError
from xmppd.router import Router
from xmppd.services.lifecycle import Service, ServiceContext
from xmppd.session import Session
from xmppd.storage import AsyncDatabase
from xmppd.storage.blocking import BlockStore
from xmppd.storage.models import JID_MAX
from xmppd.xml import ns
from xmppd.xml.errors import StanzaError

log = logging.getLogger("xmppd.blocking")

IQ = "{%s}iq" % ns.CLIENT
PRESENCE = "{%s}presence" % ns.CLIENT
BLOCKLIST = "{%s}blocklist" % ns.BLOCKING
BLOCK = "{%s}block" % ns.BLOCKING
UNBLOCK = "{%s}unblock" % ns.BLOCKING
ITEM = "{%s}item" % ns.BLOCKING
#: The most JIDs one account may block.
MAX_ITEMS = 1000
_FROM_STATES = ("from", "both")
_TO_STATES = ("to", "both")


def item_matches(item: str, other: JID) -> bool:
    """Whether blocklist item ``item`` (a normalised JID string) covers ``other``."""
    return item in candidates(other)


def candidates(other: JID) -> tuple[str, ...]:
    """The items that would cover ``other`` (XEP-0016 §2.1): full, bare, domain/resource,
    domain."""
    found = [str(other), str(other.bare), other.domain]
    if other.resource is not None:
        found.append(f"{other.domain}/{other.resource}")
    return tuple(dict.fromkeys(found))


def parse_items(payload: etree._Element) -> list[str]:
    """The normalised JIDs of ``payload``'s items, or the XEP's error (§3.3)."""
    jids: list[str] = []
    for item in payload.iterfind(ITEM):
        raw = item.get("jid")
        if not raw:
            raise StanzaError("bad-request", "an item needs a jid")
        try:
            jid = str(JID.parse(raw))
        except JIDError:
            raise StanzaError("jid-malformed", f"not a JID: {raw[:100]!r}") from None
        if len(jid) > JID_MAX:
            raise StanzaError("not-acceptable", f"a blocked JID may be {JID_MAX} characters")
        jids.append(jid)
    return list(dict.fromkeys(jids))


class BlockingService(Service):
    """The router's ``screen``: every account's blocklist, and the iqs that change it."""

    name = "blocking"

    def __init__(self, router: Router, adb: AsyncDatabase) -> None:
        self.router = router
        self.adb = adb
        self.store = BlockStore(adb.db)
        #: bare JID -> blocked items; an account without a list has no key
        self.lists: dict[str, set[str]] = {}

    @classmethod
    def build(cls, ctx: ServiceContext) -> Self:
        """Load every blocklist (blocking, at start-up), answer the iqs, screen stanzas."""
        service = cls(ctx.router, ctx.adb)
        service.lists = service.store.load_all()
        router = ctx.router
        for tag in (BLOCKLIST, BLOCK, UNBLOCK):
            router.account_iq[tag] = service.handle_iq
        router.screen = service
        router.features.add(ns.BLOCKING)
        return service

    # ---------------------------------------------------------------- Screen
    def in_use(self) -> bool:
        return bool(self.lists)  # only non-empty lists are kept

    def has_list(self, owner: str) -> bool:
        return owner in self.lists

    def blocks(self, owner: str, other: JID) -> bool:
        items = self.lists.get(owner)
        if not items:
            return False
        return any(c in items for c in candidates(other))

    # ------------------------------------------------------------------ iqs
    async def handle_iq(
        self, stanza: etree._Element, origin: Session | None, router: Router
    ) -> etree._Element | None:
        """``<blocklist/>`` (get), ``<block>`` and ``<unblock>`` (set) of the sender's own
        account."""
        if origin is None:
            raise StanzaError("service-unavailable")
        payload, kind = stanza[0], stanza.get("type")
        owner = origin.bare_str
        if payload.tag == BLOCKLIST:
            if kind != "get":
                raise StanzaError("bad-request", "the blocklist is read with a get")
            origin.blocklist_requested = True
            return self._blocklist(owner)
        if kind != "set":
            raise StanzaError("bad-request", "block and unblock are sets")
        jids = parse_items(payload)
        if payload.tag == BLOCK:
            await self._block(owner, jids)
        else:
            await self._unblock(owner, jids or None)
        reply = etree.Element(IQ, type="result", nsmap={None: ns.CLIENT})
        router.reply_to(stanza, reply)
        self._push(owner, payload.tag, jids)
        return None

    def _blocklist(self, owner: str) -> etree._Element:
        reply = etree.Element(IQ, type="result", nsmap={None: ns.CLIENT})
        q = etree.SubElement(reply, BLOCKLIST, nsmap={None: ns.BLOCKING})
        for jid in sorted(self.lists.get(owner, ())):
            etree.SubElement(q, ITEM, jid=jid)
        return reply

    async def _block(self, owner: str, jids: list[str]) -> None:
        if not jids:
            raise StanzaError("bad-request", "block at least one JID")
        have = self.lists.get(owner, set())
        new = [j for j in jids if j not in have]
        if len(have) + len(new) > MAX_ITEMS:
            raise StanzaError("policy-violation", f"at most {MAX_ITEMS} JIDs may be blocked")
        await self.adb.run(self.store.add, owner, new)
        for jid in new:
            await self._presence_between(owner, JID.parse(jid), available=False)
        self.lists.setdefault(owner, set()).update(new)
        log.info("event=blocked owner=%s count=%d", owner, len(new))

    async def _unblock(self, owner: str, jids: list[str] | None) -> None:
        have = self.lists.get(owner, set())
        gone = sorted(have) if jids is None else [j for j in jids if j in have]
        await self.adb.run(self.store.remove, owner, jids)
        have.difference_update(gone)
        if not have:
            self.lists.pop(owner, None)
        for jid in gone:
            await self._presence_between(owner, JID.parse(jid), available=True)
        log.info("event=unblocked owner=%s count=%d", owner, len(gone))

    def _push(self, owner: str, tag: str, jids: list[str]) -> None:
        """§3.3/§3.4: the change to every resource that asked for the list."""
        targets = [s for s in self.router.resources_of(owner) if s.blocklist_requested]
        if not targets:
            return
        iq = etree.Element(IQ, type="set", nsmap={None: ns.CLIENT})
        iq.set("id", "block-" + secrets.token_hex(6))
        q = etree.SubElement(iq, tag, nsmap={None: ns.BLOCKING})
        for jid in jids:
            etree.SubElement(q, ITEM, jid=jid)
        for session in targets:
            iq.set("to", session.full_str)
            session.send(etree.tostring(iq))

    # -------------------------------------------------------------- presence
    async def _presence_between(self, owner: str, item: JID, *, available: bool) -> None:
        """Blocking ends presence both ways with ``unavailable``; unblocking sends the
        current presence again (§3.3, §3.4) — each as the roster subscriptions allow, to
        and from the local account ``item`` names (a domain item changes no presence)."""
        if item.local is None or not self.router.is_local(item):
            return
        contact = str(item.bare)
        mine = self._available(owner)
        theirs = [s for s in self._available(contact) if item.resource in (None, s.jid.resource)]
        if not mine and not theirs:
            return
        roster_item = await self.adb.run(self.adb.db.get_roster_item, owner, contact)
        subscription = roster_item.subscription if roster_item is not None else "none"
        if subscription in _FROM_STATES:  # the contact sees the owner's presence
            _exchange(mine, theirs, available)
        if subscription in _TO_STATES:  # the owner sees the contact's presence
            _exchange(theirs, mine, available)

    def _available(self, bare: str) -> list[Session]:
        return [s for s in self.router.resources_of(bare) if s.available]


def _exchange(senders: list[Session], receivers: list[Session], available: bool) -> None:
    """Each sender's presence (current, or unavailable) to each receiver's session."""
    for sender in senders:
        for receiver in receivers:
            if available and sender.presence is not None:
                pres = etree.fromstring(etree.tostring(sender.presence))
            else:
                pres = etree.Element(PRESENCE, type="unavailable", nsmap={None: ns.CLIENT})
            pres.set("from", sender.full_str)
            pres.set("to", receiver.full_str)
            receiver.send(etree.tostring(pres))
