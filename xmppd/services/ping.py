"""XEP-0199 XMPP Ping, answered by the server for itself and for the sender's account.

Clients ping the server to check that the connection is alive (the answer is an empty
result, §4.2). A ping to *another* user's bare JID is not answered by the server on that
user's behalf: a result would only confirm that the account exists, so it gets
``service-unavailable`` like any iq the account cannot handle.
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

PING_TAG = "{%s}ping" % ns.PING


async def handle_ping(
    stanza: etree._Element, origin: Session | None, router: Router
) -> etree._Element:
    """Reply with an empty result when the server or the sender's own account is pinged."""
    require_get(stanza)
    kind, _account = addressee_of(stanza, origin)
    if kind is Addressee.OTHER:
        raise StanzaError("service-unavailable")
    return result_iq()


def install_ping(router: Router) -> None:
    """Answer pings to the domain and (RFC 6120 §10.3.3) to the sender's own account."""
    router.features.add(ns.PING)
    router.server_iq[PING_TAG] = handle_ping
    router.account_iq[PING_TAG] = handle_ping
