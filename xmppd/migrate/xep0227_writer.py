"""Write a migration :class:`Source` as XEP-0227 plus xmppd's extension (docs/xep0227.md).

Streamed with lxml's incremental ``xmlfile``: nothing is held but the record being
written. XEP-0227 wants each user's data inside one ``<user/>``, so the per-account kinds
are merged owner by owner; the source must yield each of them ordered by owner (code
point order, as :class:`xmppd.migrate.xmppd_source.XmppdSource` does) and the writer
stops with :class:`WriteError` if one is not. Rooms are merged the same way by room JID.
Passwords are never written by xmppd's source (it has only SCRAM keys); a source that has
plain ones gets them written as XEP-0227's ``password`` attribute.
Every stored stanza is re-parsed (no DTD, no entities) before it goes into the file, so a
damaged row cannot break the document: it is a :class:`Problem` and left out.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from lxml import etree

from xmppd.migrate import pie, pie_units
from xmppd.migrate.model import (
    Account,
    AccountMessage,
    Affiliation,
    Kind,
    OfflineMessage,
    PendingSubscription,
    PrivateXml,
    Problem,
    RegisteredNick,
    Room,
    RoomMessage,
    RosterItem,
    Source,
    VCard,
)

USER_KINDS = (
    Kind.ACCOUNTS,
    Kind.ROSTERS,
    Kind.PENDING_SUBSCRIPTIONS,
    Kind.OFFLINE,
    Kind.VCARDS,
    Kind.PRIVATE_XML,
    Kind.ACCOUNT_ARCHIVE,
)
ROOM_KINDS = (Kind.ROOMS, Kind.AFFILIATIONS, Kind.NICKS, Kind.ROOM_ARCHIVE)
_SAFE = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
_NSMAP = {None: pie.PIE, "xp": pie.XP, "muc": pie.XP_MUC}


class WriteError(ValueError):
    """The source cannot be written as XEP-0227 (records out of order)."""


@dataclass
class WriteResult:
    counts: dict[Kind, int] = field(default_factory=lambda: dict.fromkeys(Kind, 0))
    problems: list[Problem] = field(default_factory=list)


class _Merge:
    """One kind's records, peeked one ahead, checked to come in ``key`` order."""

    def __init__(
        self, kind: Kind, records: Iterator[Any], key: Callable[[Any], str], result: WriteResult
    ) -> None:
        self.kind, self.records, self.key, self.result = kind, records, key, result
        self.head: Any = None
        self.last = ""
        self.advance()

    def advance(self) -> None:
        for record in self.records:
            if isinstance(record, Problem):
                self.result.problems.append(record)
                continue
            key = self.key(record)
            if key < self.last:
                raise WriteError(f"{self.kind.value} are not ordered ({key!r} after {self.last!r})")
            self.last = key
            self.head = record
            return
        self.head = None

    def take(self, key: str) -> Iterator[Any]:
        """The records of ``key``, consumed."""
        while self.head is not None and self.key(self.head) == key:
            record = self.head
            self.result.counts[self.kind] += 1
            self.advance()
            yield record


def write_xep0227(source: Source, out: IO[bytes]) -> WriteResult:
    """Write everything ``source`` has to ``out`` (binary, UTF-8 XML)."""
    result = WriteResult()
    with etree.xmlfile(out, encoding="utf-8") as xf:
        xf.write_declaration()
        with xf.element("{%s}server-data" % pie.PIE, nsmap=_NSMAP):
            _Writer(xf, result).users(source)
            _Writer(xf, result).rooms(source)
    return result


def _owner(record: Any) -> str:
    return record.jid if isinstance(record, Account) else record.owner


def _room_key(record: Any) -> str:
    return record.jid if isinstance(record, Room) else record.room


