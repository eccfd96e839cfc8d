"""Occupant presence (XEP-0045 §7.1-§7.6, §7.14): entering, updates, nick changes, leaving.

Plain functions over a :class:`~xmppd.muc.core.RoomCore`; each writes what to send into
the :class:`~xmppd.muc.out.Out` it is given and raises :class:`StanzaError` for what the
sender did wrong (the caller answers it).
"""

from __future__ import annotations

import hmac
from datetime import datetime

from lxml import etree

from xmppd.jid import JID
from xmppd.muc import roles as R
from xmppd.muc.core import RoomCore
from xmppd.muc.history import HistoryRequest
from xmppd.muc.occupant import Occupant
from xmppd.muc.out import Out
from xmppd.muc.stanzas import (
    HISTORY,
    MUC,
    MUC_USER,
    MUC_X,
    PASSWORD,
    PRESENCE,
    USER_X,
    el,
    nick_key_or_none,
    payload,
    sub,
)
from xmppd.muc.wire import Recipient, Template, recipient
from xmppd.xml.errors import StanzaError

#: disco#info features this module provides.
FEATURES = (MUC,)


def handle(
    room: RoomCore, stanza: etree._Element, sender: JID, nick: str | None, now: datetime
) -> Out:
    """A presence to the room or an occupant JID (``nick``): join, update, change, leave."""
    out = Out()
    rcpt = recipient(sender)
    kind = stanza.get("type")
    occ = room.by_real.get(rcpt.full)
    try:
        if kind in ("unavailable", "error"):
            if occ is not None:
                leave(room, out, occ, rcpt, stanza if kind == "unavailable" else None)
            return out
        if kind is not None:
            return out  # subscriptions and probes mean nothing to a room
        if occ is None:
            if nick is None:
                raise StanzaError("jid-malformed", "join a room at room@service/nickname")
            if stanza.find(MUC_X) is None:
                _not_in_room(room, out, nick, rcpt)
                return out
            join(room, out, stanza, rcpt, nick, now)
        elif nick is None or nick_key_or_none(nick) == occ.key:
            if stanza.find(MUC_X) is not None:
                _resync(room, out, stanza, occ, rcpt, now)
            else:
                _update(room, out, stanza, occ, rcpt)
        else:
            _change_nick(room, out, stanza, occ, rcpt, nick)
    except StanzaError as err:
        room.error(out, stanza, rcpt, err)
    return out


def join_as_creator(
    room: RoomCore, stanza: etree._Element, sender: JID, nick: str, now: datetime
) -> Out:
    """The first presence into a room a user just created (§10.1: status 201)."""
    out = Out()
    rcpt = recipient(sender)
    try:
        join(room, out, stanza, rcpt, nick, now, created=True)
    except StanzaError as err:
        room.error(out, stanza, rcpt, err)
        out.gone = True
    return out


def remove_session(room: RoomCore, full: str, code: str = "333") -> Out:
    """The service lost this resource (no session, send queue cut off): §7.14 333."""
    out = Out()
    occ = room.by_real.get(full)
    if occ is not None:
        rcpt = occ.sessions[full]
        leave(room, out, occ, rcpt, None, codes=[code])
        out.sends = [(r, data) for r, data in out.sends if r.full != full]
    return out


def _not_in_room(room: RoomCore, out: Out, nick: str, rcpt: Recipient) -> None:
    """§7.2.1 (1.32+): presence without <x/> from a non-occupant is answered by a kick."""
    p = el(PRESENCE, type="unavailable")
    p.set("from", room.occupant_jid(nick))
    x = sub(p, USER_X, MUC_USER)
    item = sub(x, "{%s}item" % MUC_USER, affiliation="none", role="none")
    sub(item, "{%s}reason" % MUC_USER).text = "You are not in the room."
    sub(x, "{%s}status" % MUC_USER, code="110")
    sub(x, "{%s}status" % MUC_USER, code="307")
    out.send(rcpt, p)


def _admission_refusal(room: RoomCore, stanza: etree._Element, bare: str, aff: str) -> None:
    """§7.2.4-§7.2.7: locked, banned, members-only and password-protected rooms."""
    settings = room.settings
    if settings.locked and aff != R.OWNER:
        raise StanzaError("item-not-found", "the room is still being configured")
    if aff == R.OUTCAST:
        raise StanzaError("forbidden", "you are banned from this room")
    if settings.members_only and R.aff_rank(aff) < R.aff_rank(R.MEMBER):
        raise StanzaError("registration-required", "this room is for members only")
    if settings.password and aff != R.OWNER and bare not in room.ctx.site_admins:
        given = stanza.find(MUC_X).findtext(PASSWORD)  # type: ignore[union-attr]
        if not hmac.compare_digest(
            (given or "").encode("utf-8"), settings.password.encode("utf-8")
        ):
            raise StanzaError("not-authorized", "this room needs a password")


