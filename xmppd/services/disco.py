"""XEP-0030 service discovery for the server and, on their behalf, its accounts.

What the server says about itself is assembled per request from ``router.features`` and
``router.disco_items``, so services installed later (MUC, components) show up without
touching this module. What it says about an *account* follows the XEP-0030 security
rules for bare JIDs (§8): it answers its own user freely, and anyone else only when the
account shares its presence with them, because otherwise a disco#info result would
confirm to a stranger that the account exists (directory harvesting).
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from lxml import etree

from xmppd.jid import JID, JIDError
from xmppd.pubsub.caps import caps_hash, parse_info
from xmppd.xml import ns
from xmppd.xml.errors import StanzaError

if TYPE_CHECKING:
    from xmppd.router import Router
    from xmppd.session import Session

__all__ = [
    "DATA_FORM",
    "INFO_TAG",
    "ITEMS_TAG",
    "STREAM_ONLY_FEATURES",
    "Addressee",
    "DiscoService",
    "PresenceCheck",
    "addressee_of",
    "require_get",
    "result_iq",
]

INFO_TAG = "{%s}query" % ns.DISCO_INFO
ITEMS_TAG = "{%s}query" % ns.DISCO_ITEMS
DATA_FORM = "jabber:x:data"

#: Namespaces that name *stream* features (RFC 6121 §2.6 roster versioning, §3.4
#: pre-approval). They are announced in ``<stream:features/>``, not in disco#info; a
#: service that puts one in ``router.features`` by mistake must not make us claim a
#: disco feature that no registry defines.
STREAM_ONLY_FEATURES = frozenset({ns.ROSTER_VER, ns.PRE_APPROVAL})

#: ``await check(requester_bare, account_bare)``: may ``requester`` see ``account``'s
#: presence (the account's roster has a subscription of type "from" or "both")?
PresenceCheck = Callable[[JID, JID], Awaitable[bool]]
#: XEP-0115 §4: the URI naming this software in the server's caps.
CAPS_NODE = "urn:xmppd:caps"
CAPS_NS = "http://jabber.org/protocol/caps"


class AccountNodes(Protocol):
    """What an account's PEP service (XEP-0163) says about its nodes in disco."""

    async def node_info(
        self, requester: JID | None, account: JID, node: str
    ) -> etree._Element | None:
        """The ``<query/>`` children of disco#info about ``node`` (XEP-0060 §5.3), or None:
        no such node for this requester (``item-not-found``)."""
        ...

    async def node_items(self, requester: JID | None, account: JID) -> list[etree._Element]:
        """The ``<item/>``s of disco#items of the account (XEP-0060 §5.2)."""
        ...


class Addressee(enum.Enum):
    """Whom an iq handled by the server is really for (RFC 6120 §10.3, RFC 6121 §8.5)."""

    SERVER = "server"  #: the domain itself
    OWN = "own"  #: the sender's own account (no ``to``, or ``to`` = own bare JID)
    OTHER = "other"  #: another local account's bare JID


def addressee_of(stanza: etree._Element, origin: Session | None) -> tuple[Addressee, JID | None]:
    """Classify the addressee of an iq the router handed to a server/account handler.

    The router uses one ``server_iq`` table both for the domain and for other users'
    bare JIDs, and falls back to it for the sender's own account, so a handler must
    look at ``to`` and ``from`` to know on whose behalf it answers. Returns the kind and,
    for OWN/OTHER, the account's bare JID.
    """
    sender = _sender_bare(stanza, origin)
    to_attr = stanza.get("to")
    if to_attr is None:
        return Addressee.OWN, sender
    try:
        to = JID.parse(to_attr)
    except JIDError:  # the router already refused these; be safe anyway
        raise StanzaError("jid-malformed") from None
    if to.local is None:
        return Addressee.SERVER, None
    account = to.bare
    if sender is not None and sender == account:
        return Addressee.OWN, account
    return Addressee.OTHER, account


def _sender_bare(stanza: etree._Element, origin: Session | None) -> JID | None:
    if origin is not None:
        return origin.bare
    from_attr = stanza.get("from")
    if from_attr is None:
        return None
    try:
        return JID.parse(from_attr).bare
    except JIDError:
        return None


def result_iq() -> etree._Element:
    """An empty ``<iq type='result'/>``; the router fills to, from and id."""
    return etree.Element("{%s}iq" % ns.CLIENT, type="result", nsmap={None: ns.CLIENT})


def require_get(stanza: etree._Element) -> None:
    """These protocols define only ``get``; a ``set`` asks for a service we do not offer."""
    if stanza.get("type") != "get":
        raise StanzaError("service-unavailable")


