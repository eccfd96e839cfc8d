"""Messages to a room (XEP-0045 §7.4-§7.5, §7.8.2, §8.1): groupchat, subject, private
messages and mediated invitations; voice requests go on to :mod:`.voice`.

The groupchat path is the hot one: the stanza the router handed over is mutated in place,
serialised once without ``to``, and each occupant's resource gets ``head + to + tail``.
"""

from __future__ import annotations

from datetime import datetime

from lxml import etree

from xmppd.jid import JID, JIDError
from xmppd.muc import moderation, presence, voice
from xmppd.muc import roles as R
from xmppd.muc.core import RoomCore
from xmppd.muc.history import HistoryEntry
from xmppd.muc.occupant import Occupant
from xmppd.muc.out import Out
from xmppd.muc.stanzas import (
    BODY,
    MESSAGE,
    MUC_USER,
    OCC_ID,
    OCCUPANT_ID,
    SID,
    STABLE_ID,
    STANZA_ID,
    STRIPPED,
    SUBJECT,
    USER_X,
    el,
    nick_key_or_none,
    request_form,
    sub,
)
from xmppd.muc.wire import Recipient, Template, recipient
from xmppd.xml.errors import StanzaError

#: disco#info features: stanza-ids (XEP-0359), ids kept as sent, occupant-ids (XEP-0421).
FEATURES = (SID, STABLE_ID, OCCUPANT_ID)


def handle(
    room: RoomCore, stanza: etree._Element, sender: JID, nick: str | None, now: datetime
) -> Out:
    """A message to the room (groupchat, invitation, voice form) or to an occupant."""
    out = Out()
    rcpt = recipient(sender)
    kind = stanza.get("type") or "normal"
    try:
        if kind == "error":
            occ = room.by_real.get(rcpt.full)
            if occ is not None and nick is None:
                return presence.remove_session(room, rcpt.full)
            return out
        if nick is not None:
            _private(room, out, stanza, rcpt, nick)
        elif kind == "groupchat":
            _groupchat(room, out, stanza, rcpt, now)
        elif kind == "normal" and stanza.find(USER_X) is not None:
            _invite(room, out, stanza, rcpt, now)
        elif kind == "normal" and (form := request_form(stanza)) is not None:
            voice.form(room, out, form, rcpt, now)
        else:
            raise StanzaError(
                "bad-request", "only groupchat messages can be sent to the room itself"
            )
    except StanzaError as err:
        room.error(out, stanza, rcpt, err)
    return out


def _groupchat(
    room: RoomCore, out: Out, stanza: etree._Element, rcpt: Recipient, now: datetime
) -> None:
    occ = room.occupant_of(rcpt)
    if occ.role == R.VISITOR:
        raise StanzaError("forbidden", "you do not have voice in this room")
    if not room.flood.take(occ.bare, now.timestamp()):
        raise StanzaError("resource-constraint", "you are sending messages too fast")
    body = stanza.find(BODY)
    subject = stanza.find(SUBJECT)
    if subject is not None and body is None:
        _set_subject(room, out, occ, subject.text or "", stanza.get("id"))
        return
    if room.ctx.config.moderation and stanza.find(moderation.RETRACT_EL) is not None:
        moderation.own(room, out, stanza, occ, rcpt, now)  # XEP-0424: checked, then relayed
        return
    # The router handed the stanza over: mutate it rather than copy it.
    room.relay_groupchat(out, stanza, occ, now, keep=body is not None)


def _set_subject(
    room: RoomCore, out: Out, occ: Occupant, text: str, message_id: str | None
) -> None:
    """§8.1: moderators, or everyone with voice when the room allows it."""
    allowed = occ.role == R.MODERATOR or (
        room.settings.change_subject and occ.role == R.PARTICIPANT
    )
    if not allowed:
        raise StanzaError("forbidden", "you may not change the subject of this room")
    room.show_subject(out, text, occ.nick, message_id, occ.occupant_id)


