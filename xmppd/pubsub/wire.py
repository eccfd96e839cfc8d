"""The stanzas of XEP-0060 a PEP service sends: results and ``#event`` notifications.

Notifications are ``<message type='headline'>`` from the owner's bare JID to a full JID
(XEP-0163 §4.3.1); a last published item sent later carries XEP-0203 ``<delay/>`` with
the time it was published (XEP-0060 §12.14). Items travel as serialised payload text,
as stored, and are parsed once per notification, not once per recipient.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from lxml import etree

from xmppd.pubsub.names import DELAY, EVENT, PUBSUB
from xmppd.xml import ns

MESSAGE = "{%s}message" % ns.CLIENT


@dataclass(frozen=True, slots=True)
class Item:
    """One stored item: its id, its payload (one element, serialised) and when."""

    item_id: str
    payload: str
    published: datetime


def item_element(tag: str, item: Item) -> etree._Element:
    """``<item id='…'>payload</item>`` in the namespace of ``tag``."""
    el = etree.Element(tag, id=item.item_id)
    el.append(etree.fromstring(item.payload))
    return el


def items_result(node: str, items: Iterable[Item]) -> etree._Element:
    """§6.5.2: ``<pubsub><items node='…'><item/>…</items></pubsub>``."""
    pubsub = etree.Element("{%s}pubsub" % PUBSUB, nsmap={None: PUBSUB})
    holder = etree.SubElement(pubsub, "{%s}items" % PUBSUB, node=node)
    for item in items:
        holder.append(item_element("{%s}item" % PUBSUB, item))
    return pubsub


def publish_result(node: str, item_id: str) -> etree._Element:
    """§7.1.2: the node and the item's id (the service's, when the publisher gave none)."""
    pubsub = etree.Element("{%s}pubsub" % PUBSUB, nsmap={None: PUBSUB})
    publish = etree.SubElement(pubsub, "{%s}publish" % PUBSUB, node=node)
    etree.SubElement(publish, "{%s}item" % PUBSUB, id=item_id)
    return pubsub


def event_message(owner: str, event: etree._Element, delay: datetime | None = None) -> bytes:
    """A notification template: serialised without ``to`` (see :func:`addressed`)."""
    msg = etree.Element(MESSAGE, type="headline", nsmap={None: ns.CLIENT})
    msg.set("from", owner)
    msg.append(event)
    if delay is not None:
        stamp = delay.replace(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        etree.SubElement(msg, "{%s}delay" % DELAY, stamp=stamp, nsmap={None: DELAY})
    return etree.tostring(msg)


def addressed(template: bytes, to: str) -> bytes:
    """``template`` with ``to`` added, without parsing it again (one copy per recipient)."""
    quoted = to.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
    head = b"<message "
    assert template.startswith(head)
    return head + b'to="' + quoted.encode("utf-8") + b'" ' + template[len(head) :]


def _event() -> etree._Element:
    return etree.Element("{%s}event" % EVENT, nsmap={None: EVENT})


def event_items(node: str, items: Iterable[Item]) -> etree._Element:
    """§7.1.2.1: ``<event><items node='…'><item id='…'>payload</item></items></event>``."""
    event = _event()
    holder = etree.SubElement(event, "{%s}items" % EVENT, node=node)
    for item in items:
        holder.append(item_element("{%s}item" % EVENT, item))
    return event


def event_retract(node: str, item_ids: Iterable[str]) -> etree._Element:
    """§7.2.2.1: ``<items node='…'><retract id='…'/></items>``."""
    event = _event()
    holder = etree.SubElement(event, "{%s}items" % EVENT, node=node)
    for item_id in item_ids:
        etree.SubElement(holder, "{%s}retract" % EVENT, id=item_id)
    return event


def event_node(kind: str, node: str) -> etree._Element:
    """§8.4.2 ``<delete node='…'/>`` or §8.5.2 ``<purge node='…'/>``."""
    event = _event()
    etree.SubElement(event, "{%s}%s" % (EVENT, kind), node=node)
    return event
