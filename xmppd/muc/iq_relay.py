"""iqs between occupants (XEP-0045 §7.5 for iq, XEP-0410 self-ping).

An iq to an occupant JID goes to that occupant's primary resource from the sender's
occupant JID under a room-made id; the answer is matched by that id and goes back with
the asker's own id. A ping to one's own occupant JID is answered by the room (XEP-0410).
"""

from __future__ import annotations

from lxml import etree

from xmppd.muc.core import RoomCore
from xmppd.muc.out import Out
from xmppd.muc.stanzas import PING, SELF_PING_OPT, nick_key_or_none, result_iq
from xmppd.muc.wire import Recipient
from xmppd.xml.errors import StanzaError

#: disco#info features: XEP-0410 self-ping answered by the room.
FEATURES = (SELF_PING_OPT,)

#: Relayed iqs the room remembers at most (the oldest are forgotten first).
MAX_PENDING = 1024


def to_occupant(
    room: RoomCore, out: Out, stanza: etree._Element, rcpt: Recipient, nick: str
) -> None:
    """XEP-0410 self-ping answered by the room; other iqs relayed between occupants."""
    kind = stanza.get("type")
    target = room.occupants.get(nick_key_or_none(nick) or "")
    forwards = room.iq_forwards
    if kind in ("result", "error"):
        fwd = forwards.pop(stanza.get("id") or "", None)
        if fwd is None or fwd[2] != rcpt.full or target is None:
            return
        asker_full, orig_id, _ = fwd
        asker = room.by_real.get(asker_full)
        if asker is None:
            return
        responder = room.by_real.get(rcpt.full)
        stanza.set("from", room.occupant_jid(responder.nick if responder else nick))
        if orig_id is None:
            stanza.attrib.pop("id", None)
        else:
            stanza.set("id", orig_id)
        out.send(asker.sessions[asker_full], stanza)
        return
    occ = room.occupant_of(rcpt)
    if target is None:
        raise StanzaError("item-not-found", "no occupant has that nickname")
    if target is occ and len(stanza) == 1 and stanza[0].tag == PING:
        out.send(rcpt, result_iq(stanza))
        return
    # Relay to the target's primary resource under a room-made id.
    new_id = room.ctx.new_id()
    forwards[new_id] = (rcpt.full, stanza.get("id"), target.primary)
    while len(forwards) > MAX_PENDING:
        forwards.pop(next(iter(forwards)))
    stanza.set("from", room.occupant_jid(occ.nick))
    stanza.set("id", new_id)
    out.send(target.sessions[target.primary], stanza)
