"""XEP-0280 message carbons: every resource of an account sees both sides of its chats.

A resource enables carbons with ``<enable xmlns='urn:xmpp:carbons:2'/>`` and disables
them with ``<disable/>`` (§4, §5; either may be repeated, each answered with a result,
§9.1). From then on, for every one-to-one message the router routes
(:class:`~xmppd.router.MessageObserver`):

- **received** (§7): a message to the account is delivered by RFC 6121 first; each of
  the account's carbons-enabled resources it did not reach gets a copy wrapped in
  ``<received><forwarded xmlns='urn:xmpp:forward:0'>``;
- **sent** (§8): each carbons-enabled resource of the sender other than the sending one
  (and other than one the message itself reached) gets ``<sent><forwarded>``.

Copies come from the account's bare JID (§11 tells clients to drop any other sender),
keep the original's ``type`` and are addressed to the resource's full JID.

Eligible messages (§6, the XEP's suggested rules): type ``chat``, or ``normal`` with a
``<body/>``; not ``groupchat``, ``headline`` or ``error`` (the last one would need
message tracking, which §6 itself calls unlikely to be appropriate). Excluded: a message
with ``<private xmlns='urn:xmpp:carbons:2'/>`` (§10, removed from the delivered copy) or
the XEP-0334 ``<no-copy/>`` hint, and a message sent *by* a room or its occupants (§6:
"sent by a MUC room or service … includes private messages from MUC participants";
recognised by the ``<x xmlns='http://jabber.org/protocol/muc#user'/>`` XEP-0045 §7.5 asks
rooms to add). A private message a local user *sends* to an occupant is copied as sent,
so the user's other clients joined to the room see it.

When the account's archive runs (:mod:`xmppd.services.account_mam`), the forwarded copy in
``<sent/>`` carries the sender's own archive id too (XEP-0359 ``stanza-id`` by the bare
JID, beside the recipient's), and ``<received/>`` copies carry the recipient's archive id
that the delivered message has too.
"""

from __future__ import annotations

import copy
import logging
from typing import Self

from lxml import etree

from xmppd.observers import child_tags
from xmppd.router import RoutedMessage, Router
from xmppd.services.lifecycle import Service, ServiceContext
from xmppd.session import Session
from xmppd.xml import ns
from xmppd.xml.errors import StanzaError

log = logging.getLogger("xmppd.carbons")

CARBONS = "urn:xmpp:carbons:2"
FORWARD = "urn:xmpp:forward:0"
HINTS = "urn:xmpp:hints"
MUC_USER = "http://jabber.org/protocol/muc#user"
SID = "urn:xmpp:sid:0"
ENABLE = "{%s}enable" % CARBONS
DISABLE = "{%s}disable" % CARBONS
PRIVATE = "{%s}private" % CARBONS
NO_COPY = "{%s}no-copy" % HINTS
MUC_X = "{%s}x" % MUC_USER
BODY = "{%s}body" % ns.CLIENT
STANZA_ID = "{%s}stanza-id" % SID
MESSAGE = "{%s}message" % ns.CLIENT
IQ = "{%s}iq" % ns.CLIENT
#: Where the account archive leaves the sender's archive id for a sent carbon.
SENT_ID_NOTE = "mam.sent_id"


def eligible(stanza: etree._Element, tags: frozenset[str] | None = None) -> bool:
    """§6: chat, or normal with a body; never groupchat, headline, error; no hint against.
    ``tags``: the stanza's child names, when the caller has them."""
    if tags is None:
        tags = child_tags(stanza)
    kind = stanza.get("type") or "normal"
    if kind == "chat":
        pass
    elif kind != "normal" or BODY not in tags:
        return False
    return PRIVATE not in tags and NO_COPY not in tags


def wrap(original: etree._Element, direction: str, account: str) -> etree._Element:
    """``<message from=account type=…><sent|received><forwarded>original`` (no ``to``)."""
    out = etree.Element(MESSAGE, nsmap={None: ns.CLIENT})
    out.set("from", account)
    kind = original.get("type")
    if kind is not None:
        out.set("type", kind)
    box = etree.SubElement(out, "{%s}%s" % (CARBONS, direction), nsmap={None: CARBONS})
    fwd = etree.SubElement(box, "{%s}forwarded" % FORWARD, nsmap={None: FORWARD})
    fwd.append(original)
    return out


