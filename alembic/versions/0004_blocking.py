"""XEP-0191 blocking command: each account's blocklist.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in xmppd.storage.models as of this revision.
MYSQL_TABLE = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
JID = sa.String(length=383)


def upgrade() -> None:
    op.create_table(
        "blocklist_items",
        sa.Column("owner", JID, nullable=False),
        sa.Column("jid", JID, nullable=False),
        sa.PrimaryKeyConstraint("owner", "jid", name=op.f("pk_blocklist_items")),
        **MYSQL_TABLE,
    )


def downgrade() -> None:
    op.drop_table("blocklist_items")
