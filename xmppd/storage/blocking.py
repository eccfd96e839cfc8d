"""Each account's XEP-0191 blocklist (table ``blocklist_items``, migration 0004).

The blocking service keeps every list in memory (it is consulted for every stanza routed
to or from a local account) and writes each change through :class:`BlockStore`. Methods
block: trio code calls them through ``AsyncDatabase.run``.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from xmppd.storage.database import Database
from xmppd.storage.models import blocklist_items as items


class BlockStore:
    """The blocklist queries, on one :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def load_all(self) -> dict[str, set[str]]:
        """Every account's blocked JIDs (accounts with none are absent)."""
        lists: dict[str, set[str]] = {}
        with self.db.connection() as conn:
            for row in conn.execute(sa.select(items.c.owner, items.c.jid)):
                lists.setdefault(row.owner, set()).add(row.jid)
        return lists

    def add(self, owner: str, jids: Iterable[str]) -> None:
        """Block ``jids`` for ``owner`` (already blocked ones are left as they are)."""
        with self.db.transaction() as conn:
            have = {
                r.jid for r in conn.execute(sa.select(items.c.jid).where(items.c.owner == owner))
            }
            new = [{"owner": owner, "jid": j} for j in dict.fromkeys(jids) if j not in have]
            if new:
                conn.execute(items.insert(), new)

    def remove(self, owner: str, jids: Iterable[str] | None) -> None:
        """Unblock ``jids`` for ``owner``; None: all of them."""
        where = items.c.owner == owner
        with self.db.transaction() as conn:
            if jids is None:
                conn.execute(items.delete().where(where))
                return
            wanted = list(dict.fromkeys(jids))
            for i in range(0, len(wanted), 500):
                conn.execute(items.delete().where(where, items.c.jid.in_(wanted[i : i + 500])))
