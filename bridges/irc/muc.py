"""The room side of the bridge, sans-IO: join presence, self-ping, and reading room stanzas.

Stanzas arrive in the component namespace (or jabber:client); everything here matches on
local names so it works with either. Nothing here sends anything: functions build
elements and classify incoming ones into small event objects for the relay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from lxml import etree

MUC = "http://jabber.org/protocol/muc"
MUC_USER = "http://jabber.org/protocol/muc#user"
SID = "urn:xmpp:sid:0"
DELAY = "urn:xmpp:delay"
PING = "urn:xmpp:ping"
RETRACT = "urn:xmpp:message-retract:1"
FASTEN = "urn:xmpp:fasten:0"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
COMPONENT = "jabber:component:accept"


def _local(el: etree._Element) -> str:
    tag = el.tag
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1]


def _child(el: etree._Element, name: str, nsuri: str | None = None) -> etree._Element | None:
    for c in el:
        if _local(c) == name and (nsuri is None or etree.QName(c).namespace == nsuri):
            return c
    return None


def format_stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_stamp(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def join_presence(
    occupant_jid: str, from_jid: str, since: datetime | None, maxstanzas: int
) -> etree._Element:
    """Presence to ``room/nick`` with ``<history/>``: ``since`` the last message we saw
    (overlap is deduplicated by stanza-id), or no history at all on the very first join."""
    p = etree.Element("{%s}presence" % COMPONENT, nsmap={None: COMPONENT})
    p.set("to", occupant_jid)
    p.set("from", from_jid)
    x = etree.SubElement(p, "{%s}x" % MUC, nsmap={None: MUC})
    h = etree.SubElement(x, "{%s}history" % MUC)
    if since is None:
        h.set("maxstanzas", "0")
    else:
        h.set("since", format_stamp(since))
        h.set("maxstanzas", str(maxstanzas))
    return p


def groupchat(room_jid: str, from_jid: str, body: str, msg_id: str) -> etree._Element:
    m = etree.Element("{%s}message" % COMPONENT, nsmap={None: COMPONENT})
    m.set("to", room_jid)
    m.set("from", from_jid)
    m.set("type", "groupchat")
    m.set("id", msg_id)
    etree.SubElement(m, "{%s}body" % COMPONENT).text = body
    return m


def self_ping(occupant_jid: str, from_jid: str, iq_id: str) -> etree._Element:
    """XEP-0410: ping our own occupant JID; the room answers only if we are joined."""
    iq = etree.Element("{%s}iq" % COMPONENT, nsmap={None: COMPONENT})
    iq.set("to", occupant_jid)
    iq.set("from", from_jid)
    iq.set("type", "get")
    iq.set("id", iq_id)
    etree.SubElement(iq, "{%s}ping" % PING, nsmap={None: PING})
    return iq


def ping_reply(iq: etree._Element) -> etree._Element:
    reply = etree.Element("{%s}iq" % COMPONENT, nsmap={None: COMPONENT})
    reply.set("type", "result")
    if iq.get("id") is not None:
        reply.set("id", iq.get("id") or "")
    if iq.get("from"):
        reply.set("to", iq.get("from") or "")
    if iq.get("to"):
        reply.set("from", iq.get("to") or "")
    return reply


# ------------------------------------------------------------------------------ events
@dataclass
class RoomMessage:
    nick: str
    body: str
    stanza_id: str | None
    stamp: datetime | None  # from <delay/>: a history copy
    msg_id: str | None = None


@dataclass
class OccupantJoined:
    nick: str


@dataclass
class OccupantLeft:
    nick: str


@dataclass
class SelfJoined:
    nick: str


@dataclass
class SelfRemoved:
    """We are out of the room: ``codes`` says why (333 technical, 307 kick, 301 ban…)."""

    codes: set[str] = field(default_factory=set)
    error: str = ""


@dataclass
class PingResult:
    iq_id: str
    joined: bool
    condition: str = ""


@dataclass
class MessageError:
    msg_id: str
    condition: str


@dataclass
class PingRequest:
    """Someone pinged us (XEP-0199): answer it."""

    iq: etree._Element


RoomEvent = (
    RoomMessage
    | OccupantJoined
    | OccupantLeft
    | SelfJoined
    | SelfRemoved
    | PingResult
    | MessageError
    | PingRequest
)

# XEP-0410 §3: these errors mean "you are still joined" (the occupant just does not
# answer pings); everything else (not-acceptable, item-not-found, timeouts) means rejoin.
_STILL_JOINED = {"service-unavailable", "feature-not-implemented"}


def _error_condition(stanza: etree._Element) -> str:
    err = _child(stanza, "error")
    if err is None:
        return ""
    for c in err:
        if etree.QName(c).namespace == STANZAS and _local(c) != "text":
            return _local(c)
    return ""


def classify(
    stanza: etree._Element, room_jid: str, own_nick: str, pings: set[str]
) -> RoomEvent | None:
    """What this stanza means for the bridge; None for anything irrelevant.

    ``pings`` holds the ids of our outstanding self-pings (answers to others are ignored).
    """
    kind = _local(stanza)
    sender = stanza.get("from") or ""
    bare, _, nick = sender.partition("/")
    stype = stanza.get("type") or ""
    if kind == "iq":
        iq_id = stanza.get("id") or ""
        if stype in ("result", "error") and iq_id in pings:
            cond = _error_condition(stanza) if stype == "error" else ""
            joined = stype == "result" or cond in _STILL_JOINED
            return PingResult(iq_id, joined, cond)
        if stype == "get" and _child(stanza, "ping", PING) is not None:
            return PingRequest(stanza)
        return None
    if bare.casefold() != room_jid.casefold():
        return None
    if kind == "message":
        if stype == "error":
            return MessageError(stanza.get("id") or "", _error_condition(stanza))
        if stype != "groupchat" or not nick:
            return None
        body_el = _child(stanza, "body")
        if body_el is None or _child(stanza, "subject") is not None:
            return None
        retraction = _child(stanza, "retract", RETRACT), _child(stanza, "apply-to", FASTEN)
        if retraction != (None, None):
            # XEP-0424/0425: a retraction's body is a fallback, no chat line; IRC cannot
            # take back what it has shown, so the bridge relays nothing
            return None
        stanza_id = None
        for c in stanza:
            if _local(c) == "stanza-id" and etree.QName(c).namespace == SID:
                if (c.get("by") or "").casefold() == room_jid.casefold():
                    stanza_id = c.get("id")
        delay = _child(stanza, "delay", DELAY)
        stamp = parse_stamp(delay.get("stamp") or "") if delay is not None else None
        return RoomMessage(nick, body_el.text or "", stanza_id, stamp, stanza.get("id"))
    if kind == "presence" and nick:
        x = _child(stanza, "x", MUC_USER)
        codes = (
            {s.get("code") or "" for s in x if _local(s) == "status"} if x is not None else set()
        )
        mine = "110" in codes or nick == own_nick
        if stype == "error":
            return SelfRemoved(set(), _error_condition(stanza) or "error") if mine else None
        if stype == "unavailable":
            if mine and "303" not in codes:
                return SelfRemoved(codes)
            return None if "303" in codes else OccupantLeft(nick)
        if stype == "":
            return SelfJoined(nick) if mine else OccupantJoined(nick)
    return None
