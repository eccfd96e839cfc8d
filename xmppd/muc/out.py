"""What a room hands back for each stanza: the pure result the service carries out.

Every room feature writes into one :class:`Out`: the bytes to send to which real JIDs, the
messages to archive, the state changes to persist, stanzas for the router and a MAM query
to run. The room itself never sends, stores or waits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from xmppd.muc import mam as mam_mod
from xmppd.muc.history import HistoryEntry
from xmppd.muc.wire import Recipient


@dataclass(slots=True)
class MamRequest:
    """A MAM query the service runs against the archive, then answers through the room."""

    room: str
    rcpt: Recipient
    iq_id: str | None
    query: mam_mod.MamQuery


@dataclass(slots=True)
class RetractRequest:
    """A retraction (XEP-0424) or moderation (XEP-0425) of a message the room no longer
    holds in memory: the service looks ``target`` up in the archive, then the room
    finishes it (:func:`xmppd.muc.moderation.finish`)."""

    room: str
    #: the room's stanza-id of the message to retract
    target: str
    rcpt: Recipient
    #: the real bare JID that must have written the message; None for a moderator
    author: str | None
    #: the iq (moderation) or the groupchat message (own retraction) being answered
    stanza: etree._Element
    #: a :class:`xmppd.muc.moderation.Moderation`, or None for an author's retraction
    moderation: Any = None


@dataclass(slots=True)
class Out:
    sends: list[tuple[Recipient, bytes]] = field(default_factory=list)
    archive: list[HistoryEntry] = field(default_factory=list)
    save_room: bool = False
    #: (bare JID, affiliation) changes to persist; "none" removes the row
    affiliations: list[tuple[str, str]] = field(default_factory=list)
    #: (scope, bare JID, nick or None to unregister)
    nick_changes: list[tuple[str, str, str | None]] = field(default_factory=list)
    mam: MamRequest | None = None
    #: (stanza-id, tombstone, by whom: a bare JID) of retracted messages: the archive
    #: keeps only the tombstone
    retractions: list[tuple[str, bytes, str]] = field(default_factory=list)
    #: a retraction whose message must be looked up in the archive first
    lookup: RetractRequest | None = None
    #: stanzas for the router (RFC 6121 rules: a bare JID's resources or offline storage),
    #: such as invitations, which go to users who are not occupants
    routed: list[etree._Element] = field(default_factory=list)
    #: private messages (§7.5) and the sessions of the one occupant each is for: the service
    #: delivers them through ``Router.deliver_observed`` (the recipient's carbons rules and
    #: archive see them, as they see any one-to-one message)
    private: list[tuple[etree._Element, list[Recipient]]] = field(default_factory=list)
    #: the room is gone (destroyed, or a temporary room emptied)
    gone: bool = False

    def send(self, rcpt: Recipient, el: etree._Element) -> None:
        """Address ``el`` to ``rcpt`` and queue it (one-off stanzas: replies, errors)."""
        el.set("to", rcpt.full)
        self.sends.append((rcpt, etree.tostring(el)))
