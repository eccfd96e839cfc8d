"""XEP-0363 slots and stored files (table ``upload_files``, migration 0008).

The quota is the sum of an account's stored files and of its slots still open, so it
holds across restarts and a user cannot get round it by asking for many slots at once.
Methods block: trio code calls them through ``AsyncDatabase.run``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from xmppd.storage.database import Database
from xmppd.storage.models import upload_files as files


@dataclass(frozen=True, slots=True)
class UploadRow:
    """One slot (``stored_at`` None) or stored file."""

    file_id: str
    owner: str
    filename: str
    size: int
    content_type: str
    put_hash: str
    created_at: datetime
    stored_at: datetime | None


def _open_or_stored(slot_cutoff: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(files.c.stored_at.is_not(None), files.c.created_at > slot_cutoff)


class UploadStore:
    """The upload queries, on one :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def used(self, owner: str, slot_cutoff: datetime) -> int:
        """Bytes ``owner`` has stored, plus those of its slots granted after ``slot_cutoff``."""
        query = sa.select(sa.func.coalesce(sa.func.sum(files.c.size), 0)).where(
            files.c.owner == owner, _open_or_stored(slot_cutoff)
        )
        with self.db.connection() as conn:
            return int(conn.execute(query).scalar_one())

    def grant(self, row: UploadRow, quota: int, slot_cutoff: datetime) -> int | None:
        """Insert the slot ``row`` unless it would take its owner past ``quota`` bytes
        (0: no quota); None when granted, else the bytes already in use."""
        with self.db.transaction() as conn:
            if quota:
                used = conn.execute(
                    sa.select(sa.func.coalesce(sa.func.sum(files.c.size), 0)).where(
                        files.c.owner == row.owner, _open_or_stored(slot_cutoff)
                    )
                ).scalar_one()
                if int(used) + row.size > quota:
                    return int(used)
            conn.execute(
                files.insert(),
                {
                    "file_id": row.file_id,
                    "owner": row.owner,
                    "filename": row.filename,
                    "size": row.size,
                    "content_type": row.content_type,
                    "put_hash": row.put_hash,
                    "created_at": row.created_at,
                    "stored_at": None,
                },
            )
        return None

    def get(self, file_id: str) -> UploadRow | None:
        with self.db.connection() as conn:
            found = conn.execute(sa.select(files).where(files.c.file_id == file_id)).first()
        return None if found is None else UploadRow(**found._asdict())

    def mark_stored(self, file_id: str, when: datetime) -> bool:
        """The file is complete and in place; False if the slot was gone or used."""
        with self.db.transaction() as conn:
            done = conn.execute(
                files.update()
                .where(files.c.file_id == file_id, files.c.stored_at.is_(None))
                .values(stored_at=when)
            )
        return done.rowcount == 1

    def expired(self, slot_cutoff: datetime, file_cutoff: datetime | None) -> list[str]:
        """Slots granted before ``slot_cutoff`` and never used, and files stored before
        ``file_cutoff`` (None: files never expire)."""
        unused = sa.and_(files.c.stored_at.is_(None), files.c.created_at <= slot_cutoff)
        where = unused if file_cutoff is None else sa.or_(unused, files.c.stored_at <= file_cutoff)
        with self.db.connection() as conn:
            return [r.file_id for r in conn.execute(sa.select(files.c.file_id).where(where))]

    def delete(self, file_ids: Sequence[str]) -> None:
        with self.db.transaction() as conn:
            for i in range(0, len(file_ids), 500):
                conn.execute(files.delete().where(files.c.file_id.in_(file_ids[i : i + 500])))
