"""MUC: each affiliation's reason (XEP-0045 §9.1 ban, §9.3 membership…), listed with it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

A ban or a membership given with a ``<reason/>`` keeps it: the room lists it with the
affiliation (§9.2), ``xmppd export`` writes it and ``xmppd import`` brings ejabberd's.
Existing rows have none: "".
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy of xmppd.muc.roles.REASON_MAX as of this revision.
REASON_MAX = 500


def upgrade() -> None:
    op.add_column(
        "muc_affiliations",
        sa.Column("reason", sa.String(length=REASON_MAX), nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_column("muc_affiliations", "reason")
