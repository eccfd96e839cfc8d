"""In-band registration with a room (XEP-0045 §7.10) with jabber:iq:register.

A registered nick is protected in the room (:meth:`RoomCore.check_nick`); the change is
made in the shared nick registry at once and persisted by the service (``nick_changes``).

Registering also makes a user with no affiliation a **member**, as §7.10 says: shown at
once to the user's occupants in the room (and so to the others) and in every later
presence, listed in the member list, persisted like any affiliation. Such a membership is
remembered as given by registration (``RoomCore.registered_members``, the
``by_registration`` column), and unregistering (``<remove/>``) takes back exactly that
one: a user who already had an affiliation keeps it and gains none, and once an admin or
owner changes the affiliation (even to ``member`` again) it is theirs, which unregistering
leaves alone. A membership whose registration is gone another way (an administrator's
``unregister-nick``, or released for a service-wide reservation of the name) goes with
it (:func:`drop_lapsed_memberships`). In a members-only room registration reserves the
nick but gives no membership: entry there stays an admin's decision. (Membership gives
voice in a moderated room, §5.1, as it would when an admin grants it.)
"""

from __future__ import annotations

from lxml import etree

from xmppd.muc import forms
from xmppd.muc import roles as R
from xmppd.muc.admin import apply_affiliation
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
        if _membership_from_registration(room, rcpt.bare):
            apply_affiliation(room, out, rcpt.bare, R.NONE, None, None)
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
    if room.affiliation(rcpt.bare) == R.NONE and not room.settings.members_only:
        apply_affiliation(room, out, rcpt.bare, R.MEMBER, None, None)
        room.registered_members.add(rcpt.bare)
    out.send(rcpt, reply)


def _membership_from_registration(room: RoomCore, bare: str) -> bool:
    """Whether ``bare`` is a member only because it registered (see the module doc)."""
    return bare in room.registered_members and room.affiliations.get(bare) == R.MEMBER


def drop_lapsed_memberships(room: RoomCore) -> Out:
    """Take back the memberships registration gave whose registration is gone (not by
    ``<remove/>``: by the CLI, or released for a service-wide reservation)."""
    out = Out()
    for bare in sorted(room.registered_members):
        if room.ctx.nicks.room_registration(room.name, bare) is not None:
            continue
        if _membership_from_registration(room, bare):
            apply_affiliation(room, out, bare, R.NONE, None, None)
        room.registered_members.discard(bare)
    return out
