"""Retracting room messages: by a moderator (XEP-0425) or by their author (XEP-0424).

A moderator sends ``<moderate id='stanza-id' xmlns='urn:xmpp:message-moderate:1'>`` with a
``<retract xmlns='urn:xmpp:message-retract:1'/>`` (XEP-0425 0.3 §3) — or the 0.2 form,
``<apply-to xmlns='urn:xmpp:fasten:0' id=…><moderate xmlns='…:moderate:0'><retract
xmlns='…:retract:0'/>`` that older clients still send; the answer is an iq result either
way. The room then broadcasts one announcement, from its own JID, in both forms (the
``retract:1`` element with ``<moderated by=… >`` and the moderator's XEP-0421 occupant-id,
and the 0.2 ``apply-to``), so old and new clients both act on it (§3.1).

An author sends a groupchat message with ``<retract id=… xmlns='urn:xmpp:message-retract:1'/>``
naming its own earlier message by the room's stanza-id (XEP-0424 §6.1; its origin-id is
also accepted for messages still in the room's memory). Authorship is the real bare JID
the room recorded with the message (§6: never the nick, which can change hands). Someone
else's message is refused with ``forbidden``, an unknown id with ``item-not-found`` (as
errors to the sender: the retraction is not relayed). A valid retraction is relayed and
archived like any message (§6: the archive MUST keep it).

Either way the retracted message becomes a tombstone (XEP-0424 §5, XEP-0425 §4) in the
room's history ring and, through ``Out.retractions``, in the archive: the original
``<message/>`` keeps its attributes, its stanza-id and its author's occupant-id, and
nothing else (no body, no payload) — only ``<retracted/>`` with the time, the
announcement's id and, for a moderation, who moderated it and why. A message older than
the ring is looked up in the archive (``Out.lookup``: the service reads it off the
event loop and calls :func:`finish`).

Limits: a moderation reason is at most ``muc.retraction_reason_max`` characters
(longer is ``bad-request``, nothing changes).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from xmppd.muc import roles as R
from xmppd.muc.core import RoomCore
from xmppd.muc.history import HistoryEntry, format_stamp
from xmppd.muc.occupant import Occupant
from xmppd.muc.out import Out, RetractRequest
from xmppd.muc.stanzas import MESSAGE, OCC_ID, OCCUPANT_ID, SID, STANZA_ID, el, result_iq, sub
from xmppd.muc.wire import Recipient, Template
from xmppd.xml.errors import StanzaError

MODERATE = "urn:xmpp:message-moderate:1"
MODERATE0 = "urn:xmpp:message-moderate:0"
RETRACT = "urn:xmpp:message-retract:1"
RETRACT0 = "urn:xmpp:message-retract:0"
FASTEN = "urn:xmpp:fasten:0"
TOMBSTONE = RETRACT + "#tombstone"

MODERATE_Q = "{%s}moderate" % MODERATE
APPLY_TO_Q = "{%s}apply-to" % FASTEN
RETRACT_EL = "{%s}retract" % RETRACT
RETRACTED_EL = "{%s}retracted" % RETRACT

#: The longest stanza-id the archive stores (``muc_messages.stanza_id``).
STANZA_ID_MAX = 64

#: disco#info features of a room with moderation on (XEP-0425 §2, XEP-0424 §2 and §5).
FEATURES = (MODERATE, MODERATE0, RETRACT, TOMBSTONE)


@dataclass(slots=True)
class Moderation:
    """Who moderated (occupant JID and XEP-0421 id), why, and which form was asked."""

    by: str
    occupant_id: str
    reason: str | None
    legacy: bool
    #: the moderator's real bare JID (for the service's log only, never sent)
    actor: str = ""


# ------------------------------------------------------------------ recognising
def is_tombstone(xml: bytes | str) -> bool:
    """Whether an archived/ring message was retracted already."""
    data = xml.encode("utf-8") if isinstance(xml, str) else xml
    if b"retracted" not in data:
        return False
    return etree.fromstring(data).find(RETRACTED_EL) is not None


def is_retraction(msg: etree._Element) -> bool:
    """A retraction or moderation announcement (XEP-0424/0425), not a chat line: the
    forum's feed, the widget and the IRC bridge never show it as text."""
    return msg.find(RETRACT_EL) is not None or msg.find(APPLY_TO_Q) is not None


