"""Read an XEP-0227 file (``ejabberdctl export_piefxis``, Prosody, ``xmppd export``).

What is read (docs/xep0227.md has the whole format): ``<server-data>`` (``urn:xmpp:pie:0``
or the drafts' namespace) → ``<host jid>`` → ``<user name password?>`` with
``<scram-credentials/>`` (XEP-0227 1.1) or ejabberd's older ``password='scram:…'``, the
roster, ``<presence type='subscribe'/>`` (pending requests, as ejabberd writes them),
``<offline-messages/>``, the vCard, private storage and the 1.1 message archive; and
xmppd's MUC extension (rooms, affiliations, nicks, room archives) under ``<host/>``.
XInclude ``<include href/>`` is followed as XEP-0227 §5 requires, but only to files in the
main file's directory tree (ejabberd writes one file per host next to the main one).

The file is streamed: each :meth:`Xep0227Source.read` is one pass of lxml's ``iterparse``
that clears every element once handled, so memory stays flat for archives of millions.
No DTD is accepted (the file is refused at its first element: no entity, internal or
external, is ever expanded) and nothing is fetched from the network. Elements the reader
does not know, privacy lists and PEP nodes are counted :class:`Problem`s, never fatal;
problems about no one kind are reported in the accounts pass only, so each is listed once.
A user with a plain ``password`` gives an :class:`Account` with it (every hash can be
derived) even if SCRAM keys are there too; a user with neither gives no account (its data
is still read) — a problem unless xmppd marked it ``xp:external`` (forum accounts).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from xmppd.migrate import pie
from xmppd.migrate import pie_units as units
from xmppd.migrate.model import Account, Kind, Problem, Record, Room, ScramKeys
from xmppd.migrate.pie_units import Bad

#: How deep XInclude may nest (XEP-0227's own layout needs 2: main → host → user).
MAX_INCLUDE_DEPTH = 4

_P, _OLD, _M = pie.PIE, pie.PIE_OLD, pie.XP_MUC
_CONTAINERS = {
    ("top", "server-data"): "server",
    ("top", "host"): "host",
    ("top", "user"): "user",
    ("server", "host"): "host",
    ("host", "user"): "user",
    ("user", "offline-messages"): "offline",
}
#: Containers named by their full tag (their namespace is not XEP-0227's own).
_TAGGED = {
    ("user", "{%s}archive" % pie.PIE_MAM): "uarchive",
    ("host", "{%s}service" % _M): "service",
    ("service", "{%s}room" % _M): "room",
    ("room", "{%s}archive" % pie.PIE_MAM): "rarchive",
}
#: Room settings carried as attributes of xmppd's <room/>: attribute → (field, type).
ROOM_FLAGS = {
    "public": "public",
    "persistent": "persistent",
    "members-only": "members_only",
    "moderated": "moderated",
    "change-subject": "change_subject",
}
_IGNORED = {
    "{jabber:iq:privacy}query": "privacy lists are not imported (xmppd uses blocking, XEP-0191)",
    "{http://jabber.org/protocol/pubsub}pubsub": "PEP nodes are not imported",
}


@dataclass
class _Frame:
    kind: str
    name: str = ""  # host jid, user's bare JID, service or room JID
    password: str | None = None
    scram: list[ScramKeys] = field(default_factory=list)
    external: bool = False
    room: dict[str, object] = field(default_factory=dict)
    archive_only: bool = False


class Xep0227Source:
    """An XEP-0227 file (and the files it includes) as a migration :class:`Source`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.description = f"XEP-0227 file {self.path.name}"

    def estimate(self, kind: Kind) -> int | None:
        return None  # counting would cost a pass of its own

    def read(self, kind: Kind) -> Iterator[Record | Problem]:
        walk = _Walk(kind, self.path.resolve().parent)
        yield from walk.file(self.path, [_Frame("top")], 0)


