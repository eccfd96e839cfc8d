"""One XEP-0045 room as a pure state machine: stanza + ``now`` in, deliveries out.

This module imports no trio and touches no socket, clock or database (DESIGN.md). Each
``handle_*`` method returns an :class:`Out`: the bytes to send to which real JIDs, the
messages to archive, and the state changes the service must persist. Errors the sender
caused are answered inside ``Out`` too, so the service never has to interpret them.

:class:`Room` is the room's state (:class:`~xmppd.muc.core.RoomCore`) plus dispatch: each
feature lives in its own module of plain functions taking the room —

=================== ==========================================================
:mod:`.presence`    entering, presence updates, nick changes, leaving (§7.1-§7.6)
:mod:`.messages`    groupchat, subject, private messages, invitations (§7.4-§7.8)
:mod:`.voice`       voice requests and their approval (§7.13, §8.6)
:mod:`.iq_relay`    iqs between occupants, self-ping (XEP-0410)
:mod:`.admin`       roles and affiliations: kick, ban, voice, lists (§8-§9)
:mod:`.owner`       configuration form and destruction (§10)
:mod:`.roomconfig`  the settings and the one table of configuration fields
:mod:`.registration` registration: nick and membership (§7.10)
:mod:`.disco`       disco#info/#items of the room, ping
:mod:`.archive`     who may read the archive, MAM queries and answers
:mod:`.moderation`  retracting messages: moderators (XEP-0425), authors (XEP-0424)
=================== ==========================================================

Fan-out follows the design's data flow: a groupchat message is mutated in place (the
router handed it over), serialised once without ``to``, and each occupant's resource gets
``head + to + tail`` (:mod:`xmppd.muc.wire`).
"""

from __future__ import annotations

from datetime import datetime

from lxml import etree

from xmppd.jid import JID
from xmppd.muc import (
    admin,
    archive,
    disco,
    iq_relay,
    messages,
    moderation,
    owner,
    presence,
    registration,
)
from xmppd.muc import mam as mam_mod
from xmppd.muc.core import RoomContext, RoomCore
from xmppd.muc.history import HistoryEntry
from xmppd.muc.out import MamRequest, Out, RetractRequest
from xmppd.muc.roomconfig import RoomSettings
from xmppd.muc.stanzas import (
    DISCO_INFO_Q,
    DISCO_ITEMS_Q,
    MUC_ADMIN,
    MUC_OWNER,
    MUC_USER,
    PING,
    REGISTER,
    result_iq,
)
from xmppd.muc.wire import recipient
from xmppd.xml.errors import StanzaError

#: iq payload -> the feature module answering it (``query(room, out, stanza, rcpt, payload,
#: kind)``); a get/set with any other payload is ``service-unavailable``.
_IQ_QUERIES = {
    "{%s}query" % MUC_ADMIN: admin.query,
    "{%s}query" % MUC_OWNER: owner.query,
    "{%s}query" % REGISTER: registration.query,
    mam_mod.QUERY: archive.query,
}

#: The XEP-0425 request, 0.3 and 0.2 forms (when ``muc.moderation`` is on).
_MODERATE = (moderation.MODERATE_Q, moderation.APPLY_TO_Q)