class _Writer:
    def __init__(self, xf: Any, result: WriteResult) -> None:
        self.xf, self.result = xf, result

    def stanza(self, kind: Kind, where: str, xml: str) -> etree._Element | None:
        try:
            return etree.fromstring(xml.encode("utf-8"), _SAFE)
        except etree.XMLSyntaxError as exc:
            self.result.problems.append(
                Problem(kind, where, f"stored XML unreadable, left out: {exc}")
            )
            self.result.counts[kind] -= 1
            return None

    # -- users -------------------------------------------------------------------------

    def users(self, source: Source) -> None:
        merges = [_Merge(k, iter(source.read(k)), _owner, self.result) for k in USER_KINDS]
        host = None
        with contextlib.ExitStack() as open_host:
            while True:
                keys = [m.key(m.head) for m in merges if m.head is not None]
                if not keys:
                    break
                owner = min(keys)
                local, _, domain = owner.rpartition("@")
                if domain != host:
                    open_host.close()
                    open_host.enter_context(self.xf.element("{%s}host" % pie.PIE, jid=domain))
                    host = domain
                self.user(owner, local, domain, merges)

    def user(self, owner: str, local: str, domain: str, merges: list[_Merge]) -> None:
        by_kind = {m.kind: m for m in merges}
        accounts = list(by_kind[Kind.ACCOUNTS].take(owner))
        account: Account | None = accounts[0] if accounts else None
        attrs = {"name": local}
        if account is None:
            attrs["{%s}external" % pie.XP] = "true"
        else:
            if account.password is not None:
                attrs["password"] = account.password
            if account.created_at is not None:
                attrs["{%s}created" % pie.XP] = pie.format_stamp(account.created_at)
        with self.xf.element("{%s}user" % pie.PIE, attrs):
            if account is not None:
                for keys in filter(None, (account.scram, *account.more_scram)):
                    self.xf.write(_scram(keys))
            items: list[RosterItem] = list(by_kind[Kind.ROSTERS].take(owner))
            if items:
                self.xf.write(_roster(items))
            for sub in by_kind[Kind.PENDING_SUBSCRIPTIONS].take(owner):
                self.pending(sub)
            self.offline(by_kind[Kind.OFFLINE].take(owner), domain)
            for card in by_kind[Kind.VCARDS].take(owner):
                self.vcard(card)
            self.private(list(by_kind[Kind.PRIVATE_XML].take(owner)))
            self.archive(by_kind[Kind.ACCOUNT_ARCHIVE].take(owner))

    def pending(self, sub: PendingSubscription) -> None:
        el = self.stanza(Kind.PENDING_SUBSCRIPTIONS, f"{sub.owner} from {sub.from_jid}", sub.stanza)
        if el is not None:
            self.xf.write(el)

    def offline(self, messages: Iterator[OfflineMessage], domain: str) -> None:
        first = next(messages, None)
        if first is None:
            return
        with self.xf.element("{%s}offline-messages" % pie.PIE):
            for msg in (first, *messages):
                el = self.stanza(Kind.OFFLINE, f"offline message of {msg.owner}", msg.stanza)
                if el is None:
                    continue
                try:
                    own = pie_units.delay_stamp(el, domain)
                except pie_units.Bad:
                    own = None
                if own != msg.stamp:
                    el.set("{%s}stamp" % pie.XP, pie.format_stamp(msg.stamp))
                self.xf.write(el)

    def vcard(self, card: VCard) -> None:
        el = self.stanza(Kind.VCARDS, f"vCard of {card.owner}", card.xml)
        if el is not None:
            self.xf.write(el)

    def private(self, items: list[PrivateXml]) -> None:
        if not items:
            return
        query = etree.Element("{%s}query" % pie.PRIVATE, nsmap={None: pie.PRIVATE})
        for item in items:
            where = f"private {item.namespace} of {item.owner}"
            holder = self.stanza(Kind.PRIVATE_XML, where, f"<x>{item.xml}</x>")
            if holder is not None:
                query.extend(list(holder))
        self.xf.write(query)

    def archive(self, messages: Iterator[AccountMessage]) -> None:
        first = next(messages, None)
        if first is None:
            return
        with self.xf.element("{%s}archive" % pie.PIE_MAM, nsmap={None: pie.PIE_MAM}):
            for msg in (first, *messages):
                el = self.stanza(Kind.ACCOUNT_ARCHIVE, f"{msg.owner} {msg.stanza_id}", msg.stanza)
                if el is not None:
                    result = _result(msg.stanza_id, msg.stamp, el)
                    result.set("{%s}with" % pie.XP, msg.with_jid)
                    result.set("{%s}outgoing" % pie.XP, pie.flag(msg.outgoing))
                    self.xf.write(result)

    # -- rooms -------------------------------------------------------------------------

    def rooms(self, source: Source) -> None:
        def per_room(kind: Kind) -> Iterator[Any]:
            for record in source.read(kind):
                if not (isinstance(record, RegisteredNick) and "@" not in record.room):
                    yield record

        merges = [_Merge(k, per_room(k), _room_key, self.result) for k in ROOM_KINDS]
        by_kind = {m.kind: m for m in merges}
        while True:
            keys = [m.key(m.head) for m in merges if m.head is not None]
            if not keys:
                break
            jid = min(keys)
            service = jid.partition("@")[2]
            with self._service(service):
                self.room(jid, by_kind)
        nicks = _Merge(Kind.NICKS, iter(source.read(Kind.NICKS)), _room_key, self.result)
        while nicks.head is not None:
            service = nicks.key(nicks.head)
            if "@" in service:
                nicks.advance()  # written with its room
                continue
            with self._service(service):
                for reg in nicks.take(service):
                    self.xf.write(_nick(reg))

    def _service(self, service: str) -> Any:
        """A host element (the service's parent domain) holding one service element."""
        return _Nested(self.xf, [
            ("{%s}host" % pie.PIE, {"jid": service.partition(".")[2] or service}),
            ("{%s}service" % pie.XP_MUC, {"jid": service}),
        ])  # fmt: skip

    def room(self, jid: str, by_kind: dict[Kind, _Merge]) -> None:
        rooms: list[Room] = list(by_kind[Kind.ROOMS].take(jid))
        attrs = _room_attrs(rooms[0]) if rooms else {"archive-only": "true"}
        with self.xf.element("{%s}room" % pie.XP_MUC, {"jid": jid, **attrs}):
            if rooms:
                for el in _room_children(rooms[0]):
                    self.xf.write(el)
            for aff in by_kind[Kind.AFFILIATIONS].take(jid):
                self.xf.write(_affiliation(aff))
            for reg in by_kind[Kind.NICKS].take(jid):
                self.xf.write(_nick(reg))
            messages: Iterator[RoomMessage] = by_kind[Kind.ROOM_ARCHIVE].take(jid)
            first = next(messages, None)
            if first is None:
                return
            with self.xf.element("{%s}archive" % pie.PIE_MAM, nsmap={None: pie.PIE_MAM}):
                for msg in (first, *messages):
                    el = self.stanza(Kind.ROOM_ARCHIVE, f"{msg.room} {msg.stanza_id}", msg.stanza)
                    if el is None:
                        continue
                    result = _result(msg.stanza_id, msg.stamp, el)
                    result.set("{%s}nick" % pie.XP_MUC, msg.nick)
                    if msg.sender:
                        result.set("{%s}sender" % pie.XP_MUC, msg.sender)
                    self.xf.write(result)


