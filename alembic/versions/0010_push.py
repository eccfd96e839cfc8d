"""XEP-0357 push notifications: each account's registered app servers.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in xmppd.storage.models as of this revision.
MYSQL_TABLE = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
JID = sa.String(length=383)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TEXT = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "push_registrations",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("owner", JID, nullable=False),
        sa.Column("jid", JID, nullable=False),
        sa.Column("node", sa.String(length=256), nullable=False),
        sa.Column("options", TEXT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_registrations")),
        **MYSQL_TABLE,
    )
    op.create_index(
        op.f("ix_push_registrations_owner"), "push_registrations", ["owner"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_push_registrations_owner"), table_name="push_registrations")
    op.drop_table("push_registrations")
