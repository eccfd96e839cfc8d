"""Run a :class:`~xmppd.migrate.model.Source` into xmppd's database (``xmppd import``).

Kinds are imported in :class:`~xmppd.migrate.model.Kind` order, **one transaction per
kind**: an error in one kind rolls back that kind only, and what came before stays (an
import may simply be run again). Records are streamed from the source and written in
batches of :attr:`Options.batch` rows (one SELECT of the keys present, one
``executemany``): memory stays flat whatever the archive's size.

Idempotent: each kind has a natural key (:data:`xmppd.storage.imports.KEYS`: account
localpart; roster (owner, contact); pending subscription (owner, from); offline message
(owner, stanza: it carries its ``<delay stamp/>``); vCard owner; private XML (owner,
namespace); room name; affiliation (room, jid); registered nick (scope, jid); room
archive (room, stanza-id); account archive (owner, stanza-id)). A record whose key is
already stored is skipped, or overwritten with ``replace``.

Problems (a row the reader could not read, a JID that does not parse, a domain xmppd
does not serve after ``--map-domain``, an affiliation or nick of a room that is not there,
a nick that collides, a reason cut to :data:`~xmppd.muc.roles.REASON_MAX` characters) are
counted and listed, never fatal, unless ``strict``: then the whole source is read first
and nothing is written if there is one. ``dry_run`` reads and checks everything and
writes nothing.

The archive of a room that exists neither in xmppd nor in the import (a destroyed room's,
which xmppd keeps and ``xmppd export`` writes as ``archive-only``) is imported as xmppd
holds it after a destroy: its messages without a room, there for MAM and the join
history of a room created again under that name. The report counts them per room
(:attr:`Report.archive_only`); they are no problem.

Left out on purpose (counted, not problems): a room's archived message without a body
(a subject change, a chat state), which xmppd does not archive either.

Registered nicks go through xmppd's own rules (:mod:`xmppd.muc.nicks`: the PRECIS key,
the character checks, the look-alike skeletons): **the first registration wins** — one
already in xmppd, else the one the source gives first (ejabberd's oldest) — and each
later one that equals or looks like it is a problem naming both, never silently dropped.

Passwords are handled by :mod:`xmppd.migrate.passwords`; none is ever printed or logged.
Archives must be imported before the server serves the rooms: xmppd's MAM and join
history page by row id, and imported rows get ids in the order the source gives them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from xmppd.migrate import model as m
from xmppd.migrate.domains import DomainMap
from xmppd.migrate.rows import LeftOut, Refused, RowMaker
from xmppd.muc.nicks import NickError, NickRegistry, check_nick, make_registration
from xmppd.muc.roles import REASON_MAX
from xmppd.storage import Database
from xmppd.storage.imports import Counts, ImportStore, KindWriter
from xmppd.storage.models import NICK_MAX, utcnow

__all__ = ["Importer", "Options", "Report"]

log = logging.getLogger(__name__)

#: kind -> (its table, how a record becomes a row)
_TABLES: dict[m.Kind, tuple[str, Callable[[RowMaker, Any], dict[str, Any]]]] = {
    m.Kind.ROSTERS: ("roster_items", RowMaker.roster),
    m.Kind.PENDING_SUBSCRIPTIONS: ("pending_subscriptions", RowMaker.pending),
    m.Kind.OFFLINE: ("offline_messages", RowMaker.offline),
    m.Kind.VCARDS: ("vcards", RowMaker.vcard),
    m.Kind.PRIVATE_XML: ("private_xml", RowMaker.private),
    m.Kind.ROOMS: ("muc_rooms", RowMaker.room_row),
    m.Kind.AFFILIATIONS: ("muc_affiliations", RowMaker.affiliation),
    m.Kind.ROOM_ARCHIVE: ("muc_messages", RowMaker.room_message),
    m.Kind.ACCOUNT_ARCHIVE: ("mam_messages", RowMaker.account_message),
}
_ARCHIVES = (m.Kind.ROOM_ARCHIVE, m.Kind.ACCOUNT_ARCHIVE)


@dataclass(slots=True)
class Options:
    dry_run: bool = False
    replace: bool = False
    strict: bool = False
    domains: DomainMap = field(default_factory=DomainMap)
    batch: int = 5000
    #: where the progress bar goes (None: no bar)
    progress: TextIO | None = None


@dataclass(slots=True)
class Report:
    read: dict[m.Kind, int] = field(default_factory=dict)
    written: dict[m.Kind, Counts] = field(default_factory=dict)
    problems: list[m.Problem] = field(default_factory=list)
    #: room name -> archived messages read for it, for rooms that exist neither in xmppd
    #: nor in the import (kept as a destroyed room's archive: see the module doc)
    archive_only: dict[str, int] = field(default_factory=dict)

    def problem(self, kind: m.Kind | None, where: str, text: str) -> None:
        self.problems.append(m.Problem(kind, where, text))


def _where(record: Any) -> str:
    """How to find a record in the listing (never its password or keys)."""
    for name in ("jid", "owner", "room"):
        value = getattr(record, name, None)
        if value:
            extra = getattr(record, "stanza_id", None) or getattr(record, "contact", None)
            return f"{value}{' ' + extra if extra else ''}"
    return type(record).__name__


class Importer:
    """One import of one source into one database (``db`` may be None for a dry run)."""

    def __init__(
        self, db: Database | None, domain: str, muc_host: str | None, options: Options
    ) -> None:
        self.db = db
        self.store = ImportStore(db) if db is not None else None
        self.options = options
        self.rows = RowMaker(domain, muc_host, options.domains)
        self._rooms: set[str] = set()

    def run(self, source: m.Source) -> Report:
        """Import every kind; with ``strict``, a clean dry pass first."""
        if self.options.strict and not self.options.dry_run:
            trial = Importer(self.db, self.rows.domain, self.rows.muc_host, self._dry())
            report = trial.run(source)
            if report.problems:
                return report
        report = Report()
        self._rooms = self.store.served_rooms() if self.store is not None else set()
        for kind in m.Kind:
            self._kind(source, kind, report)
        return report

    def _dry(self) -> Options:
        o = self.options
        return Options(True, o.replace, False, o.domains, o.batch, None)

    # ------------------------------------------------------------------ kinds
    def _records(self, source: m.Source, kind: m.Kind, report: Report) -> Iterator[Any]:
        """The kind's records; problems go to the report, with the kind filled in."""
        count = 0
        bar = self._bar(source, kind)
        try:
            for item in source.read(kind):
                count += 1
                if bar is not None:
                    bar.update(1)
                if isinstance(item, m.Problem):
                    report.problems.append(
                        item if item.kind else m.Problem(kind, item.where, item.text)
                    )
                    continue
                if m.KIND_OF.get(type(item)) is not kind:
                    report.problem(
                        kind, _where(item), f"a {type(item).__name__} among {kind.value}"
                    )
                    continue
                yield item
        finally:
            if bar is not None:
                bar.close()
            report.read[kind] = count

    def _bar(self, source: m.Source, kind: m.Kind) -> Any:
        out = self.options.progress
        if out is None or kind not in _ARCHIVES:
            return None
        from tqdm import tqdm

        total = source.estimate(kind)
        return tqdm(total=total, desc=kind.value, unit=" rows", file=out, unit_scale=True,
                    mininterval=0.5, leave=True)  # fmt: skip

    def _kind(self, source: m.Source, kind: m.Kind, report: Report) -> None:
        counts = Counts()
        report.written[kind] = counts
        if self.store is None or self.options.dry_run:
            self._pass(None, source, kind, report, counts)
            return
        with self.store.kind(self.options.replace) as writer:
            self._pass(writer, source, kind, report, counts)
        log.info("event=import_kind kind=%s added=%d replaced=%d skipped=%d", kind.name,
                 counts.added, counts.replaced, counts.skipped)  # fmt: skip

    def _pass(
        self, w: KindWriter | None, source: m.Source, kind: m.Kind, report: Report, counts: Counts
    ) -> None:
        records = self._records(source, kind, report)
        if kind is m.Kind.ACCOUNTS:
            self._accounts(w, records, report, counts)
        elif kind is m.Kind.NICKS:
            self._nicks(w, records, report, counts)
        else:
            self._table(w, kind, records, report, counts)

    def _flush(
        self, w: KindWriter | None, table: str, batch: list[dict[str, Any]], counts: Counts
    ) -> None:
        if batch:
            if w is None:
                counts.added += len(batch)  # a dry run: what would be offered to the table
            else:
                counts += w.put(table, batch)
            batch.clear()

    def _accounts(
        self, w: KindWriter | None, records: Iterator[Any], report: Report, counts: Counts
    ) -> None:
        batch: list[dict[str, Any]] = []
        for r in records:
            try:
                row, why = self.rows.account(r)
            except Refused as exc:
                report.problem(m.Kind.ACCOUNTS, _where(r), str(exc))
                continue
            if why is not None:
                report.problem(m.Kind.ACCOUNTS, _where(r), f"imported without usable keys: {why}")
            batch.append(row)
            if len(batch) >= self.options.batch:
                self._flush(w, "users", batch, counts)
        self._flush(w, "users", batch, counts)

    def _table(
        self,
        w: KindWriter | None,
        kind: m.Kind,
        records: Iterator[Any],
        report: Report,
        counts: Counts,
    ) -> None:
        table, make = _TABLES[kind]
        batch: list[dict[str, Any]] = []
        for r in records:
            try:
                row = make(self.rows, r)
            except LeftOut:
                counts.left_out += 1
                continue
            except (Refused, ValueError) as exc:
                report.problem(kind, _where(r), str(exc))
                continue
            if kind is m.Kind.ROOMS:
                self._rooms.add(row["name"])
            elif kind is m.Kind.ROOM_ARCHIVE:
                if row["room"] not in self._rooms:  # a destroyed room's archive
                    report.archive_only[row["room"]] = report.archive_only.get(row["room"], 0) + 1
            elif "room" in row and row["room"] not in self._rooms:
                report.problem(
                    kind, _where(r), f"no room {row['room']!r} in xmppd nor in the import"
                )
                continue
            if kind is m.Kind.AFFILIATIONS and len(r.reason.strip()) > REASON_MAX:
                where = f"{r.room} {r.jid}"
                report.problem(kind, where, f"reason cut to {REASON_MAX} characters")
            batch.append(row)
            if len(batch) >= self.options.batch:
                self._flush(w, table, batch, counts)
        self._flush(w, table, batch, counts)

    def _nicks(
        self, w: KindWriter | None, records: Iterator[Any], report: Report, counts: Counts
    ) -> None:
        """First registration wins (see the module doc); collisions are problems."""
        registry = w.nick_registry() if w is not None else self._stored_registry()
        now = utcnow()
        for r in records:
            where = f"{r.room} {r.jid} {r.nick!r}"
            try:
                scope, jid = self.rows.nick_scope(r)
                if scope and scope not in self._rooms:
                    raise Refused(f"no room {scope!r} in xmppd nor in the import")
                check_nick(r.nick, NICK_MAX)
                reg = make_registration(scope, r.nick, jid)
            except Refused as exc:
                report.problem(m.Kind.NICKS, where, str(exc))
                continue
            except NickError as exc:
                report.problem(m.Kind.NICKS, where, f"invalid nickname: {exc.text}")
                continue
            taken = registry.conflict_with(reg)
            if taken is not None:
                report.problem(m.Kind.NICKS, where, f"collides with {taken.nick!r} registered to "
                               f"{taken.jid}{' in ' + taken.scope if taken.scope else ''}: the "
                               "first registration keeps it")  # fmt: skip
                continue
            held = registry.nick_of(scope, jid) if registry.holds(scope, jid) else None
            if held == r.nick:
                counts.skipped += 1
                continue
            if held is not None and not self.options.replace:
                report.problem(m.Kind.NICKS, where, f"{jid} already holds {held!r} here (--replace "
                               "to take the imported one)")  # fmt: skip
                continue
            registry.put(reg)
            if held is None:
                counts.added += 1
            else:
                counts.replaced += 1
            if w is not None:
                w.put_nick(scope, r.nick, jid, now)

    def _stored_registry(self) -> NickRegistry:
        if self.store is None:
            return NickRegistry()
        return self.store.nick_registry()
