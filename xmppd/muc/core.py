"""A room's state and the helpers every feature module shares.

:class:`RoomCore` holds what one XEP-0045 room is: its occupants (by nick key and by real
full JID), affiliations, subject, history ring and rate limits, plus the operations all
features build on: an occupant's presence as others see it (cached per view), presence
broadcast, nick validation and error replies. The features themselves live in one module
each (:mod:`.presence`, :mod:`.messages`, :mod:`.admin`, …) as plain functions taking the
room; :class:`xmppd.muc.room.Room` dispatches to them.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from lxml import etree

from xmppd.jid import JID
from xmppd.muc import roles as R
from xmppd.muc.config import MucConfig
from xmppd.muc.history import HistoryEntry, HistoryRing
from xmppd.muc.limits import Buckets
from xmppd.muc.nicks import (
    NickError,
    NickRegistry,
    check_nick,
    check_script,
    look_alike,
    nick_key,
    nick_matches,
)
from xmppd.muc.occupant import Occupant
from xmppd.muc.out import Out
from xmppd.muc.roomconfig import RoomSettings
from xmppd.muc.stanzas import (
    MESSAGE,
    MUC,
    MUC_USER,
    MUC_X,
    OCC_ID,
    OCCUPANT_ID,
    ORIGIN_ID,
    PRESENCE,
    SID,
    STANZA_ID,
    STRIPPED,
    SUBJECT,
    USER_X,
    el,
    sub,
)
from xmppd.muc.wire import Recipient, Template
from xmppd.xml.errors import StanzaError, error_reply

#: The longest origin-id the archive keeps for retractions (``muc_messages.origin_id``).
ORIGIN_ID_MAX = 64

#: One voice request per occupant per this many seconds reaches the moderators.
VOICE_REQUEST_INTERVAL = 60.0


@dataclass(slots=True)
class RoomContext:
    """What rooms share: settings, the nick registry, site admins and the id source."""

    config: MucConfig
    service: str
    nicks: NickRegistry = field(default_factory=NickRegistry)
    site_admins: frozenset[str] = frozenset()
    new_id: Callable[[], str] = field(default=lambda: secrets.token_urlsafe(12))
    #: XEP-0114 component domain -> nick glob patterns it may use (``muc_nicks``).
    component_nicks: dict[str, tuple[str, ...]] = field(default_factory=dict)


class RoomCore:
    """A room's occupants, affiliations, subject and history; see the module docstring."""

    def __init__(
        self,
        jid: JID,
        settings: RoomSettings,
        ctx: RoomContext,
        affiliations: dict[str, str] | None = None,
        subject: str = "",
        subject_nick: str = "",
    ) -> None:
        self.jid = jid
        self.name = jid.local or ""
        self.jid_str = str(jid)
        self.settings = settings
        self.ctx = ctx
        self.affiliations: dict[str, str] = dict(affiliations or {})
        #: bare JIDs whose ``member`` affiliation in-band registration gave (XEP-0045
        #: §7.10): unregistering takes back only these; any other change of the
        #: affiliation (an admin's, the service's) takes a JID out (:mod:`.registration`)
        self.registered_members: set[str] = set()
        #: bare JID -> the reason its affiliation was given with (§9.1, §9.3; at most
        #: ``roles.REASON_MAX`` characters), shown in the affiliation lists (§9.2); any
        #: later change of the affiliation replaces it (:func:`.admin.apply_affiliation`)
        self.affiliation_reasons: dict[str, str] = {}
        self.subject = subject
        self.subject_nick = subject_nick
        #: XEP-0421 id of the occupant who set the subject, while this process knows it
        #: (not stored: a subject loaded at start-up shows without one).
        self.subject_occupant_id = ""
        self.occupants: dict[str, Occupant] = {}
        self.by_real: dict[str, Occupant] = {}
        cfg = ctx.config
        self.history = HistoryRing(cfg.history_max, cfg.history_max_bytes)
        # Limits per bare JID, kept across leaving and rejoining (not per occupant).
        self.flood = Buckets(cfg.flood_burst, cfg.flood_rate)
        self.invites = Buckets(cfg.invites_per_minute, cfg.invites_per_minute / 60.0)
        self.voice_requests = Buckets(1, 1.0 / VOICE_REQUEST_INTERVAL)
        #: iqs relayed between occupants: room-made id -> (asker, its id, responder)
        self.iq_forwards: dict[str, tuple[str, str | None, str]] = {}
        self._fanout: list[Recipient] | None = None

    # ------------------------------------------------------------------ who is who
    def affiliation(self, bare: str) -> str:
        if bare in self.ctx.site_admins:
            return R.OWNER
        return self.affiliations.get(bare, R.NONE)

    def occupant_jid(self, nick: str) -> str:
        return f"{self.jid_str}/{nick}"

    def occupant_id(self, bare: str) -> str:
        """XEP-0421: stable per real bare JID and room, revealing nothing of it."""
        digest = hmac.new(self.settings.secret.encode(), bare.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode()

    def sees_jid(self, viewer: Occupant) -> bool:
        return self.settings.whois == "anyone" or viewer.role == R.MODERATOR

    def recipients(self) -> list[Recipient]:
        """Every occupant's every resource (cached until :meth:`changed`)."""
        if self._fanout is None:
            self._fanout = [r for occ in self.occupants.values() for r in occ.sessions.values()]
        return self._fanout

    def changed(self) -> None:
        """The occupants or their resources changed: forget the fan-out list."""
        self._fanout = None

    def occupant_of(self, rcpt: Recipient) -> Occupant:
        """The sender's occupant, or the XEP's error for a non-occupant."""
        occ = self.by_real.get(rcpt.full)
        if occ is None:
            raise StanzaError("not-acceptable", "you are not an occupant of this room")
        return occ

    # ---------------------------------------------------------------- errors
    @staticmethod
    def error(out: Out, stanza: etree._Element, rcpt: Recipient, err: StanzaError) -> None:
        """Answer ``stanza`` with ``err`` (never an error with an error)."""
        if stanza.get("type") == "error":
            return
        reply = error_reply(stanza, err)
        if stanza.tag == PRESENCE:
            sub(reply, MUC_X, MUC)
        out.sends.append((rcpt, etree.tostring(reply)))

    # -------------------------------------------------------------- presence
    def presence_el(
        self,
        occ: Occupant,
        *,
        type_: str | None = None,
        with_jid: bool,
        codes: Iterable[str] = (),
        item_nick: str | None = None,
        actor: str | None = None,
        reason: str | None = None,
        payload: Iterable[etree._Element] | None = None,
        destroyed: bool = False,
    ) -> etree._Element:
        """``occ``'s presence from its occupant JID with the muc#user item (§7.2.3)."""
        p = el(PRESENCE)
        p.set("from", self.occupant_jid(occ.nick))
        if type_ is not None:
            p.set("type", type_)
        for child in occ.payload if payload is None else payload:
            p.append(copy.deepcopy(child))
        x = sub(p, USER_X, MUC_USER)
        item = sub(x, "{%s}item" % MUC_USER)
        item.set("affiliation", R.NONE if destroyed else self.affiliation(occ.bare))
        item.set("role", R.NONE if type_ == "unavailable" else occ.role)
        if with_jid and occ.primary:
            item.set("jid", occ.primary)
        if item_nick is not None:
            item.set("nick", item_nick)
        if actor is not None:
            sub(item, "{%s}actor" % MUC_USER, nick=actor)
        if reason:
            sub(item, "{%s}reason" % MUC_USER).text = reason
        for code in codes:
            sub(x, "{%s}status" % MUC_USER, code=code)
        sub(p, OCC_ID, OCCUPANT_ID, id=occ.occupant_id)
        return p

    def view(self, occ: Occupant, with_jid: bool) -> Template:
        """The cached presence of ``occ`` as others see it (invalidated on change)."""
        views = occ.views
        tpl = views.get(with_jid)
        if tpl is None:
            tpl = views[with_jid] = Template(self.presence_el(occ, with_jid=with_jid))
        return tpl

    def broadcast_presence(
        self,
        out: Out,
        occ: Occupant,
        *,
        self_sessions: Iterable[Recipient] | None = None,
        self_codes: Iterable[str] = (),
        **kw: object,
    ) -> None:
        """Tell every other occupant (two views: with/without real JID) and ``occ`` itself."""
        cache: dict[bool, Template] = {}
        plain = not kw
        for other in self.occupants.values():
            if other is occ:
                continue
            sees = self.sees_jid(other)
            tpl = cache.get(sees)
            if tpl is None:
                if plain:
                    tpl = self.view(occ, sees)
                else:
                    tpl = Template(self.presence_el(occ, with_jid=sees, **kw))  # type: ignore[arg-type]
                cache[sees] = tpl
            for rcpt in other.sessions.values():
                out.sends.append((rcpt, tpl.to(rcpt)))
        sessions = list(occ.sessions.values()) if self_sessions is None else list(self_sessions)
        if sessions:
            codes = [*kw.pop("codes", ()), *self_codes, "110"]  # type: ignore[misc]
            tpl = Template(self.presence_el(occ, with_jid=True, codes=codes, **kw))  # type: ignore[arg-type]
            for rcpt in sessions:
                out.sends.append((rcpt, tpl.to(rcpt)))

    # --------------------------------------------------------------- groupchat
    def relay_groupchat(
        self, out: Out, stanza: etree._Element, occ: Occupant, now: datetime, *, keep: bool
    ) -> str:
        """§7.4: ``stanza`` (handed over by the router, so mutated in place) goes to every
        occupant from ``occ``'s occupant JID, with the room's XEP-0359 stanza-id and the
        XEP-0421 occupant-id instead of any the client claimed; ``keep`` puts it in the
        history ring and the archive. Returns the stanza-id."""
        stanza.attrib.pop("to", None)
        stanza.set("from", self.occupant_jid(occ.nick))
        mine = self.jid_str
        for child in list(stanza):
            if child.tag in STRIPPED or (child.tag == STANZA_ID and child.get("by") == mine):
                stanza.remove(child)
        stanza_id = self.ctx.new_id()
        sub(stanza, STANZA_ID, SID, id=stanza_id, by=self.jid_str)
        sub(stanza, OCC_ID, OCCUPANT_ID, id=occ.occupant_id)
        tpl = Template(stanza)
        head, tail = tpl.head, tpl.tail
        if keep:
            origin = stanza.find(ORIGIN_ID)
            origin_id = origin.get("id") or "" if origin is not None else ""
            origin_id = origin_id if len(origin_id) <= ORIGIN_ID_MAX else ""
            entry = HistoryEntry(stanza_id, now, occ.nick, occ.bare, head + tail, origin_id)
            self.history.append(entry)
            out.archive.append(entry)
        out.sends.extend([(r, b"".join((head, r.to_attr, tail))) for r in self.recipients()])
        return stanza_id

    # --------------------------------------------------------------- subject
    def subject_tpl(self, message_id: str | None = None) -> Template:
        """The subject message (§8.1), from the nick that set it or the room itself.

        A live change carries the id its sender gave (§7.2: the room reflects a message
        with the client's id, so the sender sees its change went through); the subject a
        joining occupant gets has the id ``subject``.
        """
        msg = el(MESSAGE, type="groupchat")
        msg.set("from", self.occupant_jid(self.subject_nick) if self.subject_nick else self.jid_str)
        msg.set("id", message_id or "subject")
        sub(msg, SUBJECT).text = self.subject
        if self.subject_nick and self.subject_occupant_id:
            # XEP-0421 §4: every message from an occupant carries its occupant id
            sub(msg, OCC_ID, OCCUPANT_ID, id=self.subject_occupant_id)
        return Template(msg)

    def show_subject(
        self,
        out: Out,
        text: str,
        nick: str,
        message_id: str | None = None,
        occupant_id: str = "",
    ) -> None:
        """Store the subject and show it to everyone (from ``nick``, or the room if "")."""
        self.subject, self.subject_nick = text, nick
        self.subject_occupant_id = occupant_id if nick else ""
        tpl = self.subject_tpl(message_id)
        out.sends.extend((r, tpl.to(r)) for r in self.recipients())
        out.save_room = self.settings.persistent

    # ----------------------------------------------------------------- nicks
    def check_nick(self, nick: str, bare: str) -> str:
        """Validate ``nick`` for ``bare``; return its key or raise the XEP's error.

        Used for joining, changing nick and registering alike, so a registered nick (and
        everything that looks like it) is protected in each.
        """
        try:
            key = check_nick(nick, self.ctx.config.max_nick_length)
        except NickError as exc:
            raise StanzaError(exc.condition, exc.text) from None
        patterns = self.ctx.component_nicks.get(bare.rpartition("@")[2])
        if patterns is not None and not nick_matches(key, patterns):
            # XEP-0045's answer to a nick the room's nick policy does not allow
            allowed = ", ".join(patterns) or "none"
            text = f"this component may only use the nicknames {allowed}"
            raise StanzaError("not-acceptable", text)
        taken = self.ctx.nicks.conflict(self.name, nick, bare)
        if taken is not None:
            if taken.key == key:
                raise StanzaError("conflict", "that nickname is registered to another user")
            text = f"that nickname looks like {taken.nick}, which is registered to another user"
            raise StanzaError("conflict", text)
        mine = self.ctx.nicks.owner(self.name, key) == bare
        if not mine and not self.ctx.config.allow_mixed_script_nicks:
            try:
                check_script(nick)
            except NickError as exc:
                raise StanzaError(exc.condition, exc.text) from None
        if self.ctx.config.enforce_registered_nick:
            registered = self.ctx.nicks.nick_of(self.name, bare)
            if registered is not None and nick_key(registered) != key:
                text = f"you must use your registered nickname: {registered}"
                raise StanzaError("not-acceptable", text)
        for other in self.occupants.values():
            if other.bare != bare and (other.key == key or look_alike(other.nick, nick)):
                text = "that nickname is already in use in this room"
                if other.key != key:
                    text = f"that nickname looks like {other.nick}, already in this room"
                raise StanzaError("conflict", text)
        return key