def join(
    room: RoomCore,
    out: Out,
    stanza: etree._Element,
    rcpt: Recipient,
    nick: str,
    now: datetime,
    created: bool = False,
) -> None:
    """§7.2: enter under ``nick`` (or add a resource to the sender's own occupant)."""
    bare = rcpt.bare
    aff = room.affiliation(bare)
    req = HistoryRequest.parse(stanza.find(MUC_X).find(HISTORY))  # type: ignore[union-attr]
    _admission_refusal(room, stanza, bare, aff)
    key = room.check_nick(nick, bare)
    occ = room.occupants.get(key)
    if occ is None:
        if len(room.occupants) >= room.settings.max_occupants and aff not in (R.OWNER, R.ADMIN):
            raise StanzaError("service-unavailable", "the room is full")
        occ = Occupant(
            nick=nick,
            key=key,
            bare=bare,
            role=R.default_role(aff, room.settings.moderated),
            occupant_id=room.occupant_id(bare),
        )
        fresh = True
    else:
        fresh = False  # another resource of the same bare JID joins the same nick
    occ.sessions[rcpt.full] = rcpt
    occ.payload = payload(stanza)
    occ.primary = rcpt.full
    occ.views.clear()
    room.by_real[rcpt.full] = occ
    if fresh:
        room.occupants[key] = occ
    room.changed()
    codes = []
    if room.settings.whois == "anyone":
        codes.append("100")
    if created or room.settings.locked:
        codes.append("201")
    _sync(room, out, occ, rcpt, req, now, codes)
    if fresh:
        # Everyone else learns of the newcomer after it has its own view (§7.2.3).
        room.broadcast_presence(out, occ, self_sessions=())


def _sync(
    room: RoomCore,
    out: Out,
    occ: Occupant,
    rcpt: Recipient,
    req: HistoryRequest,
    now: datetime,
    codes: list[str],
) -> None:
    """Occupants' presence, own presence (110), history, subject: §7.2.3-§7.2.16."""
    sends = out.sends
    sees = room.sees_jid(occ)
    for other in room.occupants.values():
        if other is not occ:
            sends.append((rcpt, room.view(other, sees).to(rcpt)))
    own = room.presence_el(occ, with_jid=True, codes=[*codes, "110"])
    sends.append((rcpt, Template(own).to(rcpt)))
    default = room.ctx.config.history_default
    for entry in room.history.select(req, default, now, room.jid_str):
        head, tail, _ = entry.join_copy(room.jid_str)
        sends.append((rcpt, b"".join((head, rcpt.to_attr, tail))))
    sends.append((rcpt, room.subject_tpl().to(rcpt)))


def _resync(
    room: RoomCore,
    out: Out,
    stanza: etree._Element,
    occ: Occupant,
    rcpt: Recipient,
    now: datetime,
) -> None:
    """A join from an already-joined full JID: answer exactly like a fresh join."""
    req = HistoryRequest.parse(stanza.find(MUC_X).find(HISTORY))  # type: ignore[union-attr]
    occ.payload = payload(stanza)
    occ.primary = rcpt.full
    occ.views.clear()
    codes = ["100"] if room.settings.whois == "anyone" else []
    _sync(room, out, occ, rcpt, req, now, codes)


def _update(
    room: RoomCore, out: Out, stanza: etree._Element, occ: Occupant, rcpt: Recipient
) -> None:
    """§7.7: new presence (status, show) from an occupant, shown to everyone."""
    occ.payload = payload(stanza)
    occ.primary = rcpt.full
    occ.views.clear()
    room.broadcast_presence(out, occ)


def leave(
    room: RoomCore,
    out: Out,
    occ: Occupant,
    rcpt: Recipient,
    stanza: etree._Element | None,
    **kw: object,
) -> None:
    """§7.14: one resource leaves; the occupant leaves with its last resource."""
    shown = [] if stanza is None else payload(stanza)
    room.by_real.pop(rcpt.full, None)
    occ.sessions.pop(rcpt.full, None)
    room.changed()
    if occ.sessions:
        # Other resources keep the nick: only this one is told it left.
        if occ.primary == rcpt.full:
            occ.primary = next(iter(occ.sessions))
            occ.views.clear()
        p = room.presence_el(occ, type_="unavailable", with_jid=True, codes=["110"], payload=shown)
        out.send(rcpt, p)
        return
    room.occupants.pop(occ.key, None)
    room.broadcast_presence(
        out, occ, type_="unavailable", self_sessions=[rcpt], payload=shown, **kw
    )
    if not room.occupants and not room.settings.persistent:
        out.gone = True


def _change_nick(
    room: RoomCore,
    out: Out,
    stanza: etree._Element,
    occ: Occupant,
    rcpt: Recipient,
    nick: str,
) -> None:
    """§7.6: unavailable with 303 and the new nick, then available under the new nick."""
    key = room.check_nick(nick, occ.bare)
    if key in room.occupants and room.occupants[key] is not occ:
        raise StanzaError("conflict", "that nickname is already in use in this room")
    if len(occ.sessions) > 1:
        raise StanzaError(
            "not-acceptable", "other resources share this nickname: they must leave first"
        )
    room.broadcast_presence(
        out, occ, type_="unavailable", codes=["303"], item_nick=nick, payload=[]
    )
    del room.occupants[occ.key]
    occ.nick, occ.key = nick, key
    occ.payload = payload(stanza)
    occ.views.clear()
    room.occupants[key] = occ
    room.changed()
    room.broadcast_presence(out, occ)
