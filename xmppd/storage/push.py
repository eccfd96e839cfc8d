"""Each account's XEP-0357 push registrations (table ``push_registrations``, migration 0010).

The push service keeps them all in memory (it looks them up for every message stored
offline or held for a detached session) and writes each change through
:class:`PushStore`. Methods block: trio code calls them through ``AsyncDatabase.run``.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from xmppd.storage.database import Database
from xmppd.storage.models import push_registrations as regs


@dataclass(frozen=True, slots=True)
class PushRegistration:
    """One enabled app server node of one account (XEP-0357 §5)."""

    owner: str
    jid: str
    node: str
    #: the client's publish-options form, serialised ("" when none)
    options: str = ""


class PushStore:
    """The push registration queries, on one :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def load_all(self) -> dict[str, list[PushRegistration]]:
        """Every account's registrations, oldest first (accounts with none are absent)."""
        found: dict[str, list[PushRegistration]] = {}
        query = sa.select(regs.c.owner, regs.c.jid, regs.c.node, regs.c.options).order_by(regs.c.id)
        with self.db.connection() as conn:
            for row in conn.execute(query):
                found.setdefault(row.owner, []).append(
                    PushRegistration(row.owner, row.jid, row.node, row.options)
                )
        return found

    def put(self, reg: PushRegistration) -> None:
        """Store ``reg``, replacing the same owner, jid and node (§5: the last request's
        publish options win)."""
        with self.db.transaction() as conn:
            conn.execute(
                regs.delete().where(
                    regs.c.owner == reg.owner, regs.c.jid == reg.jid, regs.c.node == reg.node
                )
            )
            conn.execute(
                regs.insert().values(
                    owner=reg.owner, jid=reg.jid, node=reg.node, options=reg.options
                )
            )

    def remove(self, owner: str, jid: str, node: str | None) -> None:
        """§6: the registrations of ``owner`` at ``jid`` (only ``node``'s when given)."""
        where = [regs.c.owner == owner, regs.c.jid == jid]
        if node is not None:
            where.append(regs.c.node == node)
        with self.db.transaction() as conn:
            conn.execute(regs.delete().where(*where))
