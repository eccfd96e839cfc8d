"""How long ``xmppd import ejabberd`` takes for a big room archive, and its peak memory.

Generates an ejabberd 23.01 database (SQLite, ejabberd's own ``lite.new.sql`` multi-host
schema from Debian's ``ejabberd`` package) holding ``--rows`` groupchat archive rows as
ejabberd writes them (the room's bare JID as ``username``, the microsecond ``timestamp``,
the sender's real JID as ``peer``, the message as the occupant sent it), spread over
``--rooms`` rooms, then runs the real CLI into a fresh xmppd SQLite database and reports
the import's wall time and peak RSS (``getrusage(RUSAGE_CHILDREN)``: the CLI process
alone). The rooms are created first the way xmppd's MUC service stores them, so only the
archive is measured. Goal (issue 14): 1,000,000 rows in under 2 minutes and 200 MiB.

    .venv/bin/python bench/import_archive.py --rows 1000000
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from xmppd.muc.roomconfig import RoomSettings  # noqa: E402
from xmppd.storage import Database  # noqa: E402
from xmppd.storage.muc import MucStore, Write  # noqa: E402

SCHEMA = Path("/usr/share/ejabberd/sql/lite.new.sql")
OLD, MUC = "old.example", "conference.old.example"
FIRST_TS = 1_600_000_000_000_000


def _archive_rows(rows: int, rooms: int) -> Iterator[tuple[object, ...]]:
    for i in range(rows):
        room = f"room{i % rooms}@{MUC}"
        user = f"user{i % 997}"
        xml = (f'<message xmlns="jabber:client" from="{user}@{OLD}/web" to="{room}" '
               f'type="groupchat" id="msg{i}"><body>message number {i} in the archive, '
               "a line of ordinary length</body></message>")  # fmt: skip
        yield (room, OLD, FIRST_TS + i * 1000, f"{user}@{OLD}/web", f"{user}@{OLD}", xml,
               f"message number {i}", "groupchat", f"User {i % 997}")  # fmt: skip


def make_ejabberd(path: Path, rows: int, rooms: int) -> float:
    """The ejabberd database; seconds it took."""
    start = time.monotonic()
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA.read_text())
    insert = ("INSERT INTO archive (username, server_host, timestamp, peer, bare_peer, xml, txt,"
              " kind, nick) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")  # fmt: skip
    source = _archive_rows(rows, rooms)
    while True:
        chunk = [row for _, row in zip(range(20_000), source, strict=False)]
        if not chunk:
            break
        conn.executemany(insert, chunk)
    conn.commit()
    conn.close()
    return time.monotonic() - start


def make_xmppd(work: Path, rooms: int) -> Path:
    """A config and a database holding the rooms (as the MUC service writes them)."""
    config = work / "xmppd.toml"
    config.write_text(f'[server]\ndomain = "localhost"\ndata_dir = "{work}"\n'
                      "[admin]\nenabled = false\n")  # fmt: skip
    db = Database(f"sqlite:///{work / 'xmppd.sqlite3'}")
    try:
        db.upgrade()
        settings = RoomSettings().to_json()
        writes = [Write("room", {"name": f"room{i}", "settings_json": settings, "subject": "",
                                 "subject_nick": ""}) for i in range(rooms)]  # fmt: skip
        MucStore(db).write_batch(writes)
    finally:
        db.dispose()
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--max-seconds", type=float, default=900, help="the import's time limit")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if not SCHEMA.is_file():
        sys.exit(f"{SCHEMA} is missing: apt-get install ejabberd")
    work = Path(tempfile.mkdtemp(prefix="xmppd_import_bench_"))
    try:
        source = work / "ejabberd.sqlite3"
        made = make_ejabberd(source, args.rows, args.rooms)
        config = make_xmppd(work, args.rooms)
        command = [sys.executable, "-m", "xmppd", "import", "ejabberd", f"sqlite:///{source}",
                   "--config", str(config), "--map-domain", f"{OLD}=localhost"]  # fmt: skip
        start = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.max_seconds,
                              check=False)  # fmt: skip
        wall = time.monotonic() - start
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        peak_kib, cpu = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
        if done.returncode != 0:
            print(done.stdout, done.stderr, sep="\n")
            return 1
        db = Database(f"sqlite:///{work / 'xmppd.sqlite3'}")
        with db.connection() as conn:
            import sqlalchemy as sa

            imported = conn.execute(sa.text("SELECT count(*) FROM muc_messages")).scalar_one()
        db.dispose()
        print(f"generated {args.rows} ejabberd archive rows in {made:.1f} s")
        print(f"import: {imported} rows in {wall:.1f} s ({imported / wall:,.0f} rows/s), "
              f"{cpu:.1f} s of CPU, peak RSS {peak_kib / 1024:.0f} MiB, load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
        return 0 if imported == args.rows else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
