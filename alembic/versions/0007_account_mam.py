"""XEP-0313 archive of each account's one-to-one messages, and its preferences.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in xmppd.storage.models as of this revision.
MYSQL_TABLE = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
STANZA = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
JID = sa.String(length=383)


def upgrade() -> None:
    op.create_table(
        "mam_messages",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("owner", JID, nullable=False),
        sa.Column("stanza_id", sa.String(length=64), nullable=False),
        sa.Column("with_bare", JID, nullable=False),
        sa.Column("with_resource", sa.String(length=1023), nullable=False),
        sa.Column("outgoing", sa.Boolean(), nullable=False),
        sa.Column("stamp", sa.DateTime(), nullable=False),
        sa.Column("stanza", STANZA, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mam_messages")),
        sa.UniqueConstraint("owner", "stanza_id", name=op.f("uq_mam_messages_owner_stanza_id")),
        **MYSQL_TABLE,
    )
    op.create_index("ix_mam_messages_owner_id", "mam_messages", ["owner", "id"], unique=False)
    op.create_index(
        "ix_mam_messages_owner_with_id", "mam_messages", ["owner", "with_bare", "id"], unique=False
    )
    op.create_index("ix_mam_messages_stamp_id", "mam_messages", ["stamp", "id"], unique=False)
    op.create_table(
        "mam_prefs",
        sa.Column("owner", JID, nullable=False),
        sa.Column("default_mode", sa.String(length=8), nullable=False),
        sa.Column("always_json", STANZA, nullable=False),
        sa.Column("never_json", STANZA, nullable=False),
        sa.PrimaryKeyConstraint("owner", name=op.f("pk_mam_prefs")),
        **MYSQL_TABLE,
    )


def downgrade() -> None:
    op.drop_table("mam_prefs")
    op.drop_index("ix_mam_messages_stamp_id", table_name="mam_messages")
    op.drop_index("ix_mam_messages_owner_with_id", table_name="mam_messages")
    op.drop_index("ix_mam_messages_owner_id", table_name="mam_messages")
    op.drop_table("mam_messages")