class DiscoService:
    """disco#info and disco#items for the server domain and for local bare JIDs."""

    def __init__(
        self,
        *,
        name: str = "xmppd",
        extensions: Iterable[etree._Element] = (),
        account_features: Iterable[str] = (ns.DISCO_INFO, ns.DISCO_ITEMS),
    ) -> None:
        """``extensions`` are XEP-0128 data forms (type ``result``) added to the server's info.

        They are validated here, at start-up, so a bad configuration fails loudly rather
        than producing an invalid disco#info result on the first client request.
        """
        self.name = name
        self.extensions: list[etree._Element] = []
        for form in extensions:
            if form.tag != "{%s}x" % DATA_FORM or form.get("type") != "result":
                raise ValueError("XEP-0128 extensions must be <x xmlns='jabber:x:data'/> results")
            self.extensions.append(copy.deepcopy(form))
        self.account_features = frozenset(account_features)
        #: Set by the roster/presence service; until then only the account itself (and
        #: nobody else) gets disco#info about an account, which is the safe default.
        self.presence_authorized: PresenceCheck | None = None
        #: Identities every account has besides account/registered, e.g. XEP-0163's
        #: (pubsub, pep) while PEP runs.
        self.account_identities: list[tuple[str, str]] = []
        #: An account's pubsub nodes (set by the PEP service when it runs).
        self.account_nodes: AccountNodes | None = None

    def install(self, router: Router) -> None:
        """Register both handlers for the domain and for accounts, and advertise disco."""
        router.features.update((ns.DISCO_INFO, ns.DISCO_ITEMS))
        for table in (router.server_iq, router.account_iq):
            table[INFO_TAG] = self.handle_info
            table[ITEMS_TAG] = self.handle_items

    # ---------------------------------------------------------------- disco#info
    async def handle_info(
        self, stanza: etree._Element, origin: Session | None, router: Router
    ) -> etree._Element:
        """Answer disco#info for the server, the sender's account, or another account."""
        require_get(stanza)
        node = stanza[0].get("node")
        kind, account = addressee_of(stanza, origin)
        if kind is Addressee.SERVER:
            if node is None:
                return self._server_info(router)
            if node != f"{CAPS_NODE}#{self.caps_ver(router)}":
                raise StanzaError("item-not-found")
            reply = self._server_info(router)
            reply[0].set("node", node)  # XEP-0115 §6.2: the same info at node#ver
            return reply
        if kind is Addressee.OTHER:
            requester = _sender_bare(stanza, origin)
            if not await self._may_see(requester, account):
                # XEP-0030 §8 rule 1: do not confirm the account to a stranger.
                raise StanzaError("service-unavailable")
        if node is not None:
            return await self._node_info(stanza, origin, account, node)
        return self._account_info()

    async def _node_info(
        self, stanza: etree._Element, origin: Session | None, account: JID | None, node: str
    ) -> etree._Element:
        nodes = self.account_nodes
        found = None
        if nodes is not None and account is not None:
            found = await nodes.node_info(_sender_bare(stanza, origin), account, node)
        if found is None:
            raise StanzaError("item-not-found")
        reply = result_iq()
        query = etree.SubElement(reply, INFO_TAG, nsmap={None: ns.DISCO_INFO}, node=node)
        query.extend(found)
        return reply

    async def _may_see(self, requester: JID | None, account: JID | None) -> bool:
        if self.presence_authorized is None or requester is None or account is None:
            return False
        return await self.presence_authorized(requester, account)

    def server_features(self, router: Router) -> list[str]:
        """The server's disco features, sorted so replies (and caps hashes) are stable."""
        return sorted(f for f in router.features if f not in STREAM_ONLY_FEATURES)

    def caps_ver(self, router: Router) -> str:
        """XEP-0115 §5.1: the sha-1 ``ver`` of the server's disco#info."""
        return caps_hash("sha-1", parse_info(self._server_info(router)[0]))

    def caps_element(self, router: Router) -> bytes:
        """The ``<c/>`` for the stream features (XEP-0115 §6.3)."""
        c = etree.Element("{%s}c" % CAPS_NS, nsmap={None: CAPS_NS}, hash="sha-1")
        c.set("node", CAPS_NODE)
        c.set("ver", self.caps_ver(router))
        return etree.tostring(c)

    def _server_info(self, router: Router) -> etree._Element:
        reply = result_iq()
        query = etree.SubElement(reply, INFO_TAG, nsmap={None: ns.DISCO_INFO})
        etree.SubElement(query, "{%s}identity" % ns.DISCO_INFO, category="server", type="im",
                         name=self.name)  # fmt: skip
        for var in self.server_features(router):
            etree.SubElement(query, "{%s}feature" % ns.DISCO_INFO, var=var)
        for form in self.extensions:
            # lxml moves an appended element: give each reply its own copy.
            query.append(copy.deepcopy(form))
        return reply

    def _account_info(self) -> etree._Element:
        reply = result_iq()
        query = etree.SubElement(reply, INFO_TAG, nsmap={None: ns.DISCO_INFO})
        etree.SubElement(query, "{%s}identity" % ns.DISCO_INFO, category="account",
                         type="registered")  # fmt: skip
        for category, type_ in self.account_identities:
            etree.SubElement(query, "{%s}identity" % ns.DISCO_INFO, category=category, type=type_)
        for var in sorted(self.account_features):
            etree.SubElement(query, "{%s}feature" % ns.DISCO_INFO, var=var)
        return reply

    # --------------------------------------------------------------- disco#items
    async def handle_items(
        self, stanza: etree._Element, origin: Session | None, router: Router
    ) -> etree._Element:
        """List the server's services; an account's items are its PEP nodes, for the
        account itself (XEP-0060 §5.2), and otherwise an empty set.

        The other items an account could have here are its available resources, which
        XEP-0030 §8 rule 2 lets us withhold; returning the same empty set to everyone else
        (node or not) leaks neither resources nor, beyond what the router already says,
        existence.
        """
        require_get(stanza)
        node = stanza[0].get("node")
        kind, account = addressee_of(stanza, origin)
        reply = result_iq()
        query = etree.SubElement(reply, ITEMS_TAG, nsmap={None: ns.DISCO_ITEMS})
        if kind is not Addressee.SERVER:
            if node is not None:
                query.set("node", node)
            elif self.account_nodes is not None and account is not None:
                requester = _sender_bare(stanza, origin)
                query.extend(await self.account_nodes.node_items(requester, account))
            return reply
        if node is not None:
            raise StanzaError("item-not-found")
        for jid, name in sorted(router.disco_items.items()):
            item = etree.SubElement(query, "{%s}item" % ns.DISCO_ITEMS, jid=jid)
            if name is not None:
                item.set("name", name)
        return reply
