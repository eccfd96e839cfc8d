"""Every row a site moves out, streamed, for ``xmppd export`` (:mod:`xmppd.migrate.xmppd_source`).

Each method yields the rows of one table in a fixed order, fetched in batches on one
connection (memory flat for archives of millions): per-account tables by owner, MUC
tables by room, then by the order the server wrote them. Owners and rooms are ordered by
code point on every backend (SQLite and MariaDB's ``utf8mb4_bin`` compare that way;
PostgreSQL is told ``COLLATE "C"``), because the XEP-0227 writer merges the tables owner
by owner and checks that order. Credentials are read only to be exported as SCRAM keys;
nothing here logs them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import sqlalchemy as sa

from xmppd.storage import models
from xmppd.storage.database import Database

#: Rows fetched per round trip.
BATCH = 2000

users = cast(sa.Table, models.User.__table__)
roster = cast(sa.Table, models.RosterItemRow.__table__)
pending = cast(sa.Table, models.PendingSubscription.__table__)
offline = cast(sa.Table, models.OfflineMessage.__table__)


class ExportStore:
    """The export queries, on one :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _rows(self, query: sa.Select[Any]) -> Iterator[sa.Row[Any]]:
        with self.db.connection() as conn:
            result = conn.execution_options(stream_results=True, yield_per=BATCH).execute(query)
            yield from result

    def _key(self, column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
        """``column`` ordered by code point on this backend."""
        if self.db.engine.dialect.name == "postgresql":
            return column.collate("C")
        return column

    def users(self) -> Iterator[sa.Row[Any]]:
        return self._rows(sa.select(users).order_by(self._key(users.c.localpart)))

    def roster(self) -> Iterator[sa.Row[Any]]:
        query = sa.select(roster).order_by(self._key(roster.c.owner), roster.c.id)
        return self._rows(query)

    def pending(self) -> Iterator[sa.Row[Any]]:
        return self._rows(sa.select(pending).order_by(self._key(pending.c.owner), pending.c.id))

    def offline(self) -> Iterator[sa.Row[Any]]:
        return self._rows(sa.select(offline).order_by(self._key(offline.c.owner), offline.c.id))

    def vcards(self) -> Iterator[sa.Row[Any]]:
        table = models.vcards
        return self._rows(sa.select(table).order_by(self._key(table.c.owner)))

    def private_xml(self) -> Iterator[sa.Row[Any]]:
        table = models.private_xml
        query = sa.select(table).order_by(self._key(table.c.owner), self._key(table.c.namespace))
        return self._rows(query)

    def account_messages(self) -> Iterator[sa.Row[Any]]:
        table = models.mam_messages
        return self._rows(sa.select(table).order_by(self._key(table.c.owner), table.c.id))

    def rooms(self) -> Iterator[sa.Row[Any]]:
        table = models.muc_rooms
        return self._rows(sa.select(table).order_by(self._key(table.c.name)))

    def affiliations(self) -> Iterator[sa.Row[Any]]:
        table = models.muc_affiliations
        query = sa.select(table).order_by(self._key(table.c.room), self._key(table.c.jid))
        return self._rows(query)

    def nicks(self) -> Iterator[sa.Row[Any]]:
        table = models.muc_nicks
        return self._rows(sa.select(table).order_by(self._key(table.c.room), table.c.id))

    def room_messages(self) -> Iterator[sa.Row[Any]]:
        table = models.muc_messages
        return self._rows(sa.select(table).order_by(self._key(table.c.room), table.c.id))

    def count(self, table_name: str) -> int:
        """Rows in one of the tables above (for a progress bar)."""
        table = models.metadata.tables[table_name]
        with self.db.connection() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
