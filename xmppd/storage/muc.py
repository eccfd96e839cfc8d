"""The MUC service's storage: rooms, the message archive, affiliations, registered nicks.

The tables are defined with the others in :mod:`xmppd.storage.models` (migration
``0002_muc``); :class:`MucStore` holds every query on them, so the MUC service and the
nick commands never see an engine or a connection. Its methods block: trio code calls
them through ``AsyncDatabase.run``; start-up and the CLI may call them directly. The
archive is written in batches by the service, never per message.

Times are stored as naive UTC, like the rest of storage (MariaDB has no zone type).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from xmppd.jid import JID, JIDError
from xmppd.muc.mam import MamPage, MamQuery
from xmppd.muc.nicks import (
    ALL_ROOMS,
    NickError,
    NickRegistry,
    Registration,
    check_nick,
    make_registration,
    nick_key,
)
from xmppd.storage.database import Database
from xmppd.storage.mam_paging import fetch_page
from xmppd.storage.models import NICK_MAX, muc_affiliations, muc_messages, muc_nicks, muc_rooms
from xmppd.storage.sql import upsert

#: The logger name the nick events have always had (operators filter on it).
log = logging.getLogger("xmppd.muc.storage")

rooms, messages, affiliations, nicks = muc_rooms, muc_messages, muc_affiliations, muc_nicks


def _naive(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(tzinfo=None)


def _aware(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC)


@dataclass(slots=True)
class StoredRoom:
    name: str
    settings_json: str
    subject: str
    subject_nick: str
    affiliations: dict[str, str]
    #: members whose ``member`` affiliation in-band registration gave (XEP-0045 §7.10)
    registered_members: set[str] = field(default_factory=set)
    #: bare JID -> why its affiliation was given (only those with a reason)
    reasons: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Write:
    """One queued change; ``kind`` is message, retract (a message's tombstone), room,
    room_delete, affiliation or nick."""

    kind: str
    values: dict[str, Any]


def _apply(conn: sa.Connection, w: Write) -> None:
    v = w.values
    if w.kind == "room":
        fields = {k: v[k] for k in ("settings_json", "subject", "subject_nick")}
        upsert(conn, rooms, ["name"], {"name": v["name"], "created_at": _naive(
            datetime.now(UTC)), **fields}, fields)  # fmt: skip
    elif w.kind == "room_delete":
        for table in (rooms, affiliations):
            key = table.c.name if table is rooms else table.c.room
            conn.execute(table.delete().where(key == v["name"]))
        conn.execute(nicks.delete().where(nicks.c.room == v["name"]))
    elif w.kind == "affiliation":
        where = sa.and_(affiliations.c.room == v["room"], affiliations.c.jid == v["jid"])
        if v["affiliation"] == "none":
            conn.execute(affiliations.delete().where(where))
        else:
            row = {**v, "by_registration": bool(v.get("by_registration", False)),
                   "reason": v.get("reason") or ""}  # fmt: skip
            changed = {k: row[k] for k in ("affiliation", "by_registration", "reason")}
            upsert(conn, affiliations, ["room", "jid"], row, changed)
    elif w.kind == "nick":
        _set_nick(conn, v["room"], v["jid"], v["nick"])
    elif w.kind == "retract":
        # XEP-0424 §5 / XEP-0425 §4: only the tombstone stays
        where = sa.and_(messages.c.room == v["room"], messages.c.stanza_id == v["stanza_id"])
        conn.execute(messages.update().where(where).values(stanza=v["stanza"]))
    else:
        raise ValueError(f"unknown write {w.kind}")


def _set_nick(conn: sa.Connection, room: str, jid: str, nick: str | None) -> None:
    """Give ``jid`` exactly ``nick`` in ``room`` (None: no nick), taking it from others."""
    conn.execute(nicks.delete().where(nicks.c.room == room, nicks.c.jid == jid))
    if nick is None:
        return
    key = nick_key(nick)
    conn.execute(nicks.delete().where(nicks.c.room == room, nicks.c.nick_key == key))
    conn.execute(
        nicks.insert(),
        {
            "room": room,
            "nick_key": key,
            "nick": nick,
            "jid": jid,
            "created_at": _naive(datetime.now(UTC)),
        },
    )


def _bare(jid: str) -> str:
    try:
        parsed = JID.parse(jid)
    except JIDError as exc:
        raise ValueError(f"invalid JID {jid!r}: {exc}") from None
    if parsed.local is None:
        raise ValueError(f"{jid!r} is not a user's JID")
    return str(parsed.bare)


def _checked(nick: str) -> str:
    try:
        check_nick(nick, NICK_MAX)
    except NickError as exc:
        raise ValueError(f"invalid nickname {nick!r}: {exc.text}") from None
    return nick


def _registry(conn: sa.Connection) -> tuple[NickRegistry, list[Registration]]:
    """Every registration, loaded as the server loads them, and the room-scoped squats."""
    rows = conn.execute(sa.select(nicks.c.room, nicks.c.nick, nicks.c.jid))
    registry = NickRegistry()
    released = registry.replace_all((r.room, r.nick, r.jid) for r in rows)
    return registry, released


def _release_squats(conn: sa.Connection, reserved: NickRegistry | None = None) -> int:
    """Delete room-scoped registrations of names reserved service-wide for someone else
    (or looking like one), saying so in the log; the site-wide reservation wins.

    ``reserved`` holds the service-wide registrations when the caller has them already
    (the sync has just built them: no second pass over every member's name).
    """
    if reserved is None:
        reserved, released = _registry(conn)
    else:
        rows = conn.execute(
            sa.select(nicks.c.room, nicks.c.nick, nicks.c.jid).where(nicks.c.room != ALL_ROOMS)
        )
        released = []
        for row in rows:
            try:
                reg = make_registration(row.room, row.nick, row.jid)
            except NickError:
                continue
            if reserved.reserved_for_other(reg) is not None:
                released.append(reg)
    for reg in released:
        holder = reserved.reserved_for_other(reg)
        conn.execute(nicks.delete().where(nicks.c.room == reg.scope, nicks.c.jid == reg.jid))
        log.info(
            "event=muc_nick_released room=%s nick=%s jid=%s reserved_for=%s",
            reg.scope, reg.nick, reg.jid, holder.jid if holder else "?",
        )  # fmt: skip
    return len(released)


@dataclass(slots=True)
class SyncResult:
    added: int = 0
    changed: int = 0
    removed: int = 0
    skipped: int = 0
    #: room-scoped registrations of reserved names that were deleted
    released: int = 0


def _reserved(
    accepted: NickRegistry, current: dict[str, tuple[str, str]], wanted: dict[str, str]
) -> NickRegistry:
    """The service-wide registrations after a sync: the accepted ones, plus those of other
    users still in the table (not pruned) whose nick none of the accepted took over."""
    for jid, (nick, key) in current.items():
        if jid not in wanted and accepted.owner(ALL_ROOMS, key) is None:
            try:
                accepted.put(make_registration(ALL_ROOMS, nick, jid))
            except NickError:
                continue
    return accepted


class MucStore:
    """Every query of the MUC service and of the nick commands, on one :class:`Database`.

    Methods block: trio code calls them through ``AsyncDatabase.run``; start-up and the
    CLI call them directly.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    def load_rooms(self) -> list[StoredRoom]:
        with self.db.connection() as conn:
            affs: dict[str, dict[str, str]] = {}
            by_registration: dict[str, set[str]] = {}
            reasons: dict[str, dict[str, str]] = {}
            for row in conn.execute(sa.select(affiliations)):
                affs.setdefault(row.room, {})[row.jid] = row.affiliation
                if row.by_registration:
                    by_registration.setdefault(row.room, set()).add(row.jid)
                if row.reason:
                    reasons.setdefault(row.room, {})[row.jid] = row.reason
            return [
                StoredRoom(
                    r.name,
                    r.settings_json,
                    r.subject,
                    r.subject_nick,
                    affs.get(r.name, {}),
                    by_registration.get(r.name, set()),
                    reasons.get(r.name, {}),
                )
                for r in conn.execute(sa.select(rooms).order_by(rooms.c.name))
            ]

    def load_recent(self, room: str, limit: int) -> list[tuple[str, datetime, str, str, str, str]]:
        """The last ``limit`` archived messages of ``room``, oldest first:
        ``(stanza_id, stamp, nick, sender, stanza, origin_id or "")``."""
        if limit <= 0:
            return []
        with self.db.connection() as conn:
            rows = conn.execute(
                sa.select(
                    messages.c.stanza_id,
                    messages.c.stamp,
                    messages.c.nick,
                    messages.c.sender,
                    messages.c.stanza,
                    messages.c.origin_id,
                )
                .where(messages.c.room == room)
                .order_by(messages.c.id.desc())
                .limit(limit)
            ).all()
        return [(r[0], _aware(r[1]), r[2], r[3], r[4], r[5] or "") for r in reversed(rows)]

    def find_message(
        self, room: str, target: str, author: str | None = None
    ) -> tuple[str, datetime, str, str, str] | None:
        """A retraction's target (XEP-0424/0425) in the archive: by the room's stanza-id,
        or, for ``author``'s own retraction, by the origin-id its client gave (the newest
        such): ``(stanza_id, stamp, nick, sender, stanza)``, or None."""
        m = messages.c
        match = m.stanza_id == target
        if author is not None:
            match = sa.or_(match, sa.and_(m.origin_id == target, m.sender == author))
        cols = (m.stanza_id, m.stamp, m.nick, m.sender, m.stanza)
        with self.db.connection() as conn:
            row = conn.execute(
                sa.select(*cols)
                .where(m.room == room, match)
                .order_by((m.stanza_id == target).desc(), m.id.desc())
                .limit(1)
            ).first()
        return None if row is None else (row[0], _aware(row[1]), row[2], row[3], row[4])

    def write_batch(self, batch: Sequence[Write]) -> None:
        """Apply queued writes in order, in one transaction."""
        if not batch:
            return
        with self.db.transaction() as conn:
            pending: list[dict[str, Any]] = []
            for w in batch:
                if w.kind == "message":
                    v = dict(w.values)
                    v["stamp"] = _naive(v["stamp"])
                    pending.append(v)
                    continue
                if pending:
                    conn.execute(messages.insert(), pending)
                    pending = []
                _apply(conn, w)
            if pending:
                conn.execute(messages.insert(), pending)

    def query_archive(self, room: str, q: MamQuery) -> MamPage:
        """One MAM page (XEP-0313 + XEP-0059) from the archive, oldest first."""
        m = messages.c
        base = [m.room == room]
        if q.start is not None:
            base.append(m.stamp >= _naive(q.start))
        if q.end is not None:
            base.append(m.stamp <= _naive(q.end))
        if q.with_ is not None:
            base.append(m.nick == q.with_)
        with self.db.connection() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(messages).where(*base))
            total = int(count.scalar_one())
            return fetch_page(conn, messages, [m.room == room], base[1:], q, total)

    def load_nicks(self) -> list[tuple[str, str, str]]:
        """Every registration as ``(room, nick, jid)`` (room "" = all rooms)."""
        with self.db.connection() as conn:
            return [
                (r.room, r.nick, r.jid)
                for r in conn.execute(sa.select(nicks.c.room, nicks.c.nick, nicks.c.jid))
            ]

    def register_nick(self, nick: str, jid: str, room: str = "") -> None:
        """Reserve ``nick`` for ``jid`` (in every room by default); replaces either's old entry.

        Taking over the exact nick from another user in the same scope is an administrator's
        prerogative; a nick that merely looks like another user's registration (or, for a
        room, equals or looks like a service-wide reservation) is refused with ValueError.
        A service-wide reservation releases room-scoped registrations of the name.
        """
        nick, bare = _checked(nick), _bare(jid)
        new = make_registration(room, nick, bare)
        with self.db.transaction() as conn:
            registry, _released = _registry(conn)
            taken = registry.conflict_with(new)
            if taken is not None and not (taken.scope == room and taken.key == new.key):
                where = "in every room" if taken.scope == ALL_ROOMS else f"in room {taken.scope}"
                raise ValueError(
                    f"{nick!r} is or looks like {taken.nick!r}, registered to {taken.jid} {where}"
                )
            _set_nick(conn, room, bare, nick)
            if room == ALL_ROOMS:
                _release_squats(conn)
        log.info("event=muc_nick_registered room=%s nick=%s jid=%s", room or "*", nick, bare)

    def unregister_nick(self, nick: str, room: str = "") -> bool:
        """Free ``nick``; False if it was not registered."""
        key = nick_key(_checked(nick))
        with self.db.transaction() as conn:
            gone = conn.execute(
                nicks.delete().where(nicks.c.room == room, nicks.c.nick_key == key)
            ).rowcount
        log.info(
            "event=muc_nick_unregistered room=%s nick=%s existed=%s", room or "*", nick, bool(gone)
        )
        return bool(gone)

    def sync_nicks(
        self, pairs: Iterable[tuple[str, str]], room: str = "", prune: bool = False
    ) -> SyncResult:
        """Make the registry hold ``(nick, jid)`` pairs, idempotently, in ONE transaction.

        Invalid pairs are skipped (counted), and so is a nick that equals or looks like one
        accepted before it: who already holds a nick keeps it, otherwise the earlier pair wins
        (the forum lists its oldest accounts first). With ``prune``, registrations in ``room``
        whose JID is not among the accepted pairs are removed (a forum user deleted upstream).
        Service-wide reservations release room-scoped registrations of the same names.
        """
        result = SyncResult()
        offered: list[Registration] = []
        for nick, jid in pairs:
            try:
                offered.append(make_registration(room, _checked(nick), _bare(jid)))
            except (ValueError, NickError):
                result.skipped += 1
        with self.db.transaction() as conn:
            current = {
                r.jid: (r.nick, r.nick_key)
                for r in conn.execute(sa.select(nicks).where(nicks.c.room == room))
            }
            # Holders of their nick first, then in the order given; each keeps its place.
            order = sorted(
                range(len(offered)),
                key=lambda i: (current.get(offered[i].jid, ("",))[0] != offered[i].nick, i),
            )
            accepted = NickRegistry()
            for i in order:
                reg = offered[i]
                if accepted.holds(room, reg.jid) or accepted.conflict_with(reg) is not None:
                    result.skipped += 1  # two users for one nick (or look-alikes): first wins
                    continue
                accepted.put(reg)
            wanted = {reg.jid: reg.nick for reg in accepted}
            for bare, nick in wanted.items():
                have = current.get(bare)
                if have is not None and have[0] == nick:
                    continue
                _set_nick(conn, room, bare, nick)
                if have is None:
                    result.added += 1
                else:
                    result.changed += 1
            if prune:
                stale = [j for j in current if j not in wanted]
                for i in range(0, len(stale), 500):
                    conn.execute(
                        nicks.delete().where(
                            nicks.c.room == room, nicks.c.jid.in_(stale[i : i + 500])
                        )
                    )
                result.removed = len(stale)
            if room == ALL_ROOMS:
                kept = {} if prune else current  # pruned rows are gone
                result.released = _release_squats(conn, _reserved(accepted, kept, wanted))
        log.info(
            "event=muc_nicks_synced room=%s added=%d changed=%d removed=%d skipped=%d released=%d",
            room or "*", result.added, result.changed, result.removed, result.skipped,
            result.released,
        )  # fmt: skip
        return result
