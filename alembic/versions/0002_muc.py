"""MUC: rooms, message archive, affiliations, registered nicks.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in xmppd.storage.models as of this revision.
MYSQL_TABLE = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
STANZA = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
JID = sa.String(length=383)
LOCALPART = sa.String(length=255)
NICK = sa.String(length=255)


def upgrade() -> None:
    op.create_table(
        "muc_rooms",
        sa.Column("name", LOCALPART, nullable=False),
        sa.Column("settings_json", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("subject_nick", NICK, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_muc_rooms")),
        **MYSQL_TABLE,
    )
    op.create_table(
        "muc_messages",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("room", LOCALPART, nullable=False),
        sa.Column("stanza_id", sa.String(length=64), nullable=False),
        sa.Column("stamp", sa.DateTime(), nullable=False),
        sa.Column("nick", NICK, nullable=False),
        sa.Column("sender", JID, nullable=False),
        sa.Column("stanza", STANZA, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_muc_messages")),
        sa.UniqueConstraint("room", "stanza_id", name=op.f("uq_muc_messages_room_stanza_id")),
        **MYSQL_TABLE,
    )
    op.create_index("ix_muc_messages_room_id", "muc_messages", ["room", "id"], unique=False)
    op.create_index("ix_muc_messages_room_stamp", "muc_messages", ["room", "stamp"], unique=False)
    op.create_table(
        "muc_affiliations",
        sa.Column("room", LOCALPART, nullable=False),
        sa.Column("jid", JID, nullable=False),
        sa.Column("affiliation", sa.String(length=8), nullable=False),
        sa.PrimaryKeyConstraint("room", "jid", name=op.f("pk_muc_affiliations")),
        **MYSQL_TABLE,
    )
    op.create_table(
        "muc_nicks",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("room", LOCALPART, nullable=False),
        sa.Column("nick_key", NICK, nullable=False),
        sa.Column("nick", NICK, nullable=False),
        sa.Column("jid", JID, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_muc_nicks")),
        sa.UniqueConstraint("room", "nick_key", name=op.f("uq_muc_nicks_room_nick_key")),
        sa.UniqueConstraint("room", "jid", name=op.f("uq_muc_nicks_room_jid")),
        **MYSQL_TABLE,
    )


def downgrade() -> None:
    op.drop_table("muc_nicks")
    op.drop_table("muc_affiliations")
    op.drop_index("ix_muc_messages_room_stamp", table_name="muc_messages")
    op.drop_index("ix_muc_messages_room_id", table_name="muc_messages")
    op.drop_table("muc_messages")
    op.drop_table("muc_rooms")
