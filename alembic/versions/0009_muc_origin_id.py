"""MUC archive: each message's XEP-0359 origin-id, for retractions (XEP-0424).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

An author may name the message it retracts by the origin-id its client gave it (Converse.js
does, when it has one) rather than by the room's stanza-id. Messages still in a room's
memory are found either way; this column finds the older ones in the archive, together
with the author's real JID (``sender``), since an origin-id is only unique per client.
Existing rows have none (NULL): they are found by stanza-id only.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("muc_messages", sa.Column("origin_id", sa.String(length=64), nullable=True))
    op.create_index(
        "ix_muc_messages_room_origin_id", "muc_messages", ["room", "origin_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_muc_messages_room_origin_id", table_name="muc_messages")
    op.drop_column("muc_messages", "origin_id")
