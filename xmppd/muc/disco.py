"""Service discovery of a room (XEP-0045 §6.4, XEP-0030) and ping (XEP-0199).

The room's features are what each feature module declares (its ``FEATURES``) plus those
the settings table (:mod:`.roomconfig`) derives from the configuration, which also gives
the muc#roominfo fields; the ``x-roomuser-item`` node tells a user its registered nick
(§7.10).
"""

from __future__ import annotations

from lxml import etree

from xmppd.muc import (
    archive,
    forms,
    iq_relay,
    messages,
    moderation,
    presence,
    registration,
    roomconfig,
    voice,
)
from xmppd.muc.core import RoomCore
from xmppd.muc.out import Out
from xmppd.muc.stanzas import DISCO_INFO_Q, DISCO_ITEMS_Q, ROOMUSER_NODE, result_iq, sub
from xmppd.muc.wire import Recipient
from xmppd.xml import ns
from xmppd.xml.errors import StanzaError

#: What every room supports, whatever its configuration: each feature module's own
#: features, and disco and ping here.
ALWAYS = (
    ns.DISCO_INFO,
    ns.DISCO_ITEMS,
    ns.PING,
    *presence.FEATURES,
    *messages.FEATURES,
    *voice.FEATURES,
    *iq_relay.FEATURES,
    *registration.FEATURES,
    *archive.FEATURES,
)


#: The muc#roominfo fields in the order rooms have always shown them.
_ROOMINFO_ORDER = (
    "muc#roominfo_description",
    "muc#roominfo_subject",
    "muc#roominfo_occupants",
    "muc#roomconfig_roomname",
    "muc#roominfo_changesubject",
)


def features(room: RoomCore) -> list[str]:
    """The room's disco#info features, sorted (moderation's when ``muc.moderation``)."""
    optional = moderation.FEATURES if room.ctx.config.moderation else ()
    return sorted([*ALWAYS, *optional, *roomconfig.features(room.settings)])


def info(room: RoomCore, out: Out, stanza: etree._Element, rcpt: Recipient) -> None:
    """disco#info of the room, or of its ``x-roomuser-item`` node."""
    node = stanza[0].get("node")
    reply = result_iq(stanza)
    q = sub(reply, DISCO_INFO_Q, ns.DISCO_INFO)
    if node == ROOMUSER_NODE:
        q.set("node", node)
        mine = room.ctx.nicks.nick_of(room.name, rcpt.bare)
        if mine is not None:
            sub(q, "{%s}identity" % ns.DISCO_INFO, category="conference", type="text", name=mine)
        out.send(rcpt, reply)
        return
    if node is not None:
        raise StanzaError("item-not-found")
    settings = room.settings
    sub(q, "{%s}identity" % ns.DISCO_INFO, category="conference", type="text",
        name=settings.title or room.name)  # fmt: skip
    for var in features(room):
        sub(q, "{%s}feature" % ns.DISCO_INFO, var=var)
    shown = dict(roomconfig.roominfo(settings))
    shown["muc#roominfo_subject"] = [room.subject]
    shown["muc#roominfo_occupants"] = [str(len(room.occupants))]
    shown["muc#roomconfig_roomname"] = [settings.title or room.name]
    form = forms.Form("result", forms.ROOMINFO)
    for var in sorted(shown, key=_ROOMINFO_ORDER.index):
        form.add(var, None, shown[var])
    q.append(form.el)
    out.send(rcpt, reply)


def items(room: RoomCore, out: Out, stanza: etree._Element, rcpt: Recipient) -> None:
    """disco#items: a room lists no items (occupants are private)."""
    reply = result_iq(stanza)
    q = sub(reply, DISCO_ITEMS_Q, ns.DISCO_ITEMS)
    node = stanza[0].get("node")
    if node:
        q.set("node", node)
    out.send(rcpt, reply)
