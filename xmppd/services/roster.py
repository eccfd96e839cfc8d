"""The roster (RFC 6121 §2) with XEP-0237 versioning.

The roster is the one piece of per-account state that both iq (roster get/set) and
presence (subscription state, §3) change, so this module owns the things both need:
the per-owner lock that serialises read-modify-write cycles on one roster, the roster
push, the removal hook that lets the presence module cancel subscriptions (§2.5.2), and
the limits (:class:`RosterLimits`, from ``[roster]``).

The limits keep a roster small enough to send: every item, in its largest form, is at
most ``max_item_bytes`` and a roster has at most ``max_items``, and configuration
checks that the product fits the client send queues (xmppd.config). A set beyond the
item count gets ``not-allowed``, a name, group or item too large ``not-acceptable``
(RFC 6121 §2.3.3).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Self

import trio
from lxml import etree

from xmppd.jid import JID, JIDError
from xmppd.router import Router
from xmppd.services.lifecycle import Service, ServiceContext
from xmppd.session import Session
from xmppd.storage import AsyncDatabase, RosterFull, RosterItem
from xmppd.storage.database import Database
from xmppd.xml import ns
from xmppd.xml.errors import StanzaError

if TYPE_CHECKING:
    from xmppd.config import RosterConfig
    from xmppd.services.presence import PresenceManager

log = logging.getLogger("xmppd.roster")

QUERY = "{%s}query" % ns.ROSTER
ITEM = "{%s}item" % ns.ROSTER
GROUP = "{%s}group" % ns.ROSTER
IQ = "{%s}iq" % ns.CLIENT
#: Room a roster result needs besides its items (same figure as xmppd.config).
ENVELOPE_BYTES = 4096


@dataclass(frozen=True, slots=True)
class RosterLimits:
    """RFC 6121 §2.3.3 lets the server pick these; the defaults are ``[roster]``'s."""

    max_items: int = 500
    max_item_bytes: int = 1024
    max_name_length: int = 256
    max_group_length: int = 64
    max_groups: int = 16

    @classmethod
    def from_config(cls, cfg: RosterConfig) -> RosterLimits:
        return cls(
            max_items=cfg.max_items,
            max_item_bytes=cfg.max_item_bytes,
            max_name_length=cfg.max_name_length,
            max_group_length=cfg.max_group_length,
            max_groups=cfg.max_groups,
        )

    @property
    def max_result_bytes(self) -> int:
        """The largest roster result these limits allow."""
        return self.max_items * self.max_item_bytes + ENVELOPE_BYTES


def item_size(item: RosterItem) -> int:
    """Bytes of ``item`` in its largest form: any later subscription state fits too."""
    widest = replace(item, subscription="both", ask_out=True, approved=True)
    return len(etree.tostring(item_element(widest)))


def check_item_size(item: RosterItem, limits: RosterLimits) -> None:
    """``not-acceptable`` for an item that would not fit ``max_item_bytes``."""
    if item_size(item) > limits.max_item_bytes:
        raise StanzaError(
            "not-acceptable", f"the roster item is larger than {limits.max_item_bytes} bytes"
        )


def roster_full(limits: RosterLimits) -> StanzaError:
    return StanzaError("not-allowed", f"the roster is full ({limits.max_items} items)")


