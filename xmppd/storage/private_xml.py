"""Each account's XEP-0049 private XML (table ``private_xml``, migration 0006).

One row per (account, namespace): the elements of that namespace the account stored last,
serialised one after the other, and their size in UTF-8 bytes so that the account's total
is one ``SUM``. The limits are checked in the same write transaction as the store
(:meth:`PrivateXmlStore.put`); as with the offline queue, concurrent stores of one account
on PostgreSQL/MariaDB may overshoot the total by one item, which is harmless for a quota.
Methods block: trio code calls them through ``AsyncDatabase.run``.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from xmppd.storage.database import Database
from xmppd.storage.models import private_xml as table
from xmppd.storage.sql import upsert
from xmppd.storage.types import StorageError


class QuotaExceeded(StorageError):
    """Storing the item would take the account past one of its :class:`Quota` limits."""


@dataclass(frozen=True, slots=True)
class Quota:
    """What one account may keep (``[private_storage]``)."""

    max_item_size: int
    max_total_size: int
    max_items: int


class PrivateXmlStore:
    """The private XML queries, on one :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, owner: str, namespace: str) -> str | None:
        """The XML ``owner`` stored under ``namespace``, or None if it never did."""
        with self.db.connection() as conn:
            query = sa.select(table.c.xml).where(
                table.c.owner == owner, table.c.namespace == namespace
            )
            return conn.execute(query).scalar_one_or_none()

    def put(self, owner: str, namespace: str, xml: str, quota: Quota) -> None:
        """Replace what ``owner`` keeps under ``namespace``; :class:`QuotaExceeded` (and
        nothing changed) when it would not fit ``quota``."""
        size = len(xml.encode("utf-8"))
        if size > quota.max_item_size:
            raise QuotaExceeded(f"an item may be {quota.max_item_size} bytes")
        others = sa.and_(table.c.owner == owner, table.c.namespace != namespace)
        with self.db.transaction() as conn:
            count, total = conn.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(table.c.size), 0)).where(
                    others
                )
            ).one()
            if int(count) >= quota.max_items:
                raise QuotaExceeded(f"at most {quota.max_items} namespaces may be stored")
            if int(total) + size > quota.max_total_size:
                raise QuotaExceeded(f"an account may store {quota.max_total_size} bytes")
            values = {"owner": owner, "namespace": namespace, "xml": xml, "size": size}
            upsert(conn, table, ["owner", "namespace"], values, {"xml": xml, "size": size})

    def total(self, owner: str) -> int:
        """Bytes ``owner`` keeps over all namespaces."""
        with self.db.connection() as conn:
            query = sa.select(sa.func.coalesce(sa.func.sum(table.c.size), 0)).where(
                table.c.owner == owner
            )
            return int(conn.execute(query).scalar_one())
