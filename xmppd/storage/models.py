"""Table definitions, portable to SQLite, PostgreSQL and MariaDB.

Column sizes are chosen for MariaDB/InnoDB: an index key may hold at most 3072 bytes and
utf8mb4 counts 4 bytes per character, so a localpart is at most 255 characters and a bare
JID at most 383 (255 + "@" + a 127-character domain); two JIDs fit one composite key.
MariaDB tables use the binary ``utf8mb4_bin`` collation because JIDs are compared after
PRECIS normalisation: the default ``*_ci`` collations would make "é" equal "e".

Roster groups are stored as a JSON array in ``roster_items.groups_json`` rather than a
separate table: the server never queries by group, and one row per item keeps a roster
fetch to a single query and an upsert atomic.

The naming convention keeps constraint names stable, so alembic can alter them later.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from xmppd.muc.roles import REASON_MAX

LOCALPART_MAX = 255
JID_MAX = 383
NICK_MAX = 255

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Table options applied on MariaDB/MySQL only; other dialects ignore them.
_MYSQL_TABLE = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

# A stanza may be up to limits.max_stanza_size (256 KiB by default): MariaDB's TEXT stops
# at 64 KiB, so use MEDIUMTEXT (16 MiB) there.
StanzaText = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")

# SQLite only autoincrements an INTEGER PRIMARY KEY, not a BIGINT one.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def utcnow() -> datetime:
    """Naive UTC: MariaDB has no time zone type, so every backend stores naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


metadata = Base.metadata


class User(Base):
    """A local account; only SCRAM keys are stored, never the password."""

    __tablename__ = "users"
    __table_args__ = (sa.UniqueConstraint("localpart"), _MYSQL_TABLE)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    localpart: Mapped[str] = mapped_column(sa.String(LOCALPART_MAX), nullable=False)
    sha1_salt: Mapped[bytes] = mapped_column(sa.LargeBinary, nullable=False)
    sha1_iterations: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    sha1_stored_key: Mapped[bytes] = mapped_column(sa.LargeBinary, nullable=False)
    sha1_server_key: Mapped[bytes] = mapped_column(sa.LargeBinary, nullable=False)
    sha256_salt: Mapped[bytes] = mapped_column(sa.LargeBinary, nullable=False)
    sha256_iterations: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    sha256_stored_key: Mapped[bytes] = mapped_column(sa.LargeBinary, nullable=False)
    sha256_server_key: Mapped[bytes] = mapped_column(sa.LargeBinary, nullable=False)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, nullable=False, default=utcnow)


class RosterItemRow(Base):
    """One contact in one user's roster (RFC 6121 §2)."""

    __tablename__ = "roster_items"
    __table_args__ = (
        sa.UniqueConstraint("owner", "contact"),
        sa.CheckConstraint("subscription IN ('none', 'to', 'from', 'both')", name="subscription"),
        _MYSQL_TABLE,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # The unique (owner, contact) key leads with owner, so it is also the owner index.
    owner: Mapped[str] = mapped_column(sa.String(JID_MAX), nullable=False)
    contact: Mapped[str] = mapped_column(sa.String(JID_MAX), nullable=False)
    name: Mapped[str | None] = mapped_column(sa.String(1023), nullable=True)
    subscription: Mapped[str] = mapped_column(sa.String(4), nullable=False, default="none")
    ask_out: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    pending_in: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    approved: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    groups_json: Mapped[str] = mapped_column(sa.Text, nullable=False, default="[]")


class RosterVersion(Base):
    """XEP-0237 roster version per owner; bumped in the same transaction as each change."""

    __tablename__ = "roster_versions"
    __table_args__ = (_MYSQL_TABLE,)

    owner: Mapped[str] = mapped_column(sa.String(JID_MAX), primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer, nullable=False)


class PendingSubscription(Base):
    """An inbound subscribe kept for delivery at the owner's next login (RFC 6121 §3.1.3)."""

    __tablename__ = "pending_subscriptions"
    __table_args__ = (sa.UniqueConstraint("owner", "from_jid"), _MYSQL_TABLE)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(sa.String(JID_MAX), nullable=False)
    from_jid: Mapped[str] = mapped_column(sa.String(JID_MAX), nullable=False)
    stanza: Mapped[str] = mapped_column(StanzaText, nullable=False)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, nullable=False, default=utcnow)


class OfflineMessage(Base):
    """A message stored for an offline user; ``id`` orders the queue."""

    __tablename__ = "offline_messages"
    __table_args__ = (_MYSQL_TABLE,)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(sa.String(JID_MAX), nullable=False, index=True)
    stanza: Mapped[str] = mapped_column(StanzaText, nullable=False)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, nullable=False, default=utcnow)


# ---------------------------------------------------------------------------- MUC
# XEP-0045 rooms, their message archive, affiliations and registered nicks (migrations
# 0002_muc, 0003_muc_registered_members, 0011_muc_affiliation_reason); the queries are
# :class:`xmppd.storage.muc.MucStore`'s.