class CarbonsService(Service):
    """The enable/disable iqs and the copies, as a router message observer."""

    name = "carbons"

    def __init__(self, router: Router) -> None:
        self.router = router

    @classmethod
    def build(cls, ctx: ServiceContext) -> Self:
        service = cls(ctx.router)
        ctx.router.account_iq[ENABLE] = service.handle_iq
        ctx.router.account_iq[DISABLE] = service.handle_iq
        ctx.router.message_observers.append(service)
        ctx.router.features.add(CARBONS)
        return service

    async def handle_iq(
        self, stanza: etree._Element, origin: Session | None, router: Router
    ) -> etree._Element:
        """§4/§5: switch this resource's carbons; only a local client may (``not-allowed``)."""
        if origin is None:
            raise StanzaError("not-allowed", "only a client of this server has carbons")
        if stanza.get("type") != "set":
            raise StanzaError("bad-request", "carbons are enabled and disabled with a set")
        origin.carbons = stanza[0].tag == ENABLE
        log.info(
            "event=carbons_%s jid=%s",
            "enabled" if origin.carbons else "disabled",
            origin.full_str,
            extra={"jid": origin.full_str, "carbons": origin.carbons},
        )
        return etree.Element(IQ, type="result", nsmap={None: ns.CLIENT})

    # ------------------------------------------------------------ MessageObserver
    async def prepare(self, msg: RoutedMessage) -> bool:
        """Decide once, before delivery; drop ``<private/>`` from what is delivered (§10).
        True when a copy may be due: the message is eligible and a resource of the sender's
        or the addressee's account has carbons on."""
        stanza = msg.stanza
        wanted = eligible(stanza, msg.tags) and not _from_a_room(msg) and self._anyone_on(msg)
        msg.notes["carbons"] = wanted
        if PRIVATE in msg.tags:
            for hint in stanza.findall(PRIVATE):
                stanza.remove(hint)
        return wanted

    def _anyone_on(self, msg: RoutedMessage) -> bool:
        accounts = [] if msg.origin is None else [msg.origin.bare_str]
        if msg.local:
            accounts.append(str(msg.to.bare))
        return any(s.carbons for bare in accounts for s in self.router.resources_of(bare))

    async def routed(self, msg: RoutedMessage) -> None:
        if not msg.notes.get("carbons"):
            return
        origin = msg.origin
        if origin is not None:
            others = self._enabled(origin.bare_str, msg)
            if others:
                self._send(self._sent_copy(msg), others)
        if msg.local:
            account = msg.to.bare
            if origin is None or origin.bare != account:
                others = self._enabled(str(account), msg)
                if others:
                    self._send(wrap(_copy(msg.stanza), "received", str(account)), others)

    def _enabled(self, bare: str, msg: RoutedMessage) -> list[Session]:
        """``bare``'s resources with carbons on, but not the sender nor one that got the
        message itself (the cheap test first: most sessions have carbons off)."""
        return [
            s
            for s in self.router.resources_of(bare)
            if s.carbons and s is not msg.origin and s not in msg.reached
        ]

    @staticmethod
    def _sent_copy(msg: RoutedMessage) -> etree._Element:
        """The original with the sender's archive id, not the recipient's (when archived)."""
        assert msg.origin is not None
        account = msg.origin.bare_str
        original = _copy(msg.stanza)
        sent_id = msg.notes.get(SENT_ID_NOTE)
        if sent_id is not None:
            for old in original.findall(STANZA_ID):  # XEP-0359 §3: at most one per 'by'
                if old.get("by") == account:
                    original.remove(old)
            sid = etree.SubElement(original, STANZA_ID, nsmap={None: SID})
            sid.set("id", sent_id)
            sid.set("by", account)
        return wrap(original, "sent", account)

    @staticmethod
    def _send(copy: etree._Element, targets: list[Session]) -> None:
        for session in targets:
            copy.set("to", session.full_str)
            session.send(etree.tostring(copy))


def _copy(stanza: etree._Element) -> etree._Element:
    return copy.deepcopy(stanza)


def _from_a_room(msg: RoutedMessage) -> bool:
    """§6: sent by a room or an occupant (XEP-0045 puts ``<x xmlns=muc#user>`` on private
    messages). A local user's own private message to an occupant is not "sent by" a room."""
    return msg.origin is None and msg.stanza.find(MUC_X) is not None
