"""XEP-0092 Software Version of the server.

The operating system is optional in the protocol and off unless configured: telling
every client the exact OS helps an attacker pick exploits and tells users nothing.
Only the domain answers; an account has no software version, so a query to a bare JID
(or with no ``to``) gets ``service-unavailable``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lxml import etree

from xmppd.services.disco import Addressee, addressee_of, require_get, result_iq
from xmppd.xml import ns
from xmppd.xml.errors import StanzaError

if TYPE_CHECKING:
    from xmppd.router import Router
    from xmppd.session import Session

VERSION_TAG = "{%s}query" % ns.VERSION


class VersionService:
    """Answers ``jabber:iq:version`` with fixed name, version and optional OS."""

    def __init__(self, *, name: str, version: str, os_name: str | None = None) -> None:
        self.name = name
        self.version = version
        self.os_name = os_name

    async def handle(
        self, stanza: etree._Element, origin: Session | None, router: Router
    ) -> etree._Element:
        """Reply with ``<name/>``, ``<version/>`` and, only if configured, ``<os/>``."""
        require_get(stanza)
        kind, _account = addressee_of(stanza, origin)
        if kind is not Addressee.SERVER:
            raise StanzaError("service-unavailable")
        reply = result_iq()
        query = etree.SubElement(reply, VERSION_TAG, nsmap={None: ns.VERSION})
        etree.SubElement(query, "{%s}name" % ns.VERSION).text = self.name
        etree.SubElement(query, "{%s}version" % ns.VERSION).text = self.version
        if self.os_name is not None:
            etree.SubElement(query, "{%s}os" % ns.VERSION).text = self.os_name
        return reply

    def install(self, router: Router) -> None:
        """Advertise the feature and answer queries addressed to the domain."""
        router.features.add(ns.VERSION)
        router.server_iq[VERSION_TAG] = self.handle
