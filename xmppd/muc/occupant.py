"""An occupant: one nick in one room, held by one or more resources of one bare JID."""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from xmppd.muc.wire import Recipient, Template


@dataclass(slots=True)
class Occupant:
    nick: str
    key: str  #: nick comparison key (:func:`xmppd.muc.nicks.nick_key`)
    bare: str  #: real bare JID
    role: str
    occupant_id: str
    #: real full JID -> that resource's recipient record, in join order
    sessions: dict[str, Recipient] = field(default_factory=dict)
    #: the latest presence payload (children other than MUC ones), shown for the nick
    payload: list[etree._Element] = field(default_factory=list)
    #: the resource whose presence is shown (the most recent one to send presence)
    primary: str = ""
    #: cached presence as others see it, by "may see the real JID"
    views: dict[bool, Template] = field(default_factory=dict)
