"""Alembic environment for xmppd, usable without an alembic.ini.

``xmppd.storage.database.Database.upgrade()`` configures alembic in code and hands over an
open connection in ``config.attributes["connection"]``. Run by hand instead, the URL comes
from the ``sqlalchemy.url`` option or the ``XMPPD_DATABASE_URL`` environment variable.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import context

from xmppd.storage.models import metadata

config = context.config
target_metadata = metadata


def _configure(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("XMPPD_DATABASE_URL", "")
    if not url:
        raise RuntimeError("no database URL: set sqlalchemy.url or XMPPD_DATABASE_URL")
    return url


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    engine = sa.create_engine(_url(), poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            _configure(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
