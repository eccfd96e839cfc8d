"""XEP-0054 vCards and XEP-0049 private XML storage, per account.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in xmppd.storage.models as of this revision.
MYSQL_TABLE = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
JID = sa.String(length=383)
NAMESPACE = sa.String(length=255)
STANZA_TEXT = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "vcards",
        sa.Column("owner", JID, nullable=False),
        sa.Column("xml", STANZA_TEXT, nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("owner", name=op.f("pk_vcards")),
        **MYSQL_TABLE,
    )
    op.create_table(
        "private_xml",
        sa.Column("owner", JID, nullable=False),
        sa.Column("namespace", NAMESPACE, nullable=False),
        sa.Column("xml", STANZA_TEXT, nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("owner", "namespace", name=op.f("pk_private_xml")),
        **MYSQL_TABLE,
    )


def downgrade() -> None:
    op.drop_table("private_xml")
    op.drop_table("vcards")
