"""XEP-0163 PEP: each account's pubsub nodes and their items.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in xmppd.storage.models as of this revision.
MYSQL_TABLE = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
JID = sa.String(length=383)
NAME = sa.String(length=256)
KEY = sa.String(length=64)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
STANZA_TEXT = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "pubsub_nodes",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("owner", JID, nullable=False),
        sa.Column("node", NAME, nullable=False),
        sa.Column("node_key", KEY, nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pubsub_nodes")),
        sa.UniqueConstraint("owner", "node_key", name=op.f("uq_pubsub_nodes_owner_node_key")),
        **MYSQL_TABLE,
    )
    op.create_table(
        "pubsub_items",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("node_id", BIG_ID, nullable=False),
        sa.Column("item_id", NAME, nullable=False),
        sa.Column("item_key", KEY, nullable=False),
        sa.Column("payload", STANZA_TEXT, nullable=False),
        sa.Column("publisher", JID, nullable=False),
        sa.Column("published_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["pubsub_nodes.id"],
            name=op.f("fk_pubsub_items_node_id_pubsub_nodes"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pubsub_items")),
        sa.UniqueConstraint("node_id", "item_key", name=op.f("uq_pubsub_items_node_id_item_key")),
        **MYSQL_TABLE,
    )


def downgrade() -> None:
    op.drop_table("pubsub_items")
    op.drop_table("pubsub_nodes")