class _Walk:
    """One pass over the file, yielding ``kind``'s records (and the general problems when
    ``kind`` is the first)."""

    def __init__(self, kind: Kind, root: Path) -> None:
        self.kind = kind
        self.root = root
        self.general = kind is Kind.ACCOUNTS

    def problem(self, kind: Kind | None, where: str, text: str) -> Iterator[Problem]:
        if kind is self.kind or (kind is None and self.general):
            yield Problem(kind, where, text)

    def file(self, path: Path, frames: list[_Frame], depth: int) -> Iterator[Record | Problem]:
        name = path.name
        try:
            source = path.open("rb")
        except OSError as exc:
            yield from self.problem(None, name, f"cannot be read: {exc.strerror}")
            return
        events = etree.iterparse(
            source, events=("start", "end"), resolve_entities=False, no_network=True,
            load_dtd=False, remove_comments=True, remove_pis=True, huge_tree=False,
        )  # fmt: skip
        stack = list(frames)
        unit_depth = 0  # >0: inside a unit element, whose subtree is kept until its end
        first = True
        try:
            with source:
                for event, el in events:
                    if first:
                        first = False
                        if el.getroottree().docinfo.doctype:
                            yield from self.problem(
                                None, name, "has a DTD (<!DOCTYPE>): refused, nothing read"
                            )
                            return
                    if unit_depth:
                        unit_depth += 1 if event == "start" else -1
                        if unit_depth:
                            continue
                        if event == "end":
                            yield from self.unit(stack[-1], el, f"{name}:{el.sourceline}")
                            yield from self.include(el, stack, depth)
                            _forget(el)
                            continue
                    if event == "start":
                        kind = _container(stack[-1].kind, el.tag)
                        if kind is None and stack[-1].kind == "top":
                            text = f"<{etree.QName(el).localname}/> is not XEP-0227's root"
                            yield from self.problem(None, name, text)
                            return
                        if kind is None:
                            unit_depth = 1
                        else:
                            stack.append(self.enter(kind, el, stack[-1]))
                    else:
                        yield from self.leave(stack.pop(), f"{name}:{el.sourceline}")
                        _forget(el)
        except etree.XMLSyntaxError as exc:
            yield from self.problem(None, name, f"is not well-formed XML: {exc}; the rest is lost")

    # -- containers --------------------------------------------------------------------

    def enter(self, kind: str, el: etree._Element, parent: _Frame) -> _Frame:
        frame = _Frame(kind)
        if kind == "host":
            frame.name = el.get("jid", "")
        elif kind == "user":
            frame.name = f"{el.get('name', '')}@{parent.name}"
            frame.password = el.get("password")
            frame.external = el.get("{%s}external" % pie.XP) == "true"
            frame.room["created"] = el.get("{%s}created" % pie.XP)
        elif kind in ("service", "room"):
            frame.name = el.get("jid", "")
            frame.room = dict(el.attrib)
            frame.archive_only = el.get("archive-only") == "true"
        else:
            frame.name = parent.name
        return frame

    def leave(self, frame: _Frame, where: str) -> Iterator[Record | Problem]:
        if frame.kind == "user" and self.kind is Kind.ACCOUNTS:
            yield from self.account(frame, where)
        elif frame.kind == "room" and self.kind is Kind.ROOMS and not frame.archive_only:
            try:
                yield _room(frame)
            except (Bad, ValueError) as exc:
                yield Problem(Kind.ROOMS, where, f"room {frame.name!r}: {exc}")

    def account(self, frame: _Frame, where: str) -> Iterator[Record | Problem]:
        try:
            jid = units.bare(frame.name, "user")
            created = frame.room.get("created")
            created_at = pie.read_stamp(str(created)) if created else None
            password, scram = frame.password, list(frame.scram)
            if password is not None and password.startswith("scram:"):
                scram.append(units.old_scram(password.removeprefix("scram:")))
                password = None
        except (Bad, ValueError) as exc:
            yield Problem(Kind.ACCOUNTS, where, f"user {frame.name!r}: {exc}")
            return
        if password:
            yield Account(jid, password=password, created_at=created_at)
        elif scram:
            yield Account(jid, scram=scram[0], created_at=created_at, more_scram=tuple(scram[1:]))
        elif not frame.external:
            text = f"user {jid} has no password or SCRAM keys: no account, its data is read"
            yield Problem(Kind.ACCOUNTS, where, text)

    # -- units -------------------------------------------------------------------------

    def include(
        self, el: etree._Element, stack: list[_Frame], depth: int
    ) -> Iterator[Record | Problem]:
        if el.tag != "{%s}include" % pie.XINCLUDE:
            return
        href = el.get("href", "")
        where = f"include {href!r}"
        if el.get("parse", "xml") != "xml" or el.get("xpointer") is not None:
            yield from self.problem(None, where, "only whole XML files are included")
            return
        target = (self.root / href).resolve()
        if "://" in href or href.startswith("/") or not target.is_relative_to(self.root):
            yield from self.problem(None, where, "refused: only files beside the main file")
            return
        if depth >= MAX_INCLUDE_DEPTH:
            yield from self.problem(None, where, f"refused: includes nest deeper than {depth}")
            return
        yield from self.file(target, stack, depth + 1)

    def unit(self, parent: _Frame, el: etree._Element, where: str) -> Iterator[Record | Problem]:
        """One finished element in a container: its records, or a problem."""
        tag = el.tag
        if tag == "{%s}include" % pie.XINCLUDE:
            return
        want = _UNIT_KINDS.get((parent.kind, tag))
        if want is None:
            if parent.kind == "user" and tag in _IGNORED:
                yield from self.problem(None, where, f"user {parent.name}: {_IGNORED[tag]}")
            else:
                what = etree.QName(tag)
                text = (
                    f"unknown <{what.localname} xmlns='{what.namespace or ''}'/> in <{parent.kind}>"
                )
                yield from self.problem(None, where, text)
            return
        if parent.kind == "user" and tag == "{%s}scram-credentials" % pie.SCRAM:
            try:
                parent.scram.append(units.scram_keys(el))
            except Bad as exc:
                yield from self.problem(Kind.ACCOUNTS, where, f"user {parent.name}: {exc}")
            return
        if parent.kind == "room" and tag in _ROOM_FIELDS:
            parent.room[_ROOM_FIELDS[tag]] = el.text or ""
            if tag == "{%s}subject" % _M:
                parent.room["subject_nick"] = el.get("nick", "")
            return
        if want is not self.kind:
            return
        try:
            for record in _convert(parent, el):
                if isinstance(record, Bad):
                    yield Problem(want, where, f"{parent.name}: {record}")
                else:
                    yield record
        except Bad as exc:
            yield Problem(want, where, f"{parent.name}: {exc}")


