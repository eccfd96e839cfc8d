"""Address -> destination: local sessions, the server itself, services and components.

Delivery to local accounts follows RFC 6121 §8.5. The router resolves an address to a
destination object rather than calling sessions directly, so a destination may later
live on another node (DESIGN.md, "Scaling out").

Extension points, all registered at start-up:

- ``server_iq[tag]``   — iq handlers for the server itself (``to`` = our domain);
- ``account_iq[tag]``  — iq handlers run *on behalf of an account* (``to`` absent or the
  sender's own bare JID), e.g. the roster;
- ``presence_handler`` — owns all presence logic (RFC 6121 §3-4);
- ``offline_store``    — keeps messages for offline users;
- ``services[domain]`` — other local domains (MUC service, XEP-0114 components);
- ``awaiting[id]``     — the server's own iq requests to clients (XEP-0115 disco#info):
  the result or error from the expected JID goes to the callback, once;
- ``screen``           — the accounts' blocklists (XEP-0191): a stanza between a local
  account and a JID it blocked is not delivered (:meth:`Router.blocked_between`);
- ``message_observers`` — services that see each one-to-one message once as it is routed
  (:class:`MessageObserver`: carbons, the accounts' archive): a message to a local
  account, and a message a local account sends to another domain's service. Groupchat
  messages and a room's fan-out never reach them; with no observer the path is as before.

:meth:`Router.deliver_many` hands ready bytes to many full JIDs at once (a room's
fan-out): a stanza serialised once reaches every session without being parsed again, and
a clustered router can replace it with per-node delivery.

``tag`` is the Clark-notation tag of the iq's payload, e.g. ``{urn:xmpp:ping}ping``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from lxml import etree

from xmppd.jid import JID, JIDError
from xmppd.observers import MessageObserver, RoutedMessage, prepare_all, routed_all
from xmppd.session import Session
from xmppd.xml import ns
from xmppd.xml.errors import StanzaError, error_reply

log = logging.getLogger("xmppd.router")

MESSAGE = "{%s}message" % ns.CLIENT
PRESENCE = "{%s}presence" % ns.CLIENT
IQ = "{%s}iq" % ns.CLIENT
_SUBSCRIPTION = frozenset({"subscribe", "subscribed", "unsubscribe", "unsubscribed"})

PresenceStamper = Callable[[etree._Element, Session], Awaitable[None]]
IqHandler = Callable[
    [etree._Element, "Session | None", "Router"], Awaitable["etree._Element | None"]
]


class Service(Protocol):
    """A local domain other than the server's own (MUC, a component)."""

    #: ``handle`` never changes the stanza it is given (a component serialises it as it
    #: is): the router then need not copy a message its observers still read afterwards.
    keeps_stanza: bool

    async def handle(self, stanza: etree._Element, to: JID, origin: Session | None) -> None: ...


class PresenceHandler(Protocol):
    async def outbound(self, stanza: etree._Element, origin: Session) -> None:
        """Presence a local session sent (``to`` may be absent: a broadcast)."""
        ...

    async def inbound(self, stanza: etree._Element, to: JID) -> None:
        """Presence addressed to a local account (``from`` already stamped)."""
        ...

    async def session_ended(self, session: Session) -> None:
        """A session went away without sending unavailable presence."""
        ...


class OfflineStore(Protocol):
    async def store(self, stanza: etree._Element, to: JID) -> bool:
        """Keep ``stanza`` for ``to``'s next login; False if it cannot be kept."""
        ...

    def start_for(self, owner: str) -> None:
        """Deliver what is stored for ``owner`` if it has an available resource."""
        ...

    def release(self, session: Session) -> frozenset[int]:
        """``session`` ends: ``id()`` of the stanza bytes it was sent that stay stored."""
        ...


class Screen(Protocol):
    """The local accounts' blocklists (XEP-0191, ``xmppd.services.blocking``)."""

    def in_use(self) -> bool:
        """Whether any account blocks anyone at all (cheap): else nothing is screened."""
        ...

    def has_list(self, owner: str) -> bool:
        """Whether account ``owner`` (a bare JID) blocks anyone at all (cheap)."""
        ...

    def blocks(self, owner: str, other: JID) -> bool:
        """Whether account ``owner`` blocked ``other`` (XEP-0016 §2.1 matching)."""
        ...


