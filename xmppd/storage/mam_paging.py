"""One XEP-0313 page (with XEP-0059 RSM) from an archive table, for the room archive
(:mod:`xmppd.storage.muc`) and the accounts' archive (:mod:`xmppd.storage.account_mam`).

Both tables have an autoincrement ``id`` (the archive order) and a public ``stanza_id``;
RSM ``after``/``before`` name a ``stanza_id``, which is looked up once and turned into an
``id`` bound, so that a page is ``WHERE <archive> AND id > :after ORDER BY id LIMIT max+1``:
one range scan of an index that starts with the archive key and ends with ``id``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from xmppd.mam.query import ArchivedMessage, MamPage, MamQuery
from xmppd.xml.errors import StanzaError


def naive(when: datetime) -> datetime:
    """Naive UTC, as every backend stores it (MariaDB has no zone type)."""
    return when.astimezone(UTC).replace(tzinfo=None)


def row_id(conn: sa.Connection, table: sa.Table, key: Sequence[Any], stanza_id: str) -> int:
    """The ``id`` of ``stanza_id`` in the archive ``key`` selects; ``item-not-found`` if
    there is none (XEP-0313 §4.3.2)."""
    found = conn.execute(
        sa.select(table.c.id).where(*key, table.c.stanza_id == stanza_id)
    ).scalar_one_or_none()
    if found is None:
        raise StanzaError("item-not-found", f"no archived message {stanza_id[:64]!r}")
    return int(found)


def _extended(conn: sa.Connection, table: sa.Table, key: Sequence[Any], q: MamQuery) -> list[Any]:
    """XEP-0313 §4.1.3 filters: ``after-id``/``before-id`` bounds and the ``ids`` set;
    any id not in the archive is ``item-not-found``."""
    t = table.c
    out: list[Any] = []
    if q.after_id:
        out.append(t.id > row_id(conn, table, key, q.after_id))
    if q.before_id:
        out.append(t.id < row_id(conn, table, key, q.before_id))
    if q.ids:
        found = conn.execute(
            sa.select(sa.func.count()).where(*key, t.stanza_id.in_(q.ids))
        ).scalar_one()
        if found != len(q.ids):
            raise StanzaError("item-not-found", "an id is not in the archive")
        out.append(t.stanza_id.in_(q.ids))
    return out


def fetch_page(
    conn: sa.Connection,
    table: sa.Table,
    key: Sequence[Any],
    where: Sequence[Any],
    q: MamQuery,
    count: int | None = None,
) -> MamPage:
    """The page ``q`` asks for, oldest first: ``key`` selects the archive (it is also where
    an RSM id is looked up), ``where`` the query's other filters."""
    t = table.c
    bounds = list(where)
    bounds.extend(_extended(conn, table, key, q))
    if q.after:
        bounds.append(t.id > row_id(conn, table, key, q.after))
    backwards = q.before is not None
    if q.before:
        bounds.append(t.id < row_id(conn, table, key, q.before))
    order = t.id.desc() if backwards else t.id.asc()
    rows = conn.execute(
        sa.select(t.stanza_id, t.stamp, t.stanza)
        .where(*key, *bounds)
        .order_by(order)
        .limit(q.max + 1)
    ).all()
    more = len(rows) > q.max
    rows = rows[: q.max]
    if backwards:
        rows.reverse()
    page = [ArchivedMessage(r[0], r[1].replace(tzinfo=UTC), r[2]) for r in rows]
    return MamPage(page, complete=not more, count=count)