def _forget(el: etree._Element) -> None:
    """Drop a handled element (and its subtree) so the tree never grows."""
    el.clear(keep_tail=False)
    parent = el.getparent()
    if parent is not None:
        parent.remove(el)


def _container(parent_kind: str, tag: object) -> str | None:
    if not isinstance(tag, str):
        return None
    kind = _TAGGED.get((parent_kind, tag))
    if kind is not None:
        return kind
    namespace, _, local = tag[1:].partition("}")
    if namespace in pie.PIE_NAMESPACES:
        return _CONTAINERS.get((parent_kind, local))
    return None


def _host_of(frame: _Frame) -> str:
    return frame.name.partition("@")[2] if frame.kind == "user" else frame.name


_UNIT_KINDS: dict[tuple[str, str], Kind] = {
    ("user", "{%s}scram-credentials" % pie.SCRAM): Kind.ACCOUNTS,
    ("user", "{%s}query" % pie.ROSTER): Kind.ROSTERS,
    ("user", "{%s}presence" % pie.CLIENT): Kind.PENDING_SUBSCRIPTIONS,
    ("offline", "{%s}message" % pie.CLIENT): Kind.OFFLINE,
    ("user", "{%s}vCard" % pie.VCARD): Kind.VCARDS,
    ("user", "{%s}query" % pie.PRIVATE): Kind.PRIVATE_XML,
    ("uarchive", "{%s}result" % pie.MAM): Kind.ACCOUNT_ARCHIVE,
    ("service", "{%s}nick" % _M): Kind.NICKS,
    ("room", "{%s}nick" % _M): Kind.NICKS,
    ("room", "{%s}affiliation" % _M): Kind.AFFILIATIONS,
    ("rarchive", "{%s}result" % pie.MAM): Kind.ROOM_ARCHIVE,
}
_ROOM_FIELDS = {
    "{%s}title" % _M: "title",
    "{%s}description" % _M: "description",
    "{%s}password" % _M: "password",
    "{%s}subject" % _M: "subject",
}
for _tag in _ROOM_FIELDS:
    _UNIT_KINDS[("room", _tag)] = Kind.ROOMS


def _convert(parent: _Frame, el: etree._Element) -> Iterator[Record | Bad]:
    owner = parent.name
    kind, tag = parent.kind, el.tag
    if kind in ("user", "offline", "uarchive"):
        owner = units.bare(parent.name, "user")
    host = _host_of(parent)
    if tag == "{%s}query" % pie.ROSTER:
        yield from units.roster(el, owner)
    elif tag == "{%s}presence" % pie.CLIENT:
        yield units.pending(el, owner)
    elif kind == "offline":
        yield units.offline(el, owner, host)
    elif tag == "{%s}vCard" % pie.VCARD:
        yield units.vcard(el, owner)
    elif tag == "{%s}query" % pie.PRIVATE:
        yield from units.private(el, owner)
    elif kind == "uarchive":
        yield units.account_message(el, owner, host)
    elif tag == "{%s}nick" % _M:
        yield units.nick(el, parent.name)
    elif tag == "{%s}affiliation" % _M:
        yield units.affiliation(el, parent.name)
    elif kind == "rarchive":
        yield units.room_message(el, parent.name, host)


def _room(frame: _Frame) -> Room:
    attrs = frame.room
    jid = units.bare(frame.name, "room jid")
    flags = {
        name: pie.parse_flag(attrs.get(attr), Room.__dataclass_fields__[name].default)  # type: ignore[arg-type]
        for attr, name in ROOM_FLAGS.items()
    }
    max_occupants = attrs.get("max-occupants")
    created = attrs.get("created")
    return Room(
        jid=jid,
        title=str(attrs.get("title", "")),
        description=str(attrs.get("description", "")),
        password=str(attrs["password"]) if "password" in attrs else None,
        whois=str(attrs.get("whois", "moderators")),
        allow_pm=str(attrs.get("allow-pm", "anyone")),
        max_occupants=int(str(max_occupants)) if max_occupants else None,
        subject=str(attrs.get("subject", "")),
        subject_nick=str(attrs.get("subject_nick", "")),
        created_at=pie.read_stamp(str(created)) if created else None,
        **flags,
    )
