"""Moderation and administration (XEP-0045 §8-§9): roles, affiliations, kicks and bans.

The muc#admin query (lists and changes, all or nothing) and the state changes it makes,
which the service's administrator (``xmppd room-ban``) and voice approvals reuse.
An affiliation given with a ``<reason/>`` keeps it (at most :data:`roles.REASON_MAX`
characters: a longer one is ``bad-request``, nothing changes) and the lists show it (§9.2).
"""

from __future__ import annotations

from lxml import etree

from xmppd.jid import JID, JIDError
from xmppd.muc import roles as R
from xmppd.muc.core import RoomCore
from xmppd.muc.occupant import Occupant
from xmppd.muc.out import Out
from xmppd.muc.stanzas import MUC_ADMIN, nick_key_or_none, result_iq, sub
from xmppd.muc.wire import Recipient
from xmppd.xml.errors import StanzaError

#: One validated change of a muc#admin set: ("role", occupant, role, reason) or
#: ("aff", bare JID, affiliation, reason).
Change = tuple[str, object, str, str | None]


def query(
    room: RoomCore,
    out: Out,
    stanza: etree._Element,
    rcpt: Recipient,
    payload: etree._Element,
    kind: str | None,
) -> None:
    """A muc#admin get (§8.5, §9.5 lists) or set (role and affiliation changes)."""
    items = payload.findall("{%s}item" % MUC_ADMIN)
    if not items:
        raise StanzaError("bad-request", "no item")
    actor_aff = room.affiliation(rcpt.bare)
    actor = room.by_real.get(rcpt.full)
    if kind == "get":
        reply = result_iq(stanza)
        q = sub(reply, "{%s}query" % MUC_ADMIN, MUC_ADMIN)
        for item in items:
            _list(room, q, item, actor_aff, actor)
        out.send(rcpt, reply)
        return
    # Validate every item first: the change is all or nothing.
    plan = [_plan_item(room, item, actor_aff, actor) for item in items]
    owners = {j for j, a in room.affiliations.items() if a == R.OWNER}
    for what, target, value, _ in plan:
        if what == "aff" and value != R.OWNER:
            owners.discard(target)  # type: ignore[arg-type]
    if not owners and not room.ctx.site_admins and any(p[0] == "aff" for p in plan):
        raise StanzaError("conflict", "a room needs at least one owner")
    actor_nick = actor.nick if actor is not None else None
    for what, target, value, reason in plan:
        if what == "role":
            apply_role(room, out, target, value, actor_nick, reason)  # type: ignore[arg-type]
        else:
            apply_affiliation(room, out, target, value, actor_nick, reason)  # type: ignore[arg-type]
    out.send(rcpt, result_iq(stanza))


def _plan_item(
    room: RoomCore, item: etree._Element, actor_aff: str, actor: Occupant | None
) -> Change:
    """Check one item of a muc#admin set against §8-§9's rules."""
    reason_el = item.find("{%s}reason" % MUC_ADMIN)
    reason = reason_el.text if reason_el is not None else None
    role, aff = item.get("role"), item.get("affiliation")
    if aff is not None:
        reason = checked_reason(reason)
    if (role is None) == (aff is None):
        raise StanzaError("bad-request", "give either a role or an affiliation")
    if role is not None:
        if role not in R.ROLES:
            raise StanzaError("bad-request", f"unknown role {role}")
        target = room.occupants.get(nick_key_or_none(item.get("nick") or "") or "")
        if target is None:
            raise StanzaError("item-not-found", "no occupant has that nickname")
        if actor is None or actor.role != R.MODERATOR:
            # §8: a request from someone who is no moderator at all is forbidden; one a
            # moderator may not make (e.g. against a higher affiliation) is not-allowed
            raise StanzaError("forbidden", "only moderators may change roles")
        if not R.may_change_role(
            actor_aff, actor.role, room.affiliation(target.bare), target.role, role
        ):
            raise StanzaError("not-allowed", "you may not change that occupant's role")
        return ("role", target, role, reason)
    if aff not in R.AFFILIATIONS:
        raise StanzaError("bad-request", f"unknown affiliation {aff}")
    bare = _item_bare(room, item)
    if bare in room.ctx.site_admins:
        raise StanzaError("not-allowed", "site administrators always own the room")
    if actor_aff not in (R.OWNER, R.ADMIN):
        raise StanzaError("forbidden", "only admins and owners may change affiliations")  # §9
    if not R.may_change_affiliation(actor_aff, room.affiliation(bare), aff):  # type: ignore[arg-type]
        raise StanzaError("not-allowed", "you may not change that affiliation")
    return ("aff", bare, aff, reason)  # type: ignore[return-value]


def checked_reason(reason: str | None) -> str | None:
    """An affiliation's reason as kept (trimmed; None if blank), or ``bad-request``."""
    reason = (reason or "").strip() or None
    if reason is not None and len(reason) > R.REASON_MAX:
        raise StanzaError("bad-request", f"the reason is longer than {R.REASON_MAX} characters")
    return reason


