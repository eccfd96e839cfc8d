"""The queries of ``xmppd import``: batches of rows put by their natural keys.

Each kind the importer moves is one table (``users`` … ``mam_messages``) with a natural
key (:data:`KEYS`): a row whose key is already there is skipped, or overwritten with
``replace``, so running an import twice duplicates nothing. The importer holds one
:class:`KindWriter` (one transaction) per kind and calls :meth:`KindWriter.put` with
batches of a few thousand rows: one SELECT of the keys present, one ``executemany``
INSERT, and with ``replace`` one ``executemany`` UPDATE per batch. Registered nicks go
through :meth:`KindWriter.nick_registry` and :meth:`KindWriter.put_nick` so they are
checked against the registry exactly as ``register-nick`` checks them.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa

from xmppd.muc.nicks import NickRegistry, nick_key
from xmppd.storage import models
from xmppd.storage.database import Database
from xmppd.storage.sql import upsert

__all__ = ["KEYS", "Counts", "ImportStore", "KindWriter"]

_users = cast(sa.Table, models.User.__table__)
_roster = cast(sa.Table, models.RosterItemRow.__table__)
_versions = cast(sa.Table, models.RosterVersion.__table__)
_pending = cast(sa.Table, models.PendingSubscription.__table__)
_offline = cast(sa.Table, models.OfflineMessage.__table__)

#: table name -> (the table, its natural key). An offline message is the same message
#: when its stanza is (it carries its own ``<delay stamp/>``): MariaDB's DATETIME keeps no
#: fraction of a second, so the time column could not tell two apart anyway.
KEYS: dict[str, tuple[sa.Table, tuple[str, ...]]] = {
    "users": (_users, ("localpart",)),
    "roster_items": (_roster, ("owner", "contact")),
    "pending_subscriptions": (_pending, ("owner", "from_jid")),
    "offline_messages": (_offline, ("owner", "stanza")),
    "vcards": (models.vcards, ("owner",)),
    "private_xml": (models.private_xml, ("owner", "namespace")),
    "muc_rooms": (models.muc_rooms, ("name",)),
    "muc_affiliations": (models.muc_affiliations, ("room", "jid")),
    "muc_messages": (models.muc_messages, ("room", "stanza_id")),
    "mam_messages": (models.mam_messages, ("owner", "stanza_id")),
}
_CHUNK = 500  # keys per IN (...) list


@dataclass(slots=True)
class Counts:
    added: int = 0
    replaced: int = 0
    skipped: int = 0

    def __iadd__(self, other: Counts) -> Counts:
        self.added += other.added
        self.replaced += other.replaced
        self.skipped += other.skipped
        return self


class KindWriter:
    """Writes of one kind, in the one transaction :meth:`ImportStore.kind` opened."""

    def __init__(self, conn: sa.Connection, replace: bool) -> None:
        self.conn = conn
        self.replace = replace
        self._roster_owners: set[str] = set()

    def _present(self, table: sa.Table, key: tuple[str, ...], rows: Sequence[dict[str, Any]]):  # type: ignore[no-untyped-def]
        """The keys of ``rows`` already in ``table`` (grouped by the key's first column)."""
        first, rest = key[0], key[1:]
        groups: dict[Any, list[Any]] = defaultdict(list)
        for row in rows:
            groups[row[first]].append(tuple(row[c] for c in rest))
        found: set[tuple[Any, ...]] = set()
        for head, tails in groups.items():
            if not rest:
                continue
            if len(rest) > 1:
                raise ValueError("keys of more than two columns are not supported")
            col = table.c[rest[0]]
            values = list({t[0] for t in tails})
            for i in range(0, len(values), _CHUNK):
                query = sa.select(col).where(
                    table.c[first] == head, col.in_(values[i : i + _CHUNK])
                )
                found.update((head, v) for v in self.conn.execute(query).scalars())
        if not rest:
            heads = list(groups)
            for i in range(0, len(heads), _CHUNK):
                query = sa.select(table.c[first]).where(table.c[first].in_(heads[i : i + _CHUNK]))
                found.update((v,) for v in self.conn.execute(query).scalars())
        return found

    def put(self, name: str, rows: Sequence[dict[str, Any]]) -> Counts:
        """Insert the rows whose key is new; the others are skipped or (``replace``)
        overwritten. Rows are inserted in the order given (archives: ids grow with it)."""
        table, key = KEYS[name]
        counts = Counts()
        if not rows:
            return counts
        present = self._present(table, key, rows)
        fresh: list[dict[str, Any]] = []
        seen: set[tuple[Any, ...]] = set()
        again: list[dict[str, Any]] = []
        for row in rows:
            k = tuple(row[c] for c in key)
            if k in present or k in seen:
                if self.replace and k not in seen:
                    again.append(row)  # a key given twice: the first record wins
                else:
                    counts.skipped += 1
                seen.add(k)
                continue
            seen.add(k)
            fresh.append(row)
        if fresh:
            self.conn.execute(table.insert(), fresh)
            counts.added = len(fresh)
        if again:
            where = sa.and_(*(table.c[c] == sa.bindparam("k_" + c) for c in key))
            columns = [c for c in again[0] if c not in key]
            stmt = table.update().where(where).values({c: sa.bindparam("v_" + c) for c in columns})
            self.conn.execute(
                stmt,
                [
                    {**{"k_" + c: r[c] for c in key}, **{"v_" + c: r[c] for c in columns}}
                    for r in again
                ],
            )
            counts.replaced = len(again)
        if name == "roster_items":
            self._roster_owners.update(r["owner"] for r in fresh + again)
        return counts

    def bump_roster_versions(self) -> None:
        """XEP-0237: a roster that changed gets a new version (clients then refetch it)."""
        for owner in sorted(self._roster_owners):
            old = self.conn.execute(
                sa.select(_versions.c.version).where(_versions.c.owner == owner)
            ).scalar_one_or_none()
            version = (old or 0) + 1
            upsert(self.conn, _versions, ["owner"], {"owner": owner, "version": version},
                   {"version": version})  # fmt: skip

    def nick_registry(self) -> NickRegistry:
        """Every registration already stored, loaded as the server loads them."""
        nicks = models.muc_nicks
        registry = NickRegistry()
        registry.replace_all(
            (r.room, r.nick, r.jid)
            for r in self.conn.execute(sa.select(nicks.c.room, nicks.c.nick, nicks.c.jid))
        )
        return registry

    def put_nick(self, room: str, nick: str, jid: str, created_at: Any) -> None:
        """Give ``jid`` exactly ``nick`` in ``room`` (the caller checked the registry)."""
        nicks = models.muc_nicks
        self.conn.execute(nicks.delete().where(nicks.c.room == room, nicks.c.jid == jid))
        key = nick_key(nick)
        self.conn.execute(nicks.delete().where(nicks.c.room == room, nicks.c.nick_key == key))
        self.conn.execute(
            nicks.insert(),
            {"room": room, "nick_key": key, "nick": nick, "jid": jid, "created_at": created_at},
        )


class ImportStore:
    """``xmppd import``'s storage: one transaction per kind."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @contextlib.contextmanager
    def kind(self, replace: bool) -> Iterator[KindWriter]:
        """One kind's writes; committed when the block ends, rolled back on an error."""
        with self.db.transaction() as conn:
            writer = KindWriter(conn, replace)
            yield writer
            writer.bump_roster_versions()

    def served_rooms(self) -> set[str]:
        """Names of the rooms xmppd holds (an archive for another room is a problem)."""
        with self.db.connection() as conn:
            return set(conn.execute(sa.select(models.muc_rooms.c.name)).scalars())
