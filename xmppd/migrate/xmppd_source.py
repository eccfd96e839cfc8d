"""xmppd's own database as a migration :class:`Source`, for ``xmppd export``.

Records come out in the order :class:`xmppd.storage.export.ExportStore` reads them (by
owner, by room), which the XEP-0227 writer relies on to write each user and room once.
Accounts carry the stored SCRAM keys of each hash they have (xmppd never has the
password; an account imported with one hash's keys has iterations 0 for the other).
Rooms are ``name@<muc host>``; a nick registered for every room has the service's domain
as its room. An offline message is dated by the ``<delay/>`` xmppd put on it when storing
(what its recipient will see), else by when it was stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from lxml import etree

from xmppd.migrate import pie_units
from xmppd.migrate.model import (
    Account,
    AccountMessage,
    Affiliation,
    Kind,
    OfflineMessage,
    PendingSubscription,
    PrivateXml,
    Problem,
    Record,
    RegisteredNick,
    Room,
    RoomMessage,
    RosterItem,
    ScramKeys,
    VCard,
)
from xmppd.muc.roomconfig import RoomSettings
from xmppd.storage.database import HASH_NAMES, Database
from xmppd.storage.export import ExportStore

_TABLES = {
    Kind.ACCOUNTS: "users",
    Kind.ROSTERS: "roster_items",
    Kind.PENDING_SUBSCRIPTIONS: "pending_subscriptions",
    Kind.OFFLINE: "offline_messages",
    Kind.VCARDS: "vcards",
    Kind.PRIVATE_XML: "private_xml",
    Kind.ROOMS: "muc_rooms",
    Kind.AFFILIATIONS: "muc_affiliations",
    Kind.NICKS: "muc_nicks",
    Kind.ROOM_ARCHIVE: "muc_messages",
    Kind.ACCOUNT_ARCHIVE: "mam_messages",
}
_SAFE = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


class XmppdSource:
    """The accounts, rosters, rooms and archives of one xmppd database."""

    def __init__(self, db: Database, domain: str, muc_host: str) -> None:
        self.store = ExportStore(db)
        self.domain = domain
        self.muc_host = muc_host
        self.description = f"xmppd database of {domain}"

    def estimate(self, kind: Kind) -> int | None:
        return self.store.count(_TABLES[kind])

    def read(self, kind: Kind) -> Iterator[Record | Problem]:
        return getattr(self, "_" + kind.name.lower())()  # type: ignore[no-any-return]

    def _room(self, name: str) -> str:
        return f"{name}@{self.muc_host}" if name else self.muc_host

    def _accounts(self) -> Iterator[Record | Problem]:
        for row in self.store.users():
            keys = [
                ScramKeys(
                    name,
                    getattr(row, f"{name}_salt"),
                    getattr(row, f"{name}_iterations"),
                    getattr(row, f"{name}_stored_key"),
                    getattr(row, f"{name}_server_key"),
                )
                for name in HASH_NAMES
                if getattr(row, f"{name}_iterations") > 0  # 0: no keys of that hash
            ]
            jid = f"{row.localpart}@{self.domain}"
            first = keys[0] if keys else None
            yield Account(jid, scram=first, created_at=row.created_at, more_scram=tuple(keys[1:]))

    def _rosters(self) -> Iterator[Record | Problem]:
        for row in self.store.roster():
            try:
                groups = tuple(json.loads(row.groups_json))
            except ValueError:
                yield Problem(
                    Kind.ROSTERS, f"roster {row.owner} {row.contact}", "groups unreadable"
                )
                groups = ()
            yield RosterItem(
                row.owner, row.contact, row.name or "", row.subscription, bool(row.ask_out),
                bool(row.pending_in), bool(row.approved), groups,
            )  # fmt: skip

    def _pending_subscriptions(self) -> Iterator[Record | Problem]:
        for row in self.store.pending():
            yield PendingSubscription(row.owner, row.from_jid, row.stanza)

    def _offline(self) -> Iterator[Record | Problem]:
        for row in self.store.offline():
            stamp = row.created_at
            try:
                element = etree.fromstring(row.stanza.encode("utf-8"), _SAFE)
                stamp = pie_units.delay_stamp(element, self.domain) or stamp
            except (etree.XMLSyntaxError, pie_units.Bad):
                pass  # the writer reports a stanza that is not XML
            yield OfflineMessage(row.owner, row.stanza, stamp)

    def _vcards(self) -> Iterator[Record | Problem]:
        for row in self.store.vcards():
            yield VCard(row.owner, row.xml)

    def _private_xml(self) -> Iterator[Record | Problem]:
        for row in self.store.private_xml():
            yield PrivateXml(row.owner, row.namespace, row.xml)

    def _account_archive(self) -> Iterator[Record | Problem]:
        for row in self.store.account_messages():
            with_jid = row.with_bare + (f"/{row.with_resource}" if row.with_resource else "")
            yield AccountMessage(
                row.owner, row.stanza_id, row.stamp, with_jid, bool(row.outgoing), row.stanza
            )

    def _rooms(self) -> Iterator[Record | Problem]:
        for row in self.store.rooms():
            try:
                s = RoomSettings.from_json(row.settings_json)
            except (ValueError, TypeError) as exc:
                yield Problem(Kind.ROOMS, f"room {row.name}", f"settings unreadable: {exc}")
                continue
            yield Room(
                jid=self._room(row.name), title=s.title, description=s.description,
                public=s.public, persistent=s.persistent, members_only=s.members_only,
                moderated=s.moderated, password=s.password or None, whois=s.whois,
                change_subject=s.change_subject, allow_pm=s.allow_pm,
                max_occupants=s.max_occupants, subject=row.subject,
                subject_nick=row.subject_nick, created_at=row.created_at,
            )  # fmt: skip

    def _affiliations(self) -> Iterator[Record | Problem]:
        for row in self.store.affiliations():
            yield Affiliation(self._room(row.room), row.jid, row.affiliation, row.reason)

    def _nicks(self) -> Iterator[Record | Problem]:
        for row in self.store.nicks():
            yield RegisteredNick(self._room(row.room), row.jid, row.nick)

    def _room_archive(self) -> Iterator[Record | Problem]:
        for row in self.store.room_messages():
            yield RoomMessage(
                self._room(row.room), row.stanza_id, row.stamp, row.nick, row.sender, row.stanza
            )