class OwnerLocks:
    """One trio lock per roster owner, dropped again when nobody holds or waits for it.

    Subscription handling reads an item, computes the next state and writes it back in
    separate steps; two stanzas for the same roster must not interleave there.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[trio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, owner: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(owner, (None, 0))
        if lock is None:
            lock = trio.Lock()
        self._locks[owner] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[owner]
            if users <= 1:
                del self._locks[owner]
            else:
                self._locks[owner] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


def item_element(item: RosterItem, *, remove: bool = False) -> etree._Element:
    """``<item/>`` as the client sees it (§2.1.2): pending inbound state is never shown."""
    el = etree.Element(ITEM, nsmap={None: ns.ROSTER})
    el.set("jid", item.jid)
    if item.name:
        el.set("name", item.name)
    el.set("subscription", "remove" if remove else item.subscription)
    if not remove:
        if item.ask_out:
            el.set("ask", "subscribe")
        if item.approved:
            el.set("approved", "true")
        for group in item.groups:
            etree.SubElement(el, GROUP).text = group
    return el


def _result() -> etree._Element:
    return etree.Element(IQ, type="result", nsmap={None: ns.CLIENT})


def _parse_set_item(
    query: etree._Element, limits: RosterLimits = RosterLimits()
) -> tuple[str, etree._Element]:
    """Validate a roster set per RFC 6121 §2.3.3 and return (contact JID, item element)."""
    items = [child for child in query if child.tag == ITEM]
    if len(items) != 1:
        raise StanzaError("bad-request", "a roster set carries exactly one item")
    item = items[0]
    raw = item.get("jid")
    if not raw:
        raise StanzaError("bad-request", "the item has no 'jid' attribute")
    try:
        jid = JID.parse(raw)
    except JIDError:
        raise StanzaError("jid-malformed", "the item's 'jid' is not a valid JID") from None
    name = item.get("name")
    if name is not None and len(name) > limits.max_name_length:
        raise StanzaError(
            "not-acceptable", f"the item name is longer than {limits.max_name_length} characters"
        )
    groups = [(g.text or "") for g in item if g.tag == GROUP]
    if len(groups) != len(set(groups)):
        raise StanzaError("bad-request", "the item lists a group twice")
    if any(not g for g in groups):
        raise StanzaError("not-acceptable", "a group name is empty")
    if len(groups) > limits.max_groups:
        raise StanzaError("not-acceptable", f"an item has at most {limits.max_groups} groups")
    if any(len(g) > limits.max_group_length for g in groups):
        raise StanzaError(
            "not-acceptable", f"a group name is longer than {limits.max_group_length} characters"
        )
    if item.get("subscription") != "remove":
        check_item_size(RosterItem(str(jid), name or None, groups=tuple(groups)), limits)
    return str(jid), item


def _remove_sync(db: Database, owner: str, jid: str) -> tuple[RosterItem, bool, int] | None:
    """Delete the item and any pending inbound request from that contact, in one hop."""
    item = db.get_roster_item(owner, jid)
    if item is None:
        return None
    pending = any(from_jid == jid for from_jid, _ in db.get_pending_subscriptions(owner))
    if pending:
        db.remove_pending_subscription(owner, jid)
    version = db.delete_roster_item(owner, jid)
    if version is None:  # removed concurrently by another node
        return None
    return item, pending, version


def _update_sync(
    db: Database,
    owner: str,
    jid: str,
    name: str | None,
    groups: tuple[str, ...],
    max_items: int | None = None,
) -> tuple[RosterItem, int]:
    """Create or update an item; subscription state is kept (§2.1.5: the client cannot set it)."""
    existing = db.get_roster_item(owner, jid)
    if existing is None:
        item = RosterItem(jid=jid, name=name, groups=groups)
    else:
        item = RosterItem(
            jid=jid,
            name=name,
            subscription=existing.subscription,
            ask_out=existing.ask_out,
            pending_in=existing.pending_in,
            approved=existing.approved,
            groups=groups,
        )
    return item, db.put_roster_item(owner, item, max_items)


class RosterService(Service):
    """``jabber:iq:roster`` for local accounts, plus pushes for the presence module."""

    name = "roster"

    def __init__(
        self, router: Router, adb: AsyncDatabase, limits: RosterLimits = RosterLimits()
    ) -> None:
        self.router = router
        self.adb = adb
        self.limits = limits
        self.locks = OwnerLocks()
        #: Set by the presence service when it is built; runs §2.5.2 side effects.
        self.presence: PresenceManager | None = None

    @classmethod
    def build(cls, ctx: ServiceContext) -> Self:
        """Register the roster handlers (``[roster]`` limits), advertise XEP-0237 versioning."""
        service = cls(ctx.router, ctx.adb, RosterLimits.from_config(ctx.config.roster))
        ctx.router.account_iq[QUERY] = service.handle
        ctx.router.server_iq[QUERY] = service.handle_foreign
        ctx.router.features.add(ns.ROSTER_VER)
        return service

    # ------------------------------------------------------------------- iq
    async def handle(
        self, stanza: etree._Element, origin: Session | None, router: Router
    ) -> etree._Element | None:
        """Roster get/set from one of the owner's own resources."""
        if origin is None:
            raise StanzaError("forbidden")
        query = stanza[0]
        if stanza.get("type") == "get":
            return await self._get(query, origin)
        return await self._set(query, origin)

    async def handle_foreign(
        self, stanza: etree._Element, origin: Session | None, router: Router
    ) -> etree._Element | None:
        """A roster request addressed to someone else's account (§2.3.3: forbidden)."""
        raise StanzaError("forbidden", "only the account's own resources may use its roster")

    async def _get(self, query: etree._Element, origin: Session) -> etree._Element:
        # §2.2: a resource that asked for the roster is "interested" and gets pushes.
        origin.interested = True
        version, items = await self.adb.run(self.adb.db.get_roster, origin.bare_str)
        current = str(version)
        reply = _result()
        # XEP-0237 §2.3: an unchanged roster is answered with an empty result.
        if query.get("ver") == current:
            return reply
        out = etree.SubElement(reply, QUERY, nsmap={None: ns.ROSTER})
        out.set("ver", current)
        for item in items:
            out.append(item_element(item))
        size = len(etree.tostring(reply))
        if size > self.limits.max_result_bytes:
            # Only rosters stored before today's limits (or under larger ones) get here:
            # an error keeps the connection, where the result would overrun its queue.
            log.warning(
                "event=roster_too_large owner=%s items=%d bytes=%d",
                origin.bare_str,
                len(items),
                size,
            )
            raise StanzaError("resource-constraint", "the roster is too large to send")
        return reply

    async def _set(self, query: etree._Element, origin: Session) -> etree._Element:
        jid, el = _parse_set_item(query, self.limits)
        owner = origin.bare_str
        if el.get("subscription") == "remove":
            async with self.locks.hold(owner):
                removed = await self.adb.run(_remove_sync, self.adb.db, owner, jid)
                if removed is None:
                    raise StanzaError("item-not-found", "no such roster item")
                item, pending_in, version = removed
                self.push(owner, None, jid, version)
            log.info("event=roster_remove owner=%s contact=%s", owner, jid)
            if self.presence is not None:
                await self.presence.roster_item_removed(origin.bare, item, pending_in)
            return _result()
        groups = tuple(g.text or "" for g in el if g.tag == GROUP)
        name = el.get("name") or None
        limit = self.limits.max_items
        async with self.locks.hold(owner):
            try:
                item, version = await self.adb.run(
                    _update_sync, self.adb.db, owner, jid, name, groups, limit
                )
            except RosterFull:
                log.info("event=roster_full owner=%s limit=%d", owner, limit)
                raise roster_full(self.limits) from None
            self.push(owner, item, jid, version)
        return _result()

    # ----------------------------------------------------------------- push
    def push(self, owner_bare: str, item: RosterItem | None, jid: str, version: int) -> int:
        """Send a roster push (§2.1.6) to every interested resource of ``owner_bare``.

        ``item`` None means the contact ``jid`` was removed. Returns how many resources
        it went to. The push has no 'from', which §2.1.6 treats as the account itself.
        """
        targets = [s for s in self.router.resources_of(owner_bare) if s.interested]
        if not targets:
            return 0
        iq = etree.Element(IQ, type="set", nsmap={None: ns.CLIENT})
        iq.set("id", "push-" + secrets.token_hex(6))
        query = etree.SubElement(iq, QUERY, nsmap={None: ns.ROSTER})
        query.set("ver", str(version))
        if item is None:
            query.append(item_element(RosterItem(jid=jid), remove=True))
        else:
            query.append(item_element(item))
        for session in targets:
            iq.set("to", session.full_str)
            session.send(etree.tostring(iq))
        return len(targets)
