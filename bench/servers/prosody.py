"""Prosody 0.12 from Debian, started in the foreground with our config (no system service)."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

from bench.loadgen.mam_page import archive_rows

from .base import CONFIGS, Server, apt_install

# mod_storage_sql's own tables for SQLite (0.12, create_table()); created here if Prosody has
# not connected yet (it creates them lazily and ignores "already exists").
ARCHIVE_DDL = [
    'CREATE TABLE IF NOT EXISTS "prosodyarchive" ("sort_id" INTEGER PRIMARY KEY AUTOINCREMENT,'
    ' "host" TEXT NOT NULL, "user" TEXT NOT NULL, "store" TEXT NOT NULL, "key" TEXT NOT NULL,'
    ' "when" INTEGER NOT NULL, "with" TEXT NOT NULL, "type" TEXT NOT NULL,'
    ' "value" MEDIUMTEXT NOT NULL)',
    'CREATE UNIQUE INDEX IF NOT EXISTS "prosodyarchive_index" ON "prosodyarchive"'
    ' ("host", "user", "store", "key")',
    'CREATE INDEX IF NOT EXISTS "prosodyarchive_with_when" ON "prosodyarchive"'
    ' ("host", "user", "store", "with", "when")',
    'CREATE INDEX IF NOT EXISTS "prosodyarchive_when" ON "prosodyarchive"'
    ' ("host", "user", "store", "when")',
    'CREATE INDEX IF NOT EXISTS "prosodyarchive_sort" ON "prosodyarchive"'
    ' ("host", "user", "store", "sort_id")',
]


class Prosody(Server):
    name = "prosody"
    port = 15222
    http_port = 15280
    component_port = 15347
    template = "prosody.cfg.lua"
    data_rel = "run/prosody"  # the path the reference config uses, relative to bench/

    def install(self) -> None:
        apt_install("prosody", "lua-dbi-sqlite3")  # the MAM archive is on SQLite
        self.stop_system_service()

    def stop_system_service(self) -> None:
        # the Debian package may start its own instance (ports 5222/5269/5280); not ours to keep
        subprocess.run(["service", "prosody", "stop"], capture_output=True, timeout=60)

    @property
    def config_path(self) -> Path:
        return self.dir / "prosody.cfg.lua"

    def configure(self) -> None:
        text = (CONFIGS / self.template).read_text()
        text = text.replace(f'"{self.data_rel}/', f'"{self.dir}/')
        if str(self.dir) not in text:
            raise RuntimeError("prosody config template: data paths not found")
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        (self.dir / "certs").mkdir(parents=True, exist_ok=True)  # silences certmanager
        self.config_path.write_text(text)

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        return ["prosody", "-F", "--config", str(self.config_path)], {}, self.dir

    def fill_archive(self, owner: str, count: int, partners: int) -> dict:
        """Rows as mod_mam's ``archive:append`` writes them (store ``archive``, type ``xml``,
        ``with`` the partner's bare JID, ``when`` in epoch seconds), bound parameters."""
        if self.archive_marker_ok(owner, count, partners):
            return {"filled": 0, "kept": count}
        self.configure()
        t0 = time.perf_counter()
        db = sqlite3.connect(self.dir / "data" / "prosody.sqlite")
        try:
            for ddl in ARCHIVE_DDL:
                db.execute(ddl)
            db.execute(
                'DELETE FROM "prosodyarchive" WHERE "host"=? AND "user"=? AND "store"=?',
                (self.domain, owner, "archive"),
            )
            db.executemany(
                'INSERT INTO "prosodyarchive" ("host", "user", "store", "when", "with", "key",'
                ' "type", "value") VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
                (
                    (self.domain, owner, "archive", epoch, partner, key, "xml", xml)
                    for key, epoch, partner, _, xml in archive_rows(self.domain, count, partners)
                ),
            )
            db.commit()
        finally:
            db.close()
        self.archive_marker_write(owner, count, partners)
        seconds = time.perf_counter() - t0
        return {"filled": count, "seconds": round(seconds, 1), "per_s": round(count / seconds)}


class ProsodyPlainAuth(Prosody):
    """Plain-text password storage: separates PBKDF2 cost from the rest of the login path."""

    name = "prosody-plainauth"
    port = 15222
    http_port = 15280
    component_port = 15347
    template = "prosody-plainauth.cfg.lua"
    data_rel = "run/prosody-plainauth"
