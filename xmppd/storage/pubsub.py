"""Each account's PEP nodes and items (tables ``pubsub_nodes``/``pubsub_items``, 0005).

The node's configuration is kept as JSON text (``NodeConfig.to_json``): the store does not
interpret it, except the few numbers the service hands in (how many items to keep, how
many nodes an owner may have), so each write is one transaction that leaves the limits
kept. Node names and item ids are stored as given and found by their SHA-256
(:func:`key`), so no backend's collation makes two names one. Methods block: trio code
calls them through ``AsyncDatabase.run``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from xmppd.storage.database import Database
from xmppd.storage.models import pubsub_items as items
from xmppd.storage.models import pubsub_nodes as nodes
from xmppd.storage.models import utcnow


def key(name: str) -> str:
    """The lookup key of a node name or item id: its UTF-8 SHA-256 in hex."""
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


class TooManyNodes(Exception):
    """The owner already has the most nodes allowed; nothing was stored."""


@dataclass(frozen=True, slots=True)
class StoredItem:
    item_id: str
    payload: str
    published: datetime


@dataclass(frozen=True, slots=True)
class StoredNode:
    name: str
    config: str


class PubsubStore:
    """The PEP queries, on one :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------------ nodes
    def nodes(self, owner: str) -> list[StoredNode]:
        """``owner``'s nodes, by name."""
        query = sa.select(nodes.c.node, nodes.c.config).where(nodes.c.owner == owner)
        with self.db.connection() as conn:
            rows = conn.execute(query.order_by(nodes.c.node)).all()
        return [StoredNode(r.node, r.config) for r in rows]

    def node(self, owner: str, node: str) -> StoredNode | None:
        with self.db.connection() as conn:
            row = conn.execute(
                sa.select(nodes.c.config).where(
                    nodes.c.owner == owner, nodes.c.node_key == key(node)
                )
            ).first()
        return None if row is None else StoredNode(node, row.config)

    def create(self, owner: str, node: str, config: str, max_nodes: int) -> None:
        with self.db.transaction() as conn:
            self._create(conn, owner, node, config, max_nodes)

    def _create(
        self, conn: sa.Connection, owner: str, node: str, config: str, max_nodes: int
    ) -> int:
        count = conn.execute(
            sa.select(sa.func.count()).select_from(nodes).where(nodes.c.owner == owner)
        ).scalar_one()
        if count >= max_nodes:
            raise TooManyNodes(owner)
        row = {
            "owner": owner,
            "node": node,
            "node_key": key(node),
            "config": config,
            "created_at": utcnow(),
        }
        return int(conn.execute(nodes.insert().values(row)).inserted_primary_key[0])

    def configure(self, owner: str, node: str, config: str, max_items: int) -> bool:
        """Store a new configuration and keep at most ``max_items``; False: no such node."""
        with self.db.transaction() as conn:
            node_id = self._id(conn, owner, node)
            if node_id is None:
                return False
            conn.execute(nodes.update().where(nodes.c.id == node_id).values(config=config))
            self._trim(conn, node_id, max_items)
        return True

    def delete(self, owner: str, node: str) -> bool:
        with self.db.transaction() as conn:
            node_id = self._id(conn, owner, node)
            if node_id is None:
                return False
            conn.execute(items.delete().where(items.c.node_id == node_id))
            conn.execute(nodes.delete().where(nodes.c.id == node_id))
        return True

    def purge(self, owner: str, node: str) -> bool:
        with self.db.transaction() as conn:
            node_id = self._id(conn, owner, node)
            if node_id is None:
                return False
            conn.execute(items.delete().where(items.c.node_id == node_id))
        return True

    # ------------------------------------------------------------------ items
    def publish(
        self,
        owner: str,
        node: str,
        item: StoredItem | None,
        publisher: str,
        *,
        create_config: str | None,
        max_items: int,
        max_nodes: int,
    ) -> bool:
        """Store ``item`` (replacing one of the same id, which becomes the newest) and keep
        the newest ``max_items``; create the node first when it is missing and
        ``create_config`` is given. ``item`` None (a node that persists nothing): only the
        creation. Returns whether the node was created."""
        with self.db.transaction() as conn:
            node_id = self._id(conn, owner, node)
            created = node_id is None
            if node_id is None:
                if create_config is None:
                    raise KeyError(node)
                node_id = self._create(conn, owner, node, create_config, max_nodes)
            if item is not None:
                where = (items.c.node_id == node_id, items.c.item_key == key(item.item_id))
                conn.execute(items.delete().where(*where))
                row = {
                    "node_id": node_id,
                    "item_id": item.item_id,
                    "item_key": key(item.item_id),
                    "payload": item.payload,
                    "publisher": publisher,
                    "published_at": item.published,
                }
                conn.execute(items.insert().values(row))
                self._trim(conn, node_id, max_items)
        return created

    def retract(self, owner: str, node: str, item_id: str) -> bool | None:
        """Remove one item: True, False (no such item) or None (no such node)."""
        with self.db.transaction() as conn:
            node_id = self._id(conn, owner, node)
            if node_id is None:
                return None
            where = (items.c.node_id == node_id, items.c.item_key == key(item_id))
            return conn.execute(items.delete().where(*where)).rowcount > 0

    def items(
        self, owner: str, node: str, ids: Iterable[str] | None = None, last: int | None = None
    ) -> list[StoredItem] | None:
        """The node's items, oldest first: those of ``ids``, or the ``last`` newest, or all;
        None when there is no such node."""
        with self.db.connection() as conn:
            node_id = self._id(conn, owner, node)
            if node_id is None:
                return None
            query = sa.select(items.c.item_id, items.c.payload, items.c.published_at).where(
                items.c.node_id == node_id
            )
            if ids is not None:
                query = query.where(items.c.item_key.in_([key(i) for i in list(ids)[:500]]))
            query = query.order_by(items.c.id.desc())
            if last is not None:
                query = query.limit(last)
            rows = conn.execute(query).all()
        return [StoredItem(r.item_id, r.payload, r.published_at) for r in reversed(rows)]

    def last_items(self, owners: Iterable[str]) -> list[tuple[str, StoredNode, StoredItem]]:
        """Each node of ``owners`` with its newest item, as (owner, node, item); nodes
        without items are left out. One query per 500 owners (a whole roster at once)."""
        wanted = list(dict.fromkeys(owners))
        newest = (
            sa.select(items.c.node_id, sa.func.max(items.c.id).label("last"))
            .group_by(items.c.node_id)
            .subquery()
        )
        found: list[tuple[str, StoredNode, StoredItem]] = []
        with self.db.connection() as conn:
            for i in range(0, len(wanted), 500):
                query = (
                    sa.select(
                        nodes.c.owner,
                        nodes.c.node,
                        nodes.c.config,
                        items.c.item_id,
                        items.c.payload,
                        items.c.published_at,
                    )
                    .join(newest, newest.c.node_id == nodes.c.id)
                    .join(items, items.c.id == newest.c.last)
                    .where(nodes.c.owner.in_(wanted[i : i + 500]))
                    .order_by(nodes.c.owner, nodes.c.node)
                )
                found.extend(
                    (
                        r.owner,
                        StoredNode(r.node, r.config),
                        StoredItem(r.item_id, r.payload, r.published_at),
                    )
                    for r in conn.execute(query)
                )
        return found

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _id(conn: sa.Connection, owner: str, node: str) -> int | None:
        row = conn.execute(
            sa.select(nodes.c.id).where(nodes.c.owner == owner, nodes.c.node_key == key(node))
        ).first()
        return None if row is None else int(row.id)

    @staticmethod
    def _trim(conn: sa.Connection, node_id: int, keep: int) -> None:
        """Delete all but the newest ``keep`` items of the node (XEP-0060 §12.10)."""
        cutoff = conn.execute(
            sa.select(items.c.id)
            .where(items.c.node_id == node_id)
            .order_by(items.c.id.desc())
            .offset(keep)
            .limit(1)
        ).first()
        if cutoff is not None:
            conn.execute(items.delete().where(items.c.node_id == node_id, items.c.id <= cutoff.id))
