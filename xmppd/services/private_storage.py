"""XEP-0049 private XML storage (``jabber:iq:private``): XML an account keeps for itself.

A client stores elements of its own namespace with an iq set (``<query>`` holding them)
and reads them back with an iq get naming the namespace by an empty element (§2.3). It is
what XEP-0048 bookmarks use in clients that predate PEP. The rules, from §2.3 and §3:

- only the account itself, from one of its resources, with no ``to`` or its own bare
  JID; to anyone else (another account, the server) ``forbidden``;
- a get names exactly one namespace (an empty ``<query/>`` or two children:
  ``bad-request``, the XEP's "Bad Format"); a never-stored namespace returns the empty
  element it named;
- a set carries one or more elements of **one** namespace (the XEP allows several of the
  same namespace; more than one namespace, or none: ``not-acceptable``); it replaces
  what was stored under that namespace;
- reserved namespaces (``jabber:*``, ``http://jabber.org/*``, ``vcard-temp``, and an
  element with no namespace of its own, which is ``jabber:iq:private``'s):
  ``not-acceptable`` (§2.3 makes this optional; we refuse them);
- ``[private_storage]`` limits (the item, the account's total and its number of
  namespaces, each in bytes of serialised XML) and a namespace longer than
  :data:`~xmppd.storage.models.NAMESPACE_MAX` characters: ``not-acceptable``.

Each refused request stores nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Self

from lxml import etree

from xmppd.router import Router
from xmppd.services.account_config import PrivateStorageConfig
from xmppd.services.disco import Addressee, addressee_of, result_iq
from xmppd.services.lifecycle import Service, ServiceContext
from xmppd.services.vcard import parse_stored, serialise
from xmppd.session import Session
from xmppd.storage import AsyncDatabase
from xmppd.storage.models import NAMESPACE_MAX
from xmppd.storage.private_xml import PrivateXmlStore, Quota, QuotaExceeded
from xmppd.xml import ns
from xmppd.xml.errors import StanzaError

log = logging.getLogger("xmppd.private")

QUERY = "{%s}query" % ns.PRIVATE
_RESERVED_PREFIXES = ("jabber:", "http://jabber.org/")
_RESERVED = frozenset({ns.VCARD, ""})
#: ``await hook(owner, namespace, xml)`` after a client stored private XML (the elements
#: of one namespace, serialised); see :meth:`PrivateStorageService.on_set`.
SetHook = Callable[[str, str, str], Awaitable[None]]


def namespace_of(element: etree._Element) -> str:
    """The namespace URI of ``element`` ("" if it has none)."""
    return etree.QName(element).namespace or ""


def is_reserved(namespace: str) -> bool:
    """Whether XEP-0049 §2.3 reserves ``namespace`` (no private data may use it)."""
    return namespace in _RESERVED or namespace.startswith(_RESERVED_PREFIXES)


def check_namespace(namespace: str) -> None:
    """``not-acceptable`` for a namespace no item may have."""
    if is_reserved(namespace):
        raise StanzaError("not-acceptable", "that namespace is reserved")
    if len(namespace) > NAMESPACE_MAX:
        raise StanzaError("not-acceptable", f"a namespace may be {NAMESPACE_MAX} characters")


def stored_namespace(query: etree._Element) -> str:
    """The one namespace of a set's elements, or the XEP's error."""
    if len(query) == 0:
        raise StanzaError("not-acceptable", "store at least one element")
    found = {namespace_of(child) for child in query}
    if len(found) != 1:
        raise StanzaError("not-acceptable", "one namespace per request")
    namespace = found.pop()
    check_namespace(namespace)
    return namespace


class PrivateStorageService(Service):
    """``jabber:iq:private`` for every local account (see the module docstring)."""

    name = "private_storage"

    def __init__(self, config: PrivateStorageConfig, adb: AsyncDatabase) -> None:
        self.adb = adb
        self.store = PrivateXmlStore(adb.db)
        self.quota = Quota(config.max_item_size, config.max_total_size, config.max_items)
        self.set_hooks: list[SetHook] = []

    @classmethod
    def build(cls, ctx: ServiceContext) -> Self | None:
        """Answer ``jabber:iq:private``; None when ``[private_storage] enabled`` is false.

        XEP-0049 defines no disco feature: the namespace is advertised on the account
        side only by working (clients just try it).
        """
        config = ctx.config.private_storage
        if not config.enabled:
            return None
        service = cls(config, ctx.adb)
        ctx.router.server_iq[QUERY] = service.handle_iq
        return service

    async def handle_iq(
        self, stanza: etree._Element, origin: Session | None, router: Router
    ) -> etree._Element:
        kind, account = addressee_of(stanza, origin)
        if kind is not Addressee.OWN or origin is None or account is None:
            raise StanzaError("forbidden", "private data is only your own")
        owner, query = str(account), stanza[0]
        if stanza.get("type") == "get":
            return await self._get(owner, query)
        namespace = stored_namespace(query)
        await self.store_for(owner, namespace, "".join(serialise(child) for child in query))
        return result_iq()

    def on_set(self, hook: SetHook) -> None:
        """Call ``hook`` after each set a client makes (not after a ``tell=False``
        :meth:`store_for`, so a conversion that stores cannot loop: XEP-0402 §5.3)."""
        self.set_hooks.append(hook)

    async def read(self, owner: str, namespace: str) -> str | None:
        """What ``owner`` keeps under ``namespace`` (serialised elements), or None."""
        return await self.adb.run(self.store.get, owner, namespace)

    async def store_for(self, owner: str, namespace: str, xml: str, *, tell: bool = True) -> None:
        """Keep ``xml`` (elements of ``namespace``) within the ``[private_storage]`` quota
        (``not-acceptable`` beyond, nothing stored); then the hooks unless ``tell`` is False."""
        try:
            await self.adb.run(self.store.put, owner, namespace, xml, self.quota)
        except QuotaExceeded as exc:
            log.info("event=private_refused owner=%s reason=quota", owner)
            raise StanzaError("not-acceptable", str(exc)) from None
        log.info("event=private_stored owner=%s bytes=%d", owner, len(xml.encode("utf-8")))
        for hook in self.set_hooks if tell else ():
            try:
                await hook(owner, namespace, xml)
            except Exception:  # a hook's bug must not fail the client's set
                log.exception("event=private_hook_failed owner=%s", owner)

    async def _get(self, owner: str, query: etree._Element) -> etree._Element:
        if len(query) != 1:
            raise StanzaError("bad-request", "name exactly one namespace")
        asked = query[0]
        namespace = namespace_of(asked)
        check_namespace(namespace)
        reply = result_iq()
        out = etree.SubElement(reply, QUERY, nsmap={None: ns.PRIVATE})
        xml = await self.adb.run(self.store.get, owner, namespace)
        if xml is None:
            out.append(etree.Element(asked.tag, nsmap={None: namespace}))
            return reply
        for element in parse_stored(f"<x>{xml}</x>"):
            out.append(element)
        return reply
