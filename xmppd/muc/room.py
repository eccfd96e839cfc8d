"""One XEP-0045 room as a pure state machine: stanza + ``now`` in, deliveries out.

This module imports no trio and touches no socket, clock or database (DESIGN.md). Each
``handle_*`` method returns an :class:`Out`: the bytes to send to which real JIDs, the
messages to archive, and the state changes the service must persist. Errors the sender
caused are answered inside ``Out`` too, so the service never has to interpret them.

Fan-out follows the design's data flow: a groupchat message is mutated in place (the
router handed it over), serialised once without ``to``, and each occupant's resource gets
``head + to + tail`` (:mod:`xmppd.muc.wire`).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime

from lxml import etree

from xmppd.jid import JID, JIDError
from xmppd.muc import forms
from xmppd.muc import mam as mam_mod
from xmppd.muc import roles as R
from xmppd.muc.config import MucConfig
from xmppd.muc.history import HistoryEntry, HistoryRequest, HistoryRing
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
from xmppd.muc.wire import Recipient, Template, recipient
from xmppd.xml import ns
from xmppd.xml.errors import StanzaError, error_reply

MUC = "http://jabber.org/protocol/muc"
MUC_USER = MUC + "#user"
MUC_ADMIN = MUC + "#admin"
MUC_OWNER = MUC + "#owner"
SID = "urn:xmpp:sid:0"
OCCUPANT_ID = "urn:xmpp:occupant-id:0"
REGISTER = "jabber:iq:register"
SELF_PING_OPT = MUC + "#self-ping-optimization"
STABLE_ID = MUC + "#stable_id"
ROOMUSER_NODE = "x-roomuser-item"

C = "{%s}" % ns.CLIENT
PRESENCE, MESSAGE, IQ = C + "presence", C + "message", C + "iq"
BODY, SUBJECT = C + "body", C + "subject"
MUC_X = "{%s}x" % MUC
USER_X = "{%s}x" % MUC_USER
STANZA_ID = "{%s}stanza-id" % SID
OCC_ID = "{%s}occupant-id" % OCCUPANT_ID
HISTORY = "{%s}history" % MUC
DISCO_INFO_Q = "{%s}query" % ns.DISCO_INFO
DISCO_ITEMS_Q = "{%s}query" % ns.DISCO_ITEMS
PING = "{%s}ping" % ns.PING
PASSWORD = "{%s}password" % MUC
REQUEST = MUC + "#request"
#: One voice request per occupant per this many seconds reaches the moderators.
VOICE_REQUEST_INTERVAL = 60.0

#: Children a room never relays from a client: it adds its own.
_STRIPPED = frozenset({OCC_ID, USER_X, MUC_X})

ALLOW_PM = ("anyone", "participants", "moderators", "none")


@dataclass(slots=True)
class RoomSettings:
    """What an owner configures (§10.2) plus the room's occupant-id secret; stored as JSON."""

    title: str = ""
    description: str = ""
    persistent: bool = True
    public: bool = True
    whois: str = "anyone"
    moderated: bool = False
    members_only: bool = False
    change_subject: bool = False
    allow_pm: str = "anyone"
    max_occupants: int = 1000
    #: §7.2.6 password-protected room when non-empty (shown to owners in the config form).
    password: str = ""
    #: A new user-created room stays locked until its owner configures it (§10.1).
    locked: bool = False
    #: The bare JID of the user who created the room ("" for configured rooms); counted
    #: against ``muc.max_rooms_per_user``.
    creator: str = ""
    secret: str = field(default_factory=lambda: secrets.token_hex(16))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RoomSettings:
        data = json.loads(text or "{}")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


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


@dataclass(slots=True)
class MamRequest:
    room: str
    rcpt: Recipient
    iq_id: str | None
    query: mam_mod.MamQuery


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
    #: stanzas for the router (RFC 6121 rules: a bare JID's resources or offline storage),
    #: such as invitations, which go to users who are not occupants
    routed: list[etree._Element] = field(default_factory=list)
    #: the room is gone (destroyed, or a temporary room emptied)
    gone: bool = False

    def send(self, rcpt: Recipient, el: etree._Element) -> None:
        el.set("to", rcpt.full)
        self.sends.append((rcpt, etree.tostring(el)))


def _request_form(stanza: etree._Element) -> etree._Element | None:
    """The muc#request data form of a message (voice request or its approval), if any."""
    form = forms.find_form(stanza)
    if form is None or forms.form_type(form) != REQUEST:
        return None
    return form


def _el(tag: str, nsuri: str | None = None, **attrs: str) -> etree._Element:
    return etree.Element(tag, nsmap={None: nsuri or ns.CLIENT}, **attrs)


def _sub(
    parent: etree._Element, tag: str, nsuri: str | None = None, **attrs: str
) -> etree._Element:
    if nsuri is not None and nsuri != (parent.nsmap.get(None)):
        return etree.SubElement(parent, tag, nsmap={None: nsuri}, **attrs)
    return etree.SubElement(parent, tag, **attrs)


def _result_iq(stanza: etree._Element) -> etree._Element:
    iq = _el(IQ, type="result")
    if stanza.get("id") is not None:
        iq.set("id", stanza.get("id"))
    iq.set("from", stanza.get("to") or "")
    return iq


