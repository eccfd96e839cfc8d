"""Old servers' stored messages turned into what xmppd would itself have archived.

A room's archive row in xmppd (:mod:`xmppd.muc.core`, ``relay_groupchat``) holds the
groupchat message as the room broadcast it: no ``to``, ``from`` the occupant JID
(``room@service/nick``), the room's XEP-0359 ``<stanza-id by='room@service'/>`` and no
``<delay/>`` (the history copy gets one from the row's stamp, XEP-0203). ejabberd stores
the message as the occupant sent it (``from`` the real JID, its own stanza-id and the
MUC ``<x/>`` elements); :func:`room_stanza` rewrites it so join history and MAM return
it exactly as if xmppd had received it, with the old archive id as its stanza-id.
"""

from __future__ import annotations

import re
from datetime import datetime

from lxml import etree

from xmppd.muc.history import parse_stamp
from xmppd.xml import ns

__all__ = ["StanzaProblem", "account_stanza", "room_stanza", "sender_of", "stamp_of"]

SID = "urn:xmpp:sid:0"
_STANZA_ID = "{%s}stanza-id" % SID
_DROPPED = {
    _STANZA_ID,
    "{%s}delay" % ns.DELAY,
    "{http://jabber.org/protocol/muc#user}x",
    "{http://jabber.org/protocol/muc}x",
    "{urn:xmpp:occupant-id:0}occupant-id",
    "{urn:xmpp:mam:tmp}archived",
}
_MESSAGE = "{%s}message" % ns.CLIENT
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)


class StanzaProblem(ValueError):
    """A stored stanza that is not a message xmppd can archive."""


def _parse(xml: str) -> etree._Element:
    try:
        root = etree.fromstring(xml.encode("utf-8"), _PARSER)
    except etree.XMLSyntaxError as exc:
        raise StanzaProblem(f"not well-formed XML: {exc}") from None
    if root.tag != _MESSAGE:
        raise StanzaProblem(f"not a jabber:client message: {root.tag}")
    return root


def sender_of(xml: str) -> str:
    """The ``from`` of a stored stanza ("" if none or unparsable)."""
    try:
        return _parse(xml).get("from", "")
    except StanzaProblem:
        return ""


def room_stanza(xml: str, room_jid: str, nick: str, stanza_id: str) -> str:
    """The row's stanza as xmppd's room would have archived it (see the module doc)."""
    root = _parse(xml)
    root.attrib.pop("to", None)
    root.set("from", f"{room_jid}/{nick}")
    root.set("type", "groupchat")
    for child in list(root):
        if child.tag in _DROPPED:
            root.remove(child)
    sid = etree.SubElement(root, _STANZA_ID, nsmap={None: SID})
    sid.set("id", stanza_id)
    sid.set("by", room_jid)
    return etree.tostring(root, encoding="unicode")


def account_stanza(xml: str, owner: str, stanza_id: str) -> str:
    """A one-to-one message for ``owner``'s archive: the old server's stanza-id claims
    by the owner replaced by one carrying the old archive id (XEP-0359 §3)."""
    root = _parse(xml)
    for child in root.findall(_STANZA_ID):
        if child.get("by") == owner:
            root.remove(child)
    sid = etree.SubElement(root, _STANZA_ID, nsmap={None: SID})
    sid.set("id", stanza_id)
    sid.set("by", owner)
    return etree.tostring(root, encoding="unicode")


_DELAY_STAMP = re.compile(r"<delay\b[^>]*\bstamp=[\"']([^\"']+)[\"']")


def stamp_of(xml: str) -> datetime | None:
    """The XEP-0203 ``<delay stamp/>`` of a stored stanza as naive UTC, if it has one."""
    match = _DELAY_STAMP.search(xml)
    if match is None:
        return None
    try:
        return parse_stamp(match.group(1)).replace(tzinfo=None)
    except ValueError:
        return None
