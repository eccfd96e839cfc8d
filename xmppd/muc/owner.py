"""Owner business (XEP-0045 §10): the configuration form, its announcement, destruction.

The settings fields come from the one table in :mod:`.roomconfig`; this module adds the
owner and admin lists to the form and turns a submission into affiliation changes and
the status codes occupants are shown (104; 172/173 when ``whois`` changed).
"""

from __future__ import annotations

from lxml import etree

from xmppd.jid import JID, JIDError
from xmppd.muc import forms, roomconfig
from xmppd.muc import roles as R
from xmppd.muc.core import RoomCore
from xmppd.muc.out import Out
from xmppd.muc.stanzas import MESSAGE, MUC_OWNER, MUC_USER, USER_X, el, result_iq, sub
from xmppd.muc.wire import Recipient, Template
from xmppd.xml.errors import StanzaError

#: The affiliation lists in the form: var -> the affiliation it lists.
_LISTS = (("muc#roomconfig_roomowners", R.OWNER, "Owners"),
          ("muc#roomconfig_roomadmins", R.ADMIN, "Admins"))  # fmt: skip


def query(
    room: RoomCore,
    out: Out,
    stanza: etree._Element,
    rcpt: Recipient,
    payload: etree._Element,
    kind: str | None,
) -> None:
    """A muc#owner get (the form) or set (a submitted or cancelled form, or <destroy/>)."""
    if room.affiliation(rcpt.bare) != R.OWNER:
        raise StanzaError("forbidden", "only owners may configure the room")
    if kind == "get":
        reply = result_iq(stanza)
        q = sub(reply, "{%s}query" % MUC_OWNER, MUC_OWNER)
        q.append(config_form(room))
        out.send(rcpt, reply)
        return
    destroy_el = payload.find("{%s}destroy" % MUC_OWNER)
    if destroy_el is not None:
        destroy(room, out, destroy_el)
        out.send(rcpt, result_iq(stanza))
        return
    form = forms.find_form(payload)
    if form is None:
        raise StanzaError("bad-request", "expected a data form or <destroy/>")
    if form.get("type") == "cancel":
        if room.settings.locked:
            destroy(room, out, None)
        out.send(rcpt, result_iq(stanza))
        return
    if form.get("type") != "submit":
        raise StanzaError("bad-request", "the form must be submitted")
    codes = apply_config(room, forms.form_values(form), out)
    out.send(rcpt, result_iq(stanza))
    announce_config(room, out, codes)


def config_form(room: RoomCore) -> etree._Element:
    """§10.2: the current settings and the owner and admin lists."""
    form = roomconfig.config_form(room.settings, f"Configuration of {room.jid_str}")
    for var, aff, label in _LISTS:
        jids = sorted(j for j, a in room.affiliations.items() if a == aff)
        form.add(var, "jid-multi", jids, label)
    return form.el


def apply_config(room: RoomCore, values: dict[str, list[str]], out: Out) -> list[str]:
    """Apply a submitted §10.2 form (unknown fields ignored); return status codes."""
    settings = room.settings
    ftype = forms.first(values, "FORM_TYPE")
    if ftype not in (None, forms.ROOMCONFIG):
        raise StanzaError("bad-request", "wrong FORM_TYPE")
    old_whois = settings.whois
    roomconfig.apply_form(settings, values, room.ctx.config.max_occupants)
    for var, aff, _ in _LISTS:
        for raw in values.get(var, ()):
            try:
                bare = str(JID.parse(raw).bare)
            except JIDError:
                raise StanzaError("jid-malformed", f"bad JID {raw!r}") from None
            if room.affiliations.get(bare) != aff:
                room.affiliations[bare] = aff
                room.registered_members.discard(bare)  # an owner's choice now
                room.affiliation_reasons.pop(bare, None)  # the form gives no reason
                out.affiliations.append((bare, aff))
    settings.locked = False
    for occ in room.occupants.values():
        occ.views.clear()
    out.save_room = True
    codes = ["104"]
    if old_whois != settings.whois:
        codes.append("172" if settings.whois == "anyone" else "173")
    return codes


def announce_config(room: RoomCore, out: Out, codes: list[str]) -> None:
    """§10.2.1: tell the occupants the configuration changed (104; 172/173 whois)."""
    if not codes:
        return
    msg = el(MESSAGE, type="groupchat")
    msg.set("from", room.jid_str)
    x = sub(msg, USER_X, MUC_USER)
    for code in codes:
        sub(x, "{%s}status" % MUC_USER, code=code)
    tpl = Template(msg)
    out.sends.extend((r, tpl.to(r)) for r in room.recipients())


def reconfigure(room: RoomCore, values: dict[str, list[str]]) -> Out:
    """The site changed this room's configuration (``[[muc.rooms]]`` on reload): the
    §10.2 form ``values`` applied as an owner's submission would be, and announced
    the same way; the occupants stay."""
    out = Out()
    announce_config(room, out, apply_config(room, values, out))
    return out


def destroy(room: RoomCore, out: Out, request: etree._Element | None) -> None:
    """§10.9: every occupant gets unavailable with <destroy/>; the room is gone."""
    for occ in list(room.occupants.values()):
        p = room.presence_el(occ, type_="unavailable", with_jid=False, destroyed=True, payload=[])
        x = p.find(USER_X)
        d = sub(x, "{%s}destroy" % MUC_USER)  # type: ignore[arg-type]
        if request is not None:
            if request.get("jid"):
                d.set("jid", request.get("jid"))
            reason = request.find("{%s}reason" % MUC_OWNER)
            if reason is not None and reason.text:
                sub(d, "{%s}reason" % MUC_USER).text = reason.text
        tpl = Template(p)
        out.sends.extend((r, tpl.to(r)) for r in occ.sessions.values())
    room.occupants.clear()
    room.by_real.clear()
    room.changed()
    out.gone = True


def destroy_as_service(room: RoomCore, reason: str | None = None) -> Out:
    """§10.9 destruction by the service: occupants see what an owner's destroy shows."""
    request = etree.Element("{%s}destroy" % MUC_OWNER)
    if reason:
        etree.SubElement(request, "{%s}reason" % MUC_OWNER).text = reason
    out = Out()
    destroy(room, out, request)
    return out