class Room(RoomCore):
    """A room's state and its stanza dispatch; see the module docstring."""

    # -------------------------------------------------------------- stanzas in
    def handle_presence(
        self, stanza: etree._Element, sender: JID, nick: str | None, now: datetime
    ) -> Out:
        return presence.handle(self, stanza, sender, nick, now)

    def handle_message(
        self, stanza: etree._Element, sender: JID, nick: str | None, now: datetime
    ) -> Out:
        return messages.handle(self, stanza, sender, nick, now)

    def handle_iq(
        self, stanza: etree._Element, sender: JID, nick: str | None, now: datetime
    ) -> Out:
        out = Out()
        rcpt = recipient(sender)
        kind = stanza.get("type")
        try:
            if nick is not None:
                iq_relay.to_occupant(self, out, stanza, rcpt, nick)
                return out
            if kind not in ("get", "set"):
                return out
            if len(stanza) != 1:
                raise StanzaError("bad-request", "an iq get/set carries exactly one payload")
            payload = stanza[0]
            tag = payload.tag
            if tag == DISCO_INFO_Q and kind == "get":
                disco.info(self, out, stanza, rcpt)
            elif tag == DISCO_ITEMS_Q and kind == "get":
                disco.items(self, out, stanza, rcpt)
            elif tag == PING and kind == "get":
                out.send(rcpt, result_iq(stanza))
            elif tag in _MODERATE and self.ctx.config.moderation:
                moderation.query(self, out, stanza, rcpt, payload, kind, now)
            elif tag in _IQ_QUERIES:
                _IQ_QUERIES[tag](self, out, stanza, rcpt, payload, kind)
            else:
                raise StanzaError("service-unavailable")
        except StanzaError as err:
            self.error(out, stanza, rcpt, err)
        return out

    def join_as_creator(self, stanza: etree._Element, sender: JID, nick: str, now: datetime) -> Out:
        """The first presence into a room a user just created (§10.1: status 201)."""
        return presence.join_as_creator(self, stanza, sender, nick, now)

    def remove_session(self, full: str, code: str = "333") -> Out:
        """The service lost this resource (no session, send queue cut off): §7.14 333."""
        return presence.remove_session(self, full, code)

    # -------------------------------------------------------------- disco, MAM
    def features(self) -> list[str]:
        return disco.features(self)

    def archive_refusal(self, bare: str) -> StanzaError | None:
        """Why ``bare`` may not read the archive now, or None (:func:`archive.refusal`)."""
        return archive.refusal(self, bare)

    def may_read_archive(self, bare: str) -> bool:
        return archive.refusal(self, bare) is None

    def open_to_anyone(self) -> bool:
        """Whether someone with no affiliation and no password may enter (and read)."""
        return archive.open_to_anyone(self)

    def mam_reply(self, request: MamRequest, page: mam_mod.MamPage) -> Out:
        return archive.reply(self, request, page)

    def mam_error(self, request: MamRequest, err: StanzaError) -> Out:
        return archive.error(self, request, err)

    def retract_found(
        self, request: RetractRequest, found: HistoryEntry | None, now: datetime
    ) -> Out:
        """Finish a retraction whose message was looked up in the archive (or not found)."""
        return moderation.finish(self, request, found, now)

    # ------------------------------------------------------------ configuration
    def config_form(self) -> etree._Element:
        return owner.config_form(self)

    def apply_config(self, values: dict[str, list[str]], out: Out) -> list[str]:
        """Apply a submitted §10.2 form (unknown fields ignored); return status codes."""
        return owner.apply_config(self, values, out)

    def reconfigure(self, values: dict[str, list[str]]) -> Out:
        """The site changed this room's configuration (``[[muc.rooms]]`` on reload)."""
        return owner.reconfigure(self, values)

    # ------------------------------------------------- the service's administrator
    # ``xmppd say|subject|room-ban|room-unban|destroy-room``: the same state changes and
    # stanzas as an occupant's or an owner's request, made by the room itself (no actor).

    def say(self, text: str, now: datetime) -> Out:
        """A groupchat message from the room's own JID, archived like any other."""
        return messages.say(self, text, now)

    def set_subject(self, text: str) -> Out:
        """The site set the subject (from the room itself, no occupant's nick), §8.1."""
        out = Out()
        self.show_subject(out, text, "")
        return out

    set_subject_as_room = set_subject

    def set_affiliation_as_service(self, bare: str, aff: str, reason: str | None) -> Out:
        """Ban, unban and other affiliation changes with no actor (raises StanzaError)."""
        return admin.set_affiliation_as_service(self, bare, aff, reason)

    def drop_lapsed_memberships(self) -> Out:
        """Memberships in-band registration gave, whose registration is gone (§7.10)."""
        return registration.drop_lapsed_memberships(self)

    def destroy(self, reason: str | None = None) -> Out:
        """§10.9 destruction by the service: occupants see what an owner's destroy shows."""
        return owner.destroy_as_service(self, reason)


#: Re-exported for callers that know a room by this module.
__all__ = ["MUC_USER", "MamRequest", "Out", "Room", "RoomContext", "RoomSettings"]