class _Nested:
    """Several ``xmlfile`` elements opened and closed as one context."""

    def __init__(self, xf: Any, levels: list[tuple[str, dict[str, str]]]) -> None:
        self.managers = [xf.element(tag, attrs) for tag, attrs in levels]

    def __enter__(self) -> None:
        for manager in self.managers:
            manager.__enter__()

    def __exit__(self, *exc: Any) -> None:
        for manager in reversed(self.managers):
            manager.__exit__(*exc)


def _el(
    tag: str, text: str = "", nsmap: dict[Any, str] | None = None, **attrs: str
) -> etree._Element:
    el = etree.Element(tag, attrs, nsmap=nsmap)
    if text:
        el.text = text
    return el


def _scram(keys: Any) -> etree._Element:
    el = _el("{%s}scram-credentials" % pie.SCRAM, nsmap={None: pie.SCRAM})
    el.set("mechanism", pie.MECHANISM_OF[keys.hash_name])
    for name, value in (
        ("iter-count", str(keys.iterations)),
        ("salt", base64.b64encode(keys.salt).decode()),
        ("server-key", base64.b64encode(keys.server_key).decode()),
        ("stored-key", base64.b64encode(keys.stored_key).decode()),
    ):
        etree.SubElement(el, "{%s}%s" % (pie.SCRAM, name)).text = value
    return el


def _roster(items: list[RosterItem]) -> etree._Element:
    query = _el("{%s}query" % pie.ROSTER, nsmap={None: pie.ROSTER})
    for item in items:
        el = etree.SubElement(query, "{%s}item" % pie.ROSTER, jid=item.contact)
        if item.name:
            el.set("name", item.name)
        el.set("subscription", item.subscription)
        if item.ask_out:
            el.set("ask", "subscribe")
        if item.approved:
            el.set("approved", "true")
        if item.pending_in:
            el.set("{%s}pending-in" % pie.XP, "true")
        for group in item.groups:
            etree.SubElement(el, "{%s}group" % pie.ROSTER).text = group
    return query


def _result(stanza_id: str, stamp: Any, message: etree._Element) -> etree._Element:
    result = _el("{%s}result" % pie.MAM, nsmap={None: pie.MAM}, id=stanza_id)
    fwd = etree.SubElement(result, "{%s}forwarded" % pie.FORWARD, nsmap={None: pie.FORWARD})
    delay = etree.SubElement(fwd, "{%s}delay" % pie.DELAY, nsmap={None: pie.DELAY})
    delay.set("stamp", pie.format_stamp(stamp))
    fwd.append(message)
    return result


def _room_attrs(room: Room) -> dict[str, str]:
    attrs = {
        "public": pie.flag(room.public),
        "persistent": pie.flag(room.persistent),
        "members-only": pie.flag(room.members_only),
        "moderated": pie.flag(room.moderated),
        "change-subject": pie.flag(room.change_subject),
        "whois": room.whois,
        "allow-pm": room.allow_pm,
    }
    if room.max_occupants is not None:
        attrs["max-occupants"] = str(room.max_occupants)
    if room.created_at is not None:
        attrs["created"] = pie.format_stamp(room.created_at)
    return attrs


def _room_children(room: Room) -> Iterator[etree._Element]:
    m = pie.XP_MUC
    if room.title:
        yield _el("{%s}title" % m, room.title)
    if room.description:
        yield _el("{%s}description" % m, room.description)
    if room.password is not None:
        yield _el("{%s}password" % m, room.password)
    if room.subject or room.subject_nick:
        yield _el("{%s}subject" % m, room.subject, nick=room.subject_nick)


def _affiliation(aff: Affiliation) -> etree._Element:
    return _el("{%s}affiliation" % pie.XP_MUC, aff.reason, jid=aff.jid, affiliation=aff.affiliation)


def _nick(reg: RegisteredNick) -> etree._Element:
    return _el("{%s}nick" % pie.XP_MUC, reg.nick, jid=reg.jid)
