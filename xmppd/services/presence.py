"""Presence subscriptions (RFC 6121 §3) and presence exchange (§4) for local accounts.

Subscription state lives on both rosters; every subscription stanza is processed once
on the sender's roster ("outbound", Appendix A.2) and once on the recipient's roster
("inbound", Appendix A.3). Both tables are the pure functions :func:`outbound_state` and
:func:`inbound_state`, so the transitions can be read (and tested) in one place.

There is no server-to-server link, so contacts on other domains never see our presence
and we never see theirs; local contacts are served directly from their sessions, which
is what a probe (§4.3) would have returned.

Pending inbound requests are kept in storage's pending-subscription table, which is
authoritative; ``RosterItem.pending_in`` is only written along when an item changes.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Self

from lxml import etree

from xmppd.jid import JID, JIDError
from xmppd.router import Router
from xmppd.services.lifecycle import Service, ServiceContext
from xmppd.services.offline import OfflineService
from xmppd.services.roster import RosterService
from xmppd.services.subscription_states import (
    FROM_STATES,
    TO_STATES,
    SubState,
    apply_transition,
    inbound_state,
    outbound_state,
    parse_priority,
)
from xmppd.session import Session
from xmppd.storage import AsyncDatabase, RosterItem
from xmppd.xml import ns
from xmppd.xml.errors import StanzaError

log = logging.getLogger("xmppd.presence")

PRESENCE = "{%s}presence" % ns.CLIENT
SUBSCRIPTION_TYPES = frozenset({"subscribe", "subscribed", "unsubscribe", "unsubscribed"})
#: ``await watcher(session, available)``: a local resource became available (or sent
#: a presence update: ``session.presence`` is the new one) or went unavailable.
PresenceWatcher = Callable[[Session, bool], Awaitable[None]]
#: ``await watcher(owner, peer, shared)``: ``owner``'s roster now shares its presence
#: with ``peer`` (subscription ``from``/``both``: True) or no longer does (False).
SubscriptionWatcher = Callable[[str, str, bool], Awaitable[None]]

__all__ = [
    "PresenceManager",
    "PresenceWatcher",
    "SubState",
    "SubscriptionWatcher",
    "inbound_state",
    "outbound_state",
    "parse_priority",
]


def _presence(type_: str | None, from_: str, to: str, id_: str | None = None) -> etree._Element:
    el = etree.Element(PRESENCE, nsmap={None: ns.CLIENT})
    if type_ is not None:
        el.set("type", type_)
    el.set("from", from_)
    el.set("to", to)
    if id_ is not None:
        el.set("id", id_)
    return el


def _addressed(stanza: etree._Element, to: str, from_: str | None = None) -> etree._Element:
    """A copy of ``stanza`` with a new 'to' (and optionally 'from')."""
    out = copy.deepcopy(stanza)
    out.set("to", to)
    if from_ is not None:
        out.set("from", from_)
    return out


# ------------------------------------------------------------------------ manager
class PresenceManager(Service):
    """The router's :class:`~xmppd.router.PresenceHandler` for local accounts."""

    name = "presence"
    needs = (RosterService, OfflineService)

    def __init__(
        self,
        router: Router,
        adb: AsyncDatabase,
        roster: RosterService,
        offline: OfflineService | None = None,
    ) -> None:
        self.router = router
        self.adb = adb
        self.roster = roster
        self.offline = offline
        #: Told when a local resource becomes available or unavailable (:meth:`watch`).
        self.watchers: list[PresenceWatcher] = []
        #: Told when an account starts or stops sharing its presence with a contact.
        self.subscription_watchers: list[SubscriptionWatcher] = []

    @classmethod
    def build(cls, ctx: ServiceContext) -> Self:
        """The router's presence handler, on the roster service (its locks and pushes)."""
        roster = ctx.need(RosterService)
        manager = cls(ctx.router, ctx.adb, roster, ctx.need(OfflineService))
        roster.presence = manager
        ctx.router.presence_handler = manager
        ctx.router.features.add(ns.PRE_APPROVAL)
        return manager

    def watch(self, watcher: PresenceWatcher) -> None:
        """Call ``watcher`` after each available presence (initial or update) a local
        resource broadcasts, and after it goes unavailable (sent, or its stream ended):
        for services that follow resources (XEP-0163 PEP notifications, XEP-0115 caps)."""
        self.watchers.append(watcher)

    def watch_subscriptions(self, watcher: SubscriptionWatcher) -> None:
        """Call ``watcher`` when an account's roster gains or loses a subscription
        ``from`` a contact (RFC 6121 §3): e.g. XEP-0163's last items to a new subscriber."""
        self.subscription_watchers.append(watcher)

    async def _tell_watchers(self, session: Session, available: bool) -> None:
        for watcher in self.watchers:
            try:
                await watcher(session, available)
            except Exception:  # one watcher's bug must not stop presence for anyone
                log.exception("event=presence_watcher_failed jid=%s", session.full_str)

    # ------------------------------------------------------- PresenceHandler API
    async def outbound(self, stanza: etree._Element, origin: Session) -> None:
        """Presence a local session sent: broadcast, directed, or subscription."""
        kind = stanza.get("type")
        to_attr = stanza.get("to")
        try:
            if kind in SUBSCRIPTION_TYPES:
                if to_attr is None:
                    raise StanzaError("bad-request", "a subscription stanza needs a 'to'")
                await self._outbound_subscription(kind, stanza, origin, _bare(to_attr))
            elif to_attr is not None:
                await self._directed_elsewhere(stanza, origin, _parse(to_attr))
            elif kind is None:
                await self._available(stanza, origin)
            elif kind == "unavailable":
                await self._unavailable(stanza, origin)
            elif kind not in ("probe", "error"):
                raise StanzaError("bad-request", "unknown presence type")
            # probe/error without 'to': nothing to do (§4.3.1: probes are the server's job)
        except StanzaError as err:
            self.router.bounce(stanza, err)

    async def inbound(self, stanza: etree._Element, to: JID) -> None:
        """Presence addressed to a local account, from a session, service or component."""
        kind = stanza.get("type")
        sender_attr = stanza.get("from")
        if sender_attr is None:
            return
        try:
            sender = JID.parse(sender_attr)
        except JIDError:
            return
        if kind in SUBSCRIPTION_TYPES:
            routed = _addressed(stanza, str(to.bare), str(sender.bare))
            await self._inbound_subscription(kind, routed, to.bare)
            return
        if kind == "probe":
            await self._answer_probe(stanza, sender, to.bare)
            return
        if kind not in (None, "unavailable", "error"):
            return
        if kind != "error":
            self._track_directed(sender, to, kind)
        data = etree.tostring(stanza)
        if to.resource is not None:
            # §8.5.3: a full JID gets it if that resource is connected, else it is dropped.
            target = self.router.session_for(to)
            if target is not None:
                target.send(data)
            return
        # §4.6.3 / §8.5.2.1.2: directed presence to a bare JID reaches every available resource.
        for session in self._available_sessions(str(to)):
            session.send(data)

    async def session_ended(self, session: Session) -> None:
        """The stream closed without unavailable presence: act as if it had sent it (§4.5.2)."""
        current = self.router.session_for(session.jid)
        if current is not None and current is not session and current.available:
            # Replaced by a new session on the same full JID that is already online:
            # an unavailable from that JID would make contacts think it went away.
            session.available = False
            session.directed_presence.clear()
            return
        if not session.available and not session.directed_presence:
            return
        el = etree.Element(PRESENCE, nsmap={None: ns.CLIENT}, type="unavailable")
        el.set("from", session.full_str)
        await self._unavailable(el, session)

    # ------------------------------------------------------------ broadcasting
    async def _available(self, stanza: etree._Element, origin: Session) -> None:
        """Initial presence (§4.2) or a presence update (§4.4)."""
        initial = not origin.available
        was_negative = origin.priority < 0
        pres = copy.deepcopy(stanza)
        pres.attrib.pop("to", None)
        pres.set("from", origin.full_str)
        origin.available = True
        origin.priority = parse_priority(stanza)
        origin.presence = pres
        items = await self._roster_items(origin.bare_str)
        for contact in (i.jid for i in items if i.subscription in FROM_STATES):
            await self._send_to_bare(pres, contact)
        for session in self._available_sessions(origin.bare_str):
            session.send(etree.tostring(_addressed(pres, session.full_str)))
        if initial:
            self._answer_own_probes(origin, items)
            await self._deliver_pending_requests(origin)
        if self.offline is not None and origin.priority >= 0 and (initial or was_negative):
            self.offline.start(origin)
        await self._tell_watchers(origin, True)

    async def _unavailable(self, stanza: etree._Element, origin: Session) -> None:
        """Unavailable presence (§4.5): subscribers, own resources and directed targets."""
        pres = copy.deepcopy(stanza)
        pres.attrib.pop("to", None)
        pres.set("from", origin.full_str)
        covered: set[str] = set()
        if origin.available:
            items = await self._roster_items(origin.bare_str)
            for contact in (i.jid for i in items if i.subscription in FROM_STATES):
                covered.add(contact)
                await self._send_to_bare(pres, contact)
            covered.add(origin.bare_str)
            for session in self._available_sessions(origin.bare_str):
                session.send(etree.tostring(_addressed(pres, session.full_str)))
        targets = sorted(origin.directed_presence)
        was_available = origin.available
        origin.available = False
        origin.presence = None
        origin.directed_presence.clear()
        for target in targets:
            try:
                target_jid = JID.parse(target)
            except JIDError:
                continue
            if str(target_jid.bare) in covered:
                continue  # already told through the broadcast
            await self.router.route(_addressed(pres, target))
        if was_available:
            await self._tell_watchers(origin, False)

    def _answer_own_probes(self, origin: Session, items: Iterable[RosterItem]) -> None:
        """Give a newly available resource everyone's current presence (§4.2.2, §4.3.2).

        Local contacts are answered straight from their sessions; a contact with no
        available resource is reported unavailable. Remote contacts cannot be probed.
        """
        for session in self._available_sessions(origin.bare_str):
            if session is not origin and session.presence is not None:
                origin.send(etree.tostring(_addressed(session.presence, origin.full_str)))
        for item in items:
            if item.subscription not in TO_STATES:
                continue
            try:
                contact = JID.parse(item.jid)
            except JIDError:
                continue
            if not self.router.is_local(contact) or contact.local is None:
                continue
            self._send_current_presence(str(contact), origin.full_str)

    def _send_current_presence(self, owner: str, to: str) -> None:
        """Answer a probe on behalf of local ``owner``: last presence of each resource."""
        if self.router.blocked_between(owner, to):
            return  # XEP-0191: no presence between an account and a JID it blocked
        sessions = [s for s in self._available_sessions(owner) if s.presence is not None]
        if not sessions:
            self.router.deliver_local(_presence("unavailable", owner, to))
            return
        for session in sessions:
            assert session.presence is not None
            self.router.deliver_local(_addressed(session.presence, to))

    async def _deliver_pending_requests(self, origin: Session) -> None:
        """§3.1.3: stored subscription requests go to the next available resource."""
        pending = await self.adb.run(self.adb.db.get_pending_subscriptions, origin.bare_str)
        for _from_jid, xml in pending:
            origin.send(xml.encode("utf-8"))

    async def _directed_elsewhere(self, stanza: etree._Element, origin: Session, to: JID) -> None:
        """Non-subscription presence with a 'to' the router did not resolve locally."""
        if self.router.is_local(to):
            await self.inbound(stanza, to)
            return
        if stanza.get("type") in (None, "probe"):
            raise StanzaError("remote-server-not-found", f"no route to {to.domain}")
        # unavailable/error to an unreachable domain: nothing to tell anyone

    async def _answer_probe(self, stanza: etree._Element, prober: JID, owner: JID) -> None:
        """A probe addressed to local ``owner`` (§4.3.2)."""
        if prober.bare == owner:
            self._send_current_presence(str(owner), str(prober))
            return
        if owner.local is None or not await self.router.accounts.user_exists(owner.local):
            await self._route_subscription(
                "unsubscribed", _presence("unsubscribed", str(owner), str(prober.bare)), prober.bare
            )
            return
        item = await self.adb.run(self.adb.db.get_roster_item, str(owner), str(prober.bare))
        if item is not None and item.subscription in FROM_STATES:
            self._send_current_presence(str(owner), str(prober))
            return
        pending = await self.adb.run(self.adb.db.get_pending_subscriptions, str(owner))
        if any(j == str(prober.bare) for j, _ in pending):
            return  # the owner has not decided yet: neither reveal nor deny
        # Not authorised: say so, which lets the prober's server fix a stale "to" (§4.3.2).
        await self._route_subscription(
            "unsubscribed", _presence("unsubscribed", str(owner), str(prober.bare)), prober.bare
        )

    def _track_directed(self, sender: JID, to: JID, kind: str | None) -> None:
        """Remember directed presence to a bare JID; the router tracks full JIDs (§4.6.3)."""
        if to.resource is not None or sender.resource is None:
            return
        session = self.router.session_for(sender)
        if session is None or session.bare == to.bare:
            return
        if kind is None:
            session.directed_presence.add(str(to))
        else:
            session.directed_presence.discard(str(to))

    # ------------------------------------------------------------ subscriptions
    async def _outbound_subscription(
        self, kind: str, stanza: etree._Element, origin: Session, contact: JID
    ) -> None:
        """§3.1.2, §3.2.2, §3.3.2, §3.4: the sender's side, then route to the contact."""
        user = origin.bare
        if contact == user:
            return  # one's own presence is shared among one's resources anyway
        reachable = self._reachable(contact)
        if kind == "subscribe" and not reachable:
            raise StanzaError("remote-server-not-found", f"no route to {contact.domain}")
        old, new = await self._apply(
            str(user), str(contact), lambda s: outbound_state(kind, s), None
        )
        # §3.1.2/§3.2.2/§3.3.2: the server stamps the bare JID as 'from'.
        routed = _addressed(stanza, str(contact), str(user))
        if kind == "subscribed":
            if not (old.pending_in and not new.pending_in):
                return  # pre-approval or nothing to approve: not routed (§3.1.5, §3.4)
            await self._route_subscription(kind, routed, contact)
            # §3.1.5: the new subscriber gets the user's current presence.
            await self._send_presence_of(user, contact)
            return
        await self._route_subscription(kind, routed, contact)
        if kind == "unsubscribed" and old.has_from:
            # §3.2.2: the former subscriber learns the user is now unavailable to it.
            await self._send_unavailable_of(user, contact)

    async def _inbound_subscription(self, kind: str, stanza: etree._Element, owner: JID) -> None:
        """§3.1.3, §3.1.6, §3.2.3, §3.3.3: a subscription stanza reached local ``owner``.

        ``stanza`` is already addressed bare-to-bare.
        """
        peer = _bare(stanza.get("from") or "")
        if owner.local is None or not await self.router.accounts.user_exists(owner.local):
            if kind == "subscribe":
                # §3.1.3 / §8.5.2.2: no such contact; tell the requester "unsubscribed".
                await self._route_subscription(
                    "unsubscribed", _presence("unsubscribed", str(owner), str(peer)), peer
                )
            return
        request_xml = etree.tostring(stanza, encoding="unicode") if kind == "subscribe" else None
        old, new = await self._apply(
            str(owner), str(peer), lambda s: inbound_state(kind, s), request_xml
        )
        if kind == "subscribe":
            if new.has_from:
                # Already subscribed, or pre-approved: answer for the owner (§3.1.3, §3.4).
                reply = _presence("subscribed", str(owner), str(peer), stanza.get("id"))
                await self._route_subscription("subscribed", reply, peer)
                if not old.has_from:
                    await self._send_presence_of(owner, peer)
                return
            self._send_to_available(str(owner), stanza)
            return
        if new == old:
            return  # no state change: not delivered (Appendix A.3)
        self._send_to_available(str(owner), stanza)
        if kind == "unsubscribe" and old.has_from:
            # §3.3.3: the former subscriber sees the owner go unavailable.
            await self._send_unavailable_of(owner, peer)

    async def roster_item_removed(self, owner: JID, item: RosterItem, pending_in: bool) -> None:
        """§2.5.2: removing an item cancels the subscriptions in both directions."""
        try:
            contact = JID.parse(item.jid).bare
        except JIDError:
            return
        if contact == owner:
            return
        user = str(owner)
        if item.subscription in TO_STATES or item.ask_out:
            await self._route_subscription(
                "unsubscribe", _presence("unsubscribe", user, str(contact)), contact
            )
        if item.subscription in FROM_STATES or pending_in or item.approved:
            await self._route_subscription(
                "unsubscribed", _presence("unsubscribed", user, str(contact)), contact
            )
            if item.subscription in FROM_STATES:
                await self._send_unavailable_of(owner, contact)

    async def _route_subscription(self, kind: str, stanza: etree._Element, to: JID) -> None:
        """Hand a bare-to-bare subscription stanza to the addressee's side."""
        if self.router.is_local(to):
            if to.local is not None:
                await self._inbound_subscription(kind, stanza, to)
            return
        service = self.router.services.get(to.domain)
        if service is not None:
            await service.handle(stanza, to, None)
        # other domains: no s2s, so the local state change is all that happens

    async def _apply(
        self,
        owner: str,
        peer: str,
        transition: Callable[[SubState], SubState],
        request_xml: str | None,
    ) -> tuple[SubState, SubState]:
        async with self.roster.locks.hold(owner):
            old, new, item, version = await self.adb.run(
                apply_transition,
                self.adb.db,
                owner,
                peer,
                transition,
                request_xml,
                self.roster.limits,
            )
            if item is not None and version is not None:
                self.roster.push(owner, item, peer, version)
        if old != new:
            log.info(
                "event=subscription owner=%s peer=%s old=%s new=%s",
                owner, peer, _fmt(old), _fmt(new),
            )  # fmt: skip
        if old.has_from != new.has_from:
            for watcher in self.subscription_watchers:
                try:
                    await watcher(owner, peer, new.has_from)
                except Exception:  # one watcher's bug must not stop subscriptions
                    log.exception("event=subscription_watcher_failed owner=%s", owner)
        return old, new

    # ---------------------------------------------------------------- delivery
    def _available_sessions(self, bare: str) -> list[Session]:
        return [s for s in self.router.resources_of(bare) if s.available]

    def _send_to_available(self, bare: str, stanza: etree._Element) -> None:
        if self.router.blocked_between(stanza.get("from") or bare, bare):
            return
        data = etree.tostring(stanza)
        for session in self._available_sessions(bare):
            session.send(data)

    async def _send_to_bare(self, pres: etree._Element, contact: str) -> None:
        """Broadcast ``pres`` to a contact's bare JID: its available resources, or a service."""
        try:
            jid = JID.parse(contact)
        except JIDError:
            return
        if self.router.blocked_between(pres.get("from") or contact, contact):
            return
        if self.router.is_local(jid):
            if jid.local is not None:
                self._send_to_available(str(jid.bare), _addressed(pres, contact))
            return
        service = self.router.services.get(jid.domain)
        if service is not None:
            await service.handle(_addressed(pres, contact), jid, None)

    async def _send_presence_of(self, owner: JID, to: JID) -> None:
        """Current presence of each of ``owner``'s available resources, to ``to``."""
        for session in self._available_sessions(str(owner)):
            if session.presence is not None:
                await self._send_to_bare(session.presence, str(to))

    async def _send_unavailable_of(self, owner: JID, to: JID) -> None:
        for session in self._available_sessions(str(owner)):
            await self._send_to_bare(_presence("unavailable", session.full_str, str(to)), str(to))

    def _reachable(self, jid: JID) -> bool:
        return self.router.is_local(jid) or jid.domain in self.router.services

    async def _roster_items(self, owner: str) -> list[RosterItem]:
        _version, items = await self.adb.run(self.adb.db.get_roster, owner)
        return items

    # -------------------------------------------------------------- disco hook
    async def presence_authorized(self, requester: JID, account: JID) -> bool:
        """Whether ``account``'s roster lets ``requester`` see its presence (from/both)."""
        if requester.bare == account.bare:
            return True
        item = await self.adb.run(
            self.adb.db.get_roster_item, str(account.bare), str(requester.bare)
        )
        return item is not None and item.subscription in FROM_STATES


def _fmt(state: SubState) -> str:
    flags = "".join(
        flag for flag, on in (("+PO", state.ask_out), ("+PI", state.pending_in),
                              ("+PA", state.approved)) if on
    )  # fmt: skip
    return state.subscription + flags


def _parse(text: str) -> JID:
    try:
        return JID.parse(text)
    except JIDError:
        raise StanzaError("jid-malformed") from None


def _bare(text: str) -> JID:
    """§3.1.3: a subscription stanza to a full JID is handled as if sent to the bare JID."""
    return _parse(text).bare
