"""In-band nickname registration (XEP-0045 §7.10) with jabber:iq:register.

A registered nick is protected in the room (:meth:`RoomCore.check_nick`); the change is
made in the shared nick registry at once and persisted by the service (``nick_changes``).
"""

from __future__ import annotations

from lxml import etree

from xmppd.muc import forms
from xmppd.muc import roles as R
from xmppd.muc.core import RoomCore
from xmppd.muc.nicks import nick_key
from xmppd.muc.out import Out
from xmppd.muc.stanzas import REGISTER, result_iq, sub
from xmppd.muc.wire import Recipient
from xmppd.xml.errors import StanzaError

#: disco#info features this module provides.
FEATURES = (REGISTER,)


def query(
    room: RoomCore,
    out: Out,
    stanza: etree._Element,
    rcpt: Recipient,
    payload: etree._Element,
    kind: str | None,
) -> None:
    """The registration form (get), a registration or its removal (set)."""
    if room.affiliation(rcpt.bare) == R.OUTCAST:
        raise StanzaError("forbidden", "you are banned from this room")
    reply = result_iq(stanza)
    nicks = room.ctx.nicks
    mine = nicks.nick_of(room.name, rcpt.bare)
    if kind == "get":
        q = sub(reply, "{%s}query" % REGISTER, REGISTER)
        if mine is not None:
            sub(q, "{%s}registered" % REGISTER)
            sub(q, "{%s}username" % REGISTER).text = mine
        else:
            sub(q, "{%s}instructions" % REGISTER).text = "Choose your nickname in this room."
            f = forms.Form("form", forms.REGISTER, title="Nickname registration")
            f.add("muc#register_roomnick", "text-single", [], "Nickname")
            q.append(f.el)
        out.send(rcpt, reply)
        return
    if not room.ctx.config.allow_nick_registration:
        raise StanzaError("not-allowed", "nickname registration is disabled")
    if payload.find("{%s}remove" % REGISTER) is not None:
        if nicks.room_registration(room.name, rcpt.bare) is None:
            raise StanzaError("item-not-found", "you have no nickname registered here")
        nicks.remove_jid(room.name, rcpt.bare)
        out.nick_changes.append((room.name, rcpt.bare, None))
        out.send(rcpt, reply)
        return
    form = forms.find_form(payload)
    if form is None or form.get("type") != "submit":
        raise StanzaError("bad-request", "submit the registration form")
    values = forms.form_values(form)
    if forms.first(values, "FORM_TYPE") not in (None, forms.REGISTER):
        raise StanzaError("bad-request", "wrong FORM_TYPE")
    nick = forms.first(values, "muc#register_roomnick")
    if not nick:
        raise StanzaError("not-acceptable", "a nickname is required")
    key = room.check_nick(nick, rcpt.bare)
    if mine is not None and nick_key(mine) != key and room.ctx.config.enforce_registered_nick:
        raise StanzaError("not-acceptable", f"you already own the nickname {mine}")
    nicks.add(room.name, nick, rcpt.bare)
    out.nick_changes.append((room.name, rcpt.bare, nick))
    out.send(rcpt, reply)
