"""Voice requests (XEP-0045 §7.13) and their approval by a moderator (§8.6).

A visitor submits the muc#request form to the room; every moderator gets the approval
form; a moderator's answer with ``muc#request_allow`` true makes the visitor a participant.
At most one request per visitor per :data:`~xmppd.muc.core.VOICE_REQUEST_INTERVAL`.
"""

from __future__ import annotations

from datetime import datetime

from lxml import etree

from xmppd.muc import admin, forms
from xmppd.muc import roles as R
from xmppd.muc.core import RoomCore
from xmppd.muc.occupant import Occupant
from xmppd.muc.out import Out
from xmppd.muc.stanzas import MESSAGE, REQUEST, el, nick_key_or_none, sub
from xmppd.muc.wire import Recipient, Template
from xmppd.xml.errors import StanzaError

#: disco#info features this module provides.
FEATURES = (REQUEST,)


def form(
    room: RoomCore, out: Out, submitted: etree._Element, rcpt: Recipient, now: datetime
) -> None:
    """§7.13 a visitor asks for voice; §8.6 a moderator answers the approval form."""
    occ = room.occupant_of(rcpt)
    values = forms.form_values(submitted)
    if occ.role == R.MODERATOR and forms.first(values, "muc#request_allow") is not None:
        _decision(room, out, occ, values)
        return
    if forms.first(values, "muc#role") not in (None, R.PARTICIPANT):
        raise StanzaError("bad-request", "only voice (role participant) can be requested")
    if occ.role != R.VISITOR:
        raise StanzaError("not-acceptable", "you already have voice in this room")
    moderators = [o for o in room.occupants.values() if o.role == R.MODERATOR]
    if not moderators:
        raise StanzaError("service-unavailable", "no moderator is present to grant voice")
    if not room.voice_requests.take(occ.bare, now.timestamp()):
        raise StanzaError("resource-constraint", "your voice request is already pending")
    msg = el(MESSAGE)
    msg.set("from", room.jid_str)
    f = forms.Form("form", REQUEST, title="Voice request")
    sub(f.el, "{%s}instructions" % forms.DATA).text = (
        'To approve this request for voice, select the "Grant voice to this person?" '
        "checkbox and click OK. To skip this request, click the cancel button."
    )
    f.add("muc#role", "list-single", [R.PARTICIPANT], "Requested role",
          options=[(R.PARTICIPANT, "Participant")])  # fmt: skip
    f.add("muc#jid", "jid-single", [occ.primary], "User ID")
    f.add("muc#roomnick", "text-single", [occ.nick], "Room Nickname")
    f.add("muc#request_allow", "boolean", ["false"], "Grant voice to this person?")
    msg.append(f.el)
    tpl = Template(msg)
    out.sends.extend((r, tpl.to(r)) for mod in moderators for r in mod.sessions.values())


def _decision(room: RoomCore, out: Out, moderator: Occupant, values: dict[str, list[str]]) -> None:
    try:
        allow = forms.parse_bool(forms.first(values, "muc#request_allow") or "")
    except ValueError:
        raise StanzaError("bad-request", "muc#request_allow must be a boolean") from None
    if not allow:
        return
    nick = forms.first(values, "muc#roomnick") or ""
    target = room.occupants.get(nick_key_or_none(nick) or "")
    if target is None:
        raise StanzaError("item-not-found", "no occupant has that nickname")
    if target.role == R.VISITOR:
        room.voice_requests.reset(target.bare)
        admin.apply_role(room, out, target, R.PARTICIPANT, moderator.nick, None)