def _private(room: RoomCore, out: Out, stanza: etree._Element, rcpt: Recipient, nick: str) -> None:
    """§7.5: a private message to one occupant, from the sender's occupant JID."""
    if stanza.get("type") == "groupchat":
        raise StanzaError("bad-request", "private messages cannot be of type groupchat")
    occ = room.occupant_of(rcpt)
    pm = room.settings.allow_pm
    if (
        pm == "none"
        or (pm == "moderators" and occ.role != R.MODERATOR)
        or (pm == "participants" and occ.role == R.VISITOR)
    ):
        raise StanzaError("forbidden", "private messages are not allowed in this room")
    target = room.occupants.get(nick_key_or_none(nick) or "")
    if target is None:
        raise StanzaError("item-not-found", "no occupant has that nickname")
    stanza.attrib.pop("to", None)
    stanza.set("from", room.occupant_jid(occ.nick))
    for child in list(stanza):
        if child.tag in STRIPPED:
            stanza.remove(child)
    sub(stanza, USER_X, MUC_USER)
    sub(stanza, OCC_ID, OCCUPANT_ID, id=occ.occupant_id)
    out.private.append((stanza, list(target.sessions.values())))


def _invite(
    room: RoomCore, out: Out, stanza: etree._Element, rcpt: Recipient, now: datetime
) -> None:
    """§7.8.2 mediated invitations: the room forwards them from itself.

    Each invitation costs one of the inviter's ``invites_per_minute`` tokens (per bare
    JID, so leaving and rejoining does not refill them); a message with more than are
    left is refused whole.
    """
    occ = room.occupant_of(rcpt)
    x = stanza.find(USER_X)
    invites = x.findall("{%s}invite" % MUC_USER) if x is not None else []
    if not invites:
        raise StanzaError("bad-request", "only groupchat messages can be sent to the room")
    if room.settings.members_only and R.aff_rank(room.affiliation(occ.bare)) < R.aff_rank(R.ADMIN):
        raise StanzaError("forbidden", "only admins may invite to this room")
    targets: list[tuple[JID, etree._Element]] = []
    for invite in invites:
        try:
            targets.append((JID.parse(invite.get("to") or ""), invite))
        except JIDError:
            raise StanzaError("jid-malformed", "bad invitee address") from None
    if not room.invites.take(occ.bare, now.timestamp(), cost=len(targets)):
        raise StanzaError("resource-constraint", "you are sending invitations too fast")
    for to, invite in targets:
        msg = el(MESSAGE)
        msg.set("from", room.jid_str)
        ux = sub(msg, USER_X, MUC_USER)
        inv = sub(ux, "{%s}invite" % MUC_USER)
        anyone = room.settings.whois == "anyone"
        inv.set("from", occ.bare if anyone else room.occupant_jid(occ.nick))
        reason = invite.find("{%s}reason" % MUC_USER)
        if reason is not None:
            sub(inv, "{%s}reason" % MUC_USER).text = reason.text
        msg.set("to", str(to))
        out.routed.append(msg)


def say(room: RoomCore, text: str, now: datetime) -> Out:
    """A groupchat message from the room's own JID (e.g. a maintenance notice).

    It gets a stanza-id and goes into the history and the archive like an occupant's
    message, so those who join in the next minutes see the notice too.
    """
    out = Out()
    msg = el(MESSAGE, type="groupchat")
    msg.set("from", room.jid_str)
    msg.set("id", room.ctx.new_id())
    sub(msg, BODY).text = text
    stanza_id = room.ctx.new_id()
    sub(msg, STANZA_ID, SID, id=stanza_id, by=room.jid_str)
    tpl = Template(msg)
    entry = HistoryEntry(stanza_id, now, "", room.jid_str, tpl.head + tpl.tail)
    room.history.append(entry)
    out.archive.append(entry)
    out.sends.extend((r, tpl.to(r)) for r in room.recipients())
    return out
