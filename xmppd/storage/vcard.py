"""Each account's XEP-0054 vCard (table ``vcards``, migration 0006).

One row per account holding the ``<vCard xmlns='vcard-temp'>`` element it set, as
serialised XML (the stanza parser has already enforced restricted XML and the size
limits; the service checks ``[vcard] max_size`` before calling). Methods block: trio code
calls them through ``AsyncDatabase.run``.
"""

from __future__ import annotations

import sqlalchemy as sa

from xmppd.storage.database import Database
from xmppd.storage.models import utcnow
from xmppd.storage.models import vcards as table
from xmppd.storage.sql import upsert


class VcardStore:
    """The vCard queries, on one :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, owner: str) -> str | None:
        """``owner``'s stored vCard XML, or None if it never set one."""
        with self.db.connection() as conn:
            query = sa.select(table.c.xml).where(table.c.owner == owner)
            return conn.execute(query).scalar_one_or_none()

    def put(self, owner: str, xml: str) -> None:
        """Replace ``owner``'s vCard with ``xml`` (XEP-0054 §3.2: a set replaces it whole)."""
        now = utcnow()
        values = {"owner": owner, "xml": xml, "updated_at": now}
        with self.db.transaction() as conn:
            upsert(conn, table, ["owner"], values, {"xml": xml, "updated_at": now})

    def delete(self, owner: str) -> bool:
        """Forget ``owner``'s vCard; whether there was one."""
        with self.db.transaction() as conn:
            return bool(conn.execute(table.delete().where(table.c.owner == owner)).rowcount)
