"""XEP-0363 HTTP file upload: slots and the files stored for them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in xmppd.storage.models as of this revision.
MYSQL_TABLE = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
JID = sa.String(length=383)


def upgrade() -> None:
    op.create_table(
        "upload_files",
        sa.Column("file_id", sa.String(length=32), nullable=False),
        sa.Column("owner", JID, nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("put_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("stored_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("file_id", name=op.f("pk_upload_files")),
        **MYSQL_TABLE,
    )
    op.create_index(op.f("ix_upload_files_owner"), "upload_files", ["owner"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_upload_files_owner"), table_name="upload_files")
    op.drop_table("upload_files")
