"""MUC: remember which memberships in-band registration gave (XEP-0045 §7.10).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

Registering a nick with a room makes a user without an affiliation a member;
unregistering takes back only such a membership, never one an admin gave. Existing rows
were all given by admins (or the service): false.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "muc_affiliations",
        sa.Column("by_registration", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("muc_affiliations", "by_registration")