muc_rooms = sa.Table(
    "muc_rooms",
    metadata,
    sa.Column("name", sa.String(LOCALPART_MAX), primary_key=True),
    sa.Column("settings_json", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False, default=""),
    sa.Column("subject_nick", sa.String(NICK_MAX), nullable=False, default=""),
    sa.Column("created_at", sa.DateTime, nullable=False),
    **_MYSQL_TABLE,
)

muc_messages = sa.Table(
    "muc_messages",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("room", sa.String(LOCALPART_MAX), nullable=False),
    sa.Column("stanza_id", sa.String(64), nullable=False),
    sa.Column("stamp", sa.DateTime, nullable=False),
    sa.Column("nick", sa.String(NICK_MAX), nullable=False),
    sa.Column("sender", sa.String(JID_MAX), nullable=False),
    sa.Column("stanza", StanzaText, nullable=False),
    #: the XEP-0359 origin-id the author's client gave, if any: an author may retract by
    #: it (XEP-0424; migration 0009)
    sa.Column("origin_id", sa.String(64), nullable=True),
    sa.Index("ix_muc_messages_room_id", "room", "id"),
    sa.Index("ix_muc_messages_room_stamp", "room", "stamp"),
    sa.Index("ix_muc_messages_room_origin_id", "room", "origin_id"),
    sa.UniqueConstraint("room", "stanza_id"),
    **_MYSQL_TABLE,
)

muc_affiliations = sa.Table(
    "muc_affiliations",
    metadata,
    sa.Column("room", sa.String(LOCALPART_MAX), primary_key=True),
    sa.Column("jid", sa.String(JID_MAX), primary_key=True),
    sa.Column("affiliation", sa.String(8), nullable=False),
    #: a ``member`` affiliation that in-band registration gave (XEP-0045 §7.10), which
    #: unregistering takes back (migration 0003)
    sa.Column(
        "by_registration", sa.Boolean, nullable=False, default=False, server_default=sa.false()
    ),
    #: why it was given (XEP-0045 §9.1 ban, §9.3 membership…), "" for none; listed with the
    #: affiliation (§9.2) (migration 0011)
    sa.Column("reason", sa.String(REASON_MAX), nullable=False, default="", server_default=""),
    **_MYSQL_TABLE,
)