def _item_bare(room: RoomCore, item: etree._Element) -> str:
    raw = item.get("jid")
    if raw is None and item.get("nick") is not None:
        target = room.occupants.get(nick_key_or_none(item.get("nick") or "") or "")
        if target is None:
            raise StanzaError("item-not-found", "no occupant has that nickname")
        return target.bare
    try:
        return str(JID.parse(raw or "").bare)
    except JIDError:
        raise StanzaError("jid-malformed", "bad JID in item") from None


def _list(
    room: RoomCore,
    q: etree._Element,
    item: etree._Element,
    actor_aff: str,
    actor: Occupant | None,
) -> None:
    role, aff = item.get("role"), item.get("affiliation")
    if aff is not None:
        if aff not in R.AFFILIATIONS or aff == R.NONE:
            raise StanzaError("bad-request", f"cannot list affiliation {aff}")
        if not R.may_list_affiliation(actor_aff, aff):
            raise StanzaError("forbidden", "only admins may see affiliation lists")
        jids = sorted(j for j, a in room.affiliations.items() if a == aff)
        if aff == R.OWNER:
            jids = sorted(set(jids) | room.ctx.site_admins)
        for jid in jids:
            listed = sub(q, "{%s}item" % MUC_ADMIN, affiliation=aff, jid=jid)
            reason = room.affiliation_reasons.get(jid)
            if reason:
                sub(listed, "{%s}reason" % MUC_ADMIN).text = reason
        return
    if role not in (R.MODERATOR, R.PARTICIPANT, R.VISITOR):
        raise StanzaError("bad-request", f"cannot list role {role}")
    if actor is None or actor.role != R.MODERATOR:
        raise StanzaError("forbidden", "only moderators may see role lists")
    for occ in room.occupants.values():
        if occ.role == role:
            sub(q, "{%s}item" % MUC_ADMIN, affiliation=room.affiliation(occ.bare),
                role=role, nick=occ.nick, jid=occ.primary)  # fmt: skip


def apply_role(
    room: RoomCore, out: Out, occ: Occupant, role: str, actor: str | None, reason: str | None
) -> None:
    """Give ``occ`` a new role and show it; role ``none`` is a kick (307)."""
    if role == R.NONE:
        evict(room, out, occ, "307", actor, reason)
        return
    occ.role = role
    occ.views.clear()
    room.broadcast_presence(out, occ, actor=actor, reason=reason)


def evict(
    room: RoomCore, out: Out, occ: Occupant, code: str, actor: str | None, reason: str | None
) -> None:
    """Kick (307), ban (301) or membership loss (321): everyone sees the code."""
    room.occupants.pop(occ.key, None)
    for full in occ.sessions:
        room.by_real.pop(full, None)
    room.changed()
    room.broadcast_presence(
        out, occ, type_="unavailable", codes=[code], actor=actor, reason=reason, payload=[]
    )
    occ.sessions.clear()


def apply_affiliation(
    room: RoomCore, out: Out, bare: str, aff: str, actor: str | None, reason: str | None
) -> None:
    """Record ``bare``'s new affiliation, with ``reason`` (None: none; the old one goes
    either way), and apply it to its occupants (roles, bans).

    The change is no longer one in-band registration made: the caller marks it as such
    again if it is (:mod:`.registration`).
    """
    room.registered_members.discard(bare)
    room.affiliation_reasons.pop(bare, None)
    if aff == R.NONE:
        room.affiliations.pop(bare, None)
    else:
        room.affiliations[bare] = aff
        if reason:
            room.affiliation_reasons[bare] = reason
    out.affiliations.append((bare, aff))
    for occ in [o for o in room.occupants.values() if o.bare == bare]:
        if aff == R.OUTCAST:
            evict(room, out, occ, "301", actor, reason)
        elif room.settings.members_only and R.aff_rank(aff) < R.aff_rank(R.MEMBER):
            evict(room, out, occ, "321", actor, reason)
        else:
            occ.role = R.default_role(aff, room.settings.moderated)
            occ.views.clear()
            room.broadcast_presence(out, occ, actor=actor, reason=reason)


def set_affiliation_as_service(room: RoomCore, bare: str, aff: str, reason: str | None) -> Out:
    """§9.1 ban (``outcast``), §9.2 unban (``none``) and the other affiliation changes,
    with no actor: banned occupants leave with 301 exactly as after an admin's ban.

    Raises :class:`StanzaError` for what the XEP forbids an owner too: a site
    administrator's affiliation, or removing the last owner.
    """
    if aff not in R.AFFILIATIONS:
        raise StanzaError("bad-request", f"unknown affiliation {aff}")
    reason = checked_reason(reason)
    if bare in room.ctx.site_admins:
        raise StanzaError("not-allowed", "site administrators always own the room")
    owners = {j for j, a in room.affiliations.items() if a == R.OWNER}
    if aff != R.OWNER and owners == {bare} and not room.ctx.site_admins:
        raise StanzaError("conflict", "a room needs at least one owner")
    out = Out()
    apply_affiliation(room, out, bare, aff, None, reason)
    return out