class AccountDirectory(Protocol):
    async def user_exists(self, localpart: str) -> bool: ...


class Addressee(Protocol):
    """A full JID split the way :meth:`Router.deliver_many` looks it up (``xmppd.muc.wire``'s
    ``Recipient`` is one)."""

    full: str
    bare: str
    domain: str
    resource: str


__all__ = ["MessageObserver", "RoutedMessage", "Router"]


class Router:
    """Routes stanzas whose ``from`` the transport has already stamped."""

    def __init__(self, domain: str, accounts: AccountDirectory) -> None:
        self.domain = domain
        self.domain_jid = JID(None, domain, None)
        self.accounts = accounts
        #: bare JID string -> resource -> session
        self.sessions: dict[str, dict[str, Session]] = {}
        #: Full JIDs of sessions already unbound whose end (unavailable presence to
        #: contacts and rooms) is still in progress: not "lost", just leaving.
        self.ending: set[str] = set()
        self.server_iq: dict[str, IqHandler] = {}
        self.account_iq: dict[str, IqHandler] = {}
        self.services: dict[str, Service] = {}
        self.presence_handler: PresenceHandler | None = None
        self.offline_store: OfflineStore | None = None
        self.screen: Screen | None = None
        self.message_observers: list[MessageObserver] = []
        #: disco#info features of the server itself; services add to it.
        self.features: set[str] = set()
        self.disco_items: dict[str, str | None] = {}
        #: iq id -> (the full JID asked, callback for its result or error).
        self.awaiting: dict[str, tuple[str, Callable[[etree._Element], None]]] = {}
        #: Change each available presence a session sends, in place, before it is routed
        #: (broadcast and directed, MUC joins included: XEP-0398 §4).
        self.presence_stampers: list[PresenceStamper] = []

    # ----------------------------------------------------------------- sessions
    def bind(self, session: Session) -> Session | None:
        """Register ``session``; return the session it replaces (resource conflict).

        RFC 6120 §7.7.2.2: the new session wins; the caller ends the old one with a
        ``conflict`` stream error.
        """
        resources = self.sessions.setdefault(session.bare_str, {})
        old = resources.get(session.jid.resource or "")
        resources[session.jid.resource or ""] = session
        return old

    def unbind(self, session: Session) -> bool:
        """Forget ``session`` if it is still the one bound to its resource."""
        resources = self.sessions.get(session.bare_str)
        if not resources:
            return False
        key = session.jid.resource or ""
        if resources.get(key) is not session:
            return False
        del resources[key]
        if not resources:
            del self.sessions[session.bare_str]
        return True

    def resources_of(self, bare: str) -> list[Session]:
        return list(self.sessions.get(bare, {}).values())

    def session_for(self, full: JID) -> Session | None:
        return self.sessions.get(str(full.bare), {}).get(full.resource or "")

    def is_local(self, jid: JID) -> bool:
        return jid.domain == self.domain

    # ------------------------------------------------------------------ routing
    async def route(self, stanza: etree._Element, origin: Session | None = None) -> None:
        """Deliver one stanza. Errors become error stanzas back to the sender."""
        try:
            await self._route(stanza, origin)
        except StanzaError as err:
            self.bounce(stanza, err)

    async def _route(self, stanza: etree._Element, origin: Session | None) -> None:
        if origin is not None and stanza.tag == PRESENCE and stanza.get("type") is None:
            for stamper in self.presence_stampers:  # they catch their own errors
                await stamper(stanza, origin)
        to_attr = stanza.get("to")
        if to_attr is None:
            await self._to_own_account(stanza, origin)
            return
        try:
            to = JID.parse(to_attr)
        except JIDError:
            raise StanzaError("jid-malformed", "the 'to' address is not a valid JID") from None
        screen = self.screen
        if screen is not None and screen.in_use() and self._screened_out(stanza, to, origin):
            return
        observed = stanza.tag == MESSAGE and self.message_observers and _one_to_one(stanza)
        if to.domain == self.domain:
            if to.local is None:
                await self._to_server(stanza, to, origin)
            elif observed:
                await self._observed(RoutedMessage(stanza, to, origin, local=True))
            else:
                await self._to_local_user(stanza, to, origin)
            return
        service = self.services.get(to.domain)
        if service is not None:
            if observed and origin is not None:
                msg = RoutedMessage(stanza, to, origin, local=False)
                again = await prepare_all(self.message_observers, msg)
                # the service may rewrite what it gets (a room sets the occupant JID as
                # 'from'): observers keep the message as the user sent it
                given = stanza if service.keeps_stanza or not again else copy.deepcopy(stanza)
                await service.handle(given, to, origin)
                await routed_all(again, msg)
                return
            if stanza.tag == PRESENCE and origin is not None:
                if stanza.get("type") in _SUBSCRIPTION and self.presence_handler is not None:
                    # RFC 6121 §3: the user's roster state changes first (a component
                    # contact is a contact like any other); the handler routes it on.
                    await self.presence_handler.outbound(stanza, origin)
                    return
                self._track_directed(stanza, to, origin)
            await service.handle(stanza, to, origin)
            return
        if stanza.tag == PRESENCE and origin is not None and self.presence_handler:
            # Outbound presence to remote contacts updates roster state locally.
            await self.presence_handler.outbound(stanza, origin)
            return
        raise StanzaError("remote-server-not-found", f"no route to {to.domain}")

    def _screened_out(self, stanza: etree._Element, to: JID, origin: Session | None) -> bool:
        """XEP-0191 §3.5: True when a blocklist stops ``stanza`` silently (presence,
        results, errors); raises the error a message or iq request is answered with:
        ``not-acceptable`` + ``<blocked/>`` to a sender who blocked the addressee,
        ``service-unavailable`` (as if offline) to one the addressee blocked."""
        sender = origin.full_str if origin is not None else stanza.get("from")
        if sender is None or to == self.domain_jid:
            return False
        outbound = origin is not None and self._blocks(origin.bare_str, str(to))
        if not outbound and not (to.domain == self.domain and self._blocks(str(to.bare), sender)):
            return False
        kind = stanza.get("type")
        if stanza.tag == PRESENCE or kind in ("error", "result"):
            return True
        if stanza.tag == IQ and kind not in ("get", "set"):
            return True
        if outbound:
            blocked_ns = ns.BLOCKING_ERRORS
            app = etree.Element("{%s}blocked" % blocked_ns, nsmap={None: blocked_ns})
            raise StanzaError("not-acceptable", "you have blocked this address", app=app)
        raise StanzaError("service-unavailable")

    def blocked_between(self, a: str, b: str) -> bool:
        """Whether either address's local account blocked the other (XEP-0191): for
        presence the server makes and hands to sessions itself."""
        return self.screen is not None and (self._blocks(a, b) or self._blocks(b, a))

    def _blocks(self, owner: str, other: str) -> bool:
        """``owner``'s account (any JID of it, local or not) blocked the address ``other``."""
        screen = self.screen
        bare = owner.split("/", 1)[0]
        if screen is None or not screen.has_list(bare) or bare == other.split("/", 1)[0]:
            return False
        try:
            return screen.blocks(bare, JID.parse(other))
        except JIDError:
            return False

    @staticmethod
    def _track_directed(stanza: etree._Element, to: JID, origin: Session) -> None:
        """RFC 6121 §4.6: remember directed presence so unavailable reaches it too."""
        kind = stanza.get("type")
        if kind is None:
            origin.directed_presence.add(str(to))
        elif kind == "unavailable":
            origin.directed_presence.discard(str(to))

    async def _to_own_account(self, stanza: etree._Element, origin: Session | None) -> None:
        """RFC 6120 §10.3: no ``to`` means the sender's own account (or broadcast)."""
        tag = stanza.tag
        if tag == PRESENCE:
            if origin is not None and self.presence_handler is not None:
                await self.presence_handler.outbound(stanza, origin)
            return
        if tag == IQ:
            await self._iq_on_behalf(stanza, origin, own=True)
            return
        if tag == MESSAGE and origin is not None:
            if self.message_observers and _one_to_one(stanza):
                await self._observed(RoutedMessage(stanza, origin.bare, origin, local=True))
            else:
                await self._to_local_user(stanza, origin.bare, origin)

    async def _observed(self, msg: RoutedMessage) -> None:
        """A message to a local account, with the observers before and after delivery."""
        again = await prepare_all(self.message_observers, msg)
        reached = await self._message_to_user(msg.stanza, msg.to)
        if reached is None:
            msg.offline = True
        else:
            msg.reached = reached
        await routed_all(again, msg)

    async def _to_server(self, stanza: etree._Element, to: JID, origin: Session | None) -> None:
        if stanza.tag == IQ:
            if stanza.get("type") in ("result", "error"):
                self._answer_awaited(stanza)
                return
            await self._dispatch_iq(stanza, origin, self.server_iq)
        # Messages and presence to the bare domain are not for anyone: dropped.

    def _answer_awaited(self, stanza: etree._Element) -> None:
        """A result/error for one of the server's own requests, from whom it asked."""
        waiting = self.awaiting.get(stanza.get("id") or "")
        if waiting is None or waiting[0] != stanza.get("from"):
            return
        del self.awaiting[stanza.get("id") or ""]
        waiting[1](stanza)

    async def _iq_on_behalf(
        self, stanza: etree._Element, origin: Session | None, own: bool
    ) -> None:
        table = self.account_iq if own else {}
        handler = self._handler_for(stanza, table) or self._handler_for(stanza, self.server_iq)
        await self._run_iq(stanza, origin, handler)

    async def _dispatch_iq(
        self, stanza: etree._Element, origin: Session | None, table: dict[str, IqHandler]
    ) -> None:
        await self._run_iq(stanza, origin, self._handler_for(stanza, table))

    @staticmethod
    def _handler_for(stanza: etree._Element, table: dict[str, IqHandler]) -> IqHandler | None:
        if stanza.get("type") not in ("get", "set") or len(stanza) != 1:
            return None
        return table.get(stanza[0].tag)

    async def _run_iq(
        self, stanza: etree._Element, origin: Session | None, handler: IqHandler | None
    ) -> None:
        kind = stanza.get("type")
        if kind not in ("get", "set"):
            return  # results and errors addressed to the server are ours to ignore
        if len(stanza) != 1:
            raise StanzaError("bad-request", "an iq get/set carries exactly one payload")
        if handler is None:
            raise StanzaError("service-unavailable")
        reply = await handler(stanza, origin, self)
        if reply is not None:
            self.reply_to(stanza, reply)

    async def _to_local_user(self, stanza: etree._Element, to: JID, origin: Session | None) -> None:
        tag = stanza.tag
        if tag == PRESENCE:
            if origin is not None and self.presence_handler is not None and stanza.get("type") in (
                "subscribe", "subscribed", "unsubscribe", "unsubscribed",
            ):  # fmt: skip
                await self.presence_handler.outbound(stanza, origin)
                return
            if origin is not None and to.resource is not None:
                self._track_directed(stanza, to, origin)
            if self.presence_handler is not None:
                await self.presence_handler.inbound(stanza, to)
            return

        if tag == MESSAGE:
            await self._message_to_user(stanza, to)
            return
        if to.resource is not None:
            target = self.session_for(to)
            if target is not None:
                target.send(etree.tostring(stanza))
                return
            if stanza.get("type") in ("get", "set"):
                raise StanzaError("service-unavailable")
            return
        if stanza.get("type") in ("result", "error"):
            # answers to the server's requests made as the account (XEP-0357 publishes)
            self._answer_awaited(stanza)
            return
        own = origin is not None and origin.bare == to.bare
        if own:
            await self._iq_on_behalf(stanza, origin, own=True)
            return
        if stanza.get("type") in ("get", "set"):
            if not await self.accounts.user_exists(to.local or ""):
                raise StanzaError("service-unavailable")
            await self._dispatch_iq(stanza, origin, self.server_iq)

    async def _message_to_user(self, stanza: etree._Element, to: JID) -> list[Session] | None:
        """RFC 6121 §8.5.3 (full JID) falling back to §8.5.2 (bare JID): the sessions the
        message reached, or None when it was stored offline."""
        if to.resource is not None:
            target = self.session_for(to)
            if target is not None:
                target.send(etree.tostring(stanza))
                return [target]
            # message to an unavailable resource: treat as addressed to the bare JID
            if stanza.get("type") in ("groupchat", "headline", "error"):
                if stanza.get("type") == "groupchat":
                    raise StanzaError("service-unavailable")
                return []
        return await self._message_to_bare(stanza, to.bare)

    async def redeliver(self, stanza: etree._Element, bare: JID) -> None:
        """A message its full-JID recipient never acknowledged (XEP-0198 §4): deliver it
        as if that resource were unavailable (RFC 6121 §8.5.3.2.1), or bounce it.

        Only resources with a live connection are candidates: a detached session would
        hold it for a client that may never come back, and end the same way.
        """
        try:
            await self._message_to_bare(stanza, bare, attached_only=True)
        except StanzaError as err:
            self.bounce(stanza, err)

    async def _message_to_bare(
        self, stanza: etree._Element, bare: JID, *, attached_only: bool = False
    ) -> list[Session] | None:
        """RFC 6121 §8.5.2.1 (account exists) and §8.5.2.2 (no such account): the sessions
        the message reached, or None when it was stored offline."""
        kind = stanza.get("type") or "normal"
        if kind not in ("chat", "error", "groupchat", "headline", "normal"):
            kind = "normal"
        candidates = [
            s
            for s in self.sessions.get(str(bare), {}).values()
            if s.available and s.priority >= 0 and (s.attached or not attached_only)
        ]
        if kind == "groupchat":
            raise StanzaError("service-unavailable")
        if candidates:
            data = etree.tostring(stanza)
            if kind == "headline" or len(candidates) == 1:
                targets = candidates
            else:
                top = max(s.priority for s in candidates)
                targets = [s for s in candidates if s.priority == top]
            return [s for s in targets if s.send(data) is not False]
        if kind == "error":
            return []
        if not await self.accounts.user_exists(bare.local or ""):
            if kind != "headline":
                raise StanzaError("service-unavailable")
            return []
        if kind == "headline":
            return []
        if self.offline_store is not None and await self.offline_store.store(stanza, bare):
            return None
        raise StanzaError("service-unavailable", "the recipient is offline")

    # ------------------------------------------------------------------ replies
    def reply_to(self, request: etree._Element, reply: etree._Element) -> None:
        """Send ``reply`` (from the addressee of ``request``) to the request's sender."""
        sender = request.get("from")
        if sender is None:
            return
        if reply.get("from") is None:
            reply.set("from", request.get("to") or self._bare_of(sender))
        reply.set("to", sender)
        if reply.get("id") is None and request.get("id") is not None:
            reply.set("id", request.get("id"))
        self.deliver_local(reply)

    @staticmethod
    def _bare_of(full: str) -> str:
        return full.split("/", 1)[0]

    def bounce(self, stanza: etree._Element, err: StanzaError) -> None:
        """Answer ``stanza`` with an error, unless it is an error itself (RFC 6120 §8.3.1)."""
        if stanza.get("type") == "error" or stanza.get("from") is None:
            return
        reply = error_reply(stanza, err)
        if reply.get("from") is None:
            # no 'to': the server answered on behalf of the account, so the error comes
            # from the account's bare JID (RFC 6120 §8.1.2.1; clients drop other senders)
            reply.set("from", self._bare_of(stanza.get("from", "")))
        self.deliver_local(reply)

    def deliver_many(
        self, sends: Iterable[tuple[Addressee, bytes]], source: object = None
    ) -> list[str]:
        """Hand each serialised copy to its full JID; return the full JIDs it did not reach.

        A local resource gets the bytes on its send queue as they are (no parse, no copy);
        another domain's copy goes to that service's ``deliver`` (components). Not reached:
        a local resource with no session that is not ending (a session being torn down
        says it left by its own presence), a session whose queue cut it off, a domain
        with no service that takes it. ``source`` (the sending service) is never
        delivered to. The list may repeat a JID; it is in the order of ``sends``.
        """
        sessions = self.sessions
        local = self.domain
        ending = self.ending
        lost: list[str] = []
        screen = self.screen if self.screen is not None and self.screen.in_use() else None
        for rcpt, data in sends:
            resources = sessions.get(rcpt.bare)
            session = resources.get(rcpt.resource) if resources else None
            if screen and screen.has_list(rcpt.bare) and self._sender_blocked(rcpt, data):
                continue  # XEP-0191: e.g. an occupant (room@service/nick) this user blocked
            if session is not None:
                if not session.send(data):
                    lost.append(rcpt.full)
                continue
            if rcpt.domain == local:
                if rcpt.full not in ending:
                    lost.append(rcpt.full)
            elif not self._to_service(rcpt, data, source):
                lost.append(rcpt.full)
        return lost

    async def deliver_observed(
        self, stanza: etree._Element, rcpts: list[Addressee], source: object = None
    ) -> list[str]:
        """A one-to-one message a service addresses itself to chosen sessions of one account
        (a room's private message, XEP-0045 §7.5): :meth:`deliver_many`, with the message
        observers around it as for a routed message. Returns what was not reached."""
        if not rcpts:
            return []
        to = JID.parse(rcpts[0].bare)
        msg = RoutedMessage(stanza, to, None, local=to.domain == self.domain)
        observed = bool(self.message_observers) and _one_to_one(stanza)
        again = await prepare_all(self.message_observers, msg) if observed else []
        sends = []
        for rcpt in rcpts:
            stanza.set("to", rcpt.full)
            sends.append((rcpt, etree.tostring(stanza)))
        lost = self.deliver_many(sends, source)
        if again:
            gone = set(lost)
            reached = (self.session_for(JID.parse(r.full)) for r in rcpts if r.full not in gone)
            msg.reached = [s for s in reached if s is not None]
            await routed_all(again, msg)
        return lost

    def _sender_blocked(self, rcpt: Addressee, data: bytes) -> bool:
        """Whether ``rcpt``'s account blocked the sender of ``data`` (parsed only for
        accounts with a blocklist)."""
        sender = etree.fromstring(data).get("from")
        return sender is not None and self._blocks(rcpt.bare, sender)

    def _to_service(self, rcpt: Addressee, data: bytes, source: object) -> bool:
        """One copy for another local domain (a component occupant, e.g. a bridge).

        False when it cannot be delivered: no such service, the component is not
        connected or was cut off, or it is the sending service itself.
        """
        service = self.services.get(rcpt.domain)
        deliver = getattr(service, "deliver", None)
        if deliver is None or service is source:
            return False
        return deliver(etree.fromstring(data), JID.parse(rcpt.full)) is not False

    def deliver_local(self, stanza: etree._Element) -> None:
        """Deliver a server-made stanza straight to a local full JID (no RFC 6121 rules)."""
        to_attr = stanza.get("to")
        if to_attr is None:
            return
        try:
            to = JID.parse(to_attr)
        except JIDError:
            return
        if to.domain != self.domain:
            service = self.services.get(to.domain)
            deliver = getattr(service, "deliver", None)
            if deliver is not None:
                deliver(stanza, to)
            return
        if to.resource is None:
            for session in self.resources_of(str(to)):
                session.send_stanza(stanza)
            return
        session = self.session_for(to)
        if session is not None:
            session.send_stanza(stanza)


def _one_to_one(stanza: etree._Element) -> bool:
    """What message observers see: not a room's groupchat (§7.4 of XEP-0045 is the room's)."""
    return stanza.get("type") != "groupchat"
