"""XEP-0202 Entity Time of the server.

The server runs in UTC, so the offset is always ``+00:00`` and ``<utc/>`` is the same
instant in XEP-0082 DateTime form. The clock is a parameter (DESIGN.md: one injectable
clock) so a test can pin the answer; it returns POSIX seconds like ``time.time``.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from lxml import etree

from xmppd.services.disco import Addressee, addressee_of, require_get, result_iq
from xmppd.xml import ns
from xmppd.xml.errors import StanzaError

if TYPE_CHECKING:
    from xmppd.router import Router
    from xmppd.session import Session

TIME_TAG = "{%s}time" % ns.TIME


def xep82_datetime(seconds: float) -> str:
    """POSIX seconds as an XEP-0082 DateTime in UTC (``CCYY-MM-DDThh:mm:ss[.sss]Z``).

    Milliseconds are written only when non-zero: XEP-0082 makes them optional, and
    clients that sync clocks from XEP-0202 (its §1 use case) benefit from them.
    """
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    millis = moment.microsecond // 1000
    if millis:
        text += f".{millis:03d}"
    return text + "Z"


class TimeService:
    """Answers ``urn:xmpp:time`` queries to the domain."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock

    async def handle(
        self, stanza: etree._Element, origin: Session | None, router: Router
    ) -> etree._Element:
        """Reply with ``<tzo>+00:00</tzo>`` and the current UTC time."""
        require_get(stanza)
        kind, _account = addressee_of(stanza, origin)
        if kind is not Addressee.SERVER:
            # An account has no clock of its own; its clients answer to full JIDs.
            raise StanzaError("service-unavailable")
        reply = result_iq()
        payload = etree.SubElement(reply, TIME_TAG, nsmap={None: ns.TIME})
        etree.SubElement(payload, "{%s}tzo" % ns.TIME).text = "+00:00"
        etree.SubElement(payload, "{%s}utc" % ns.TIME).text = xep82_datetime(self.clock())
        return reply

    def install(self, router: Router) -> None:
        """Advertise the feature and answer queries addressed to the domain."""
        router.features.add(ns.TIME)
        router.server_iq[TIME_TAG] = self.handle
