"""One neutral record -> one row of xmppd's tables (after ``--map-domain``).

Pure functions: no database. Each returns ``(table, row)`` or raises :class:`Refused`
with the reason the importer lists as a :class:`~xmppd.migrate.model.Problem` (a JID that
does not parse, a domain xmppd does not serve, a stanza that is not a message…).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from xmppd.jid import JID, JIDError
from xmppd.migrate import model as m
from xmppd.migrate.domains import DomainMap
from xmppd.migrate.passwords import key_columns
from xmppd.migrate.stanzas import NoBody, StanzaProblem, as_archived
from xmppd.muc.roles import REASON_MAX
from xmppd.muc.roomconfig import ALLOW_PM, WHOIS, RoomSettings
from xmppd.storage.models import JID_MAX, NICK_MAX, utcnow

__all__ = ["LeftOut", "Refused", "RowMaker"]

_MEMO = 50_000


class Refused(ValueError):
    """A record xmppd cannot take; the text says why."""


class LeftOut(Exception):
    """A record xmppd deliberately does not keep (counted, not a problem)."""


def _naive(when: datetime | None) -> datetime:
    if when is None:
        return utcnow()
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return when


@dataclass(slots=True)
class RowMaker:
    """The rules that tie records to one xmppd: its domain, its MUC service, the mapping."""

    domain: str
    muc_host: str | None
    domains: DomainMap

    _seen: dict[str, JID | str] = field(default_factory=dict)

    def jid(self, raw: str, *, bare: bool = True) -> JID:
        """``raw`` mapped and parsed (PRECIS is not cheap: an archive names few JIDs many
        times, so the last :data:`_MEMO` distinct ones are remembered)."""
        parsed = self._seen.get(raw)
        if parsed is None:
            try:
                parsed = JID.parse(self.domains.jid(raw))
                if len(str(parsed)) > JID_MAX:
                    parsed = f"JID too long: {raw!r}"
            except JIDError as exc:
                parsed = f"invalid JID {raw!r}: {exc}"
            if len(self._seen) >= _MEMO:
                self._seen.clear()
            self._seen[raw] = parsed
        if isinstance(parsed, str):
            raise Refused(parsed)
        return parsed.bare if bare else parsed

    def local(self, raw: str) -> JID:
        """A bare JID of an account of this server."""
        parsed = self.jid(raw)
        if parsed.local is None or parsed.domain != self.domain:
            raise Refused(f"{parsed} is not an account of {self.domain} (the served domain)")
        return parsed

    def room(self, raw: str) -> str:
        """The room's name (localpart) on this server's MUC service."""
        parsed = self.jid(raw)
        if self.muc_host is None:
            raise Refused("the MUC service is off (muc.enabled = false)")
        if parsed.local is None or parsed.domain != self.muc_host:
            raise Refused(f"{parsed} is not a room of {self.muc_host} (the MUC service)")
        return parsed.local

    # ------------------------------------------------------------------ rows
    def account(self, r: m.Account) -> tuple[dict[str, Any], str | None]:
        local = self.local(r.jid).local
        assert local is not None
        keys, why = key_columns(r)
        return {"localpart": local, "created_at": _naive(r.created_at), **keys}, why

    def roster(self, r: m.RosterItem) -> dict[str, Any]:
        if r.subscription not in ("none", "to", "from", "both"):
            raise Refused(f"unknown subscription state {r.subscription!r}")
        return {
            "owner": str(self.local(r.owner)),
            "contact": str(self.jid(r.contact)),
            "name": r.name or None,
            "subscription": r.subscription,
            "ask_out": r.ask_out,
            "pending_in": r.pending_in,
            "approved": r.approved,
            "groups_json": json.dumps(sorted(set(r.groups))),
        }

    def pending(self, r: m.PendingSubscription) -> dict[str, Any]:
        return {
            "owner": str(self.local(r.owner)),
            "from_jid": str(self.jid(r.from_jid)),
            "stanza": self.domains.stanza(r.stanza),
            "created_at": utcnow(),
        }

    def offline(self, r: m.OfflineMessage) -> dict[str, Any]:
        return {
            "owner": str(self.local(r.owner)),
            "stanza": self.domains.stanza(r.stanza),
            "created_at": _naive(r.stamp),
        }

    def vcard(self, r: m.VCard) -> dict[str, Any]:
        return {"owner": str(self.local(r.owner)), "xml": r.xml, "updated_at": utcnow()}

    def private(self, r: m.PrivateXml) -> dict[str, Any]:
        xml = self.domains.stanza(r.xml) if r.xml.lstrip().startswith("<") else r.xml
        return {
            "owner": str(self.local(r.owner)),
            "namespace": r.namespace,
            "xml": xml,
            "size": len(xml.encode("utf-8")),
        }

    def room_row(self, r: m.Room) -> dict[str, Any]:
        name = self.room(r.jid)
        settings = RoomSettings(
            title=r.title,
            description=r.description,
            persistent=r.persistent,
            public=r.public,
            moderated=r.moderated,
            members_only=r.members_only,
            change_subject=r.change_subject,
            whois=r.whois if r.whois in WHOIS else "moderators",
            allow_pm=r.allow_pm if r.allow_pm in ALLOW_PM else "anyone",
            password=r.password or "",
        )
        if r.max_occupants is not None and r.max_occupants > 0:
            settings.max_occupants = r.max_occupants
        return {
            "name": name,
            "settings_json": settings.to_json(),
            "subject": r.subject,
            "subject_nick": r.subject_nick[:NICK_MAX],
            "created_at": _naive(r.created_at),
        }

    def affiliation(self, r: m.Affiliation) -> dict[str, Any]:
        if r.affiliation not in ("owner", "admin", "member", "outcast"):
            raise Refused(f"unknown affiliation {r.affiliation!r}")
        return {
            "room": self.room(r.room),
            "jid": str(self.jid(r.jid)),
            "affiliation": r.affiliation,
            "by_registration": False,
            "reason": r.reason.strip()[:REASON_MAX],  # the importer lists a longer one
        }

    def nick_scope(self, r: m.RegisteredNick) -> tuple[str, str]:
        """``(scope, bare jid)``: scope "" for a service-wide registration."""
        target = self.domains.jid(r.room)
        jid = self.jid(r.jid)
        if jid.local is None:
            raise Refused(f"{jid} is not a user's JID")
        if self.muc_host is not None and target.lower() == self.muc_host:
            return "", str(jid)
        return self.room(r.room), str(jid)

    def room_message(self, r: m.RoomMessage) -> dict[str, Any]:
        if not r.stanza_id or len(r.stanza_id) > 64:
            raise Refused(f"archive id {r.stanza_id!r} is not 1..64 characters")
        sender = ""
        if r.sender:
            sender = str(self.jid(r.sender))
        name = self.room(r.room)
        try:
            stanza = as_archived(r.stanza, r.room, r.stanza_id, r.nick)
        except NoBody as exc:
            raise LeftOut(str(exc)) from None
        except StanzaProblem as exc:
            raise Refused(str(exc)) from None
        return {
            "room": name,
            "stanza_id": r.stanza_id,
            "stamp": _naive(r.stamp),
            "nick": r.nick[:NICK_MAX],
            "sender": sender,
            "stanza": self.domains.stanza(stanza),
            "origin_id": None,
        }

    def account_message(self, r: m.AccountMessage) -> dict[str, Any]:
        if not r.stanza_id or len(r.stanza_id) > 64:
            raise Refused(f"archive id {r.stanza_id!r} is not 1..64 characters")
        other = self.jid(r.with_jid, bare=False)
        owner = str(self.local(r.owner))
        try:
            stanza = as_archived(r.stanza, r.owner, r.stanza_id, None)
        except StanzaProblem as exc:
            raise Refused(str(exc)) from None
        return {
            "owner": owner,
            "stanza_id": r.stanza_id,
            "with_bare": str(other.bare),
            "with_resource": other.resource or "",
            "outgoing": r.outgoing,
            "stamp": _naive(r.stamp),
            "stanza": self.domains.stanza(stanza),
        }