class Room:
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
        self.subject = subject
        self.subject_nick = subject_nick
        self.occupants: dict[str, Occupant] = {}
        self.by_real: dict[str, Occupant] = {}
        cfg = ctx.config
        self.history = HistoryRing(cfg.history_max, cfg.history_max_bytes)
        # Limits per bare JID, kept across leaving and rejoining (not per occupant).
        self.flood = Buckets(cfg.flood_burst, cfg.flood_rate)
        self.invites = Buckets(cfg.invites_per_minute, cfg.invites_per_minute / 60.0)
        self.voice_requests = Buckets(1, 1.0 / VOICE_REQUEST_INTERVAL)
        self._fanout: list[Recipient] | None = None
        self._iq_forwards: dict[str, tuple[str, str | None, str]] = {}

    # ------------------------------------------------------------------ helpers
    def affiliation(self, bare: str) -> str:
        if bare in self.ctx.site_admins:
            return R.OWNER
        return self.affiliations.get(bare, R.NONE)

    def occupant_jid(self, nick: str) -> str:
        return f"{self.jid_str}/{nick}"

    def occupant_id(self, bare: str) -> str:
        digest = hmac.new(self.settings.secret.encode(), bare.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode()

    def _sees_jid(self, viewer: Occupant) -> bool:
        return self.settings.whois == "anyone" or viewer.role == R.MODERATOR

    def _recipients(self) -> list[Recipient]:
        if self._fanout is None:
            self._fanout = [r for occ in self.occupants.values() for r in occ.sessions.values()]
        return self._fanout

    def _changed(self) -> None:
        self._fanout = None

    @staticmethod
    def _error(out: Out, stanza: etree._Element, rcpt: Recipient, err: StanzaError) -> None:
        if stanza.get("type") == "error":
            return
        reply = error_reply(stanza, err)
        if stanza.tag == PRESENCE:
            _sub(reply, MUC_X, MUC)
        out.sends.append((rcpt, etree.tostring(reply)))

    def _presence_el(
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
        p = _el(PRESENCE)
        p.set("from", self.occupant_jid(occ.nick))
        if type_ is not None:
            p.set("type", type_)
        for child in occ.payload if payload is None else payload:
            p.append(copy.deepcopy(child))
        x = _sub(p, USER_X, MUC_USER)
        item = _sub(x, "{%s}item" % MUC_USER)
        item.set("affiliation", R.NONE if destroyed else self.affiliation(occ.bare))
        item.set("role", R.NONE if type_ == "unavailable" else occ.role)
        if with_jid and occ.primary:
            item.set("jid", occ.primary)
        if item_nick is not None:
            item.set("nick", item_nick)
        if actor is not None:
            _sub(item, "{%s}actor" % MUC_USER, nick=actor)
        if reason:
            _sub(item, "{%s}reason" % MUC_USER).text = reason
        for code in codes:
            _sub(x, "{%s}status" % MUC_USER, code=code)
        _sub(p, OCC_ID, OCCUPANT_ID, id=occ.occupant_id)
        return p

    def _view(self, occ: Occupant, with_jid: bool) -> Template:
        """The cached presence of ``occ`` as others see it (invalidated on change)."""
        views = occ.views
        tpl = views.get(with_jid)
        if tpl is None:
            tpl = views[with_jid] = Template(self._presence_el(occ, with_jid=with_jid))
        return tpl

    def _broadcast_presence(
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
            sees = self._sees_jid(other)
            tpl = cache.get(sees)
            if tpl is None:
                if plain:
                    tpl = self._view(occ, sees)
                else:
                    tpl = Template(self._presence_el(occ, with_jid=sees, **kw))  # type: ignore[arg-type]
                cache[sees] = tpl
            for rcpt in other.sessions.values():
                out.sends.append((rcpt, tpl.to(rcpt)))
        sessions = list(occ.sessions.values()) if self_sessions is None else list(self_sessions)
        if sessions:
            codes = [*kw.pop("codes", ()), *self_codes, "110"]  # type: ignore[misc]
            tpl = Template(self._presence_el(occ, with_jid=True, codes=codes, **kw))  # type: ignore[arg-type]
            for rcpt in sessions:
                out.sends.append((rcpt, tpl.to(rcpt)))

    def _check_nick(self, nick: str, bare: str) -> str:
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

    @staticmethod
    def _payload(stanza: etree._Element) -> list[etree._Element]:
        return [copy.deepcopy(c) for c in stanza if c.tag not in _STRIPPED]

    # ------------------------------------------------------------------ presence
    def handle_presence(
        self, stanza: etree._Element, sender: JID, nick: str | None, now: datetime
    ) -> Out:
        out = Out()
        rcpt = recipient(sender)
        kind = stanza.get("type")
        occ = self.by_real.get(rcpt.full)
        try:
            if kind in ("unavailable", "error"):
                if occ is not None:
                    self._leave(out, occ, rcpt, stanza if kind == "unavailable" else None)
                return out
            if kind is not None:
                return out  # subscriptions and probes mean nothing to a room
            if occ is None:
                if nick is None:
                    raise StanzaError("jid-malformed", "join a room at room@service/nickname")
                if stanza.find(MUC_X) is None:
                    self._not_in_room(out, nick, rcpt)
                    return out
                self._join(out, stanza, sender, rcpt, nick, now)
            elif nick is None or nick_key_or_none(nick) == occ.key:
                if stanza.find(MUC_X) is not None:
                    self._resync(out, stanza, occ, rcpt, now)
                else:
                    self._update(out, stanza, occ, rcpt)
            else:
                self._change_nick(out, stanza, occ, rcpt, nick)
        except StanzaError as err:
            self._error(out, stanza, rcpt, err)
        return out

    def _not_in_room(self, out: Out, nick: str, rcpt: Recipient) -> None:
        """§7.2.1 (1.32+): presence without <x/> from a non-occupant is answered by a kick."""
        p = _el(PRESENCE, type="unavailable")
        p.set("from", self.occupant_jid(nick))
        x = _sub(p, USER_X, MUC_USER)
        item = _sub(x, "{%s}item" % MUC_USER, affiliation="none", role="none")
        _sub(item, "{%s}reason" % MUC_USER).text = "You are not in the room."
        _sub(x, "{%s}status" % MUC_USER, code="110")
        _sub(x, "{%s}status" % MUC_USER, code="307")
        out.send(rcpt, p)

    def _join(
        self,
        out: Out,
        stanza: etree._Element,
        sender: JID,
        rcpt: Recipient,
        nick: str,
        now: datetime,
        created: bool = False,
    ) -> None:
        bare = rcpt.bare
        aff = self.affiliation(bare)
        req = HistoryRequest.parse(stanza.find(MUC_X).find(HISTORY))  # type: ignore[union-attr]
        if self.settings.locked and aff != R.OWNER:
            raise StanzaError("item-not-found", "the room is still being configured")
        if aff == R.OUTCAST:
            raise StanzaError("forbidden", "you are banned from this room")
        if self.settings.members_only and R.aff_rank(aff) < R.aff_rank(R.MEMBER):
            raise StanzaError("registration-required", "this room is for members only")
        if self.settings.password and aff != R.OWNER and bare not in self.ctx.site_admins:
            given = stanza.find(MUC_X).findtext(PASSWORD)  # type: ignore[union-attr]
            if not hmac.compare_digest(
                (given or "").encode("utf-8"), self.settings.password.encode("utf-8")
            ):
                raise StanzaError("not-authorized", "this room needs a password")
        key = self._check_nick(nick, bare)
        occ = self.occupants.get(key)
        if occ is None:
            if len(self.occupants) >= self.settings.max_occupants and aff not in (R.OWNER, R.ADMIN):
                raise StanzaError("service-unavailable", "the room is full")
            occ = Occupant(
                nick=nick,
                key=key,
                bare=bare,
                role=R.default_role(aff, self.settings.moderated),
                occupant_id=self.occupant_id(bare),
            )
            fresh = True
        else:
            fresh = False  # another resource of the same bare JID joins the same nick
        occ.sessions[rcpt.full] = rcpt
        occ.payload = self._payload(stanza)
        occ.primary = rcpt.full
        occ.views.clear()
        self.by_real[rcpt.full] = occ
        if fresh:
            self.occupants[key] = occ
        self._changed()
        codes = []
        if self.settings.whois == "anyone":
            codes.append("100")
        if created or self.settings.locked:
            codes.append("201")
        self._sync(out, occ, rcpt, req, now, codes)
        if fresh:
            # Everyone else learns of the newcomer after it has its own view (§7.2.3).
            self._broadcast_presence(out, occ, self_sessions=())

    def _sync(
        self,
        out: Out,
        occ: Occupant,
        rcpt: Recipient,
        req: HistoryRequest,
        now: datetime,
        codes: list[str],
    ) -> None:
        """Occupants' presence, own presence (110), history, subject: §7.2.3-§7.2.16."""
        sends = out.sends
        sees = self._sees_jid(occ)
        for other in self.occupants.values():
            if other is not occ:
                sends.append((rcpt, self._view(other, sees).to(rcpt)))
        own = self._presence_el(occ, with_jid=True, codes=[*codes, "110"])
        sends.append((rcpt, Template(own).to(rcpt)))
        default = self.ctx.config.history_default
        for entry in self.history.select(req, default, now, self.jid_str):
            head, tail, _ = entry.join_copy(self.jid_str)
            sends.append((rcpt, b"".join((head, rcpt.to_attr, tail))))
        sends.append((rcpt, self._subject_tpl().to(rcpt)))

    def _subject_tpl(self) -> Template:
        msg = _el(MESSAGE, type="groupchat")
        msg.set("from", self.occupant_jid(self.subject_nick) if self.subject_nick else self.jid_str)
        msg.set("id", "subject")
        _sub(msg, SUBJECT).text = self.subject
        return Template(msg)

    def _resync(
        self, out: Out, stanza: etree._Element, occ: Occupant, rcpt: Recipient, now: datetime
    ) -> None:
        """A join from an already-joined full JID: answer exactly like a fresh join."""
        req = HistoryRequest.parse(stanza.find(MUC_X).find(HISTORY))  # type: ignore[union-attr]
        occ.payload = self._payload(stanza)
        occ.primary = rcpt.full
        occ.views.clear()
        codes = ["100"] if self.settings.whois == "anyone" else []
        self._sync(out, occ, rcpt, req, now, codes)

    def _update(self, out: Out, stanza: etree._Element, occ: Occupant, rcpt: Recipient) -> None:
        occ.payload = self._payload(stanza)
        occ.primary = rcpt.full
        occ.views.clear()
        self._broadcast_presence(out, occ)

    def _leave(
        self,
        out: Out,
        occ: Occupant,
        rcpt: Recipient,
        stanza: etree._Element | None,
        **kw: object,
    ) -> None:
        payload = [] if stanza is None else self._payload(stanza)
        self.by_real.pop(rcpt.full, None)
        occ.sessions.pop(rcpt.full, None)
        self._changed()
        if occ.sessions:
            # Other resources keep the nick: only this one is told it left.
            if occ.primary == rcpt.full:
                occ.primary = next(iter(occ.sessions))
                occ.views.clear()
            p = self._presence_el(
                occ, type_="unavailable", with_jid=True, codes=["110"], payload=payload
            )
            out.send(rcpt, p)
            return
        self.occupants.pop(occ.key, None)
        self._broadcast_presence(
            out, occ, type_="unavailable", self_sessions=[rcpt], payload=payload, **kw
        )
        if not self.occupants and not self.settings.persistent:
            out.gone = True

    def _change_nick(
        self, out: Out, stanza: etree._Element, occ: Occupant, rcpt: Recipient, nick: str
    ) -> None:
        """§7.6: unavailable with 303 and the new nick, then available under the new nick."""
        key = self._check_nick(nick, occ.bare)
        if key in self.occupants and self.occupants[key] is not occ:
            raise StanzaError("conflict", "that nickname is already in use in this room")
        if len(occ.sessions) > 1:
            raise StanzaError(
                "not-acceptable", "other resources share this nickname: they must leave first"
            )
        self._broadcast_presence(
            out, occ, type_="unavailable", codes=["303"], item_nick=nick, payload=[]
        )
        del self.occupants[occ.key]
        occ.nick, occ.key = nick, key
        occ.payload = self._payload(stanza)
        occ.views.clear()
        self.occupants[key] = occ
        self._changed()
        self._broadcast_presence(out, occ)

    def remove_session(self, full: str, code: str = "333") -> Out:
        """The service lost this resource (no session, send queue cut off): §7.14 333."""
        out = Out()
        occ = self.by_real.get(full)
        if occ is not None:
            rcpt = occ.sessions[full]
            self._leave(out, occ, rcpt, None, codes=[code])
            out.sends = [(r, data) for r, data in out.sends if r.full != full]
        return out

    # ------------------------------------------------------------------ messages
    def handle_message(
        self, stanza: etree._Element, sender: JID, nick: str | None, now: datetime
    ) -> Out:
        out = Out()
        rcpt = recipient(sender)
        kind = stanza.get("type") or "normal"
        try:
            if kind == "error":
                occ = self.by_real.get(rcpt.full)
                if occ is not None and nick is None:
                    return self.remove_session(rcpt.full)
                return out
            if nick is not None:
                self._private(out, stanza, rcpt, nick)
            elif kind == "groupchat":
                self._groupchat(out, stanza, rcpt, now)
            elif kind == "normal" and stanza.find(USER_X) is not None:
                self._invite(out, stanza, rcpt, now)
            elif kind == "normal" and _request_form(stanza) is not None:
                self._voice_form(out, _request_form(stanza), rcpt, now)  # type: ignore[arg-type]
            else:
                raise StanzaError(
                    "bad-request", "only groupchat messages can be sent to the room itself"
                )
        except StanzaError as err:
            self._error(out, stanza, rcpt, err)
        return out

    def _groupchat(self, out: Out, stanza: etree._Element, rcpt: Recipient, now: datetime) -> None:
        occ = self.by_real.get(rcpt.full)
        if occ is None:
            raise StanzaError("not-acceptable", "you are not an occupant of this room")
        if occ.role == R.VISITOR:
            raise StanzaError("forbidden", "you do not have voice in this room")
        if not self.flood.take(occ.bare, now.timestamp()):
            raise StanzaError("resource-constraint", "you are sending messages too fast")
        body = stanza.find(BODY)
        subject = stanza.find(SUBJECT)
        if subject is not None and body is None:
            self._set_subject(out, occ, subject.text or "")
            return
        # The router handed the stanza over: mutate it rather than copy it.
        stanza.attrib.pop("to", None)
        stanza.set("from", self.occupant_jid(occ.nick))
        for child in list(stanza):
            if child.tag in _STRIPPED or (
                child.tag == STANZA_ID and child.get("by") == self.jid_str
            ):
                stanza.remove(child)
        stanza_id = self.ctx.new_id()
        _sub(stanza, STANZA_ID, SID, id=stanza_id, by=self.jid_str)
        _sub(stanza, OCC_ID, OCCUPANT_ID, id=occ.occupant_id)
        tpl = Template(stanza)
        head, tail = tpl.head, tpl.tail
        if body is not None:
            entry = HistoryEntry(stanza_id, now, occ.nick, occ.bare, head + tail)
            self.history.append(entry)
            out.archive.append(entry)
        out.sends.extend([(r, b"".join((head, r.to_attr, tail))) for r in self._recipients()])

    def _set_subject(self, out: Out, occ: Occupant, text: str) -> None:
        """§8.1: moderators, or everyone with voice when the room allows it."""
        allowed = occ.role == R.MODERATOR or (
            self.settings.change_subject and occ.role == R.PARTICIPANT
        )
        if not allowed:
            raise StanzaError("forbidden", "you may not change the subject of this room")
        self._apply_subject(out, text, occ.nick)

    def _apply_subject(self, out: Out, text: str, nick: str) -> None:
        """Store the subject and show it to everyone (from ``nick``, or the room if "")."""
        self.subject, self.subject_nick = text, nick
        tpl = self._subject_tpl()
        out.sends.extend((r, tpl.to(r)) for r in self._recipients())
        out.save_room = self.settings.persistent

    def _private(self, out: Out, stanza: etree._Element, rcpt: Recipient, nick: str) -> None:
        """§7.5: a private message to one occupant, from the sender's occupant JID."""
        if stanza.get("type") == "groupchat":
            raise StanzaError("bad-request", "private messages cannot be of type groupchat")
        occ = self.by_real.get(rcpt.full)
        if occ is None:
            raise StanzaError("not-acceptable", "you are not an occupant of this room")
        pm = self.settings.allow_pm
        if (
            pm == "none"
            or (pm == "moderators" and occ.role != R.MODERATOR)
            or (pm == "participants" and occ.role == R.VISITOR)
        ):
            raise StanzaError("forbidden", "private messages are not allowed in this room")
        target = self.occupants.get(nick_key_or_none(nick) or "")
        if target is None:
            raise StanzaError("item-not-found", "no occupant has that nickname")
        stanza.attrib.pop("to", None)
        stanza.set("from", self.occupant_jid(occ.nick))
        for child in list(stanza):
            if child.tag in _STRIPPED:
                stanza.remove(child)
        _sub(stanza, USER_X, MUC_USER)
        _sub(stanza, OCC_ID, OCCUPANT_ID, id=occ.occupant_id)
        tpl = Template(stanza)
        out.sends.extend((r, tpl.to(r)) for r in target.sessions.values())

    def _voice_form(self, out: Out, form: etree._Element, rcpt: Recipient, now: datetime) -> None:
        """§7.13 a visitor asks for voice; §8.6 a moderator answers the approval form."""
        occ = self.by_real.get(rcpt.full)
        if occ is None:
            raise StanzaError("not-acceptable", "you are not an occupant of this room")
        values = forms.form_values(form)
        if occ.role == R.MODERATOR and forms.first(values, "muc#request_allow") is not None:
            self._voice_decision(out, occ, values)
            return
        if forms.first(values, "muc#role") not in (None, R.PARTICIPANT):
            raise StanzaError("bad-request", "only voice (role participant) can be requested")
        if occ.role != R.VISITOR:
            raise StanzaError("not-acceptable", "you already have voice in this room")
        moderators = [o for o in self.occupants.values() if o.role == R.MODERATOR]
        if not moderators:
            raise StanzaError("service-unavailable", "no moderator is present to grant voice")
        if not self.voice_requests.take(occ.bare, now.timestamp()):
            raise StanzaError("resource-constraint", "your voice request is already pending")
        msg = _el(MESSAGE)
        msg.set("from", self.jid_str)
        f = forms.Form("form", REQUEST, title="Voice request")
        _sub(f.el, "{%s}instructions" % forms.DATA).text = (
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

    def _voice_decision(self, out: Out, moderator: Occupant, values: dict[str, list[str]]) -> None:
        try:
            allow = forms.parse_bool(forms.first(values, "muc#request_allow") or "")
        except ValueError:
            raise StanzaError("bad-request", "muc#request_allow must be a boolean") from None
        if not allow:
            return
        nick = forms.first(values, "muc#roomnick") or ""
        target = self.occupants.get(nick_key_or_none(nick) or "")
        if target is None:
            raise StanzaError("item-not-found", "no occupant has that nickname")
        if target.role == R.VISITOR:
            self.voice_requests.reset(target.bare)
            self._apply_role(out, target, R.PARTICIPANT, moderator.nick, None)

    def _invite(self, out: Out, stanza: etree._Element, rcpt: Recipient, now: datetime) -> None:
        """§7.8.2 mediated invitations: the room forwards them from itself.

        Each invitation costs one of the inviter's ``invites_per_minute`` tokens (per bare
        JID, so leaving and rejoining does not refill them); a message with more than are
        left is refused whole.
        """
        occ = self.by_real.get(rcpt.full)
        if occ is None:
            raise StanzaError("not-acceptable", "you are not an occupant of this room")
        x = stanza.find(USER_X)
        invites = x.findall("{%s}invite" % MUC_USER) if x is not None else []
        if not invites:
            raise StanzaError("bad-request", "only groupchat messages can be sent to the room")
        if self.settings.members_only and R.aff_rank(self.affiliation(occ.bare)) < R.aff_rank(
            R.ADMIN
        ):
            raise StanzaError("forbidden", "only admins may invite to this room")
        targets: list[tuple[JID, etree._Element]] = []
        for invite in invites:
            try:
                targets.append((JID.parse(invite.get("to") or ""), invite))
            except JIDError:
                raise StanzaError("jid-malformed", "bad invitee address") from None
        if not self.invites.take(occ.bare, now.timestamp(), cost=len(targets)):
            raise StanzaError("resource-constraint", "you are sending invitations too fast")
        for to, invite in targets:
            msg = _el(MESSAGE)
            msg.set("from", self.jid_str)
            ux = _sub(msg, USER_X, MUC_USER)
            inv = _sub(ux, "{%s}invite" % MUC_USER)
            anyone = self.settings.whois == "anyone"
            inv.set("from", occ.bare if anyone else self.occupant_jid(occ.nick))
            reason = invite.find("{%s}reason" % MUC_USER)
            if reason is not None:
                _sub(inv, "{%s}reason" % MUC_USER).text = reason.text
            msg.set("to", str(to))
            out.routed.append(msg)

    # ----------------------------------------------------------------------- iq
    def handle_iq(
        self, stanza: etree._Element, sender: JID, nick: str | None, now: datetime
    ) -> Out:
        out = Out()
        rcpt = recipient(sender)
        kind = stanza.get("type")
        try:
            if nick is not None:
                self._iq_to_occupant(out, stanza, rcpt, nick)
                return out
            if kind not in ("get", "set"):
                return out
            if len(stanza) != 1:
                raise StanzaError("bad-request", "an iq get/set carries exactly one payload")
            payload = stanza[0]
            tag = payload.tag
            if tag == DISCO_INFO_Q and kind == "get":
                out.send(rcpt, self._disco_info(stanza, rcpt))
            elif tag == DISCO_ITEMS_Q and kind == "get":
                reply = _result_iq(stanza)
                q = _sub(reply, DISCO_ITEMS_Q, ns.DISCO_ITEMS)
                if payload.get("node"):
                    q.set("node", payload.get("node"))
                out.send(rcpt, reply)
            elif tag == PING and kind == "get":
                out.send(rcpt, _result_iq(stanza))
            elif tag == "{%s}query" % MUC_ADMIN:
                self._admin(out, stanza, rcpt, payload, kind)
            elif tag == "{%s}query" % MUC_OWNER:
                self._owner(out, stanza, rcpt, payload, kind)
            elif tag == "{%s}query" % REGISTER:
                self._register(out, stanza, rcpt, payload, kind)
            elif tag == mam_mod.QUERY:
                self._mam(out, stanza, rcpt, payload, kind)
            else:
                raise StanzaError("service-unavailable")
        except StanzaError as err:
            self._error(out, stanza, rcpt, err)
        return out

    def _iq_to_occupant(self, out: Out, stanza: etree._Element, rcpt: Recipient, nick: str) -> None:
        """XEP-0410 self-ping answered by the room; other iqs relayed between occupants."""
        kind = stanza.get("type")
        key = nick_key_or_none(nick) or ""
        target = self.occupants.get(key)
        if kind in ("result", "error"):
            fwd = self._iq_forwards.pop(stanza.get("id") or "", None)
            if fwd is None or fwd[2] != rcpt.full or target is None:
                return
            asker_full, orig_id, _ = fwd
            asker = self.by_real.get(asker_full)
            if asker is None:
                return
            responder = self.by_real.get(rcpt.full)
            stanza.set("from", self.occupant_jid(responder.nick if responder else nick))
            if orig_id is None:
                stanza.attrib.pop("id", None)
            else:
                stanza.set("id", orig_id)
            out.send(asker.sessions[asker_full], stanza)
            return
        occ = self.by_real.get(rcpt.full)
        if occ is None:
            raise StanzaError("not-acceptable", "you are not an occupant of this room")
        if target is None:
            raise StanzaError("item-not-found", "no occupant has that nickname")
        if target is occ and len(stanza) == 1 and stanza[0].tag == PING:
            out.send(rcpt, _result_iq(stanza))
            return
        # Relay to the target's primary resource under a room-made id.
        new_id = self.ctx.new_id()
        self._iq_forwards[new_id] = (rcpt.full, stanza.get("id"), target.primary)
        while len(self._iq_forwards) > 1024:
            self._iq_forwards.pop(next(iter(self._iq_forwards)))
        stanza.set("from", self.occupant_jid(occ.nick))
        stanza.set("id", new_id)
        out.send(target.sessions[target.primary], stanza)

    # ---------------------------------------------------------------- disco
    def features(self) -> list[str]:
        s = self.settings
        feats = [
            ns.DISCO_INFO,
            ns.DISCO_ITEMS,
            MUC,
            "muc_persistent" if s.persistent else "muc_temporary",
            "muc_public" if s.public else "muc_hidden",
            "muc_membersonly" if s.members_only else "muc_open",
            "muc_moderated" if s.moderated else "muc_unmoderated",
            "muc_nonanonymous" if s.whois == "anyone" else "muc_semianonymous",
            "muc_passwordprotected" if s.password else "muc_unsecured",
            mam_mod.MAM,
            SID,
            OCCUPANT_ID,
            SELF_PING_OPT,
            STABLE_ID,
            REGISTER,
            REQUEST,
            ns.PING,
        ]
        return sorted(feats)

    def _disco_info(self, stanza: etree._Element, rcpt: Recipient) -> etree._Element:
        node = stanza[0].get("node")
        reply = _result_iq(stanza)
        q = _sub(reply, DISCO_INFO_Q, ns.DISCO_INFO)
        if node == ROOMUSER_NODE:
            q.set("node", node)
            mine = self.ctx.nicks.nick_of(self.name, rcpt.bare)
            if mine is not None:
                _sub(q, "{%s}identity" % ns.DISCO_INFO, category="conference", type="text",
                     name=mine)  # fmt: skip
            return reply
        if node is not None:
            raise StanzaError("item-not-found")
        _sub(q, "{%s}identity" % ns.DISCO_INFO, category="conference", type="text",
             name=self.settings.title or self.name)  # fmt: skip
        for var in self.features():
            _sub(q, "{%s}feature" % ns.DISCO_INFO, var=var)
        form = forms.Form("result", forms.ROOMINFO)
        form.add("muc#roominfo_description", None, [self.settings.description])
        form.add("muc#roominfo_subject", None, [self.subject])
        form.add("muc#roominfo_occupants", None, [str(len(self.occupants))])
        form.add("muc#roomconfig_roomname", None, [self.settings.title or self.name])
        form.add("muc#roominfo_changesubject", None, forms.bool_value(self.settings.change_subject))
        q.append(form.el)
        return reply

    # ---------------------------------------------------------------- admin §8-§9
    def _admin(
        self,
        out: Out,
        stanza: etree._Element,
        rcpt: Recipient,
        query: etree._Element,
        kind: str | None,
    ) -> None:
        items = query.findall("{%s}item" % MUC_ADMIN)
        if not items:
            raise StanzaError("bad-request", "no item")
        actor_aff = self.affiliation(rcpt.bare)
        actor = self.by_real.get(rcpt.full)
        if kind == "get":
            reply = _result_iq(stanza)
            q = _sub(reply, "{%s}query" % MUC_ADMIN, MUC_ADMIN)
            for item in items:
                self._admin_list(q, item, actor_aff, actor)
            out.send(rcpt, reply)
            return
        # Validate every item first: the change is all or nothing.
        plan: list[tuple[str, object, str, str | None]] = []
        for item in items:
            reason_el = item.find("{%s}reason" % MUC_ADMIN)
            reason = reason_el.text if reason_el is not None else None
            role, aff = item.get("role"), item.get("affiliation")
            if (role is None) == (aff is None):
                raise StanzaError("bad-request", "give either a role or an affiliation")
            if role is not None:
                if role not in R.ROLES:
                    raise StanzaError("bad-request", f"unknown role {role}")
                target = self.occupants.get(nick_key_or_none(item.get("nick") or "") or "")
                if target is None:
                    raise StanzaError("item-not-found", "no occupant has that nickname")
                if actor is None or not R.may_change_role(
                    actor_aff, actor.role, self.affiliation(target.bare), target.role, role
                ):
                    raise StanzaError("not-allowed", "you may not change that occupant's role")
                plan.append(("role", target, role, reason))
            else:
                if aff not in R.AFFILIATIONS:
                    raise StanzaError("bad-request", f"unknown affiliation {aff}")
                bare = self._item_bare(item)
                if bare in self.ctx.site_admins:
                    raise StanzaError("not-allowed", "site administrators always own the room")
                if not R.may_change_affiliation(actor_aff, self.affiliation(bare), aff):  # type: ignore[arg-type]
                    raise StanzaError("not-allowed", "you may not change that affiliation")
                plan.append(("aff", bare, aff, reason))  # type: ignore[arg-type]
        owners = {j for j, a in self.affiliations.items() if a == R.OWNER}
        for what, target, value, _ in plan:
            if what == "aff" and value != R.OWNER:
                owners.discard(target)  # type: ignore[arg-type]
        if not owners and not self.ctx.site_admins and any(p[0] == "aff" for p in plan):
            raise StanzaError("conflict", "a room needs at least one owner")
        actor_nick = actor.nick if actor is not None else None
        for what, target, value, reason in plan:
            if what == "role":
                self._apply_role(out, target, value, actor_nick, reason)  # type: ignore[arg-type]
            else:
                self._apply_affiliation(out, target, value, actor_nick, reason)  # type: ignore[arg-type]
        out.send(rcpt, _result_iq(stanza))

    def _item_bare(self, item: etree._Element) -> str:
        raw = item.get("jid")
        if raw is None and item.get("nick") is not None:
            target = self.occupants.get(nick_key_or_none(item.get("nick") or "") or "")
            if target is None:
                raise StanzaError("item-not-found", "no occupant has that nickname")
            return target.bare
        try:
            return str(JID.parse(raw or "").bare)
        except JIDError:
            raise StanzaError("jid-malformed", "bad JID in item") from None

    def _admin_list(
        self, q: etree._Element, item: etree._Element, actor_aff: str, actor: Occupant | None
    ) -> None:
        role, aff = item.get("role"), item.get("affiliation")
        if aff is not None:
            if aff not in R.AFFILIATIONS or aff == R.NONE:
                raise StanzaError("bad-request", f"cannot list affiliation {aff}")
            if not R.may_list_affiliation(actor_aff, aff):
                raise StanzaError("forbidden", "only admins may see affiliation lists")
            jids = sorted(j for j, a in self.affiliations.items() if a == aff)
            if aff == R.OWNER:
                jids = sorted(set(jids) | self.ctx.site_admins)
            for jid in jids:
                _sub(q, "{%s}item" % MUC_ADMIN, affiliation=aff, jid=jid)
            return
        if role not in (R.MODERATOR, R.PARTICIPANT, R.VISITOR):
            raise StanzaError("bad-request", f"cannot list role {role}")
        if actor is None or actor.role != R.MODERATOR:
            raise StanzaError("forbidden", "only moderators may see role lists")
        for occ in self.occupants.values():
            if occ.role == role:
                _sub(q, "{%s}item" % MUC_ADMIN, affiliation=self.affiliation(occ.bare),
                     role=role, nick=occ.nick, jid=occ.primary)  # fmt: skip

    def _apply_role(
        self, out: Out, occ: Occupant, role: str, actor: str | None, reason: str | None
    ) -> None:
        if role == R.NONE:
            self._evict(out, occ, "307", actor, reason)
            return
        occ.role = role
        occ.views.clear()
        self._broadcast_presence(out, occ, actor=actor, reason=reason)

    def _evict(
        self, out: Out, occ: Occupant, code: str, actor: str | None, reason: str | None
    ) -> None:
        """Kick (307), ban (301) or membership loss (321): everyone sees the code."""
        self.occupants.pop(occ.key, None)
        for full in occ.sessions:
            self.by_real.pop(full, None)
        self._changed()
        self._broadcast_presence(
            out, occ, type_="unavailable", codes=[code], actor=actor, reason=reason, payload=[]
        )
        occ.sessions.clear()

    def _apply_affiliation(
        self, out: Out, bare: str, aff: str, actor: str | None, reason: str | None
    ) -> None:
        if aff == R.NONE:
            self.affiliations.pop(bare, None)
        else:
            self.affiliations[bare] = aff
        out.affiliations.append((bare, aff))
        for occ in [o for o in self.occupants.values() if o.bare == bare]:
            if aff == R.OUTCAST:
                self._evict(out, occ, "301", actor, reason)
            elif self.settings.members_only and R.aff_rank(aff) < R.aff_rank(R.MEMBER):
                self._evict(out, occ, "321", actor, reason)
            else:
                occ.role = R.default_role(aff, self.settings.moderated)
                occ.views.clear()
                self._broadcast_presence(out, occ, actor=actor, reason=reason)

    # ---------------------------------------------------------------- owner §10
    def _owner(
        self,
        out: Out,
        stanza: etree._Element,
        rcpt: Recipient,
        query: etree._Element,
        kind: str | None,
    ) -> None:
        if self.affiliation(rcpt.bare) != R.OWNER:
            raise StanzaError("forbidden", "only owners may configure the room")
        if kind == "get":
            reply = _result_iq(stanza)
            q = _sub(reply, "{%s}query" % MUC_OWNER, MUC_OWNER)
            q.append(self.config_form())
            out.send(rcpt, reply)
            return
        destroy = query.find("{%s}destroy" % MUC_OWNER)
        if destroy is not None:
            self._destroy(out, destroy)
            out.send(rcpt, _result_iq(stanza))
            return
        form = forms.find_form(query)
        if form is None:
            raise StanzaError("bad-request", "expected a data form or <destroy/>")
        if form.get("type") == "cancel":
            if self.settings.locked:
                self._destroy(out, None)
            out.send(rcpt, _result_iq(stanza))
            return
        if form.get("type") != "submit":
            raise StanzaError("bad-request", "the form must be submitted")
        codes = self.apply_config(forms.form_values(form), out)
        out.send(rcpt, _result_iq(stanza))
        self._announce_config(out, codes)

    def _announce_config(self, out: Out, codes: list[str]) -> None:
        """§10.2.1: tell the occupants the configuration changed (104; 172/173 whois)."""
        if not codes:
            return
        msg = _el(MESSAGE, type="groupchat")
        msg.set("from", self.jid_str)
        x = _sub(msg, USER_X, MUC_USER)
        for code in codes:
            _sub(x, "{%s}status" % MUC_USER, code=code)
        tpl = Template(msg)
        out.sends.extend((r, tpl.to(r)) for r in self._recipients())

    def reconfigure(self, values: dict[str, list[str]]) -> Out:
        """The site changed this room's configuration (``[[muc.rooms]]`` on reload): the
        §10.2 form ``values`` applied as an owner's submission would be, and announced
        the same way; the occupants stay."""
        out = Out()
        self._announce_config(out, self.apply_config(values, out))
        return out

    def set_subject(self, text: str) -> Out:
        """The site set the subject (from the room itself, no occupant's nick), §8.1."""
        out = Out()
        self.subject, self.subject_nick = text, ""
        tpl = self._subject_tpl()
        out.sends.extend((r, tpl.to(r)) for r in self._recipients())
        out.save_room = self.settings.persistent
        return out

    def config_form(self) -> etree._Element:
        s = self.settings
        f = forms.Form("form", forms.ROOMCONFIG, title=f"Configuration of {self.jid_str}")
        f.add("muc#roomconfig_roomname", "text-single", [s.title], "Room title")
        f.add("muc#roomconfig_roomdesc", "text-single", [s.description], "Description")
        f.add("muc#roomconfig_persistentroom", "boolean", forms.bool_value(s.persistent),
              "Persistent")  # fmt: skip
        f.add("muc#roomconfig_publicroom", "boolean", forms.bool_value(s.public), "Public")
        f.add("muc#roomconfig_moderatedroom", "boolean", forms.bool_value(s.moderated),
              "Moderated")  # fmt: skip
        f.add("muc#roomconfig_membersonly", "boolean", forms.bool_value(s.members_only),
              "Members only")  # fmt: skip
        f.add("muc#roomconfig_changesubject", "boolean", forms.bool_value(s.change_subject),
              "Occupants may change the subject")  # fmt: skip
        f.add("muc#roomconfig_whois", "list-single", [s.whois], "Who may see real JIDs",
              options=[("moderators", "Moderators"), ("anyone", "Anyone")])  # fmt: skip
        f.add("muc#roomconfig_allowpm", "list-single", [s.allow_pm], "Private messages",
              options=[(v, v.capitalize()) for v in ALLOW_PM])  # fmt: skip
        f.add("muc#roomconfig_maxusers", "text-single", [str(s.max_occupants)], "Max occupants")
        f.add("muc#roomconfig_passwordprotectedroom", "boolean", forms.bool_value(bool(s.password)),
              "Password required to enter")  # fmt: skip
        f.add("muc#roomconfig_roomsecret", "text-private", [s.password], "Password")
        owners = sorted(j for j, a in self.affiliations.items() if a == R.OWNER)
        admins = sorted(j for j, a in self.affiliations.items() if a == R.ADMIN)
        f.add("muc#roomconfig_roomowners", "jid-multi", owners, "Owners")
        f.add("muc#roomconfig_roomadmins", "jid-multi", admins, "Admins")
        return f.el

    def apply_config(self, values: dict[str, list[str]], out: Out) -> list[str]:
        """Apply a submitted §10.2 form (unknown fields ignored); return status codes."""
        s = self.settings
        ftype = forms.first(values, "FORM_TYPE")
        if ftype not in (None, forms.ROOMCONFIG):
            raise StanzaError("bad-request", "wrong FORM_TYPE")
        old_whois = s.whois
        try:
            for var, attr in (
                ("muc#roomconfig_persistentroom", "persistent"),
                ("muc#roomconfig_publicroom", "public"),
                ("muc#roomconfig_moderatedroom", "moderated"),
                ("muc#roomconfig_membersonly", "members_only"),
                ("muc#roomconfig_changesubject", "change_subject"),
            ):
                raw = forms.first(values, var)
                if raw is not None:
                    setattr(s, attr, forms.parse_bool(raw))
            for var, attr in (("muc#roomconfig_roomname", "title"),
                              ("muc#roomconfig_roomdesc", "description")):  # fmt: skip
                raw = forms.first(values, var)
                if raw is not None:
                    setattr(s, attr, raw[:1024])
            whois = forms.first(values, "muc#roomconfig_whois")
            if whois is not None:
                if whois not in ("anyone", "moderators"):
                    raise ValueError(whois)
                s.whois = whois
            pm = forms.first(values, "muc#roomconfig_allowpm")
            if pm is not None:
                if pm not in ALLOW_PM:
                    raise ValueError(pm)
                s.allow_pm = pm
            protected = forms.first(values, "muc#roomconfig_passwordprotectedroom")
            secret = forms.first(values, "muc#roomconfig_roomsecret")
            if secret is not None:
                s.password = secret[:256]
            if protected is not None and not forms.parse_bool(protected):
                s.password = ""
            elif protected is not None and not s.password:
                raise StanzaError("not-acceptable", "a password-protected room needs a password")
            maxusers = forms.first(values, "muc#roomconfig_maxusers")
            if maxusers:
                s.max_occupants = max(1, min(int(maxusers), self.ctx.config.max_occupants))
        except ValueError:
            raise StanzaError("not-acceptable", "a configuration value is not valid") from None
        for var, aff in (("muc#roomconfig_roomowners", R.OWNER),
                         ("muc#roomconfig_roomadmins", R.ADMIN)):  # fmt: skip
            if var in values:
                for raw in values[var]:
                    try:
                        bare = str(JID.parse(raw).bare)
                    except JIDError:
                        raise StanzaError("jid-malformed", f"bad JID {raw!r}") from None
                    if self.affiliations.get(bare) != aff:
                        self.affiliations[bare] = aff
                        out.affiliations.append((bare, aff))
        s.locked = False
        for occ in self.occupants.values():
            occ.views.clear()
        out.save_room = True
        codes = ["104"]
        if old_whois != s.whois:
            codes.append("172" if s.whois == "anyone" else "173")
        return codes

    def _destroy(self, out: Out, destroy: etree._Element | None) -> None:
        """§10.9: every occupant gets unavailable with <destroy/>; the room is gone."""
        for occ in list(self.occupants.values()):
            p = self._presence_el(
                occ, type_="unavailable", with_jid=False, destroyed=True, payload=[]
            )
            x = p.find(USER_X)
            d = _sub(x, "{%s}destroy" % MUC_USER)  # type: ignore[arg-type]
            if destroy is not None:
                if destroy.get("jid"):
                    d.set("jid", destroy.get("jid"))
                reason = destroy.find("{%s}reason" % MUC_OWNER)
                if reason is not None and reason.text:
                    _sub(d, "{%s}reason" % MUC_USER).text = reason.text
            tpl = Template(p)
            out.sends.extend((r, tpl.to(r)) for r in occ.sessions.values())
        self.occupants.clear()
        self.by_real.clear()
        self._changed()
        out.gone = True

    # ---------------------------------------------------------------- register §7.10
    def _register(
        self,
        out: Out,
        stanza: etree._Element,
        rcpt: Recipient,
        query: etree._Element,
        kind: str | None,
    ) -> None:
        if self.affiliation(rcpt.bare) == R.OUTCAST:
            raise StanzaError("forbidden", "you are banned from this room")
        reply = _result_iq(stanza)
        mine = self.ctx.nicks.nick_of(self.name, rcpt.bare)
        if kind == "get":
            q = _sub(reply, "{%s}query" % REGISTER, REGISTER)
            if mine is not None:
                _sub(q, "{%s}registered" % REGISTER)
                _sub(q, "{%s}username" % REGISTER).text = mine
            else:
                _sub(q, "{%s}instructions" % REGISTER).text = "Choose your nickname in this room."
                f = forms.Form("form", forms.REGISTER, title="Nickname registration")
                f.add("muc#register_roomnick", "text-single", [], "Nickname")
                q.append(f.el)
            out.send(rcpt, reply)
            return
        if not self.ctx.config.allow_nick_registration:
            raise StanzaError("not-allowed", "nickname registration is disabled")
        if query.find("{%s}remove" % REGISTER) is not None:
            if self.ctx.nicks.room_registration(self.name, rcpt.bare) is None:
                raise StanzaError("item-not-found", "you have no nickname registered here")
            self.ctx.nicks.remove_jid(self.name, rcpt.bare)
            out.nick_changes.append((self.name, rcpt.bare, None))
            out.send(rcpt, reply)
            return
        form = forms.find_form(query)
        if form is None or form.get("type") != "submit":
            raise StanzaError("bad-request", "submit the registration form")
        values = forms.form_values(form)
        if forms.first(values, "FORM_TYPE") not in (None, forms.REGISTER):
            raise StanzaError("bad-request", "wrong FORM_TYPE")
        nick = forms.first(values, "muc#register_roomnick")
        if not nick:
            raise StanzaError("not-acceptable", "a nickname is required")
        key = self._check_nick(nick, rcpt.bare)
        if mine is not None and nick_key(mine) != key and self.ctx.config.enforce_registered_nick:
            raise StanzaError("not-acceptable", f"you already own the nickname {mine}")
        self.ctx.nicks.add(self.name, nick, rcpt.bare)
        out.nick_changes.append((self.name, rcpt.bare, nick))
        out.send(rcpt, reply)

    # ---------------------------------------------------------------- MAM
    def archive_refusal(self, bare: str) -> StanzaError | None:
        """Why ``bare`` may not read the archive now, or None: the rules for joining.

        XEP-0313 §7.1.2 (MUC archives): only someone with the right to enter the room at
        the time of the query. The query carries no password, so in a password-protected
        room that means an occupant (who entered with it), an owner or a site admin.
        """
        aff = self.affiliation(bare)
        if self.settings.locked and aff != R.OWNER:
            return StanzaError("item-not-found", "the room is still being configured")
        if aff == R.OUTCAST:
            return StanzaError("forbidden", "you are banned from this room")
        if self.settings.members_only and R.aff_rank(aff) < R.aff_rank(R.MEMBER):
            return StanzaError("registration-required", "this room's archive is for members only")
        if self.settings.password and aff != R.OWNER and bare not in self.ctx.site_admins:
            if not any(occ.bare == bare for occ in self.occupants.values()):
                return StanzaError("forbidden", "enter the room with its password first")
        return None

    def may_read_archive(self, bare: str) -> bool:
        return self.archive_refusal(bare) is None

    def open_to_anyone(self) -> bool:
        """Whether someone with no affiliation and no password may enter (and read)."""
        s = self.settings
        return not (s.locked or s.members_only or s.password)

    def _mam(
        self,
        out: Out,
        stanza: etree._Element,
        rcpt: Recipient,
        query: etree._Element,
        kind: str | None,
    ) -> None:
        refusal = self.archive_refusal(rcpt.bare)
        if refusal is not None:
            raise refusal
        if kind == "get":
            reply = _result_iq(stanza)
            q = _sub(reply, mam_mod.QUERY, mam_mod.MAM)
            q.append(mam_mod.query_form())
            out.send(rcpt, reply)
            return
        req = mam_mod.parse_query(query, self.ctx.config.mam_max_page, self.jid_str)
        out.mam = MamRequest(self.name, rcpt, stanza.get("id"), req)

    def mam_reply(self, request: MamRequest, page: mam_mod.MamPage) -> Out:
        out = Out()
        messages, fin = mam_mod.result_stanzas(request.query, page, self.jid_str)
        for msg in messages:
            out.send(request.rcpt, msg)
        iq = _el(IQ, type="result")
        iq.set("from", self.jid_str)
        if request.iq_id is not None:
            iq.set("id", request.iq_id)
        iq.append(fin)
        out.send(request.rcpt, iq)
        return out

    def mam_error(self, request: MamRequest, err: StanzaError) -> Out:
        out = Out()
        iq = _el(IQ, type="set")
        iq.set("from", str(request.rcpt.full))
        iq.set("to", self.jid_str)
        if request.iq_id is not None:
            iq.set("id", request.iq_id)
        self._error(out, iq, request.rcpt, err)
        return out

    # ------------------------------------------------- the service's administrator
    # ``xmppd say|subject|room-ban|room-unban|destroy-room``: the same state changes and
    # stanzas as an occupant's or an owner's request, made by the room itself (no actor).

    def say(self, text: str, now: datetime) -> Out:
        """A groupchat message from the room's own JID (e.g. a maintenance notice).

        It gets a stanza-id and goes into the history and the archive like an occupant's
        message, so those who join in the next minutes see the notice too.
        """
        out = Out()
        msg = _el(MESSAGE, type="groupchat")
        msg.set("from", self.jid_str)
        msg.set("id", self.ctx.new_id())
        _sub(msg, BODY).text = text
        stanza_id = self.ctx.new_id()
        _sub(msg, STANZA_ID, SID, id=stanza_id, by=self.jid_str)
        tpl = Template(msg)
        entry = HistoryEntry(stanza_id, now, "", self.jid_str, tpl.head + tpl.tail)
        self.history.append(entry)
        out.archive.append(entry)
        out.sends.extend((r, tpl.to(r)) for r in self._recipients())
        return out

    def set_subject_as_room(self, text: str) -> Out:
        """§8.1's subject change, from the room's own JID (no occupant nick)."""
        out = Out()
        self._apply_subject(out, text, "")
        return out

    def set_affiliation_as_service(self, bare: str, aff: str, reason: str | None) -> Out:
        """§9.1 ban (``outcast``), §9.2 unban (``none``) and the other affiliation changes,
        with no actor: banned occupants leave with 301 exactly as after an admin's ban.

        Raises :class:`StanzaError` for what the XEP forbids an owner too: a site
        administrator's affiliation, or removing the last owner.
        """
        if aff not in R.AFFILIATIONS:
            raise StanzaError("bad-request", f"unknown affiliation {aff}")
        if bare in self.ctx.site_admins:
            raise StanzaError("not-allowed", "site administrators always own the room")
        owners = {j for j, a in self.affiliations.items() if a == R.OWNER}
        if aff != R.OWNER and owners == {bare} and not self.ctx.site_admins:
            raise StanzaError("conflict", "a room needs at least one owner")
        out = Out()
        self._apply_affiliation(out, bare, aff, None, reason)
        return out

    def destroy(self, reason: str | None = None) -> Out:
        """§10.9 destruction by the service: occupants see what an owner's destroy shows."""
        request = etree.Element("{%s}destroy" % MUC_OWNER)
        if reason:
            etree.SubElement(request, "{%s}reason" % MUC_OWNER).text = reason
        out = Out()
        self._destroy(out, request)
        return out

    # ---------------------------------------------------------------- creation
    def join_as_creator(self, stanza: etree._Element, sender: JID, nick: str, now: datetime) -> Out:
        """The first presence into a room a user just created (§10.1: status 201)."""
        out = Out()
        rcpt = recipient(sender)
        try:
            self._join(out, stanza, sender, rcpt, nick, now, created=True)
        except StanzaError as err:
            self._error(out, stanza, rcpt, err)
            out.gone = True
        return out


def nick_key_or_none(nick: str) -> str | None:
    try:
        return nick_key(nick)
    except NickError:
        return None
