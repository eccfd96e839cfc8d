"""The names and element builders every room feature shares (XEP-0045 and friends).

Pure lxml: the namespaces and qualified tags a room reads and writes, and the three
helpers that build replies, so the feature modules do not each spell them out.
"""

from __future__ import annotations

import copy

from lxml import etree

from xmppd.muc import forms
from xmppd.muc.nicks import NickError, nick_key
from xmppd.xml import ns

MUC = "http://jabber.org/protocol/muc"
MUC_USER = MUC + "#user"
MUC_ADMIN = MUC + "#admin"
MUC_OWNER = MUC + "#owner"
SID = "urn:xmpp:sid:0"
OCCUPANT_ID = "urn:xmpp:occupant-id:0"
REGISTER = "jabber:iq:register"
SELF_PING_OPT = MUC + "#self-ping-optimization"
STABLE_ID = MUC + "#stable_id"
ROOMUSER_NODE = "x-roomuser-item"
REQUEST = MUC + "#request"

C = "{%s}" % ns.CLIENT
PRESENCE, MESSAGE, IQ = C + "presence", C + "message", C + "iq"
BODY, SUBJECT = C + "body", C + "subject"
MUC_X = "{%s}x" % MUC
USER_X = "{%s}x" % MUC_USER
STANZA_ID = "{%s}stanza-id" % SID
ORIGIN_ID = "{%s}origin-id" % SID
OCC_ID = "{%s}occupant-id" % OCCUPANT_ID
HISTORY = "{%s}history" % MUC
DISCO_INFO_Q = "{%s}query" % ns.DISCO_INFO
DISCO_ITEMS_Q = "{%s}query" % ns.DISCO_ITEMS
PING = "{%s}ping" % ns.PING
PASSWORD = "{%s}password" % MUC

#: Children a room never relays from a client: it adds its own.
STRIPPED = frozenset({OCC_ID, USER_X, MUC_X})


def el(tag: str, nsuri: str | None = None, **attrs: str) -> etree._Element:
    """A new root element (``jabber:client`` unless ``nsuri`` says otherwise)."""
    return etree.Element(tag, nsmap={None: nsuri or ns.CLIENT}, **attrs)


def sub(parent: etree._Element, tag: str, nsuri: str | None = None, **attrs: str) -> etree._Element:
    """A child of ``parent``, declaring ``nsuri`` as default namespace when it changes."""
    if nsuri is not None and nsuri != (parent.nsmap.get(None)):
        return etree.SubElement(parent, tag, nsmap={None: nsuri}, **attrs)
    return etree.SubElement(parent, tag, **attrs)


def result_iq(stanza: etree._Element) -> etree._Element:
    """The empty ``result`` answering an iq to the room (same id, from the room)."""
    iq = el(IQ, type="result")
    if stanza.get("id") is not None:
        iq.set("id", stanza.get("id"))
    iq.set("from", stanza.get("to") or "")
    return iq


def payload(stanza: etree._Element) -> list[etree._Element]:
    """Copies of a stanza's children other than the MUC ones the room adds itself."""
    return [copy.deepcopy(c) for c in stanza if c.tag not in STRIPPED]


def request_form(stanza: etree._Element) -> etree._Element | None:
    """The muc#request data form of a message (voice request or its approval), if any."""
    form = forms.find_form(stanza)
    if form is None or forms.form_type(form) != REQUEST:
        return None
    return form


def nick_key_or_none(nick: str) -> str | None:
    """The comparison key of ``nick``, or None when it is no valid nick (no occupant)."""
    try:
        return nick_key(nick)
    except NickError:
        return None
