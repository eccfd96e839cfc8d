"""The bot's side of XEP-0045 as pure functions: stanzas to send, stanzas received -> signals.

A component that wants to post into a room must be an occupant (XEP-0045 §7.2: "a user
MUST first become an occupant"), so webridge joins like a client: presence to
``room@service/Nick`` from its own JID, without history (a bot needs none).
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from xmppd.xml import ns

MUC = "http://jabber.org/protocol/muc"
MUC_USER = "http://jabber.org/protocol/muc#user"
_C = "{%s}" % ns.COMPONENT
PRESENCE, MESSAGE = _C + "presence", _C + "message"
STATUS = "{%s}x/{%s}status" % (MUC_USER, MUC_USER)


def join_presence(
    room: str, nick: str, sender: str, history: int = 0, seconds: int = 0
) -> etree._Element:
    """Join ``room`` as ``nick`` from ``sender``.

    ``history`` > 0 asks for up to that many recent messages (of the last ``seconds``, if
    given): after a reconnect the bot looks in them for its own unconfirmed messages, so
    none is posted twice or lost.
    """
    pres = etree.Element(
        PRESENCE, {"from": sender, "to": f"{room}/{nick}"}, nsmap={None: ns.COMPONENT}
    )
    x = etree.SubElement(pres, "{%s}x" % MUC, nsmap={None: MUC})
    if history > 0:
        hist = etree.SubElement(x, "{%s}history" % MUC, maxstanzas=str(history))
        if seconds > 0:
            hist.set("seconds", str(seconds))
    else:
        etree.SubElement(x, "{%s}history" % MUC, maxchars="0")
    return pres


def groupchat(room: str, sender: str, body: str, stanza_id: str) -> etree._Element:
    """One room message; ``stanza_id`` lets us recognise its reflection or its bounce."""
    msg = etree.Element(
        MESSAGE,
        {"from": sender, "to": room, "type": "groupchat", "id": stanza_id},
        nsmap={None: ns.COMPONENT},
    )
    etree.SubElement(msg, _C + "body").text = body
    return msg


@dataclass(frozen=True, slots=True)
class Joined:
    """The room sent our self-presence (status 110): we may post."""

    nick: str


@dataclass(frozen=True, slots=True)
class JoinFailed:
    """The join was refused (nick taken, not allowed, room missing…)."""

    condition: str


@dataclass(frozen=True, slots=True)
class Left:
    """We are no longer an occupant (kicked, banned, room shut down); status codes given."""

    codes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Reflected:
    """The room echoed one of our messages: it reached the room."""

    stanza_id: str


@dataclass(frozen=True, slots=True)
class Subject:
    """The room subject: during a join it ends the history (XEP-0045 §7.2.15)."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """The room bounced one of our messages."""

    stanza_id: str
    condition: str


Signal = Joined | JoinFailed | Left | Reflected | Subject | Rejected | None


def _bare(jid: str) -> str:
    return jid.split("/", 1)[0].lower()


def _condition(stanza: etree._Element) -> str:
    err = stanza.find(_C + "error")
    if err is None:
        return "undefined-condition"
    for child in err:
        if isinstance(child.tag, str) and child.tag.startswith("{%s}" % ns.STANZA_ERRORS):
            name = etree.QName(child).localname
            if name != "text":
                return name
    return "undefined-condition"


def classify(stanza: etree._Element, room: str, nick: str) -> Signal:
    """What a stanza from the server means for the bot (None: nothing of interest)."""
    sender = stanza.get("from") or ""
    if _bare(sender) != room.lower():
        return None
    resource = sender.split("/", 1)[1] if "/" in sender else ""
    kind = stanza.get("type")
    if stanza.tag == PRESENCE:
        if kind == "error":
            return JoinFailed(_condition(stanza))
        codes = tuple(s.get("code") or "" for s in stanza.iterfind(STATUS))
        if "110" not in codes:
            return None
        if kind == "unavailable":
            # 303 is a nick change, not a departure: the new presence follows.
            return None if "303" in codes else Left(codes)
        return Joined(resource or nick) if kind is None else None
    if stanza.tag == MESSAGE:
        stanza_id = stanza.get("id") or ""
        if kind == "error":
            return Rejected(stanza_id, _condition(stanza))
        if kind != "groupchat":
            return None
        if stanza.find(_C + "subject") is not None and stanza.find(_C + "body") is None:
            return Subject()
        if resource == nick and stanza_id:
            return Reflected(stanza_id)
    return None