# ---------------------------------------------------------------- moderator's iq
def query(
    room: RoomCore,
    out: Out,
    stanza: etree._Element,
    rcpt: Recipient,
    payload: etree._Element,
    kind: str | None,
    now: datetime,
) -> None:
    """XEP-0425 §3: the moderate iq (both forms); only moderators (else ``forbidden``)."""
    if kind != "set":
        raise StanzaError("bad-request", "moderation is an iq of type set")
    legacy = payload.tag == APPLY_TO_Q
    target = (payload.get("id") or "").strip()
    moderate = payload.find("{%s}moderate" % MODERATE0) if legacy else payload
    if not target or moderate is None:
        raise StanzaError("bad-request", "name the message by its stanza-id")
    retract_ns = RETRACT0 if legacy else RETRACT
    if moderate.find("{%s}retract" % retract_ns) is None:
        raise StanzaError("feature-not-implemented", "only retraction is supported")
    occ = room.by_real.get(rcpt.full)
    if occ is None or occ.role != R.MODERATOR:
        raise StanzaError("forbidden", "only moderators may moderate messages")
    reason_el = moderate.find("{%s}reason" % (MODERATE0 if legacy else MODERATE))
    reason = (reason_el.text or "").strip() or None if reason_el is not None else None
    limit = room.ctx.config.retraction_reason_max
    if reason is not None and len(reason) > limit:
        raise StanzaError("bad-request", f"the reason is longer than {limit} characters")
    mod = Moderation(room.occupant_jid(occ.nick), occ.occupant_id, reason, legacy, occ.bare)
    request = RetractRequest(room.name, target, rcpt, None, stanza, mod)
    _find(room, out, request, room.history.find(target), now)


# ------------------------------------------------------------- author's message
def own(
    room: RoomCore,
    out: Out,
    stanza: etree._Element,
    occ: Occupant,
    rcpt: Recipient,
    now: datetime,
) -> None:
    """XEP-0424 §4: ``occ`` retracts its own message (the stanza is held until checked)."""
    retract = stanza.find(RETRACT_EL)
    target = (retract.get("id") or "").strip() if retract is not None else ""
    if not target:
        raise StanzaError("bad-request", "a retraction names the message by its id")
    request = RetractRequest(room.name, target, rcpt, occ.bare, stanza, None)
    entry = room.history.find(target) or _by_origin_id(room, target, occ.bare)
    _find(room, out, request, entry, now)


def _find(
    room: RoomCore,
    out: Out,
    request: RetractRequest,
    entry: HistoryEntry | None,
    now: datetime,
) -> None:
    """Carry out at once on a message in memory; else ask the service to look in the
    archive (persistent rooms only: others keep nothing beyond the ring)."""
    if entry is not None:
        finish(room, request, entry, now, out=out)
    elif room.settings.persistent and len(request.target) <= STANZA_ID_MAX:
        out.lookup = request
    else:
        raise StanzaError("item-not-found", "no message with that id in this room")


def _by_origin_id(room: RoomCore, origin: str, bare: str) -> HistoryEntry | None:
    """XEP-0424 §6.1: the author's own origin-id (Converse.js names its messages so); only
    unique per author, so only the author's messages are searched."""
    for entry in reversed(room.history.entries):
        if entry.origin_id == origin and entry.sender == bare:
            return entry
    return None


# --------------------------------------------------------------------- applying
def finish(
    room: RoomCore,
    request: RetractRequest,
    found: HistoryEntry | None,
    now: datetime,
    *,
    out: Out | None = None,
) -> Out:
    """Check and carry out ``request`` on ``found`` (from the ring or the archive).

    Raises StanzaError when called inline (``out`` given); from the service (after an
    archive lookup) the error is answered in the returned Out.
    """
    inline = out is not None
    result = out if out is not None else Out()
    try:
        _carry_out(room, result, request, found, now)
    except StanzaError as err:
        if inline:
            raise
        room.error(result, request.stanza, request.rcpt, err)
    return result


