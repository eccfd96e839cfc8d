"""The synchronous storage API: every query xmppd makes lives here.

Methods block, so trio code calls them through :class:`xmppd.storage.AsyncDatabase`
(a worker thread), never on the event loop. Each method is one transaction.

Localparts are normalised (PRECIS, :func:`xmppd.jid.nodeprep`) by the account-changing
methods, which admins call with whatever they typed; lookups (``get_scram``,
``user_exists``) take an already normalised localpart because their callers parsed a JID.
Roster and queue methods take bare JID strings as the router produced them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig

import xmppd
from xmppd.auth.base import ScramCredentials
from xmppd.auth.scram import DEFAULT_ITERATIONS, derive_scram
from xmppd.jid import JIDError, nodeprep
from xmppd.storage import models
from xmppd.storage.engine import WRITE_OPTION, create_engine
from xmppd.storage.sql import upsert
from xmppd.storage.types import (
    SUBSCRIPTIONS,
    InvalidValue,
    RosterFull,
    RosterItem,
    UnknownUser,
    UserExists,
)

log = logging.getLogger(__name__)

ALEMBIC_DIR = Path(xmppd.__file__).resolve().parent.parent / "alembic"
HASH_NAMES = ("sha1", "sha256")

users = cast(sa.Table, models.User.__table__)
roster = cast(sa.Table, models.RosterItemRow.__table__)
versions = cast(sa.Table, models.RosterVersion.__table__)
pending = cast(sa.Table, models.PendingSubscription.__table__)
offline = cast(sa.Table, models.OfflineMessage.__table__)
blocked = models.blocklist_items
ps_nodes = models.pubsub_nodes
ps_items = models.pubsub_items
vcards = models.vcards
private_xml = models.private_xml
mam_rows = models.mam_messages
mam_prefs = models.mam_prefs
uploads = models.upload_files

UserListener = Callable[[str], None]


def _jid(value: str) -> str:
    if not value or len(value) > models.JID_MAX:
        raise InvalidValue(f"a JID must be 1..{models.JID_MAX} characters")
    return value


def _localpart(value: str) -> str:
    try:
        normalised = nodeprep(value)
    except JIDError as exc:
        raise InvalidValue(f"invalid localpart: {exc}") from None
    if not normalised or len(normalised) > models.LOCALPART_MAX:
        raise InvalidValue(f"a localpart must be 1..{models.LOCALPART_MAX} characters")
    return normalised


def _credential_columns(password: str, iterations: int) -> dict[str, Any]:
    """Both SCRAM key sets for ``password``, each with its own random salt."""
    values: dict[str, Any] = {}
    for hash_name in HASH_NAMES:
        try:
            creds = derive_scram(password, hash_name, iterations=iterations)
        except ValueError:
            raise InvalidValue("the password is not a valid PRECIS OpaqueString") from None
        values[f"{hash_name}_salt"] = creds.salt
        values[f"{hash_name}_iterations"] = creds.iterations
        values[f"{hash_name}_stored_key"] = creds.stored_key
        values[f"{hash_name}_server_key"] = creds.server_key
    return values


#: A time before any slot: what a deleted account's uploads are dated to.
EPOCH = datetime(1970, 1, 1)


def _owned_by(column: sa.ColumnElement[str], localpart: str) -> sa.ColumnElement[bool]:
    """Rows whose bare-JID ``column`` has ``localpart`` (any domain; owners are local)."""
    prefix = f"{localpart}@"
    return sa.func.substr(column, 1, len(prefix)) == prefix


class Database:
    """One database (SQLite file, PostgreSQL or MariaDB) behind xmppd's storage methods."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        self._user_listeners: list[UserListener] = []

    # -- lifecycle ---------------------------------------------------------------------

    def upgrade(self) -> None:
        """Run ``alembic upgrade head`` from the repository's ``alembic/`` directory."""
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(ALEMBIC_DIR))
        with self.transaction() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()

    def add_user_listener(self, listener: UserListener) -> None:
        """Call ``listener(localpart)`` after a password change or deletion commits.

        Caches of credentials (the internal authenticator's) use it to drop stale entries.
        """
        self._user_listeners.append(listener)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """One write transaction (on SQLite ``BEGIN IMMEDIATE``: the write lock up front)."""
        with self.engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def connection(self) -> Iterator[sa.Connection]:
        """A pooled connection for reads."""
        with self.engine.connect() as conn:
            yield conn

    def _user_changed(self, localpart: str) -> None:
        for listener in self._user_listeners:
            listener(localpart)

    # -- users -------------------------------------------------------------------------

    def create_user(self, localpart: str, password: str, iterations: int = 4096) -> None:
        """Add an account, storing only SCRAM-SHA-1 and SCRAM-SHA-256 keys."""
        localpart = _localpart(localpart)
        row = {"localpart": localpart, "created_at": models.utcnow()}
        row.update(_credential_columns(password, iterations))
        try:
            with self.transaction() as conn:
                conn.execute(users.insert(), row)
        except sa.exc.IntegrityError:
            raise UserExists(localpart) from None
        log.info("event=user_created localpart=%s", localpart)

    def create_users_bulk(self, items: list[tuple[str, str]], iterations: int = 4096) -> int:
        """Add many accounts in one transaction (benchmarks); PBKDF2 runs on all cores."""
        names = [_localpart(name) for name, _ in items]
        workers = max(1, min(8, os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            creds = list(pool.map(lambda it: _credential_columns(it[1], iterations), items))
        now = models.utcnow()
        rows = [{"localpart": n, "created_at": now, **c} for n, c in zip(names, creds, strict=True)]
        if not rows:
            return 0
        try:
            with self.transaction() as conn:
                conn.execute(users.insert(), rows)
        except sa.exc.IntegrityError:
            raise UserExists("one of the bulk localparts already exists") from None
        log.info("event=users_created count=%d", len(rows))
        return len(rows)

    def set_password(self, localpart: str, password: str) -> None:
        """Replace both SCRAM key sets (iterations kept from the SHA-256 set)."""
        localpart = _localpart(localpart)
        with self.transaction() as conn:
            iterations = conn.execute(
                sa.select(users.c.sha256_iterations).where(users.c.localpart == localpart)
            ).scalar_one_or_none()
            if iterations is None:
                raise UnknownUser(localpart)
            conn.execute(
                users.update().where(users.c.localpart == localpart),
                _credential_columns(password, iterations or DEFAULT_ITERATIONS),
            )
        self._user_changed(localpart)
        log.info("event=password_changed localpart=%s", localpart)

    def delete_user(self, localpart: str) -> bool:
        """Remove an account and its roster, pending subscriptions, offline messages,
        blocklist, PEP nodes, vCard, private XML and message archive (a re-created account
        must not inherit them). Its uploaded files (XEP-0363) stop being served at once:
        they become long-lapsed slots, which the upload service's next sweep deletes with
        their files.

        The roster version is bumped rather than deleted, so a client that cached the old
        account's roster cannot mistake it for a recreated account's one. Returns whether
        the account existed.
        """
        localpart = _localpart(localpart)
        with self.transaction() as conn:
            existed = conn.execute(users.delete().where(users.c.localpart == localpart)).rowcount
            conn.execute(roster.delete().where(_owned_by(roster.c.owner, localpart)))
            conn.execute(pending.delete().where(_owned_by(pending.c.owner, localpart)))
            conn.execute(offline.delete().where(_owned_by(offline.c.owner, localpart)))
            conn.execute(blocked.delete().where(_owned_by(blocked.c.owner, localpart)))
            owned = sa.select(ps_nodes.c.id).where(_owned_by(ps_nodes.c.owner, localpart))
            conn.execute(ps_items.delete().where(ps_items.c.node_id.in_(owned)))
            conn.execute(ps_nodes.delete().where(_owned_by(ps_nodes.c.owner, localpart)))
            conn.execute(vcards.delete().where(_owned_by(vcards.c.owner, localpart)))
            conn.execute(private_xml.delete().where(_owned_by(private_xml.c.owner, localpart)))
            conn.execute(mam_rows.delete().where(_owned_by(mam_rows.c.owner, localpart)))
            conn.execute(mam_prefs.delete().where(_owned_by(mam_prefs.c.owner, localpart)))
            conn.execute(
                uploads.update()
                .where(_owned_by(uploads.c.owner, localpart))
                .values(stored_at=None, created_at=EPOCH)
            )
            conn.execute(
                versions.update()
                .where(_owned_by(versions.c.owner, localpart))
                .values(version=versions.c.version + 1)
            )
        self._user_changed(localpart)
        log.info("event=user_deleted localpart=%s existed=%s", localpart, bool(existed))
        return bool(existed)

    def hashes_of_every_account(self) -> tuple[str, ...]:
        """The SCRAM hashes every account has keys for (both, unless some were imported
        with one hash's keys only): what the server may offer without breaking a login."""
        with self.connection() as conn:
            return tuple(
                h
                for h in HASH_NAMES
                if conn.execute(
                    sa.select(users.c.id).where(users.c[f"{h}_iterations"] == 0).limit(1)
                ).first()
                is None
            )

    def complete_keys(self, localpart: str, password: str) -> bool:
        """Derive the key sets ``localpart`` lacks from a password that just verified (an
        imported account's PLAIN login); False if it lacked none."""
        with self.transaction() as conn:
            row = conn.execute(
                sa.select(*(users.c[f"{h}_iterations"] for h in HASH_NAMES)).where(
                    users.c.localpart == localpart
                )
            ).first()
            if row is None or all(row):
                return False
            iterations = max(row) or DEFAULT_ITERATIONS
            values = _credential_columns(password, iterations)
            kept = {k: v for k, v in values.items() for h, n in zip(HASH_NAMES, row, strict=True)
                    if not n and k.startswith(h + "_")}  # fmt: skip
            conn.execute(users.update().where(users.c.localpart == localpart), kept)
        self._user_changed(localpart)
        log.info("event=user_keys_completed localpart=%s", localpart)
        return True

    def list_users(self) -> list[str]:
        """All localparts, sorted."""
        with self.connection() as conn:
            return list(
                conn.execute(sa.select(users.c.localpart).order_by(users.c.localpart)).scalars()
            )

    def user_exists(self, localpart: str) -> bool:
        """Whether the (normalised) localpart has an account."""
        with self.connection() as conn:
            query = sa.select(users.c.id).where(users.c.localpart == localpart)
            return conn.execute(query).first() is not None

    def get_scram(self, localpart: str, hash_name: str) -> ScramCredentials | None:
        """The stored keys for ``hash_name`` ("sha1" or "sha256"), or None if no account
        or no keys for that hash (an imported account may hold one hash's keys only:
        iterations 0, see :mod:`xmppd.migrate.passwords`)."""
        if hash_name not in HASH_NAMES:
            raise InvalidValue(f"unknown SCRAM hash {hash_name!r}")
        cols = [
            users.c[f"{hash_name}_{part}"]
            for part in ("salt", "iterations", "stored_key", "server_key")
        ]
        with self.connection() as conn:
            row = conn.execute(sa.select(*cols).where(users.c.localpart == localpart)).first()
        if row is None or not row[1]:
            return None
        return ScramCredentials(
            salt=bytes(row[0]),
            iterations=int(row[1]),
            stored_key=bytes(row[2]),
            server_key=bytes(row[3]),
        )

    # -- roster ------------------------------------------------------------------------

    @staticmethod
    def _item(row: sa.Row[Any]) -> RosterItem:
        return RosterItem(
            jid=row.contact,
            name=row.name,
            subscription=row.subscription,
            ask_out=bool(row.ask_out),
            pending_in=bool(row.pending_in),
            approved=bool(row.approved),
            groups=tuple(json.loads(row.groups_json)),
        )

    @staticmethod
    def _version(conn: sa.Connection, owner: str) -> int:
        query = sa.select(versions.c.version).where(versions.c.owner == owner)
        return int(conn.execute(query).scalar_one_or_none() or 0)

    @staticmethod
    def _bump(conn: sa.Connection, owner: str) -> int:
        upsert(
            conn,
            versions,
            ["owner"],
            {"owner": owner, "version": 1},
            {"version": versions.c.version + 1},
        )
        return Database._version(conn, owner)

    def get_roster(self, owner: str) -> tuple[int, list[RosterItem]]:
        """The roster version (0 if never changed) and items in insertion order."""
        with self.connection() as conn:
            version = self._version(conn, owner)
            rows = conn.execute(
                sa.select(roster).where(roster.c.owner == owner).order_by(roster.c.id)
            )
            return version, [self._item(row) for row in rows]

    def get_roster_item(self, owner: str, jid: str) -> RosterItem | None:
        """One contact of ``owner``'s roster, or None."""
        with self.connection() as conn:
            query = sa.select(roster).where(roster.c.owner == owner, roster.c.contact == jid)
            row = conn.execute(query).first()
        return None if row is None else self._item(row)

    def put_roster_item(self, owner: str, item: RosterItem, max_items: int | None = None) -> int:
        """Insert or replace ``item``; returns the roster's new version.

        With ``max_items``, adding a contact to a roster that already has that many raises
        :class:`RosterFull` (changing an existing item is always allowed). As with the
        offline queue, concurrent adds on PostgreSQL/MariaDB may overshoot by a few.
        """
        if item.subscription not in SUBSCRIPTIONS:
            raise InvalidValue(f"bad subscription {item.subscription!r}")
        if item.name is not None and len(item.name) > 1023:
            raise InvalidValue("roster name too long")
        fields = {
            "name": item.name,
            "subscription": item.subscription,
            "ask_out": item.ask_out,
            "pending_in": item.pending_in,
            "approved": item.approved,
            "groups_json": json.dumps(list(dict.fromkeys(item.groups)), ensure_ascii=False),
        }
        values = {"owner": _jid(owner), "contact": _jid(item.jid), **fields}
        with self.transaction() as conn:
            if max_items is not None and self._roster_full(conn, owner, item.jid, max_items):
                raise RosterFull(owner)
            upsert(conn, roster, ["owner", "contact"], values, fields)
            return self._bump(conn, owner)

    @staticmethod
    def _roster_full(conn: sa.Connection, owner: str, contact: str, max_items: int) -> bool:
        """Whether ``contact`` is new to ``owner``'s roster and the roster has no room."""
        exists = sa.select(roster.c.id).where(roster.c.owner == owner, roster.c.contact == contact)
        if conn.execute(exists).first() is not None:
            return False
        count = sa.select(sa.func.count()).select_from(roster).where(roster.c.owner == owner)
        return conn.execute(count).scalar_one() >= max_items

    def count_roster(self, owner: str) -> int:
        """How many items ``owner``'s roster has."""
        with self.connection() as conn:
            query = sa.select(sa.func.count()).select_from(roster).where(roster.c.owner == owner)
            return int(conn.execute(query).scalar_one())

    def delete_roster_item(self, owner: str, jid: str) -> int | None:
        """Remove a contact; the new version, or None (and no bump) if it was not there."""
        with self.transaction() as conn:
            query = roster.delete().where(roster.c.owner == owner, roster.c.contact == jid)
            if conn.execute(query).rowcount == 0:
                return None
            return self._bump(conn, owner)

    # -- pending inbound subscriptions -------------------------------------------------

    def add_pending_subscription(self, owner: str, from_jid: str, stanza_xml: str) -> None:
        """Keep an inbound subscribe, replacing an earlier one from the same JID."""
        values = {
            "owner": _jid(owner),
            "from_jid": _jid(from_jid),
            "stanza": stanza_xml,
            "created_at": models.utcnow(),
        }
        with self.transaction() as conn:
            upsert(
                conn,
                pending,
                ["owner", "from_jid"],
                values,
                {"stanza": stanza_xml, "created_at": values["created_at"]},
            )

    def get_pending_subscriptions(self, owner: str) -> list[tuple[str, str]]:
        """``(from_jid, stanza_xml)`` pairs, oldest first."""
        with self.connection() as conn:
            query = (
                sa.select(pending.c.from_jid, pending.c.stanza)
                .where(pending.c.owner == owner)
                .order_by(pending.c.id)
            )
            return [(row.from_jid, row.stanza) for row in conn.execute(query)]

    def remove_pending_subscription(self, owner: str, from_jid: str) -> None:
        """Forget the request (approved, denied or cancelled)."""
        with self.transaction() as conn:
            conn.execute(
                pending.delete().where(pending.c.owner == owner, pending.c.from_jid == from_jid)
            )

    # -- offline messages --------------------------------------------------------------

    def store_offline(self, owner: str, stanza_xml: str, limit: int = 500) -> bool:
        """Queue a message; False if ``owner`` already has ``limit`` messages waiting.

        On SQLite the write lock makes the limit exact; on PostgreSQL/MariaDB concurrent
        stores for one owner may overshoot it by a few, which is harmless for a DoS guard.
        """
        owner = _jid(owner)
        with self.transaction() as conn:
            count_query = (
                sa.select(sa.func.count()).select_from(offline).where(offline.c.owner == owner)
            )
            if conn.execute(count_query).scalar_one() >= limit:
                return False
            conn.execute(
                offline.insert(),
                {"owner": owner, "stanza": stanza_xml, "created_at": models.utcnow()},
            )
        return True

    def offline_page(
        self, owner: str, after_id: int, max_count: int, max_bytes: int
    ) -> list[tuple[int, str]]:
        """The next queued messages of ``owner`` after row ``after_id``, oldest first.

        At most ``max_count`` rows whose stanzas add up to at most ``max_bytes`` (UTF-8),
        but always the first one if any: the caller sends a page as a whole, so a page
        must fit its peer's send queue. Nothing is deleted here (:meth:`delete_offline`
        does that once the page was delivered). Sizes are read first, so a queue of
        large messages is never loaded into memory beyond one page.
        """
        where = sa.and_(offline.c.owner == owner, offline.c.id > after_id)
        with self.connection() as conn:
            sizes = conn.execute(
                sa.select(offline.c.id, _octets(conn, offline.c.stanza))
                .where(where)
                .order_by(offline.c.id)
                .limit(max_count)
            ).all()
            chosen: list[int] = []
            total = 0
            for row_id, size in sizes:
                total += int(size or 0)
                if chosen and total > max_bytes:
                    break
                chosen.append(row_id)
            if not chosen:
                return []
            rows = conn.execute(
                sa.select(offline.c.id, offline.c.stanza)
                .where(offline.c.owner == owner, offline.c.id.in_(chosen))
                .order_by(offline.c.id)
            ).all()
        return [(int(row.id), row.stanza) for row in rows]

    def delete_offline(self, owner: str, ids: Sequence[int]) -> int:
        """Forget delivered messages of ``owner``; returns how many rows went."""
        if not ids:
            return 0
        with self.transaction() as conn:
            query = offline.delete().where(offline.c.owner == owner, offline.c.id.in_(list(ids)))
            return int(conn.execute(query).rowcount)

    def list_offline(self, owner: str) -> list[str]:
        """Every queued message of ``owner``, oldest first, without removing any (admin, tests)."""
        with self.connection() as conn:
            query = (
                sa.select(offline.c.stanza).where(offline.c.owner == owner).order_by(offline.c.id)
            )
            return list(conn.execute(query).scalars())


def _octets(conn: sa.Connection, column: sa.ColumnElement[str]) -> sa.ColumnElement[int]:
    """The UTF-8 size of a text column (SQLite's length() counts characters)."""
    if conn.dialect.name == "sqlite":
        return sa.func.length(sa.cast(column, sa.LargeBinary))
    return sa.func.octet_length(column)
