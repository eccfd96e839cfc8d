"""SQL helpers the storage modules share, written once for the three backends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite


def upsert(
    conn: sa.Connection,
    table: sa.Table,
    keys: Sequence[str],
    values: dict[str, Any],
    update: dict[str, Any],
) -> None:
    """INSERT or UPDATE in one statement in the backend's own syntax: no read-then-write race."""
    dialect = conn.dialect.name
    if dialect in ("mysql", "mariadb"):
        stmt: Any = mysql.insert(table).values(values).on_duplicate_key_update(update)
    elif dialect == "postgresql":
        stmt = postgresql.insert(table).values(values)
        stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_=update)
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).values(values)
        stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_=update)
    else:
        raise NotImplementedError(f"no upsert for {dialect}")
    conn.execute(stmt)