def _carry_out(
    room: RoomCore,
    out: Out,
    request: RetractRequest,
    found: HistoryEntry | None,
    now: datetime,
) -> None:
    if found is None or found.sender == "" or is_tombstone(found.xml):
        raise StanzaError("item-not-found", "no message with that id in this room")
    original = etree.fromstring(found.xml)
    if is_retraction(original):
        raise StanzaError("item-not-found", "that message is itself a retraction")
    if request.author is not None and found.sender != request.author:
        raise StanzaError("forbidden", "only its author or a moderator may retract a message")
    if request.moderation is not None:
        announce_id = _announce(room, out, found.stanza_id, request.moderation, now)
        out.send(request.rcpt, result_iq(request.stanza))
    else:
        announce_id = _relay(room, out, request, now)
    stone = tombstone(original, room.jid_str, now, announce_id, request.moderation)
    entry = room.history.find(found.stanza_id)
    if entry is not None:
        room.history.replace(entry, stone)
    actor = request.moderation.actor if request.moderation is not None else found.sender
    out.retractions.append((found.stanza_id, stone, actor))


def _announce(room: RoomCore, out: Out, target: str, mod: Moderation, now: datetime) -> str:
    """XEP-0425 §3.1: one message from the room, in the 0.3 and the 0.2 form."""
    sid = room.ctx.new_id()
    msg = el(MESSAGE, type="groupchat", id=sid)
    msg.set("from", room.jid_str)
    retract = sub(msg, RETRACT_EL, RETRACT, id=target)
    moderated = sub(retract, "{%s}moderated" % MODERATE, MODERATE, by=mod.by)
    sub(moderated, OCC_ID, OCCUPANT_ID, id=mod.occupant_id)
    if mod.reason:
        sub(retract, "{%s}reason" % RETRACT).text = mod.reason
    apply_to = sub(msg, APPLY_TO_Q, FASTEN, id=target)
    old = sub(apply_to, "{%s}moderated" % MODERATE0, MODERATE0, by=mod.by)
    sub(old, "{%s}retract" % RETRACT0, RETRACT0)
    if mod.reason:
        sub(old, "{%s}reason" % MODERATE0).text = mod.reason
    sub(msg, STANZA_ID, SID, id=sid, by=room.jid_str)
    tpl = Template(msg)
    entry = HistoryEntry(sid, now, "", room.jid_str, tpl.head + tpl.tail)
    room.history.append(entry)
    out.archive.append(entry)
    out.sends.extend((r, tpl.to(r)) for r in room.recipients())
    return sid


def _relay(room: RoomCore, out: Out, request: RetractRequest, now: datetime) -> str:
    """XEP-0424 §4: the author's retraction goes to everyone (and the archive) as sent,
    stamped like any groupchat message. Returns the id the tombstone names: the
    retraction's own ``id`` attribute (§5), or its stanza-id when it came without one."""
    occ = room.by_real.get(request.rcpt.full)
    if occ is None:  # left while the archive was searched
        raise StanzaError("not-acceptable", "you are not an occupant of this room")
    stanza_id = room.relay_groupchat(out, request.stanza, occ, now, keep=True)
    return request.stanza.get("id") or stanza_id


def tombstone(
    original: etree._Element,
    room_jid: str,
    now: datetime,
    announce_id: str,
    mod: Moderation | None,
) -> bytes:
    """The message with only its stanza-id, author's occupant-id and ``<retracted/>``
    (XEP-0424 §5: ``id`` names the retraction message, ``stamp`` says when; XEP-0425 §4:
    ``<moderated/>`` inside it, and the 0.2 form beside it, for a moderation)."""
    keep = [
        child
        for child in original
        if (child.tag == STANZA_ID and child.get("by") == room_jid) or child.tag == OCC_ID
    ]
    for child in list(original):
        original.remove(child)
    original.text = None
    for child in keep:
        child.tail = None
        original.append(child)
    stamp = format_stamp(now)
    retracted = sub(original, RETRACTED_EL, RETRACT, stamp=stamp, id=announce_id)
    if mod is not None:
        moderated = sub(retracted, "{%s}moderated" % MODERATE, MODERATE, by=mod.by)
        sub(moderated, OCC_ID, OCCUPANT_ID, id=mod.occupant_id)
        if mod.reason:
            sub(retracted, "{%s}reason" % RETRACT).text = mod.reason
        # XEP-0425 0.2 tombstone, for the clients that only know it
        old = sub(original, "{%s}moderated" % MODERATE0, MODERATE0, by=mod.by)
        sub(old, "{%s}retracted" % RETRACT0, RETRACT0, stamp=stamp)
        if mod.reason:
            sub(old, "{%s}reason" % MODERATE0).text = mod.reason
    return etree.tostring(original)