muc_nicks = sa.Table(
    "muc_nicks",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    #: a room's localpart, or "" for every room of the service
    sa.Column("room", sa.String(LOCALPART_MAX), nullable=False),
    sa.Column("nick_key", sa.String(NICK_MAX), nullable=False),
    sa.Column("nick", sa.String(NICK_MAX), nullable=False),
    sa.Column("jid", sa.String(JID_MAX), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("room", "nick_key"),
    sa.UniqueConstraint("room", "jid"),
    **_MYSQL_TABLE,
)


# ----------------------------------------------------------------------- blocking
blocklist_items = sa.Table(
    "blocklist_items",
    metadata,
    #: the local account (bare JID) that blocks
    sa.Column("owner", sa.String(JID_MAX), primary_key=True),
    #: the blocked JID as XEP-0191 items name it: a domain, bare or full JID (normalised)
    sa.Column("jid", sa.String(JID_MAX), primary_key=True),
    **_MYSQL_TABLE,
)


# ------------------------------------------------------------------- push (XEP-0357)
#: A push registration's node as stored (``push`` refuses longer ones: ``not-acceptable``).
PUSH_NODE_MAX = 256

push_registrations = sa.Table(
    "push_registrations",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    #: the local account (bare JID) that enabled notifications
    sa.Column("owner", sa.String(JID_MAX), nullable=False, index=True),
    #: the XMPP Push Service (app server) and its node (XEP-0357 §5)
    sa.Column("jid", sa.String(JID_MAX), nullable=False),
    sa.Column("node", sa.String(PUSH_NODE_MAX), nullable=False),
    #: the client's publish-options form, serialised ("" when none; ``[push]
    #: max_options_bytes`` bounds it)
    sa.Column("options", StanzaText, nullable=False),
    **_MYSQL_TABLE,
)


# ------------------------------------------------------------------ pubsub (PEP)
#: A PEP node name or item id as stored (``pep.max_node_length`` is at most this).
PUBSUB_NAME_MAX = 256
#: Names are looked up by their SHA-256 (hex), not compared as text: MariaDB's collations
#: pad trailing spaces ('n' = 'n  '), and node names are kept exactly as given.
PUBSUB_KEY = 64

pubsub_nodes = sa.Table(
    "pubsub_nodes",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    #: the account (bare JID) whose PEP service holds the node (XEP-0163)
    sa.Column("owner", sa.String(JID_MAX), nullable=False),
    #: the node name exactly as the client gave it
    sa.Column("node", sa.String(PUBSUB_NAME_MAX), nullable=False),
    #: sha256(node) in hex: what lookups and uniqueness use
    sa.Column("node_key", sa.String(PUBSUB_KEY), nullable=False),
    #: xmppd.pubsub.nodeconfig.NodeConfig as JSON
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("owner", "node_key"),
    **_MYSQL_TABLE,
)

pubsub_items = sa.Table(
    "pubsub_items",
    metadata,
    #: increasing: the order items were published in (a re-published id moves last)
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("node_id", BigId, sa.ForeignKey("pubsub_nodes.id"), nullable=False),
    sa.Column("item_id", sa.String(PUBSUB_NAME_MAX), nullable=False),
    #: sha256(item_id) in hex
    sa.Column("item_key", sa.String(PUBSUB_KEY), nullable=False),
    #: the item's one payload element, serialised
    sa.Column("payload", StanzaText, nullable=False),
    sa.Column("publisher", sa.String(JID_MAX), nullable=False),
    sa.Column("published_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("node_id", "item_key"),
    **_MYSQL_TABLE,
)

# ----------------------------------------------------------- vCards, private XML
#: Longest XML namespace kept as a XEP-0049 key: (owner, namespace) fits one InnoDB key.
NAMESPACE_MAX = 255

vcards = sa.Table(
    "vcards",
    metadata,
    #: the local account (bare JID) whose XEP-0054 vCard this is
    sa.Column("owner", sa.String(JID_MAX), primary_key=True),
    #: the ``<vCard xmlns='vcard-temp'>`` element as the account set it, serialised
    sa.Column("xml", StanzaText, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    **_MYSQL_TABLE,
)

private_xml = sa.Table(
    "private_xml",
    metadata,
    #: the local account (bare JID) that stored it (XEP-0049)
    sa.Column("owner", sa.String(JID_MAX), primary_key=True),
    #: the namespace of the stored elements: one item per (account, namespace)
    sa.Column("namespace", sa.String(NAMESPACE_MAX), primary_key=True),
    #: the elements of that namespace, serialised one after the other
    sa.Column("xml", StanzaText, nullable=False),
    #: ``len(xml)`` in UTF-8 bytes, so the per-account total is one SUM
    sa.Column("size", sa.Integer, nullable=False),
    **_MYSQL_TABLE,
)

#: Each account's own message archive (XEP-0313, migration 0007): one row per archived
#: one-to-one message and archive (a message between two local accounts has a row in
#: each). Paging runs on (owner, id) and, filtered by a conversation partner, on
#: (owner, with_bare, id): a page is one index range scan, whatever the archive's size.
#: (stamp, id) serves the retention purge and turns a query's start/end into id bounds
#: (the service stamps messages in a non-decreasing order, so stamps and ids grow together).
mam_messages = sa.Table(
    "mam_messages",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("owner", sa.String(JID_MAX), nullable=False),
    sa.Column("stanza_id", sa.String(64), nullable=False),
    sa.Column("with_bare", sa.String(JID_MAX), nullable=False),
    sa.Column("with_resource", sa.String(1023), nullable=False),
    sa.Column("outgoing", sa.Boolean, nullable=False),
    sa.Column("stamp", sa.DateTime, nullable=False),
    sa.Column("stanza", StanzaText, nullable=False),
    sa.Index("ix_mam_messages_owner_id", "owner", "id"),
    sa.Index("ix_mam_messages_owner_with_id", "owner", "with_bare", "id"),
    sa.Index("ix_mam_messages_stamp_id", "stamp", "id"),
    sa.UniqueConstraint("owner", "stanza_id"),
    **_MYSQL_TABLE,
)

#: Each account's archiving preferences (XEP-0313 §6); absent: the server's default.
mam_prefs = sa.Table(
    "mam_prefs",
    metadata,
    sa.Column("owner", sa.String(JID_MAX), primary_key=True),
    sa.Column("default_mode", sa.String(8), nullable=False),
    #: JSON arrays of bare JIDs; up to ``mam.max_pref_jids`` of 383 characters each can
    #: pass MariaDB's 64 KiB TEXT, hence the stanza type (MEDIUMTEXT there)
    sa.Column("always_json", StanzaText, nullable=False),
    sa.Column("never_json", StanzaText, nullable=False),
    **_MYSQL_TABLE,
)

# ------------------------------------------------------------------------- upload
# XEP-0363 slots and the files uploaded to them (migration 0008); the queries are
# :class:`xmppd.storage.upload.UploadStore`'s. The file itself is ``<file_id>`` in
# ``upload.directory``: its path comes from the token alone, never from a client's name.
upload_files = sa.Table(
    "upload_files",
    metadata,
    #: the random part of both URLs (``secrets.token_urlsafe(18)``)
    sa.Column("file_id", sa.String(32), primary_key=True),
    #: the account (bare JID) whose quota the slot counts against
    sa.Column("owner", sa.String(JID_MAX), nullable=False, index=True),
    #: the sanitised name shown in the URL and in Content-Disposition
    sa.Column("filename", sa.String(255), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("content_type", sa.String(255), nullable=False),
    #: SHA-256 (hex) of the PUT URL's secret: the secret itself is never stored
    sa.Column("put_hash", sa.String(64), nullable=False),
    #: when the slot was granted (naive UTC); the PUT must come within ``slot_ttl``
    sa.Column("created_at", sa.DateTime, nullable=False),
    #: when the whole file was stored (NULL: the slot is still open)
    sa.Column("stored_at", sa.DateTime, nullable=True),
    **_MYSQL_TABLE,
)
