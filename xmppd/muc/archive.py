"""The room's side of its message archive (XEP-0313 on a MUC, §7.1.2): who may query it,
and turning a query into a :class:`MamRequest` for the service and its page into stanzas.

The query itself runs in the service (a database read off the event loop); the XEP-0313
wire format is :mod:`xmppd.muc.mam`.
"""

from __future__ import annotations

from lxml import etree

from xmppd.muc import mam as mam_mod
from xmppd.muc import roles as R
from xmppd.muc.core import RoomCore
from xmppd.muc.out import MamRequest, Out
from xmppd.muc.stanzas import IQ, el, result_iq, sub
from xmppd.muc.wire import Recipient
from xmppd.xml.errors import StanzaError

#: disco#info features this module provides.
FEATURES = (mam_mod.MAM,)


def refusal(room: RoomCore, bare: str) -> StanzaError | None:
    """Why ``bare`` may not read the archive now, or None: the rules for joining.

    XEP-0313 §7.1.2 (MUC archives): only someone with the right to enter the room at
    the time of the query. The query carries no password, so in a password-protected
    room that means an occupant (who entered with it), an owner or a site admin.
    """
    aff = room.affiliation(bare)
    settings = room.settings
    if settings.locked and aff != R.OWNER:
        return StanzaError("item-not-found", "the room is still being configured")
    if aff == R.OUTCAST:
        return StanzaError("forbidden", "you are banned from this room")
    if settings.members_only and R.aff_rank(aff) < R.aff_rank(R.MEMBER):
        return StanzaError("registration-required", "this room's archive is for members only")
    if settings.password and aff != R.OWNER and bare not in room.ctx.site_admins:
        if not any(occ.bare == bare for occ in room.occupants.values()):
            return StanzaError("forbidden", "enter the room with its password first")
    return None


def open_to_anyone(room: RoomCore) -> bool:
    """Whether someone with no affiliation and no password may enter (and read)."""
    s = room.settings
    return not (s.locked or s.members_only or s.password)


def query(
    room: RoomCore,
    out: Out,
    stanza: etree._Element,
    rcpt: Recipient,
    payload: etree._Element,
    kind: str | None,
) -> None:
    """The MAM form (get), or a query handed to the service as ``out.mam`` (set)."""
    refused = refusal(room, rcpt.bare)
    if refused is not None:
        raise refused
    if kind == "get":
        reply = result_iq(stanza)
        q = sub(reply, mam_mod.QUERY, mam_mod.MAM)
        q.append(mam_mod.query_form())
        out.send(rcpt, reply)
        return
    req = mam_mod.parse_query(payload, room.ctx.config.mam_max_page, room.jid_str)
    out.mam = MamRequest(room.name, rcpt, stanza.get("id"), req)


def reply(room: RoomCore, request: MamRequest, page: mam_mod.MamPage) -> Out:
    """The page's messages, then the iq result with <fin/>."""
    out = Out()
    messages, fin = mam_mod.result_stanzas(request.query, page, room.jid_str)
    for msg in messages:
        out.send(request.rcpt, msg)
    iq = el(IQ, type="result")
    iq.set("from", room.jid_str)
    if request.iq_id is not None:
        iq.set("id", request.iq_id)
    iq.append(fin)
    out.send(request.rcpt, iq)
    return out


def error(room: RoomCore, request: MamRequest, err: StanzaError) -> Out:
    """The query failed (e.g. an unknown RSM id): an error answering the original iq."""
    out = Out()
    iq = el(IQ, type="set")
    iq.set("from", str(request.rcpt.full))
    iq.set("to", room.jid_str)
    if request.iq_id is not None:
        iq.set("id", request.iq_id)
    room.error(out, iq, request.rcpt, err)
    return out
