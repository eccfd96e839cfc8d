"""Initial schema: users, roster, pending subscriptions, offline messages.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in xmppd.storage.models as of this revision.
MYSQL_TABLE = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
STANZA = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
JID = sa.String(length=383)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("localpart", sa.String(length=255), nullable=False),
        sa.Column("sha1_salt", sa.LargeBinary(), nullable=False),
        sa.Column("sha1_iterations", sa.Integer(), nullable=False),
        sa.Column("sha1_stored_key", sa.LargeBinary(), nullable=False),
        sa.Column("sha1_server_key", sa.LargeBinary(), nullable=False),
        sa.Column("sha256_salt", sa.LargeBinary(), nullable=False),
        sa.Column("sha256_iterations", sa.Integer(), nullable=False),
        sa.Column("sha256_stored_key", sa.LargeBinary(), nullable=False),
        sa.Column("sha256_server_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("localpart", name=op.f("uq_users_localpart")),
        **MYSQL_TABLE,
    )
    op.create_table(
        "roster_items",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("owner", JID, nullable=False),
        sa.Column("contact", JID, nullable=False),
        sa.Column("name", sa.String(length=1023), nullable=True),
        sa.Column("subscription", sa.String(length=4), nullable=False),
        sa.Column("ask_out", sa.Boolean(), nullable=False),
        sa.Column("pending_in", sa.Boolean(), nullable=False),
        sa.Column("approved", sa.Boolean(), nullable=False),
        sa.Column("groups_json", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "subscription IN ('none', 'to', 'from', 'both')",
            name=op.f("ck_roster_items_subscription"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roster_items")),
        sa.UniqueConstraint("owner", "contact", name=op.f("uq_roster_items_owner_contact")),
        **MYSQL_TABLE,
    )
    op.create_table(
        "roster_versions",
        sa.Column("owner", JID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("owner", name=op.f("pk_roster_versions")),
        **MYSQL_TABLE,
    )
    op.create_table(
        "pending_subscriptions",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("owner", JID, nullable=False),
        sa.Column("from_jid", JID, nullable=False),
        sa.Column("stanza", STANZA, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_subscriptions")),
        sa.UniqueConstraint(
            "owner", "from_jid", name=op.f("uq_pending_subscriptions_owner_from_jid")
        ),
        **MYSQL_TABLE,
    )
    op.create_table(
        "offline_messages",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("owner", JID, nullable=False),
        sa.Column("stanza", STANZA, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offline_messages")),
        **MYSQL_TABLE,
    )
    op.create_index(op.f("ix_offline_messages_owner"), "offline_messages", ["owner"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_offline_messages_owner"), table_name="offline_messages")
    op.drop_table("offline_messages")
    op.drop_table("pending_subscriptions")
    op.drop_table("roster_versions")
    op.drop_table("roster_items")
    op.drop_table("users")
